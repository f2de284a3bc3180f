"""Refusal: the user asks, plainly and without a hint that it might not be allowed, for something a rule
of the design forbids — a cancellation inside the notice window, a booking past their limit, a record on
a suspended account or an ineligible counterpart. The right outcome is no change and an answer that says
why (the fact the rule turns on: the limit, the window, the state that blocks it).

Which rules can be refused, and what the answer must state, is a registry keyed by rule kind
(:data:`REASONS`), like ``synthesizer/rules``. In the current worlds every rule is enforced by its tool,
so the forbidden act is refused by the tools too and ``forbidden`` stays empty (the gates' obedient run
does not apply; the answer carries the refusal). Rules the tools do not enforce — a world's policy-only
rules (``synthesizer/policies``) — draft their own refusals, which name the forbidden call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from servers.spec import Check, GoldCall

from ..naming import words
from ..rules import RuleRef
from . import wording
from .checks import unchanged
from .family import Family, Target, act, because, distract, phrase, register, state_field, targets, verb
from .world import Draft, World, literal

__all__ = ["Refusal", "REASONS"]

Reason = Callable[[World, RuleRef, dict[str, Any]], str | None]
"""What the refusal's answer must state for a rule of this kind (None: the kind offers no fair fact)."""


def _number(world: World, ref: RuleRef, context: dict[str, Any]) -> str | None:
    """The rule's number (the limit, the hours of notice); a limit of 1 says too little to be a fact."""
    return None if ref.value is None or ref.value < 2 else f"{ref.value:g}"


def _eligibility(world: World, ref: RuleRef, context: dict[str, Any]) -> str | None:
    rule = ref.rule
    row = context.get(rule.subject)
    value = None if row is None else row.get(rule.attribute)
    if value is None or isinstance(value, bool) or isinstance(rule.equals, bool):
        return None
    return words(str(value))


def _unique(world: World, ref: RuleRef, context: dict[str, Any]) -> str | None:
    """One open record per counterpart: the answer names the counterpart they already have one with."""
    rule = ref.rule
    target = world.design.entity(rule.target)
    row = context.get(rule.target)
    label = next((a for a in target.attributes if a.name == target.label), None)
    if row is None or label is None or label.generator not in ("name", "company"):
        return None
    return str(row[target.label])


REASONS: dict[str, Reason] = {
    "limit_per_owner": _number,
    "time_window": _number,
    "eligibility": _eligibility,
    "unique_active": _unique,
}


def _ref(world: World, rule_id: Any) -> RuleRef | None:
    return next((r for r in world.design.refs if r.id == rule_id), None)


def _refused_rule(result: Any) -> str | None:
    if not result.is_error or not isinstance(result.structured, dict):
        return None
    error = result.structured.get("error") or {}
    return error.get("rule") if error.get("type") == "rule_violation" else None


def related_phrase(world: World, entity_name: str, row: dict[str, Any]) -> str:
    """How a user names a record they do not own (a flight, a dentist): its name, or what and when it is."""
    entity = world.design.entity(entity_name)
    label = next((a for a in entity.attributes if a.name == entity.label), None)
    if label and label.generator in ("name", "company") and row.get(entity.label):
        return f"with {row[entity.label]}"
    parts = [f"the {words(entity.name)}"]
    choice = next((a for a in entity.attributes if a.enum and a.name != "status" and row.get(a.name)), None)
    if choice is not None:
        parts = [f"the {row[choice.name]} {words(entity.name)}"]
    when = next((a for a in entity.attributes if a.type in ("date", "datetime") and row.get(a.name)), None)
    if when is not None:
        parts.append(f"on {wording.human_datetime(row[when.name])}")
    return "on " + " ".join(parts)


@register
class Refusal(Family):
    name = "refusal"
    task_family = "refusal"
    share = 0.24

    def draft(self, world: World) -> Draft | None:
        refs = list(getattr(world.design, "policy_refs", []))
        if refs and world.rng.random() < 0.6:
            world.rng.shuffle(refs)
            for ref in refs:
                made = ref.kind.refusal(world, ref)
                if made is not None:
                    return made
        if world.rng.random() < 0.5:
            return self.step(world) or self.create(world)
        return self.create(world) or self.step(world)

    def step(self, world: World) -> Draft | None:
        """A lifecycle step a rule forbids on this record now (inside a time window, an ineligible state)."""
        options = targets(world)
        world.rng.shuffle(options)
        for target in options[:150]:
            calls = [*world.reach(target.own, target.person, target.record), act(world, target)]
            results = world.trial(calls)
            if not results or any(r.is_error for r in results[:-1]):
                continue
            ref = _ref(world, _refused_rule(results[-1]))
            reason = REASONS.get(ref.rule.kind) if ref else None
            fact = (
                reason(world, ref, {target.own.child.name: target.record, target.own.customer.name: target.person})
                if reason and ref
                else None
            )
            what = phrase(world, target)
            if fact is None or what is None or ref is None:
                continue
            request = wording.refusal_request(world.rng, verb(target, what)) + because(calls[-1])
            return self._draft(world, target, what, calls[:-1], fact, ref, request, target.record)
        return None

    def create(self, world: World) -> Draft | None:
        """A new record a rule forbids for this user (over their limit, account not eligible, counterpart
        not eligible)."""
        owns = [o for o in world.ownerships() if o.middle is None and world.tool("create", o.child.name)]
        world.rng.shuffle(owns)
        for own in owns:
            create = world.need("create", own.child.name)
            schema = world.env.tools[create].input_schema
            required = schema.get("required", [])
            for _ in range(30):
                person = world.rng.choice(world.rows[own.customer.name])
                arguments: dict[str, Any] = {own.column: person[f"{own.customer.name}_id"]}
                context: dict[str, Any] = {own.customer.name: person}
                named: list[tuple[str, dict[str, Any]]] = []
                for rel in own.child.relations:
                    if rel.column == own.column or rel.column not in required:
                        continue
                    other = world.rng.choice(world.rows[rel.to])
                    arguments[rel.column] = other[f"{rel.to}_id"]
                    context[rel.to] = other
                    named.append((rel.to, other))
                for name in required:
                    if name not in arguments:
                        arguments[name] = world.value(own.child, name, schema["properties"][name])
                results = world.trial([GoldCall(tool=create, arguments=arguments)])
                if not results:
                    continue
                ref = _ref(world, _refused_rule(results[-1]))
                reason = REASONS.get(ref.rule.kind) if ref else None
                fact = reason(world, ref, context) if reason and ref else None
                if fact is None or ref is None:
                    continue
                noun = words(own.child.name)
                where = " ".join(related_phrase(world, name, row) for name, row in named)
                want = world.rng.choice(
                    [
                        f"make {wording.a('new ' + noun)} {where}",
                        f"set up another {noun} {where}",
                        f"add {wording.a(noun)} {where}",
                    ]
                ).strip()
                target = _Pseudo(own, person)
                gold = [world.lookup(person)]
                gold += [
                    GoldCall(
                        tool=world.need("list_for", own.child.name, relation=own.customer.name),
                        arguments={own.column: person[f"{own.customer.name}_id"]},
                    )
                ]
                return self._draft(
                    world, target, f"a new {noun}", gold, fact, ref, wording.refusal_request(world.rng, want), None
                )
        return None

    def _draft(
        self,
        world: World,
        target: Any,
        what: str,
        gold: list[GoldCall],
        fact: str,
        ref: RuleRef,
        request: str,
        record: dict[str, Any] | None,
    ) -> Draft:
        who, known = world.identity(target.person)
        user = world.scenario(
            target.person,
            {**known, "which one": what},
            f"Get this done: {request.rstrip('.?')}.",
            accepts=["A clear explanation of why it cannot be done"],
            refuses=["Being told it was done when it was not"],
        )
        draft = Draft("refusal", f"refusal-{ref.rule.kind}", who, request, user, gold, tags=[ref.rule.kind, ref.id])
        draft.facts = [fact]
        draft.person = str(target.person[f"{target.own.customer.name}_id"])
        own = target.own
        if record is not None:
            key = f"{own.child.name}_id"
            draft.checks.append(
                unchanged(
                    own.child.plural,
                    key,
                    record[key],
                    state_field(target),
                    record[state_field(target)],
                    f"The {words(own.child.name)} the user asked about",
                )
            )
            distract(world, draft, own, target.person, record)
        else:
            mine = world.records(own, target.person)
            draft.checks.append(
                Check(
                    description=f"No new {words(own.child.name)} for the user",
                    sql=f"SELECT COUNT(*) = {len(mine)} FROM {own.child.plural} WHERE {own.column} = "
                    f"{literal(target.person[f'{own.customer.name}_id'])}",
                    expect="true",
                )
            )
            distract(world, draft, own, target.person, None, first=True)
        return draft


class _Pseudo(Target):
    """A refusal of a new record: the owner and kind, with no record yet."""

    def __init__(self, own: Any, person: dict[str, Any]) -> None:
        self.own, self.person = own, person
