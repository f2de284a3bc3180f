"""``unique_active``: at most one child in some states per owner and target (one open claim per policy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import words
from .base import Identifier, Param, RuleKind, RuleModel, RuleRef, Step, Trap, column_to, fill, register, state_field
from .common import exhaust, owner_states_problems, push_over_limit, required_problems

if TYPE_CHECKING:
    from ..catalog import Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester
    from ..seeding import Seeder

__all__ = ["UniqueActive", "UniqueActiveKind"]


class UniqueActive(RuleModel):
    kind: Literal["unique_active"]
    entity: Identifier
    owner: Identifier
    target: Identifier
    states: list[str] = Field(min_length=1)
    description: str = Field(min_length=1)


@register
class UniqueActiveKind(RuleKind):
    name = "unique_active"
    model = UniqueActive
    vocabulary = (
        "* ``unique_active`` — at most one child in some states per owner and target (one open claim per policy)."
    )
    seed_pass = 0

    def problems(self, rule: UniqueActive, entity: Entity, entities: dict[str, Entity]) -> list[str]:
        problems = owner_states_problems(rule, entity)
        if rule.target not in {r.to for r in entity.relations}:
            problems.append(f"{rule.target!r} is not a relation")
        return problems + required_problems([rule.owner, rule.target], entity)

    def applies(self, rule: UniqueActive, entities: dict[str, Entity]) -> bool:
        related = {r.to for r in entities[rule.entity].relations}
        return rule.owner in related and rule.target in related

    def parameter(self, rule: UniqueActive) -> Param | None:
        return None

    def references(self, rule: UniqueActive) -> dict[str, str]:
        return {"owner": rule.owner, "target": rule.target}

    def action(self, rule: UniqueActive) -> str:
        return "create"

    def policy(self, ref: RuleRef) -> str:
        return fill(ref.rule.description, ref.value)

    def require_steps(self, design: Design, ref: RuleRef, entity: Entity) -> list[Step]:
        rule, e = ref.rule, entity.name
        owner = column_to(entity, rule.owner)
        target = column_to(entity, rule.target)
        states = ", ".join(f"'{s}'" for s in rule.states)
        return [
            {
                "kind": "require",
                "expect": "none",
                "rule": ref.id,
                "sql": f"SELECT {e}_id AS existing FROM {entity.plural} WHERE {owner} = :{owner} AND {target} = "
                f":{target} "
                f"AND {state_field(entity)} IN ({states})",
                "error": f"{rule.description} ({words(e).capitalize()} {{existing}} already exists.)",
            }
        ]

    def effect_steps(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> list[Step]:
        return []

    def writes(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> set[str]:
        return set()

    def table_checks(self, design: Design, ref: RuleRef) -> list[tuple[str, dict[str, Any]]]:
        return []

    def adjust_seed(self, seeder: Seeder, ref: RuleRef) -> None:
        push_over_limit(seeder, ref, 1, (ref.rule.owner, ref.rule.target))

    def parties(self, rule: UniqueActive) -> set[str]:
        return {rule.owner}

    def eligible(
        self, tester: Tester, ref: RuleRef, entity: Entity, related: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        return rows  # a pair is taken or not: ``taken`` decides

    def taken(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> bool:
        rule = ref.rule
        owner = column_to(entity, rule.owner)
        target = column_to(entity, rule.target)
        field_name = state_field(entity)
        return any(
            c[owner] == arguments.get(owner) and c[target] == arguments.get(target) and c.get(field_name) in rule.states
            for c in tester.rows(entity.name)
        )

    def choose_arguments(
        self, tester: Tester, ref: RuleRef, entity: Entity, schema: dict[str, Any], arguments: dict[str, Any]
    ) -> None:
        return None

    def settle_arguments(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> None:
        return None

    def create_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, base: dict[str, Any]
    ) -> str | None:
        return exhaust(tester, ref, tool, base, 1, target=ref.rule.target)

    def transition_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, ready: list[dict[str, Any]]
    ) -> str | None:
        return "it guards creation only"

    def trap(self, ref: RuleRef) -> Trap | None:
        return None
