"""The catalog's world vocabulary (design ``docs/design/worlds.md`` §1–§3): who the business is, who the
agent is, the principals who own things, the ledger, prices and refund tiers, and what is computed.

These are the domain-level models a non-legacy domain declares; ``owner_chain`` derives who owns each
entity (§2.1). Operation items are the operation kinds' own models (``synthesizer/operations/``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .rules.base import Identifier, Param

if TYPE_CHECKING:
    from .catalog import Domain, Entity

__all__ = [
    "Org",
    "Agent",
    "Principal",
    "Ledger",
    "Derive",
    "Counter",
    "Lookup",
    "Pricing",
    "Unit",
    "Quantity",
    "Multiplier",
    "Discount",
    "Tier",
    "Refund",
    "owner_chain",
    "COMPUTED_AUTO",
    "CHANGE_KINDS",
    "counts_changes",
]

COMPUTED_AUTO = ("amount_paid_cents", "refund_cents", "created_at", "cancel_reason", "changes")
"""Columns the modeler adds to owned entities with money, cancel or change operations; never parameters."""

CHANGE_KINDS = frozenset({"transfer", "reschedule", "exchange"})
"""Operation kinds that count as a change of a record (``changes`` + 1); an ``update`` op counts when it says so."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Org(_Model):
    names: list[str] = Field(min_length=3, description="Business names; variant v takes names[v % n].")
    kind: str = Field(min_length=3, description="What the business is: 'regional airline'.")


class Agent(_Model):
    title: str = Field(min_length=3, description="The agent's job: 'reservations agent'.")
    role: Identifier = Field(description="One of the domain's staff_roles.")


class Principal(_Model):
    entity: Identifier
    kind: Literal["person", "organisation"] = "person"
    min_age: int | None = Field(18, ge=0, le=100)
    identify_by: list[list[Identifier]] = Field(min_length=1, description="Alternative key sets for find_<p>.")


class Ledger(_Model):
    methods: list[Literal["card", "gift_card", "voucher", "balance", "bank_account"]] = Field(min_length=1)
    stored_value: list[Literal["gift_card", "voucher", "balance"]] = []
    prefix: str = Field("PM", pattern=r"^[A-Z]{2,6}$")
    payment_prefix: str = Field("PAY", pattern=r"^[A-Z]{2,6}$")


class Counter(_Model):
    capacity: Identifier = Field(description="The attribute holding the total.")
    entity: Identifier = Field(description="The entity whose rows hold part of it (bookings).")
    amount: Identifier = Field(description="That entity's attribute holding the amount (seats).")


class Lookup(_Model):
    by: Identifier
    values: dict[str, int] = Field(min_length=1)


class Derive(_Model):
    """How the system computes an attribute; exactly one field is set."""

    copy_: str | None = Field(None, alias="copy", pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    price: Identifier | None = None
    counter: Counter | None = None
    lookup: Lookup | None = None
    by_state: dict[str, int | str] | None = Field(
        None,
        description="Per lifecycle state, seeded only: a number or an 'int:LOW:HIGH' draw; '*' for every other "
        "state ({'delayed': 'int:35:300', '*': 0}).",
    )

    @model_validator(mode="after")
    def _one(self) -> Derive:
        if sum(v is not None for v in (self.copy_, self.price, self.counter, self.lookup, self.by_state)) != 1:
            raise ValueError("derive takes exactly one of copy, price, counter, lookup, by_state")
        for value in (self.by_state or {}).values():
            if isinstance(value, str) and not re.fullmatch(r"int:-?\d+:-?\d+", value):
                raise ValueError(f"derive.by_state: {value!r} is neither a number nor 'int:LOW:HIGH'")
        return self


class Unit(_Model):
    column: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
    cents: int | None = Field(None, ge=0)


class Quantity(_Model):
    input: Identifier | None = None
    const: int | None = Field(None, ge=1)


class Multiplier(_Model):
    by: Identifier = Field(description="An input attribute of the priced entity.")
    permille: dict[str, int] = Field(min_length=1)


class Discount(_Model):
    by: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", description="'<related entity>.<attribute>'.")
    percent: dict[str, int] = Field(min_length=1)


class Pricing(_Model):
    unit: Unit
    quantity: Quantity
    multiplier: Multiplier | None = None
    discount: Discount | None = None
    fee_cents: int = Field(0, ge=0)
    tax_bp: int = Field(0, ge=0, le=10000)

    @model_validator(mode="after")
    def _shape(self) -> Pricing:
        if (self.unit.column is None) == (self.unit.cents is None):
            raise ValueError("pricing.unit takes exactly one of column, cents")
        if (self.quantity.input is None) == (self.quantity.const is None):
            raise ValueError("pricing.quantity takes exactly one of input, const")
        if self.discount and any(not 0 <= p <= 100 for p in self.discount.percent.values()):
            raise ValueError("pricing.discount percents lie between 0 and 100")
        return self


class Tier(_Model):
    hours: int | Param = Field(description="Hours or more before the moment (a Param: drawn per variant).")
    percent: int = Field(ge=0, le=100)

    @property
    def hours_default(self) -> int:
        return int(self.hours.default) if isinstance(self.hours, Param) else self.hours


class Refund(_Model):
    at: Identifier = Field(description="The datetime attribute the tiers count back from.")
    moment: str | None = Field(None, description="That moment in words for the policy: 'departure'.")
    to: Literal["original"] = "original"
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _tiers(self) -> Refund:
        hours = [t.hours_default for t in self.tiers]
        percents = [t.percent for t in self.tiers]
        if hours != sorted(set(hours), reverse=True) or hours[-1] != 0:
            raise ValueError("refund tiers: hours strictly decreasing, the last one 0")
        if percents != sorted(percents, reverse=True):
            raise ValueError("refund tiers: percents never increase")
        return self


def owner_chain(domain: Domain, entity: Entity) -> list[Entity] | None:
    """The entities from ``entity`` up to its principal (``[booking, passenger]``); ``[p]`` for a principal
    itself; None for an unowned resource. A required relation to an owned entity makes an entity owned
    (the relation listed first wins); ``owner`` overrides (null: unowned)."""
    principals = {p.entity for p in domain.principals}
    seen: set[str] = set()
    chain = [entity]
    current = entity
    while current.name not in principals:
        if current.name in seen:
            return None
        seen.add(current.name)
        if current.owner is None:
            return None
        candidates = [r.to for r in current.relations if r.required]
        if current.owner != "auto":
            candidates = [current.owner.split(".")[0]]
        nxt = next((c for c in candidates if _owned(domain, c, seen)), None)
        if nxt is None:
            return None
        current = domain.entity(nxt)
        chain.append(current)
    return chain


def _owned(domain: Domain, name: str, seen: set[str]) -> bool:
    if name in {p.entity for p in domain.principals}:
        return True
    if name in seen:
        return False
    entity = domain.entity(name)
    if entity.owner is None:
        return False
    targets = [r.to for r in entity.relations if r.required] if entity.owner == "auto" else [entity.owner.split(".")[0]]
    return any(_owned(domain, t, seen | {name}) for t in targets)


def counts_changes(domain: Any, entity_name: str) -> bool:
    """Whether records of the entity carry a ``changes`` counter: some operation on it is a change
    (transfer, reschedule, exchange, or an update with ``counts_as_change``)."""
    return any(
        op.entity == entity_name and (op.kind in CHANGE_KINDS or getattr(op, "counts_as_change", False))
        for op in domain.operations
    )
