"""``count_<plural>_by_<state field>``: how many records there are in each lifecycle state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OperationKind, Tool, ToolRole, register
from .parts import words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["CountByStatus"]


@register
class CountByStatus(OperationKind):
    name = "count_by_status"
    phase = "read"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if not entity.lifecycle:
            return []
        table, field_name = entity.plural, entity.lifecycle.field
        tool = {
            "name": f"count_{table}_by_{field_name}",
            "kind": "read",
            "description": f"How many {words(table)} there are in each {words(field_name)}.",
            "steps": [
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": (
                        f"SELECT {field_name}, COUNT(*) AS count FROM {table} GROUP BY {field_name} "
                        f"ORDER BY {field_name}"
                    ),
                }
            ],
        }
        return [(ToolRole("count_by_status", entity.name), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        tester.positive(tool, [{}])
