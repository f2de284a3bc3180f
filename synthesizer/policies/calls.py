"""Finding a call a tool accepts on a given record: the reachability probes and refusal tasks of
policy-only rules need the forbidden act to *work* (the tools do not enforce the rule)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from ..ledger import METHODS_TABLE

__all__ = ["candidates", "first_accepted", "tables"]


def _alike(row: dict[str, Any], other: dict[str, Any]) -> int:
    return sum(1 for k, v in row.items() if not k.endswith("_id") and other.get(k) == v)


def _choices(
    name: str,
    schema: dict[str, Any],
    rows: Callable[[str], list[dict[str, Any]]],
    person: str,
    tables: dict[str, str],
    record: dict[str, Any] | None,
) -> list[Any]:
    if schema.get("enum"):
        return list(schema["enum"])
    if name == "payment_method_id":
        methods = [m for m in rows(METHODS_TABLE) if person in m.values() and m.get("status", "active") == "active"]
        methods.sort(key=lambda m: -(m.get("balance_cents") or 10**9))  # the roomiest first
        return [m["method_id"] for m in methods]
    if name.startswith("new_") and name.endswith("_id"):
        entity = name.removeprefix("new_").removesuffix("_id")
        if entity not in tables:
            return []
        key = f"{entity}_id"
        others = rows(tables[entity])
        current = next((r for r in others if record and r[key] == record.get(key)), None)
        if current is not None:  # the likeliest move first: a flight on the same route as the booked one
            others = sorted((r for r in others if r[key] != current[key]), key=lambda r: -_alike(r, current))
        return [r[key] for r in others][:40]
    entity = name.removesuffix("_id")
    if name.endswith("_id") and entity in tables:  # a record of theirs (the booking a staff act is on)
        found = rows(tables[entity])
        own = [r[name] for r in found if person in r.values()]
        return (own or [r[name] for r in found])[:40]
    kind = schema.get("type")
    if kind == "integer":
        return [max(1, int(schema.get("minimum", 1)))]
    if kind == "boolean":
        return [True]
    return []


def candidates(
    schema: dict[str, Any],
    fixed: dict[str, Any],
    rows: Callable[[str], list[dict[str, Any]]],
    person: str,
    tables: dict[str, str],
    record: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Argument sets for a tool: ``fixed`` plus each required parameter's choices, varying the last first
    (``rows`` reads a table; ``tables`` maps an entity to its table; ``record`` is the row acted on, so a move
    tries the resources most like its current one first)."""
    properties = schema.get("properties", {})
    names = [n for n in schema.get("required", []) if n not in fixed]
    options = [_choices(n, properties[n], rows, person, tables, record) for n in names]
    if any(not o for o in options):
        return

    def walk(i: int, current: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if i == len(names):
            yield dict(current)
            return
        for value in options[i]:
            current[names[i]] = value
            yield from walk(i + 1, current)

    yield from walk(0, dict(fixed))


def first_accepted(
    tries: Iterator[dict[str, Any]], accepts: Callable[[dict[str, Any]], bool], limit: int = 24
) -> dict[str, Any] | None:
    return next((arguments for arguments in islice(tries, limit) if accepts(arguments)), None)


def tables(design: Any) -> dict[str, str]:
    """Each entity's table."""
    return {e.name: e.plural for e in design.entities}
