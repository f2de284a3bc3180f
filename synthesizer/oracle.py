"""Reading what the oracle needs from a state: plain ``SELECT *`` rows, then ``synthesizer.money``.

The procedural tests judge computed amounts with these functions; they read the catalog's data and
the rows, never the tool's SQL, so a wrong formula in a tool fails its probe instead of agreeing
with itself.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .money import PriceBreakdown, price, refund_percent, refund_split

if TYPE_CHECKING:
    from .catalog import Entity
    from .modeling import Design

__all__ = ["row", "price_of", "net_by_method", "refund_of", "seconds_between", "repriced"]


def row(conn: sqlite3.Connection, table: str, key: str, value: Any) -> dict[str, Any] | None:
    conn.row_factory = sqlite3.Row
    try:
        found = conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,)).fetchone()
    finally:
        conn.row_factory = None
    return None if found is None else dict(found)


def price_of(
    design: Design, conn: sqlite3.Connection, pricing_id: str, entity: Entity, arguments: dict[str, Any]
) -> PriceBreakdown:
    """The formula's amounts for a sale of ``entity`` with ``arguments`` (related ids and inputs)."""
    pricing = design.domain.pricing[pricing_id]

    def related(path: str) -> Any:
        target, column = path.split(".")
        relation = next((r for r in entity.relations if r.to == target), None)
        key = relation.column if relation else f"{target}_id"
        found = row(conn, design.entity(target).plural, f"{target}_id", arguments[key])
        assert found is not None, f"no {target} {arguments[key]}"
        return found[column]

    unit = related(pricing.unit.column) if pricing.unit.column else pricing.unit.cents
    quantity = arguments[pricing.quantity.input] if pricing.quantity.input else pricing.quantity.const
    class_key = arguments.get(pricing.multiplier.by) if pricing.multiplier else None
    discount_key = related(pricing.discount.by) if pricing.discount else None
    return price(pricing, int(unit), int(quantity), class_key, discount_key)


def net_by_method(conn: sqlite3.Connection, entity: Entity, record_id: str, before: str) -> dict[str, int]:
    """Net payments of one record per method, from the payment rows made before ``before``."""
    net: dict[str, int] = {}
    rows = conn.execute(
        f"SELECT method_id, kind, amount_cents FROM payments WHERE {entity.name}_id = ? AND created_at < ?",
        (record_id, before),
    ).fetchall()
    for method, kind, cents in rows:
        net[method] = net.get(method, 0) + {"charge": cents, "refund": -cents}.get(kind, 0)
    return net


def seconds_between(later: str, earlier: str) -> int:
    parse = lambda s: datetime.fromisoformat(s.replace("T", " ").replace("Z", ""))  # noqa: E731
    return int((parse(later) - parse(earlier)).total_seconds())


def refund_of(refund: Any, hours: dict[int, int], at: str, now: str, net: dict[str, int]) -> tuple[int, dict[str, int]]:
    """The percent and per-method refund of a record paid ``net`` when cancelled at ``now``."""
    percent = refund_percent(refund, seconds_between(at, now), hours)
    return percent, refund_split(net, percent)


def repriced(
    design: Design,
    conn: sqlite3.Connection,
    pricing_id: str,
    entity: Entity,
    record: dict[str, Any],
    relation_column: str,
    target_id: str,
) -> tuple[PriceBreakdown, int]:
    """A record moved to another resource: the formula on the new resource with the record's own inputs
    and related rows (its principal's current tier), and the difference from what the record cost
    (positive: owed by the principal). ``record`` is the row before the move."""
    arguments = {**record, relation_column: target_id}
    total = next(a.name for a in entity.attributes if a.derive and a.derive.price == pricing_id)
    breakdown = price_of(design, conn, pricing_id, entity, arguments)
    return breakdown, breakdown.total_cents - int(record[total])
