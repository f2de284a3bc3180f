"""``update_<e>``: change a record's mutable attributes; omitted ones stay as they are."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import OperationKind, Tool, ToolRole, register
from .parts import exists, id_param, p_, param, params, row_select, value, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Update"]


@register
class Update(OperationKind):
    name = "update"
    phase = "write"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        e, table = entity.name, entity.plural
        mutable = [a for a in entity.attributes if a.mutable]
        if not mutable:
            return []
        properties = {f"{e}_id": id_param(entity)} | {p_(a.name): param(a, f"New {words(a.name)}.") for a in mutable}
        any_given = " OR ".join(f":{p_(a.name)} IS NOT NULL" for a in mutable)
        steps: list[dict[str, Any]] = [
            exists(design, entity),
            {
                "kind": "require",
                "sql": f"SELECT 1 WHERE {any_given}",
                "error": "Give at least one of: " + ", ".join(p_(a.name) for a in mutable) + ".",
                "rule": "update_needs_a_value",
            },
        ]
        for attr in mutable:
            if attr.unique:
                steps.append(
                    {
                        "kind": "require",
                        "expect": "none",
                        "sql": f"SELECT 1 FROM {table} WHERE {attr.name} = :{p_(attr.name)} AND {e}_id <> :{e}_id",
                        "error": f"Another {words(e)} already has the {words(attr.name)} {{{p_(attr.name)}}}.",
                        "rule": f"unique_{attr.name}",
                    }
                )
        sets = ", ".join(f"{a.name} = COALESCE({value(a, p_(a.name))}, {a.name})" for a in mutable)
        steps += [
            {"kind": "exec", "sql": f"UPDATE {table} SET {sets} WHERE {e}_id = :{e}_id"},
            {"kind": "return", "shape": "row", "sql": row_select(design, entity, f"t.{e}_id = :{e}_id")},
        ]
        tool = {
            "name": f"update_{e}",
            "kind": "write",
            "description": f"Change a {words(e)}'s "
            + ", ".join(words(a.name) for a in mutable)
            + "; omitted fields stay as they are.",
            "parameters": params(properties, [f"{e}_id"]),
            "steps": steps,
        }
        return [(ToolRole("update", e), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return {design.entity(role.entity).plural}

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        key = f"{role.entity}_id"
        schema = tester.env.tools[tool].input_schema["properties"]
        editable = [n for n in schema if n != key]
        candidates = []
        for row in tester.pick(role.entity):
            name = tester.rng.choice(editable)
            new = tester.value_for(schema[name], name)
            for _ in range(10):
                if new != row.get(name) and not (isinstance(new, bool) and int(new) == row.get(name)):
                    break
                new = tester.value_for(schema[name], name)
            candidates.append({key: row[key], name: new})
        tester.positive(tool, candidates)
        some = tester.pick(role.entity, count=1)
        if some:
            tester.negative(tool, "rule", {key: some[0][key]}, "update_needs_a_value")
        tester.negative(
            tool,
            "unknown_id",
            {key: tester.unknown(role.entity), editable[0]: tester.value_for(schema[editable[0]], editable[0])},
            f"{role.entity}_exists",
        )
