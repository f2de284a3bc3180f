"""``limit_per_owner``: at most N children in some states per owner (3 active loans per member)."""

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

__all__ = ["LimitPerOwner", "LimitPerOwnerKind"]


class LimitPerOwner(RuleModel):
    kind: Literal["limit_per_owner"]
    entity: Identifier
    owner: Identifier = Field(description="The related entity the limit is counted for.")
    states: list[str] = Field(min_length=1, description="Children in these states count.")
    max: Param
    description: str = Field(min_length=1, description="The rule in policy words, with {max} for the limit.")


@register
class LimitPerOwnerKind(RuleKind):
    name = "limit_per_owner"
    model = LimitPerOwner
    vocabulary = "* ``limit_per_owner`` — at most N children in some states per owner (3 active loans per member);"
    seed_pass = 0
    limits_rows = True

    def problems(self, rule: LimitPerOwner, entity: Entity, entities: dict[str, Entity]) -> list[str]:
        return owner_states_problems(rule, entity) + required_problems([rule.owner], entity)

    def applies(self, rule: LimitPerOwner, entities: dict[str, Entity]) -> bool:
        return rule.owner in {r.to for r in entities[rule.entity].relations}

    def parameter(self, rule: LimitPerOwner) -> Param | None:
        return rule.max

    def references(self, rule: LimitPerOwner) -> dict[str, str]:
        return {"owner": rule.owner}

    def action(self, rule: LimitPerOwner) -> str:
        return "create"

    def policy(self, ref: RuleRef) -> str:
        return fill(ref.rule.description, ref.value)

    def require_steps(self, design: Design, ref: RuleRef, entity: Entity) -> list[Step]:
        rule = ref.rule
        column = column_to(entity, rule.owner)
        states = ", ".join(f"'{s}'" for s in rule.states)
        return [
            {
                "kind": "require",
                "expect": "true",
                "rule": ref.id,
                "sql": f"SELECT COUNT(*) < {int(ref.value or 0)} AS ok, COUNT(*) AS current FROM {entity.plural} "
                f"WHERE {column} = :{column} AND {state_field(entity)} "
                f"IN ({states})",
                "error": f"{ref.policy} This {words(rule.owner)} already has {{current}}.",
            }
        ]

    def effect_steps(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> list[Step]:
        return []

    def writes(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> set[str]:
        return set()

    def table_checks(self, design: Design, ref: RuleRef) -> list[tuple[str, dict[str, Any]]]:
        return []

    def adjust_seed(self, seeder: Seeder, ref: RuleRef) -> None:
        push_over_limit(seeder, ref, int(ref.value if ref.value is not None else 1), (ref.rule.owner,))

    def parties(self, rule: LimitPerOwner) -> set[str]:
        return {rule.owner}

    def eligible(
        self, tester: Tester, ref: RuleRef, entity: Entity, related: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if ref.rule.owner != related:
            return rows
        column = column_to(entity, related)
        field_name = state_field(entity)
        counts: dict[Any, int] = {}
        for child in tester.rows(entity.name):
            if child.get(field_name) in ref.rule.states:
                counts[child[column]] = counts.get(child[column], 0) + 1
        return [r for r in rows if counts.get(r[f"{related}_id"], 0) < (ref.value or 0)]

    def taken(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> bool:
        return False

    def choose_arguments(
        self, tester: Tester, ref: RuleRef, entity: Entity, schema: dict[str, Any], arguments: dict[str, Any]
    ) -> None:
        return None

    def settle_arguments(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> None:
        return None

    def create_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, base: dict[str, Any]
    ) -> str | None:
        return exhaust(tester, ref, tool, base, int(ref.value or 0), target=None)

    def transition_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, ready: list[dict[str, Any]]
    ) -> str | None:
        return "it guards creation only"

    def trap(self, ref: RuleRef) -> Trap | None:
        return None
