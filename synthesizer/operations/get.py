"""``get_<e>``: one record by id, with the names of related records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import OperationKind, Tool, ToolRole, register
from .parts import exists, id_param, params, row_select, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Get", "probe_by_id"]


@register
class Get(OperationKind):
    name = "get"
    phase = "read"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        e = entity.name
        tool = {
            "name": f"get_{e}",
            "kind": "read",
            "description": f"One {words(e)} by id, with the names of related records.",
            "parameters": params({f"{e}_id": id_param(entity)}, [f"{e}_id"]),
            "steps": [
                exists(design, entity),
                {"kind": "return", "shape": "row", "sql": row_select(design, entity, f"t.{e}_id = :{e}_id")},
            ],
        }
        return [(ToolRole("get", e), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        probe_by_id(tester, tool, role)


def probe_by_id(tester: Tester, tool: str, role: ToolRole) -> None:
    """Seeded ids are found; an unknown one is refused by the existence check."""
    key = f"{role.entity}_id"
    tester.positive(tool, [{key: r[key]} for r in tester.pick(role.entity)])
    tester.negative(tool, "unknown_id", {key: tester.unknown(role.entity)}, f"{role.entity}_exists")
