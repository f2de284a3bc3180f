"""``only_if``: an operation is done only when conditions on the record and its people hold ("a delay
voucher only for gold or platinum members whose flight is more than 180 minutes late"). The tool
does it for anyone; the agent must look the facts up and decide."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..money import money_text
from ..naming import words
from ..rules.base import Param
from .base import PolicyKind, PolicyModel, PolicyRef, register
from .common import footprint, op_of, owned_records, probe_break, refuse_on_records

if TYPE_CHECKING:
    from ..catalog import Domain
    from ..modeling import Design

__all__ = ["OnlyIf", "Condition"]

Comparison = Literal[">", ">=", "<", "<=", "="]
_COMPARE = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
}
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
        unit = next((u for u in ("minutes", "hours", "days", "cents") if attr.endswith(f"_{u}")), None)
        subject = f"the {words(entity)}'s {words(attr.removesuffix(f'_{unit}') if unit else attr)}"
        if condition.in_ is not None:
            return f"{subject} is {' or '.join(words(str(v)) for v in condition.in_)}"
        value = self._value(condition, ref)
        amount = money_text(int(value)) if unit == "cents" else f"{value:g}" + (f" {unit}" if unit else "")
        return f"{subject} is {_WORDS[condition.op]} {amount}"  # type: ignore[index]

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
        """Records on both sides of the conditions: when every record qualifies (or none does), about one in
        four is moved across by an ``in`` condition on a drawn enum attribute (chosen by id, no draw from the
        seed's stream); the refusal and the conditional tasks need both kinds."""
        design = seeder.design
        op = op_of(design, ref.op)
        entity = design.entity(op.entity)
        rows = seeder.rows[entity.plural]
        if not rows:
            return
        verdicts = [self._holds(seeder, ref, row) for row in rows]
        if all(v is not None for v in verdicts) and 0 < sum(verdicts) < len(verdicts):  # type: ignore[arg-type]
            return
        flippable = [c for c in ref.rule.conditions if c.in_ is not None]
        flip = next((c for c in flippable if (a := self._attribute(design, c)) and a.enum and not a.derive), None)
        if flip is None:
            return
        target, name = flip.path.split(".")
        attr = self._attribute(design, flip)
        inside = [v for v in dict.fromkeys(attr.enum) if v in flip.in_]
        outside = [v for v in dict.fromkeys(attr.enum) if v not in flip.in_]
        values = outside if all(verdicts) else inside
        if not values:
            return
        if op.kind in ("book", "create"):  # the records made lie in the past: move related rows none of them uses
            relation = next((r for r in entity.relations if r.to == target), None)
            if relation is None:
                return
            used = {row.get(relation.column) for row in rows}
            for other in seeder.rows[design.entity(target).plural]:
                key = other[f"{target}_id"]
                if key not in used and sum(map(ord, str(key))) % 3 == 0:
                    other[name] = values[sum(map(ord, str(key))) % len(values)]
            return
        for row in rows:
            if sum(map(ord, str(row[f"{entity.name}_id"]))) % 4 == 0:
                holder = self._row(seeder, entity.name, target, row)
                if holder is not None:
                    holder[name] = values[sum(map(ord, str(row[f"{entity.name}_id"]))) % len(values)]

    def _attribute(self, design: Design, condition: Condition) -> Any:
        entity, name = condition.path.split(".")
        return next((a for a in design.entity(entity).attributes if a.name == name), None)

    def _row(self, seeder: Any, entity_name: str, target: str, row: dict[str, Any]) -> dict[str, Any] | None:
        """The row of ``target`` a record of ``entity_name`` leads to (itself, a parent, or up its owner chain)."""
        design = seeder.design
        current, current_entity = row, design.entity(entity_name)
        path = [current_entity, *((design.chain(current_entity) or [])[1:])]
        relation = next((r for r in current_entity.relations if r.to == target), None)
        if target == entity_name:
            return row
        if relation is not None:
            return self._find(seeder, target, row.get(relation.column))
        for child, parent in zip(path, path[1:], strict=False):
            column = next(r.column for r in child.relations if r.to == parent.name)
            current = self._find(seeder, parent.name, current.get(column)) or {}
            if parent.name == target:
                return current or None
        return None

    def _find(self, seeder: Any, entity_name: str, key: Any) -> dict[str, Any] | None:
        table = seeder.rows[seeder.design.entity(entity_name).plural]
        return next((r for r in table if r[f"{entity_name}_id"] == key), None)

    def _holds(self, seeder: Any, ref: PolicyRef, row: dict[str, Any]) -> bool | None:
        """The conditions on a seed row, in Python (None when a row they name is missing)."""
        entity = op_of(seeder.design, ref.op).entity
        for condition in ref.rule.conditions:
            target, name = condition.path.split(".")
            holder = self._row(seeder, entity, target, row)
            if holder is None:
                return None
            value = holder.get(name)
            if condition.in_ is not None:
                if value not in condition.in_:
                    return False
            else:
                bound = self._value(condition, ref)
                if value is None or not _COMPARE[condition.op](value, bound):  # type: ignore[index]
                    return False
        return True

    def _new_record_tries(self, tester: Any, ref: PolicyRef, tool: str) -> list[dict[str, Any]]:
        """For an op that makes a record (book): a call the tool accepts, with the related record the conditions
        name swapped for one of the same principal's that fails them (a transfer onto a card not offered it)."""
        design = tester.design
        op = op_of(design, ref.op)
        entity = design.entity(op.entity)
        from ..operations import operation  # noqa: PLC0415

        base = operation("book").arguments(tester, tool, entity, op) if op.kind == "book" else None
        if base is None:
            return []
        p_id = f"{design.principal.name}_id"
        tries = []
        for condition in ref.rule.conditions:
            target, name = condition.path.split(".")
            relation = next((r for r in entity.relations if r.to == target), None)
            if relation is None or relation.column not in base or condition.in_ is None:
                continue
            related = design.entity(target)
            owners = tester.owners(related) if design.owned(related) else {}
            for row in tester.rows(target):
                owner = owners.get(row[f"{target}_id"], base[p_id])
                if row.get(name) not in condition.in_ and owner == base[p_id]:
                    tries.append({**base, relation.column: row[f"{target}_id"]})
        return tries

    def probe(self, tester: Any, ref: PolicyRef) -> str | None:
        design = tester.design
        op = op_of(design, ref.op)
        tool = design.op_tool(op.name)
        if op.kind == "book":
            tries = self._new_record_tries(tester, ref, tool)
            return (
                probe_break(tester, ref, tool, tries) if tries else "no related record of the user fails the conditions"
            )
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
        return refuse_on_records(world, ref, found, lambda: op)
