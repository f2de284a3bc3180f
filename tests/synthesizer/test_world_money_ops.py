"""The money operations of world designs (design §4.7 transfer, §4.9 compensate): the catalog refuses
inconsistent ones, the tools settle the exact difference or voucher amount (recomputed here from the
rows and the formula, never read back from the tool), and the procedural tests' oracles catch a tool that
gets an amount, a counter or the change count wrong."""

from __future__ import annotations

import copy
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from servers import Environment
from servers.clients.mcp_client import connect_stdio
from synthesizer import procedural_tests
from synthesizer.catalog import Domain, load_catalog
from synthesizer.invariants import violations
from synthesizer.modeling import Design, build_spec, design_domain
from synthesizer.money import compensation_cents, mul_div, price
from synthesizer.operations.compensate import PercentOf, PerUnit, compensate_sentence
from synthesizer.operations.transfer import transfer_sentence
from synthesizer.procedural_tests import run_procedural_tests
from synthesizer.seeding import seed_rows
from tests.conftest import ENVFLEET, write_env

World = tuple[Design, dict[str, Any], dict[str, Any], Environment]


def airline_data() -> dict[str, Any]:
    return load_catalog().domain("airline_booking").model_dump(mode="json", by_alias=True, exclude_defaults=True)


def built(domain: Domain) -> World:
    design = design_domain(domain, seed=1, variant=0)
    spec = build_spec(design)
    seed = seed_rows(design)
    return design, spec, seed, Environment.from_spec(spec, seed)


@pytest.fixture(scope="module")
def airline() -> World:
    return built(load_catalog().domain("airline_booking"))


@pytest.fixture(scope="module")
def report(airline: World) -> procedural_tests.TestReport:
    design, _, _, env = airline
    return run_procedural_tests(env, design)


def _now(spec: dict[str, Any]) -> str:
    return spec["clock"][:19].replace("T", " ")


def _move(airline: World) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A booked future booking whose owner has a card, the flight it is on, and another scheduled future flight
    on the same route with room, where the owner holds nothing: (booking, flight, target, card)."""
    _, spec, seed, _ = airline
    now = _now(spec)
    flights = {f["flight_id"]: f for f in seed["flights"]}
    for booking in seed["bookings"]:
        flight = flights[booking["flight_id"]]
        card = next(
            (
                m
                for m in seed["payment_methods"]
                if m["passenger_id"] == booking["passenger_id"] and m["kind"] == "card"
            ),
            None,
        )
        if booking["status"] != "booked" or card is None:
            continue
        held = {
            b["flight_id"]
            for b in seed["bookings"]
            if b["passenger_id"] == booking["passenger_id"] and b["status"] in ("booked", "checked_in")
        }
        for target in seed["flights"]:
            if (
                target["flight_id"] not in held
                and target["status"] == "scheduled"
                and target["departs_at"] > now
                and (target["origin"], target["destination"]) == (flight["origin"], flight["destination"])
                and target["seats_left"] >= booking["seats"]
            ):
                return booking, flight, target, card
    raise AssertionError("the airline seed has no booking with a same-route alternative")


def _with_fare(env: Environment, flight_id: str, fare_cents: int) -> Any:
    state = env.new_state()
    with state.mode("internal"):
        state.conn.execute("UPDATE flights SET fare_cents = ? WHERE flight_id = ?", (fare_cents, flight_id))
    return state


def _rows(state: Any, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with state.mode("internal"):
        return state.conn.execute(sql, args).fetchall()


# -- the oracle's literals ---------------------------------------------------------------------------------


def test_compensation_is_per_unit_or_a_percent_rounded_half_to_even() -> None:
    assert compensation_cents(PerUnit(per="seats", cents=5000), {"seats": 2}) == 10000
    assert compensation_cents(PercentOf(percent_of="total_cents", percent=20), {"total_cents": 18287}) == 3657
    # 50 % of 4 125 is 2 062.5: the half goes to the even neighbour, as mul_div does in SQL
    assert compensation_cents(PercentOf(percent_of="total_cents", percent=50), {"total_cents": 4125}) == 2062
    assert compensation_cents(PercentOf(percent_of="total_cents", percent=50), {"total_cents": 4375}) == 2188


# -- the catalog -------------------------------------------------------------------------------------------


def test_the_airline_declares_both_operations_and_its_ledger_holds_vouchers() -> None:
    domain = load_catalog().domain("airline_booking")
    kinds = {op.name: op.kind for op in domain.operations}
    assert (kinds["change_flight"], kinds["issue_delay_voucher"]) == ("transfer", "compensate")
    assert domain.ledger is not None and "voucher" in domain.ledger.methods and "voucher" in domain.ledger.stored_value


@pytest.mark.parametrize(
    ("name", "change", "problem"),
    [
        ("change_flight", {"same": ["origin", "gate"]}, "same: 'gate' is not an attribute of 'flight'"),
        ("change_flight", {"relation": "passenger"}, "'passenger' is owned; a record moves between shared resources"),
        ("change_flight", {"price": "nope"}, "price 'nope' is not a pricing id"),
        ("change_flight", {"from": ["boarding"]}, "from: ['boarding'] are not all states of 'booking'"),
        ("change_flight", {"from": ["cancelled"]}, "every state it moves from must hold capacity"),
        (
            "issue_delay_voucher",
            {"amount": {"per": "ticket_name", "cents": 500}},
            "'ticket_name' is not a integer attribute",
        ),
        (
            "issue_delay_voucher",
            {"amount": {"percent_of": "seats_x", "percent": 5}},
            "'seats_x' is not a money or integer attribute",
        ),
    ],
)
def test_an_inconsistent_money_operation_is_refused_with_the_problem_named(
    name: str, change: dict[str, Any], problem: str
) -> None:
    data = airline_data()
    op = next(o for o in data["operations"] if o["name"] == name)
    op.update(change)
    with pytest.raises(ValidationError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Domain.model_validate(data)


def test_a_voucher_needs_the_ledger_to_hold_vouchers() -> None:
    data = airline_data()
    data["ledger"] = {"methods": ["card", "gift_card"], "stored_value": ["gift_card"]}
    with pytest.raises(ValidationError, match="to 'voucher' needs a ledger with 'voucher'"):
        Domain.model_validate(data)


def test_each_operation_has_a_policy_sentence_in_the_domains_words(airline: World) -> None:
    design, _, _, _ = airline
    ops = {op.name: op for op in design.domain.operations}
    assert transfer_sentence(design, ops["change_flight"]) == (
        "A booked booking can move with change_flight to another flight with the same origin and destination that "
        "is on sale in the future and has room. The system re-prices it with the booking's own fare class and seats; "
        "the difference is charged to, or refunded to, a payment method the passenger chooses — a refund only to a "
        "method that paid for the booking."
    )
    assert compensate_sentence(design, ops["issue_delay_voucher"]) == (
        "issue_delay_voucher issues the passenger a voucher worth $50.00 per seat, at most once per booking; the "
        "voucher pays like a gift card, up to its balance."
    )


# -- change_flight (transfer) ------------------------------------------------------------------------------


def test_change_flight_takes_the_record_the_target_and_a_method_and_counts_changes(airline: World) -> None:
    _, spec, seed, _ = airline
    tool = next(t for t in spec["tools"] if t["name"] == "change_flight")
    assert list(tool["parameters"]["properties"]) == [
        "passenger_id",
        "booking_id",
        "new_flight_id",
        "payment_method_id",
    ]
    rules = [s.get("rule") for s in tool["steps"] if s["kind"] == "require"]
    for rule in ("authority.owned", "state.change_flight", "args.same_target", "rule.same_origin_destination"):
        assert rule in rules
    assert {"avail.capacity", "phase.booked", "pay.method_owned", "pay.stored_value", "pay.refund_to_payer"} <= set(
        rules
    )
    assert "rule.open_bookings" not in rules  # a move does not add a booking
    bookings = next(t for t in spec["tables"] if t["name"] == "bookings")
    assert "changes" in {c["name"] for c in bookings["columns"]}
    used = {b.get("changes") or 0 for b in seed["bookings"]}  # some have used their one change (the policy's limit)
    assert used == {0, 1}


@pytest.mark.parametrize("direction", ["pricier", "cheaper"])
def test_change_flight_settles_the_recomputed_difference_and_moves_the_seats(airline: World, direction: str) -> None:
    design, spec, seed, env = airline
    booking, flight, target, card = _move(airline)
    passenger = next(p for p in seed["passengers"] if p["passenger_id"] == booking["passenger_id"])
    fare = flight["fare_cents"] * 2 + 137 if direction == "pricier" else flight["fare_cents"] // 2 - 61
    expected = price(
        design.domain.pricing["fare"], fare, booking["seats"], booking["fare_class"], passenger["loyalty_tier"]
    ).total_cents
    diff = expected - booking["total_cents"]
    assert (diff > 0) == (direction == "pricier") and diff != 0
    payer = max(
        (p for p in seed["payments"] if p["booking_id"] == booking["booking_id"] and p["kind"] == "charge"),
        key=lambda p: p["amount_cents"],
    )["method_id"]
    method = card["method_id"] if direction == "pricier" else payer
    state = _with_fare(env, target["flight_id"], fare)
    result = env.call(
        state,
        "change_flight",
        {
            "passenger_id": booking["passenger_id"],
            "booking_id": booking["booking_id"],
            "new_flight_id": target["flight_id"],
            "payment_method_id": method,
        },
    )
    assert not result.is_error, result.text
    kind = "charge" if diff > 0 else "refund"
    now = _now(spec)
    assert _rows(
        state, "SELECT method_id, kind, amount_cents FROM payments WHERE booking_id = ? AND created_at >= ?",
        booking["booking_id"], now,
    ) == [(method, kind, abs(diff))]  # fmt: skip
    moved = _rows(
        state,
        "SELECT flight_id, departs_at, total_cents, amount_paid_cents, changes FROM bookings WHERE booking_id = ?",
        booking["booking_id"],
    )[0]
    changes = (booking.get("changes") or 0) + 1
    assert moved == (target["flight_id"], target["departs_at"], expected, booking["amount_paid_cents"] + diff, changes)
    seats = dict(
        _rows(
            state, "SELECT flight_id, seats_left FROM flights WHERE flight_id IN (?, ?)",
            flight["flight_id"], target["flight_id"],
        )
    )  # fmt: skip
    assert seats == {
        flight["flight_id"]: flight["seats_left"] + booking["seats"],
        target["flight_id"]: target["seats_left"] - booking["seats"],
    }
    assert result.structured["difference_cents"] == diff
    assert result.structured["difference_text"] == f"${abs(diff) // 100}.{abs(diff) % 100:02d} " + (
        "charged" if diff > 0 else "refunded"
    )
    assert not any(violations(env, state).values())
    state.close()


def test_change_flight_takes_a_higher_fare_from_stored_value_up_to_its_balance(airline: World) -> None:
    design, _, seed, env = airline
    booking, flight, target, card = _move(airline)
    passenger = next(p for p in seed["passengers"] if p["passenger_id"] == booking["passenger_id"])
    fare = flight["fare_cents"] * 3
    diff = (
        price(
            design.domain.pricing["fare"], fare, booking["seats"], booking["fare_class"], passenger["loyalty_tier"]
        ).total_cents
        - booking["total_cents"]
    )
    arguments = {
        "passenger_id": booking["passenger_id"],
        "booking_id": booking["booking_id"],
        "new_flight_id": target["flight_id"],
        "payment_method_id": card["method_id"],
    }
    for balance, ok in ((diff + 500, True), (diff - 1, False)):
        state = _with_fare(env, target["flight_id"], fare)
        with state.mode("internal"):
            state.conn.execute(
                "UPDATE payment_methods SET kind = 'gift_card', balance_cents = ? WHERE method_id = ?",
                (balance, card["method_id"]),
            )
        result = env.call(state, "change_flight", arguments)
        left = _rows(state, "SELECT balance_cents FROM payment_methods WHERE method_id = ?", card["method_id"])[0][0]
        state.close()
        if ok:
            assert not result.is_error, result.text
            assert left == 500
        else:
            assert result.is_error and result.structured["error"]["rule"] == "pay.stored_value"
            assert left == balance


def test_change_flight_refuses_what_it_must_and_changes_nothing(airline: World) -> None:
    _, spec, seed, env = airline
    booking, flight, target, card = _move(airline)
    base = {
        "passenger_id": booking["passenger_id"],
        "booking_id": booking["booking_id"],
        "new_flight_id": target["flight_id"],
        "payment_method_id": card["method_id"],
    }
    stranger = next(m for m in seed["payment_methods"] if m["passenger_id"] != booking["passenger_id"])
    other_route = next(
        f
        for f in seed["flights"]
        if f["status"] == "scheduled"
        and f["departs_at"] > _now(spec)
        and f["seats_left"] >= booking["seats"]
        and (f["origin"], f["destination"]) != (flight["origin"], flight["destination"])
    )
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({**base, "new_flight_id": flight["flight_id"]}, "args.same_target", None),
        ({**base, "new_flight_id": other_route["flight_id"]}, "rule.same_origin_destination", None),
        ({**base, "payment_method_id": stranger["method_id"]}, "pay.method_owned", None),
        ({**base, "passenger_id": stranger["passenger_id"]}, "authority.owned", None),
        (base, "avail.capacity", "UPDATE flights SET seats_left = 0 WHERE flight_id = :t"),
        (base, "rule.flight_on_sale", "UPDATE flights SET status = 'delayed' WHERE flight_id = :t"),
        (base, "phase.booked", "UPDATE flights SET departs_at = datetime(:now, '-1 hours') WHERE flight_id = :t"),
        (  # cheaper, refunded to one of their own methods that did not pay for this booking
            {**base, "payment_method_id": "PM-9998"},
            "pay.refund_to_payer",
            "UPDATE flights SET fare_cents = 1000 WHERE flight_id = :t; INSERT INTO payment_methods VALUES "
            "('PM-9998', :p, 'card', 'Visa ending 0000', NULL, 'active')",
        ),
    ]
    for arguments, rule, change in cases:
        state = env.new_state()
        if change:
            with state.mode("internal"):
                for statement in change.split("; "):
                    state.conn.execute(
                        statement,
                        {"t": target["flight_id"], "now": _now(spec), "p": booking["passenger_id"]},
                    )
        before = state.snapshot()
        result = env.call(state, "change_flight", arguments)
        assert result.is_error and result.structured["error"]["rule"] == rule, (rule, result.text)
        assert state.snapshot() == before
        state.close()


def test_after_a_cheaper_move_a_full_refund_returns_exactly_what_is_left_paid(airline: World) -> None:
    _, spec, seed, env = airline
    booking, flight, target, _ = _move(airline)
    payer = max(
        (p for p in seed["payments"] if p["booking_id"] == booking["booking_id"] and p["kind"] == "charge"),
        key=lambda p: p["amount_cents"],
    )["method_id"]
    state = _with_fare(env, target["flight_id"], flight["fare_cents"] // 2)
    who = {"passenger_id": booking["passenger_id"], "booking_id": booking["booking_id"]}
    moved = env.call(state, "change_flight", {**who, "new_flight_id": target["flight_id"], "payment_method_id": payer})
    assert not moved.is_error, moved.text
    paid = moved.structured["amount_paid_cents"]
    assert paid == booking["amount_paid_cents"] + moved.structured["difference_cents"] < booking["amount_paid_cents"]
    with state.mode("internal"):  # far enough ahead for the full-refund tier
        state.conn.execute(
            "UPDATE flights SET departs_at = datetime(?, '+10 days') WHERE flight_id = ?",
            (_now(spec), target["flight_id"]),
        )
        state.conn.execute(
            "UPDATE bookings SET departs_at = datetime(?, '+10 days') WHERE flight_id = ?",
            (_now(spec), target["flight_id"]),
        )
    cancelled = env.call(state, "cancel_booking", {**who, "reason": "illness"})
    assert not cancelled.is_error, cancelled.text
    assert (cancelled.structured["refunded_cents"], cancelled.structured["amount_paid_cents"]) == (paid, 0)
    assert not any(violations(env, state).values())
    state.close()


# -- issue_delay_voucher (compensate) ----------------------------------------------------------------------


def test_a_delay_voucher_is_worth_the_oracles_amount_pays_like_stored_value_and_is_given_once(airline: World) -> None:
    design, spec, seed, env = airline
    active = {p["passenger_id"] for p in seed["passengers"] if p["account_status"] == "active"}
    open_count = Counter(b["passenger_id"] for b in seed["bookings"] if b["status"] in ("booked", "checked_in"))
    booking = next(  # room under the open-bookings limit for two more bookings
        b
        for b in seed["bookings"]
        if b["status"] == "booked"
        and b["seats"] >= 2
        and b["passenger_id"] in active
        and open_count[b["passenger_id"]] <= 2
    )
    owner = booking["passenger_id"]
    held = [b for b in seed["bookings"] if b["passenger_id"] == owner and b["status"] in ("booked", "checked_in")]
    state = env.new_state()
    result = env.call(state, "issue_delay_voucher", {"passenger_id": owner, "booking_id": booking["booking_id"]})
    assert not result.is_error, result.text
    amount = 5000 * booking["seats"]
    voucher = result.structured["voucher_id"]
    assert result.structured["message"] == f"Issued voucher {voucher} worth ${amount // 100}.00."
    assert _rows(
        state, "SELECT passenger_id, kind, balance_cents, status FROM payment_methods WHERE method_id = ?", voucher
    ) == [(owner, "voucher", amount, "active")]
    assert _rows(
        state, "SELECT method_id, kind, amount_cents FROM payments WHERE booking_id = ? AND created_at >= ?",
        booking["booking_id"], _now(spec),
    ) == [(voucher, "credit", amount)]  # fmt: skip
    assert _rows(state, "SELECT amount_paid_cents FROM bookings WHERE booking_id = ?", booking["booking_id"]) == [
        (booking["amount_paid_cents"],)
    ]  # a credit is not a payment for the booking
    again = env.call(state, "issue_delay_voucher", {"passenger_id": owner, "booking_id": booking["booking_id"]})
    assert again.is_error and again.structured["error"]["rule"] == "rule.once_per_booking"
    assert voucher in again.text
    assert not any(violations(env, state).values())
    # the voucher pays a fare up to its balance: the dearest fare (with tax) that fits fits once, not twice
    flights = [
        f["flight_id"]
        for f in seed["flights"]
        if f["status"] == "scheduled"
        and f["departs_at"] > _now(spec)
        and f["flight_id"] not in {b["flight_id"] for b in held}
    ][:2]
    tier = next(p["loyalty_tier"] for p in seed["passengers"] if p["passenger_id"] == owner)
    fare = next(
        f
        for f in range(amount, 0, -1)
        if price(design.domain.pricing["fare"], f, 1, "economy", tier).total_cents <= amount
    )
    with state.mode("internal"):
        state.conn.execute("UPDATE flights SET fare_cents = ? WHERE flight_id IN (?, ?)", (fare, *flights))
    total = price(design.domain.pricing["fare"], fare, 1, "economy", tier).total_cents
    answers = [
        env.call(
            state,
            "book_flight",
            {
                "passenger_id": owner,
                "flight_id": flight_id,
                "ticket_name": "Probe Traveller",
                "fare_class": "economy",
                "seats": 1,
                "meal_request": "standard",
                "payment_method_id": voucher,
            },
        )
        for flight_id in flights
    ]
    left = _rows(state, "SELECT balance_cents FROM payment_methods WHERE method_id = ?", voucher)[0][0]
    state.close()
    assert not answers[0].is_error, answers[0].text
    assert amount - total < total  # the second does not fit
    assert answers[1].is_error and answers[1].structured["error"]["rule"] == "pay.stored_value"
    assert left == amount - total


def test_a_percent_voucher_is_computed_in_sql_as_the_oracle_does() -> None:
    data = airline_data()
    op = next(o for o in data["operations"] if o["name"] == "issue_delay_voucher")
    op["amount"] = {"percent_of": "total_cents", "percent": 15}
    _, _, seed, env = built(Domain.model_validate(data))
    booking = next(b for b in seed["bookings"] if b["status"] == "booked" and mul_div(b["total_cents"], 15, 100) > 0)
    state = env.new_state()
    result = env.call(
        state, "issue_delay_voucher", {"passenger_id": booking["passenger_id"], "booking_id": booking["booking_id"]}
    )
    state.close()
    assert not result.is_error, result.text
    assert result.structured["amount_cents"] == mul_div(booking["total_cents"], 15, 100)


# -- the procedural tests and their oracles ----------------------------------------------------------------


def test_both_tools_are_oracle_checked_and_their_refusals_probed(report: procedural_tests.TestReport) -> None:
    assert report.passed, report.why()
    oracle = [p for p in report.probes if p.kind == "oracle" and p.tool == "change_flight"]
    # pricier on a card, on stored value, cheaper (and the policy's reach probe of its change limit)
    assert len(oracle) >= 3 and all(p.passed for p in oracle)
    assert any(p.kind == "oracle" and p.passed for p in report.probes if p.tool == "issue_delay_voucher")
    assert {
        "args.same_target",
        "pay.refund_to_payer",
        "pay.stored_value",
        "pay.method_owned",
        "avail.capacity",
        "phase.booked",
        "authority.owned",
    } <= report.probed
    refused = {p.detail.split(":")[0] for p in report.probes if p.kind == "rule" and not p.passed}
    assert not refused
    passed = {(p.tool, p.kind) for p in report.probes if p.passed}
    assert {("change_flight", "rule"), ("change_flight", "wrong_state"), ("change_flight", "unknown_id")} <= passed
    assert {("issue_delay_voucher", "rule"), ("issue_delay_voucher", "wrong_state")} <= passed


def _tampered(airline: World, tool: str, old: str, new: str) -> procedural_tests.TestReport:
    design, spec, seed, _ = airline
    spec = copy.deepcopy(spec)
    target = next(t for t in spec["tools"] if t["name"] == tool)
    text = json.dumps(target)
    assert old in text, old
    spec["tools"][spec["tools"].index(target)] = json.loads(text.replace(old, new))
    build_spec(design)  # the design's roles, as the spec was built
    return run_procedural_tests(Environment.from_spec(spec, seed), design)


@pytest.mark.parametrize(
    ("tool", "old", "new", "why"),
    [
        ("change_flight", "SELECT :price_total_cents - :cur_total_cents", "SELECT :price_total_cents", "ledger rows"),
        ("change_flight", "THEN 10 WHEN 'platinum' THEN 15", "THEN 0 WHEN 'platinum' THEN 0", "total_cents"),
        ("change_flight", "seats_left = seats_left + :seats", "seats_left = seats_left + 0", "seats_left"),
        ("change_flight", ", changes = changes + 1", "", "changes"),
        ("change_flight", "balance_cents = balance_cents - (:diff)", "balance_cents = balance_cents", "balance"),
        ("issue_delay_voucher", "SELECT 5000 * seats", "SELECT 5000", "credits"),
    ],
)
def test_an_oracle_catches_a_money_tool_that_gets_an_amount_wrong(
    airline: World, tool: str, old: str, new: str, why: str
) -> None:
    report = _tampered(airline, tool, old, new)
    failed = [p for p in report.failures() if p.tool == tool]
    assert failed and not report.passed, why
    assert any(why in p.detail for p in failed), [p.detail for p in failed]


@pytest.mark.anyio
async def test_the_airline_served_over_mcp_changes_a_flight_and_issues_a_voucher_once(
    airline: World, tmp_path: Path
) -> None:
    _, spec, seed, _ = airline
    booking, _, target, card = _move(airline)
    folder = write_env(tmp_path / "airline_booking", spec, seed)
    args = [*ENVFLEET[1:], "serve", str(folder), "--log-level", "warning"]
    who = {"passenger_id": booking["passenger_id"], "booking_id": booking["booking_id"]}
    charges = [p for p in seed["payments"] if p["booking_id"] == booking["booking_id"] and p["kind"] == "charge"]
    method = max(charges, key=lambda p: p["amount_cents"])["method_id"]  # the main payer: a refund may go back to it
    async with connect_stdio(ENVFLEET[0], args) as client:
        moved = await client.call_tool(
            "change_flight", {**who, "new_flight_id": target["flight_id"], "payment_method_id": method}
        )
        assert not moved.is_error, moved.content[0].text
        changes = (booking.get("changes") or 0) + 1
        assert (moved.structured_content["flight_id"], moved.structured_content["changes"]) == (
            target["flight_id"],
            changes,
        )
        voucher = await client.call_tool("issue_delay_voucher", who)
        assert not voucher.is_error, voucher.content[0].text
        assert voucher.structured_content["amount_cents"] == 5000 * booking["seats"]
        again = await client.call_tool("issue_delay_voucher", who)
        assert again.is_error and "once per booking" in again.content[0].text
