"""Policy-only rules (docs/design/worlds.md §5): rules the policy states and the tools do not enforce.
Each kind is one module in a registry; a declared rule is validated against its domain, stated in the
policy, kept by the seed, probed for reachability (the tool allows the act and the rule's own check
sees it), and drafted into refusals whose gold keeps it while the forbidden call breaks it. The domain
is the ferry line of tests/synthesizer/fixtures with policy rules added."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from servers import Environment
from synthesizer.catalog import Domain
from synthesizer.modeling import Design
from synthesizer.policies import POLICIES, PolicyKind, allowed_values, policy_kind, register
from synthesizer.procedural_tests import run_procedural_tests
from synthesizer.rules import KindError
from synthesizer.tasks.world import World
from synthesizer.world_spec import design_record
from tests.synthesizer.test_worlds import FERRY, built, ferry

RULES = [
    {
        "kind": "reason_allowed",
        "id": "cancel_reasons",
        "op": "cancel_booking",
        "allowed": ["change_of_plans", "illness"],
    },
    {
        "kind": "only_if",
        "id": "pay_small_parties",
        "op": "pay_booking",
        "conditions": [{"path": "booking.seats", "op": "<=", "value": {"default": 2, "low": 1, "high": 3}}],
    },
]


@pytest.fixture(scope="module")
def world() -> tuple[Design, dict[str, Any], dict[str, Any], Environment]:
    return built(ferry(policy_rules=RULES))


def _violations(design: Design, env: Environment, state: Any, rule_id: str) -> list[Any]:
    ref = next(r for r in design.policy_refs if r.id == rule_id)
    sql = ref.kind.violation(design, ref)
    assert sql is not None
    return state.conn.execute(sql).fetchall()


# -- the registry --------------------------------------------------------------------------------


def test_every_policy_kind_implements_every_phase_and_declared_kinds_have_models() -> None:
    assert list(POLICIES) == [
        "reason_allowed",
        "max_changes",
        "only_if",
        "staff_only",
        "no_third_party",
        "confirm_amount",
    ]
    for name, kind in POLICIES.items():
        assert not getattr(type(kind), "__abstractmethods__", None)
        assert kind.vocabulary.startswith(f"* {name}")
        assert kind.section in ("who", "operations", "money")
    assert [n for n, k in POLICIES.items() if k.model is not None] == ["reason_allowed", "max_changes", "only_if"]


def test_an_incomplete_policy_kind_is_refused_and_unknown_kinds_are_errors() -> None:
    phases = {p: (lambda self, *a: None) for p in PolicyKind.__abstractmethods__ if p != "refusal"}
    attributes = {"name": "partial", "model": None, "section": "who", "vocabulary": "* partial"}
    with pytest.raises(KindError, match="does not implement: refusal"):
        register(type("Partial", (PolicyKind,), {**attributes, **phases}))
    with pytest.raises(KindError, match="unknown policy kind 'quota'"):
        policy_kind("quota")
    assert "partial" not in POLICIES


# -- the catalog -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({**RULES[0], "allowed": ["bored"]}, "not among cancel_booking's reasons"),
        ({**RULES[0], "allowed": ["change_of_plans", "illness", "other"]}, "nothing is left for the policy"),
        ({**RULES[0], "op": "pay_booking"}, "is not a cancel operation"),
        ({**RULES[1], "conditions": [{"path": "booking.colour", "in": ["red"]}]}, "is not an attribute"),
        (
            {"kind": "max_changes", "id": "one", "ops": ["pay_booking"], "max": {"default": 1, "low": 1, "high": 2}},
            "must be a change",
        ),
    ],
)
def test_the_catalog_refuses_inconsistent_policy_rules(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ferry(policy_rules=[rule])


def test_a_condition_takes_in_or_a_comparison_and_ids_are_unique() -> None:
    with pytest.raises(ValidationError, match="either 'in' or 'op'"):
        ferry(policy_rules=[{**RULES[1], "conditions": [{"path": "booking.seats", "op": ">"}]}])
    with pytest.raises(ValidationError, match="ids repeat"):
        ferry(policy_rules=[RULES[0], {**RULES[1], "id": "cancel_reasons"}])
    with pytest.raises(ValidationError, match="need 'legacy': false"):
        Domain.model_validate(
            {
                **FERRY,
                "legacy": True,
                "operations": [],
                "principals": [],
                "ledger": None,
                "pricing": {},
                "org": None,
                "agent": None,
                "policy_rules": [RULES[0]],
            }
        )


# -- modeling, policy, seed, probes ----------------------------------------------------------------


def test_declared_and_derived_rules_are_stated_in_the_policy_and_recorded(world: Any) -> None:
    design, spec, _, _ = world
    ids = [r.id for r in design.policy_refs]
    assert ids == [
        "policy.cancel_reasons",
        "policy.pay_small_parties",
        "policy.no_third_party",
        "policy.confirm_amount",
    ]
    policy = spec["policy"]
    assert "Cancel a booking only when the reason is change of plans or illness." in policy
    assert "Use pay_booking only when the booking's seats is at most 2" in policy
    assert policy.count("Act only for the passenger you are talking to") == 1
    assert policy.index("Act only for") < policy.index("## Operations") < policy.index("Cancel a booking only")
    assert design_record(design, spec)["policy_rules"] == ids


def test_the_seed_keeps_the_policy_and_the_tools_do_not(world: Any) -> None:
    design, _, seed, env = world
    cancelled = [r for r in seed["bookings"] if r.get("cancel_reason")]
    assert cancelled and {r["cancel_reason"] for r in cancelled} <= {"change_of_plans", "illness"}
    state = env.new_state()
    try:
        assert _violations(design, env, state, "policy.cancel_reasons") == []
        assert _violations(design, env, state, "policy.pay_small_parties") == []  # nothing paid during the episode
        row = next(r for r in state.rows("bookings") if r["status"] in ("reserved", "paid"))
        result = env.call(
            state,
            "cancel_booking",
            {"passenger_id": row["passenger_id"], "booking_id": row["booking_id"], "reason": "other"},
        )
        assert not result.is_error, result.text  # policy-only: the tool lets it through
        assert _violations(design, env, state, "policy.cancel_reasons") == [(row["booking_id"],)]
    finally:
        state.close()


def test_every_policy_rule_is_probed_or_its_kind_says_why(world: Any) -> None:
    design, _, _, env = world
    report = run_procedural_tests(env, design)
    assert report.passed, report.why()
    assert {"policy.cancel_reasons", "policy.pay_small_parties"} <= report.probed
    assert set(report.waived) >= {"policy.no_third_party", "policy.confirm_amount"}
    assert not report.unaccounted()


def test_a_policy_check_that_cannot_see_the_break_fails_the_environment(world: Any, monkeypatch: Any) -> None:
    design, _, _, env = world
    kind = policy_kind("reason_allowed")
    monkeypatch.setattr(type(kind), "violation", lambda self, d, ref: "SELECT booking_id FROM bookings WHERE 0")
    report = run_procedural_tests(env, design)
    assert not report.passed
    assert any("policy.cancel_reasons" in p.detail for p in report.failures())


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_id", ["policy.cancel_reasons", "policy.pay_small_parties", "policy.no_third_party"])
def test_a_refusal_keeps_the_rule_while_its_forbidden_call_breaks_it(world: Any, rule_id: str) -> None:
    design, _, _, env = world
    ref = next(r for r in design.policy_refs if r.id == rule_id)
    draft = ref.kind.refusal(World(env, design, random.Random(5)), ref)
    assert draft is not None and draft.family == "refusal" and draft.forbidden
    assert not any(call in draft.gold for call in draft.forbidden)
    writes = [c for c in draft.gold if env.tools[c.tool].tool.kind == "write"]
    assert writes, "the allowed part of the request is done, so doing nothing fails"
    for call in writes:  # every act of the gold keeps the policy's reasons
        allowed = allowed_values(design, call.tool, "reason")
        assert allowed is None or call.arguments["reason"] in allowed
    replay = env.replay_gold(env.template, [*draft.gold, *draft.forbidden])
    try:
        assert not any(r.is_error for r in replay.results)
        sql = ref.kind.violation(design, ref)
        if sql is not None:
            assert replay.state.conn.execute(sql).fetchall(), "the forbidden call breaks the rule"
    finally:
        replay.close()
    gold = env.replay_gold(env.template, draft.gold)
    try:
        sql = ref.kind.violation(design, ref)
        if sql is not None:
            assert gold.state.conn.execute(sql).fetchall() == []
    finally:
        gold.close()


def test_a_gold_that_breaks_a_policy_rule_is_never_published(world: Any) -> None:
    design, _, seed, env = world
    from servers.spec import GoldCall, UserScenario
    from synthesizer.dependency_graph import build_graph
    from synthesizer.task_synthesis import _Draft, _Synthesizer

    row = next(r for r in seed["bookings"] if r["status"] == "reserved")
    calls = {
        reason: [
            GoldCall(
                tool="cancel_booking",
                arguments={"passenger_id": row["passenger_id"], "booking_id": row["booking_id"], "reason": reason},
            )
        ]
        for reason in ("other", "illness")
    }
    synth = _Synthesizer(env, design, build_graph(env), seed=1)
    user = UserScenario(persona="someone")
    try:
        assert synth.finish(_Draft("action", "x", "Hi.", "Cancel it.", user, calls["other"]), "t-1", "train") is None
        assert synth.stats.failures["policy"] == 1  # 'other' is not a reason the policy allows
        kept = synth.finish(_Draft("action", "x", "Hi.", "Cancel it.", user, calls["illness"]), "t-2", "train")
        assert synth.stats.failures["policy"] == 1 and (kept is not None or sum(synth.stats.failures.values()) > 1)
    finally:
        synth.state.close()
