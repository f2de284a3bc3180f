"""``list_<plural>_for_<owner>``: the records of one related record, optionally in one state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import OperationKind, Tool, ToolRole, register
from .parts import exists, id_param, p_, params, record_source, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["ListFor", "probe_by_owner"]


@register
class ListFor(OperationKind):
    name = "list_for"
    phase = "read"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        e, table = entity.name, entity.plural
        tools: list[Tool] = []
        for relation in entity.relations:
            target = design.entity(relation.to)
            properties: dict[str, Any] = {relation.column: id_param(target)}
            condition = f"t.{relation.column} = :{relation.column}"
            if entity.lifecycle:
                field_name = entity.lifecycle.field
                properties[p_(field_name)] = {
                    "type": "string",
                    "enum": entity.lifecycle.states,
                    "description": f"Only {words(table)} in this state.",
                }
                condition += f" AND (:{p_(field_name)} IS NULL OR t.{field_name} = :{p_(field_name)})"
            tool = {
                "name": f"list_{table}_for_{relation.to}",
                "kind": "read",
                "description": f"The {words(table)} of one {words(target.name)}.",
                "parameters": params(properties, [relation.column]),
                "steps": [
                    exists(design, target, relation.column),
                    {
                        "kind": "return",
                        "shape": "rows",
                        "sql": (f"SELECT * FROM {record_source(entity)} t WHERE {condition} ORDER BY t.{e}_id"),
                    },
                ],
            }
            tools.append((ToolRole("list_for", e, relation=relation.to), tool))
        return tools

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        probe_by_owner(tester, tool, role)


def probe_by_owner(tester: Tester, tool: str, role: ToolRole) -> None:
    """Seeded owners are found; an unknown owner is refused by the existence check."""
    assert role.relation is not None
    column = next(r.column for r in tester.design.entity(role.entity).relations if r.to == role.relation)
    owner_key = f"{role.relation}_id"
    tester.positive(tool, [{column: r[owner_key]} for r in tester.pick(role.relation)])
    tester.negative(tool, "unknown_id", {column: tester.unknown(role.relation)}, f"{role.relation}_exists")
