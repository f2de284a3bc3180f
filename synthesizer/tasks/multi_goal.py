"""Multi-goal: two to four writes for one person in one message — steps on different records (perhaps of
different kinds) and a change of their details — each record named by what the user knows, in the order
they are asked for. A replay of the whole chain proves the order works (a later step may need an earlier
one: checked in before a bag is added)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servers.spec import GoldCall

from . import wording
from .action import book_request, detail_change, detail_sentence, move_request
from .family import Family, Target, act, because, distract, phrase, register, settle, targets, verb
from .intents import (
    change,
    change_call,
    change_checks,
    change_words,
    move,
    move_calls,
    move_checks,
    sale,
    sale_calls,
    sale_checks,
)
from .world import Draft, Ownership, World

__all__ = ["MultiGoal"]


@register
class MultiGoal(Family):
    name = "multi_goal"
    task_family = "multi_goal"
    share = 0.27

    def draft(self, world: World) -> Draft | None:
        if world.design.world and world.rng.random() < 0.85:  # a legacy world draws nothing here
            for _ in range(4):
                made = self.mixed(world)
                if made is not None:
                    return made
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

    def mixed(self, world: World) -> Draft | None:
        """Different kinds of act in one message (world designs): "drop my Atlanta booking and get me on the
        Friday 7:40 to Chicago instead, on my Visa", a move to another flight and a new booking, a booking and a
        meal changed on another one — each record named by what the user knows, each amount the oracle's, and
        sometimes a change of the user's details too."""
        rng = world.rng
        kinds = ["step", "move", "change"]
        rng.shuffle(kinds)
        first = next((a for a in (_act(world, k, None, None) for k in kinds) if a is not None), None)
        if first is None:
            return None
        seconds = ["book", "change"] if first.tag != "change" else ["book"]
        rng.shuffle(seconds)
        second = next((a for a in (_act(world, k, first.person, first) for k in seconds) if a is not None), None)
        if second is None:
            return None
        gold: list[GoldCall] = []
        seen: set[str] = set()
        for call in [*first.calls, *second.calls]:
            signature = repr((call.tool, sorted(call.arguments.items())))
            if world.is_write(call.tool) or signature not in seen:
                seen.add(signature)
                gold.append(call)
        parts = [first.text, second.text]
        person = first.person
        detail = detail_change(world, person) if rng.random() < 0.3 else None
        if detail is not None:
            gold.append(detail[1])
            parts.append(detail_sentence(world, detail[0], detail[2]))
        results = world.trial(gold)
        if results is None or any(r.is_error for r in results):
            return None
        who, known = world.identity(person)
        request = wording.join_requests(rng, parts)
        goal = "Get all of it done: " + "; ".join(p[0].lower() + p[1:].rstrip(".?") for p in parts) + "."
        user = world.scenario(
            person, {**known, **first.known, **second.known}, goal, accepts=["Each thing asked for"],
            refuses=["Only part of it"],
        )  # fmt: skip
        writes = 2 + (detail is not None)
        tags = ["discovery", "computed", first.tag, second.tag] + (["details"] if detail else [])
        draft = Draft("multi_goal", f"multi_goal-mixed-{writes}", who, request, user, gold, tags=tags)
        draft.person = str(person[f"{first.own.customer.name}_id"])
        distract(world, draft, first.own, person, first.record)
        first.finish(draft)
        second.finish(draft)
        return draft


@dataclass
class _Act:
    """One act of a mixed request: its calls, the user's sentence, what it adds to the draft's checks."""

    tag: str
    person: dict[str, Any]
    own: Ownership
    record: dict[str, Any] | None
    calls: list[GoldCall]
    text: str
    finish: Callable[[Draft], None]
    known: dict[str, str] = field(default_factory=dict)


def _act(world: World, kind: str, person: dict[str, Any] | None, before: _Act | None) -> _Act | None:
    """An act of ``kind`` (step, move, change, book) for ``person`` (anyone, for the first act), on a record
    other than the one ``before`` acts on."""
    rng = world.rng
    taken = before.record if before else None

    def other(record: dict[str, Any] | None) -> bool:
        return taken is None or record is None or record is not taken and record != taken

    if kind == "step":
        options = targets(world)
        if not options:
            return None
        target = rng.choice(options)
        what = phrase(world, target)
        if what is None:
            return None
        step = act(world, target)
        text = wording.ask(rng, verb(target, what), reason=False) + because(step)
        calls = [*world.reach(target.own, target.person, target.record), step]
        return _Act(
            target.transition.name, target.person, target.own, target.record, calls, text,
            lambda d: settle(world, d, target, target.transition.to),
        )  # fmt: skip
    if kind == "move":
        moving = move(world)
        text = move_request(world, moving) if moving else None
        if moving is None or text is None:
            return None
        return _Act(
            "transfer", moving.person, moving.own, moving.record, move_calls(world, moving), text,
            lambda d: d.checks.extend(move_checks(world, moving)), {"payment method": str(moving.method["label"])},
        )  # fmt: skip
    if kind == "change":
        made = change(world, person)
        if made is None or not other(made.record):
            return None
        what = world.describe(made.own, made.record, world.records(made.own, made.person))
        if what is None:
            return None
        text = wording.ask(rng, change_words(world, made, what), reason=False)
        calls = [*world.reach(made.own, made.person, made.record), change_call(world, made)]
        return _Act(
            "change", made.person, made.own, made.record, calls, text,
            lambda d: d.checks.extend(change_checks(world, made)),
        )  # fmt: skip
    if kind == "book" and person is not None and before is not None:
        sold = sale(world, person)
        if sold is None:
            return None
        avoid = {before.record.get(sold.column) if before.record else None}
        if before.tag == "transfer" and before.calls:
            avoid.add(before.calls[-1].arguments.get(f"new_{sold.column}"))
        if sold.key in avoid:
            return None
        return _Act(
            "book", person, before.own, None, sale_calls(world, sold, lookup=False), book_request(world, sold),
            lambda d: d.checks.extend(sale_checks(world, sold)),
            {"payment method": str(sold.method["label"])} if sold.method else {},
        )  # fmt: skip
    return None
