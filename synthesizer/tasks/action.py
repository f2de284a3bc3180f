"""Action: one lifecycle step on a record the user names by what they know ("my cleaning with Dr Lewis on
Tuesday 21 April") or by a fact the agent must compute ("my next booking"), or one change of the user's
own details. The one-liners of a batch: kept to a minority by their share."""

from __future__ import annotations

from typing import Any

from servers.spec import GoldCall

from ..naming import words
from . import wording
from .checks import unchanged
from .family import Family, Target, act, because, distract, phrase, register, settle, state_field, targets, verb
from .world import Draft, World, known_dates

__all__ = ["Action", "lifecycle_draft", "detail_change"]

_CONTACT = ("email", "phone", "phone_number", "address", "postcode", "zip_code")


def _dated(target: Target) -> str | None:
    """The record's first date or datetime attribute a user would know (its day)."""
    return next((name for name in known_dates(target.own.child) if target.record.get(name)), None)


def next_of(world: World, target: Target) -> str | None:
    """'my next booking' when ``target`` is the user's earliest future record in its state, else None."""
    column = _dated(target)
    if column is None:
        return None
    now = world.design.clock.strftime("%Y-%m-%d %H:%M:%S")
    field = state_field(target)
    peers = [
        r
        for r in world.records(target.own, target.person)
        if r.get(field) == target.record.get(field) and r.get(column) and str(r[column]) >= now
    ]
    if len(peers) < 2 or str(target.record[column]) < now:
        return None
    first = min(peers, key=lambda r: str(r[column]))
    if first is not target.record or sum(1 for r in peers if r[column] == first[column]) > 1:
        return None
    return f"my next {words(target.own.child.name)}"


def lifecycle_draft(world: World, target: Target, family: str = "action") -> Draft | None:
    """One requested step on ``target``, its reads, distractors and checks (None when the user could not
    name the record, or the tools refuse the step)."""
    what = next_of(world, target) if world.rng.random() < 0.35 else None
    tags = ["computed"] if what else ["discovery"]
    what = what or phrase(world, target)
    if what is None:
        return None
    gold = [*world.reach(target.own, target.person, target.record), act(world, target)]
    results = world.trial(gold)
    if results is None or any(r.is_error for r in results):
        return None
    who, known = world.identity(target.person)
    said = because(gold[-1])
    request = wording.ask(world.rng, verb(target, what), reason=not said) + said
    user = world.scenario(
        target.person,
        {**known, "which one": what},
        f"Get {what} {wording.done_word(target.transition.name)}.",
        accepts=[verb(target, what).capitalize()],
        refuses=["Changes to any other record"],
    )
    draft = Draft(family, f"{family}-lifecycle", who, request, user, gold, tags=[*tags, target.transition.name])
    draft.person = str(target.person[f"{target.own.customer.name}_id"])
    distract(world, draft, target.own, target.person, target.record)
    settle(world, draft, target, target.transition.to)
    return draft


def detail_change(world: World, person: dict[str, Any]) -> tuple[str, GoldCall, Any] | None:
    """A change of the user's own contact details they would ask for: (field, call, value)."""
    c = world.customer
    if c is None:
        return None
    update = world.tool("update", c.name)
    if update is None:
        return None
    schema = world.env.tools[update].input_schema["properties"]
    fields = [n for n in schema if n in _CONTACT]
    if not fields:
        return None
    name = world.rng.choice(sorted(fields))
    value = world.value(c, name, schema[name])
    if value in (None, "") or person.get(name) == value:
        return None
    key = f"{c.name}_id"
    return name, GoldCall(tool=update, arguments={key: person[key], name: value}), value


def detail_sentence(world: World, name: str, value: Any) -> str:
    noun = words(name).replace("phone number", "phone")
    return world.rng.choice(
        [
            f"My {noun} has changed — it's {value} now, please update it.",
            f"Please put {value} on file as my {noun}.",
            f"I have a new {noun} — it's {value}.",
            f"Can you change my {noun} to {value}?",
        ]
    )


@register
class Action(Family):
    name = "action"
    task_family = "action"
    share = 0.18

    def draft(self, world: World) -> Draft | None:
        options = targets(world)
        if world.rng.random() < 0.25 and world.customer is not None:
            person = world.rng.choice(world.rows[world.customer.name])
            change = detail_change(world, person)
            if change is None:
                return None
            name, call, value = change
            who, known = world.identity(person)
            gold = [world.lookup(person), call]
            draft = Draft(
                "action",
                "action-details",
                who,
                detail_sentence(world, name, value),
                world.scenario(person, {**known, f"new {words(name)}": str(value)}, f"Have my {words(name)} updated."),
                gold,
                tags=["details"],
            )
            draft.person = str(person[f"{world.customer.name}_id"])
            key = f"{world.customer.name}_id"
            keep = [
                c
                for c in world.customer.attributes
                if c.name != name and (c.name in _CONTACT or c.name == world.customer.label)
            ]
            for other in keep:
                draft.checks.append(
                    unchanged(
                        world.customer.plural,
                        key,
                        person[key],
                        other.name,
                        person.get(other.name),
                        f"The {words(other.name)} on file",
                    )
                )
            pair = world.namesake(person, first=world.rng.random() < 0.8)
            if pair is not None:
                draft.changes += pair[1]
            return draft
        if not options:
            return None
        return lifecycle_draft(world, world.rng.choice(options))
