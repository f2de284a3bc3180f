"""Seeding a world design: the rows the generators drew, made to agree with each other (design §7).

After the per-column draw (``Seeder.make``) this pass derives what the system computes and simulates
the money: lookups and copies from the parent, states that agree with the clock (a record whose moment
has passed is not still ``booked``), payment methods per principal, each owned record priced by the
formula (the oracle's ``money.price``) and paid through the ledger at its ``created_at`` (gift card
first, the rest by card), cancelled records refunded by the tiers at their cancellation, and
capacity counters recomputed from the records holding them.
"""

from __future__ import annotations

import random
import re
import unicodedata
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .ledger import payable_entities
from .money import price, refund_percent, refund_split
from .operations.book import counter_of

if TYPE_CHECKING:
    from .catalog import Entity
    from .seeding import Seeder

__all__ = ["shape_world", "seed_world"]

_FORMAT = "%Y-%m-%d %H:%M:%S"


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(str(text).replace("T", " ")[:19])


def shape_world(seeder: Seeder) -> None:
    """Before the rule kinds shape the rows: what is derived from other columns, and states that agree
    with the clock (so the rules' limits are counted on the states the seed keeps)."""
    for entity in seeder.design.entities:
        _parties_of_one_principal(seeder, entity)
        _emails_from_names(seeder, entity)
        _lookups_and_copies(seeder, entity)
    for entity in seeder.design.entities:
        _states_agree_with_clock(seeder, entity)


def _owner_of(seeder: Seeder, entity: Entity, row: dict[str, Any]) -> Any:
    """The principal id a row of an owned entity belongs to, up its owner chain."""
    design = seeder.design
    chain = design.chain(entity) or []
    current = row
    for child, parent in zip(chain, chain[1:], strict=False):
        column = next(r.column for r in child.relations if r.to == parent.name)
        key = current.get(column)
        current = next((r for r in _rows(seeder, parent) if r[f"{parent.name}_id"] == key), None)
        if current is None:
            return None
    return current.get(f"{design.principal.name}_id")


def _parties_of_one_principal(seeder: Seeder, entity: Entity) -> None:
    """A record naming the principal and another of their records (a visit for their pet, a meal order for
    their child) names the owner of that record: the parties never belong to two different people."""
    design = seeder.design
    principal = design.principal
    direct = next((r for r in entity.relations if r.to == principal.name and r.required), None)
    if direct is None or entity.name == principal.name:
        return
    for relation in entity.relations:
        target = design.entity(relation.to) if relation.to != principal.name else None
        if target is None or not design.owned(target):
            continue
        for row in _rows(seeder, entity):
            other = next((r for r in _rows(seeder, target) if r[f"{target.name}_id"] == row.get(relation.column)), None)
            owner = _owner_of(seeder, target, other) if other else None
            if owner is not None:
                row[direct.column] = owner


def seed_world(seeder: Seeder) -> None:
    """After the rule kinds: copies and states again (a rule may have moved a row), then the money and the
    counters, which must be computed from the final rows."""
    design = seeder.design
    for entity in design.entities:
        _lookups_and_copies(seeder, entity)
    for entity in design.entities:
        _states_agree_with_clock(seeder, entity)
    for entity in design.entities:
        _by_state(seeder, entity)
    if design.domain.ledger:
        _payment_methods(seeder)
    for entity in payable_entities(design):
        _priced_and_paid(seeder, entity)
    for entity in design.entities:
        _created(seeder, entity)
    for entity in design.entities:
        held = counter_of(design, entity)
        if held:
            _counter(seeder, entity, *held)
    for ref in design.policy_refs:  # last: a policy keeps the seed to its word (allowed reasons, change limits)
        ref.kind.adjust_seed(seeder, ref)


def _rows(seeder: Seeder, entity: Entity) -> list[dict[str, Any]]:
    return seeder.rows[entity.plural]


def _emails_from_names(seeder: Seeder, entity: Entity) -> None:
    """``email_from:<attr>``: first.last at a mail provider, ASCII-folded, numbered so namesakes differ."""
    providers = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com")
    for attr in entity.attributes:
        if not attr.generator.startswith("email_from:"):
            continue
        source = attr.generator.split(":", 1)[1]
        taken: set[str] = set()
        for row in _rows(seeder, entity):
            folded = unicodedata.normalize("NFKD", str(row[source])).encode("ascii", "ignore").decode().lower()
            local = ".".join(part for part in re.split(r"[^a-z]+", folded) if part) or "user"
            address = f"{local}@{seeder.rng.choice(providers)}"
            number = 1
            while address in taken:
                number += 1
                address = f"{local}{number}@{address.split('@')[1]}"
            taken.add(address)
            row[attr.name] = address


def _lookups_and_copies(seeder: Seeder, entity: Entity) -> None:
    design = seeder.design
    for attr in entity.attributes:
        if attr.differs_from:  # a flight does not fly from Denver to Denver
            for row in _rows(seeder, entity):
                for _ in range(50):
                    if row[attr.name] != row[attr.differs_from]:
                        break
                    row[attr.name] = seeder.value(attr, None, entity.name)
    for attr in entity.attributes:
        derive = attr.derive
        if derive is None:
            continue
        for row in _rows(seeder, entity):
            if derive.lookup:
                row[attr.name] = derive.lookup.values.get(str(row[derive.lookup.by]), 0)
            elif derive.copy_:
                target, source = derive.copy_.split(".")
                column = next(r.column for r in entity.relations if r.to == target)
                parents = {p[f"{target}_id"]: p for p in seeder.rows[design.entity(target).plural]}
                row[attr.name] = parents[row[column]][source]


def _created(seeder: Seeder, entity: Entity) -> None:
    """``created_at`` of records a ``create`` operation makes (a claim, a request) and no payment dated: a day
    to six weeks before their moment or the clock, drawn per row apart from the seed's stream."""
    design = seeder.design
    if entity in payable_entities(design) or not design.owned(entity):
        return
    if not any(op.kind == "create" and op.entity == entity.name for op in design.domain.operations):
        return
    life = entity.lifecycle
    for row in _rows(seeder, entity):
        moment = _parse(row[life.at]) if life and life.at and row.get(life.at) else seeder.clock.replace(tzinfo=None)
        latest = min(moment, seeder.clock.replace(tzinfo=None))
        days = random.Random(f"{design.env_id}:{design.seed}:{row[f'{entity.name}_id']}:created").uniform(1, 40)
        row["created_at"] = (latest - timedelta(days=days)).replace(second=0, microsecond=0).strftime(_FORMAT)


def _by_state(seeder: Seeder, entity: Entity) -> None:
    """``derive.by_state``: a value only some states have (a delay on delayed flights), set once the states
    are final; a drawn value comes from its own generator per row, so no other seed value moves."""
    life = entity.lifecycle
    for attr in entity.attributes:
        if attr.derive is None or attr.derive.by_state is None or life is None:
            continue
        for row in _rows(seeder, entity):
            value = attr.derive.by_state.get(str(row[life.field]), attr.derive.by_state.get("*", 0))
            if isinstance(value, str):
                low, high = (int(n) for n in value.split(":")[1:])
                key = f"{seeder.design.env_id}:{seeder.design.seed}:{row[f'{entity.name}_id']}:{attr.name}"
                value = random.Random(key).randint(low, high)
            row[attr.name] = value


def _states_agree_with_clock(seeder: Seeder, entity: Entity) -> None:
    """A state whose phase says the moment is ahead (or behind) holds only rows where it is."""
    life = entity.lifecycle
    if life is None or life.at is None or not life.phases:
        return
    now = seeder.clock.strftime(_FORMAT)
    stamps = {t.to: t.stamp for t in life.transitions if t.stamp}
    for row in _rows(seeder, entity):
        ahead = str(row[life.at]) > now
        phase = life.phases.get(row[life.field], "any")
        if phase == "any" or (phase == "before") == ahead:
            continue
        allowed = [s for s in life.states if life.phases.get(s, "any") in (("before", "any") if ahead else ("after",))]
        if not allowed:
            continue
        row[life.field] = life.initial if ahead and life.initial in allowed else seeder.rng.choice(allowed)
        for state, stamp in stamps.items():
            if state != row[life.field]:
                row[stamp] = None


def _payment_methods(seeder: Seeder) -> None:
    design = seeder.design
    ledger = design.domain.ledger
    assert ledger is not None
    principal = design.principal
    methods: list[dict[str, Any]] = []
    brands = ["Visa", "Mastercard", "Amex", "Discover"]
    for person in _rows(seeder, principal):
        owner = person[f"{principal.name}_id"]
        kinds = ["card"] if "card" in ledger.methods else [ledger.methods[0]]
        if "gift_card" in ledger.methods and seeder.rng.random() < 0.4:
            kinds.append("gift_card")
        if "voucher" in ledger.methods and seeder.rng.random() < 0.15:
            kinds.append("voucher")
        for extra, share in (("bank_account", 0.5), ("balance", 0.3)):  # only ledgers that take them draw here
            if extra in ledger.methods and extra not in kinds and seeder.rng.random() < share:
                kinds.append(extra)
        for kind in kinds:
            digits = f"{seeder.rng.randint(0, 9999):04d}"
            stored = kind in ledger.stored_value
            if kind == "card":
                label = f"{seeder.rng.choice(brands)} ending {digits}"
            elif kind == "bank_account":
                label = f"Checking account ending {digits}"
            elif kind == "balance":
                label = "Account balance"
            else:
                label = f"{kind.replace('_', ' ').capitalize()} {digits}"
            methods.append(
                {
                    "method_id": f"{ledger.prefix}-{len(methods) + 1:04d}",
                    f"{principal.name}_id": owner,
                    "kind": kind,
                    "label": label,
                    "balance_cents": seeder.rng.randint(20, 300) * 100 if stored else None,
                    "status": "active",
                }
            )
    seeder.rows["payment_methods"] = methods
    seeder.rows["payments"] = []


def _priced_and_paid(seeder: Seeder, entity: Entity) -> None:
    design = seeder.design
    domain = design.domain
    ops = [op for op in domain.operations if op.entity == entity.name]
    book = next((op for op in ops if op.kind == "book"), None)
    pay = next((op for op in ops if op.kind == "pay"), None)
    cancel = next((op for op in ops if op.kind == "cancel"), None)
    life = entity.lifecycle
    chain = design.chain(entity) or [entity]
    principal = design.principal
    methods_of: dict[str, list[dict[str, Any]]] = {}
    for method in seeder.rows.get("payment_methods", []):
        methods_of.setdefault(method[f"{principal.name}_id"], []).append(method)
    by_id = {e.name: {r[f"{e.name}_id"]: r for r in seeder.rows[e.plural]} for e in design.entities}
    for row in _rows(seeder, entity):
        owner = row
        for child, parent in zip(chain, chain[1:], strict=False):
            column = next(r.column for r in child.relations if r.to == parent.name)
            owner = by_id[parent.name][owner[column]]
        owner_id = owner[f"{principal.name}_id"]
        moment = _parse(row[life.at]) if life and life.at and row.get(life.at) else seeder.clock.replace(tzinfo=None)
        latest = min(moment, seeder.clock.replace(tzinfo=None))
        created = (latest - timedelta(days=seeder.rng.uniform(1, 40))).replace(second=0, microsecond=0)
        row["created_at"] = created.strftime(_FORMAT)
        for attr in entity.attributes:  # the price by the formula, as the book tool computes it
            if attr.derive and attr.derive.price:
                row[attr.name] = _price(seeder, entity, row, attr.derive.price, by_id)
        total = next((row[a.name] for a in entity.attributes if a.derive and a.derive.price), 0)
        state = row.get(life.field) if life else None
        cancelled = cancel is not None and life is not None and state == _to(entity, cancel.transition)
        if pay is not None and state in pay.payable_states or (cancelled and book and book.payment == "none"):
            owed = seeder.rng.choice([0, 0, seeder.rng.randint(1, max(1, total - 1))]) if total > 1 else 0
        elif book is not None and book.payment == "none" and pay is None:  # nothing ever charges it
            owed = 0
        else:
            owed = total
        row["amount_paid_cents"] = 0
        if owed:
            _charge(seeder, entity, row, owed, methods_of.get(owner_id, []), created)
        if cancelled and cancel is not None:
            row["cancel_reason"] = seeder.rng.choice(cancel.reasons)
            transition = next(t for t in life.transitions if t.name == cancel.transition)
            span = max(0.0, (latest - created).total_seconds())
            when = (created + timedelta(seconds=seeder.rng.uniform(0, span))).replace(second=0, microsecond=0)
            if transition.stamp:
                row[transition.stamp] = when.strftime(_FORMAT)
            if cancel.refund:
                row["refund_cents"] = _refund(seeder, entity, row, cancel, when)


def _to(entity: Entity, transition: str) -> str:
    assert entity.lifecycle is not None
    return next(t.to for t in entity.lifecycle.transitions if t.name == transition)


def _price(seeder: Seeder, entity: Entity, row: dict[str, Any], pricing_id: str, by_id: dict[str, Any]) -> int:
    pricing = seeder.design.domain.pricing[pricing_id]

    def related(path: str) -> Any:
        target, column = path.split(".")
        relation = next(r for r in entity.relations if r.to == target)
        return by_id[target][row[relation.column]][column]

    unit = related(pricing.unit.column) if pricing.unit.column else pricing.unit.cents
    quantity = row[pricing.quantity.input] if pricing.quantity.input else pricing.quantity.const
    class_key = row.get(pricing.multiplier.by) if pricing.multiplier else None
    discount_key = related(pricing.discount.by) if pricing.discount else None
    return price(pricing, int(unit), int(quantity), class_key, discount_key).total_cents


def _charge(
    seeder: Seeder, entity: Entity, row: dict[str, Any], amount: int, methods: list[dict[str, Any]], when: datetime
) -> None:
    """Pay ``amount``: stored value first (up to its balance, half the time), the rest by card."""
    ledger = seeder.design.domain.ledger
    assert ledger is not None
    left = amount
    for method in methods:
        if method["kind"] in ledger.stored_value and method["balance_cents"] and left and seeder.rng.random() < 0.5:
            part = min(left, method["balance_cents"])
            method["balance_cents"] -= part
            _payment(seeder, entity, row, method["method_id"], "charge", part, when)
            left -= part
    card = next((m for m in methods if m["kind"] not in ledger.stored_value), None)
    if left and card is not None:
        _payment(seeder, entity, row, card["method_id"], "charge", left, when)
        left = 0
    row["amount_paid_cents"] += amount - left


def _payment(
    seeder: Seeder, entity: Entity, row: dict[str, Any], method: str, kind: str, cents: int, when: datetime
) -> None:
    ledger = seeder.design.domain.ledger
    assert ledger is not None
    payments = seeder.rows["payments"]
    record: dict[str, Any] = {"payment_id": f"{ledger.payment_prefix}-{len(payments) + 1:04d}", "method_id": method}
    for payable in payable_entities(seeder.design):
        record[f"{payable.name}_id"] = row[f"{entity.name}_id"] if payable is entity else None
    record |= {
        "kind": kind,
        "amount_cents": cents,
        "created_at": when.strftime(_FORMAT),
        "note": f"{entity.name} {kind}",
    }
    payments.append(record)


def _refund(seeder: Seeder, entity: Entity, row: dict[str, Any], cancel: Any, when: datetime) -> int:
    """Refund by the tiers at the moment of cancellation, to each method that paid."""
    key = row[f"{entity.name}_id"]
    net: dict[str, int] = {}
    for payment in seeder.rows["payments"]:
        if payment.get(f"{entity.name}_id") == key:
            net[payment["method_id"]] = net.get(payment["method_id"], 0) + (
                payment["amount_cents"] if payment["kind"] == "charge" else -payment["amount_cents"]
            )
    hours = {
        i: seeder.design.tier_hours.get((cancel.name, i), t.hours_default) for i, t in enumerate(cancel.refund.tiers)
    }
    secs = int((_parse(row[cancel.refund.at]) - when).total_seconds())
    split = refund_split(net, refund_percent(cancel.refund, secs, hours))
    methods = {m["method_id"]: m for m in seeder.rows["payment_methods"]}
    for method, cents in split.items():
        _payment(seeder, entity, row, method, "refund", cents, when)
        if methods[method]["balance_cents"] is not None:
            methods[method]["balance_cents"] += cents
    row["amount_paid_cents"] -= sum(split.values())
    return sum(split.values())


def _counter(seeder: Seeder, entity: Entity, resource: Entity, counter: Any, availability: Any) -> None:
    column = next(r.column for r in entity.relations if r.to == resource.name)
    held: dict[str, int] = {}
    life = entity.lifecycle
    for row in _rows(seeder, entity):
        if life is None or row[life.field] in availability.holds:
            held[row[column]] = held.get(row[column], 0) + int(row[availability.amount])
    capacity_attr = counter.derive.counter.capacity
    for row in _rows(seeder, resource):
        taken = held.get(row[f"{resource.name}_id"], 0)
        if taken > row[capacity_attr]:
            row[capacity_attr] = taken  # never more held than the capacity (a small aircraft filled up)
        row[counter.name] = row[capacity_attr] - taken
