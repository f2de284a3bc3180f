"""``get_<e>``: one record by id, with the names of related records.

In a world design a principal's record comes with their payment methods, and an owned record is
read only for its own principal (the acting principal's id and ``authority.owned``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..ledger import METHODS_TABLE, exists_step, owned_steps
from .base import OperationKind, Tool, ToolRole, register
from .parts import exists, id_param, params, principal_param, row_select, view_select, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Get", "probe_by_id"]


@register
class Get(OperationKind):
    name = "get"
    phase = "read"
    styles = frozenset({"legacy", "world"})

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if design.world:
            return [self.world_tool(design, entity)]
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

    def world_tool(self, design: Design, entity: Entity) -> Tool:
        e = entity.name
        key = f"{e}_id"
        principal = design.principal
        p_id = f"{principal.name}_id"
        if entity is principal:
            methods = (
                f"(SELECT json_group_array(json_object('method_id', m.method_id, 'kind', m.kind, 'label', m.label, "
                f"'balance_cents', m.balance_cents, 'status', m.status)) FROM {METHODS_TABLE} m WHERE m.{p_id} = "
                f"t.{p_id}) AS payment_methods"
                if design.domain.ledger
                else "NULL AS payment_methods"
            )
            description = f"The {words(e)}'s profile" + (" and payment methods." if design.domain.ledger else ".")
            properties, steps = {key: id_param(entity)}, [exists_step(entity, hint=f"Find them with find_{e}.")]
            sql = f"SELECT t.*, {methods} FROM {entity.plural} t WHERE t.{key} = :{key}"
        elif design.owned(entity):
            description = f"One of the {words(principal.name)}'s {words(entity.plural)}, with its amounts in dollars."
            properties = {p_id: principal_param(design), key: id_param(entity)}
            steps = owned_steps(design, entity)
            sql = view_select(design, entity, f"t.{key} = :{key}")
        else:
            description = f"One {words(e)} by id, with the names of related records."
            properties, steps = {key: id_param(entity)}, [exists_step(entity)]
            sql = view_select(design, entity, f"t.{key} = :{key}")
        tool = {
            "name": f"get_{e}",
            "kind": "read",
            "description": description,
            "parameters": params(properties, list(properties)),
            "steps": [*steps, {"kind": "return", "shape": "row", "sql": sql}],
        }
        return ToolRole("get", e), tool

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        design = tester.design
        entity = design.entity(role.entity)
        if not design.world:
            probe_by_id(tester, tool, role)
            return
        key = f"{role.entity}_id"
        if not design.owned(entity):
            tester.positive(tool, [{key: r[key]} for r in tester.pick(role.entity)])
            tester.negative(tool, "unknown_id", {key: tester.unknown(role.entity)}, f"exists.{role.entity}")
            return
        p_id = f"{design.principal.name}_id"
        owners = tester.owners(entity)
        rows = tester.pick(role.entity)
        tester.positive(tool, [{p_id: owners[r[key]], key: r[key]} for r in rows])
        others = [p[p_id] for p in tester.rows(design.principal.name)]
        if rows and len(others) > 1:
            stranger = next(o for o in others if o != owners[rows[0][key]])
            tester.negative(
                tool, "rule", {p_id: stranger, key: rows[0][key]}, "authority.owned", rule="authority.owned"
            )


def probe_by_id(tester: Tester, tool: str, role: ToolRole) -> None:
    """Seeded ids are found; an unknown one is refused by the existence check."""
    key = f"{role.entity}_id"
    tester.positive(tool, [{key: r[key]} for r in tester.pick(role.entity)])
    tester.negative(tool, "unknown_id", {key: tester.unknown(role.entity)}, f"{role.entity}_exists")
