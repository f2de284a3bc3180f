"""The independent value oracle for money: integer cents, halves to even, the pricing formula and
refund tiers, in plain Python.

The tools compute amounts in SQL (``mul_div``, built by ``synthesizer.ledger``); the procedural tests
and the seed compute the same amounts here, from the catalog's data and plain rows, so a computed fare
or refund is checked against a recomputation and never against itself. Nothing here imports the
step builders.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "div_half_even",
    "mul_div",
    "money_text",
    "PriceBreakdown",
    "price",
    "refund_percent",
    "refund_split",
    "compensation_cents",
]


def div_half_even(n: int, d: int) -> int:
    """``n / d`` rounded to the nearest integer, a half to the even neighbour (negatives by symmetry)."""
    if d == 0:
        raise ZeroDivisionError("div_half_even by zero")
    if (n < 0) != (d < 0):
        return -div_half_even(abs(n), abs(d))
    n, d = abs(n), abs(d)
    q, r = divmod(n, d)
    if 2 * r > d or (2 * r == d and q & 1):
        return q + 1
    return q


def mul_div(a: int, b: int, c: int) -> int:
    """``a × b ÷ c`` exactly, rounded half to even, as the runtime's ``mul_div``."""
    return div_half_even(a * b, c)


def money_text(cents: int) -> str:
    """``18286`` → ``'$182.86'``: how policies and answers state an amount."""
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


@dataclass(frozen=True)
class PriceBreakdown:
    unit_cents: int
    quantity: int
    base_cents: int
    discount_cents: int
    fee_cents: int
    tax_cents: int
    total_cents: int


def price(
    pricing: Any, unit_cents: int, quantity: int, class_key: str | None, discount_key: str | None
) -> PriceBreakdown:
    """The §3.3 formula in its fixed order: base = unit × qty × permille / 1000, discount = base × pct / 100,
    subtotal = base − discount + fee, tax = subtotal × bp / 10 000, total = subtotal + tax (each division
    half-even). ``pricing`` is the catalog's ``Pricing``; the keys are the values its ``multiplier.by``
    and ``discount.by`` name for this sale."""
    permille = 1000
    if pricing.multiplier is not None:
        permille = pricing.multiplier.permille.get(class_key or "", 1000)
    percent = 0
    if pricing.discount is not None:
        percent = pricing.discount.percent.get(discount_key or "", 0)
    base = mul_div(unit_cents * quantity, permille, 1000)
    discount = mul_div(base, percent, 100)
    subtotal = base - discount + pricing.fee_cents
    tax = mul_div(subtotal, pricing.tax_bp, 10000)
    return PriceBreakdown(unit_cents, quantity, base, discount, pricing.fee_cents, tax, subtotal + tax)


def refund_percent(refund: Any, secs_left: int, hours: Mapping[int, int] | None = None) -> int:
    """The percent refunded with ``secs_left`` seconds before the moment: the first tier whose hours are
    at most that far ahead (exact at the boundary). ``hours`` maps a tier index to the variant's drawn
    hours (default: each tier's default)."""
    for index, tier in enumerate(refund.tiers):
        limit = (hours or {}).get(index, tier.hours_default)
        if secs_left >= limit * 3600:
            return tier.percent
    return 0


def refund_split(net_by_method: Mapping[str, int], percent: int) -> dict[str, int]:
    """What each original method gets back: ``mul_div(net, pct, 100)`` per method, in method-id order,
    zero amounts left out."""
    split = {method: mul_div(net, percent, 100) for method, net in sorted(net_by_method.items()) if net > 0}
    return {method: cents for method, cents in split.items() if cents > 0}


def compensation_cents(amount: Any, record: Mapping[str, Any]) -> int:
    """What a ``compensate`` operation gives for ``record``: ``cents`` per unit of its ``per`` attribute
    (5 000 per seat × 2 seats = 10 000), or ``percent`` of its ``percent_of`` amount, half to even
    (20 % of 18 287 = 3 657.4 → 3 657). ``amount`` is the operation's catalog model."""
    if getattr(amount, "per", None):
        return amount.cents * int(record[amount.per])
    return mul_div(int(record[amount.percent_of]), amount.percent, 100)
