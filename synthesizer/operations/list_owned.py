"""``list_<plural>_for_<principal>``: the acting principal's own records of an owned entity (world designs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ledger import exists_step
from .base import OperationKind, Tool, ToolRole, register
from .parts import p_, params, principal_param, view_select, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["ListOwned"]


@register
class ListOwned(OperationKind):
    name = "list_owned"
    phase = "read"
    styles = frozenset({"world"})

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if not design.owned(entity):
            return []
        principal = design.principal
        p_id = f"{principal.name}_id"
        properties: dict[str, Any] = {p_id: principal_param(design)}
        condition = f"t.{entity.name}_id IN (SELECT {entity.name}_id FROM {entity.name}_owner WHERE {p_id} = :{p_id})"
        if entity.lifecycle:
            field_name = entity.lifecycle.field
            properties[p_(field_name)] = {
                "type": "string",
                "enum": entity.lifecycle.states,
                "description": f"Only {words(entity.plural)} in this state.",
            }
            condition += f" AND (:{p_(field_name)} IS NULL OR t.{field_name} = :{p_(field_name)})"
        order = f"t.{entity.lifecycle.at}, " if entity.lifecycle and entity.lifecycle.at else ""
        tool = {
            "name": f"list_{entity.plural}_for_{principal.name}",
            "kind": "read",
            "description": f"The {words(entity.plural)} of the {words(principal.name)} you are helping.",
            "parameters": params(properties, [p_id]),
            "steps": [
                exists_step(principal, p_id, f"Find them with find_{principal.name}."),
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": view_select(design, entity, condition) + f" ORDER BY {order}t.{entity.name}_id",
                },
            ],
        }
        return [(ToolRole("list_owned", entity.name), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        p_id = f"{tester.design.principal.name}_id"
        tester.positive(tool, [{p_id: r[p_id]} for r in tester.pick(tester.design.principal.name)])
        tester.negative(
            tool,
            "unknown_id",
            {p_id: tester.unknown(tester.design.principal.name)},
            f"exists.{tester.design.principal.name}",
        )
