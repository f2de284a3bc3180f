"""What task families share about a world's intent operations with computed effects: a sale the user
describes in their own words (a flight by route and time, never an id), a cancellable record and its refund,
a move with its recomputed difference, what is still owed, a change to a record — each with its calls and the
checks the oracle's amounts give (``synthesizer.oracle``, never the tool's own output)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from servers.spec import Check, GoldCall

from ..catalog import Entity
from ..money import PriceBreakdown
from ..naming import words
from . import wording
from .checks import unchanged
from .family import Target, targets
from .world import Ownership, Refund, World, literal

__all__ = [
    "known_dates_of",
    "on_sale",
    "Sale",
    "sale",
    "sale_calls",
    "sale_checks",
    "sale_words",
    "sale_extras",
    "resource_words",
    "on",
    "Cancellable",
    "cancellable",
    "nothing_charged",
    "Move",
    "move",
    "move_calls",
    "move_checks",
    "Due",
    "dues",
    "pay_call",
    "pay_checks",
    "paying_method",
    "Change",
    "change",
    "change_call",
    "change_words",
    "change_checks",
]


@dataclass
class Sale:
    """A booking the user could ask for, or ask the price of: who, on which resource, the choices they state,
    the method they pay with, and the price the independent oracle computes from the seed's rows."""

    op: Any  # the declared book operation
    book: str  # its tool
    quote: str | None  # the quote tool over the same resource and pricing, if the world has one
    entity: Entity  # what is booked (booking)
    resource: Entity  # what it is booked on (flight)
    column: str  # the booked entity's column naming the resource
    person: dict[str, Any]
    row: dict[str, Any]  # the resource's row
    inputs: dict[str, Any]  # the booked entity's inputs, as the user states them
    method: dict[str, Any] | None
    price: PriceBreakdown
    extra: dict[str, Any] = field(default_factory=dict)  # what the wording used (route attributes)

    @property
    def key(self) -> Any:
        return self.row[f"{self.resource.name}_id"]

    def arguments(self, world: World, *, quote: bool = False) -> dict[str, Any]:
        """The book call's arguments (the quote call's, with ``quote``: only what the formula reads)."""
        p_id = f"{world.design.principal.name}_id"
        tool = self.quote if quote else self.book
        assert tool is not None
        properties = world.env.tools[tool].input_schema.get("properties", {})
        arguments: dict[str, Any] = {p_id: self.person[p_id], self.column: self.key}
        arguments |= {k: v for k, v in self.inputs.items() if k in properties}
        if not quote and self.method is not None and "payment_method_id" in properties:
            arguments["payment_method_id"] = self.method["method_id"]
        return arguments


_ROUTE = ("origin", "destination")


def _route(resource: Entity) -> list[str]:
    """The resource's attributes a user names it by besides its moment: origin and destination."""
    names = {a.name for a in resource.attributes}
    return list(_ROUTE) if set(_ROUTE) <= names else []


def _named(resource: Entity) -> list[str]:
    """Without a route or a moment, what a user names a resource by: its label (a trim name, a room type) and
    one choice attribute (a colour), when the label is not a code."""
    if _route(resource) or known_dates_of(resource):
        return []
    label = next((a for a in resource.attributes if a.name == resource.label), None)
    if label is None or label.generator.startswith("code") or label.unique and label.generator != "pick":
        return []
    choice = next(
        (a for a in resource.attributes if a.generator == "choice" and a.name not in ("status", resource.label)), None
    )
    return [label.name] + ([choice.name] if choice else [])


def on(resource: Entity) -> str:
    """The preposition between what is bought and the resource: 'two seats on the flight ...', 'one vehicle of
    the Camry SE in Celestial Silver'."""
    return "of" if _named(resource) else "on"


def resource_words(resource: Entity, row: dict[str, Any]) -> str:
    """'the flight from Denver to Atlanta on Friday 12 June at 3 pm', 'the Camry XLE in Celestial Silver': what a
    user knows of a resource."""
    named = _named(resource)
    if named:
        text = f"the {row[named[0]]}"
        if len(named) > 1 and row.get(named[1]) is not None:
            text += f" in {words(str(row[named[1]]))}" if "colo" in named[1] else f" ({words(str(row[named[1]]))})"
        return text
    parts = [f"the {words(resource.name)}"]
    route = _route(resource)
    if route:
        parts.append(f"from {wording.place(row[route[0]])} to {wording.place(row[route[1]])}")
    dates = known_dates_of(resource)
    if dates and row.get(dates[0]):
        parts.append(f"on {wording.human_datetime(row[dates[0]])}")
    return " ".join(parts)


def known_dates_of(entity: Entity) -> list[str]:
    from .world import known_dates

    return known_dates(entity)


def _signature(resource: Entity, row: dict[str, Any]) -> tuple[Any, ...]:
    dates = known_dates_of(resource)
    named = tuple(row.get(a) for a in _named(resource))
    return named + tuple(row.get(a) for a in _route(resource)) + tuple(str(row.get(d))[:16] for d in dates[:1])


_CODE = re.compile(r"\b[A-Z][A-Z0-9]{0,7}-(?=[A-Z0-9]*\d)[A-Z0-9]{2,}\b")


def _inputs(world: World, sale_op: Any, entity: Entity, person: dict[str, Any], tool: str) -> dict[str, Any]:
    """The booked entity's inputs a user chooses: how many, which class, a meal; the ticket in their own name."""
    schema = world.env.tools[tool].input_schema.get("properties", {})
    c = world.customer
    pricing = world.design.domain.pricing[sale_op.price]
    amount = pricing.quantity.input
    chosen: dict[str, Any] = {}
    for attr in entity.attributes:
        if not attr.input or attr.name not in schema:
            continue
        options = schema[attr.name].get("enum")
        if attr.name == amount:
            chosen[attr.name] = world.rng.choice([1, 1, 2, 2, 3])
        elif options:
            chosen[attr.name] = world.rng.choice(options)
        elif (
            attr.type == "text"
            and c is not None
            and (attr.generator in ("person_name", "name") or attr.generator.startswith("companion_of"))
        ):
            chosen[attr.name] = person[c.label]
        else:
            for _ in range(6):  # a value that reads like an internal code is drawn again (a plate like 'AB-123')
                chosen[attr.name] = world.value(entity, attr.name, schema[attr.name])
                if not _CODE.search(str(chosen[attr.name])):
                    break
    return chosen


def sale(world: World, person: dict[str, Any] | None = None, *, pay: bool = True) -> Sale | None:
    """A booking ``person`` (or someone) could make now on a resource their words pick out, priced by the oracle:
    the resource is on sale, in the future, with room for the seats; with ``pay``, one of their methods covers
    it. None when the world has no such booking."""
    c = world.customer
    books = [
        (op, tool)
        for op, tool in world.ops("book")
        if not world.design.owned(world.design.entity(op.resource)) and world.tool("search", op.resource)
    ]
    if c is None or not books:
        return None
    op, tool = world.rng.choice(books)
    entity, resource = world.design.entity(op.entity), world.design.entity(op.resource)
    column = next(r.column for r in entity.relations if r.to == op.resource)
    quote = next(
        (
            t
            for q, t in world.ops("quote")
            if q.entity == op.entity and q.resource == op.resource and q.price == op.price
        ),
        None,
    )
    life = resource.lifecycle
    dates = known_dates_of(resource)
    rows = [
        r
        for r in world.rows[resource.name]
        if (life is None or r[life.field] == life.initial) and (not dates or str(r[dates[0]]) > world.now)
    ]
    signatures = [_signature(resource, r) for r in world.rows[resource.name]]
    rows = [r for r in rows if signatures.count(_signature(resource, r)) == 1]  # the user's words pick one out
    if not rows:
        return None
    people = [person] if person is not None else list(world.rows[c.name])
    world.rng.shuffle(people)
    counter = op.availability.counter if op.availability.mode == "counter" else None
    for who in people[:12]:
        methods = world.methods(who)
        if pay and not methods:
            continue
        row = world.rng.choice(rows)
        inputs = _inputs(world, op, entity, who, tool)
        amount = op.availability.amount
        if counter and amount and row[counter] < inputs.get(amount, 1):
            continue
        p_id = f"{c.name}_id"
        arguments = {p_id: who[p_id], column: row[f"{resource.name}_id"], **inputs}
        price = world.price(op.price, entity, arguments)
        method = None
        if pay:
            fits = [
                m for m in methods if m.get("balance_cents") is None or int(m["balance_cents"]) >= price.total_cents
            ]
            if not fits:
                continue
            method = world.rng.choice(fits)
        return Sale(op, tool, quote, entity, resource, column, who, row, inputs, method, price)
    return None


def sale_words(world: World, made: Sale, *, everything: bool = True) -> str:
    """'two business seats', 'a cleaning appointment for two half hours' (with ``everything``: and the other
    choices, 'in my own name, with a vegetarian meal')."""
    pricing = world.design.domain.pricing[made.op.price]
    amount = pricing.quantity.input
    cls = pricing.multiplier.by if pricing.multiplier else None
    kind = words(str(made.inputs[cls])) if cls and cls in made.inputs else ""
    if amount and "_" not in amount:  # 'seats', 'nights': counted things
        text = wording.count(int(made.inputs.get(amount, 1)), f"{kind} {words(amount)}".strip())
    else:
        text = wording.a(f"{kind} {words(made.entity.name)}".strip())
        if amount:
            text += f" for {wording.count(int(made.inputs.get(amount, 1)), words(amount))}"
    extras = sale_extras(world, made)
    return text + (", " + extras if everything and extras else "")


def sale_extras(world: World, made: Sale) -> str:
    """The choices besides how many and which class: 'in my own name, with a vegetarian meal'."""
    pricing = world.design.domain.pricing[made.op.price]
    skip = {pricing.quantity.input, pricing.multiplier.by if pricing.multiplier else None}
    extras = []
    c = world.customer
    for name, value in made.inputs.items():
        attr = next((a for a in made.entity.attributes if a.name == name), None)
        if name in skip or attr is None:
            continue
        noun = words(name)
        if c is not None and value == made.person.get(c.label):
            extras.append(world.rng.choice([f"the {noun} in my name", "under my name", "in my own name"]))
        elif attr.type == "money":  # cents in the tools, dollars in people's mouths
            extras.append(f"{words(name.removesuffix('_cents'))} of {wording.money(value / 100)}")
        elif isinstance(value, bool) or attr.type == "boolean":
            thing = words(name.removesuffix("_requested").removesuffix("_needed"))
            extras.append(f"I'd like {wording.a(thing)}" if value else f"no {thing} needed")
        elif attr.enum and str(value) in ("none", "no"):  # nothing special asked for, said so
            extras.append(f"no {noun.removesuffix('s')}")
        elif attr.enum:
            extras.append(f"with {wording.a(words(str(value)) + ' ' + noun.split()[0])}")
        elif attr.type in ("date", "datetime"):
            when = wording.human_datetime(value) if attr.type == "datetime" else wording.human_date(value)
            extras.append(f"{words(name.removesuffix('_at').removesuffix('_on').removesuffix('_date'))} on {when}")
        else:
            extras.append(f"{noun} {value}")
    return ", ".join(extras)


def sale_calls(world: World, made: Sale, *, book: bool = True, lookup: bool = True) -> list[GoldCall]:
    """The gold reads that find the resource and price it, then (with ``book``) the booking: the person's
    lookup, a search by what the user said, their profile (payment methods), the quote, the book call."""
    calls = [world.lookup(made.person)] if lookup else []
    search = world.need("search", made.resource.name)
    properties = world.env.tools[search].input_schema.get("properties", {})
    arguments = {a: made.row[a] for a in _route(made.resource) if a in properties}
    named = _named(made.resource)
    if named and "query" in properties:  # found by its name; a choice the user said narrows it
        arguments["query"] = made.row[named[0]]
        arguments |= {a: made.row[a] for a in named[1:] if a in properties}
    calls.append(GoldCall(tool=search, arguments=arguments))
    c = world.customer
    get = world.tool("get", c.name) if c else None
    if book and made.method is not None and get is not None and c is not None:
        calls.append(GoldCall(tool=get, arguments={f"{c.name}_id": made.person[f"{c.name}_id"]}))
    if made.quote is not None:
        calls.append(GoldCall(tool=made.quote, arguments=made.arguments(world, quote=True)))
    if book:
        calls.append(GoldCall(tool=made.book, arguments=made.arguments(world)))
    return calls


def _owner_column(world: World, entity: Entity) -> str | None:
    c = world.customer
    return next((r.column for r in entity.relations if c is not None and r.to == c.name), None)


def sale_checks(world: World, made: Sale) -> list[Check]:
    """Checks from the oracle, not from the tool's run: a new record for the person on the chosen resource at
    the computed total, a charge of that total on their chosen method, the resource's counter moved by the
    seats, a stored-value balance down by the total."""
    entity, resource, total = made.entity, made.resource, made.price.total_cents
    owner = _owner_column(world, entity)
    c = world.customer
    assert c is not None
    who = f"{owner} = {literal(made.person[f'{c.name}_id'])} AND " if owner else ""
    mine = f"{who}{made.column} = {literal(made.key)}"
    priced = [a.name for a in entity.attributes if a.derive and a.derive.price == made.op.price]
    conditions = [mine] + [f"{p} = {total}" for p in priced]
    conditions += [f"{k} = {literal(v)}" for k, v in sorted(made.inputs.items())]
    checks = [
        Check(
            description=f"A new {words(entity.name)} on the {words(resource.name)} asked for, at the computed "
            f"{wording.cents(total)}",
            sql=f"SELECT 1 FROM {entity.plural} WHERE {' AND '.join(conditions)}",
        )
    ]
    if made.method is not None:
        checks.append(
            Check(
                description=f"{wording.cents(total)} charged to the method the user chose",
                sql=f"SELECT 1 FROM payments WHERE method_id = {literal(made.method['method_id'])} AND kind = 'charge' "
                f"AND amount_cents = {total} AND {entity.name}_id IN (SELECT {entity.name}_id FROM {entity.plural} "
                f"WHERE {mine})",
            )
        )
        if made.method.get("balance_cents") is not None:
            checks.append(
                Check(
                    description="The stored value paid the total",
                    sql=f"SELECT 1 FROM payment_methods WHERE method_id = {literal(made.method['method_id'])} AND "
                    f"balance_cents = {int(made.method['balance_cents']) - total}",
                )
            )
    if made.op.availability.mode == "counter":
        counter, amount = made.op.availability.counter, made.op.availability.amount
        left = int(made.row[counter]) - int(made.inputs.get(amount, 1))
        checks.append(
            Check(
                description=f"The {words(resource.name)}'s {words(counter)} went down by the seats booked",
                sql=f"SELECT 1 FROM {resource.plural} WHERE {resource.name}_id = {literal(made.key)} AND "
                f"{counter} = {left}",
            )
        )
    return checks


def nothing_charged(world: World, person: dict[str, Any], entity: Entity | None = None) -> list[Check]:
    """A question or a branch not taken moves no money and adds no record for the user."""
    c = world.customer
    assert c is not None
    checks = [
        Check(
            description="Nothing was charged or refunded",
            sql=f"SELECT COUNT(*) = {len(world.ledger.get('payments', []))} FROM payments",
            expect="true",
        )
    ]
    owner = _owner_column(world, entity) if entity is not None else None
    if entity is not None and owner is not None:
        key = person[f"{c.name}_id"]
        held = sum(1 for r in world.rows[entity.name] if r.get(owner) == key)
        checks.append(
            Check(
                description=f"No new {words(entity.name)} for the user",
                sql=f"SELECT COUNT(*) = {held} FROM {entity.plural} WHERE {owner} = {literal(key)}",
                expect="true",
            )
        )
    return checks


@dataclass
class Cancellable:
    """A record the user could cancel, with what the oracle says cancelling it now would give back."""

    target: Target
    op: Any
    refund: Refund


def cancellable(world: World, *, margin_hours: int = 16) -> list[Cancellable]:
    """The user's records a refunding cancel applies to now, each with its oracle refund, far enough from
    every tier boundary that the day (which the user says) decides the tier, whatever the hour; and whose
    refund is one rounding of what was paid (so an agent working from the total gets the same figure)."""
    found = []
    for op, _ in world.ops("cancel"):
        if op.refund is None:
            continue
        edges = world.tier_edges(op)
        for target in targets(world):
            if target.own.child.name != op.entity or target.transition.name != op.transition:
                continue
            refund = world.refund(op, target.record)
            if refund is None or refund.paid <= 0:
                continue
            if any(abs(refund.secs_left - edge) < margin_hours * 3600 for edge in edges):
                continue
            if refund.total != world.share(refund.paid, refund.percent):
                continue
            found.append(Cancellable(target, op, refund))
    return found


@dataclass
class OnRecord:
    """An act the op ``tool`` could do on one of ``person``'s own records (moves, payments, changes share it)."""

    op: Any
    tool: str
    own: Ownership
    person: dict[str, Any]
    record: dict[str, Any]

    @property
    def key(self) -> Any:
        return self.record[f"{self.own.child.name}_id"]


@dataclass
class Move(OnRecord):
    """A record the user could move to another resource (a booking to another flight on the same route), with
    the oracle's new price and difference, and the method that settles it."""

    resource: Entity
    column: str  # the record's column naming the resource
    old: dict[str, Any]  # the resource row it is on
    new: dict[str, Any]  # the resource row it moves to
    total: int  # the oracle's new total
    diff: int  # new total - old total (positive: the user pays)
    method: dict[str, Any]
    next_one: bool  # the new resource is the first with room after the old one on the same route


def _max_changes(world: World, op_name: str) -> int | None:
    refs = [
        r
        for r in getattr(world.design, "policy_refs", [])
        if r.kind_name == "max_changes" and r.rule is not None and op_name in getattr(r.rule, "ops", [])
    ]
    return int(refs[0].value) if refs and refs[0].value is not None else None


def on_sale(world: World, resource: Entity, row: dict[str, Any]) -> bool:
    """A resource one can book now: in its lifecycle's first state (scheduled) and still ahead."""
    life, dates = resource.lifecycle, known_dates_of(resource)
    return (life is None or row[life.field] == life.initial) and (not dates or str(row[dates[0]]) > world.now)


def move(world: World) -> Move | None:
    """A move the user could ask for now: one of their records in a state it may move from, to another resource
    sharing the op's ``same`` attributes that is on sale, ahead, with room, priced by the oracle with the
    record's own inputs; the method pays a higher price (or, for a lower one, is one that paid the record)."""
    from ..operations.transfer import from_states
    from ..oracle import net_by_method, repriced

    for op, tool in world.ops("transfer"):
        entity, resource = world.design.entity(op.entity), world.design.entity(op.relation)
        column = next(r.column for r in entity.relations if r.to == resource.name)
        owns = [o for o in world.ownerships() if o.child.name == entity.name and o.middle is None]
        if not owns or entity.lifecycle is None:
            continue
        own, life = owns[0], entity.lifecycle
        states, limit = from_states(entity, op), _max_changes(world, op.name)
        dates = known_dates_of(resource)
        held = next((b.availability for b, _ in world.ops("book") if b.entity == entity.name), None)
        counter = held.counter if held is not None and held.mode == "counter" else None
        amount = held.amount if counter else None

        records = [
            r
            for r in world.rows[entity.name]
            if r[life.field] in states and (limit is None or int(r.get("changes") or 0) < limit)
        ]
        world.rng.shuffle(records)
        for record in records[:20]:
            old = world.row(resource, record[column])
            person = world.owner_of(own, record)
            if old is None or person is None or not on_sale(world, resource, old):
                continue
            seats = int(record.get(amount) or 1) if amount else 1
            room = [
                r
                for r in world.rows[resource.name]
                if r[f"{resource.name}_id"] != old[f"{resource.name}_id"]
                and all(r.get(a) == old.get(a) for a in op.same)
                and on_sale(world, resource, r)
                and (counter is None or int(r[counter]) >= seats)
            ]
            if not room:
                continue
            new = world.rng.choice(room)
            later = sorted(
                (r for r in room if not dates or str(r[dates[0]]) > str(old[dates[0]])),
                key=lambda r: (str(r[dates[0]]) if dates else "", r[f"{resource.name}_id"]),
            )
            state = world.oracle_state()
            try:
                with state.mode("internal"):
                    price, diff = repriced(
                        world.design, state.conn, op.price, entity, record, column, new[f"{resource.name}_id"]
                    )
                    net = net_by_method(state.conn, entity, record[f"{entity.name}_id"], world.now)
            finally:
                state.close()
            methods = world.methods(person)
            if diff > 0:
                fits = [m for m in methods if m.get("balance_cents") is None or int(m["balance_cents"]) >= diff]
            else:
                fits = [m for m in methods if net.get(m["method_id"], 0) >= -diff]
            if not fits:
                continue
            next_one = bool(later) and later[0] is new
            return Move(
                op, tool, own, person, record, resource, column, old, new, price.total_cents, diff,
                world.rng.choice(fits), next_one,
            )  # fmt: skip
    return None


def move_calls(world: World, made: Move) -> list[GoldCall]:
    """The reads that find the record, the other resources on its route and the person's methods, then the move."""
    c = world.customer
    assert c is not None
    p_id = f"{c.name}_id"
    calls = world.reach(made.own, made.person, made.record)
    search = world.need("search", made.resource.name)
    properties = world.env.tools[search].input_schema.get("properties", {})
    calls.append(GoldCall(tool=search, arguments={a: made.old[a] for a in made.op.same if a in properties}))
    get = world.tool("get", c.name)
    if get is not None:
        calls.append(GoldCall(tool=get, arguments={p_id: made.person[p_id]}))
    properties = world.env.tools[made.tool].input_schema.get("properties", {})
    new_param = next(k for k in properties if k.startswith("new_"))
    arguments = {
        p_id: made.person[p_id],
        f"{made.own.child.name}_id": made.key,
        new_param: made.new[f"{made.resource.name}_id"],
        "payment_method_id": made.method["method_id"],
    }
    calls.append(GoldCall(tool=made.tool, arguments=arguments))
    return calls


def move_checks(world: World, made: Move) -> list[Check]:
    """The oracle's effects of a move: the record on the new resource at the new total (its change counted), the
    difference charged or refunded on the chosen method, each resource's counter moved by the record's seats."""
    entity, resource = made.own.child, made.resource
    e_id, r_id = f"{entity.name}_id", f"{resource.name}_id"
    conditions = [f"{e_id} = {literal(made.key)}", f"{made.column} = {literal(made.new[r_id])}"]
    conditions += [
        f"{a.name} = {made.total}" for a in entity.attributes if a.derive and a.derive.price == made.op.price
    ]
    if "changes" in made.record:
        conditions.append(f"changes = {int(made.record.get('changes') or 0) + 1}")
    checks = [
        Check(
            description=f"The {words(entity.name)} is on the {words(resource.name)} asked for, re-priced at "
            f"{wording.cents(made.total)}",
            sql=f"SELECT 1 FROM {entity.plural} WHERE {' AND '.join(conditions)}",
        )
    ]
    if made.diff:
        kind = "charge" if made.diff > 0 else "refund"
        checks.append(
            Check(
                description=f"The difference, {wording.cents(abs(made.diff))}, {kind}d on the method the user chose",
                sql=f"SELECT 1 FROM payments WHERE {e_id} = {literal(made.key)} AND method_id = "
                f"{literal(made.method['method_id'])} AND kind = '{kind}' AND amount_cents = {abs(made.diff)}",
            )
        )
    else:
        checks.append(
            Check(
                description="No money moved: the price is the same",
                sql=f"SELECT COUNT(*) = {len(world.ledger.get('payments', []))} FROM payments",
                expect="true",
            )
        )
    held = next((b.availability for b, _ in world.ops("book") if b.entity == entity.name), None)
    if held is not None and held.mode == "counter":
        seats = int(made.record.get(held.amount) or 1)
        for row, delta, what in ((made.old, seats, "gave its seats back"), (made.new, -seats, "took the seats")):
            checks.append(
                Check(
                    description=f"The {words(resource.name)} it left {what}"
                    if delta > 0
                    else f"The new {words(resource.name)} {what}",
                    sql=f"SELECT 1 FROM {resource.plural} WHERE {r_id} = {literal(row[r_id])} AND {held.counter} = "
                    f"{int(row[held.counter]) + delta}",
                )
            )
    return checks


@dataclass
class Due(OnRecord):
    """A record of the user's with something left to pay, by the oracle: its total less its net payments in the
    ledger (not the record's own paid column)."""

    total: int
    due: int


def dues(world: World) -> list[Due]:
    """Every record a pay op applies to now that still owes something, with the oracle's amount due."""
    from ..operations.pay import amount_attribute
    from ..oracle import net_by_method

    found: list[Due] = []
    for op, tool in world.ops("pay"):
        entity = world.design.entity(op.entity)
        if entity.lifecycle is None:
            continue
        total_column = amount_attribute(entity)
        candidates = []
        for own in (o for o in world.ownerships() if o.child.name == entity.name):
            for record in world.rows[entity.name]:
                person = world.owner_of(own, record)
                if record.get(entity.lifecycle.field) in op.payable_states and person is not None:
                    candidates.append((own, person, record))
        if not candidates:
            continue
        state = world.oracle_state()
        try:
            with state.mode("internal"):
                for own, person, record in candidates:
                    net = net_by_method(state.conn, entity, record[f"{entity.name}_id"], world.now)
                    due = int(record[total_column]) - sum(net.values())
                    if due > 0:
                        found.append(Due(op, tool, own, person, record, int(record[total_column]), due))
        finally:
            state.close()
    return found


def pay_call(world: World, owed: Due, amount: int, method: dict[str, Any]) -> GoldCall:
    c = world.customer
    assert c is not None
    p_id = f"{c.name}_id"
    return GoldCall(
        tool=owed.tool,
        arguments={
            p_id: owed.person[p_id],
            f"{owed.own.child.name}_id": owed.key,
            "amount_cents": amount,
            "payment_method_id": method["method_id"],
        },
    )


def pay_checks(world: World, owed: Due, amount: int, method: dict[str, Any]) -> list[Check]:
    """The oracle's effects of a payment: one charge of ``amount`` on the chosen method for the record, and the
    record in the paid state exactly when it is paid in full."""
    entity = owed.own.child
    assert entity.lifecycle is not None
    e_id = f"{entity.name}_id"
    life = entity.lifecycle
    state = owed.op.paid_state if amount == owed.due else owed.record[life.field]
    return [
        Check(
            description=f"{wording.cents(amount)} charged to the method the user chose",
            sql=f"SELECT COUNT(*) = 1 FROM payments WHERE {e_id} = {literal(owed.key)} AND method_id = "
            f"{literal(method['method_id'])} AND kind = 'charge' AND amount_cents = {amount} AND created_at >= "
            f"{literal(world.now)}",
            expect="true",
        ),
        Check(
            description=f"The {words(entity.name)} is {words(state)}",
            sql=f"SELECT 1 FROM {entity.plural} WHERE {e_id} = {literal(owed.key)} AND {life.field} = {literal(state)}",
        ),
    ]


def paying_method(world: World, person: dict[str, Any], amount: int) -> dict[str, Any] | None:
    """One of the person's methods that covers ``amount`` (a card, or stored value with the balance)."""
    fits = [m for m in world.methods(person) if m.get("balance_cents") is None or int(m["balance_cents"]) >= amount]
    return world.rng.choice(fits) if fits else None


@dataclass
class Change(OnRecord):
    """A change the user could ask for on one of their own records through a declared update op (the meal on
    a booking): the new value is one the tool accepts and differs from the current one."""

    attribute: str
    value: Any


def change(world: World, person: dict[str, Any] | None = None) -> Change | None:
    """A change of an enumerated value on one of the user's records (not the person's own profile: that is
    :func:`synthesizer.tasks.action.detail_change`), through an update op the principal may ask for."""
    from ..operations.update import acts_on

    c = world.customer
    if c is None:
        return None
    options = []
    for op, tool in world.ops("update"):
        entity = world.design.entity(op.entity)
        if entity.name == c.name:
            continue
        schema = world.env.tools[tool].input_schema.get("properties", {})
        names = [a for a in op.attributes if schema.get(a, {}).get("enum")]
        states = acts_on(op, entity)
        for own in (o for o in world.ownerships() if o.child.name == entity.name):
            for record in world.rows[entity.name]:
                if states is not None and entity.lifecycle and record.get(entity.lifecycle.field) not in states:
                    continue
                owner = world.owner_of(own, record)
                if owner is None or (person is not None and owner[f"{c.name}_id"] != person[f"{c.name}_id"]):
                    continue
                for name in names:
                    options.append((op, tool, own, owner, record, name, schema[name]["enum"]))
    if not options:
        return None
    op, tool, own, owner, record, name, values = world.rng.choice(options)
    fresh = [v for v in values if v != record.get(name)]
    if not fresh:
        return None
    return Change(op, tool, own, owner, record, name, world.rng.choice(fresh))


def change_call(world: World, made: Change) -> GoldCall:
    c = world.customer
    assert c is not None
    p_id = f"{c.name}_id"
    arguments = {p_id: made.person[p_id], f"{made.own.child.name}_id": made.key, made.attribute: made.value}
    properties = world.env.tools[made.tool].input_schema.get("properties", {})
    return GoldCall(tool=made.tool, arguments={k: v for k, v in arguments.items() if k in properties})


def change_words(world: World, made: Change, what: str) -> str:
    """'change the meal on my booking on Friday 12 June to vegan'."""
    noun = words(made.attribute.removesuffix("_request").removesuffix("_type"))
    return world.rng.choice(
        [
            f"change the {noun} on {what} to {words(str(made.value))}",
            f"switch {what} to {wording.a(words(str(made.value)) + ' ' + noun)}",
        ]
    )


def change_checks(world: World, made: Change) -> list[Check]:
    """The record has the new value, and nothing else the op could change moved."""
    entity = made.own.child
    e_id = f"{entity.name}_id"
    checks = [
        Check(
            description=f"The {words(made.attribute)} is now {words(str(made.value))}",
            sql=f"SELECT 1 FROM {entity.plural} WHERE {e_id} = {literal(made.key)} AND {made.attribute} = "
            f"{literal(made.value)}",
        )
    ]
    for other in made.op.attributes:
        if other != made.attribute:
            checks.append(
                unchanged(entity.plural, e_id, made.key, other, made.record.get(other), f"The {words(other)}")
            )
    return checks
