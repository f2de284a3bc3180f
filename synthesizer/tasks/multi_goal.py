"""Multi-goal: two to four writes for one person in one message — steps on different records (perhaps of
different kinds) and a change of their details — each record named by what the user knows, in the order
they are asked for. A replay of the whole chain proves the order works (a later step may need an earlier
one: checked in before a bag is added)."""

from __future__ import annotations

from servers.spec import GoldCall

from . import wording
from .action import detail_change, detail_sentence
from .family import Family, Target, act, because, distract, phrase, register, settle, targets, verb
from .world import Draft, World

__all__ = ["MultiGoal"]


@register
class MultiGoal(Family):
    name = "multi_goal"
    task_family = "multi_goal"
    share = 0.27

    def draft(self, world: World) -> Draft | None:
        options = targets(world)
        if not options:
            return None
        first = world.rng.choice(options)
        key = first.person[f"{first.own.customer.name}_id"]
        mine = [t for t in options if t.person[f"{t.own.customer.name}_id"] == key and t.key != first.key]
        world.rng.shuffle(mine)
        wanted = world.rng.choice([2, 2, 3, 3, 4])
        chosen: list[Target] = [first]
        for t in mine:
            if len(chosen) >= wanted:
                break
            if any(c.key == t.key and c.own.child.name == t.own.child.name for c in chosen):
                continue
            chosen.append(t)
        detail = detail_change(world, first.person) if len(chosen) < wanted or world.rng.random() < 0.3 else None
        if len(chosen) + (detail is not None) < 2:
            return None
        gold: list[GoldCall] = []
        parts: list[str] = []
        seen_reads: set[str] = set()
        for t in chosen:
            what = phrase(world, t)
            if what is None:
                return None
            for call in world.reach(t.own, t.person, t.record):
                signature = repr((call.tool, sorted(call.arguments.items())))
                if signature not in seen_reads and not (gold and call.tool == gold[0].tool and call == gold[0]):
                    seen_reads.add(signature)
                    gold.append(call)
            gold.append(act(world, t))
            parts.append(wording.ask(world.rng, verb(t, what), reason=False) + because(gold[-1]))
        if detail is not None:
            name, call, value = detail
            gold.append(call)
            parts.append(detail_sentence(world, name, value))
        results = world.trial(gold)
        if results is None or any(r.is_error for r in results):
            return None
        who, known = world.identity(first.person)
        request = wording.join_requests(world.rng, parts)
        goal = "Get all of it done: " + "; ".join(p[0].lower() + p[1:].rstrip(".?") for p in parts) + "."
        user = world.scenario(first.person, known, goal, accepts=["Each thing asked for"], refuses=["Only part of it"])
        writes = len(chosen) + (detail is not None)
        draft = Draft("multi_goal", f"multi_goal-{writes}", who, request, user, gold, tags=["discovery"])
        draft.person = str(key)
        distract(world, draft, first.own, first.person, first.record)
        for t in chosen:
            settle(world, draft, t, t.transition.to)
        draft.tags += sorted({t.own.child.name for t in chosen}) + (["details"] if detail else [])
        if len({t.own.child.name for t in chosen}) > 1 or detail:
            draft.tags.append(f"tables:{len({t.own.child.name for t in chosen}) + (1 if detail else 0)}")
        return draft
