"""``get_<e>_<state field>``: just the lifecycle state of one record."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OperationKind, Tool, ToolRole, register
from .get import probe_by_id
from .parts import exists, id_param, params, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["GetStatus"]


@register
class GetStatus(OperationKind):
    name = "get_status"
    phase = "read"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if not entity.lifecycle:
            return []
        e, table, field_name = entity.name, entity.plural, entity.lifecycle.field
        tool = {
            "name": f"get_{e}_{field_name}",
            "kind": "read",
            "description": f"Just the {words(field_name)} of one {words(e)}.",
            "parameters": params({f"{e}_id": id_param(entity)}, [f"{e}_id"]),
            "steps": [
                exists(design, entity),
                {
                    "kind": "return",
                    "shape": "row",
                    "sql": f"SELECT {e}_id, {field_name} FROM {table} WHERE {e}_id = :{e}_id",
                },
            ],
        }
        return [(ToolRole("get_status", e), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        probe_by_id(tester, tool, role)
