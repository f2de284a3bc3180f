"""Conditional: "if my X is still Y, do A; otherwise do B", where the user does not know X's state and the
state decides. Half the drafts take the first branch, half the other, so "always do A" is no policy.
Each branch is a write the tools would allow; the checks pin the record the branch must leave alone, so
the wrong branch fails."""

from __future__ import annotations

from servers.spec import GoldCall

from ..naming import words
from . import wording
from .action import detail_change
from .checks import unchanged
from .family import Family, Target, act, allowed, because, distract, phrase, register, settle, state_field, targets
from .world import Draft, World

__all__ = ["Conditional"]


def _step_states(target: Target) -> set[str]:
    """The states of the target's kind some step starts from."""
    life = target.own.child.lifecycle
    return {s for t in life.transitions for s in t.from_states} if life else set()


@register
class Conditional(Family):
    name = "conditional"
    task_family = "conditional"
    share = 0.16

    def draft(self, world: World) -> Draft | None:
        options = [t for t in targets(world) if t.own.child.lifecycle is not None]
        if not options:
            return None
        want_else = world.rng.random() < 0.5
        if want_else:  # half the drafts are built where the other state exists, so both branches occur
            options = [t for t in options if len(_step_states(t)) > 1] or options
        target = world.rng.choice(options)
        life = target.own.child.lifecycle
        assert life is not None
        actual = target.record[life.field]
        now_possible = [
            t
            for t in life.transitions
            if actual in t.from_states
            and t.name != target.transition.name
            and allowed(world, target.own.child.name, t.name)
        ]
        other_states = [s for s in life.states if s != actual and any(s in t.from_states for t in life.transitions)]
        what = phrase(world, target)
        if what is None:
            return None
        first_branch = not want_else or not other_states
        detail = detail_change(world, target.person)
        if first_branch:
            # the record is in the named state: do A; B (the other branch) would change something else
            state, then_target = actual, target
            if detail is not None and world.rng.random() < 0.6:
                name, b_call, value = detail
                otherwise = f"just update my {words(name)} to {value}"
                other = b_call
            elif now_possible:
                alt = world.rng.choice(now_possible)
                otherwise = f"{wording.verb_it(alt.name)} instead"
                other = act(world, Target(target.own, target.person, target.record, alt))
            else:
                return None
            gold_action = act(world, then_target)
            then = wording.verb_it(target.transition.name)
        else:
            # the record is not in the named state: B is what applies now
            state = world.rng.choice(other_states)
            named = next(
                (
                    t
                    for t in life.transitions
                    if state in t.from_states
                    and allowed(world, target.own.child.name, t.name)
                    and t.name != target.transition.name
                ),
                None,
            )
            if named is not None:
                then = wording.verb_it(named.name)
                other = act(world, Target(target.own, target.person, target.record, named))
            elif detail is not None:  # "if it's already done, just update my details; otherwise cancel it"
                then = f"just update my {words(detail[0])} to {detail[2]}"
                other = detail[1]
                detail = None
            else:
                return None
            if named is not None and detail is not None and world.rng.random() < 0.4:
                name, b_call, value = detail
                otherwise = f"update my {words(name)} to {value} instead"
                gold_action = b_call
            else:
                otherwise = wording.verb_it(target.transition.name)
                gold_action = act(world, target)
        gold: list[GoldCall] = [*world.reach(target.own, target.person, target.record), gold_action]
        results = world.trial(gold)
        if results is None or any(r.is_error for r in results):
            return None
        who, known = world.identity(target.person)
        request = wording.conditional(world.rng, what, wording.state_words(state), then, otherwise) + because(
            gold_action
        )
        user = world.scenario(
            target.person,
            {**known, "which one": what},
            f"Have {what} handled: {then} if it is {wording.state_words(state)}, otherwise {otherwise}.",
            accepts=["Whichever branch the record's state calls for"],
            refuses=["Both branches at once"],
        )
        branch = "then" if first_branch else "else"
        draft = Draft("conditional", f"conditional-{branch}", who, request, user, gold, tags=["discovery", branch])
        draft.person = str(target.person[f"{target.own.customer.name}_id"])
        draft.other = other
        distract(world, draft, target.own, target.person, target.record)
        key = f"{target.own.child.name}_id"
        if gold_action.tool == act(world, target).tool and gold_action.arguments == act(world, target).arguments:
            settle(world, draft, target, target.transition.to)
            if detail is not None:  # the other branch's change of details did not happen
                c = target.own.customer
                draft.checks.append(
                    unchanged(
                        c.plural,
                        f"{c.name}_id",
                        target.person[f"{c.name}_id"],
                        detail[0],
                        target.person.get(detail[0]),
                        f"The {words(detail[0])} on file",
                    )
                )
        else:  # the record stays as it is; the details change
            draft.checks.append(
                unchanged(
                    target.own.child.plural,
                    key,
                    target.key,
                    state_field(target),
                    actual,
                    f"The {words(target.own.child.name)} the user asked about",
                )
            )
        return draft
