"""``create_<e>``: a new record, its rules' ``require`` steps first and their effects after.

World designs declare their creates instead (design §4.10): ``{"kind": "create", "name": "open_claim",
"entity": "claim"}`` opens a principal's own record that no ``book`` makes (a support case, a claim, a
service request). The caller gives the parent records and the entity's ``input`` attributes; the
system fills the rest (the initial state, ``created_at``, copies from the parents, lookups, codes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..ledger import exists_step, owned_steps
from ..oracle import row
from ..world import owner_chain
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .parts import (
    effect_steps,
    exists,
    id_param,
    p_,
    param,
    params,
    principal_param,
    row_select,
    rule_steps,
    rule_summary,
    value,
    view_select,
    words,
)

if TYPE_CHECKING:
    from ..catalog import Domain, Entity, Relation
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Create", "CreateModel"]


class CreateModel(OperationModel):
    kind: Literal["create"]


def _acting_relation(design: Design, entity: Entity) -> Relation | None:
    """The relation a new record takes the acting principal through (the first required one to the principal)."""
    return next((r for r in entity.relations if r.required and r.to == design.principal.name), None)


@register
class Create(OperationKind):
    name = "create"
    phase = "write"
    styles = frozenset({"legacy", "world"})
    model = CreateModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        entity = domain.entity(op.entity)
        problems = []
        chain = owner_chain(domain, entity)
        if chain is None or len(chain) < 2:
            problems.append(f"a create opens a principal's own record; {op.entity!r} is not owned by a principal")
        books = [o.name for o in domain.operations if o.kind == "book" and o.entity == op.entity]
        if books:
            problems.append(f"{op.entity!r} is made by {books[0]}; a create is for records no book makes")
        inputs = {a.name for a in entity.attributes if a.input}
        stamps = {t.stamp for t in entity.lifecycle.transitions if t.stamp} if entity.lifecycle else set()
        for attr in entity.attributes:
            derive = attr.derive
            if derive is not None and (derive.price or derive.counter):
                problems.append(f"{attr.name!r}: a create cannot compute a price or a counter (use book)")
            elif derive is not None and derive.lookup and derive.lookup.by not in inputs:
                problems.append(f"{attr.name!r}: its lookup by {derive.lookup.by!r} needs that input")
            elif attr.required and not (
                attr.input or derive or attr.generator.startswith("code:") or attr.name in stamps
            ):
                problems.append(f"{attr.name!r} is required but neither an input nor computed")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if design.world:
            return [self.world_tool(design, entity, op) for op in design.operations("create", entity)]
        if not entity.creatable:
            return []
        e, table = entity.name, entity.plural
        stamps = {t.stamp for t in entity.lifecycle.transitions if t.stamp} if entity.lifecycle else set()
        codes = {a.name: design.codes[(e, a.name)] for a in entity.attributes if (e, a.name) in design.codes}
        attrs = [a for a in entity.attributes if a.name not in stamps and a.generator != "none" and a.name not in codes]
        properties: dict[str, Any] = {}
        required: list[str] = []
        steps: list[dict[str, Any]] = []
        for relation in entity.relations:
            target = design.entity(relation.to)
            properties[relation.column] = {**id_param(target), "description": relation.description}
            if relation.required:
                required.append(relation.column)
                steps.append(exists(design, target, relation.column))
            else:
                steps.append(
                    {
                        **exists(design, target, relation.column),
                        "sql": f"SELECT 1 WHERE :{relation.column} IS NULL OR EXISTS (SELECT 1 FROM {target.plural} "
                        f"WHERE {target.name}_id = :{relation.column})",
                    }
                )
        for attr in attrs:
            properties[p_(attr.name)] = param(attr)
            if attr.required:
                required.append(p_(attr.name))
            if attr.unique:
                steps.append(
                    {
                        "kind": "require",
                        "sql": f"SELECT 1 FROM {table} WHERE {attr.name} = :{p_(attr.name)}",
                        "expect": "none",
                        "error": f"Another {words(e)} already has the {words(attr.name)} {{{p_(attr.name)}}}.",
                        "rule": f"unique_{attr.name}",
                    }
                )
        steps += rule_steps(design, entity, "create")
        steps.append({"kind": "let", "name": "new_id", "sql": f"SELECT new_id('{entity.id_prefix}')"})
        columns = [f"{e}_id", *[r.column for r in entity.relations], *[a.name for a in attrs], *codes]
        values = [
            ":new_id",
            *[f":{r.column}" for r in entity.relations],
            *[value(a, p_(a.name)) for a in attrs],
            *[f"new_id('{prefix}')" for prefix in codes.values()],
        ]
        if entity.lifecycle:
            columns.append(entity.lifecycle.field)
            values.append(f"'{entity.lifecycle.initial}'")
        steps.append(
            {"kind": "exec", "sql": f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})"}
        )
        steps += effect_steps(design, entity, None)
        steps.append({"kind": "return", "shape": "row", "sql": row_select(design, entity, f"t.{e}_id = :new_id")})
        tool = {
            "name": f"create_{e}",
            "kind": "write",
            "description": f"Create a {words(e)}."
            + (f" Its {', '.join(words(c) for c in codes)} is assigned automatically." if codes else "")
            + rule_summary(design, entity, "create"),
            "parameters": params(properties, required),
            "steps": steps,
        }
        return [(ToolRole("create", e), tool)]

    def world_tool(self, design: Design, entity: Entity, op: Any) -> Tool:
        from ..world_spec import auto_columns  # noqa: PLC0415 (world_spec builds on the operation kinds)

        e, table, principal = entity.name, entity.plural, design.principal
        p_id = f"{principal.name}_id"
        acting = _acting_relation(design, entity)
        properties: dict[str, Any] = {p_id: principal_param(design)}
        required = [p_id]
        found = [exists_step(principal, p_id, f"Find them with find_{principal.name}.")]
        owned: list[dict[str, Any]] = []
        sources: dict[str, str] = {}  # relation target -> the SQL value of its id
        for relation in entity.relations:
            if relation is acting:
                sources.setdefault(relation.to, f":{p_id}")
                continue
            target, column = design.entity(relation.to), relation.column
            properties[column] = {**id_param(target), "description": relation.description}
            sources.setdefault(relation.to, f":{column}")
            check = (
                next(s for s in owned_steps(design, target, column) if s["rule"] == "authority.owned")
                if design.owned(target)
                else None
            )
            if relation.required:
                required.append(column)
                found.append(exists_step(target, column))
                if check:
                    owned.append(check)
            else:
                step = exists_step(target, column)
                found.append({**step, "sql": f"SELECT 1 WHERE :{column} IS NULL OR EXISTS ({step['sql']})"})
                if check:
                    owned.append({**check, "sql": f"SELECT 1 WHERE :{column} IS NULL OR EXISTS ({check['sql']})"})
        inputs = [a for a in entity.attributes if a.input]
        unique = []
        for attr in inputs:
            properties[p_(attr.name)] = param(attr)
            if attr.required:
                required.append(p_(attr.name))
            if attr.unique:
                unique.append(
                    {
                        "kind": "require",
                        "sql": f"SELECT {e}_id AS holder FROM {table} WHERE {attr.name} = :{p_(attr.name)}",
                        "expect": "none",
                        "error": f"Another {words(e)} already has the {words(attr.name)} {{{p_(attr.name)}}}.",
                        "rule": f"rule.unique_{attr.name}",
                    }
                )
        steps = [*found, *unique, *rule_steps(design, entity, "create"), *owned]
        steps.append({"kind": "let", "name": "new_id", "sql": f"SELECT new_id('{entity.id_prefix}')"})
        columns, values = [f"{e}_id"], [":new_id"]
        for relation in entity.relations:
            columns.append(relation.column)
            values.append(f":{p_id}" if relation is acting else f":{relation.column}")
        for attr in inputs:
            columns.append(attr.name)
            values.append(value(attr, p_(attr.name)))
        for attr in entity.attributes:
            derive = attr.derive
            if derive is not None and derive.copy_:
                target, source = derive.copy_.split(".")
                columns.append(attr.name)
                values.append(
                    f"(SELECT {source} FROM {design.entity(target).plural} WHERE {target}_id = {sources[target]})"
                )
            elif derive is not None and derive.lookup:
                cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in derive.lookup.values.items())
                columns.append(attr.name)
                values.append(f"CASE :{p_(derive.lookup.by)} {cases} ELSE 0 END")
        for (owner, name), prefix in design.codes.items():
            if owner == e:
                columns.append(name)
                values.append(f"new_id('{prefix}')")
        if any(c["name"] == "created_at" for c in auto_columns(design, entity)):
            columns.append("created_at")
            values.append("now()")
        if entity.lifecycle:
            columns.append(entity.lifecycle.field)
            values.append(f"'{entity.lifecycle.initial}'")
        steps.append(
            {"kind": "exec", "sql": f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})"}
        )
        steps += effect_steps(design, entity, None)
        steps.append({"kind": "return", "shape": "row", "sql": view_select(design, entity, f"t.{e}_id = :new_id")})
        codes = [name for (owner, name) in design.codes if owner == e]
        tool = {
            "name": op.name,
            "kind": "write",
            "description": f"Open a new {words(e)} for the {words(principal.name)} you are helping"
            + (f" (it starts {entity.lifecycle.initial})" if entity.lifecycle else "")
            + "."
            + (f" Its {', '.join(words(c) for c in codes)} is assigned automatically." if codes else "")
            + rule_summary(design, entity, "create"),
            "parameters": params(properties, required),
            "steps": steps,
        }
        agent_role = design.domain.agent.role if design.domain.agent else "agent"
        return ToolRole("create", e, op_id=op.name, by=op.by_or_default(agent_role)), tool

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        entity = design.entity(role.entity)
        tables = {entity.plural}
        for ref in design.refs:
            if ref.rule.entity == entity.name:
                tables |= ref.kind.writes(design, ref, entity, None)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        if role.op_id is not None:
            self.world_probe(tester, tool, role)
            return
        design = tester.design
        entity = design.entity(role.entity)
        schema = tester.env.tools[tool].input_schema
        for relation in entity.relations:
            if relation.required and tester.rows(relation.to) and not tester.eligible(entity.name, relation.to):
                rules = [
                    f"{r.rule.kind} ({r.rule.description})"
                    for r in design.refs
                    if r.rule.entity == entity.name and relation.to in r.kind.parties(r.rule)
                ]
                tester.untested(
                    tool,
                    f"no seeded {relation.to} can take part in a new "
                    f"{entity.name}: none passes {'; '.join(rules) or 'the rules'}",
                )
                return
        candidates = [self.arguments(tester, entity, schema) for _ in range(tester.attempts)]
        base = tester.positive(tool, candidates)
        if base is None:
            return
        for relation in entity.relations:
            if relation.column in base:
                tester.negative(
                    tool, "unknown_id", {**base, relation.column: tester.unknown(relation.to)}, f"{relation.to}_exists"
                )
        for ref in design.refs:
            if ref.rule.entity == entity.name and ref.kind.action(ref.rule) == "create":
                tester.waive(ref, ref.kind.create_probes(tester, ref, tool, entity, base))

    def arguments(self, tester: Tester, entity: Entity, schema: dict[str, Any]) -> dict[str, Any]:
        """Arguments a create should succeed with: related rows every rule lets through, values the rules allow."""
        refs = [r for r in tester.design.refs if r.rule.entity == entity.name]
        arguments: dict[str, Any] = {}
        for _ in range(20):  # draw related rows until no unique pair is already taken
            for relation in entity.relations:
                eligible = tester.eligible(entity.name, relation.to)
                if eligible:
                    arguments[relation.column] = tester.rng.choice(eligible)[f"{relation.to}_id"]
            if not tester.taken(entity, arguments):
                break
        for ref in refs:
            ref.kind.choose_arguments(tester, ref, entity, schema, arguments)
        for name in schema.get("required", []):
            if name not in arguments:
                arguments[name] = tester.value_for(schema["properties"][name], name)
        for ref in refs:
            ref.kind.settle_arguments(tester, ref, entity, arguments)
        return arguments

    def world_probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        """A new record for an eligible principal, on parents they own, checked on the row it adds (owner,
        initial state, inputs, copies); then refusals: an unknown principal or parent, a parent another principal
        owns, and each rule guarding the create."""
        design = tester.design
        entity = design.entity(role.entity)
        e, principal = entity.name, design.principal
        p_id = f"{principal.name}_id"
        acting = _acting_relation(design, entity)
        schema = tester.env.tools[tool].input_schema
        parents = [r for r in entity.relations if r is not acting and r.required]
        owners = {r.to: tester.owners(design.entity(r.to)) for r in parents if design.owned(design.entity(r.to))}
        refs = [r for r in design.refs if r.rule.entity == e]

        def arguments() -> dict[str, Any] | None:
            people = tester.eligible(e, principal.name)
            if not people:
                return None
            person = tester.rng.choice(people)[p_id]
            drawn: dict[str, Any] = {p_id: person}
            for relation in parents:
                rows = tester.eligible(e, relation.to)
                if relation.to in owners:
                    rows = [r for r in rows if owners[relation.to][r[f"{relation.to}_id"]] == person]
                if not rows:
                    return None
                drawn[relation.column] = tester.rng.choice(rows)[f"{relation.to}_id"]
            for ref in refs:
                ref.kind.choose_arguments(tester, ref, entity, schema, drawn)
            for name in schema.get("required", []):
                if name not in drawn:
                    drawn[name] = tester.value_for(schema["properties"][name], name)
            for ref in refs:
                ref.kind.settle_arguments(tester, ref, entity, drawn)
            return None if tester.taken(entity, drawn) else drawn

        candidates = [c for c in (arguments() for _ in range(tester.attempts * 3)) if c is not None]
        if not candidates:
            tester.untested(tool, f"no eligible {principal.name} owns what a new {e} needs")
            return

        def check(state: Any, result: Any, given: dict[str, Any]) -> list[str]:
            new_id = result.structured[f"{e}_id"]
            with state.mode("internal"):
                made = row(state.conn, entity.plural, f"{e}_id", new_id)
                copies = {}
                for attr in entity.attributes:
                    if attr.derive is not None and attr.derive.copy_:
                        target, source = attr.derive.copy_.split(".")
                        column = next(r.column for r in entity.relations if r.to == target)
                        value_of = given[p_id] if acting is not None and column == acting.column else given[column]
                        parent = row(state.conn, design.entity(target).plural, f"{target}_id", value_of)
                        copies[attr.name] = None if parent is None else parent[source]
            if made is None:
                return [f"{new_id} was not written"]
            problems = []
            if acting is not None and made[acting.column] != given[p_id]:
                problems.append(f"{acting.column} is {made[acting.column]}, not the acting {given[p_id]}")
            if entity.lifecycle and made[entity.lifecycle.field] != entity.lifecycle.initial:
                problems.append(f"{entity.lifecycle.field} is {made[entity.lifecycle.field]}")
            for attr in entity.attributes:
                name = p_(attr.name)
                if attr.input and attr.type != "datetime" and name in given and made[attr.name] != given[name]:
                    problems.append(f"{attr.name} is {made[attr.name]!r}, not {given[name]!r}")
            for name, wanted in copies.items():
                if made[name] != wanted:
                    problems.append(f"{name} is {made[name]!r}, not the parent's {wanted!r}")
            if "created_at" in made and str(made["created_at"])[:19] != tester.now:
                problems.append(f"created_at is {made['created_at']}, not the clock")
            return problems

        base = tester.first_oracle(tool, candidates, check, want=2)
        if base is None:
            return
        if not owners:  # (with an owned parent named, the tester asks as that parent's owner instead)
            unknown = {**base, p_id: tester.unknown(principal.name)}
            tester.negative(tool, "unknown_id", unknown, f"exists.{principal.name}")
        for relation in parents:
            tester.negative(
                tool, "unknown_id", {**base, relation.column: tester.unknown(relation.to)}, f"exists.{relation.to}"
            )
            if relation.to in owners:
                theirs = [
                    r[f"{relation.to}_id"]
                    for r in tester.eligible(e, relation.to)
                    if owners[relation.to][r[f"{relation.to}_id"]] != base[p_id]
                ]
                if theirs:
                    rule = "authority.owned"
                    tester.negative(tool, "rule", {**base, relation.column: theirs[0]}, rule, rule=rule)
        for ref in refs:
            if ref.kind.action(ref.rule) == "create":
                tester.waive(ref, ref.kind.create_probes(tester, ref, tool, entity, base))
