"""``update_<e>``: change a record's mutable attributes; omitted ones stay as they are.

World designs declare their updates instead (design §4.10): ``{"kind": "update", "name": "change_meal",
"entity": "booking", "attributes": ["meal_request"]}`` is a tool acting for the principal on their own
record, guarded by the rules naming the op (or ``update``), and counting as a change when it says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..oracle import row as read_row
from ..rules.base import Identifier
from ..world import COMPUTED_AUTO, counts_changes, owner_chain
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .parts import (
    Acting,
    acting_params,
    acting_steps,
    exists,
    id_param,
    p_,
    param,
    params,
    row_select,
    rule_steps,
    rule_summary,
    state_step,
    value,
    view_select,
    words,
)

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Update", "UpdateModel", "system_computed", "acts_on"]


class UpdateModel(OperationModel):
    kind: Literal["update"]
    attributes: list[Identifier] = Field(min_length=1, description="What it changes; each one optional in the call.")
    from_states: list[str] | None = Field(
        None, alias="from", description="States it acts on (default: the lifecycle's initial state)."
    )
    counts_as_change: bool = Field(False, description="Adds one to the record's changes counter (max_changes).")


def system_computed(entity: Entity) -> set[str]:
    """Attributes the system computes (design §3.1, from the catalog alone): derived, stamps, codes, the
    lifecycle field and the columns the modeler adds. Never set by a tool's caller."""
    stamps = {t.stamp for t in entity.lifecycle.transitions if t.stamp} if entity.lifecycle else set()
    fields = {entity.lifecycle.field} if entity.lifecycle else set()
    derived = {a.name for a in entity.attributes if a.derive or a.generator.startswith("code:")}
    return derived | stamps | fields | set(COMPUTED_AUTO)


def acts_on(op: Any, entity: Entity) -> list[str] | None:
    """The states an update acts on: declared, else the initial one; None when the entity has no lifecycle."""
    if entity.lifecycle is None:
        return None
    return list(op.from_states) if op.from_states else [entity.lifecycle.initial]


@register
class Update(OperationKind):
    name = "update"
    phase = "write"
    styles = frozenset({"legacy", "world"})
    model = UpdateModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        entity = domain.entity(op.entity)
        attrs = {a.name: a for a in entity.attributes}
        computed = system_computed(entity)
        agent_role = domain.agent.role if domain.agent else "agent"
        by = op.by_or_default(agent_role)
        problems = []
        for name in op.attributes:
            attr = attrs.get(name)
            if name in computed:
                problems.append(f"{name!r} is computed by the system; no tool sets it")
            elif attr is None:
                problems.append(f"{name!r} is not an attribute of {op.entity!r}")
            elif attr.set_by and attr.set_by != by:
                problems.append(f"{name!r} is set by {attr.set_by}, but the operation is by {by}")
        if len(set(op.attributes)) != len(op.attributes):
            problems.append("attributes repeat")
        if op.from_states is not None:
            states = set(entity.lifecycle.states) if entity.lifecycle else set()
            unknown = [s for s in op.from_states if s not in states]
            if unknown or not op.from_states:
                problems.append(f"from: {unknown or 'empty'} are not states of {op.entity!r}")
        if op.counts_as_change:
            chain = owner_chain(domain, entity)
            if chain is None or len(chain) < 2:
                problems.append("counts_as_change: only a principal's owned records count their changes")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if design.world:
            return [self.world_tool(design, entity, op) for op in design.operations("update", entity)]
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

    def world_tool(self, design: Design, entity: Entity, op: Any) -> Tool:
        e, table = entity.name, entity.plural
        attrs = [next(a for a in entity.attributes if a.name == name) for name in op.attributes]
        properties, required = acting_params(design, entity)
        for attr in attrs:
            keep = "" if len(attrs) == 1 else "; omit to keep it"
            properties[p_(attr.name)] = param(attr, f"New {words(attr.name)}{keep}.")
        steps: list[dict[str, Any]] = []
        if len(attrs) == 1:  # the one value it changes is required
            required.append(p_(attrs[0].name))
        else:  # each optional, one at least
            any_given = " OR ".join(f":{p_(a.name)} IS NOT NULL" for a in attrs)
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT 1 WHERE {any_given}",
                    "error": "Give at least one of: " + ", ".join(p_(a.name) for a in attrs) + ".",
                    "rule": "args.update_value",
                }
            )
        steps += acting_steps(design, entity)
        states = acts_on(op, entity)
        if states is not None and set(states) != set(entity.lifecycle.states if entity.lifecycle else []):
            steps.append(state_step(entity, states, f"state.{op.name}"))
        steps += rule_steps(design, entity, op.name) + rule_steps(design, entity, "update")
        for attr in attrs:
            if attr.unique:
                steps.append(
                    {
                        "kind": "require",
                        "expect": "none",
                        "sql": f"SELECT {e}_id AS holder FROM {table} WHERE {attr.name} = :{p_(attr.name)} "
                        f"AND {e}_id <> :{e}_id",
                        "error": f"Another {words(e)} already has the {words(attr.name)} {{{p_(attr.name)}}}; "
                        f"each {words(e)} needs their own.",
                        "rule": f"rule.unique_{attr.name}",
                    }
                )
        sets = [f"{a.name} = COALESCE({value(a, p_(a.name))}, {a.name})" for a in attrs]
        if op.counts_as_change and design.owned(entity) and counts_changes(design.domain, e):
            sets.append("changes = changes + 1")
        steps += [
            {
                "kind": "exec",
                "sql": f"UPDATE {table} SET {', '.join(sets)} WHERE {e}_id = :{e}_id",
                "affects": "one",
                "error": f"{words(e).capitalize()} {{{e}_id}} could not be changed.",
            },
            {"kind": "return", "shape": "row", "sql": view_select(design, entity, f"t.{e}_id = :{e}_id")},
        ]
        whose = (
            f"the {words(design.principal.name)} you are helping"
            if e == design.principal.name
            else f"a {words(e)} of the {words(design.principal.name)} you are helping"
        )
        guarded = any(s.get("rule") == f"state.{op.name}" for s in steps)
        where = f" ({' or '.join(states)} ones only)" if states and guarded else ""
        tool = {
            "name": op.name,
            "kind": "write",
            "description": f"Change the {_join(words(a.name) for a in attrs)} of {whose}{where}; omitted fields stay "
            "as they are." + rule_summary(design, entity, op.name) + rule_summary(design, entity, "update"),
            "parameters": params(properties, required),
            "steps": steps,
        }
        return ToolRole("update", e, op_id=op.name, by=op.by_or_default(_agent_role(design))), tool

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return {design.entity(role.entity).plural}

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        if role.op_id is not None:
            self.world_probe(tester, tool, role)
            return
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

    def world_probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        """A change of one attribute on an owned record in a state it acts on (checked on the row it leaves),
        then refusals: nothing to change, another principal's record, an unknown one, a wrong state, a value
        another record holds, and each rule guarding it."""
        design = tester.design
        op = next(o for o in design.domain.operations if o.name == role.op_id)
        entity = design.entity(role.entity)
        e, key, p_id = entity.name, f"{entity.name}_id", f"{design.principal.name}_id"
        is_principal = e == design.principal.name
        owners = {r[key]: r[key] for r in tester.rows(e)} if is_principal else tester.owners(entity)
        states = acts_on(op, entity)
        field_name = entity.lifecycle.field if entity.lifecycle else None
        ready = tester.pick(e, lambda r: states is None or r[field_name] in states, count=40)
        schema = tester.env.tools[tool].input_schema["properties"]
        names = [p_(a) for a in op.attributes]
        attrs = {p_(a.name): a for a in entity.attributes if a.name in op.attributes}

        def who(record: dict[str, Any]) -> dict[str, Any]:
            return {p_id: owners[record[key]]} if is_principal else {p_id: owners[record[key]], key: record[key]}

        def change(record: dict[str, Any]) -> dict[str, Any]:
            name = tester.rng.choice(names)
            new = tester.value_for(schema[name], name)
            for _ in range(10):
                if new != record.get(attrs[name].name):
                    break
                new = tester.value_for(schema[name], name)
            return {**who(record), name: new}

        def check(state: Any, result: Any, arguments: dict[str, Any]) -> list[str]:
            record_id = arguments[p_id] if is_principal else arguments[key]
            before = next(r for r in tester.rows(e) if r[key] == record_id)
            with state.mode("internal"):
                after = read_row(state.conn, entity.plural, key, record_id)
            if after is None:
                return [f"{record_id} is gone"]
            problems = []
            for name, attr in attrs.items():
                wanted = arguments.get(name, before[attr.name])
                if attr.type != "datetime" and after[attr.name] != wanted:
                    problems.append(f"{attr.name} is {after[attr.name]!r}, not {wanted!r}")
            if "changes" in after:
                wanted_changes = before["changes"] + (1 if op.counts_as_change else 0)
                if after["changes"] != wanted_changes:
                    problems.append(f"changes {before['changes']} -> {after['changes']}")
            untouched = [c for c in after if c not in {a.name for a in attrs.values()} | {"changes"}]
            moved = [c for c in untouched if after[c] != before[c]]
            if moved:
                problems.append(f"also changed {moved}")
            return problems

        if not ready:
            tester.untested(tool, f"no seeded {e} is {' or '.join(states or [])}")
            return
        base = tester.first_oracle(tool, [change(r) for r in ready], check, want=2)
        if base is None:
            return
        record = next(r for r in ready if who(r).items() <= base.items())
        given = {n: v for n, v in base.items() if n in attrs}
        if len(attrs) > 1:
            tester.negative(tool, "rule", who(record), "args.update_value", rule="args.update_value")
        if is_principal:
            tester.negative(tool, "unknown_id", {**base, p_id: tester.unknown(e)}, f"exists.{e}")
        else:
            tester.negative(tool, "unknown_id", {**base, key: tester.unknown(e)}, f"exists.{e}")
            stranger = next((r[p_id] for r in tester.rows(design.principal.name) if r[p_id] != base[p_id]), None)
            if stranger:
                tester.negative(tool, "rule", {**base, p_id: stranger}, "authority.owned", rule="authority.owned")
        if states is not None and field_name is not None:
            wrong = tester.pick(e, lambda r: r[field_name] not in states, count=1)
            if wrong:
                tester.negative(tool, "wrong_state", {**who(wrong[0]), **given}, f"state.{op.name}")
        for name, attr in attrs.items():
            if attr.unique:
                holder = next(
                    (r for r in tester.rows(e) if r[key] != record[key] and r.get(attr.name) is not None), None
                )
                if holder is not None:
                    rule = f"rule.unique_{attr.name}"
                    tester.negative(tool, "rule", {**who(record), name: holder[attr.name]}, rule, rule=rule)

        def complete(arguments: dict[str, Any]) -> dict[str, Any]:
            found = next((r for r in tester.rows(e) if r[key] == arguments.get(key)), None)
            return {**(who(found) if found else {}), **given, **arguments}

        acting = Acting(tester, complete)
        for ref in design.refs:
            if ref.rule.entity == e and ref.kind.action(ref.rule) in (op.name, "update"):
                tester.waive(ref, ref.kind.transition_probes(acting, ref, tool, entity, ready))  # type: ignore[arg-type]


def _join(items: Any) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _agent_role(design: Design) -> str:
    return design.domain.agent.role if design.domain.agent else "agent"
