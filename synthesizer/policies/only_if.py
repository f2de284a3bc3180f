"""``only_if``: an operation is done only when conditions on the record and its people hold ("a delay
voucher only for gold or platinum members whose flight is more than 180 minutes late"). The tool
does it for anyone; the agent must look the facts up and decide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..naming import words
from ..rules.base import Param
from .base import PolicyKind, PolicyModel, PolicyRef, register
from .common import call_for, footprint, forbidden_draft, op_of, owned_records, probe_break, record_ask

if TYPE_CHECKING:
    from ..catalog import Domain
    from ..modeling import Design

__all__ = ["OnlyIf", "Condition"]

Comparison = Literal[">", ">=", "<", "<=", "="]
_WORDS = {">": "more than", ">=": "at least", "<": "less than", "<=": "at most", "=": "exactly"}


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    path: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$", description="entity.attribute")
    in_: list[str | int | bool] | None = Field(None, alias="in")
    op: Comparison | None = None
    value: Param | float | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        if (self.in_ is None) == (self.op is None) or (self.op is not None and self.value is None):
            raise ValueError("a condition takes either 'in' or 'op' with 'value'")
        return self


class OnlyIf(PolicyModel):
    kind: Literal["only_if"]
    op: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="The operation the conditions gate.")
    conditions: list[Condition] = Field(min_length=1)


def _join_path(design: Design, entity_name: str, target: str) -> list[tuple[str, str, str]] | None:
    """Joins from the op's entity (alias ``e``) to ``target``: (table, alias, ON) triples."""
    if target == entity_name:
        return []
    entity = design.entity(entity_name)
    relation = next((r for r in entity.relations if r.to == target), None)
    if relation is not None:
        return [(design.entity(target).plural, "x_" + target, f"x_{target}.{target}_id = e.{relation.column}")]
    chain = design.chain(entity) or []
    names = [c.name for c in chain]
    if target not in names:
        return None
    joins, alias = [], "e"
    for child, parent in zip(chain, chain[1:], strict=False):
        rel = next(r for r in child.relations if r.to == parent.name)
        joins.append((parent.plural, f"x_{parent.name}", f"x_{parent.name}.{parent.name}_id = {alias}.{rel.column}"))
        alias = f"x_{parent.name}"
        if parent.name == target:
            break
    return joins


def _sql_value(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return f"{value:g}"
    return "'" + str(value).replace("'", "''") + "'"


@register
class OnlyIfKind(PolicyKind):
    name = "only_if"
    model = OnlyIf
    section = "operations"
    vocabulary = (
        '* only_if {"id", "op", "conditions": [{"path": "entity.attribute", "in": [values]} | {"path", "op": ">", '
        '"value": number or {"default", "low", "high"}}]}: the op only when every condition holds; the tool does '
        "it regardless, the agent checks."
    )

    def problems(self, rule: Any, domain: Domain) -> list[str]:
        op = next((o for o in domain.operations if o.name == rule.op), None)
        if op is None:
            return [f"op {rule.op!r} is not an operation of the domain"]
        problems = []

        names = {e.name: e for e in domain.entities}
        for condition in rule.conditions:
            entity_name, attr = condition.path.split(".")
            entity = names.get(entity_name)
            if entity is None or attr not in {a.name for a in entity.attributes}:
                problems.append(f"condition path {condition.path!r} is not an attribute")
        if sum(isinstance(c.value, Param) for c in rule.conditions) > 1:
            problems.append("at most one condition draws its value per variant")
        return problems

    def parameter(self, rule: Any) -> Param | None:
        return next((c.value for c in rule.conditions if isinstance(c.value, Param)), None)

    def refs(self, design: Design, declared: list[tuple[Any, float | None]]) -> list[PolicyRef]:
        kept = {e.name for e in design.entities}
        refs = []
        for rule, value in declared:
            op = op_of(design, rule.op)
            if op is None or op.entity not in kept or op.expose == "hidden" or footprint(design, op) is None:
                continue
            if all(_join_path(design, op.entity, c.path.split(".")[0]) is not None for c in rule.conditions):
                refs.append(PolicyRef(f"policy.{rule.id}", self.name, rule, value, rule.op))
        return refs

    def _value(self, condition: Condition, ref: PolicyRef) -> Any:
        return ref.value if isinstance(condition.value, Param) else condition.value

    def _phrase(self, condition: Condition, ref: PolicyRef) -> str:
        entity, attr = condition.path.split(".")
        subject = f"the {words(entity)}'s {words(attr)}"
        if condition.in_ is not None:
            return f"{subject} is {' or '.join(words(str(v)) for v in condition.in_)}"
        return f"{subject} is {_WORDS[condition.op]} {self._value(condition, ref):g}"  # type: ignore[index]

    def sentence(self, design: Design, ref: PolicyRef) -> str:
        conditions = " and ".join(self._phrase(c, ref) for c in ref.rule.conditions)
        return (
            f"Use {ref.op} only when {conditions}; look these up first. Never otherwise, however the "
            f"{words(design.principal.name)} asks — the tool does not check it for you."
        )

    def _predicate(self, design: Design, ref: PolicyRef) -> tuple[list[tuple[str, str, str]], str]:
        op = op_of(design, ref.op)
        joins: list[tuple[str, str, str]] = []
        tests = []
        for condition in ref.rule.conditions:
            entity, attr = condition.path.split(".")
            for join in _join_path(design, op.entity, entity) or []:
                if join not in joins:
                    joins.append(join)
            column = f"{'e' if entity == op.entity else 'x_' + entity}.{attr}"
            if condition.in_ is not None:
                tests.append(f"{column} IN ({', '.join(_sql_value(v) for v in condition.in_)})")
            else:
                tests.append(f"{column} {condition.op} {_sql_value(self._value(condition, ref))}")
        return joins, " AND ".join(tests)

    def violation(self, design: Design, ref: PolicyRef) -> str:
        op = op_of(design, ref.op)
        entity = design.entity(op.entity)
        joins, test = self._predicate(design, ref)
        joined = " ".join(f"JOIN {table} {alias} ON {on}" for table, alias, on in joins)
        return (
            f"SELECT f.id FROM ({footprint(design, op)}) f JOIN {entity.plural} e ON e.{entity.name}_id = f.id "
            f"{joined} WHERE NOT ({test})"
        )

    def qualifies(self, design: Design, ref: PolicyRef, state: Any, key: Any) -> bool:
        """Whether the record meets the conditions, read from a state (the probes' and tasks' oracle)."""
        op = op_of(design, ref.op)
        entity = design.entity(op.entity)
        joins, test = self._predicate(design, ref)
        joined = " ".join(f"JOIN {table} {alias} ON {on}" for table, alias, on in joins)
        sql = f"SELECT 1 FROM {entity.plural} e {joined} WHERE e.{entity.name}_id = ? AND ({test})"
        return state.conn.execute(sql, (key,)).fetchone() is not None

    def adjust_seed(self, seeder: Any, ref: PolicyRef) -> None:
        """Nothing to shape: the catalog's value ranges give qualifying and non-qualifying records."""
        return None

    def probe(self, tester: Any, ref: PolicyRef) -> str | None:
        design = tester.design
        op = op_of(design, ref.op)
        tool = design.op_tool(op.name)
        entity = design.entity(op.entity)
        p_id = f"{design.principal.name}_id"
        owners = tester.owners(entity)
        state = tester.env.new_state()
        try:
            failing = [
                r
                for r in tester.rows(entity.name)
                if r[f"{entity.name}_id"] in owners and not self.qualifies(design, ref, state, r[f"{entity.name}_id"])
            ]
        finally:
            state.close()
        from .calls import candidates, tables  # noqa: PLC0415

        schema = tester.env.tools[tool].input_schema
        tries = []
        for row in failing[:12]:
            fixed = {p_id: owners[row[f"{entity.name}_id"]], f"{entity.name}_id": row[f"{entity.name}_id"]}
            tries += list(candidates(schema, fixed, tester.table, fixed[p_id], tables(design), row))[:3]
        return probe_break(tester, ref, tool, tries) if tries else f"no seeded {entity.name} fails the conditions"

    def refusal(self, world: Any, ref: PolicyRef) -> Any:
        design = world.design
        op = op_of(design, ref.op)
        tool = design.op_tool(op.name)
        if tool is None or tool not in world.tools:
            return None
        entity = design.entity(op.entity)
        p_id = f"{design.principal.name}_id"
        state = world.env.new_state()
        try:
            found = [
                x
                for x in owned_records(world, entity.name, lambda r: True)
                if not self.qualifies(design, ref, state, x[2][f"{entity.name}_id"])
            ]
        finally:
            state.close()
        world.rng.shuffle(found)
        for own, person, record in found[:10]:
            what = world.describe(own, record, world.records(own, person))
            if what is None:
                continue
            reach = world.reach(own, person, record)
            fixed = {p_id: person[p_id], f"{entity.name}_id": record[f"{entity.name}_id"]}
            forbidden = call_for(world, tool, fixed, str(person[p_id]), reach, record)
            if forbidden is None:
                continue
            draft = forbidden_draft(
                world, ref, person, forbidden, reach, record_ask(world, op, what), {"which one": what}, None
            )
            if draft is not None:
                return draft
        return None
