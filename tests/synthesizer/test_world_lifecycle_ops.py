"""Lifecycle operations of world designs (docs/design/worlds.md §4.10): a principal's lifecycle transitions,
declared ``update`` and ``create`` ops and declared staff transitions become tools acting for the principal on
their own records, with ownership, state, phase and rule steps, probed by the procedural tests (which must
catch a tool that skips a check or writes the wrong row). The domain is the ferry line of
tests/synthesizer/fixtures extended here with check-in, contact and seat changes, and claims."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from servers import Environment
from servers.clients.mcp_client import connect_stdio
from synthesizer import procedural_tests
from synthesizer.catalog import Domain
from synthesizer.modeling import Design, ToolRole, build_spec, design_domain
from synthesizer.operations import OPERATIONS
from synthesizer.procedural_tests import declared_writes, run_procedural_tests
from synthesizer.seeding import seed_rows
from synthesizer.world_spec import computed_columns
from tests.conftest import ENVFLEET, write_env

FERRY = json.loads((Path(__file__).parent / "fixtures" / "world_ferry.json").read_text(encoding="utf-8"))
MINE = ("check_in_booking", "withdraw_claim", "settle_claim", "update_contact", "change_seat", "set_loyalty_tier")


def lifecycle_data(cancel_op: bool = True) -> dict[str, Any]:
    """The ferry line plus: check-in (the passenger's own transition, with a closing window), contact and seat
    changes (declared updates; the seat change counts as a change and has a window named by the op), the loyalty
    tier (a staff update, forbidden), and claims on sailed bookings (a declared create, a principal's
    withdrawal, a system review and a staff settlement declared as a forbidden op)."""
    data = copy.deepcopy(FERRY)
    data["staff_roles"]["claims_desk"] = "settles passengers' claims"
    entities = {e["name"]: e for e in data["entities"]}
    passenger, booking = entities["passenger"], entities["booking"]
    passenger["attributes"].append({"name": "phone", "type": "text", "description": "Phone.", "generator": "phone"})
    booking["attributes"] += [
        {
            "name": "seat_preference",
            "type": "text",
            "description": "Window or aisle.",
            "generator": "choice",
            "enum": ["window", "aisle", "any"],
            "input": True,
        },
        {
            "name": "checked_in_at",
            "type": "datetime",
            "description": "Check-in.",
            "generator": "none",
            "required": False,
        },
    ]
    life = booking["lifecycle"]
    life["states"].insert(2, "checked_in")
    life["phases"]["checked_in"] = "before"
    life["transitions"] += [
        {
            "name": "check_in",
            "from": ["paid"],
            "to": "checked_in",
            "stamp": "checked_in_at",
            "description": "The passenger checks in for the crossing.",
            "by": "principal",
        }
    ]
    next(t for t in life["transitions"] if t["name"] == "mark_sailed")["from"] = ["paid", "checked_in"]
    data["entities"].append(
        {
            "name": "claim",
            "plural": "claims",
            "description": "A passenger's claim about a sailed booking.",
            "id_prefix": "CLM",
            "label": "reference",
            "seed_count": 16,
            "attributes": [
                {"name": "reference", "type": "text", "description": "Claim reference.", "generator": "code:CL"},
                {
                    "name": "claim_type",
                    "type": "text",
                    "description": "What it is about.",
                    "generator": "choice",
                    "enum": ["delay", "lost_item", "service"],
                    "input": True,
                },
                {
                    "name": "details",
                    "type": "text",
                    "description": "What happened.",
                    "generator": "sentence",
                    "input": True,
                },
                {
                    "name": "ticket_name",
                    "type": "text",
                    "description": "The traveller on the booking.",
                    "generator": "none",
                    "derive": {"copy": "booking.ticket_name"},
                },
                {
                    "name": "withdrawn_at",
                    "type": "datetime",
                    "description": "Withdrawn.",
                    "generator": "none",
                    "required": False,
                },
            ],
            "relations": [{"to": "booking", "description": "The booking the claim is about."}],
            "lifecycle": {
                "initial": "open",
                "states": ["open", "under_review", "settled", "withdrawn"],
                "transitions": [
                    {
                        "name": "withdraw",
                        "from": ["open", "under_review"],
                        "to": "withdrawn",
                        "stamp": "withdrawn_at",
                        "description": "The passenger withdraws the claim.",
                    },
                    {
                        "name": "review",
                        "from": ["open"],
                        "to": "under_review",
                        "description": "Taken up.",
                        "by": "system",
                    },
                    {
                        "name": "settle",
                        "from": ["under_review"],
                        "to": "settled",
                        "description": "Settled.",
                        "by": "staff:claims_desk",
                    },
                ],
            },
        }
    )
    hold = next(o for o in data["operations"] if o["kind"] == "book")["availability"]["holds"]
    hold.append("checked_in")
    if not cancel_op:
        data["operations"] = [o for o in data["operations"] if o["kind"] != "cancel"]
    data["operations"] += [
        {"kind": "update", "name": "update_contact", "entity": "passenger", "attributes": ["email", "phone"]},
        {
            "kind": "update",
            "name": "change_seat",
            "entity": "booking",
            "attributes": ["seat_preference"],
            "from": ["reserved", "paid", "checked_in"],
            "counts_as_change": True,
        },
        {
            "kind": "update",
            "name": "set_loyalty_tier",
            "entity": "passenger",
            "attributes": ["loyalty_tier"],
            "by": "staff:operations",
            "expose": "forbidden",
        },
        {"kind": "create", "name": "file_claim", "entity": "claim"},
        {
            "kind": "transition",
            "name": "settle_claim",
            "entity": "claim",
            "transition": "settle",
            "by": "staff:claims_desk",
            "expose": "forbidden",
        },
    ]
    data["rules"] += [
        {
            "kind": "time_window",
            "entity": "booking",
            "transition": "check_in",
            "attribute": "departs_at",
            "mode": "before",
            "amount": {"default": 1, "low": 1, "high": 2},
            "description": "Check-in closes {amount} h before departure.",
        },
        {
            "kind": "time_window",
            "entity": "booking",
            "transition": "change_seat",
            "attribute": "departs_at",
            "mode": "before",
            "amount": {"default": 12, "low": 6, "high": 24, "step": 6},
            "description": "Seats can be changed up to {amount} hours before departure.",
        },
        {
            "kind": "eligibility",
            "entity": "claim",
            "action": "create",
            "subject": "booking",
            "attribute": "status",
            "equals": "sailed",
            "description": "Claims are filed only for sailed bookings.",
        },
        {
            "kind": "limit_per_owner",
            "entity": "claim",
            "owner": "booking",
            "states": ["open", "under_review"],
            "max": {"default": 2, "low": 1, "high": 3},
            "description": "At most {max} open claims per booking.",
        },
    ]
    return data


World = tuple[Design, dict[str, Any], dict[str, Any], Environment]


def built(data: dict[str, Any], variant: int = 0) -> World:
    design = design_domain(Domain.model_validate(data), seed=1, variant=variant)
    spec = build_spec(design)
    seed = seed_rows(design)
    return design, spec, seed, Environment.from_spec(spec, seed)


@pytest.fixture(scope="module")
def world() -> World:
    return built(lifecycle_data())


@pytest.fixture(scope="module")
def report(world: World) -> procedural_tests.TestReport:
    return run_procedural_tests(world[3], world[0])


def tool_of(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in spec["tools"] if t["name"] == name)


def rules_of(tool: dict[str, Any]) -> list[str]:
    return [s["rule"] for s in tool["steps"] if s.get("rule")]


# -- the catalog models --------------------------------------------------------------------------------


def test_the_kinds_serve_world_designs_and_their_models_validate_in_the_catalog() -> None:
    for name in ("transition", "update", "create"):
        assert OPERATIONS[name].styles == {"legacy", "world"} and OPERATIONS[name].model is not None, name
    domain = Domain.model_validate(lifecycle_data())
    kinds = {op.name: op.kind for op in domain.operations}
    assert (
        kinds["change_seat"] == "update" and kinds["file_claim"] == "create" and kinds["settle_claim"] == "transition"
    )
    change = next(op for op in domain.operations if op.name == "change_seat")
    assert change.from_states == ["reserved", "paid", "checked_in"] and change.counts_as_change


def _with_op(op: dict[str, Any]) -> dict[str, Any]:
    data = lifecycle_data()
    data["operations"].append(op)
    return data


@pytest.mark.parametrize(
    ("op", "problem"),
    [
        (
            {"kind": "update", "name": "x", "entity": "booking", "attributes": ["total_cents"]},
            "'total_cents' is computed",
        ),
        ({"kind": "update", "name": "x", "entity": "booking", "attributes": ["status"]}, "'status' is computed"),
        ({"kind": "update", "name": "x", "entity": "booking", "attributes": ["checked_in_at"]}, "is computed"),
        ({"kind": "update", "name": "x", "entity": "booking", "attributes": ["nope"]}, "'nope' is not an attribute"),
        (
            {"kind": "update", "name": "x", "entity": "passenger", "attributes": ["loyalty_tier"]},
            "'loyalty_tier' is set by staff:operations, but the operation is by principal",
        ),
        (
            {"kind": "update", "name": "x", "entity": "passenger", "attributes": ["phone"], "counts_as_change": True},
            "counts_as_change: only a principal's owned records",
        ),
        (
            {"kind": "update", "name": "x", "entity": "booking", "attributes": ["seat_preference"], "from": ["gone"]},
            "are not states of 'booking'",
        ),
        ({"kind": "create", "name": "x", "entity": "booking"}, "'booking' is made by reserve_crossing"),
        ({"kind": "create", "name": "x", "entity": "passenger"}, "not owned by a principal"),
        ({"kind": "transition", "name": "x", "entity": "claim", "transition": "fly"}, "'fly' is not a transition"),
        (
            {"kind": "transition", "name": "x", "entity": "booking", "transition": "cancel"},
            "'cancel' is performed by cancel_booking already",
        ),
        (
            {"kind": "transition", "name": "review_now", "entity": "claim", "transition": "review"},
            "by: say who does it ('system', as the transition says)",
        ),
    ],
)
def test_a_lifecycle_op_that_contradicts_its_domain_is_refused_with_the_reason(
    op: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        Domain.model_validate(_with_op(op))


def test_a_create_needs_every_required_attribute_to_be_an_input_or_computed() -> None:
    data = lifecycle_data()
    claim = next(e for e in data["entities"] if e["name"] == "claim")
    next(a for a in claim["attributes"] if a["name"] == "details").pop("input")
    with pytest.raises(ValidationError, match="'details' is required but neither an input nor computed"):
        Domain.model_validate(data)


LEGACY: dict[str, Any] = {
    "id": "tiny_repairs",
    "name": "Repair desk",
    "description": "A repair desk.",
    "keywords": ["repair", "fix"],
    "actor": "the repair desk",
    "entities": [
        {
            "name": "customer",
            "plural": "customers",
            "description": "Customers.",
            "id_prefix": "CUS",
            "label": "full_name",
            "core": True,
            "attributes": [
                {"name": "full_name", "type": "text", "description": "Name.", "generator": "name"},
                {"name": "phone", "type": "text", "description": "Phone.", "generator": "phone", "mutable": True},
            ],
        },
        {
            "name": "job",
            "plural": "jobs",
            "description": "Repair jobs.",
            "id_prefix": "JOB",
            "label": "item",
            "core": True,
            "attributes": [
                {"name": "item", "type": "text", "description": "What is repaired.", "generator": "word"},
                {"name": "due_at", "type": "datetime", "description": "When it is due.", "generator": "datetime:1:20"},
            ],
            "relations": [{"to": "customer", "description": "Whose it is."}],
            "lifecycle": {
                "initial": "open",
                "states": ["open", "done", "cancelled"],
                "transitions": [
                    {"name": "cancel", "from": ["open"], "to": "cancelled", "description": "Called off."},
                    {"name": "finish", "from": ["open"], "to": "done", "description": "Done."},
                ],
            },
        },
    ],
    "rules": [
        {
            "kind": "time_window",
            "entity": "job",
            "transition": "cancel",
            "attribute": "due_at",
            "mode": "before",
            "amount": {"default": 2, "low": 1, "high": 4},
            "description": "Jobs are cancelled up to {amount} h before they are due.",
        }
    ],
}


def test_a_time_window_may_name_an_update_op_only_in_a_world_domain() -> None:
    Domain.model_validate(lifecycle_data())  # change_seat is an op, not a transition
    legacy = copy.deepcopy(LEGACY)
    Domain.model_validate(legacy)
    legacy["rules"][0]["transition"] = "change_something"
    with pytest.raises(ValidationError, match="unknown transition 'change_something'"):
        Domain.model_validate(legacy)


# -- the tools --------------------------------------------------------------------------------------------


def test_principal_transitions_and_declared_ops_become_tools_and_nothing_else(world: World) -> None:
    design, spec, _, _ = world
    names = [t["name"] for t in spec["tools"]]
    writes = [t["name"] for t in spec["tools"] if t["kind"] == "write"]
    assert sorted(writes) == sorted(["reserve_crossing", "pay_booking", "cancel_booking", "file_claim", *MINE]), writes
    assert names.count("cancel_booking") == 1 and design.roles["cancel_booking"].kind == "cancel"
    for system_or_staff in ("mark_sailed_booking", "depart_sailing", "review_claim", "settle_claim_claim"):
        assert system_or_staff not in names
    roles = design.roles
    assert roles["check_in_booking"] == ToolRole(
        "transition", "booking", transition="check_in", op_id="check_in_booking", by="principal"
    )
    assert roles["withdraw_claim"].by == "principal" and roles["withdraw_claim"].transition == "withdraw"
    assert roles["settle_claim"] == ToolRole(
        "transition", "claim", transition="settle", op_id="settle_claim", by="staff:claims_desk"
    )
    assert roles["change_seat"] == ToolRole("update", "booking", op_id="change_seat", by="principal")
    assert roles["set_loyalty_tier"].by == "staff:operations"
    assert roles["file_claim"] == ToolRole("create", "claim", op_id="file_claim", by="principal")


def test_a_hidden_op_makes_no_tool_and_a_declared_transition_may_rename_a_principals_one() -> None:
    data = lifecycle_data()
    for op in data["operations"]:
        if op["name"] in ("set_loyalty_tier", "settle_claim"):
            op["expose"] = "hidden"
    data["operations"].append({"kind": "transition", "name": "check_in", "entity": "booking", "transition": "check_in"})
    design = design_domain(Domain.model_validate(data), seed=1)
    names = [t["name"] for t in build_spec(design)["tools"]]
    assert "set_loyalty_tier" not in names and "settle_claim" not in names
    assert "check_in" in names and "check_in_booking" not in names


def test_a_declared_transition_of_a_shared_resource_takes_only_its_id() -> None:
    data = lifecycle_data()
    data["operations"].append(
        {
            "kind": "transition",
            "name": "depart_early",
            "entity": "sailing",
            "transition": "depart",
            "by": "system",
            "expose": "forbidden",
        }
    )
    design = design_domain(Domain.model_validate(data), seed=1)
    tool = tool_of(build_spec(design), "depart_early")
    assert tool["parameters"]["required"] == ["sailing_id"]
    assert rules_of(tool) == ["exists.sailing", "state.depart_early", "phase.scheduled"]
    assert design.roles["depart_early"].by == "system"


def test_tools_act_for_the_principal_first_and_take_no_computed_column(world: World) -> None:
    design, spec, _, _ = world
    for name in (*MINE, "file_claim"):
        tool = tool_of(spec, name)
        properties = list(tool["parameters"]["properties"])
        assert properties[0] == "passenger_id" and tool["parameters"]["required"][0] == "passenger_id", name
        entity = design.entity(design.roles[name].entity)
        assert not computed_columns(design, entity) & set(properties), name
    assert list(tool_of(spec, "update_contact")["parameters"]["properties"]) == ["passenger_id", "email", "phone"]
    assert tool_of(spec, "update_contact")["parameters"]["required"] == ["passenger_id"]  # one of two, by a step
    assert tool_of(spec, "change_seat")["parameters"]["required"] == ["passenger_id", "booking_id", "seat_preference"]
    assert list(tool_of(spec, "file_claim")["parameters"]["properties"]) == [
        "passenger_id",
        "booking_id",
        "claim_type",
        "details",
    ]


def test_each_tool_checks_ownership_state_phase_and_its_rules(world: World) -> None:
    design, spec, _, _ = world
    windows = {ref.rule.transition: ref.id for ref in design.refs if ref.rule.kind == "time_window"}
    check_in = rules_of(tool_of(spec, "check_in_booking"))
    assert check_in == [
        "exists.passenger",
        "exists.booking",
        "authority.owned",
        "state.check_in_booking",
        "phase.paid",
        windows["check_in"],
    ]
    assert rules_of(tool_of(spec, "change_seat")) == [
        "exists.passenger",
        "exists.booking",
        "authority.owned",
        "state.change_seat",
        windows["change_seat"],
    ]
    assert rules_of(tool_of(spec, "update_contact")) == [
        "args.update_value",
        "exists.passenger",
        "rule.unique_email",
    ]
    assert rules_of(tool_of(spec, "withdraw_claim")) == [
        "exists.passenger",
        "exists.claim",
        "authority.owned",
        "state.withdraw_claim",
    ]
    claims = [ref.id for ref in design.refs if ref.rule.entity == "claim"]
    assert rules_of(tool_of(spec, "file_claim")) == [
        "exists.passenger",
        "exists.booking",
        *claims,
        "authority.owned",
    ]


def test_the_writes_are_the_computed_columns_set_by_sql(world: World) -> None:
    _, spec, _, _ = world
    execs = {
        name: [s["sql"] for s in tool_of(spec, name)["steps"] if s["kind"] == "exec"] for name in (*MINE, "file_claim")
    }
    assert execs["check_in_booking"] == [
        "UPDATE bookings SET status = 'checked_in', checked_in_at = now() WHERE booking_id = :booking_id"
    ]
    assert execs["change_seat"] == [
        "UPDATE bookings SET seat_preference = COALESCE(:seat_preference, seat_preference), changes = changes + 1 "
        "WHERE booking_id = :booking_id"
    ]
    assert execs["update_contact"] == [
        "UPDATE passengers SET email = COALESCE(:email, email), phone = COALESCE(:phone, phone) "
        "WHERE passenger_id = :passenger_id"
    ]
    (insert,) = execs["file_claim"]
    assert insert.startswith(
        "INSERT INTO claims (claim_id, booking_id, claim_type, details, ticket_name, reference, created_at, status)"
    )
    assert "(SELECT ticket_name FROM bookings WHERE booking_id = :booking_id)" in insert and "now(), 'open')" in insert


def test_declared_writes_follow_the_role(world: World) -> None:
    design = world[0]
    assert declared_writes(design, design.roles["check_in_booking"]) == {"bookings"}
    assert declared_writes(design, design.roles["update_contact"]) == {"passengers"}
    assert declared_writes(design, design.roles["file_claim"]) == {"claims"}
    released = built(lifecycle_data(cancel_op=False))[0]
    role = released.roles["cancel_booking"]
    assert role.kind == "transition" and declared_writes(released, role) == {"bookings", "sailings"}


# -- the procedural tests ----------------------------------------------------------------------------------


def test_every_lifecycle_tool_is_oracle_checked_refused_when_it_must_be_and_every_rule_probed(
    report: procedural_tests.TestReport, world: World
) -> None:
    assert not report.untested and not [p for p in report.failures() if p.tool in (*MINE, "file_claim")], report.why()
    assert not report.unaccounted()
    oracle = {p.tool for p in report.probes if p.kind == "oracle" and p.passed}
    assert {*MINE, "file_claim"} <= oracle
    refused = {(p.tool, p.kind) for p in report.probes if p.kind in ("rule", "wrong_state", "unknown_id") and p.passed}
    for tool in ("check_in_booking", "withdraw_claim", "change_seat", "settle_claim"):
        assert {(tool, "rule"), (tool, "wrong_state"), (tool, "unknown_id")} <= refused, tool
    assert {("file_claim", "rule"), ("file_claim", "unknown_id"), ("update_contact", "rule")} <= refused
    design = world[0]
    probed = {ref.id for ref in design.refs} | {"authority.owned", "phase.paid", "args.update_value"}
    assert probed <= report.probed, probed - report.probed


def test_a_compensating_transition_gives_back_the_capacity_it_held() -> None:
    design, spec, _, env = built(lifecycle_data(cancel_op=False))
    cancel = tool_of(spec, "cancel_booking")
    assert "UPDATE sailings SET seats_left = seats_left + (SELECT seats FROM bookings" in json.dumps(cancel["steps"])
    report = run_procedural_tests(env, design)
    assert [p for p in report.probes if p.tool == "cancel_booking" and p.kind == "oracle" and p.passed]
    assert not [p for p in report.failures() if p.tool == "cancel_booking"]


def _tampered(world: World, tool: str, change: Any) -> procedural_tests.TestReport:
    design, spec, seed, _ = world
    spec = copy.deepcopy(spec)
    target = tool_of(spec, tool)
    change(target)
    env = Environment.from_spec(spec, seed)
    build_spec(design)  # the design's roles, as the spec was built
    return run_procedural_tests(env, design)


def _drop(rule: str) -> Any:
    def change(tool: dict[str, Any]) -> None:
        before = len(tool["steps"])
        tool["steps"] = [s for s in tool["steps"] if s.get("rule") != rule]
        assert len(tool["steps"]) == before - 1, rule

    return change


def _sql(old: str, new: str) -> Any:
    def change(tool: dict[str, Any]) -> None:
        text = json.dumps(tool)
        assert old in text, old
        tool.update(json.loads(text.replace(old, new)))

    return change


@pytest.mark.parametrize(
    ("tool", "change", "why"),
    [
        ("check_in_booking", _drop("authority.owned"), "succeeded"),
        ("check_in_booking", _drop("state.check_in_booking"), "succeeded"),
        ("check_in_booking", _drop("phase.paid"), "failed for another reason"),  # the window, after it
        ("check_in_booking", _sql("checked_in_at = now()", "checked_in_at = NULL"), "checked_in_at"),
        ("withdraw_claim", _sql("status = 'withdrawn'", "status = 'settled'"), "status is settled"),
        ("change_seat", _sql(", changes = changes + 1", ""), "changes"),
        ("change_seat", _drop("authority.owned"), "succeeded"),
        ("update_contact", _drop("rule.unique_email"), "failed for another reason"),
        ("file_claim", _sql("'open')", "'under_review')"), "status is under_review"),
        ("file_claim", _sql("(SELECT ticket_name FROM bookings", "(SELECT 'someone' FROM bookings"), "ticket_name"),
        ("file_claim", _drop("authority.owned"), "succeeded"),
    ],
)
def test_the_probes_catch_a_tool_that_skips_a_check_or_writes_the_wrong_row(
    world: World, tool: str, change: Any, why: str
) -> None:
    report = _tampered(world, tool, change)
    failed = [p for p in report.failures() if p.tool == tool]
    assert failed and not report.passed, why
    assert any(why in p.detail for p in failed), [p.detail for p in failed]


def test_a_window_rule_is_probed_on_a_moved_moment_when_the_seed_has_none_outside(world: World) -> None:
    design, spec, _, _ = world
    window = next(ref for ref in design.refs if ref.rule.kind == "time_window" and ref.rule.transition == "change_seat")
    report = _tampered(world, "change_seat", _drop(window.id))
    assert window.id in report.probed
    assert [p for p in report.failures() if p.tool == "change_seat" and p.kind == "rule" and "succeeded" in p.detail]


@pytest.mark.parametrize("variant", [1, 2])
def test_variants_keep_their_lifecycle_tools_tested(variant: int) -> None:
    design, _, _, env = built(lifecycle_data(), variant)
    report = run_procedural_tests(env, design)
    assert not [p for p in report.failures() if design.roles[p.tool].kind in ("create", "update", "transition")], [
        (p.tool, p.kind, p.detail) for p in report.failures()
    ]
    assert not report.unaccounted()


def test_a_legacy_design_keeps_its_own_create_update_and_transition_tools() -> None:
    design = design_domain(Domain.model_validate(LEGACY), seed=1)
    spec = build_spec(design)
    roles = {name: design.roles[name] for name in (t["name"] for t in spec["tools"])}
    mine = {name: r for name, r in roles.items() if r.kind in ("create", "update", "transition")}
    assert sorted(mine) == ["cancel_job", "create_customer", "create_job", "finish_job", "update_customer"]
    assert all(r.op_id is None and r.by is None for r in mine.values())
    assert list(tool_of(spec, "cancel_job")["parameters"]["properties"]) == ["job_id"]
    assert rules_of(tool_of(spec, "cancel_job")) == ["job_exists", "cancel_from_state", "time_window_0"]
    report = run_procedural_tests(Environment.from_spec(spec, seed_rows(design)), design)
    assert report.passed, report.why()


# -- served --------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_served_over_mcp_a_passenger_checks_in_their_own_booking_and_not_a_strangers(
    world: World, tmp_path: Path
) -> None:
    design, spec, seed, _ = world
    now = spec["clock"].replace("T", " ").removesuffix("Z")
    owners = {b["booking_id"]: b["passenger_id"] for b in seed["bookings"]}
    window = next(
        ref.value for ref in design.refs if ref.rule.kind == "time_window" and ref.rule.transition == "check_in"
    )
    ready = [b for b in seed["bookings"] if b["status"] == "paid" and _hours_until(b["departs_at"], now) > window]
    assert ready
    booking = ready[0]
    stranger = next(p["passenger_id"] for p in seed["passengers"] if p["passenger_id"] != owners[booking["booking_id"]])
    folder = write_env(tmp_path / "ferry", spec, seed)
    args = [*ENVFLEET[1:], "serve", str(folder), "--log-level", "warning"]
    async with connect_stdio(ENVFLEET[0], args) as client:
        refused = await client.call_tool(
            "check_in_booking", {"passenger_id": stranger, "booking_id": booking["booking_id"]}
        )
        assert refused.is_error
        assert f"does not belong to passenger {stranger}" in refused.content[0].text
        assert "list_bookings_for_passenger" in refused.content[0].text
        done = await client.call_tool(
            "check_in_booking", {"passenger_id": owners[booking["booking_id"]], "booking_id": booking["booking_id"]}
        )
        assert not done.is_error, done.content[0].text
        assert done.structured_content["status"] == "checked_in"
        assert done.structured_content["checked_in_at"].startswith(now[:16])
        again = await client.call_tool(
            "check_in_booking", {"passenger_id": owners[booking["booking_id"]], "booking_id": booking["booking_id"]}
        )
        assert again.is_error and "is checked_in; only paid bookings can be checked in" in again.content[0].text


def _hours_until(moment: str, now: str) -> float:
    return (datetime.fromisoformat(moment) - datetime.fromisoformat(now)).total_seconds() / 3600
