"""The vocabulary as registries of kinds: every rule and operation kind implements every phase, an
incomplete or unknown kind is refused loudly, and every rule of a design is probed (or its kind says
why it could not be)."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from servers import Environment
from synthesizer import procedural_tests, rules
from synthesizer.catalog import Domain, load_catalog
from synthesizer.modeling import build_spec, design_domain
from synthesizer.operations import OPERATIONS, OperationKind
from synthesizer.operations import register as register_operation
from synthesizer.procedural_tests import run_procedural_tests
from synthesizer.rules import KINDS, KindError, RuleKind, RuleRef, register, rule_kind
from synthesizer.rules.base import RuleModel
from synthesizer.seeding import seed_rows

FULLY_PROBED = ["airline_booking", "dental_clinic", "apartment_rental", "car_dealership", "credit_card_servicing"]
"""World domains whose seeds offer a refusal case for every rule: each rule must be probed."""
SAMPLE = FULLY_PROBED + ["dealership_sales_and_service", "payroll_with_expenses", "catering_orders"]
"""A wider sample (a world composite, a legacy composite, a legacy domain), including domains where a kind has to
say why it made no probe."""
DERIVED_WAIVED = {"policy.no_third_party", "policy.confirm_amount"}
"""Policy-only rules judged per task (who is talking, what the user declined): waived with their kind's reason."""


def _legacy(where: Any = lambda domain: True) -> Domain:
    """A catalog domain not migrated yet (the legacy path must keep working while any remains)."""
    return next(d for d in load_catalog().domains.values() if d.legacy and where(d))


def _tested(domain_id: str, variant: int = 0) -> tuple[Any, procedural_tests.TestReport]:
    design = design_domain(load_catalog().domain(domain_id), seed=1, variant=variant)
    env = Environment.from_spec(build_spec(design), seed_rows(design))
    return design, run_procedural_tests(env, design)


# -- the registries ------------------------------------------------------------------------------


def test_every_registered_rule_kind_implements_every_phase_itself() -> None:
    phases = RuleKind.__abstractmethods__
    assert {"require_steps", "adjust_seed", "create_probes", "transition_probes", "trap", "policy"} <= phases
    assert list(KINDS) == ["limit_per_owner", "consumes", "time_window", "eligibility", "unique_active"]
    for name, kind in KINDS.items():
        cls = type(kind)
        assert not inspect.isabstract(cls), name
        inherited = [p for p in phases if getattr(cls, p) is getattr(RuleKind, p)]
        assert not inherited, f"{name} inherits {inherited}"
        assert cls.model.model_fields["kind"].annotation.__args__ == (name,)
        assert kind.vocabulary.startswith(f"* ``{name}`` — ")
        assert kind.seed_pass in (0, 1, 2)
        assert rule_kind(name) is kind


def test_every_registered_operation_kind_implements_every_phase_itself() -> None:
    phases = OperationKind.__abstractmethods__
    assert phases == {"tools", "writes", "probe"}
    writes = {
        style: [k for k, op in OPERATIONS.items() if op.phase == "write" and style in op.styles]
        for style in ("legacy", "world")
    }
    assert writes == {
        "legacy": ["create", "update", "transition"],
        "world": ["create", "update", "transition", "book", "pay", "cancel", "transfer", "compensate"],
    }
    for name, op in OPERATIONS.items():
        assert not [p for p in phases if getattr(type(op), p) is getattr(OperationKind, p)], name
        assert op.styles and op.styles <= {"legacy", "world"}, name
        if op.model is not None:  # a kind the catalog declares: its model names it, and it checks its items
            assert op.model.model_fields["kind"].annotation.__args__ == (name,)
            assert type(op).problems is not OperationKind.problems, name


class _Partial(RuleModel):
    kind: Literal["partial"]
    entity: str
    description: str


def test_an_incomplete_rule_kind_is_refused_at_registration() -> None:
    complete = {p: (lambda self, *a: None) for p in RuleKind.__abstractmethods__}
    attributes = {"name": "partial", "model": _Partial, "vocabulary": "* ``partial`` — x", "seed_pass": 0}
    missing = {k: v for k, v in complete.items() if k not in ("trap", "transition_probes")}
    with pytest.raises(KindError, match="does not implement: transition_probes, trap"):
        register(type("Partial", (RuleKind,), {**attributes, **missing}))
    with pytest.raises(KindError, match="does not set: seed_pass"):
        register(type("NoPass", (RuleKind,), {**{k: v for k, v in attributes.items() if k != "seed_pass"}, **complete}))
    with pytest.raises(KindError, match="Literal\\['other'\\]"):
        register(type("Mismatch", (RuleKind,), {**attributes, "name": "other", **complete}))
    with pytest.raises(KindError, match="registered twice"):
        register(type("Again", (RuleKind,), {**attributes, "name": "consumes", "model": rules.Consumes, **complete}))
    assert "partial" not in KINDS and "other" not in KINDS


def test_an_incomplete_operation_kind_is_refused_at_registration() -> None:
    with pytest.raises(KindError, match="does not implement: probe"):
        register_operation(
            type("Exchange", (OperationKind,), {"name": "exchange", "phase": "write", "tools": None, "writes": None})
        )
    assert "exchange" not in OPERATIONS


def test_unknown_kinds_are_errors_not_skipped_rules() -> None:
    with pytest.raises(KindError, match="unknown rule kind 'quota'"):
        rule_kind("quota")
    data = _legacy().model_dump(mode="json", by_alias=True)
    data["rules"].append({"kind": "quota", "entity": data["rules"][0]["entity"], "description": "At most 2."})
    with pytest.raises(ValidationError, match="quota"):
        Domain.model_validate(data)


def test_the_llm_is_taught_each_registered_kind_in_its_own_words() -> None:
    text = rules.vocabulary()
    assert [line.split("``")[1] for line in text.splitlines() if line.startswith("* ")] == list(KINDS)
    assert "counter of a related entity" in text  # a kind's continuation line is kept


# -- the design's stable ids and roles -------------------------------------------------------------


@pytest.mark.parametrize("world", [False, True])
def test_rule_ids_are_made_once_and_are_the_names_the_tools_refuse_with(world: bool) -> None:
    domain = load_catalog().domain("airline_booking") if world else _legacy()
    design = design_domain(domain, seed=1)
    spec = build_spec(design)
    ids = [f"rule.{r.id}" if r.id else f"{r.kind}_{i}" for i, r in enumerate(design.rules)]
    assert [r.id for r in design.refs] == ids
    if world:  # the airline names its rules: stable when a variant drops one
        assert ids[:2] == ["rule.passenger_active", "rule.flight_on_sale"]
    assert all(isinstance(r, RuleRef) and r.rule is design.rules[r.index] for r in design.refs)
    named = {step.get("rule") for tool in spec["tools"] for step in tool["steps"]}
    assert {r.id for r in design.refs} <= named
    assert [line for line in spec["policy"].splitlines() if line in {f"- {r.policy}" for r in design.refs}]


@pytest.mark.parametrize("world", [False, True])
def test_tools_are_found_by_role_not_by_name(world: bool) -> None:
    design = design_domain(load_catalog().domain("airline_booking") if world else _legacy(), seed=1)
    spec = build_spec(design)
    names = {tool["name"] for tool in spec["tools"]}
    assert set(design.roles) == names
    unique: dict[tuple[Any, ...], list[str]] = {}
    for name, role in design.roles.items():  # a role names one tool (world roles also carry op and who)
        unique.setdefault((role.kind, role.entity, role.relation, role.transition), []).append(name)
    for (kind, entity, relation, transition), found in unique.items():
        assert design.tool(kind, entity, relation=relation, transition=transition) == found[0]
    if world:
        assert design.tool("transition", "booking", transition="check_in") == "check_in_booking"
        assert design.tool("list_owned", "booking") == "list_bookings_for_passenger"
    entity = design.entities[-1].name
    assert design.tool("transition", entity, transition="no_such_step") is None
    assert {role.kind for role in design.roles.values()} <= set(OPERATIONS)


# -- every rule probed -----------------------------------------------------------------------------


@pytest.mark.parametrize("domain_id", FULLY_PROBED)
def test_every_rule_of_these_designs_is_probed(domain_id: str) -> None:
    design, report = _tested(domain_id)
    assert report.rules[: len(design.refs)] == [r.id for r in design.refs] and report.rules
    assert set(report.rules) - DERIVED_WAIVED <= report.probed, report.unprobed()
    assert report.passed, report.why()
    rule_probes = [p for p in report.probes if p.kind == "rule"]
    assert rule_probes and all(p.passed for p in rule_probes)


@pytest.mark.parametrize("domain_id", SAMPLE)
@pytest.mark.parametrize("variant", [0, 1])
def test_every_rule_of_a_design_is_probed_or_its_kind_says_why_not(domain_id: str, variant: int) -> None:
    design, report = _tested(domain_id, variant)
    assert not report.unaccounted()
    for rule, reason in report.unprobed().items():
        assert rule in report.waived and "no probe and no reason" not in reason, (rule, reason)
    assert set(report.probed) <= set(report.rules)


def test_a_rule_no_phase_accounted_for_fails_the_report_loudly() -> None:
    design, report = _tested("dental_clinic")
    assert report.passed
    report.rules.append("quota_9")  # a rule whose kind's probe phase never ran
    assert not report.passed
    assert report.unaccounted() == ["quota_9"]
    assert "rule quota_9 was never probed" in report.why()
    assert report.to_dict()["unprobed"]["quota_9"].startswith("no probe and no reason")


def test_a_waived_rule_is_reported_with_its_reason() -> None:
    legacy = _legacy(lambda d: any(r.kind == "eligibility" and r.action != "create" for r in d.rules))
    design, report = _tested(legacy.id)
    waived = report.unprobed()
    eligibility_on_transitions = [
        r.id for r in design.refs if r.rule.kind == "eligibility" and r.rule.action != "create"
    ]
    assert eligibility_on_transitions and set(eligibility_on_transitions) <= set(waived)
    assert all(
        waived[r] == "refusals of a transition's eligibility are not probed yet" for r in eligibility_on_transitions
    )
    assert report.to_dict()["unprobed"] == waived
