"""``summarize_<plural>_for_<owner>``: counts and money totals of one related record's records, by state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OperationKind, Tool, ToolRole, register
from .list_for import probe_by_owner
from .parts import exists, id_param, params, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Summarize"]

MONEY = ("amount", "price", "total", "cost", "fee")


@register
class Summarize(OperationKind):
    name = "summarize"
    phase = "read"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        money = [a for a in entity.attributes if a.type in ("real", "integer") and a.name in MONEY]
        if not money or not entity.lifecycle:
            return []
        table, field_name = entity.plural, entity.lifecycle.field
        sums = ", ".join(f"ROUND(SUM({a.name}), 2) AS total_{a.name}" for a in money)
        tools: list[Tool] = []
        for relation in entity.relations:
            target = design.entity(relation.to)
            tool = {
                "name": f"summarize_{table}_for_{relation.to}",
                "kind": "read",
                "description": f"Totals of one {words(target.name)}'s {words(table)}, by {words(field_name)}.",
                "parameters": params({relation.column: id_param(target)}, [relation.column]),
                "steps": [
                    exists(design, target, relation.column),
                    {
                        "kind": "return",
                        "shape": "rows",
                        "sql": f"SELECT {field_name}, COUNT(*) AS count, {sums} FROM {table} "
                        f"WHERE {relation.column} = :{relation.column} GROUP BY {field_name} ORDER BY "
                        f"{field_name}",
                    },
                ],
            }
            tools.append((ToolRole("summarize", entity.name, relation=relation.to), tool))
        return tools

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        probe_by_owner(tester, tool, role)
