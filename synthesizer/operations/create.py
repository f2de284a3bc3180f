"""``create_<e>``: a new record, its rules' ``require`` steps first and their effects after."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import OperationKind, Tool, ToolRole, register
from .parts import effect_steps, exists, id_param, p_, param, params, row_select, rule_steps, rule_summary, value, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Create"]


@register
class Create(OperationKind):
    name = "create"
    phase = "write"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
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

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        entity = design.entity(role.entity)
        tables = {entity.plural}
        for ref in design.refs:
            if ref.rule.entity == entity.name:
                tables |= ref.kind.writes(design, ref, entity, None)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
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
