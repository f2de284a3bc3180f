"""World designs (docs/design/worlds.md §1–§4): the money oracle on literals, the catalog's world
vocabulary and its validation, owner chains and authority, the ledger, the intent operations quote,
book, pay and cancel with their oracle probes (which must catch a wrong formula), and seeds whose
rows agree with each other. The domain is a small ferry line kept in tests/synthesizer/fixtures."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from servers import Environment
from servers.clients.mcp_client import connect_stdio
from synthesizer import procedural_tests
from synthesizer.catalog import CatalogError, Domain, load_catalog
from synthesizer.invariants import seed_violations
from synthesizer.modeling import Design, build_spec, design_domain
from synthesizer.money import div_half_even, money_text, mul_div, price, refund_percent, refund_split
from synthesizer.pipeline import Job, synthesize
from synthesizer.procedural_tests import run_procedural_tests
from synthesizer.seeding import seed_rows
from synthesizer.world import Pricing, Refund
from synthesizer.world_spec import computed_columns, design_record
from tests.conftest import ENVFLEET, write_env

FERRY = json.loads((Path(__file__).parent / "fixtures" / "world_ferry.json").read_text(encoding="utf-8"))


def ferry(**changes: Any) -> Domain:
    data = copy.deepcopy(FERRY)
    data.update(changes)
    return Domain.model_validate(data)


def built(domain: Domain, variant: int = 0) -> tuple[Design, dict[str, Any], dict[str, Any], Environment]:
    design = design_domain(domain, seed=1, variant=variant)
    spec = build_spec(design)
    seed = seed_rows(design)
    return design, spec, seed, Environment.from_spec(spec, seed)


@pytest.fixture(scope="module")
def world() -> tuple[Design, dict[str, Any], dict[str, Any], Environment]:
    return built(ferry())


@pytest.fixture(scope="module")
def report(world: tuple[Design, dict[str, Any], dict[str, Any], Environment]) -> procedural_tests.TestReport:
    design, _, _, env = world
    return run_procedural_tests(env, design)


# -- the oracle on literals (design §3.3, §3.4) ------------------------------------------------------


def test_halves_go_to_the_even_neighbour_and_negatives_by_symmetry() -> None:
    assert [div_half_even(n, 2) for n in (1, 3, 5, -1, -3)] == [0, 2, 2, 0, -2]
    assert mul_div(4125, 50, 100) == 2062 and mul_div(4375, 50, 100) == 2188
    assert div_half_even(7, 3) == 2 and div_half_even(8, 3) == 3 and div_half_even(-8, 3) == -3
    assert money_text(62404) == "$624.04" and money_text(-5) == "-$0.05"


def test_the_design_fare_example_totals_62404_cents() -> None:
    pricing = Pricing.model_validate(
        {
            "unit": {"column": "flight.fare_cents"},
            "quantity": {"input": "seats"},
            "multiplier": {"by": "fare_class", "permille": {"economy": 1000, "business": 2500}},
            "discount": {"by": "passenger.loyalty_tier", "percent": {"gold": 10, "platinum": 15}},
            "tax_bp": 750,
        }
    )
    fare = price(pricing, 12900, 2, "business", "gold")
    assert (fare.base_cents, fare.discount_cents, fare.tax_cents, fare.total_cents) == (64500, 6450, 4354, 62404)
    assert price(pricing, 18900, 1, "economy", "gold").total_cents == 18286  # §9.5's economy fare for a gold member
    assert price(pricing, 18900, 1, "economy", "none").total_cents == 20318


def test_refund_tiers_are_exact_at_the_boundary_and_split_per_original_method() -> None:
    refund = Refund.model_validate(
        {
            "at": "departs_at",
            "tiers": [
                {"hours": {"default": 72, "low": 48, "high": 96, "step": 24}, "percent": 100},
                {"hours": 24, "percent": 50},
                {"hours": 0, "percent": 0},
            ],
        }
    )
    assert refund_percent(refund, 72 * 3600) == 100
    assert refund_percent(refund, 72 * 3600 - 1) == 50
    assert refund_percent(refund, 24 * 3600) == 50 and refund_percent(refund, 24 * 3600 - 60) == 0
    assert refund_percent(refund, -10) == 0
    assert refund_percent(refund, 50 * 3600, {0: 48}) == 100  # a variant drew 48 h for the first tier
    assert refund_split({"PM-0002": 52404, "PM-0001": 10000}, 50) == {"PM-0001": 5000, "PM-0002": 26202}
    with pytest.raises(ValidationError, match="strictly decreasing"):
        Refund.model_validate({"at": "x", "tiers": [{"hours": 24, "percent": 50}, {"hours": 48, "percent": 100}]})


# -- the catalog -----------------------------------------------------------------------------------


DERIVED_WAIVED = {"policy.no_third_party", "policy.confirm_amount"}
INTENT_KINDS = {"quote", "book", "pay", "cancel", "transfer", "compensate", "reschedule", "exchange"}


def _legacy_domain() -> Domain:
    """A catalog domain not migrated yet (the legacy path must keep working while any remains)."""
    return next(d for d in load_catalog().domains.values() if d.legacy)


@pytest.mark.parametrize("domain_id", load_catalog().world_ids())
def test_every_world_domain_of_the_catalog_meets_the_per_environment_minima(domain_id: str) -> None:
    """Design §12 at design time, without synthesis: an agent role, at least three intent operations with
    computed effects and three policy-only rules, and no tool taking a column the system computes."""
    design = design_domain(load_catalog().domain(domain_id), seed=1)
    spec = build_spec(design)
    assert design.domain.agent is not None and design.domain.org is not None
    intents = [name for name, role in design.roles.items() if role.kind in INTENT_KINDS]
    assert len(intents) >= 3, intents
    assert len(design.policy_refs) >= 3, [r.id for r in design.policy_refs]
    record = design_record(design, spec)
    assert {name: t["computed_params"] for name, t in record["tools"].items() if t["computed_params"]} == {}


def test_a_domain_is_legacy_unless_it_says_otherwise() -> None:
    assert ferry().world and not ferry().legacy
    assert _legacy_domain().legacy and not _legacy_domain().world


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("org"), "org: a world domain declares it"),
        (lambda d: d["agent"].update(role="pilot"), "'pilot' is not one of staff_roles"),
        (lambda d: d["entities"][1]["attributes"][5].update(name="fare"), "a money attribute's name ends in _cents"),
        (lambda d: d["entities"][2]["attributes"][3]["derive"].update(copy="sailing.nowhere"), "derive.copy"),
        (lambda d: d["entities"][2]["attributes"][1].update(derive={"price": "crossing"}), "never an input"),
        (lambda d: d["operations"][1].update(price="fare"), "'fare' is not a pricing id"),
        (lambda d: d["operations"][3].update(entity="sailing"), "'sailing' has no owner"),
        (lambda d: d["operations"][2].update(paid_state="settled"), "'settled' is not a state"),
        (
            lambda d: d["entities"][2]["attributes"].append(
                {"name": "refund_cents", "type": "integer", "description": "x", "generator": "none"}
            ),
            "the modeler adds this column",
        ),
        (lambda d: d.update(legacy=True), "need 'legacy': false"),
        (lambda d: d["principals"][0]["identify_by"].append(["phone"]), "'phone' is not an attribute"),
    ],
)
def test_a_world_domain_that_contradicts_itself_is_refused_with_the_field_named(change: Any, problem: str) -> None:
    data = copy.deepcopy(FERRY)
    change(data)
    with pytest.raises(ValidationError, match=problem.replace("(", "\\(")):
        Domain.model_validate(data)


# -- authority and the spec --------------------------------------------------------------------------


def test_owner_chains_are_derived_from_required_relations(world: Any) -> None:
    design = world[0]
    chains = {e.name: design.chain(e) for e in design.entities}
    assert [e.name for e in chains["booking"]] == ["booking", "passenger"]
    assert [e.name for e in chains["passenger"]] == ["passenger"] and chains["sailing"] is None


def test_the_tools_are_the_domains_operations_and_reads_with_no_duplicates(world: Any) -> None:
    design, spec, _, _ = world
    assert [t["name"] for t in spec["tools"]] == [
        "find_passenger",
        "get_passenger",
        "get_sailing",
        "search_sailings",
        "get_booking",
        "list_bookings_for_passenger",
        "quote_crossing",
        "reserve_crossing",
        "pay_booking",
        "cancel_booking",
    ]
    assert design.op_tool("cancel_booking") == "cancel_booking" and design.op_tool("no_such_op") is None
    assert design.roles["reserve_crossing"].by == "principal" and design.roles["get_booking"].op_id is None
    assert {r.kind for r in design.roles.values()} == {
        "identify",
        "get",
        "search",
        "list_owned",
        "quote",
        "book",
        "pay",
        "cancel",
    }


def test_no_tool_takes_a_column_the_system_computes(world: Any) -> None:
    design, spec, _, _ = world
    booking = design.entity("booking")
    computed = computed_columns(design, booking)
    assert {"total_cents", "departs_at", "amount_paid_cents", "created_at", "status", "refund_cents"} <= computed
    for tool in spec["tools"]:
        if tool["kind"] == "write":
            assert not computed & set(tool.get("parameters", {}).get("properties", {})), tool["name"]
    reserve = next(t for t in spec["tools"] if t["name"] == "reserve_crossing")
    assert list(reserve["parameters"]["properties"]) == ["passenger_id", "sailing_id", "ticket_name", "cabin", "seats"]


def test_tools_acting_for_a_principal_take_them_first_and_require_ownership(world: Any) -> None:
    _, spec, _, _ = world
    tools = {t["name"]: t for t in spec["tools"]}
    for name in ("get_booking", "pay_booking", "cancel_booking"):
        assert list(tools[name]["parameters"]["properties"])[0] == "passenger_id"
        assert "authority.owned" in [s.get("rule") for s in tools[name]["steps"]], name


def test_write_tools_enforce_business_rules_and_write_several_tables(world: Any) -> None:
    design, _, _, env = world
    writes = [name for name, role in design.roles.items() if env.tools[name].tool.kind == "write"]
    business = ("rule.", "avail.", "pay.", "phase.", "window.", "eligibility_", "limit_per_owner_")

    def rules(name: str) -> list[str]:
        steps = env.spec.model_dump()["tools"]
        tool = next(t for t in steps if t["name"] == name)
        nested = [s for step in tool["steps"] for s in [step, *(step.get("steps") or [])]]
        return [s.get("rule") or "" for s in nested]

    enforcing = [n for n in writes if any(r.startswith(business) for r in rules(n))]
    multi = [n for n in writes if len(env.report.tools[n].writes) >= 2]
    assert sorted(writes) == ["cancel_booking", "pay_booking", "reserve_crossing"]
    assert sorted(enforcing) == sorted(writes)
    assert sorted(multi) == ["cancel_booking", "pay_booking", "reserve_crossing"]


def test_the_policy_states_the_agents_role_and_who_may_ask_for_what(world: Any) -> None:
    _, spec, _, _ = world
    policy = spec["policy"]
    assert policy.splitlines()[2].startswith("You are a reservations agent at Bluewater Ferries, a ferry line.")
    assert "## Who may ask for what" in policy
    assert "| depart (sailings) and mark sailed (bookings) | the system | nothing for you to do; explain |" in policy
    assert "× 1.6 for lounge, 10 % off for gold and 15 % off for platinum passengers, plus 7.5 % tax" in policy
    assert "all of it 48 hours or more before departure, half from 12 hours, nothing after that" in policy
    assert "Only active passengers may reserve." in policy


# -- seeds that agree with themselves -------------------------------------------------------------------


def test_the_seed_agrees_with_prices_payments_counters_and_the_clock(world: Any) -> None:
    design, spec, _, env = world
    conn = env.template.conn
    now = spec["clock"].replace("T", " ").removesuffix("Z")
    violations = {
        "copy": "SELECT b.booking_id FROM bookings b JOIN sailings s USING (sailing_id) "
        "WHERE b.departs_at IS NOT s.departs_at",
        "ledger": "SELECT b.booking_id FROM bookings b WHERE b.amount_paid_cents <> COALESCE((SELECT SUM(CASE kind "
        "WHEN 'charge' THEN amount_cents WHEN 'refund' THEN -amount_cents END) FROM payments p WHERE p.booking_id = "
        "b.booking_id), 0)",
        "counter": "SELECT s.sailing_id FROM sailings s WHERE s.seats_left <> s.capacity - COALESCE((SELECT SUM(seats) "
        "FROM bookings b WHERE b.sailing_id = s.sailing_id AND b.status IN ('reserved', 'paid', 'sailed')), 0)",
        "paid_status": "SELECT booking_id FROM bookings WHERE status IN ('reserved', 'paid') AND (status = 'paid') <> "
        "(amount_paid_cents = total_cents)",
        "phase": f"SELECT booking_id FROM bookings WHERE (status = 'sailed' AND departs_at > '{now}') OR (status IN "
        f"('reserved', 'paid') AND departs_at <= '{now}')",
        "stamp": f"SELECT booking_id FROM bookings WHERE (status = 'cancelled') <> (cancelled_at IS NOT NULL) OR "
        f"cancelled_at > '{now}' OR cancelled_at < created_at",
        "refunded": "SELECT booking_id FROM bookings WHERE status = 'cancelled' AND refund_cents IS NULL",
        "stored_value": "SELECT method_id FROM payment_methods "
        "WHERE (kind = 'gift_card') <> (balance_cents IS NOT NULL)",
        "seeded_before_clock": f"SELECT payment_id FROM payments WHERE created_at >= '{now}'",
    }
    for name, sql in violations.items():
        assert conn.execute(sql).fetchall() == [], name
    rows = {
        s: conn.execute(f"SELECT COUNT(*) FROM bookings WHERE status = '{s}'").fetchone()[0]
        for s in ("reserved", "paid", "sailed", "cancelled")
    }
    assert all(rows.values()), rows
    partial = conn.execute(
        "SELECT COUNT(*) FROM bookings WHERE status = 'reserved' AND amount_paid_cents BETWEEN 1 AND total_cents - 1"
    ).fetchone()[0]
    assert partial >= 1


def test_seeded_prices_are_the_formula_on_the_seeded_rows(world: Any) -> None:
    design, _, _, env = world
    pricing = design.domain.pricing["crossing"]
    conn = env.template.conn
    rows = conn.execute(
        "SELECT b.total_cents, s.fare_cents, b.seats, b.cabin, p.loyalty_tier FROM bookings b "
        "JOIN sailings s USING (sailing_id) JOIN passengers p USING (passenger_id)"
    ).fetchall()
    assert rows and all(
        total == price(pricing, fare, seats, cabin, tier).total_cents for total, fare, seats, cabin, tier in rows
    )


# -- the procedural tests and their oracles ---------------------------------------------------------------


def test_every_intent_operation_is_oracle_checked_and_every_rule_probed(report: procedural_tests.TestReport) -> None:
    assert report.passed, report.why()
    oracle = {p.tool for p in report.probes if p.kind == "oracle" and p.passed}
    assert {"quote_crossing", "reserve_crossing", "pay_booking", "cancel_booking", "find_passenger"} <= oracle
    refused = {(p.tool, p.kind) for p in report.probes if p.kind in ("rule", "wrong_state") and p.passed}
    assert {("reserve_crossing", "rule"), ("pay_booking", "rule"), ("cancel_booking", "rule")} <= refused
    assert set(report.unprobed()) <= DERIVED_WAIVED  # judged per task, each with its kind's reason
    cancels = [p for p in report.probes if p.tool == "cancel_booking" and p.kind == "oracle"]
    assert len(cancels) == 5  # once as seeded, then on and a minute inside each of the two tier boundaries


def _tampered(world: Any, tool: str, old: str, new: str) -> procedural_tests.TestReport:
    design, spec, seed, _ = world
    spec = copy.deepcopy(spec)
    target = next(t for t in spec["tools"] if t["name"] == tool)
    text = json.dumps(target)
    assert old in text, old
    spec["tools"][spec["tools"].index(target)] = json.loads(text.replace(old, new))
    env = Environment.from_spec(spec, seed)
    build_spec(design)  # the design's roles, as the spec was built
    return run_procedural_tests(env, design)


@pytest.mark.parametrize(
    ("tool", "old", "new", "why"),
    [
        ("quote_crossing", "mul_div(subtotal, 750, 10000)", "mul_div(subtotal, 700, 10000)", "total"),
        ("reserve_crossing", "base - mul_div(base, pct, 100) + 0 AS subtotal", "base + 0 AS subtotal", "total_cents"),
        ("cancel_booking", "WHEN :secs_left >= 172800 THEN 100", "WHEN :secs_left > 172800 THEN 100", "refunds"),
        ("cancel_booking", "mul_div(net_cents, :pct, 100) AS cents", "net_cents * :pct / 100 AS cents", "refunds"),
        ("pay_booking", 'amount_paid_cents = total_cents"', 'amount_paid_cents >= 0"', "status"),
        (
            "cancel_booking",
            "SET seats_left = seats_left + (",
            "SET seats_left = seats_left + 0 * (",
            "invariant_sailing",
        ),
    ],
)
def test_an_oracle_catches_a_tool_that_computes_the_wrong_amount(
    world: Any, tool: str, old: str, new: str, why: str
) -> None:
    report = _tampered(world, tool, old, new)
    failed = [p for p in report.failures() if p.tool == tool]
    assert failed and not report.passed, why
    assert any(why in p.detail for p in failed), [p.detail for p in failed]


def test_paying_at_booking_charges_the_computed_total_to_the_principals_own_method() -> None:
    data = copy.deepcopy(FERRY)
    data["operations"] = [op for op in data["operations"] if op["kind"] != "pay"]
    data["operations"][1]["payment"] = "at_booking"
    data["entities"][2]["lifecycle"]["states"] = ["reserved", "sailed", "cancelled"]
    data["entities"][2]["lifecycle"]["phases"] = {"reserved": "before", "sailed": "after", "cancelled": "any"}
    data["entities"][2]["lifecycle"]["transitions"][0]["from"] = ["reserved"]
    data["entities"][2]["lifecycle"]["transitions"][1]["from"] = ["reserved"]
    data["operations"][1]["availability"]["holds"] = ["reserved", "sailed"]
    data["rules"][1]["states"] = ["reserved"]
    design, spec, _, env = built(Domain.model_validate(data))
    report = run_procedural_tests(env, design)
    assert report.passed, report.why()
    probed = {(p.tool, p.detail) for p in report.probes}
    assert any(p.tool == "reserve_crossing" and p.kind == "oracle" and p.passed for p in report.probes), probed
    rules = {
        p.arguments.get("payment_method_id") for p in report.probes if p.tool == "reserve_crossing" and p.kind == "rule"
    }
    assert len(rules - {None}) >= 1
    reserve = next(t for t in spec["tools"] if t["name"] == "reserve_crossing")
    assert [s.get("rule") for s in reserve["steps"] if s.get("rule", "").startswith("pay.")] == [
        "pay.method_owned",
        "pay.stored_value",
    ]
    assert env.report.tools["reserve_crossing"].writes == (
        "bookings",
        "payment_methods",
        "payments",
        "sailings",
    ) or set(env.report.tools["reserve_crossing"].writes) == {"bookings", "payment_methods", "payments", "sailings"}


@pytest.mark.parametrize("variant", [1, 2])
def test_variants_draw_their_tiers_and_limits_and_still_pass(variant: int) -> None:
    design, spec, _, env = built(ferry(), variant)
    report = run_procedural_tests(env, design)
    assert report.passed, report.why()
    assert spec["name"].startswith(design.org_name)


def test_a_legacy_domain_gets_no_world_tools_or_ledger() -> None:
    design = design_domain(_legacy_domain(), seed=1)
    spec = build_spec(design)
    assert not {"payments", "payment_methods"} & {t["name"] for t in spec["tables"]}
    assert not {r.kind for r in design.roles.values()} & {"identify", "list_owned", "quote", "book", "pay", "cancel"}
    assert spec["policy"].startswith(f"# {design.name} — agent policy")


# -- the reference domain: airline_booking, migrated (design §9) -------------------------------------------


@pytest.fixture(scope="module")
def airline() -> tuple[Design, dict[str, Any], dict[str, Any], Environment]:
    return built(load_catalog().domain("airline_booking"))


def test_the_airline_offers_its_operations_and_owned_reads(airline: Any) -> None:
    design, spec, _, _ = airline
    assert [t["name"] for t in spec["tools"]] == [
        "find_passenger",
        "get_passenger",
        "get_flight",
        "search_flights",
        "get_booking",
        "list_bookings_for_passenger",
        "quote_fare",
        "update_contact",
        "set_loyalty_tier",
        "change_meal",
        "check_in_booking",
        "book_flight",
        "cancel_booking",
        "change_flight",
        "issue_delay_voucher",
    ]
    book = next(t for t in spec["tools"] if t["name"] == "book_flight")
    assert list(book["parameters"]["properties"]) == [
        "passenger_id",
        "flight_id",
        "ticket_name",
        "fare_class",
        "seats",
        "meal_request",
        "payment_method_id",
    ]
    rules = [s.get("rule") for s in book["steps"] if s["kind"] == "require"]
    assert rules == [
        "exists.passenger",
        "exists.flight",
        "rule.passenger_active",
        "rule.flight_on_sale",
        "rule.open_bookings",
        "rule.one_per_flight",
        "phase.booked",
        "avail.capacity",
        "pay.method_owned",
        "pay.stored_value",
    ]
    assert {t["name"] for t in spec["tables"]} == {"passengers", "flights", "bookings", "payment_methods", "payments"}


def test_the_airline_policy_opens_with_the_agents_role_and_says_who_may_ask(airline: Any) -> None:
    _, spec, _, _ = airline
    policy = spec["policy"]
    assert policy.startswith(
        "# Bluewater Regional Air — reservations agent policy\n\nYou are a reservations agent at "
        "Bluewater Regional Air, a regional airline."
    )
    assert "## Who may ask for what" in policy
    assert (
        "| book flight, cancel booking, change flight, change meal, update contact and check in booking | the "
        "passenger, for their own records |" in policy
    )
    assert "| issue delay voucher | the passenger; you decide under this policy | the conditions below |" in policy
    assert "| set loyalty tier | only loyalty desk staff | refuse; loyalty desk staff handle it |" in policy
    assert "| cancel (flights) | operations staff | nothing for you to do; explain |" in policy
    assert "Cancel a booking only when the reason is change of plans, schedule change or illness." in policy
    assert "A booking can be changed (change_flight) at most once" in policy
    assert (
        "Use issue_delay_voucher only when the passenger's loyalty tier is gold or platinum and the flight's delay "
        "is more than 180 minutes" in policy
    )
    assert (
        "| delay (flights), depart (flights), mark flown (bookings) and mark no show (bookings) | the system |"
        in policy
    )
    assert (
        "× 1.6 for premium economy or 2.5 for business, 10 % off for gold and 15 % off for platinum passengers, "
        "plus 7.5 % tax" in policy
    )
    assert "all of it 72 hours or more before departure, half from 24 hours, nothing after that" in policy


def _gold_and_open_flight(seed: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    gold = next(p for p in seed["passengers"] if p["loyalty_tier"] == "gold" and p["account_status"] == "active")
    flight = next(f for f in seed["flights"] if f["status"] == "scheduled" and f["seats_left"] >= 2)
    return gold, flight


def test_the_airline_fare_is_the_oracles(airline: Any) -> None:
    design, _, seed, env = airline
    pricing = design.domain.pricing["fare"]
    assert price(pricing, 12900, 2, "business", "gold").total_cents == 62404  # the design's §3.3 example
    # 34 695 × 2 × 2.5 = 173 475; 10 % = 17 347.5 → 17 348 (half to even); 156 127 + 7.5 % tax 11 710 = 167 837
    literal = price(pricing, 34695, 2, "business", "gold")
    assert (literal.total_cents, literal.discount_cents, literal.tax_cents) == (167837, 17348, 11710)
    gold, flight = _gold_and_open_flight(seed)
    state = env.new_state()
    arguments = {"flight_id": flight["flight_id"], "fare_class": "business", "seats": 2}
    quote = env.call(state, "quote_fare", {"passenger_id": gold["passenger_id"], **arguments})
    state.close()
    oracle = price(pricing, flight["fare_cents"], 2, "business", "gold")
    assert quote.structured["total_cents"] == oracle.total_cents
    assert (quote.structured["discount_cents"], quote.structured["tax_cents"]) == (
        oracle.discount_cents,
        oracle.tax_cents,
    )


def test_the_airline_refund_is_the_oracles_per_original_method(airline: Any) -> None:
    design, spec, seed, env = airline
    paid_by: dict[str, dict[str, int]] = {}
    for p in seed["payments"]:
        if p.get("booking_id") and p["kind"] == "charge":
            paid_by.setdefault(p["booking_id"], {})
            paid_by[p["booking_id"]][p["method_id"]] = (
                paid_by[p["booking_id"]].get(p["method_id"], 0) + p["amount_cents"]
            )
    booking = next(
        b
        for b in seed["bookings"]
        if b["status"] == "booked" and len(paid_by.get(b["booking_id"], {})) == 2 and not b.get("changes")
    )
    paid = paid_by[booking["booking_id"]]
    state = env.new_state()
    with state.mode("internal"):  # 30 hours before departure: the 50 % tier
        state.conn.execute(
            "UPDATE bookings SET departs_at = datetime(?, '+30 hours') WHERE booking_id = ?",
            (spec["clock"][:19].replace("T", " "), booking["booking_id"]),
        )
    result = env.call(
        state,
        "cancel_booking",
        {"passenger_id": booking["passenger_id"], "booking_id": booking["booking_id"], "reason": "illness"},
    )
    assert not result.is_error, result.text
    refunds = state.conn.execute(
        "SELECT method_id, amount_cents FROM payments WHERE booking_id = ? AND kind = 'refund' ORDER BY method_id",
        (booking["booking_id"],),
    ).fetchall()
    state.close()
    assert refunds == sorted(refund_split(paid, 50).items())
    assert (result.structured["refund_percent"], result.structured["refunded_cents"]) == (
        50,
        sum(refund_split(paid, 50).values()),
    )
    assert refund_split({"card": 54219, "gift": 2600}, 50) == {"card": 27110, "gift": 1300}  # 27 109.5 to even


def test_the_airline_passes_its_procedural_tests_with_every_block_rule_probed(airline: Any) -> None:
    design, _, _, env = airline
    report = run_procedural_tests(env, design)
    assert report.passed, report.why()
    assert (
        {"authority.owned", "pay.method_owned", "pay.stored_value", "avail.capacity", "phase.booked", "args.identify"}
        <= set(report.rules)
        <= report.probed | DERIVED_WAIVED
    )


def test_composites_with_a_migrated_member_wait_and_say_why() -> None:
    catalog = load_catalog()
    for composite_id, why in catalog.waiting.items():  # one member migrated, the other not yet
        assert composite_id not in catalog.ids()
        with pytest.raises(CatalogError, match=f"{composite_id}.*joins"):
            catalog.domain(composite_id)
        assert "migrated to the world vocabulary" in why
    for domain_id in catalog.ids():  # everything offered still loads
        catalog.domain(domain_id)


@pytest.mark.anyio
async def test_the_airline_served_over_mcp_books_at_the_oracles_price_and_refuses_a_strangers_booking(
    airline: Any, tmp_path: Path
) -> None:
    design, spec, seed, _ = airline
    folder = write_env(tmp_path / "airline_booking", spec, seed)
    args = [*ENVFLEET[1:], "serve", str(folder), "--log-level", "warning"]
    gold, flight = _gold_and_open_flight(seed)
    stranger = next(
        b for b in seed["bookings"] if b["passenger_id"] != gold["passenger_id"] and b["status"] == "booked"
    )
    async with connect_stdio(ENVFLEET[0], args) as client:
        found = await client.call_tool("find_passenger", {"email": gold["email"]})
        assert not found.is_error, found.content[0].text
        assert [r["passenger_id"] for r in found.structured_content["rows"]] == [gold["passenger_id"]]
        arguments = {"passenger_id": gold["passenger_id"], "flight_id": flight["flight_id"], "fare_class": "business"}
        quote = await client.call_tool("quote_fare", {**arguments, "seats": 2})
        card = next(
            m for m in seed["payment_methods"] if m["passenger_id"] == gold["passenger_id"] and m["kind"] == "card"
        )
        booked = await client.call_tool(
            "book_flight",
            {
                **arguments,
                "seats": 2,
                "ticket_name": gold["full_name"],
                "meal_request": "vegan",
                "payment_method_id": card["method_id"],
            },
        )
        assert not booked.is_error, booked.content[0].text
        total = price(design.domain.pricing["fare"], flight["fare_cents"], 2, "business", "gold").total_cents
        assert quote.structured_content["total_cents"] == booked.structured_content["total_cents"] == total
        assert booked.structured_content["amount_paid_text"] == f"{total // 100}.{total % 100:02d}"
        refused = await client.call_tool(
            "cancel_booking",
            {"passenger_id": gold["passenger_id"], "booking_id": stranger["booking_id"], "reason": "illness"},
        )
        assert refused.is_error and f"does not belong to passenger {gold['passenger_id']}" in refused.content[0].text


def test_the_airline_declares_the_designs_invariants_and_its_seed_keeps_them(airline: Any) -> None:
    _, spec, _, env = airline
    names = [f["name"] for f in spec["fragments"] if f["name"].startswith("invariant_")]
    assert {
        "invariant_booking_departs_at_copied",
        "invariant_flight_seats_left",
        "invariant_booking_paid_matches_ledger",
        "invariant_principal_passenger_age",
    } <= set(names)
    assert seed_violations(env) == dict.fromkeys(names, 0)


def test_a_legacy_domain_may_not_use_the_world_vocabulary_by_halves() -> None:
    data = _legacy_domain().model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data["entities"][0]["attributes"][0]["type"] = "money"
    with pytest.raises(ValidationError, match="money attributes, derive and input need 'legacy': false"):
        Domain.model_validate(data)


def test_a_job_asking_for_no_tasks_publishes_the_world_with_its_design_record() -> None:
    result = synthesize(Job("airline_booking", seed=1, tasks=0))
    assert result.ok, result.reason
    assert result.stages["tasks"] == []
    design = result.provenance()["design"]
    assert design["org"] == "Bluewater Regional Air" and design["principals"] == ["passenger"]
    kinds = {name: tool["kind"] for name, tool in design["tools"].items()}
    assert [n for n, k in kinds.items() if k in INTENT_KINDS] == [
        "quote_fare",
        "book_flight",
        "cancel_booking",
        "change_flight",
        "issue_delay_voucher",
    ]
    assert design["policy_rules"] == [
        "policy.cancel_reasons",
        "policy.one_change",
        "policy.delay_voucher",
        "policy.staff_only_set_loyalty_tier",
        "policy.no_third_party",
        "policy.confirm_amount",
    ]
    assert all(tool["computed_params"] == [] for tool in design["tools"].values())
    assert "authority.owned" in design["tools"]["cancel_booking"]["rule_ids"]
    assert "invariant_flight_seats_left" in design["invariants"]
    legacy = synthesize(Job(_legacy_domain().id, seed=1, tasks=0))
    assert legacy.ok and "design" not in legacy.provenance()


def test_unique_picks_do_not_repeat_and_a_ledger_with_bank_accounts_seeds_them() -> None:
    data = copy.deepcopy(FERRY)
    data["ledger"]["methods"] = ["card", "bank_account", "gift_card"]
    vessel = next(a for a in data["entities"][1]["attributes"] if a["name"] == "route")
    vessel["unique"] = True
    design = design_domain(Domain.model_validate(data), seed=1)
    seed = seed_rows(design)
    routes = [s["route"] for s in seed["sailings"]]
    assert len(set(routes)) == len(routes)
    assert set(vessel["values"]) <= set(routes)  # every listed value first, then numbered ones
    banks = [m for m in seed["payment_methods"] if m["kind"] == "bank_account"]
    assert banks and all(
        m["label"].startswith("Checking account ending ") and m["balance_cents"] is None for m in banks
    )


def test_a_user_identifies_themselves_with_a_key_set_the_find_tool_takes() -> None:
    import random

    from synthesizer.tasks.world import World

    data = copy.deepcopy(FERRY)
    data["principals"][0]["identify_by"] = [["full_name", "email"], ["email"]]  # no date of birth this time
    design, _, seed, env = built(Domain.model_validate(data))
    world = World(env, design, random.Random(1))
    assert world.second_fact() == "email"
    person = seed["passengers"][0]
    call = world.lookup(person)
    assert call.arguments == {"full_name": person["full_name"], "email": person["email"]}
    state = env.new_state()
    try:
        found = env.call(state, call.tool, call.arguments)
    finally:
        state.close()
    assert not found.is_error and person["passenger_id"] in found.text
