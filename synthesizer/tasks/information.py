"""Information: a question whose answer needs the user's records looked up and combined — a total over
all of them in some states, how many are in a state, the next one coming up. The facts are computed here
over the user's whole scope (never one parent's records only); the ``wrong`` statements are what a
careless agent would say (the namesake's figure, one record's amount instead of the total, the second
date instead of the first)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..money import price as formula
from ..naming import words
from . import wording
from .checks import unchanged
from .family import Family, owner_condition, phrase, register, state_field
from .intents import cancellable, dues, nothing_charged, on, resource_words, sale, sale_calls, sale_words
from .world import Draft, Ownership, World, known_dates

__all__ = ["Information"]


def _money_attr(own: Ownership) -> tuple[str, float] | None:
    """The record's amount and its scale to dollars: a money column in cents (new worlds) or a real in dollars."""
    for attr in own.child.attributes:
        if attr.type == "money":
            return attr.name, 0.01
        if attr.generator.startswith("money") and attr.type == "real" and "weight" not in attr.name:
            return attr.name, 1.0
    return None


def _date_attr(own: Ownership) -> str | None:
    dates = known_dates(own.child)
    return dates[0] if dates else None


@register
class Information(Family):
    name = "information"
    task_family = "information"
    share = 0.15

    def draft(self, world: World) -> Draft | None:
        if world.design.world and world.rng.random() < 0.7:  # a legacy world draws nothing here
            kinds = ["quote", "refund", "owe"]
            world.rng.shuffle(kinds)
            for kind in kinds:
                made = getattr(self, kind)(world)
                if made is not None:
                    return made
        owns = [o for o in world.ownerships() if o.child.lifecycle is not None]
        if not owns:
            return None
        own = world.rng.choice(owns)
        people = list(world.rows[own.customer.name])
        world.rng.shuffle(people)
        kinds = ["total", "next"]  # a bare count is read off one listing and echoed by a script: not published
        world.rng.shuffle(kinds)
        for person in people[:8]:
            records = world.records(own, person)
            if len(records) < 2:
                continue
            for kind in kinds:
                made = getattr(self, kind)(world, own, person, records)
                if made is not None:
                    return made
        return None

    # -- questions about intent operations (world designs): the figure is the oracle's ------------------

    def quote(self, world: World) -> Draft | None:
        """ "How much would two business seats on the Friday 3 pm flight to Atlanta be for me?" The answer is
        the formula's total for this person (their discount included); wrong are the total without the
        discount, the total before tax, and the namesake's price (a different tier)."""
        made = sale(world, pay=False)
        if made is None or made.quote is None:
            return None
        rng, person = world.rng, made.person
        what = (
            f"{sale_words(world, made, everything=False)} {on(made.resource)} {resource_words(made.resource, made.row)}"
        )
        body = rng.choice([f"how much {what} would come to", f"what I'd pay for {what}", f"the price of {what}"])
        who, known = world.identity(person)
        request = wording.question(rng, body) + rng.choice(["", " I'm not booking yet.", " Just the price for now."])
        user = world.scenario(person, known, f"Find out {body}.", accepts=["The price, tax included"])
        gold = sale_calls(world, made, book=False)
        draft = Draft("information", "information-quote", who, request, user, gold, tags=["quote", "computed"])
        draft.person = str(person[f"{world.design.principal.name}_id"])
        total = made.price.total_cents
        draft.facts = [wording.cents(total)]
        pricing = world.design.domain.pricing[made.op.price]
        cls = made.inputs.get(pricing.multiplier.by) if pricing.multiplier else None
        p = made.price
        wrong = [formula(pricing, p.unit_cents, p.quantity, cls, None).total_cents, total - p.tax_cents]
        pair = world.namesake(person, first=True)
        if pair is not None and world.keeps(pair[1]):
            twin, changes = pair
            draft.changes += changes
            p_id = f"{world.design.principal.name}_id"
            theirs = world.price(
                made.op.price, made.entity, {**made.arguments(world, quote=True), p_id: twin[p_id]}, changes
            )
            wrong.append(theirs.total_cents)
        draft.wrong = [wording.cents(w) for w in dict.fromkeys(wrong) if w != total]
        draft.checks += nothing_charged(world, person, made.entity)
        return draft

    def refund(self, world: World) -> Draft | None:
        """ "If I cancelled my Seattle trip today, how much would I get back?" The answer is the tier's share of
        what was paid, by the oracle; wrong is what was paid (or the next tier's share when all comes back).
        Nothing is cancelled."""
        options = [c for c in cancellable(world) if c.refund.percent > 0]
        if not options:
            return None
        rng = world.rng
        chosen = rng.choice(options)
        target, refund = chosen.target, chosen.refund
        what = phrase(world, target)
        if what is None:
            return None
        body = rng.choice(
            [
                f"how much I would get back if I cancelled {what} today",
                f"what refund I'd get if I cancelled {what} today",
                f"how much I'd get back on {what} if I cancelled it today",
            ]
        )
        who, known = world.identity(target.person)
        request = (
            wording.question(rng, body)
            + f" (Today is {wording.human_date(world.now)}.)"
            + rng.choice([" I'm not cancelling yet, just asking.", " Don't cancel anything yet.", ""])
        )
        user = world.scenario(
            target.person, {**known, "which one": what}, f"Find out {body}.", accepts=["The amount I would get back"]
        )
        gold = world.reach(target.own, target.person, target.record)
        draft = Draft("information", "information-refund", who, request, user, gold, tags=["refund", "computed"])
        draft.person = str(target.person[f"{target.own.customer.name}_id"])
        draft.facts = [wording.cents(refund.total)]
        percents = [t.percent for t in chosen.op.refund.tiers]
        later = [q for q in percents if q < refund.percent and q > 0]
        wrong = [refund.paid] if refund.paid != refund.total else [world.share(refund.paid, q) for q in later[:1]]
        draft.wrong = [wording.cents(w) for w in wrong if w != refund.total]
        key = f"{target.own.child.name}_id"
        draft.checks.append(
            unchanged(
                target.own.child.plural,
                key,
                target.key,
                state_field(target),
                target.record[state_field(target)],
                f"The {words(target.own.child.name)} the user asked about",
            )
        )
        draft.checks += nothing_charged(world, target.person)
        return draft

    def owe(self, world: World) -> Draft | None:
        """ "What do I still owe on my March water bill?" The total less the ledger's net payments (the oracle's
        due, not the record's own paid column); wrong is the full total."""
        options = dues(world)
        world.rng.shuffle(options)
        for owed in options[:10]:
            what = world.describe(owed.own, owed.record, world.records(owed.own, owed.person))
            if what is None:
                continue
            body = world.rng.choice([f"what I still owe on {what}", f"how much is left to pay on {what}"])
            who, known = world.identity(owed.person)
            user = world.scenario(owed.person, {**known, "which one": what}, f"Find out {body}.")
            gold = world.reach(owed.own, owed.person, owed.record)
            request = wording.question(world.rng, body)
            draft = Draft("information", "information-owe", who, request, user, gold, tags=["owe", "computed"])
            draft.person = str(owed.person[f"{owed.own.customer.name}_id"])
            draft.facts = [wording.cents(owed.due)]
            draft.wrong = [wording.cents(owed.total)] if owed.total != owed.due else []
            draft.checks += nothing_charged(world, owed.person)
            return draft
        return None

    def _draft(
        self,
        world: World,
        own: Ownership,
        person: dict[str, Any],
        body: str,
        facts: list[str],
        template: str,
        wrong: list[str],
        shared: list[dict[str, Any]],
        alter: dict[str, Any] | None = None,
    ) -> Draft:
        who, known = world.identity(person)
        request = wording.question(world.rng, body)
        user = world.scenario(person, known, f"Find out {body}.", accepts=["A figure taken from my own records"])
        gold = world.reach(own, person)
        draft = Draft("information", f"information-{template}", who, request, user, gold, tags=[template])
        draft.facts, draft.person = facts, str(person[f"{own.customer.name}_id"])
        pair = world.namesake(person, first=True)
        added = False
        if pair is not None and world.keeps([*draft.changes, *pair[1]]):
            twin, changes = pair
            draft.changes += changes
            for record in shared:  # the namesake holds a record like the user's: their figure differs
                extra = world.look_alike(own, {**record, **(alter or {})}, twin)
                if extra and world.keeps([*draft.changes, *extra]):
                    draft.changes += extra
                    added = True
        if not added:  # the last wrong statement is the namesake's figure: without their record, nobody says it
            wrong = wrong[:-1]
        life = own.child.lifecycle
        if life is not None and shared:  # a state check: the question leaves the user's records as they were
            what = f"{words(own.customer.name).capitalize()}'s {words(own.child.plural)}"
            draft.counts.append(
                (own.child.plural, owner_condition(world, own, person), life.field, shared[0][life.field], what)
            )
        draft.wrong = [w for w in dict.fromkeys(wrong) if w and w not in facts and not any(w in f for f in facts)]
        return draft

    def total(
        self, world: World, own: Ownership, person: dict[str, Any], records: list[dict[str, Any]]
    ) -> Draft | None:
        money = _money_attr(own)
        life = own.child.lifecycle
        if money is None or life is None:
            return None
        column, scale = money
        states = sorted({r[life.field] for r in records})
        world.rng.shuffle(states)
        for state in states:
            chosen = [r for r in records if r[life.field] == state and r.get(column) is not None]
            if len(chosen) < 2:
                continue
            total = round(sum(float(r[column]) for r in chosen) * scale, 2)
            everything = round(sum(float(r[column]) for r in records if r.get(column) is not None) * scale, 2)
            noun = words(own.child.plural)
            name = column.removesuffix("_cents")
            what = "" if name in ("total", "amount", "total_amount", "price") else f"the {words(name)}s on "
            kind = f"{noun} that are {state_words(state)}"
            if state[:4] != noun[:4]:  # "my paid invoices", but not "my booked bookings"
                kind = world.rng.choice([kind, f"{state_words(state)} {noun}"])
            body = world.rng.choice(
                [
                    f"what {what}my {kind} come to in total",
                    f"how much {what or 'all '}my {kind} add up to",
                    f"the total for all my {kind}",
                ]
            )
            factor = world.rng.choice([0.55, 0.8, 1.35, 1.6])
            raw = round(float(chosen[0][column]) * factor, 2) if scale == 1 else int(chosen[0][column] * factor)
            twin_amount = round(raw * scale, 2)
            if pair_amount_clash(twin_amount, records, column, scale) or twin_amount == total:
                continue
            return self._draft(
                world,
                own,
                person,
                body,
                [wording.money(total)],
                "total",
                [wording.money(everything), wording.money(twin_amount)],
                chosen[:1],
                {column: raw},
            )
        return None

    def next(self, world: World, own: Ownership, person: dict[str, Any], records: list[dict[str, Any]]) -> Draft | None:
        column = _date_attr(own)
        life = own.child.lifecycle
        if column is None or life is None:
            return None
        now = world.design.clock.strftime("%Y-%m-%d %H:%M:%S")
        active = [r for r in records if r.get(column) and str(r[column]) >= now and r[life.field] == life.initial]
        if len(active) < 2:
            return None
        ordered = sorted(active, key=lambda r: str(r[column]))
        first, second = ordered[0], ordered[1]
        if str(first[column])[:10] == str(second[column])[:10]:
            return None
        noun = words(own.child.name)
        body = world.rng.choice(
            [
                f"when my next {noun} is",
                f"the date of my next {noun}",
                f"which day my next {noun} falls on",
            ]
        )
        earlier = _earlier(str(first[column]), now, {str(r[column])[:10] for r in records if r.get(column)})
        if earlier is None:
            return None
        return self._draft(
            world,
            own,
            person,
            body,
            [wording.answer_date(first[column])],
            "next",
            [wording.answer_date(earlier)],
            [first],
            {column: earlier},
        )

    def count(
        self, world: World, own: Ownership, person: dict[str, Any], records: list[dict[str, Any]]
    ) -> Draft | None:
        life = own.child.lifecycle
        if life is None or own.middle is None:  # a count within one listing is read off, not worked out
            return None
        by_state: dict[str, int] = {}
        for r in records:
            by_state[r[life.field]] = by_state.get(r[life.field], 0) + 1
        states = [s for s, n in sorted(by_state.items()) if n >= 2]
        if not states:
            return None
        state = world.rng.choice(states)
        n = by_state[state]
        noun = words(own.child.plural)
        body = world.rng.choice(
            [
                f"how many of my {noun} are {state_words(state)} right now, across everything I have",
                f"the number of {noun} I have that are {state_words(state)}",
            ]
        )
        fact = f"{n} {noun}" if world.rng.random() < 0.0 else str(n)
        return self._draft(
            world, own, person, body, [fact], "count", [], [r for r in records if r[life.field] == state][:1]
        )


def pair_amount_clash(amount: float, records: list[dict[str, Any]], column: str, scale: float = 1.0) -> bool:
    """The namesake's altered amount equals one of the user's own (it would then be no wrong answer)."""
    return any(r.get(column) is not None and round(float(r[column]) * scale, 2) == amount for r in records)


def _earlier(first: str, now: str, taken: set[str]) -> str | None:
    """A moment between now and ``first`` on a day none of the user's records falls on (the namesake's next
    one comes sooner than the user's)."""
    start, end = datetime.fromisoformat(now), datetime.fromisoformat(first if len(first) > 10 else first + " 00:00:00")
    day = start + timedelta(days=1)
    while day.date() < end.date():
        if day.date().isoformat() not in taken:
            moment = day.replace(hour=end.hour, minute=end.minute, second=0)
            return moment.strftime("%Y-%m-%d %H:%M:%S") if len(first) > 10 else moment.date().isoformat()
        day += timedelta(days=1)
    return None


def state_words(state: str) -> str:
    return wording.state_words(state)
