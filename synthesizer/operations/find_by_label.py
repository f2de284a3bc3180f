"""``find_<e>_by_<label>``: records whose label is exactly the given one (core entities with a text label)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OperationKind, Tool, ToolRole, register
from .parts import p_, params, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["FindByLabel"]


@register
class FindByLabel(OperationKind):
    name = "find_by_label"
    phase = "read"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        e, table, label = entity.name, entity.plural, entity.label
        if not (label and any(a.name == label and a.type == "text" and not a.enum for a in entity.attributes)):
            return []
        if not entity.core:
            return []
        tool = {
            "name": f"find_{e}_by_{label}",
            "kind": "read",
            "description": f"{words(e).capitalize()}s whose {words(label)} is exactly the given one (any case).",
            "parameters": params(
                {
                    p_(label): {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 200,
                        "description": f"The exact {words(label)}.",
                    }
                },
                [p_(label)],
            ),
            "steps": [
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": f"SELECT * FROM {table} WHERE lower({label}) = lower(:{p_(label)}) ORDER BY {e}_id",
                }
            ],
        }
        return [(ToolRole("find_by_label", e), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        label = tester.design.entity(role.entity).label
        tester.positive(tool, [{label: r[label]} for r in tester.pick(role.entity) if r[label]])
