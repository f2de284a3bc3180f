"""``reason_allowed``: a cancellation only for some of the reasons its tool accepts ("only for a change of
plans, a schedule change or illness"). The tool takes any listed reason; the policy decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import a, words
from ..rules.base import Identifier
from .base import PolicyKind, PolicyModel, PolicyRef, register
from .common import call_for, forbidden_draft, op_of, owned_rows, probe_break

if TYPE_CHECKING:
    from ..catalog import Domain
    from ..modeling import Design

__all__ = ["ReasonAllowed"]

PHRASES = {
    "cheaper_fare_elsewhere": "I found the same thing cheaper somewhere else",
    "found_cheaper": "I found it cheaper somewhere else",
    "changed_mind": "I've just changed my mind",
    "other": "I'd rather not say why",
}


def _join(items: list[str], last: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


class ReasonAllowed(PolicyModel):
    kind: Literal["reason_allowed"]
    op: Identifier = Field(description="The cancel operation whose `reason` the rule restricts.")
    allowed: list[Identifier] = Field(min_length=1, description="The reasons the business accepts.")


def said(reason: str) -> str:
    """How a user gives a disallowed reason in their own words."""
    return PHRASES.get(reason, f"the reason is {words(reason)}")


@register
class ReasonAllowedKind(PolicyKind):
    name = "reason_allowed"
    model = ReasonAllowed
    section = "operations"
    vocabulary = (
        '* reason_allowed {"id", "op": <a cancel op>, "allowed": [reasons]}: the op is done only for these of its '
        "reasons; the tool accepts all of them, the agent must refuse the others."
    )

    def problems(self, rule: Any, domain: Domain) -> list[str]:
        op = next((o for o in domain.operations if o.name == rule.op), None)
        if op is None or op.kind != "cancel":
            return [f"op {rule.op!r} is not a cancel operation"]
        unknown = [r for r in rule.allowed if r not in op.reasons]
        if unknown:
            return [f"allowed reasons {unknown} are not among {op.name}'s reasons"]
        if set(rule.allowed) >= set(op.reasons):
            return ["every reason is allowed: nothing is left for the policy to forbid"]
        return []

    def parameter(self, rule: Any) -> None:
        return None

    def refs(self, design: Design, declared: list[tuple[Any, float | None]]) -> list[PolicyRef]:
        kept = {e.name for e in design.entities}
        return [
            PolicyRef(f"policy.{rule.id}", self.name, rule, value, rule.op)
            for rule, value in declared
            if (op := op_of(design, rule.op)) is not None and op.entity in kept and op.expose != "hidden"
        ]

    def sentence(self, design: Design, ref: PolicyRef) -> str:
        op = op_of(design, ref.op)
        entity = words(op.entity)
        refused = [words(r) for r in op.reasons if r not in ref.rule.allowed]
        return (
            f"Cancel {a(entity)} only when the reason is {_join([words(r) for r in ref.rule.allowed], 'or')}. For any "
            f"other reason — {_join(refused, 'or')} — do not cancel it, whatever the tool allows; explain the rule."
        )

    def violation(self, design: Design, ref: PolicyRef) -> str:
        op = op_of(design, ref.op)
        allowed = ", ".join(f"'{r}'" for r in ref.rule.allowed)
        return (
            f"SELECT {op.entity}_id FROM {design.entity(op.entity).plural} "
            f"WHERE cancel_reason IS NOT NULL AND cancel_reason NOT IN ({allowed})"
        )

    def adjust_seed(self, seeder: Any, ref: PolicyRef) -> None:
        """Records cancelled in the past were cancelled for an allowed reason (the seed keeps the policy)."""
        op = op_of(seeder.design, ref.op)
        allowed = list(ref.rule.allowed)
        for row in seeder.rows[seeder.design.entity(op.entity).plural]:
            reason = row.get("cancel_reason")
            if reason is not None and reason not in allowed:
                row["cancel_reason"] = allowed[sum(map(ord, str(row[f"{op.entity}_id"]))) % len(allowed)]

    def _refused(self, design: Design, ref: PolicyRef) -> list[str]:
        op = op_of(design, ref.op)
        return [r for r in op.reasons if r not in ref.rule.allowed and r != "other"] or [
            r for r in op.reasons if r not in ref.rule.allowed
        ]

    def _ready(self, design: Design, op: Any) -> set[str]:
        entity = design.entity(op.entity)
        assert entity.lifecycle is not None
        return set(next(t for t in entity.lifecycle.transitions if t.name == op.transition).from_states)

    def probe(self, tester: Any, ref: PolicyRef) -> str | None:
        design = tester.design
        op = op_of(design, ref.op)
        tool = design.op_tool(op.name)
        entity = design.entity(op.entity)
        ready = self._ready(design, op)
        field = entity.lifecycle.field  # type: ignore[union-attr]
        reason = self._refused(design, ref)[0]
        p_id = f"{design.principal.name}_id"
        tries = [
            {p_id: owner, f"{op.entity}_id": row[f"{op.entity}_id"], "reason": reason}
            for row, owner in owned_rows(tester, op.entity, lambda r: r[field] in ready)
        ]
        return probe_break(tester, ref, tool, tries)

    def refusal(self, world: Any, ref: PolicyRef) -> Any:
        design = world.design
        op = op_of(design, ref.op)
        tool = design.op_tool(op.name)
        if tool is None or tool not in world.tools:
            return None
        from ..tasks.family import phrase, targets  # noqa: PLC0415

        reason = world.rng.choice(self._refused(design, ref))
        mine = [
            t
            for t in targets(world)
            if world.tool("transition", t.own.child.name, transition=t.transition.name) == tool
        ]
        world.rng.shuffle(mine)
        for target in mine[:10]:
            what = phrase(world, target)
            if what is None:
                continue
            reach = world.reach(target.own, target.person, target.record)
            p_id = f"{design.principal.name}_id"
            fixed = {p_id: target.person[p_id], f"{op.entity}_id": target.key, "reason": reason}
            forbidden = call_for(world, tool, fixed, str(target.person[p_id]), reach, target.record)
            if forbidden is None:
                continue
            ask = f"Please cancel {what} — {said(reason)}."
            draft = forbidden_draft(
                world, ref, target.person, forbidden, reach, ask, {"which one": what, "why": said(reason)}, None
            )
            if draft is not None:
                return draft
        return None
