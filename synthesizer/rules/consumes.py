"""``consumes``: creating a record draws on a counter of a related one (stock, balance, seats); refused
when it would go below zero, given back by compensating transitions (cancel, refund, return)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import p_
from .base import Identifier, Param, RuleKind, RuleModel, RuleRef, Step, Trap, column_to, fill, register
from .common import required_problems

if TYPE_CHECKING:
    from ..catalog import Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester
    from ..seeding import Seeder

__all__ = ["Consumes", "ConsumesKind"]


class Consumes(RuleModel):
    kind: Literal["consumes"]
    entity: Identifier = Field(description="Creating this entity consumes.")
    resource: Identifier = Field(description="The related entity holding the counter.")
    counter: Identifier = Field(description="Numeric attribute of the resource (stock, balance, seats_left).")
    amount: Identifier | None = Field(None, description="Attribute of the entity giving the amount; 1 when absent.")
    description: str = Field(min_length=1)


def _numeric(entity: Entity) -> set[str]:
    return {a.name for a in entity.attributes if a.type in ("integer", "real")}


@register
class ConsumesKind(RuleKind):
    name = "consumes"
    model = Consumes
    vocabulary = (
        "* ``consumes`` — creating an entity draws on a counter of a related entity (stock, balance,\n"
        "  seats), refused when it would go below zero and given back by compensating transitions;"
    )
    seed_pass = 2

    def problems(self, rule: Consumes, entity: Entity, entities: dict[str, Entity]) -> list[str]:
        problems = required_problems([rule.resource], entity)
        resource = entities.get(rule.resource)
        if rule.resource not in {r.to for r in entity.relations} or resource is None:
            problems.append(f"{rule.resource!r} is not a relation")
        elif rule.counter not in _numeric(resource):
            problems.append(f"{rule.resource}.{rule.counter} is not a numeric attribute")
        if rule.amount and rule.amount not in _numeric(entity):
            problems.append(f"amount {rule.amount!r} is not a numeric attribute")
        return problems

    def applies(self, rule: Consumes, entities: dict[str, Entity]) -> bool:
        return rule.resource in {r.to for r in entities[rule.entity].relations}

    def parameter(self, rule: Consumes) -> Param | None:
        return None

    def references(self, rule: Consumes) -> dict[str, str]:
        return {"resource": rule.resource}

    def action(self, rule: Consumes) -> str:
        return "create"

    def policy(self, ref: RuleRef) -> str:
        return fill(ref.rule.description, ref.value)

    def require_steps(self, design: Design, ref: RuleRef, entity: Entity) -> list[Step]:
        rule = ref.rule
        resource = design.entity(rule.resource)
        column = column_to(entity, rule.resource)
        amount = f":{p_(rule.amount)}" if rule.amount else "1"
        return [
            {
                "kind": "require",
                "expect": "true",
                "rule": ref.id,
                "sql": f"SELECT {rule.counter} >= {amount} AS ok, {rule.counter} AS available FROM "
                f"{resource.plural} "
                f"WHERE {resource.name}_id = :{column}",
                "error": f"{rule.description} (Only {{available}} left.)",
            }
        ]

    def _moves(self, entity: Entity, transition: Transition | None) -> str | None:
        """The sign of the counter's move in a tool: taken on create, given back by a compensating transition."""
        if transition is None:
            return "-"
        return "+" if transition.compensates else None

    def effect_steps(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> list[Step]:
        sign = self._moves(entity, transition)
        if sign is None:
            return []
        rule = ref.rule
        key = ":new_id" if transition is None else f":{entity.name}_id"
        resource = design.entity(rule.resource)
        column = column_to(entity, rule.resource)
        amount = f"(SELECT {rule.amount} FROM {entity.plural} WHERE {entity.name}_id = {key})" if rule.amount else "1"
        return [
            {
                "kind": "exec",
                "sql": f"UPDATE {resource.plural} SET {rule.counter} = {rule.counter} {sign} {amount} "
                f"WHERE {resource.name}_id = (SELECT {column} FROM {entity.plural} WHERE {entity.name}_id = {key})",
            }
        ]

    def writes(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> set[str]:
        return {design.entity(ref.rule.resource).plural} if self._moves(entity, transition) else set()

    def table_checks(self, design: Design, ref: RuleRef) -> list[tuple[str, dict[str, Any]]]:
        rule = ref.rule
        resource = design.entity(rule.resource)
        check = {
            "name": f"{resource.plural}_{rule.counter}_not_negative_{ref.index}",
            "expression": f"{rule.counter} >= 0",
            "message": rule.description,
        }
        return [(resource.plural, check)]

    def adjust_seed(self, seeder: Seeder, ref: RuleRef) -> None:
        """No counter below zero, and one resource left empty, so running out can be tested."""
        rule = ref.rule
        resource_rows = seeder.rows.get(seeder.design.entity(rule.resource).plural, [])
        for row in resource_rows:
            if isinstance(row.get(rule.counter), int | float) and row[rule.counter] < 0:
                row[rule.counter] = 0
        if resource_rows:
            resource_rows[-1][rule.counter] = 0

    def parties(self, rule: Consumes) -> set[str]:
        return {rule.resource}

    def eligible(
        self, tester: Tester, ref: RuleRef, entity: Entity, related: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if ref.rule.resource != related:
            return rows
        return [r for r in rows if (r.get(ref.rule.counter) or 0) >= 1]

    def taken(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> bool:
        return False

    def choose_arguments(
        self, tester: Tester, ref: RuleRef, entity: Entity, schema: dict[str, Any], arguments: dict[str, Any]
    ) -> None:
        return None

    def settle_arguments(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> None:
        if ref.rule.amount and p_(ref.rule.amount) in arguments:
            arguments[p_(ref.rule.amount)] = 1

    def create_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, base: dict[str, Any]
    ) -> str | None:
        rule = ref.rule
        key = f"{rule.resource}_id"
        column = column_to(entity, rule.resource)
        passing_others = {r[key] for r in tester.eligible(entity.name, rule.resource, skip=ref)}
        empty = [
            r
            for r in tester.rows(rule.resource)
            if (r.get(rule.counter) or 0) <= 0
            and r[key] in passing_others
            and not tester.taken(entity, {**base, column: r[key]})
        ]
        if not empty:
            return f"no seeded {rule.resource} is empty and passes the other rules"
        tester.negative(tool, "rule", {**base, column: empty[0][key]}, ref.id, rule=ref.id)
        return None

    def transition_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, ready: list[dict[str, Any]]
    ) -> str | None:
        return "it guards creation only"

    def trap(self, ref: RuleRef) -> Trap | None:
        rule = ref.rule
        return Trap(rule.resource, lambda r: (r.get(rule.counter) or 0) >= 1)
