"""``search_<plural>``: records by part of their label and optional filters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import OperationKind, Tool, ToolRole, register
from .parts import id_param, p_, param, params, record_source, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Search"]


@register
class Search(OperationKind):
    name = "search"
    phase = "read"
    styles = frozenset({"legacy", "world"})

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if design.world and design.chain(entity) is not None:
            return []  # owned records and principals are found through find_<p> and list_<e>_for_<p>
        e, table = entity.name, entity.plural
        properties: dict[str, Any] = {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "description": f"Part of the {words(entity.label)} (any case).",
            }
        }
        conditions = [f"(:query IS NULL OR t.{entity.label} LIKE :pattern ESCAPE '\\')"]
        for attr in entity.attributes:
            if attr.searchable and attr.enum and attr.name != entity.label:
                properties[p_(attr.name)] = param(attr, f"Only {words(entity.plural)} with this {words(attr.name)}.")
                conditions.append(f"(:{p_(attr.name)} IS NULL OR t.{attr.name} = :{p_(attr.name)})")
        if entity.lifecycle:
            field_name = entity.lifecycle.field
            properties[p_(field_name)] = {
                "type": "string",
                "enum": entity.lifecycle.states,
                "description": f"Only {words(table)} in this state.",
            }
            conditions.append(f"(:{p_(field_name)} IS NULL OR t.{field_name} = :{p_(field_name)})")
        for relation in entity.relations:
            target = design.entity(relation.to)
            properties[relation.column] = {
                **id_param(target),
                "description": f"Only {words(table)} of this {words(target.name)}.",
            }
            conditions.append(f"(:{relation.column} IS NULL OR t.{relation.column} = :{relation.column})")
        tool = {
            "name": f"search_{table}",
            "kind": "read",
            "description": (
                f"Find {words(table)} by part of their {words(entity.label)} and by filters; all filters are optional."
            ),
            "parameters": params(properties, []),
            "steps": [
                {
                    "kind": "let",
                    "name": "pattern",
                    "sql": (
                        "SELECT '%' || replace(replace(replace(:query, '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'"
                    ),
                },
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": f"SELECT * FROM {record_source(entity)} t WHERE "
                    f"{' AND '.join(conditions)} "
                    f"ORDER BY t.{entity.label}, t.{e}_id",
                },
            ],
        }
        return [(ToolRole("search", e), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        label = tester.design.entity(role.entity).label
        rows = tester.pick(role.entity)
        tester.positive(tool, [{"query": str(r[label])[:6]} for r in rows if r[label]] + [{}])
