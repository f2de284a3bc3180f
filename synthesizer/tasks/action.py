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
from .intents import (
    Due,
    Move,
    Sale,
    dues,
    known_dates_of,
    move,
    move_calls,
    move_checks,
    on,
    pay_call,
    pay_checks,
    paying_method,
    resource_words,
    sale,
    sale_calls,
    sale_checks,
    sale_extras,
    sale_words,
)
from .world import Draft, World, known_dates

__all__ = [
    "Action",
    "lifecycle_draft",
    "detail_change",
    "book_draft",
    "book_request",
    "move_draft",
    "move_request",
    "pay_draft",
]

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


def book_request(world: World, made: Sale) -> str:
    """ "Please book me on the flight from Denver to Atlanta on Friday 12 June at 3 pm — two economy seats, the
    ticket in my name, a vegetarian meal. Put it on my Visa ending 4417." No id, no price: the agent finds the
    resource and the system prices it."""
    rng = world.rng
    where = resource_words(made.resource, made.row)
    what = sale_words(world, made, everything=False)
    extras = sale_extras(world, made)
    more = f" — {extras}" if extras else ""
    word = on(made.resource)
    text = rng.choice(
        [
            f"I'd like {what} {word} {where}{more}.",
            f"I need {what} {word} {where}{more}, please.",
        ]
        + (
            [
                f"Please book me on {where}: {what}{more}.",
                f"Can you get me on {where}? {what[0].upper()}{what[1:]}{more}.",
            ]
            if word == "on"
            else []
        )
    )
    if made.method is not None:
        paid = wording.method(made.method["label"])
        text += rng.choice([f" Put it on {paid}.", f" I'll pay with {paid}.", f" Charge {paid}."])
    return text


def book_draft(world: World, made: Sale | None = None, family: str = "action") -> Draft | None:
    """A booking the user describes by route, day and time: the agent finds the resource, quotes it and books it
    on the named method; the checks are the oracle's (the new record at the computed total, the charge on that
    method, the counter moved), not a copy of the gold run."""
    made = made or sale(world)
    if made is None:
        return None
    gold = sale_calls(world, made)
    results = world.trial(gold)
    if results is None or any(r.is_error for r in results):
        return None
    who, known = world.identity(made.person)
    request = book_request(world, made)
    paid = {"payment method": str(made.method["label"])} if made.method else {}
    user = world.scenario(
        made.person,
        {**known, **paid},
        f"Get booked: {request.rstrip('.')}.",
        accepts=["The price the system computes, once told"],
        refuses=["Another flight, class or payment method than the one asked for"],
    )
    draft = Draft(family, f"{family}-book", who, request, user, gold, tags=["book", "computed", "discovery"])
    draft.person = str(made.person[f"{world.design.principal.name}_id"])
    draft.checks += sale_checks(world, made)
    pair = world.namesake(made.person, first=world.rng.random() < 0.8)
    if pair is not None and world.keeps(pair[1]):
        draft.changes += pair[1]
    return draft


def move_request(world: World, made: Move) -> str | None:
    """ "Please move my booking on the flight from Denver to Atlanta to the next one after it on that route. Any
    difference can go on my gift card 8821." The user names the record and the target by what they know."""
    rng = world.rng
    what = world.describe(made.own, made.record, world.records(made.own, made.person))
    if what is None:
        return None
    noun = words(made.resource.name)
    dates = known_dates_of(made.resource)
    same = list(made.op.same)
    if {"origin", "destination"} <= set(same):
        alike, that = "on the same route", "on that route"
    elif same:
        alike = that = f"with the same {' and '.join(words(a) for a in same)}"
    else:
        alike = that = ""
    if made.next_one and (rng.random() < 0.6 or not dates):
        where = rng.choice([f"the next {noun} after it {alike}", f"the first later {noun} {that}"]).rstrip()
    elif dates:
        where = f"the {noun} on {wording.human_datetime(made.new[dates[0]])} {alike}".rstrip()
    else:
        return None
    paid = wording.method(made.method["label"])
    return rng.choice(
        [
            f"Please move {what} to {where}.",
            f"I need to change {what}: put me on {where} instead.",
            f"Can you switch {what} to {where}?",
        ]
    ) + rng.choice(
        [
            f" Any difference can go on {paid}.",
            f" Settle any difference with {paid}.",
            f" Use {paid} for any difference.",
        ]
    )


def move_draft(world: World, made: Move | None = None, family: str = "action") -> Draft | None:
    """A record moved to another resource the user describes (the next one on the route, or a day and time):
    the oracle re-prices it, and the checks pin the new total, the difference on the chosen method and both
    resources' counters."""
    made = made or move(world)
    if made is None:
        return None
    request = move_request(world, made)
    if request is None:
        return None
    gold = move_calls(world, made)
    results = world.trial(gold)
    if results is None or any(r.is_error for r in results):
        return None
    who, known = world.identity(made.person)
    user = world.scenario(
        made.person,
        {**known, "payment method": str(made.method["label"])},
        f"Get moved: {request.rstrip('.')}.",
        accepts=["The price difference the system computes, once told"],
        refuses=["Another flight than the one asked for", "Cancelling instead of moving"],
    )
    tags = ["transfer", "computed", "discovery"] + (["next"] if "after it" in request or "later" in request else [])
    draft = Draft(family, f"{family}-transfer", who, request, user, gold, tags=tags)
    draft.person = str(made.person[f"{made.own.customer.name}_id"])
    draft.checks += move_checks(world, made)
    distract(world, draft, made.own, made.person, made.record)
    return draft


def pay_draft(world: World, owed: Due | None = None, family: str = "action") -> Draft | None:
    """ "Please pay off what I still owe on my March bill with my checking account." The agent finds the
    record and what is left (the total less the ledger's net payments, by the oracle) and pays exactly that."""
    options = [owed] if owed else dues(world)
    if not options:
        return None
    rng = world.rng
    owed = rng.choice(options)
    method = paying_method(world, owed.person, owed.due)
    what = world.describe(owed.own, owed.record, world.records(owed.own, owed.person))
    if method is None or what is None:
        return None
    c = world.customer
    assert c is not None
    get = world.tool("get", c.name)
    call = pay_call(world, owed, owed.due, method)
    reads = world.reach(owed.own, owed.person, owed.record)
    gold = [
        *reads,
        *([GoldCall(tool=get, arguments={f"{c.name}_id": owed.person[f"{c.name}_id"]})] if get else []),
        call,
    ]
    results = world.trial(gold)
    if results is None or any(r.is_error for r in results):
        return None
    paid = wording.method(method["label"])
    request = rng.choice(
        [
            f"Please pay off what I still owe on {what} with {paid}.",
            f"I'd like to settle the rest of {what} — put it on {paid}.",
            f"Can you pay the remaining balance on {what} from {paid}?",
        ]
    )
    who, known = world.identity(owed.person)
    user = world.scenario(
        owed.person,
        {**known, "which one": what, "payment method": str(method["label"])},
        f"Have {what} paid off.",
        accepts=["Paying exactly what is left"],
        refuses=["Paying more or less than what is left"],
    )
    draft = Draft(family, f"{family}-pay", who, request, user, gold, tags=["pay", "computed", "discovery"])
    draft.person = str(owed.person[f"{owed.own.customer.name}_id"])
    draft.checks += pay_checks(world, owed, owed.due, method)
    distract(world, draft, owed.own, owed.person, owed.record)
    return draft


@register
class Action(Family):
    name = "action"
    task_family = "action"
    share = 0.18

    def draft(self, world: World) -> Draft | None:
        if world.design.world and world.rng.random() < 0.9:  # a legacy world draws nothing here
            kinds = [book_draft, move_draft, pay_draft]
            world.rng.shuffle(kinds)
            for kind in kinds:
                made = kind(world)
                if made is not None:
                    return made
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
