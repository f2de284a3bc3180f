"""``eligibility``: an action only while a related record's attribute has a value (active member)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import words
from .base import Identifier, Param, RuleKind, RuleModel, RuleRef, Step, Trap, column_to, fill, register
from .common import required_problems

if TYPE_CHECKING:
    from ..catalog import Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester
    from ..seeding import Seeder

__all__ = ["Eligibility", "EligibilityKind"]


class Eligibility(RuleModel):
    kind: Literal["eligibility"]
    entity: Identifier = Field(description="The entity whose create or transition is guarded.")
    action: Identifier = Field(description="'create' or a transition name.")
    subject: Identifier = Field(description="The related entity that must be eligible.")
    attribute: Identifier
    equals: str | bool
    description: str = Field(min_length=1)


@register
class EligibilityKind(RuleKind):
    name = "eligibility"
    model = Eligibility
    vocabulary = "* ``eligibility`` — an action only while a related entity's attribute has a value (active member);"
    seed_pass = 0

    def problems(self, rule: Eligibility, entity: Entity, entities: dict[str, Entity]) -> list[str]:
        problems = required_problems([rule.subject], entity)
        if rule.subject == rule.entity and rule.action == "create":
            problems.append("a record cannot be checked against itself before it exists")
        subject = entities.get(rule.subject)
        if rule.subject != rule.entity and rule.subject not in {r.to for r in entity.relations}:
            problems.append(f"{rule.subject!r} is not a relation")
        elif subject is not None:
            fields = {a.name for a in subject.attributes} | ({subject.lifecycle.field} if subject.lifecycle else set())
            if rule.attribute not in fields:
                problems.append(f"{rule.subject}.{rule.attribute} does not exist")
        transitions = {t.name for t in entity.lifecycle.transitions} if entity.lifecycle else set()
        if rule.action != "create" and rule.action not in transitions:
            problems.append(f"unknown action {rule.action!r}")
        return problems

    def applies(self, rule: Eligibility, entities: dict[str, Entity]) -> bool:
        return rule.subject == rule.entity or rule.subject in {r.to for r in entities[rule.entity].relations}

    def parameter(self, rule: Eligibility) -> Param | None:
        return None

    def references(self, rule: Eligibility) -> dict[str, str]:
        return {"subject": rule.subject}

    def action(self, rule: Eligibility) -> str:
        return rule.action

    def policy(self, ref: RuleRef) -> str:
        return fill(ref.rule.description, ref.value)

    def require_steps(self, design: Design, ref: RuleRef, entity: Entity) -> list[Step]:
        rule, e, table = ref.rule, entity.name, entity.plural
        subject = design.entity(rule.subject)
        expected = (1 if rule.equals else 0) if isinstance(rule.equals, bool) else f"'{rule.equals}'"
        if rule.subject == e:
            source = (
                f"SELECT {rule.attribute} = {expected} AS ok, {rule.attribute} AS current FROM {table} "
                f"WHERE {e}_id = :{e}_id"
            )
        else:
            column = column_to(entity, rule.subject)
            key = f":{column}" if rule.action == "create" else f"(SELECT {column} FROM {table} WHERE {e}_id = :{e}_id)"
            source = (
                f"SELECT {rule.attribute} = {expected} AS ok, {rule.attribute} AS current FROM "
                f"{subject.plural} "
                f"WHERE {subject.name}_id = {key}"
            )
        return [
            {
                "kind": "require",
                "sql": source,
                "expect": "true",
                "rule": ref.id,
                "error": f"{rule.description} (The {words(rule.subject)}'s {words(rule.attribute)} is {{current}}.)",
            }
        ]

    def effect_steps(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> list[Step]:
        return []

    def writes(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> set[str]:
        return set()

    def table_checks(self, design: Design, ref: RuleRef) -> list[tuple[str, dict[str, Any]]]:
        return []

    def adjust_seed(self, seeder: Seeder, ref: RuleRef) -> None:
        return None  # the attribute's generator weights decide how many subjects are ineligible

    def parties(self, rule: Eligibility) -> set[str]:
        return {rule.subject}

    def eligible(
        self, tester: Tester, ref: RuleRef, entity: Entity, related: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        rule = ref.rule
        if rule.action != "create" or rule.subject != related:
            return rows
        return [r for r in rows if r.get(rule.attribute) == rule.equals]

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
        rule = ref.rule
        key = f"{rule.subject}_id"
        column = column_to(entity, rule.subject)
        passing_others = {r[key] for r in tester.eligible(entity.name, rule.subject, skip=ref)}
        bad = [
            r
            for r in tester.rows(rule.subject)
            if r.get(rule.attribute) != rule.equals
            and r[key] in passing_others
            and not tester.taken(entity, {**base, column: r[key]})
        ]
        if not bad:
            return f"no seeded {rule.subject} fails it while passing the other rules"
        tester.negative(tool, "rule", {**base, column: bad[0][key]}, ref.id, rule=ref.id)
        return None

    def transition_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, ready: list[dict[str, Any]]
    ) -> str | None:
        # Enforced by the tool's require step, but not probed yet: a probe here adds probes to environments
        # published already (their provenance counts them), so it comes with the next fleet regeneration.
        return "refusals of a transition's eligibility are not probed yet"

    def trap(self, ref: RuleRef) -> Trap | None:
        rule = ref.rule
        if rule.action != "create" or rule.subject == rule.entity:
            return None
        return Trap(rule.subject, lambda r: r.get(rule.attribute) == rule.equals)
