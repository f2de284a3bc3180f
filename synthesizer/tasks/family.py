"""The interface every task family implements, the registry of families, and the pieces they share
(a user's actionable records, an act on one, the distractors around it); what they share about intent
operations is in ``intents``.

A family is one module that knows how to draft one kind of task (``draft``) and what share of a batch
it should make (``share``); the synthesis loop asks the registry for the family furthest below its
share and never asks which family it holds. Adding a family: write ``synthesizer/tasks/<name>.py``
with a ``@register``-ed :class:`Family` and import it in ``synthesizer/tasks/__init__.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from servers.spec import GoldCall

from ..catalog import Transition
from ..naming import words
from . import wording
from .checks import unchanged
from .world import Draft, Ownership, World, literal

__all__ = [
    "Family",
    "FAMILIES",
    "register",
    "Target",
    "REQUESTABLE",
    "targets",
    "allowed",
    "act",
    "because",
    "distract",
    "settle",
]

REQUESTABLE = frozenset(
    "cancel pay check confirm return renew withdraw close submit reactivate pause resume upgrade downgrade accept "
    "decline extend dispute redeem activate suspend reschedule refund settle release unlock archive freeze unfreeze "
    "collect claim void complete finalize report hold request book reserve start stop".split()
)
"""First words of transitions a customer asks for themselves (not 'mark_no_show', 'ship', 'assign').
Worlds with principals will say this per operation; until then it is the synthesizer's judgement."""


class Family(ABC):
    name: ClassVar[str]  # the Task.family value (or a sub-family tagged on an action)
    task_family: ClassVar[str]  # servers.spec.TaskFamily
    share: ClassVar[float]  # the share of a batch this family aims for

    @abstractmethod
    def draft(self, world: World) -> Draft | None:
        """One draft, or None when the world offers nothing for this family (counted, then retried)."""


FAMILIES: dict[str, Family] = {}


def register(cls: type[Family]) -> type[Family]:
    FAMILIES[cls.name] = cls()
    return cls


@dataclass
class Target:
    """A record of the user's a transition can act on."""

    own: Ownership
    person: dict[str, Any]
    record: dict[str, Any]
    transition: Transition

    @property
    def key(self) -> Any:
        return self.record[f"{self.own.child.name}_id"]


def targets(world: World, *, requestable: bool = True) -> list[Target]:
    """Every (record, transition) a customer could ask for, with its owner, in a stable order."""
    found = []
    for own in world.ownerships():
        life = own.child.lifecycle
        if life is None:
            continue
        for transition in life.transitions:
            if requestable and not allowed(world, own.child.name, transition.name):
                continue
            if world.tool("transition", own.child.name, transition=transition.name) is None:
                continue
            for record in world.rows[own.child.name]:
                if record.get(life.field) in transition.from_states:
                    person = world.owner_of(own, record)
                    if person is not None:
                        found.append(Target(own, person, record, transition))
    return found


def allowed(world: World, entity: str, transition: str) -> bool:
    """Whether a customer may ask for this step: the world's word where it has principals, else the verb's."""
    said = world.requestable(entity, transition)
    return transition.split("_")[0] in REQUESTABLE if said is None else said


def act(world: World, target: Target) -> GoldCall:
    """The call that performs the target's step: its id, the person's id where the tool acts for them, and
    the first value of any other required choice (a reason; the wording says it: :func:`because`)."""
    entity = target.own.child
    tool = world.need("transition", entity.name, transition=target.transition.name)
    arguments: dict[str, Any] = {f"{entity.name}_id": target.key, **world.principal_arguments(tool, target.person)}
    schema = world.env.tools[tool].input_schema
    for name in schema.get("required", []):
        if name not in arguments and schema["properties"][name].get("enum"):
            options = [v for v in schema["properties"][name]["enum"] if v != "other"] or schema["properties"][name][
                "enum"
            ]
            accepted = _accepted(world, tool, name)
            options = [v for v in options if accepted is None or v in accepted] or options
            arguments[name] = options[_pick(str(target.key), len(options))]
    return GoldCall(tool=tool, arguments=arguments)


def _accepted(world: World, tool: str, parameter: str) -> set[str] | None:
    """The values the policy accepts for a choice the tool takes (a cancel's reasons under ``reason_allowed``),
    or None when the policy says nothing (legacy designs never do)."""
    from ..policies import allowed_values

    values = allowed_values(world.design, tool, parameter) if world.design.world else None
    return None if values is None else set(values)


def _pick(key: str, size: int) -> int:
    """A stable choice by a record's id (no rng draw: the same target always gets the same reason)."""
    return sum(map(ord, key)) % size


_REASONS = {
    "cheaper_fare_elsewhere": " I found a cheaper fare elsewhere.",
    "change_of_plans": " My plans changed.",
    "illness": " I'm ill, unfortunately.",
    "schedule_change": " The schedule changed on me.",
    "other": "",
}


def because(call: GoldCall) -> str:
    """What the user says that sets an act's reason argument, if it has one ('My plans changed.')."""
    reason = call.arguments.get("reason")
    if reason is None:
        return ""
    return _REASONS.get(str(reason), f" The reason is {words(str(reason))}.")


def state_field(target: Target) -> str:
    assert target.own.child.lifecycle is not None
    return target.own.child.lifecycle.field


def distract(
    world: World,
    draft: Draft,
    own: Ownership,
    person: dict[str, Any],
    record: dict[str, Any] | None,
    *,
    first: bool = False,
) -> None:
    """Add a decoy of ``record`` (another customer's, listed first), a namesake and a look-alike of
    ``record`` for them to the draft's world, each only if the world stays coherent (no invariant
    broken), with a check that the decoy and the look-alike are left alone."""
    life = own.child.lifecycle
    key = f"{own.child.name}_id"
    if record is not None:
        made = world.decoy(own, record)
        if made is not None and world.keeps([*draft.changes, made[1]]):
            decoy, change = made
            draft.changes.append(change)
            if life is not None:
                draft.checks.append(
                    unchanged(
                        own.child.plural,
                        key,
                        decoy[key],
                        life.field,
                        decoy[life.field],
                        f"Another customer's {words(own.child.name)} like it",
                    )
                )
    pair = world.namesake(person, first=first or world.rng.random() < 0.8)
    if pair is None or not world.keeps([*draft.changes, *pair[1]]):
        return
    twin, changes = pair
    draft.changes += changes
    if record is None:
        return
    extra = world.look_alike(own, record, twin)
    if not extra or not world.keeps([*draft.changes, *extra]):
        return
    draft.changes += extra
    for change in extra:
        row = change.rows[0]  # type: ignore[union-attr]
        column = life.field if life else next(iter(row))
        draft.checks.append(
            unchanged(
                own.child.plural,
                key,
                row[key],
                column,
                row[column],
                f"A namesake's {words(own.child.name)} like it",
            )
        )


def owner_condition(world: World, own: Ownership, person: dict[str, Any]) -> str:
    """SQL selecting ``person``'s records of the kind."""
    key = literal(person[f"{own.customer.name}_id"])
    if own.middle is None:
        return f"{own.column} = {key}"
    return f"{own.column} IN (SELECT {own.middle.name}_id FROM {own.middle.plural} WHERE {own.up} = {key})"


def settle(world: World, draft: Draft, target: Target, state: str) -> None:
    """Ask for a count check: after the task, as many of the user's records of the kind are in ``state`` as
    the gold leaves (an independent check beside the diff's; the number is read from the gold's final state)."""
    own = target.own
    what = f"{words(own.customer.name).capitalize()}'s {words(own.child.plural)}"
    draft.counts.append(
        (own.child.plural, owner_condition(world, own, target.person), state_field(target), state, what)
    )


def phrase(world: World, target: Target) -> str | None:
    """How the user names the target: by what they know of it, told apart from their other records."""
    among = world.records(target.own, target.person)
    return world.describe(target.own, target.record, among)


def verb(target: Target, what: str) -> str:
    """The request's action: the target's transition done to ``what``."""
    return wording.verb_phrase(target.transition.name, what)
