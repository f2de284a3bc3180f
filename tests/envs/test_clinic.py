"""The clinic reference environment: seed consistency, every tool on a success path and on a refused call,
and multi-step scenarios over the business rules (referrals, balance limit, late-cancel and no-show fees,
rescheduling, copay billing).

Scenario patients are hand-written in the seed (PAT-0001..PAT-0015); see the comments in each test. Slots and
appointments are looked up by provider/patient and start time rather than by id, so the tests read as the
scenario they describe.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import servers
from servers import Environment, StateCopy

ENV_DIR = Path(servers.__file__).parent / "envs" / "clinic"

LATE_FEE = 25.0
NO_SHOW_FEE = 25.0
BALANCE_LIMIT = 200.0
MAX_OPEN = 3

EXPECTED_TOOLS = {
    "find_patient",
    "get_patient",
    "list_providers",
    "find_open_slots",
    "get_appointment",
    "list_patient_appointments",
    "list_invoices",
    "get_balance",
    "list_referrals",
    "book_appointment",
    "cancel_appointment",
    "reschedule_appointment",
    "check_in",
    "complete_visit",
    "mark_no_show",
    "record_payment",
    "add_referral",
}
WRITE_TOOLS = {
    "book_appointment",
    "cancel_appointment",
    "reschedule_appointment",
    "check_in",
    "complete_visit",
    "mark_no_show",
    "record_payment",
    "add_referral",
}


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment.load(ENV_DIR)


@pytest.fixture
def state(env: Environment):
    s = env.new_state()
    yield s
    s.close()


@pytest.fixture(scope="module")
def now(env: Environment) -> str:
    return env.spec.clock_sql  # '2026-03-16 09:00:00', a Monday


# -- helpers -------------------------------------------------------------------------------------


def rows(state: StateCopy, table: str) -> list[dict[str, Any]]:
    return state.rows(table)


def digest(state: StateCopy) -> str:
    return state.digest()


def by_id(state: StateCopy, table: str) -> dict[str, dict[str, Any]]:
    key = {
        "insurance_plans": "plan_id",
        "patients": "patient_id",
        "providers": "provider_id",
        "slots": "slot_id",
        "referrals": "referral_id",
        "appointments": "appointment_id",
        "invoices": "invoice_id",
        "payments": "payment_id",
    }[table]
    return {r[key]: r for r in rows(state, table)}


def slot_at(state: StateCopy, provider_id: str, start: str) -> str:
    matches = [
        s["slot_id"] for s in rows(state, "slots") if s["provider_id"] == provider_id and s["start_at"] == start + ":00"
    ]
    assert len(matches) == 1, (provider_id, start)
    return matches[0]


def appointment_at(state: StateCopy, patient_id: str, start: str) -> str:
    slots = by_id(state, "slots")
    matches = [
        a["appointment_id"]
        for a in rows(state, "appointments")
        if a["patient_id"] == patient_id
        and slots[a["slot_id"]]["start_at"] == start + ":00"
        and a["status"] != "cancelled"
    ]
    assert len(matches) == 1, (patient_id, start)
    return matches[0]


def open_balance(state: StateCopy, patient_id: str) -> float:
    return round(
        sum(
            i["amount"] - i["amount_paid"]
            for i in rows(state, "invoices")
            if i["patient_id"] == patient_id and i["status"] == "open"
        ),
        2,
    )


def next_id(state: StateCopy, table: str, prefix: str) -> str:
    numbers = [int(k.split("-")[1]) for k in by_id(state, table) if k.startswith(prefix + "-")]
    return f"{prefix}-{max(numbers) + 1:04d}"


def ok(env: Environment, state: StateCopy, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    result = env.call(state, tool, args)
    assert not result.is_error, f"{tool} failed: {result.text}"
    return result.structured


def refused(
    env: Environment, state: StateCopy, tool: str, args: dict[str, Any], *fragments: str, kind: str = "rule_violation"
) -> str:
    """The call fails with an error mentioning every fragment, and leaves the state exactly as it was."""
    before = digest(state)
    result = env.call(state, tool, args)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.text}"
    assert result.structured["error"]["type"] == kind, result.structured
    for fragment in fragments:
        assert fragment.lower() in result.text.lower(), f"{fragment!r} not in {result.text!r}"
    assert digest(state) == before, f"{tool} changed state although it failed"
    return result.text


# -- the spec and the seed -----------------------------------------------------------------------


def test_spec_identity_and_tools(env: Environment) -> None:
    spec = env.spec
    assert (spec.id, spec.version, spec.domain) == ("clinic", "1.0.0", "healthcare")
    assert spec.clock.isoformat() == "2026-03-16T09:00:00+00:00" and spec.clock.weekday() == 0
    assert set(env.tool_names) == EXPECTED_TOOLS  # a new tool needs tests here
    assert {t.name for t in spec.tools if t.kind == "write"} == WRITE_TOOLS
    assert not env.report.issues and not env.report.warnings
    for rule in ("last name and date of birth", "24 hours", "$200.00", "referral", "3 open appointments"):
        assert rule in spec.policy


def test_seed_size_and_id_patterns(state: StateCopy) -> None:
    dump = {
        t: rows(state, t)
        for t in (
            "insurance_plans",
            "patients",
            "providers",
            "slots",
            "referrals",
            "appointments",
            "invoices",
            "payments",
        )
    }
    assert sum(len(r) for r in dump.values()) >= 200
    assert all(dump.values())
    prefixes = {
        "insurance_plans": ("plan_id", "PLAN"),
        "patients": ("patient_id", "PAT"),
        "providers": ("provider_id", "PRV"),
        "slots": ("slot_id", "SLT"),
        "referrals": ("referral_id", "REF"),
        "appointments": ("appointment_id", "APT"),
        "invoices": ("invoice_id", "INV"),
        "payments": ("payment_id", "PAY"),
    }
    for table, (column, prefix) in prefixes.items():
        for row in dump[table]:
            assert re.fullmatch(rf"{prefix}-\d{{4}}", row[column]), row


def test_seed_slots_match_appointments(state: StateCopy) -> None:
    slots = by_id(state, "slots")
    holders = Counter(a["slot_id"] for a in rows(state, "appointments") if a["status"] != "cancelled")
    for slot_id, slot in slots.items():
        if slot["status"] == "booked":
            assert holders[slot_id] == 1, slot
        else:
            assert holders[slot_id] == 0, slot
    for a in rows(state, "appointments"):
        assert a["provider_id"] == slots[a["slot_id"]]["provider_id"]


def test_seed_appointment_timeline_is_consistent(state: StateCopy, now: str) -> None:
    slots = by_id(state, "slots")
    for a in rows(state, "appointments"):
        start = slots[a["slot_id"]]["start_at"]
        assert a["created_at"] < start and a["created_at"] <= now, a
        if a["status"] in ("completed", "no_show", "checked_in"):
            assert start <= now, a  # only what has started can have happened
        if a["status"] == "scheduled" and start < now:
            assert a["appointment_id"] == appointment_at(state, "PAT-0013", "2026-03-16 08:00")  # the no-show case
        if a["status"] == "cancelled":
            assert a["cancelled_at"] <= now and a["cancelled_at"] < start


def test_seed_patients_respect_booking_rules(state: StateCopy) -> None:
    slots = by_id(state, "slots")
    active = [a for a in rows(state, "appointments") if a["status"] in ("scheduled", "checked_in")]
    per_patient = Counter(a["patient_id"] for a in active)
    assert max(per_patient.values()) <= MAX_OPEN
    assert per_patient["PAT-0004"] == MAX_OPEN  # Helen Park is at the limit
    for p in {a["patient_id"] for a in active}:
        spans = sorted(
            (
                datetime.fromisoformat(slots[a["slot_id"]]["start_at"]),
                datetime.fromisoformat(slots[a["slot_id"]]["start_at"])
                + timedelta(minutes=slots[a["slot_id"]]["duration_minutes"]),
            )
            for a in active
            if a["patient_id"] == p
        )
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end <= start, f"{p} has overlapping appointments"
    over_limit = {
        p["patient_id"] for p in rows(state, "patients") if open_balance(state, p["patient_id"]) > BALANCE_LIMIT
    }
    assert over_limit == {"PAT-0003"}


def test_seed_money_adds_up(state: StateCopy) -> None:
    paid = Counter()
    for p in rows(state, "payments"):
        assert p["amount"] > 0
        paid[p["invoice_id"]] += p["amount"]
    kinds = Counter()
    for inv in rows(state, "invoices"):
        kinds[inv["kind"]] += 1
        assert round(paid[inv["invoice_id"]], 2) == inv["amount_paid"], inv
        if inv["status"] == "paid":
            assert inv["amount_paid"] == inv["amount"]
        if inv["status"] == "void":
            assert inv["amount_paid"] == 0
    assert set(kinds) == {"visit", "late_cancel_fee", "no_show_fee"}


def test_seed_referrals_are_consistent(state: StateCopy, now: str) -> None:
    appointments = rows(state, "appointments")
    providers = by_id(state, "providers")
    holding = Counter(a["referral_id"] for a in appointments if a["referral_id"] and a["status"] != "cancelled")
    today = now[:10]
    for r in rows(state, "referrals"):
        assert (r["status"] == "used") == (holding[r["referral_id"]] == 1), r
        if r["status"] == "active":
            assert r["expires_on"] >= today
        if r["status"] == "expired":
            assert r["expires_on"] < today
        assert providers[r["referring_provider_id"]]["specialty"] in ("family_medicine", "pediatrics")
    for a in appointments:
        if providers[a["provider_id"]]["requires_referral"]:
            assert a["referral_id"] is not None, a


# -- read tools ----------------------------------------------------------------------------------


def test_find_patient(env: Environment, state: StateCopy) -> None:
    # Two Maria Garcias: the date of birth tells them apart.
    out = ok(env, state, "find_patient", {"last_name": "garcia", "date_of_birth": "1985-04-12"})
    assert [r["patient_id"] for r in out["rows"]] == ["PAT-0001"]
    garcias = [p for p in rows(state, "patients") if p["last_name"] == "Garcia"]
    assert len(garcias) == 2
    out = ok(
        env, state, "find_patient", {"last_name": " Brooks ", "first_name": "OLIVIA", "date_of_birth": "1988-12-09"}
    )
    assert out["count"] == 1 and out["rows"][0]["patient_id"] == "PAT-0008"
    assert out["rows"][0]["first_name"] == "Olivia"


def test_find_patient_refusals(env: Environment, state: StateCopy) -> None:
    refused(
        env,
        state,
        "find_patient",
        {"last_name": "Garcia", "date_of_birth": "1985-04-13"},
        "No patient with last name Garcia and date of birth 1985-04-13",
    )
    refused(
        env,
        state,
        "find_patient",
        {"last_name": "Brooks", "first_name": "Lily", "date_of_birth": "1988-12-09"},
        "first name Lily",
    )
    refused(
        env,
        state,
        "find_patient",
        {"last_name": "Garcia", "date_of_birth": "12/04/1985"},
        "date_of_birth",
        kind="invalid_arguments",
    )
    refused(env, state, "find_patient", {"last_name": "Garcia"}, "date_of_birth", kind="invalid_arguments")


def test_get_patient(env: Environment, state: StateCopy) -> None:
    out = ok(env, state, "get_patient", {"patient_id": "PAT-0003"})
    patient = by_id(state, "patients")["PAT-0003"]
    plan = by_id(state, "insurance_plans")[patient["plan_id"]]
    assert (out["first_name"], out["last_name"], out["plan_id"]) == ("James", "Whitaker", patient["plan_id"])
    assert out["plan_name"] == plan["name"] == "Self-Pay"
    assert (out["primary_copay"], out["specialist_copay"]) == (plan["primary_copay"], plan["specialist_copay"])
    assert out["open_balance"] == open_balance(state, "PAT-0003") == 255.0  # 140 unpaid + 25 fee + 90 left of 140
    assert out["open_appointments"] == 0
    assert ok(env, state, "get_patient", {"patient_id": "PAT-0004"})["open_appointments"] == MAX_OPEN


def test_get_patient_unknown(env: Environment, state: StateCopy) -> None:
    refused(env, state, "get_patient", {"patient_id": "PAT-9999"}, "PAT-9999", "find_patient")
    refused(env, state, "get_patient", {"patient_id": "James Whitaker"}, "patient_id", kind="invalid_arguments")


def test_list_providers(env: Environment, state: StateCopy, now: str) -> None:
    providers = by_id(state, "providers")
    out = ok(env, state, "list_providers", {})
    assert {r["provider_id"] for r in out["rows"]} == set(providers)
    out = ok(env, state, "list_providers", {"specialty": "cardiology"})
    assert [r["provider_id"] for r in out["rows"]] == ["PRV-0005", "PRV-0006"]
    slots = rows(state, "slots")
    for r in out["rows"]:
        assert r["requires_referral"] is True
        assert r["accepts_new_patients"] == providers[r["provider_id"]]["accepts_new_patients"]
        expected = min(
            s["start_at"]
            for s in slots
            if s["provider_id"] == r["provider_id"] and s["status"] == "open" and s["start_at"] > now
        )
        assert r["next_open_slot"] == expected
    assert [r["accepts_new_patients"] for r in out["rows"]] == [True, False]


def test_list_providers_bad_specialty(env: Environment, state: StateCopy) -> None:
    refused(env, state, "list_providers", {"specialty": "neurology"}, "specialty", kind="invalid_arguments")


def test_find_open_slots(env: Environment, state: StateCopy, now: str) -> None:
    providers = by_id(state, "providers")
    out = ok(
        env, state, "find_open_slots", {"specialty": "cardiology", "from_date": "2026-03-16", "to_date": "2026-03-20"}
    )
    expected = {
        s["slot_id"]
        for s in rows(state, "slots")
        if s["status"] == "open"
        and s["start_at"] > now
        and "2026-03-16" <= s["start_at"][:10] <= "2026-03-20"
        and providers[s["provider_id"]]["specialty"] == "cardiology"
    }
    assert expected and {r["slot_id"] for r in out["rows"]} == expected
    starts = [r["start_at"] for r in out["rows"]]
    assert starts == sorted(starts)
    # Today's 08:30 slot of Dr. Raman is open but already past: never offered.
    past_open = slot_at(state, "PRV-0003", "2026-03-16 08:30")
    out = ok(
        env, state, "find_open_slots", {"provider_id": "PRV-0003", "from_date": "2026-03-16", "to_date": "2026-03-16"}
    )
    assert past_open not in {r["slot_id"] for r in out["rows"]}
    # Default window: today + 7 days; time-of-day filter.
    out = ok(env, state, "find_open_slots", {"provider_id": "PRV-0001", "after_time": "10:00"})
    assert out["count"] > 0
    for r in out["rows"]:
        assert r["provider_id"] == "PRV-0001" and r["start_at"][11:16] >= "10:00"
        assert now < r["start_at"] and r["start_at"][:10] <= "2026-03-23"


def test_find_open_slots_refusals(env: Environment, state: StateCopy) -> None:
    refused(env, state, "find_open_slots", {"from_date": "2026-03-16"}, "provider_id or a specialty")
    refused(env, state, "find_open_slots", {"provider_id": "PRV-0099"}, "No provider with id PRV-0099")
    refused(
        env,
        state,
        "find_open_slots",
        {"specialty": "dermatology", "from_date": "2026-03-20", "to_date": "2026-03-18"},
        "to_date must not be before from_date",
    )
    refused(
        env,
        state,
        "find_open_slots",
        {"specialty": "dermatology", "from_date": "2026-03-16", "to_date": "2026-05-01"},
        "31 days",
    )
    refused(
        env,
        state,
        "find_open_slots",
        {"specialty": "dermatology", "after_time": "9am"},
        "after_time",
        kind="invalid_arguments",
    )


def test_get_appointment(env: Environment, state: StateCopy) -> None:
    apt = appointment_at(state, "PAT-0012", "2026-03-16 10:00")
    out = ok(env, state, "get_appointment", {"appointment_id": apt})
    stored = by_id(state, "appointments")[apt]
    assert out["appointment_id"] == apt and out["patient_name"] == "Grace Liu"
    assert (out["provider_id"], out["provider_name"], out["specialty"]) == (
        "PRV-0003",
        "Dr. Priya Raman",
        "family_medicine",
    )
    assert (out["status"], out["slot_id"], out["reason"]) == ("scheduled", stored["slot_id"], stored["reason"])
    assert out["start_at"] == "2026-03-16 10:00:00"


def test_get_appointment_unknown(env: Environment, state: StateCopy) -> None:
    refused(env, state, "get_appointment", {"appointment_id": "APT-9999"}, "No appointment with id APT-9999")


def test_list_patient_appointments(env: Environment, state: StateCopy, now: str) -> None:
    out = ok(env, state, "list_patient_appointments", {"patient_id": "PAT-0004", "upcoming_only": True})
    assert out["count"] == MAX_OPEN
    assert all(r["status"] == "scheduled" and r["start_at"] >= now for r in out["rows"])
    assert [r["start_at"] for r in out["rows"]] == sorted(r["start_at"] for r in out["rows"])
    everything = ok(env, state, "list_patient_appointments", {"patient_id": "PAT-0004"})
    mine = [a for a in rows(state, "appointments") if a["patient_id"] == "PAT-0004"]
    assert {r["appointment_id"] for r in everything["rows"]} == {a["appointment_id"] for a in mine}
    done = ok(env, state, "list_patient_appointments", {"patient_id": "PAT-0004", "status": "completed"})
    assert [r["status"] for r in done["rows"]] == ["completed"]


def test_list_patient_appointments_refusals(env: Environment, state: StateCopy) -> None:
    refused(env, state, "list_patient_appointments", {"patient_id": "PAT-0999"}, "No patient with id PAT-0999")
    refused(
        env,
        state,
        "list_patient_appointments",
        {"patient_id": "PAT-0004", "status": "done"},
        "status",
        kind="invalid_arguments",
    )


def test_list_invoices(env: Environment, state: StateCopy) -> None:
    out = ok(env, state, "list_invoices", {"patient_id": "PAT-0003"})
    stored = {i["invoice_id"]: i for i in rows(state, "invoices") if i["patient_id"] == "PAT-0003"}
    assert {r["invoice_id"] for r in out["rows"]} == set(stored) and out["count"] == 3
    for r in out["rows"]:
        inv = stored[r["invoice_id"]]
        assert r["balance_due"] == round(inv["amount"] - inv["amount_paid"], 2)
    assert sorted(r["kind"] for r in out["rows"]) == ["late_cancel_fee", "visit", "visit"]
    assert sum(r["balance_due"] for r in out["rows"]) == 255.0
    paid = ok(env, state, "list_invoices", {"patient_id": "PAT-0001", "status": "paid"})
    assert paid["count"] == 1 and paid["rows"][0]["balance_due"] == 0


def test_list_invoices_refusals(env: Environment, state: StateCopy) -> None:
    refused(env, state, "list_invoices", {"patient_id": "PAT-0999"}, "PAT-0999")
    refused(
        env, state, "list_invoices", {"patient_id": "PAT-0003", "status": "unpaid"}, "status", kind="invalid_arguments"
    )


def test_get_balance(env: Environment, state: StateCopy) -> None:
    james = ok(env, state, "get_balance", {"patient_id": "PAT-0003"})
    assert james == {
        "patient_id": "PAT-0003",
        "patient_name": "James Whitaker",
        "open_balance": 255.0,
        "open_invoices": 3,
        "booking_blocked": True,
    }
    maria = ok(env, state, "get_balance", {"patient_id": "PAT-0001"})
    assert maria["open_balance"] == 0 and maria["open_invoices"] == 0 and maria["booking_blocked"] is False


def test_get_balance_refusals(env: Environment, state: StateCopy) -> None:
    refused(env, state, "get_balance", {"patient_id": "PAT-1234"}, "PAT-1234")
    refused(env, state, "get_balance", {}, "patient_id", kind="invalid_arguments")


def test_list_referrals(env: Environment, state: StateCopy) -> None:
    robert = ok(env, state, "list_referrals", {"patient_id": "PAT-0005"})
    assert sorted(r["status"] for r in robert["rows"]) == ["expired", "used"]
    assert all(r["specialty"] == "cardiology" and r["usable"] is False for r in robert["rows"])
    daniel = ok(env, state, "list_referrals", {"patient_id": "PAT-0007", "specialty": "dermatology"})
    assert daniel["count"] == 1 and daniel["rows"][0]["usable"] is True
    assert daniel["rows"][0]["referring_provider_name"] == "Dr. Amelia Hart"
    assert ok(env, state, "list_referrals", {"patient_id": "PAT-0007", "specialty": "cardiology"})["count"] == 0


def test_list_referrals_refusals(env: Environment, state: StateCopy) -> None:
    refused(env, state, "list_referrals", {"patient_id": "PAT-0404"}, "PAT-0404")
    refused(env, state, "list_referrals", {"patient_id": "PAT-0005", "extra": 1}, "extra", kind="invalid_arguments")


# -- book_appointment ----------------------------------------------------------------------------


def test_book_established_patient_with_closed_panel_provider(env: Environment, state: StateCopy, now: str) -> None:
    # Dr. Webb takes no new patients, but Maria Garcia (PAT-0001) completed a visit with him last week.
    slot = slot_at(state, "PRV-0002", "2026-03-19 09:00")
    expected_id = next_id(state, "appointments", "APT")
    out = ok(env, state, "book_appointment", {"patient_id": "PAT-0001", "slot_id": slot, "reason": "cough"})
    assert out["appointment_id"] == expected_id
    assert (out["status"], out["slot_id"], out["provider_id"], out["created_at"]) == (
        "scheduled",
        slot,
        "PRV-0002",
        now,
    )
    assert out["referral_id"] is None
    assert by_id(state, "slots")[slot]["status"] == "booked"
    stored = by_id(state, "appointments")[expected_id]
    assert (stored["patient_id"], stored["reason"], stored["status"]) == ("PAT-0001", "cough", "scheduled")


def test_book_specialist_uses_the_referral(env: Environment, state: StateCopy) -> None:
    # Aisha Johnson's cardiology referral runs until 2026-03-20; Wednesday 03-18 is inside it.
    referral = next(r for r in rows(state, "referrals") if r["patient_id"] == "PAT-0006")
    assert (referral["status"], referral["expires_on"]) == ("active", "2026-03-20")
    slot = slot_at(state, "PRV-0005", "2026-03-18 08:30")
    out = ok(env, state, "book_appointment", {"patient_id": "PAT-0006", "slot_id": slot, "reason": "palpitations"})
    assert out["referral_id"] == referral["referral_id"] and out["specialty"] == "cardiology"
    assert by_id(state, "referrals")[referral["referral_id"]]["status"] == "used"
    # The referral is used up: a second cardiology booking is refused.
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0006", "slot_id": slot_at(state, "PRV-0005", "2026-03-18 11:00"), "reason": "again"},
        "needs an active cardiology referral",
    )


def test_book_back_to_back_is_not_an_overlap(env: Environment, state: StateCopy) -> None:
    # Grace Liu sees Dr. Raman 10:00-10:30 today; Dr. Hart's 10:30 slot starts exactly when that ends.
    slot = slot_at(state, "PRV-0001", "2026-03-16 10:30")
    ok(env, state, "book_appointment", {"patient_id": "PAT-0012", "slot_id": slot, "reason": "blood pressure"})


def test_book_pediatrics_age_limit_is_on_the_visit_date(env: Environment, state: StateCopy) -> None:
    # Mason Rivera turns 18 on 2026-03-20: pediatrics on Tuesday 03-17 is fine, Friday 03-20 is not.
    assert by_id(state, "patients")["PAT-0015"]["date_of_birth"] == "2008-03-20"
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0015", "slot_id": slot_at(state, "PRV-0004", "2026-03-20 09:00"), "reason": "cold"},
        "aged 17 or younger",
        "Mason Rivera",
    )
    out = ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0015", "slot_id": slot_at(state, "PRV-0004", "2026-03-17 09:00"), "reason": "cold"},
    )
    assert out["specialty"] == "pediatrics"


@pytest.mark.parametrize(
    ("patient_id", "provider_id", "start", "fragments"),
    [
        pytest.param("PAT-0999", "PRV-0001", "2026-03-18 08:30", ["No patient with id PAT-0999"], id="unknown-patient"),
        pytest.param("PAT-0011", "PRV-0001", "2026-03-18 08:30", ["William Foster", "inactive"], id="inactive-patient"),
        pytest.param("PAT-0001", "PRV-0001", "2026-03-18 14:00", ["is booked, not open"], id="slot-booked"),
        pytest.param("PAT-0001", "PRV-0002", "2026-03-19 15:00", ["is blocked, not open"], id="slot-blocked"),
        pytest.param("PAT-0001", "PRV-0003", "2026-03-16 08:30", ["in the past"], id="slot-in-past"),
        pytest.param("PAT-0002", "PRV-0004", "2026-03-17 09:00", ["aged 17 or younger"], id="too-old-for-pediatrics"),
        pytest.param(
            "PAT-0002",
            "PRV-0002",
            "2026-03-19 09:00",
            ["not accepting new patients", "Maria Garcia"],
            id="closed-panel",
        ),
        pytest.param(
            "PAT-0002",
            "PRV-0007",
            "2026-03-18 09:00",
            ["dermatology referral", "Maria Garcia has none"],
            id="no-referral",
        ),
        pytest.param(
            "PAT-0005", "PRV-0005", "2026-03-18 08:30", ["cardiology referral"], id="only-used-and-expired-referrals"
        ),
        pytest.param(
            "PAT-0006", "PRV-0005", "2026-03-23 08:30", ["valid on 2026-03-23"], id="referral-expires-before-visit"
        ),
        pytest.param(
            "PAT-0007",
            "PRV-0007",
            "2026-03-18 10:15",
            ["overlaps", "2026-03-18 10:30:00", "Dr. Amelia Hart"],
            id="double-booking",
        ),
        pytest.param("PAT-0004", "PRV-0001", "2026-03-18 08:30", ["3 open appointments"], id="max-open-appointments"),
        pytest.param(
            "PAT-0003", "PRV-0001", "2026-03-18 08:30", ["$255.00", "exceeds $200.00"], id="balance-over-limit"
        ),
    ],
)
def test_book_refusals(
    env: Environment, state: StateCopy, patient_id: str, provider_id: str, start: str, fragments: list[str]
) -> None:
    args = {"patient_id": patient_id, "slot_id": slot_at(state, provider_id, start), "reason": "check-up"}
    refused(env, state, "book_appointment", args, *fragments)


def test_book_unknown_slot_and_bad_arguments(env: Environment, state: StateCopy) -> None:
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0001", "slot_id": "SLT-9999", "reason": "check-up"},
        "No slot with id SLT-9999",
    )
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0001", "slot_id": "SLT-0001"},
        "reason",
        kind="invalid_arguments",
    )


# -- cancel_appointment --------------------------------------------------------------------------


def test_late_cancel_creates_the_fee(env: Environment, state: StateCopy, now: str) -> None:
    # Olivia Brooks' appointment tomorrow at 08:30 is 23.5 hours away.
    apt = appointment_at(state, "PAT-0008", "2026-03-17 08:30")
    slot = by_id(state, "appointments")[apt]["slot_id"]
    balance_before = open_balance(state, "PAT-0008")
    fee_id = next_id(state, "invoices", "INV")
    out = ok(env, state, "cancel_appointment", {"appointment_id": apt, "reason": "feeling better"})
    assert (out["status"], out["cancelled_at"], out["cancel_reason"]) == ("cancelled", now, "feeling better")
    assert out["late_fee"] == LATE_FEE and out["late_fee_invoice_id"] == fee_id
    fee = by_id(state, "invoices")[fee_id]
    assert (fee["patient_id"], fee["appointment_id"], fee["kind"]) == ("PAT-0008", apt, "late_cancel_fee")
    assert (fee["amount"], fee["amount_paid"], fee["status"], fee["issued_on"]) == (LATE_FEE, 0, "open", now[:10])
    assert by_id(state, "slots")[slot]["status"] == "open"
    assert open_balance(state, "PAT-0008") == balance_before + LATE_FEE
    assert ok(env, state, "get_balance", {"patient_id": "PAT-0008"})["open_balance"] == balance_before + LATE_FEE


def test_cancel_with_notice_is_free(env: Environment, state: StateCopy) -> None:
    apt = appointment_at(state, "PAT-0008", "2026-03-19 14:00")
    invoices_before = rows(state, "invoices")
    out = ok(env, state, "cancel_appointment", {"appointment_id": apt})
    assert out["status"] == "cancelled" and out["late_fee"] == 0 and out["late_fee_invoice_id"] is None
    assert rows(state, "invoices") == invoices_before
    assert by_id(state, "slots")[out["slot_id"]]["status"] == "open"


def test_cancel_exactly_24_hours_ahead_is_not_late(env: Environment, state: StateCopy, now: str) -> None:
    # The fee applies to "less than 24 hours": Dr. Okafor's 09:00 slot tomorrow is exactly 24 hours away.
    slot = slot_at(state, "PRV-0004", "2026-03-17 09:00")
    assert by_id(state, "slots")[slot]["start_at"] == str(datetime.fromisoformat(now) + timedelta(hours=24))
    apt = ok(env, state, "book_appointment", {"patient_id": "PAT-0014", "slot_id": slot, "reason": "ear ache"})
    out = ok(env, state, "cancel_appointment", {"appointment_id": apt["appointment_id"]})
    assert out["late_fee"] == 0 and out["late_fee_invoice_id"] is None
    assert not [i for i in rows(state, "invoices") if i["appointment_id"] == apt["appointment_id"]]


def test_reschedule_exactly_24_hours_ahead_is_allowed(env: Environment, state: StateCopy) -> None:
    apt = ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0014", "slot_id": slot_at(state, "PRV-0004", "2026-03-17 09:00"), "reason": "ear ache"},
    )
    out = ok(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": apt["appointment_id"], "new_slot_id": slot_at(state, "PRV-0004", "2026-03-20 09:00")},
    )
    assert out["start_at"] == "2026-03-20 09:00:00" and out["previous_slot_id"] == apt["slot_id"]


def test_cancel_gives_the_referral_back(env: Environment, state: StateCopy) -> None:
    # Helen Park's orthopedics appointment used her referral; cancelling frees it for a new booking.
    apt = appointment_at(state, "PAT-0004", "2026-03-19 09:00")
    referral_id = by_id(state, "appointments")[apt]["referral_id"]
    assert by_id(state, "referrals")[referral_id]["status"] == "used"
    ok(env, state, "cancel_appointment", {"appointment_id": apt, "reason": "knee better"})
    assert by_id(state, "referrals")[referral_id]["status"] == "active"
    out = ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0004", "slot_id": slot_at(state, "PRV-0008", "2026-03-26 09:00"), "reason": "knee pain"},
    )
    assert out["referral_id"] == referral_id
    assert by_id(state, "referrals")[referral_id]["status"] == "used"


def test_cancel_refusals(env: Environment, state: StateCopy) -> None:
    refused(env, state, "cancel_appointment", {"appointment_id": "APT-9999"}, "No appointment with id APT-9999")
    checked_in = appointment_at(state, "PAT-0009", "2026-03-16 08:30")
    refused(env, state, "cancel_appointment", {"appointment_id": checked_in}, "is checked_in", "only scheduled")
    completed = appointment_at(state, "PAT-0001", "2026-03-09 09:00")
    refused(env, state, "cancel_appointment", {"appointment_id": completed}, "is completed")
    # Noah Patel's 08:00 appointment started an hour ago: too late to cancel, it is a no-show case.
    started = appointment_at(state, "PAT-0013", "2026-03-16 08:00")
    refused(env, state, "cancel_appointment", {"appointment_id": started}, "can no longer be cancelled", "no-show")
    william = next(
        a for a in rows(state, "appointments") if a["patient_id"] == "PAT-0011" and a["status"] == "cancelled"
    )
    refused(env, state, "cancel_appointment", {"appointment_id": william["appointment_id"]}, "is cancelled")


# -- reschedule_appointment ----------------------------------------------------------------------


def test_reschedule_frees_the_old_slot(env: Environment, state: StateCopy) -> None:
    apt = appointment_at(state, "PAT-0008", "2026-03-19 14:00")
    old_slot = by_id(state, "appointments")[apt]["slot_id"]
    new_slot = slot_at(state, "PRV-0003", "2026-03-19 10:00")
    invoices_before = rows(state, "invoices")
    out = ok(env, state, "reschedule_appointment", {"appointment_id": apt, "new_slot_id": new_slot})
    assert (out["appointment_id"], out["slot_id"], out["start_at"]) == (apt, new_slot, "2026-03-19 10:00:00")
    assert (out["previous_slot_id"], out["previous_start_at"]) == (old_slot, "2026-03-19 14:00:00")
    assert out["status"] == "scheduled"
    slots = by_id(state, "slots")
    assert slots[old_slot]["status"] == "open" and slots[new_slot]["status"] == "booked"
    assert by_id(state, "appointments")[apt]["slot_id"] == new_slot
    assert rows(state, "invoices") == invoices_before  # moving with notice costs nothing
    # The freed slot is bookable by someone else.
    ok(env, state, "book_appointment", {"patient_id": "PAT-0012", "slot_id": old_slot, "reason": "follow-up"})


def test_reschedule_keeps_the_referral_valid(env: Environment, state: StateCopy) -> None:
    # Aisha's cardiology referral ends 2026-03-20: she can move within that week but not past it.
    booked = ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0006", "slot_id": slot_at(state, "PRV-0005", "2026-03-18 08:30"), "reason": "palpitations"},
    )
    apt = booked["appointment_id"]
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": apt, "new_slot_id": slot_at(state, "PRV-0005", "2026-03-23 08:30")},
        booked["referral_id"],
        "expires before 2026-03-23",
    )
    out = ok(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": apt, "new_slot_id": slot_at(state, "PRV-0005", "2026-03-18 11:00")},
    )
    assert out["referral_id"] == booked["referral_id"] and out["start_at"] == "2026-03-18 11:00:00"


def test_reschedule_refuses_an_overlap(env: Environment, state: StateCopy) -> None:
    # Aisha: Dr. Brandt 03-18 08:30-09:15, and Dr. Hart on 03-25; moving the latter to 03-18 08:30 would overlap.
    ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0006", "slot_id": slot_at(state, "PRV-0005", "2026-03-18 08:30"), "reason": "palpitations"},
    )
    hart = ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0006", "slot_id": slot_at(state, "PRV-0001", "2026-03-25 08:30"), "reason": "rash"},
    )
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": hart["appointment_id"], "new_slot_id": slot_at(state, "PRV-0001", "2026-03-18 08:30")},
        "overlaps",
        "Dr. Samuel Brandt",
    )


def test_reschedule_keeps_the_pediatric_age_limit(env: Environment, state: StateCopy) -> None:
    """Mason Rivera turns 18 on 2026-03-20: pediatrics may see him on the 17th, not after a move to the 20th."""
    mason = next(p for p in rows(state, "patients") if (p["first_name"], p["last_name"]) == ("Mason", "Rivera"))
    assert mason["date_of_birth"] == "2008-03-20"
    booked = ok(
        env, state, "book_appointment", {"patient_id": mason["patient_id"], "slot_id": "SLT-0069", "reason": "checkup"}
    )
    friday = by_id(state, "slots")["SLT-0100"]
    assert friday["start_at"].startswith("2026-03-20") and friday["status"] == "open"
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": booked["appointment_id"], "new_slot_id": "SLT-0100"},
        "aged 17 or younger on the visit date",
        "Mason Rivera",
    )


def test_reschedule_refusals(env: Environment, state: StateCopy) -> None:
    olivia_soon = appointment_at(state, "PAT-0008", "2026-03-17 08:30")
    olivia_later = appointment_at(state, "PAT-0008", "2026-03-19 14:00")
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": olivia_soon, "new_slot_id": slot_at(state, "PRV-0003", "2026-03-19 10:00")},
        "less than 24 hours",
        "cancel",
    )
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": olivia_later, "new_slot_id": slot_at(state, "PRV-0001", "2026-03-18 08:30")},
        "another provider",
        "Dr. Priya Raman",
    )
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": olivia_later, "new_slot_id": slot_at(state, "PRV-0003", "2026-03-23 10:00")},
        "is booked, not open",
    )
    # Dr. Raman's 08:30 slot this morning is open but over.
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": olivia_later, "new_slot_id": slot_at(state, "PRV-0003", "2026-03-16 08:30")},
        "in the past",
    )
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": olivia_later, "new_slot_id": "SLT-9999"},
        "No slot with id SLT-9999",
    )
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": "APT-9999", "new_slot_id": "SLT-0001"},
        "No appointment with id APT-9999",
    )
    completed = appointment_at(state, "PAT-0001", "2026-03-09 09:00")
    refused(
        env,
        state,
        "reschedule_appointment",
        {"appointment_id": completed, "new_slot_id": slot_at(state, "PRV-0002", "2026-03-19 09:00")},
        "is completed",
    )


# -- check_in / complete_visit / mark_no_show ------------------------------------------------------


def test_check_in_today(env: Environment, state: StateCopy, now: str) -> None:
    apt = appointment_at(state, "PAT-0012", "2026-03-16 10:00")
    out = ok(env, state, "check_in", {"appointment_id": apt})
    assert (out["status"], out["checked_in_at"]) == ("checked_in", now)
    assert by_id(state, "appointments")[apt]["status"] == "checked_in"


def test_check_in_refusals(env: Environment, state: StateCopy) -> None:
    tomorrow = appointment_at(state, "PAT-0008", "2026-03-17 08:30")
    refused(env, state, "check_in", {"appointment_id": tomorrow}, "is on 2026-03-17", "today is 2026-03-16")
    already = appointment_at(state, "PAT-0009", "2026-03-16 08:30")
    refused(env, state, "check_in", {"appointment_id": already}, "is checked_in")
    refused(env, state, "check_in", {"appointment_id": "APT-9999"}, "No appointment with id APT-9999")


def test_complete_visit_bills_the_primary_copay(env: Environment, state: StateCopy, now: str) -> None:
    # Grace Liu (PPO) checks in and completes a family-medicine visit: the plan's primary-care copay is billed.
    apt = appointment_at(state, "PAT-0012", "2026-03-16 10:00")
    plan = by_id(state, "insurance_plans")[by_id(state, "patients")["PAT-0012"]["plan_id"]]
    ok(env, state, "check_in", {"appointment_id": apt})
    invoice_id = next_id(state, "invoices", "INV")
    out = ok(env, state, "complete_visit", {"appointment_id": apt, "notes": "rest and ice"})
    assert (out["status"], out["completed_at"], out["visit_notes"]) == ("completed", now, "rest and ice")
    assert (out["copay"], out["invoice_id"], out["plan_name"]) == (plan["primary_copay"], invoice_id, plan["name"])
    invoice = by_id(state, "invoices")[invoice_id]
    assert (invoice["kind"], invoice["appointment_id"], invoice["patient_id"]) == ("visit", apt, "PAT-0012")
    assert (invoice["amount"], invoice["amount_paid"], invoice["status"]) == (plan["primary_copay"], 0, "open")


def test_complete_visit_bills_the_specialist_copay(env: Environment, state: StateCopy) -> None:
    # Sofia Alvarez (PPO) is checked in with the cardiologist: specialist copay.
    apt = appointment_at(state, "PAT-0010", "2026-03-16 08:30")
    plan = by_id(state, "insurance_plans")[by_id(state, "patients")["PAT-0010"]["plan_id"]]
    assert plan["specialist_copay"] != plan["primary_copay"]
    out = ok(env, state, "complete_visit", {"appointment_id": apt})
    assert out["copay"] == plan["specialist_copay"]
    assert by_id(state, "invoices")[out["invoice_id"]]["amount"] == plan["specialist_copay"]


def test_complete_visit_with_no_copay_bills_nothing(env: Environment, state: StateCopy) -> None:
    # Thomas Reed's Medicaid plan has a $0 primary-care copay: no invoice, and no id consumed.
    apt = appointment_at(state, "PAT-0009", "2026-03-16 08:30")
    invoices_before = rows(state, "invoices")
    next_invoice = next_id(state, "invoices", "INV")
    out = ok(env, state, "complete_visit", {"appointment_id": apt})
    assert out["status"] == "completed" and out["copay"] == 0 and out["invoice_id"] is None
    assert by_id(state, "appointments")[apt]["status"] == "completed"
    assert rows(state, "invoices") == invoices_before
    later = ok(env, state, "mark_no_show", {"appointment_id": appointment_at(state, "PAT-0013", "2026-03-16 08:00")})
    assert later["fee_invoice_id"] == next_invoice


def test_complete_visit_refusals(env: Environment, state: StateCopy) -> None:
    not_checked_in = appointment_at(state, "PAT-0012", "2026-03-16 10:00")
    refused(env, state, "complete_visit", {"appointment_id": not_checked_in}, "is scheduled", "checked in")
    completed = appointment_at(state, "PAT-0001", "2026-03-09 09:00")
    refused(env, state, "complete_visit", {"appointment_id": completed}, "is completed")
    refused(env, state, "complete_visit", {"appointment_id": "APT-9999"}, "No appointment with id APT-9999")


def test_mark_no_show_adds_the_fee(env: Environment, state: StateCopy) -> None:
    apt = appointment_at(state, "PAT-0013", "2026-03-16 08:00")
    slot = by_id(state, "appointments")[apt]["slot_id"]
    out = ok(env, state, "mark_no_show", {"appointment_id": apt})
    assert out["status"] == "no_show" and out["fee"] == NO_SHOW_FEE
    fee = by_id(state, "invoices")[out["fee_invoice_id"]]
    assert (fee["kind"], fee["amount"], fee["status"], fee["patient_id"], fee["appointment_id"]) == (
        "no_show_fee",
        NO_SHOW_FEE,
        "open",
        "PAT-0013",
        apt,
    )
    assert by_id(state, "slots")[slot]["status"] == "booked"  # the time was used up


def test_mark_no_show_refusals(env: Environment, state: StateCopy) -> None:
    # Grace's 10:00 appointment has not started yet.
    upcoming = appointment_at(state, "PAT-0012", "2026-03-16 10:00")
    refused(env, state, "mark_no_show", {"appointment_id": upcoming}, "only from 2026-03-16 10:15:00")
    here = appointment_at(state, "PAT-0009", "2026-03-16 08:30")
    refused(env, state, "mark_no_show", {"appointment_id": here}, "is checked_in")
    refused(env, state, "mark_no_show", {"appointment_id": "APT-9999"}, "No appointment with id APT-9999")


# -- record_payment ------------------------------------------------------------------------------


def james_invoices(state: StateCopy) -> dict[str, dict[str, Any]]:
    """PAT-0003's open invoices by what they are: the unpaid visit, the partly paid visit, the late fee."""
    invs = [i for i in rows(state, "invoices") if i["patient_id"] == "PAT-0003" and i["status"] == "open"]
    return {
        "unpaid_visit": next(i for i in invs if i["kind"] == "visit" and i["amount_paid"] == 0),
        "partial_visit": next(i for i in invs if i["kind"] == "visit" and i["amount_paid"] > 0),
        "fee": next(i for i in invs if i["kind"] == "late_cancel_fee"),
    }


def test_record_payment_partial_then_full(env: Environment, state: StateCopy, now: str) -> None:
    inv = james_invoices(state)["partial_visit"]
    remaining = round(inv["amount"] - inv["amount_paid"], 2)
    pay_id = next_id(state, "payments", "PAY")
    out = ok(env, state, "record_payment", {"invoice_id": inv["invoice_id"], "amount": 40, "method": "card"})
    assert (out["payment_id"], out["amount"], out["method"], out["paid_at"]) == (pay_id, 40, "card", now)
    assert out["invoice_status"] == "open" and out["invoice_balance_due"] == remaining - 40
    assert out["patient_open_balance"] == 255.0 - 40
    assert by_id(state, "payments")[pay_id]["invoice_id"] == inv["invoice_id"]
    assert by_id(state, "invoices")[inv["invoice_id"]]["amount_paid"] == inv["amount_paid"] + 40
    out = ok(
        env, state, "record_payment", {"invoice_id": inv["invoice_id"], "amount": remaining - 40, "method": "cash"}
    )
    assert out["invoice_status"] == "paid" and out["invoice_balance_due"] == 0
    stored = by_id(state, "invoices")[inv["invoice_id"]]
    assert stored["status"] == "paid" and stored["amount_paid"] == stored["amount"]


def test_record_payment_with_cents(env: Environment, state: StateCopy) -> None:
    inv = james_invoices(state)["fee"]
    out = ok(env, state, "record_payment", {"invoice_id": inv["invoice_id"], "amount": 12.35, "method": "hsa"})
    assert out["invoice_balance_due"] == 12.65
    assert by_id(state, "invoices")[inv["invoice_id"]]["amount_paid"] == 12.35


def test_record_payment_refusals(env: Environment, state: StateCopy) -> None:
    inv = james_invoices(state)["partial_visit"]
    remaining = round(inv["amount"] - inv["amount_paid"], 2)
    refused(
        env,
        state,
        "record_payment",
        {"invoice_id": inv["invoice_id"], "amount": remaining + 0.01, "method": "card"},
        f"${remaining + 0.01:.2f} exceeds the ${remaining:.2f} still due",
    )
    refused(
        env,
        state,
        "record_payment",
        {"invoice_id": inv["invoice_id"], "amount": 10.005, "method": "card"},
        "fractions of a cent",
    )
    paid = next(i for i in rows(state, "invoices") if i["status"] == "paid")
    refused(env, state, "record_payment", {"invoice_id": paid["invoice_id"], "amount": 1, "method": "card"}, "is paid")
    void = next(i for i in rows(state, "invoices") if i["status"] == "void")
    refused(env, state, "record_payment", {"invoice_id": void["invoice_id"], "amount": 1, "method": "card"}, "is void")
    refused(
        env,
        state,
        "record_payment",
        {"invoice_id": "INV-9999", "amount": 1, "method": "card"},
        "No invoice with id INV-9999",
    )
    refused(
        env,
        state,
        "record_payment",
        {"invoice_id": inv["invoice_id"], "amount": 0, "method": "card"},
        "amount",
        kind="invalid_arguments",
    )
    refused(
        env,
        state,
        "record_payment",
        {"invoice_id": inv["invoice_id"], "amount": -5, "method": "card"},
        "amount",
        kind="invalid_arguments",
    )
    refused(
        env,
        state,
        "record_payment",
        {"invoice_id": inv["invoice_id"], "amount": 5, "method": "bitcoin"},
        "method",
        kind="invalid_arguments",
    )


# -- add_referral --------------------------------------------------------------------------------


def test_add_referral(env: Environment, state: StateCopy, now: str) -> None:
    today = date.fromisoformat(now[:10])
    ref_id = next_id(state, "referrals", "REF")
    out = ok(
        env,
        state,
        "add_referral",
        {"patient_id": "PAT-0005", "specialty": "cardiology", "referring_provider_id": "PRV-0001", "notes": "recheck"},
    )
    assert out["referral_id"] == ref_id
    assert (out["status"], out["issued_on"], out["expires_on"]) == (
        "active",
        str(today),
        str(today + timedelta(days=90)),
    )
    stored = by_id(state, "referrals")[ref_id]
    assert (stored["patient_id"], stored["specialty"], stored["referring_provider_id"], stored["notes"]) == (
        "PAT-0005",
        "cardiology",
        "PRV-0001",
        "recheck",
    )
    short = ok(
        env,
        state,
        "add_referral",
        {"patient_id": "PAT-0005", "specialty": "orthopedics", "referring_provider_id": "PRV-0001", "valid_days": 30},
    )
    assert short["expires_on"] == str(today + timedelta(days=30))


def test_add_referral_refusals(env: Environment, state: StateCopy) -> None:
    def args(**kw: Any) -> dict[str, Any]:
        return {"patient_id": "PAT-0005", "specialty": "cardiology", "referring_provider_id": "PRV-0001"} | kw

    refused(env, state, "add_referral", args(patient_id="PAT-0999"), "No patient with id PAT-0999")
    refused(env, state, "add_referral", args(patient_id="PAT-0011"), "William Foster", "inactive")
    refused(env, state, "add_referral", args(referring_provider_id="PRV-0099"), "No provider with id PRV-0099")
    refused(
        env, state, "add_referral", args(referring_provider_id="PRV-0006"), "Dr. Yuki Tanaka is a cardiology specialist"
    )
    refused(env, state, "add_referral", args(specialty="family_medicine"), "family_medicine does not need a referral")
    # Maria Garcia (1992) has never completed a visit with Dr. Raman.
    refused(
        env,
        state,
        "add_referral",
        args(patient_id="PAT-0002", referring_provider_id="PRV-0003"),
        "Dr. Priya Raman has no completed visit with Maria Garcia",
    )
    # Daniel Kim already holds a usable dermatology referral.
    daniel = next(r for r in rows(state, "referrals") if r["patient_id"] == "PAT-0007")
    refused(
        env,
        state,
        "add_referral",
        args(patient_id="PAT-0007", specialty="dermatology"),
        "already has an active dermatology referral",
        daniel["referral_id"],
        daniel["expires_on"],
    )
    refused(env, state, "add_referral", args(valid_days=365), "valid_days", kind="invalid_arguments")


# -- multi-step scenarios --------------------------------------------------------------------------


def test_paying_down_the_balance_unblocks_booking(env: Environment, state: StateCopy) -> None:
    # James Whitaker owes $255; booking needs the balance at $200.00 or less.
    slot = slot_at(state, "PRV-0001", "2026-03-18 08:30")
    booking = {"patient_id": "PAT-0003", "slot_id": slot, "reason": "blood pressure recheck"}
    refused(env, state, "book_appointment", booking, "$255.00")
    unpaid = james_invoices(state)["unpaid_visit"]
    ok(env, state, "record_payment", {"invoice_id": unpaid["invoice_id"], "amount": 54.99, "method": "card"})
    assert open_balance(state, "PAT-0003") == 200.01
    refused(env, state, "book_appointment", booking, "$200.01")
    assert ok(env, state, "get_balance", {"patient_id": "PAT-0003"})["booking_blocked"] is True
    ok(env, state, "record_payment", {"invoice_id": unpaid["invoice_id"], "amount": 0.01, "method": "card"})
    assert ok(env, state, "get_balance", {"patient_id": "PAT-0003"}) == {
        "patient_id": "PAT-0003",
        "patient_name": "James Whitaker",
        "open_balance": 200.0,
        "open_invoices": 3,
        "booking_blocked": False,
    }
    out = ok(env, state, "book_appointment", booking)
    assert out["status"] == "scheduled" and by_id(state, "slots")[slot]["status"] == "booked"


def test_referral_lifecycle(env: Environment, state: StateCopy) -> None:
    # Robert Chen: his cardiology referrals are used/expired, so Dr. Tanaka (whom he saw last week) is refused;
    # Dr. Hart, who saw him on 03-09, issues a new one; booking uses it; cancelling gives it back.
    slot = slot_at(state, "PRV-0006", "2026-03-17 13:00")
    booking = {"patient_id": "PAT-0005", "slot_id": slot, "reason": "cardiology follow-up"}
    refused(env, state, "book_appointment", booking, "cardiology referral")
    ref = ok(
        env,
        state,
        "add_referral",
        {"patient_id": "PAT-0005", "specialty": "cardiology", "referring_provider_id": "PRV-0001"},
    )
    refused(
        env,
        state,
        "add_referral",
        {"patient_id": "PAT-0005", "specialty": "cardiology", "referring_provider_id": "PRV-0001"},
        ref["referral_id"],
    )
    apt = ok(env, state, "book_appointment", booking)
    assert apt["referral_id"] == ref["referral_id"]
    assert by_id(state, "referrals")[ref["referral_id"]]["status"] == "used"
    listed = {r["referral_id"]: r for r in ok(env, state, "list_referrals", {"patient_id": "PAT-0005"})["rows"]}
    assert listed[ref["referral_id"]]["usable"] is False
    ok(env, state, "cancel_appointment", {"appointment_id": apt["appointment_id"]})
    assert by_id(state, "referrals")[ref["referral_id"]]["status"] == "active"
    assert by_id(state, "slots")[slot]["status"] == "open"
    # A new patient of Dr. Tanaka with a valid referral is still refused: he is not taking new patients.
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0006", "slot_id": slot, "reason": "palpitations"},
        "Dr. Yuki Tanaka is not accepting new patients",
    )


def test_visit_day_from_check_in_to_payment(env: Environment, state: StateCopy) -> None:
    apt = appointment_at(state, "PAT-0012", "2026-03-16 10:00")
    refused(env, state, "complete_visit", {"appointment_id": apt}, "checked in")
    ok(env, state, "check_in", {"appointment_id": apt})
    refused(env, state, "check_in", {"appointment_id": apt}, "is checked_in")
    refused(env, state, "mark_no_show", {"appointment_id": apt}, "is checked_in")
    visit = ok(env, state, "complete_visit", {"appointment_id": apt})
    assert open_balance(state, "PAT-0012") == visit["copay"] > 0
    payment = ok(
        env, state, "record_payment", {"invoice_id": visit["invoice_id"], "amount": visit["copay"], "method": "card"}
    )
    assert payment["invoice_status"] == "paid" and payment["patient_open_balance"] == 0
    invoices = ok(env, state, "list_invoices", {"patient_id": "PAT-0012"})["rows"]
    assert [(i["invoice_id"], i["status"], i["balance_due"]) for i in invoices] == [(visit["invoice_id"], "paid", 0)]


def test_freeing_a_place_under_the_open_appointment_limit(env: Environment, state: StateCopy) -> None:
    slot = slot_at(state, "PRV-0001", "2026-03-18 08:30")
    booking = {"patient_id": "PAT-0004", "slot_id": slot, "reason": "blood test"}
    refused(env, state, "book_appointment", booking, "3 open appointments")
    ok(env, state, "cancel_appointment", {"appointment_id": appointment_at(state, "PAT-0004", "2026-03-23 10:00")})
    ok(env, state, "book_appointment", booking)
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0004", "slot_id": slot_at(state, "PRV-0001", "2026-03-23 08:30"), "reason": "x-ray"},
        "3 open appointments",
    )


def test_late_cancel_fee_can_be_paid(env: Environment, state: StateCopy) -> None:
    cancelled = ok(
        env, state, "cancel_appointment", {"appointment_id": appointment_at(state, "PAT-0008", "2026-03-17 08:30")}
    )
    fee_id = cancelled["late_fee_invoice_id"]
    listed = ok(env, state, "list_invoices", {"patient_id": "PAT-0008", "status": "open"})["rows"]
    assert [(i["invoice_id"], i["kind"], i["balance_due"]) for i in listed] == [(fee_id, "late_cancel_fee", LATE_FEE)]
    refused(env, state, "record_payment", {"invoice_id": fee_id, "amount": 30, "method": "card"}, "exceeds")
    ok(env, state, "record_payment", {"invoice_id": fee_id, "amount": LATE_FEE, "method": "card"})
    assert by_id(state, "invoices")[fee_id]["status"] == "paid"
    assert open_balance(state, "PAT-0008") == 0


def test_failed_calls_do_not_consume_ids(env: Environment, state: StateCopy) -> None:
    # A refused booking rolls back entirely, including the id sequence: the next success gets the next id.
    expected = next_id(state, "appointments", "APT")
    refused(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0003", "slot_id": slot_at(state, "PRV-0001", "2026-03-18 08:30"), "reason": "check"},
        "exceeds",
    )
    out = ok(
        env,
        state,
        "book_appointment",
        {"patient_id": "PAT-0001", "slot_id": slot_at(state, "PRV-0001", "2026-03-18 08:30"), "reason": "check"},
    )
    assert out["appointment_id"] == expected


def test_states_are_isolated(env: Environment) -> None:
    a, b = env.new_state(), env.new_state()
    try:
        apt = appointment_at(a, "PAT-0008", "2026-03-19 14:00")
        ok(env, a, "cancel_appointment", {"appointment_id": apt})
        assert by_id(a, "appointments")[apt]["status"] == "cancelled"
        assert by_id(b, "appointments")[apt]["status"] == "scheduled"
    finally:
        a.close()
        b.close()
