"""The library reference environment, exercised in-process: every tool, every business rule, and
the scenarios that cross tools (overdue fines, the holds queue, loan limits, fines blocking
borrowing, renewals, waivers, lost items, membership renewal, deterministic ids).

Seeded situations are found by querying the state rather than by hard-coded ids, so the tests
survive a regenerated seed; the few that need a situation the seed lacks build a variant of the
environment from the same spec with a changed seed. Expected values (fines, due dates, queue
order) are computed here from the seed data, independently of the environment's SQL.

Bugs this file once pinned with ``xfail(strict=True)`` have been fixed; their tests now assert the
fixed behaviour and are marked with a ``Regression:`` comment.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import servers
from servers import Environment, StateCopy

ENV_DIR = Path(servers.__file__).parent / "envs" / "library"

TODAY = date(2026, 3, 14)
NOW = "2026-03-14 10:00:00"
HOLD_PICKUP_DAYS = 7
OVERDUE_FINE_CAP = Decimal("10.00")
BORROWING_BLOCKED_FROM = Decimal("10.00")
WAIVE_LIMIT = Decimal("5.00")
RENEWAL_WINDOW_DAYS = 60
CENT = Decimal("0.01")
MAX_ROWS = 25  # the environment's limits.max_rows: a 'rows' result stops there and says it was truncated

TOOLS = [
    "find_member",
    "get_member",
    "search_books",
    "get_book",
    "list_member_loans",
    "list_member_holds",
    "list_member_fines",
    "checkout_copy",
    "return_copy",
    "renew_loan",
    "place_hold",
    "cancel_hold",
    "pay_fine",
    "waive_fine",
    "report_lost",
    "update_member_contact",
    "renew_membership",
]

# Syntactically valid arguments for every tool, used only where the call must be refused by
# argument validation, before any SQL runs (so the ids need not exist in the seed).
VALID_ARGS: dict[str, dict[str, Any]] = {
    "find_member": {"name": "Gonzales"},
    "get_member": {"member_id": "M-1001"},
    "search_books": {"query": "Austen"},
    "get_book": {"book_id": "BK-0001"},
    "list_member_loans": {"member_id": "M-1001"},
    "list_member_holds": {"member_id": "M-1001"},
    "list_member_fines": {"member_id": "M-1001"},
    "checkout_copy": {"member_id": "M-1001", "copy_id": "C-00002"},
    "return_copy": {"copy_id": "C-00002"},
    "renew_loan": {"loan_id": "LOAN-0001", "member_id": "M-1001"},
    "place_hold": {"member_id": "M-1001", "book_id": "BK-0004"},
    "cancel_hold": {"hold_id": "HOLD-0001", "member_id": "M-1029"},
    "pay_fine": {"fine_id": "FINE-0001", "member_id": "M-1001", "amount": 0.25, "method": "cash"},
    "waive_fine": {"fine_id": "FINE-0001", "member_id": "M-1001", "reason": "first offence"},
    "report_lost": {"loan_id": "LOAN-0001", "member_id": "M-1001"},
    "update_member_contact": {"member_id": "M-1001", "phone": "555-000-0000"},
    "renew_membership": {"member_id": "M-1001"},
}

INJECTION = "' OR '1'='1"

# Wording-independent cores of JSON Schema validation messages.
REQUIRED = "is a required property"
NOT_OF_TYPE = "is not of type"
SHORT = ("too short", "shorter than")
LONG = ("too long", "longer than")


# ---------------------------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment.load(ENV_DIR)


@pytest.fixture
def state(env: Environment) -> Iterator[StateCopy]:
    s = env.new_state()
    yield s
    s.close()


def variant(env: Environment, change: Callable[[dict[str, list[dict[str, Any]]]], None]) -> Environment:
    """The library spec with a changed copy of its seed, for situations the seed does not hold."""
    seed = copy.deepcopy({table: list(rows) for table, rows in env.seed.items()})
    change(seed)
    return Environment.from_spec(env.spec, seed)


def ok(env: Environment, state: StateCopy, tool: str, args: dict[str, Any]) -> dict[str, Any]:
    """Call a tool that must succeed; return its structured result."""
    result = env.call(state, tool, args)
    assert not result.is_error, f"{tool}({args}) failed: {result.text}"
    assert "error" not in result.structured
    return result.structured


def refused(
    env: Environment,
    state: StateCopy,
    tool: str,
    args: Any,
    *,
    rule: str | None = None,
    kind: str = "rule_violation",
    says: Iterable[str | tuple[str, ...]] = (),
) -> dict[str, Any]:
    """Call a tool that must be refused; check the error and that the state did not change.

    ``says`` lists fragments the message must contain; a tuple is a set of alternatives (for
    argument errors, whose wording comes from the JSON Schema validator in use).
    """
    before = state.digest()
    result = env.call(state, tool, args)
    assert result.is_error, f"{tool}({args}) should have been refused but returned {result.structured}"
    error = result.structured["error"]
    assert error["type"] == kind, error
    if kind == "rule_violation":
        assert error["rule"] == rule, error
    for fragment in says:
        alternatives = fragment if isinstance(fragment, tuple) else (fragment,)
        assert any(a in error["message"] for a in alternatives), f"{fragment!r} not in {error['message']!r}"
    assert result.text == error["message"]
    assert state.digest() == before, f"refused {tool} changed the state"
    return error


def money(value: float | int | None) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT)


def day(text: str) -> date:
    return date.fromisoformat(text[:10])


def table(state: StateCopy, name: str, key: str) -> dict[str, dict[str, Any]]:
    return {row[key]: row for row in state.rows(name)}


def the_first(items: Iterable[Any], what: str) -> Any:
    """The first item; a clear failure (not a skip) when the seed holds no such situation."""
    for item in items:
        return item
    pytest.fail(f"the seed has no {what}")


def tier_of(state: StateCopy, member_id: str) -> dict[str, Any]:
    member = table(state, "members", "member_id")[member_id]
    return table(state, "membership_tiers", "tier")[member["tier"]]


def book_of_copy(state: StateCopy, copy_id: str) -> dict[str, Any]:
    return table(state, "books", "book_id")[table(state, "copies", "copy_id")[copy_id]["book_id"]]


def owed(state: StateCopy, member_id: str) -> Decimal:
    return sum(
        (
            money(f["amount"]) - money(f["amount_paid"])
            for f in state.rows("fines")
            if f["member_id"] == member_id and f["status"] == "open"
        ),
        Decimal("0.00"),
    )


def active_loans(state: StateCopy, member_id: str | None = None) -> list[dict[str, Any]]:
    return [
        loan
        for loan in state.rows("loans")
        if loan["status"] == "active" and (member_id is None or loan["member_id"] == member_id)
    ]


def titles_on_loan(state: StateCopy, member_id: str) -> set[str]:
    copies = table(state, "copies", "copy_id")
    return {copies[loan["copy_id"]]["book_id"] for loan in active_loans(state, member_id)}


def open_holds(state: StateCopy, member_id: str) -> list[dict[str, Any]]:
    return [h for h in state.rows("holds") if h["member_id"] == member_id and h["status"] in ("waiting", "ready")]


def waiting_queue(state: StateCopy, book_id: str) -> list[dict[str, Any]]:
    """Waiting holds of a title in service order: first placed, first served."""
    waiting = [h for h in state.rows("holds") if h["book_id"] == book_id and h["status"] == "waiting"]
    return sorted(waiting, key=lambda h: (h["placed_at"], h["hold_id"]))


def may_borrow(state: StateCopy, member: dict[str, Any]) -> bool:
    """Active, current, and owing less than the blocking threshold."""
    return (
        member["status"] == "active"
        and day(member["expires_on"]) >= TODAY
        and owed(state, member["member_id"]) < BORROWING_BLOCKED_FROM
    )


def borrowers(state: StateCopy, *, free_slots: int = 1, tier: str | None = None) -> list[dict[str, Any]]:
    """Members who may borrow and have at least ``free_slots`` loans left under their tier's limit."""
    tiers = table(state, "membership_tiers", "tier")
    found = []
    for member in state.rows("members"):
        if tier is not None and member["tier"] != tier:
            continue
        room = tiers[member["tier"]]["max_loans"] - len(active_loans(state, member["member_id"]))
        if may_borrow(state, member) and room >= free_slots:
            found.append(member)
    return found


def shelf_copies(state: StateCopy, *, exclude_titles: Iterable[str] = ()) -> list[dict[str, Any]]:
    """One available copy per title (lowest barcode), skipping the given titles."""
    excluded = set(exclude_titles)
    chosen: dict[str, dict[str, Any]] = {}
    for c in state.rows("copies"):
        if c["status"] == "available" and c["book_id"] not in excluded and c["book_id"] not in chosen:
            chosen[c["book_id"]] = c
    return list(chosen.values())


def titles_without_shelf_copy(state: StateCopy) -> list[str]:
    on_shelf = {c["book_id"] for c in state.rows("copies") if c["status"] == "available"}
    return [b["book_id"] for b in state.rows("books") if b["book_id"] not in on_shelf]


def days_late(due_on: str) -> int:
    return max(0, (TODAY - day(due_on)).days)


def expected_overdue_fine(due_on: str, daily_fine: float) -> Decimal:
    """The policy's fine, computed independently: the tier's daily rate per day late, capped."""
    return min(OVERDUE_FINE_CAP, (Decimal(str(daily_fine)) * days_late(due_on)).quantize(CENT))


def contains(fragment: str, *texts: str | None) -> bool:
    """A partial, case-insensitive match with every character taken literally (no LIKE wildcards)."""
    return any(fragment.lower() in text.lower() for text in texts if text)


def like(pattern: str, text: str) -> bool:
    """What an unescaped ``LIKE '%pattern%'`` would match ('%' any run, '_' any one character):
    used to show that a literal-match test would tell the two readings apart."""
    regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.search(regex, text, re.IGNORECASE | re.DOTALL) is not None


def two_letter_fragments(texts: Iterable[str]) -> list[str]:
    """Every lower-case two-character ASCII fragment of the texts, in a stable order."""
    return sorted({t[i : i + 2].lower() for t in texts for i in range(len(t) - 1) if t[i : i + 2].isascii()})


def next_id(state: StateCopy, table_name: str, column: str, prefix: str) -> str:
    highest = max(
        int(row[column].split("-")[1]) for row in state.rows(table_name) if row[column].startswith(prefix + "-")
    )
    return f"{prefix}-{highest + 1:04d}"


# ---------------------------------------------------------------------------------------------
# the environment, its seed and the runtime basics
# ---------------------------------------------------------------------------------------------


class TestEnvironment:
    def test_exposes_exactly_the_seventeen_tools(self, env: Environment) -> None:
        assert sorted(env.tool_names) == sorted(TOOLS)
        assert len(env.tool_names) == 17
        assert sorted(VALID_ARGS) == sorted(TOOLS)

    def test_clock_is_fixed(self, env: Environment) -> None:
        assert env.spec.clock_sql == NOW

    def test_row_results_are_capped(self, env: Environment) -> None:
        assert env.spec.limits.max_rows == MAX_ROWS

    def test_fresh_state_matches_the_template(self, env: Environment, state: StateCopy) -> None:
        assert state.digest() == env.template.digest()
        assert len(state.rows("loans")) == len(env.seed["loans"])

    def test_states_are_isolated(self, env: Environment, state: StateCopy) -> None:
        other = env.new_state()
        member = the_first(borrowers(state), "member who may borrow")
        copy_ = the_first(
            shelf_copies(state, exclude_titles=titles_on_loan(state, member["member_id"])), "available copy"
        )
        ok(env, state, "checkout_copy", {"member_id": member["member_id"], "copy_id": copy_["copy_id"]})
        assert state.digest() != other.digest()
        assert other.digest() == env.template.digest()
        other.close()

    # Regression: a new copy once started with an SQL-step budget of 0, so rows()/digest() on the
    # larger tables were 'interrupted' until a first tool call reset it.
    def test_fresh_state_can_be_inspected_before_any_call(self, env: Environment) -> None:
        state = env.new_state()
        try:
            assert len(state.rows("loans")) == len(env.seed["loans"])
            assert state.digest() == env.template.digest()
        finally:
            state.close()

    def test_unknown_tool_is_refused(self, env: Environment, state: StateCopy) -> None:
        error = refused(
            env,
            state,
            "delete_member",
            {"member_id": "M-1001"},
            kind="unknown_tool",
            says=["Unknown tool 'delete_member'", "checkout_copy"],
        )
        assert "rule" not in error


class TestSeedConsistency:
    """The facts the other tests lean on: copy statuses agree with loans and holds."""

    # Regression: copy C-00082 was seeded 'on_loan' although its only loan LOAN-0083 is 'lost' (and
    # FINE-0021 charged its replacement), so it could be neither returned nor checked out.
    def test_copy_status_agrees_with_loans(self, state: StateCopy) -> None:
        active = Counter(loan["copy_id"] for loan in active_loans(state))
        lost = {loan["copy_id"] for loan in state.rows("loans") if loan["status"] == "lost"}
        assert lost, "the seed has no lost loan"
        wrong = [
            c["copy_id"]
            for c in state.rows("copies")
            if (c["status"] == "on_loan") != (active[c["copy_id"]] == 1)
            or (c["copy_id"] in lost and c["status"] != "lost")
        ]
        assert wrong == []

    def test_lost_copies_are_out_of_circulation(self, env: Environment, state: StateCopy) -> None:
        """A copy whose loan ended as lost is neither returnable nor lendable, and is not counted."""
        loan = the_first((x for x in state.rows("loans") if x["status"] == "lost"), "lost loan")
        copy_id = loan["copy_id"]
        assert table(state, "copies", "copy_id")[copy_id]["status"] == "lost"
        refused(env, state, "return_copy", {"copy_id": copy_id}, rule="copy_on_loan", says=["is not on loan"])
        member = the_first(borrowers(state), "member who may borrow")
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": member["member_id"], "copy_id": copy_id},
            rule="copy_available",
            says=["(it is lost)"],
        )
        book = book_of_copy(state, copy_id)
        listed = ok(env, state, "get_book", {"book_id": book["book_id"]})
        assert next(c for c in listed["copies"] if c["copy_id"] == copy_id)["status"] == "lost"
        found = ok(env, state, "search_books", {"query": book["title"]})
        row = next(r for r in found["rows"] if r["book_id"] == book["book_id"])
        assert row["copies"] == sum(c["status"] != "lost" for c in listed["copies"])

    def test_hold_shelf_copies_match_ready_holds(self, state: StateCopy) -> None:
        ready = Counter(h["copy_id"] for h in state.rows("holds") if h["status"] == "ready")
        for c in state.rows("copies"):
            assert (c["status"] == "on_hold_shelf") == (ready[c["copy_id"]] == 1), c
        for h in state.rows("holds"):
            if h["status"] == "ready":
                assert day(h["ready_until"]) >= TODAY, h

    def test_waiting_holds_are_for_titles_with_no_copy_on_the_shelf(self, state: StateCopy) -> None:
        without = set(titles_without_shelf_copy(state))
        for h in state.rows("holds"):
            if h["status"] == "waiting":
                assert h["book_id"] in without, h

    def test_payments_add_up_to_amounts_paid(self, state: StateCopy) -> None:
        paid: Counter[str] = Counter()
        for p in state.rows("payments"):
            paid[p["fine_id"]] += money(p["amount"])
        for f in state.rows("fines"):
            assert paid[f["fine_id"]] == money(f["amount_paid"]), f


# ---------------------------------------------------------------------------------------------
# read tools
# ---------------------------------------------------------------------------------------------


class TestFindMember:
    def test_by_partial_lowercase_last_name(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[0]
        fragment = member["last_name"][1:-1].lower()
        before = state.digest()
        result = ok(env, state, "find_member", {"name": fragment})
        expected = {
            m["member_id"] for m in state.rows("members") if fragment in f"{m['first_name']} {m['last_name']}".lower()
        }
        assert {r["member_id"] for r in result["rows"]} == expected
        assert member["member_id"] in expected
        assert result["count"] == len(result["rows"]) == len(expected)
        assert result["truncated"] is False
        found = next(r for r in result["rows"] if r["member_id"] == member["member_id"])
        assert found["date_of_birth"] == member["date_of_birth"]
        assert found["tier"] == member["tier"]
        assert state.digest() == before

    def test_shared_first_name_lists_every_namesake(self, env: Environment, state: StateCopy) -> None:
        first_names = Counter(m["first_name"] for m in state.rows("members"))
        shared = the_first((n for n, k in first_names.items() if k > 1), "first name shared by two members")
        result = ok(env, state, "find_member", {"name": shared})
        namesakes = {m["member_id"] for m in state.rows("members") if shared in f"{m['first_name']} {m['last_name']}"}
        assert {r["member_id"] for r in result["rows"]} == namesakes
        assert len(namesakes) >= 2

    def test_by_email_is_exact_and_case_insensitive(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[-1]
        result = ok(env, state, "find_member", {"email": member["email"].upper()})
        assert [r["member_id"] for r in result["rows"]] == [member["member_id"]]
        partial = ok(env, state, "find_member", {"email": member["email"][:-4]})
        assert partial["rows"] == []

    def test_by_phone(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[2]
        result = ok(env, state, "find_member", {"phone": member["phone"]})
        assert member["member_id"] in [r["member_id"] for r in result["rows"]]
        assert all(r["phone"] == member["phone"] for r in result["rows"])

    def test_needs_a_criterion(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "find_member",
            {},
            rule="search_needs_criteria",
            says=["Give a name, an email or a phone number"],
        )

    def test_name_must_have_two_characters(self, env: Environment, state: StateCopy) -> None:
        refused(env, state, "find_member", {"name": "R"}, kind="invalid_arguments", says=["name", SHORT])

    def test_injection_in_name_finds_nothing_and_changes_nothing(self, env: Environment, state: StateCopy) -> None:
        before = state.digest()
        for name in ["x" + INJECTION, "Gonzales'; DROP TABLE members; --", '") OR 1=1 --']:
            result = ok(env, state, "find_member", {"name": name})
            assert result == {"rows": [], "count": 0, "truncated": False}
        assert state.digest() == before
        assert len(state.rows("members")) == len(env.seed["members"])

    def test_unicode_name_is_searched_not_refused(self, env: Environment, state: StateCopy) -> None:
        result = ok(env, state, "find_member", {"name": "Zoë Ångström 李"})
        assert result["rows"] == []

    def test_huge_name_is_refused_by_the_length_limit(self, env: Environment, state: StateCopy) -> None:
        limit = env.spec.limits.max_string_length
        assert limit < 100_000
        refused(
            env,
            state,
            "find_member",
            {"name": "a" * 100_000},
            kind="invalid_arguments",
            says=["name is 100,000 characters long", f"the limit is {limit:,}"],
        )

    # Regression: the name was put into LIKE unescaped, so '%' and '_' were wildcards ('__' matched
    # every member) and the SQL had its own LIMIT.
    @pytest.mark.parametrize("name", ["%%", "__", "_%", "%_", "\\%"])
    def test_wildcards_in_the_seed_match_nobody(self, env: Environment, state: StateCopy, name: str) -> None:
        assert not any(contains(name, f"{m['first_name']} {m['last_name']}") for m in state.rows("members"))
        assert ok(env, state, "find_member", {"name": name}) == {"rows": [], "count": 0, "truncated": False}

    def test_percent_underscore_and_backslash_match_literally(self, env: Environment) -> None:
        """A variant seed adds members whose names hold the LIKE special characters, each beside a
        decoy that the special character, read as a wildcard or escape, would also match."""
        added = [
            ("M-2001", "Kate", "Smith_Jones"),
            ("M-2002", "Kate", "Smith-Jones"),
            ("M-2003", "Pat", "O%Neil"),
            ("M-2004", "Pat", "O'Neil"),
            ("M-2005", "Ann", "Back\\slash"),
            ("M-2006", "Ann", "Backslash"),
        ]

        def with_special_names(seed: dict[str, list[dict[str, Any]]]) -> None:
            template = seed["members"][0]
            for member_id, first, last in added:
                seed["members"].append(
                    {
                        **template,
                        "member_id": member_id,
                        "first_name": first,
                        "last_name": last,
                        "email": f"{member_id.lower()}@example.net",
                    }
                )

        variant_env = variant(env, with_special_names)
        s = variant_env.new_state()
        full = {m["member_id"]: f"{m['first_name']} {m['last_name']}" for m in s.rows("members")}
        for name, expected, decoy in [
            ("Smith_Jones", "M-2001", "M-2002"),
            ("O%Neil", "M-2003", "M-2004"),
            ("k\\s", "M-2005", "M-2006"),
            ("pat o%", "M-2003", "M-2004"),
        ]:
            result = ok(variant_env, s, "find_member", {"name": name})
            assert [r["member_id"] for r in result["rows"]] == [expected], name
            assert (result["count"], result["truncated"]) == (1, False)
            if "\\" not in name:
                assert like(name, full[decoy]), f"the decoy of {name!r} would not tell wildcards apart"
        s.close()

    @pytest.mark.parametrize(
        ("namesakes", "truncated"),
        [(MAX_ROWS - 1, False), (MAX_ROWS, False), (MAX_ROWS + 1, True), (MAX_ROWS + 15, True)],
    )
    def test_results_stop_at_the_row_limit_and_say_so(self, env: Environment, namesakes: int, truncated: bool) -> None:
        """A variant seed adds ``namesakes`` members sharing a surname no seeded member has."""
        surname = "Whitfield"

        def many_namesakes(seed: dict[str, list[dict[str, Any]]]) -> None:
            assert not any(contains(surname, m["first_name"], m["last_name"]) for m in seed["members"])
            template = seed["members"][0]
            for i in range(namesakes):
                # first names out of id order, so the listed order is by name
                seed["members"].append(
                    {
                        **template,
                        "member_id": f"M-{3000 + i}",
                        "first_name": f"Guest{(i * 7) % namesakes:02d}",
                        "last_name": surname,
                        "email": f"guest{i}@example.net",
                    }
                )

        variant_env = variant(env, many_namesakes)
        s = variant_env.new_state()
        matching = sorted(
            (m for m in s.rows("members") if contains(surname.lower(), m["last_name"])),
            key=lambda m: (m["last_name"], m["first_name"], m["member_id"]),
        )
        assert len(matching) == namesakes
        result = ok(variant_env, s, "find_member", {"name": surname.lower()})
        shown = min(namesakes, MAX_ROWS)
        assert [r["member_id"] for r in result["rows"]] == [m["member_id"] for m in matching[:shown]]
        assert (result["count"], result["truncated"]) == (shown, truncated)
        s.close()


class TestGetMember:
    def test_account_summary_matches_the_seed(self, env: Environment, state: StateCopy) -> None:
        overdue_members = {loan["member_id"] for loan in active_loans(state) if day(loan["due_on"]) < TODAY}
        member = the_first(
            (
                m
                for m in state.rows("members")
                if m["member_id"] in overdue_members and open_holds(state, m["member_id"])
            ),
            "member with an overdue loan and an open hold",
        )
        mid = member["member_id"]
        tier = tier_of(state, mid)
        before = state.digest()
        result = ok(env, state, "get_member", {"member_id": mid})
        loans = active_loans(state, mid)
        assert result["member_id"] == mid
        assert result["first_name"] == member["first_name"]
        assert result["expires_on"] == member["expires_on"]
        assert (
            result["tier"],
            result["max_loans"],
            result["loan_days"],
            result["max_renewals"],
            result["max_holds"],
        ) == (tier["tier"], tier["max_loans"], tier["loan_days"], tier["max_renewals"], tier["max_holds"])
        assert result["active_loans"] == len(loans)
        assert result["overdue_loans"] == sum(day(loan["due_on"]) < TODAY for loan in loans) >= 1
        assert result["open_holds"] == len(open_holds(state, mid)) >= 1
        assert money(result["fines_owed"]) == owed(state, mid)
        assert state.digest() == before

    def test_fines_owed_sums_open_fines_only(self, env: Environment, state: StateCopy) -> None:
        member = the_first((m for m in state.rows("members") if owed(state, m["member_id"]) > 0), "member owing money")
        result = ok(env, state, "get_member", {"member_id": member["member_id"]})
        assert money(result["fines_owed"]) == owed(state, member["member_id"]) > 0

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        assert "M-9999" not in table(state, "members", "member_id")
        refused(
            env,
            state,
            "get_member",
            {"member_id": "M-9999"},
            rule="member_exists",
            says=["No member has the id M-9999", "find_member"],
        )

    def test_injection_as_id_fails_the_pattern(self, env: Environment, state: StateCopy) -> None:
        error = refused(
            env,
            state,
            "get_member",
            {"member_id": "M-1001" + INJECTION},
            kind="invalid_arguments",
            says=["member_id", "does not match", "^M-[0-9]+$"],
        )
        assert "rule" not in error


class TestSearchBooks:
    def test_by_author_with_counts(self, env: Environment, state: StateCopy) -> None:
        authors = Counter(b["author"] for b in state.rows("books"))
        author = the_first((a for a, n in authors.most_common() if n >= 2), "author with two titles")
        query = author.split()[-1].upper()
        before = state.digest()
        result = ok(env, state, "search_books", {"query": query})
        expected = {
            b["book_id"]
            for b in state.rows("books")
            if query.lower() in b["title"].lower() or query.lower() in b["author"].lower()
        }
        assert {r["book_id"] for r in result["rows"]} == expected
        assert len(expected) >= 2
        assert [r["title"] for r in result["rows"]] == sorted(r["title"] for r in result["rows"])
        copies = state.rows("copies")
        for row in result["rows"]:
            mine = [c for c in copies if c["book_id"] == row["book_id"]]
            assert row["copies"] == sum(c["status"] != "lost" for c in mine)
            assert row["available"] == sum(c["status"] == "available" for c in mine)
            assert row["waiting_holds"] == len(waiting_queue(state, row["book_id"]))
        assert state.digest() == before

    def test_genre_filter(self, env: Environment, state: StateCopy) -> None:
        book = state.rows("books")[0]
        word = book["author"].split()[-1]
        result = ok(env, state, "search_books", {"query": word, "genre": book["genre"]})
        assert book["book_id"] in {r["book_id"] for r in result["rows"]}
        assert {r["genre"] for r in result["rows"]} == {book["genre"]}
        other = next(g for g in ["classic", "adventure", "horror", "poetry"] if g != book["genre"])
        elsewhere = ok(env, state, "search_books", {"query": word, "genre": other})
        assert book["book_id"] not in {r["book_id"] for r in elsewhere["rows"]}

    def test_unicode_query_matches_accented_authors(self, env: Environment, state: StateCopy) -> None:
        expected = {b["book_id"] for b in state.rows("books") if "Brontë" in b["author"]}
        assert expected, "the seed has no Brontë title"
        result = ok(env, state, "search_books", {"query": "Brontë"})
        assert {r["book_id"] for r in result["rows"]} == expected

    def test_shows_waiting_holds_and_no_shelf_copy(self, env: Environment, state: StateCopy) -> None:
        held = the_first(
            (b for b in titles_without_shelf_copy(state) if waiting_queue(state, b)), "title with waiting holds"
        )
        book = table(state, "books", "book_id")[held]
        result = ok(env, state, "search_books", {"query": book["title"]})
        row = next(r for r in result["rows"] if r["book_id"] == held)
        assert row["available"] == 0
        assert row["waiting_holds"] == len(waiting_queue(state, held)) > 0

    def test_genre_outside_the_list(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "search_books",
            {"query": "Austen", "genre": "fantasy"},
            kind="invalid_arguments",
            says=["genre", "fantasy", "is not one of"],
        )

    def test_query_is_required(self, env: Environment, state: StateCopy) -> None:
        refused(env, state, "search_books", {"genre": "classic"}, kind="invalid_arguments", says=["query", REQUIRED])

    @staticmethod
    def matching(state: StateCopy, query: str) -> list[dict[str, Any]]:
        """Titles whose title or author holds the query, literally, in the listed order."""
        return sorted(
            (b for b in state.rows("books") if contains(query, b["title"], b["author"])),
            key=lambda b: (b["title"], b["book_id"]),
        )

    def test_many_matches_stop_at_the_row_limit_and_say_so(self, env: Environment, state: StateCopy) -> None:
        books = state.rows("books")
        query = the_first(
            (f for f in two_letter_fragments(b["title"] for b in books) if len(self.matching(state, f)) > MAX_ROWS),
            f"query matching over {MAX_ROWS} titles",
        )
        result = ok(env, state, "search_books", {"query": query})
        assert [r["book_id"] for r in result["rows"]] == [b["book_id"] for b in self.matching(state, query)[:MAX_ROWS]]
        assert (result["count"], result["truncated"]) == (MAX_ROWS, True)

    def test_exactly_the_row_limit_is_not_truncated(self, env: Environment, state: StateCopy) -> None:
        books = state.rows("books")
        query = the_first(
            (f for f in two_letter_fragments(b["title"] for b in books) if len(self.matching(state, f)) == MAX_ROWS),
            f"query matching exactly {MAX_ROWS} titles",
        )
        result = ok(env, state, "search_books", {"query": query})
        assert [r["book_id"] for r in result["rows"]] == [b["book_id"] for b in self.matching(state, query)]
        assert (result["count"], result["truncated"]) == (MAX_ROWS, False)

    # Regression: the query was put into LIKE unescaped, so '%' and '_' were wildcards ('%%' listed
    # the whole catalogue) and the SQL had its own LIMIT.
    @pytest.mark.parametrize("query", ["%%", "__", "_%", "%_", "\\%"])
    def test_wildcards_in_the_seed_match_nothing(self, env: Environment, state: StateCopy, query: str) -> None:
        assert not any(contains(query, b["title"], b["author"]) for b in state.rows("books"))
        assert ok(env, state, "search_books", {"query": query}) == {"rows": [], "count": 0, "truncated": False}

    def test_percent_underscore_and_backslash_match_literally(self, env: Environment) -> None:
        """A variant seed adds titles holding the LIKE special characters, each beside a decoy that
        the special character, read as a wildcard or escape, would also match."""
        added = [
            ("BK-0901", "Only 100% Cotton"),
            ("BK-0902", "Only 1000 Cottons"),
            ("BK-0903", "Snake_case Style"),
            ("BK-0904", "Snake-case Style"),
            ("BK-0905", "Paths like C:\\temp"),
            ("BK-0906", "Paths like C:temp"),
        ]

        def with_special_titles(seed: dict[str, list[dict[str, Any]]]) -> None:
            template = seed["books"][0]
            for n, (book_id, title) in enumerate(added):
                seed["books"].append(
                    {
                        **template,
                        "book_id": book_id,
                        "title": title,
                        "author": "Q. Tester",
                        "isbn": f"97800000009{n:02d}",
                    }
                )

        variant_env = variant(env, with_special_titles)
        s = variant_env.new_state()
        titles = {b["book_id"]: b["title"] for b in s.rows("books")}
        for query, expected, decoy in [
            ("100% cot", "BK-0901", "BK-0902"),
            ("Snake_case", "BK-0903", "BK-0904"),
            (":\\t", "BK-0905", "BK-0906"),
        ]:
            result = ok(variant_env, s, "search_books", {"query": query})
            assert [r["book_id"] for r in result["rows"]] == [expected], query
            assert (result["count"], result["truncated"]) == (1, False)
            if "\\" not in query:
                assert like(query, titles[decoy]), f"the decoy of {query!r} would not tell wildcards apart"
        s.close()


class TestGetBook:
    def test_record_with_every_copy(self, env: Environment, state: StateCopy) -> None:
        held = the_first(
            (b for b in titles_without_shelf_copy(state) if waiting_queue(state, b)), "title with waiting holds"
        )
        book = table(state, "books", "book_id")[held]
        before = state.digest()
        result = ok(env, state, "get_book", {"book_id": held})
        assert {k: result[k] for k in ("book_id", "title", "author", "isbn", "genre", "replacement_cost")} == {
            k: book[k] for k in ("book_id", "title", "author", "isbn", "genre", "replacement_cost")
        }
        assert result["waiting_holds"] == len(waiting_queue(state, held))
        due = {loan["copy_id"]: loan["due_on"] for loan in active_loans(state)}
        branches = table(state, "branches", "branch_id")
        expected = [
            {
                "copy_id": c["copy_id"],
                "branch": branches[c["branch_id"]]["name"],
                "status": c["status"],
                "condition": c["condition"],
                "due_on": due.get(c["copy_id"]),
            }
            for c in sorted(state.rows("copies"), key=lambda c: c["copy_id"])
            if c["book_id"] == held
        ]
        assert result["copies"] == expected
        assert any(c["due_on"] for c in result["copies"])
        assert state.digest() == before

    def test_copies_are_listed_in_barcode_order_however_stored(self, env: Environment) -> None:
        """A variant seed stores the copies in reverse and spreads each title over the branches in
        the opposite order, so neither storage nor branch order gives barcode order by accident."""
        branch_ids = sorted(b["branch_id"] for b in env.seed["branches"])

        def shuffled_copies(seed: dict[str, list[dict[str, Any]]]) -> None:
            seed["copies"].reverse()
            for c in seed["copies"]:
                c["branch_id"] = branch_ids[-1 - int(c["copy_id"].split("-")[1]) % len(branch_ids)]

        variant_env = variant(env, shuffled_copies)
        s = variant_env.new_state()
        multi = [b for b, n in Counter(c["book_id"] for c in s.rows("copies")).items() if n >= 3]
        assert multi, "the seed has no title with three copies"
        for book_id in multi:
            listed = [c["copy_id"] for c in ok(variant_env, s, "get_book", {"book_id": book_id})["copies"]]
            assert listed == sorted(c["copy_id"] for c in s.rows("copies") if c["book_id"] == book_id)
        s.close()

    def test_unknown_title(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "get_book",
            {"book_id": "BK-9999"},
            rule="book_exists",
            says=["No title has the id BK-9999", "search_books"],
        )

    def test_id_pattern(self, env: Environment, state: StateCopy) -> None:
        refused(
            env, state, "get_book", {"book_id": "0001"}, kind="invalid_arguments", says=["book_id", "does not match"]
        )


class TestListMemberLoans:
    def test_current_loans_with_overdue_flag(self, env: Environment, state: StateCopy) -> None:
        loan = the_first((loan for loan in active_loans(state) if day(loan["due_on"]) < TODAY), "overdue loan")
        mid = loan["member_id"]
        before = state.digest()
        result = ok(env, state, "list_member_loans", {"member_id": mid})
        mine = active_loans(state, mid)
        assert {r["loan_id"] for r in result["rows"]} == {x["loan_id"] for x in mine}
        assert result["count"] == len(mine)
        for row in result["rows"]:
            source = table(state, "loans", "loan_id")[row["loan_id"]]
            assert row["due_on"] == source["due_on"]
            assert row["status"] == "active"
            assert bool(row["overdue"]) == (day(source["due_on"]) < TODAY)
            assert row["book_id"] == book_of_copy(state, row["copy_id"])["book_id"]
        assert any(row["overdue"] for row in result["rows"])
        stamps = [row["checked_out_at"] for row in result["rows"]]
        assert stamps == sorted(stamps, reverse=True)
        assert state.digest() == before

    def test_history_adds_returned_and_lost_loans(self, env: Environment, state: StateCopy) -> None:
        closed = the_first((loan for loan in state.rows("loans") if loan["status"] != "active"), "closed loan")
        mid = closed["member_id"]
        current = ok(env, state, "list_member_loans", {"member_id": mid})
        history = ok(env, state, "list_member_loans", {"member_id": mid, "include_history": True})
        every = [loan for loan in state.rows("loans") if loan["member_id"] == mid]
        assert {r["loan_id"] for r in history["rows"]} == {loan["loan_id"] for loan in every}
        assert closed["loan_id"] in {r["loan_id"] for r in history["rows"]}
        assert closed["loan_id"] not in {r["loan_id"] for r in current["rows"]}
        explicit = ok(env, state, "list_member_loans", {"member_id": mid, "include_history": False})
        assert explicit == current

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "list_member_loans",
            {"member_id": "M-9999"},
            rule="member_exists",
            says=["No member has the id M-9999"],
        )

    def test_history_flag_must_be_boolean(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "list_member_loans",
            {"member_id": "M-1001", "include_history": "yes"},
            kind="invalid_arguments",
            says=["include_history", NOT_OF_TYPE, "boolean"],
        )


class TestListMemberHolds:
    def test_open_holds_with_queue_positions(self, env: Environment, state: StateCopy) -> None:
        # a member who is not first in some queue, so the position is informative
        hold = the_first(
            (
                h
                for h in state.rows("holds")
                if h["status"] == "waiting" and waiting_queue(state, h["book_id"])[0]["hold_id"] != h["hold_id"]
            ),
            "waiting hold behind another",
        )
        mid = hold["member_id"]
        before = state.digest()
        result = ok(env, state, "list_member_holds", {"member_id": mid})
        mine = open_holds(state, mid)
        assert {r["hold_id"] for r in result["rows"]} == {h["hold_id"] for h in mine}
        branches = table(state, "branches", "branch_id")
        for row in result["rows"]:
            source = table(state, "holds", "hold_id")[row["hold_id"]]
            assert row["pickup_branch"] == branches[source["pickup_branch_id"]]["name"]
            if row["status"] == "waiting":
                queue = [h["hold_id"] for h in waiting_queue(state, row["book_id"])]
                assert row["queue_position"] == queue.index(row["hold_id"]) + 1
            else:
                assert row["queue_position"] is None
        assert next(r for r in result["rows"] if r["hold_id"] == hold["hold_id"])["queue_position"] >= 2
        assert state.digest() == before

    def test_ready_hold_shows_copy_and_deadline(self, env: Environment, state: StateCopy) -> None:
        hold = the_first((h for h in state.rows("holds") if h["status"] == "ready"), "ready hold")
        result = ok(env, state, "list_member_holds", {"member_id": hold["member_id"]})
        row = next(r for r in result["rows"] if r["hold_id"] == hold["hold_id"])
        assert (row["status"], row["copy_id"], row["ready_until"]) == ("ready", hold["copy_id"], hold["ready_until"])

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "list_member_holds",
            {"member_id": "M-0"},
            rule="member_exists",
            says=["No member has the id M-0"],
        )


class TestListMemberFines:
    def test_open_by_default_all_with_include_closed(self, env: Environment, state: StateCopy) -> None:
        fines = state.rows("fines")
        mid = the_first(
            (
                f["member_id"]
                for f in fines
                if f["status"] != "open"
                and any(g["member_id"] == f["member_id"] and g["status"] == "open" for g in fines)
            ),
            "member with both an open and a closed fine",
        )
        before = state.digest()
        open_only = ok(env, state, "list_member_fines", {"member_id": mid})
        everything = ok(env, state, "list_member_fines", {"member_id": mid, "include_closed": True})
        mine = [f for f in fines if f["member_id"] == mid]
        assert {r["fine_id"] for r in open_only["rows"]} == {f["fine_id"] for f in mine if f["status"] == "open"}
        assert {r["fine_id"] for r in everything["rows"]} == {f["fine_id"] for f in mine}
        assert len(everything["rows"]) > len(open_only["rows"]) > 0
        for row in everything["rows"]:
            assert money(row["owed"]) == money(row["amount"]) - money(row["amount_paid"])
        assert state.digest() == before

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "list_member_fines",
            {"member_id": "M-9999"},
            rule="member_exists",
            says=["No member has the id M-9999"],
        )

    def test_include_closed_must_be_boolean(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "list_member_fines",
            {"member_id": "M-1001", "include_closed": 1},
            kind="invalid_arguments",
            says=["include_closed", NOT_OF_TYPE, "boolean"],
        )


# ---------------------------------------------------------------------------------------------
# write tools: success paths and the rules of each
# ---------------------------------------------------------------------------------------------


class TestCheckoutCopy:
    def test_lends_a_shelf_copy_for_the_tier_loan_period(self, env: Environment, state: StateCopy) -> None:
        member = the_first(borrowers(state), "member who may borrow")
        mid = member["member_id"]
        copy_ = the_first(shelf_copies(state, exclude_titles=titles_on_loan(state, mid)), "available copy")
        tier = tier_of(state, mid)
        loan_count = len(active_loans(state, mid))
        expected_id = next_id(state, "loans", "loan_id", "LOAN")

        result = ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": copy_["copy_id"]})

        due = (TODAY + timedelta(days=tier["loan_days"])).isoformat()
        assert result == {
            "loan_id": expected_id,
            "copy_id": copy_["copy_id"],
            "title": table(state, "books", "book_id")[copy_["book_id"]]["title"],
            "member_id": mid,
            "checked_out_at": NOW,
            "due_on": due,
        }
        loan = table(state, "loans", "loan_id")[expected_id]
        assert (loan["status"], loan["renewals"], loan["returned_at"], loan["branch_id"]) == (
            "active",
            0,
            None,
            copy_["branch_id"],
        )
        assert table(state, "copies", "copy_id")[copy_["copy_id"]]["status"] == "on_loan"
        assert len(active_loans(state, mid)) == loan_count + 1
        assert ok(env, state, "get_member", {"member_id": mid})["active_loans"] == loan_count + 1

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        copy_ = the_first(shelf_copies(state), "available copy")
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": "M-9999", "copy_id": copy_["copy_id"]},
            rule="member_exists",
            says=["No member has the id M-9999"],
        )

    def test_suspended_member(self, env: Environment, state: StateCopy) -> None:
        member = the_first((m for m in state.rows("members") if m["status"] == "suspended"), "suspended member")
        copy_ = the_first(shelf_copies(state), "available copy")
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": member["member_id"], "copy_id": copy_["copy_id"]},
            rule="member_active",
            says=[member["member_id"], "suspended", "only active members"],
        )

    def test_expired_membership(self, env: Environment, state: StateCopy) -> None:
        member = the_first(
            (m for m in state.rows("members") if m["status"] == "active" and day(m["expires_on"]) < TODAY),
            "active member with an expired membership",
        )
        copy_ = the_first(shelf_copies(state), "available copy")
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": member["member_id"], "copy_id": copy_["copy_id"]},
            rule="membership_current",
            says=[f"expired on {member['expires_on']}", "renew_membership"],
        )

    def test_unknown_copy(self, env: Environment, state: StateCopy) -> None:
        member = the_first(borrowers(state), "member who may borrow")
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": member["member_id"], "copy_id": "C-99999"},
            rule="copy_exists",
            says=["No copy has the barcode C-99999"],
        )

    @pytest.mark.parametrize("status", ["on_loan", "repair"])
    def test_copy_not_on_the_shelf(self, env: Environment, state: StateCopy, status: str) -> None:
        member = the_first(borrowers(state), "member who may borrow")
        copy_ = the_first((c for c in state.rows("copies") if c["status"] == status), f"copy in {status}")
        title = table(state, "books", "book_id")[copy_["book_id"]]["title"]
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": member["member_id"], "copy_id": copy_["copy_id"]},
            rule="copy_available",
            says=[copy_["copy_id"], title, f"(it is {status})"],
        )

    def test_second_copy_of_a_title(self, env: Environment, state: StateCopy) -> None:
        shelf = {c["book_id"]: c for c in shelf_copies(state)}
        member, copy_ = the_first(
            ((m, shelf[b]) for m in borrowers(state) for b in titles_on_loan(state, m["member_id"]) if b in shelf),
            "borrower of a title that has another copy on the shelf",
        )
        title = table(state, "books", "book_id")[copy_["book_id"]]["title"]
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": member["member_id"], "copy_id": copy_["copy_id"]},
            rule="one_copy_per_title",
            says=[f'already has a copy of "{title}" on loan'],
        )

    def test_copy_id_pattern(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": "M-1001", "copy_id": "C-00002" + INJECTION},
            kind="invalid_arguments",
            says=["copy_id", "does not match"],
        )


class TestReturnCopy:
    def test_on_time_return_goes_back_on_the_shelf(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(
            (
                loan
                for loan in active_loans(state)
                if day(loan["due_on"]) >= TODAY
                and not waiting_queue(state, book_of_copy(state, loan["copy_id"])["book_id"])
            ),
            "on-time loan of a title nobody waits for",
        )
        fines_before = len(state.rows("fines"))

        result = ok(env, state, "return_copy", {"copy_id": loan["copy_id"]})

        assert result == {
            "loan_id": loan["loan_id"],
            "member_id": loan["member_id"],
            "due_on": loan["due_on"],
            "returned_at": NOW,
            "days_late": 0,
            "fine_charged": None,
            "copy_status": "available",
            "held_for_hold_id": None,
        }
        stored = table(state, "loans", "loan_id")[loan["loan_id"]]
        assert (stored["status"], stored["returned_at"]) == ("returned", NOW)
        assert table(state, "copies", "copy_id")[loan["copy_id"]]["status"] == "available"
        assert len(state.rows("fines")) == fines_before

    def test_unknown_copy(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "return_copy",
            {"copy_id": "C-99999"},
            rule="copy_exists",
            says=["No copy has the barcode C-99999"],
        )

    def test_copy_not_on_loan(self, env: Environment, state: StateCopy) -> None:
        copy_ = the_first(shelf_copies(state), "available copy")
        refused(
            env,
            state,
            "return_copy",
            {"copy_id": copy_["copy_id"]},
            rule="copy_on_loan",
            says=[f"Copy {copy_['copy_id']} is not on loan"],
        )

    def test_returning_twice(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(active_loans(state), "active loan")
        ok(env, state, "return_copy", {"copy_id": loan["copy_id"]})
        refused(env, state, "return_copy", {"copy_id": loan["copy_id"]}, rule="copy_on_loan", says=["is not on loan"])


class TestRenewLoan:
    @staticmethod
    def renewable(state: StateCopy) -> list[dict[str, Any]]:
        """Active, not overdue, under the tier's renewal limit, nobody waiting for the title."""
        found = []
        for loan in active_loans(state):
            tier = tier_of(state, loan["member_id"])
            book = book_of_copy(state, loan["copy_id"])["book_id"]
            if (
                day(loan["due_on"]) >= TODAY
                and loan["renewals"] < tier["max_renewals"]
                and not waiting_queue(state, book)
            ):
                found.append(loan)
        return found

    @staticmethod
    def renew(loan: dict[str, Any]) -> dict[str, str]:
        return {"loan_id": loan["loan_id"], "member_id": loan["member_id"]}

    def test_extends_one_loan_period_from_the_due_date(self, env: Environment, state: StateCopy) -> None:
        # a loan due later than today, so 'from the due date' and 'from today' give different dates
        loan = the_first(
            (x for x in self.renewable(state) if day(x["due_on"]) > TODAY), "renewable loan due after today"
        )
        tier = tier_of(state, loan["member_id"])
        fines_before = state.rows("fines")
        result = ok(env, state, "renew_loan", self.renew(loan))
        due = (day(loan["due_on"]) + timedelta(days=tier["loan_days"])).isoformat()
        assert result == {"loan_id": loan["loan_id"], "due_on": due, "renewals": loan["renewals"] + 1}
        stored = table(state, "loans", "loan_id")[loan["loan_id"]]
        assert (stored["due_on"], stored["renewals"], stored["status"]) == (due, loan["renewals"] + 1, "active")
        assert (stored["checked_out_at"], stored["copy_id"]) == (loan["checked_out_at"], loan["copy_id"])
        assert state.rows("fines") == fines_before
        listed = ok(env, state, "list_member_loans", {"member_id": loan["member_id"]})
        assert next(r for r in listed["rows"] if r["loan_id"] == loan["loan_id"])["due_on"] == due

    def test_policy_describes_the_renewal_period(self, env: Environment) -> None:
        assert "one full loan period later" in env.spec.policy
        assert "from today" not in env.spec.policy

    def test_loan_due_today_is_not_overdue(self, env: Environment, state: StateCopy) -> None:
        loan = the_first((x for x in self.renewable(state) if day(x["due_on"]) == TODAY), "renewable loan due today")
        tier = tier_of(state, loan["member_id"])
        result = ok(env, state, "renew_loan", self.renew(loan))
        assert result["due_on"] == (TODAY + timedelta(days=tier["loan_days"])).isoformat()

    def test_unknown_loan(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[0]["member_id"]
        refused(
            env,
            state,
            "renew_loan",
            {"loan_id": "LOAN-9999", "member_id": member},
            rule="loan_exists",
            says=[f"Member {member} has no loan LOAN-9999."],
        )

    def test_loan_of_another_member(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(self.renewable(state), "renewable loan")
        other = the_first(
            (m["member_id"] for m in state.rows("members") if m["member_id"] != loan["member_id"]), "member"
        )
        refused(
            env,
            state,
            "renew_loan",
            {"loan_id": loan["loan_id"], "member_id": other},
            rule="loan_exists",
            says=[f"Member {other} has no loan {loan['loan_id']}."],
        )
        # the borrower still can
        ok(env, state, "renew_loan", self.renew(loan))

    def test_member_is_required(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(self.renewable(state), "renewable loan")
        refused(
            env,
            state,
            "renew_loan",
            {"loan_id": loan["loan_id"]},
            kind="invalid_arguments",
            says=["member_id", REQUIRED],
        )

    def test_closed_loan(self, env: Environment, state: StateCopy) -> None:
        loan = the_first((x for x in state.rows("loans") if x["status"] == "returned"), "returned loan")
        refused(
            env,
            state,
            "renew_loan",
            self.renew(loan),
            rule="loan_active",
            says=[f"Loan {loan['loan_id']} is returned", "only active loans"],
        )


class TestPlaceHold:
    @staticmethod
    def holdable(state: StateCopy, member_id: str) -> list[str]:
        """Titles with no copy on the shelf that the member neither borrows nor holds."""
        mine = titles_on_loan(state, member_id) | {h["book_id"] for h in open_holds(state, member_id)}
        return [b for b in titles_without_shelf_copy(state) if b not in mine]

    def hold_placer(self, state: StateCopy) -> dict[str, Any]:
        tiers = table(state, "membership_tiers", "tier")
        return the_first(
            (
                m
                for m in state.rows("members")
                if may_borrow(state, m)
                and len(open_holds(state, m["member_id"])) < tiers[m["tier"]]["max_holds"]
                and self.holdable(state, m["member_id"])
            ),
            "member who may place a hold",
        )

    def test_joins_the_end_of_the_queue_at_the_home_branch(self, env: Environment, state: StateCopy) -> None:
        member = self.hold_placer(state)
        mid = member["member_id"]
        queued = [b for b in self.holdable(state, mid) if waiting_queue(state, b)]
        book_id = (queued or self.holdable(state, mid))[0]
        queue_before = waiting_queue(state, book_id)
        expected_id = next_id(state, "holds", "hold_id", "HOLD")

        result = ok(env, state, "place_hold", {"member_id": mid, "book_id": book_id})

        branches = table(state, "branches", "branch_id")
        assert result == {
            "hold_id": expected_id,
            "book_id": book_id,
            "title": table(state, "books", "book_id")[book_id]["title"],
            "status": "waiting",
            "pickup_branch": branches[member["home_branch_id"]]["name"],
            "queue_position": len(queue_before) + 1,
        }
        hold = table(state, "holds", "hold_id")[expected_id]
        assert (hold["member_id"], hold["status"], hold["placed_at"], hold["pickup_branch_id"], hold["copy_id"]) == (
            mid,
            "waiting",
            NOW,
            member["home_branch_id"],
            None,
        )
        assert waiting_queue(state, book_id)[-1]["hold_id"] == expected_id

    def test_chosen_pickup_branch(self, env: Environment, state: StateCopy) -> None:
        member = self.hold_placer(state)
        other = the_first(
            (b for b in table(state, "branches", "branch_id") if b != member["home_branch_id"]), "second branch"
        )
        book_id = self.holdable(state, member["member_id"])[0]
        result = ok(
            env, state, "place_hold", {"member_id": member["member_id"], "book_id": book_id, "pickup_branch_id": other}
        )
        assert result["pickup_branch"] == table(state, "branches", "branch_id")[other]["name"]
        assert table(state, "holds", "hold_id")[result["hold_id"]]["pickup_branch_id"] == other

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "place_hold",
            {"member_id": "M-9999", "book_id": titles_without_shelf_copy(state)[0]},
            rule="member_exists",
            says=["No member has the id M-9999"],
        )

    def test_suspended_member(self, env: Environment, state: StateCopy) -> None:
        member = the_first((m for m in state.rows("members") if m["status"] == "suspended"), "suspended member")
        refused(
            env,
            state,
            "place_hold",
            {"member_id": member["member_id"], "book_id": titles_without_shelf_copy(state)[0]},
            rule="member_active",
            says=["suspended"],
        )

    def test_expired_membership(self, env: Environment, state: StateCopy) -> None:
        member = the_first(
            (m for m in state.rows("members") if m["status"] == "active" and day(m["expires_on"]) < TODAY),
            "expired membership",
        )
        refused(
            env,
            state,
            "place_hold",
            {"member_id": member["member_id"], "book_id": titles_without_shelf_copy(state)[0]},
            rule="membership_current",
            says=["expired on"],
        )

    def test_unknown_title(self, env: Environment, state: StateCopy) -> None:
        member = self.hold_placer(state)
        refused(
            env,
            state,
            "place_hold",
            {"member_id": member["member_id"], "book_id": "BK-9999"},
            rule="book_exists",
            says=["No title has the id BK-9999"],
        )

    def test_title_on_the_shelf(self, env: Environment, state: StateCopy) -> None:
        member = self.hold_placer(state)
        copy_ = the_first(
            shelf_copies(state, exclude_titles=titles_on_loan(state, member["member_id"])), "available copy"
        )
        n = sum(c["status"] == "available" and c["book_id"] == copy_["book_id"] for c in state.rows("copies"))
        refused(
            env,
            state,
            "place_hold",
            {"member_id": member["member_id"], "book_id": copy_["book_id"]},
            rule="hold_only_when_unavailable",
            says=[f"{n} copy(ies) of {copy_['book_id']} are on the shelf", "check one out instead"],
        )

    def test_second_hold_on_a_title(self, env: Environment, state: StateCopy) -> None:
        hold = the_first(
            (
                h
                for h in state.rows("holds")
                if h["status"] == "waiting" and may_borrow(state, table(state, "members", "member_id")[h["member_id"]])
            ),
            "waiting hold of a member in good standing",
        )
        refused(
            env,
            state,
            "place_hold",
            {"member_id": hold["member_id"], "book_id": hold["book_id"]},
            rule="one_hold_per_title",
            says=[f"already has a hold on {hold['book_id']}"],
        )

    def test_hold_on_a_title_already_borrowed(self, env: Environment, state: StateCopy) -> None:
        without = set(titles_without_shelf_copy(state))
        member, book_id = the_first(
            (
                (m, b)
                for m in state.rows("members")
                if may_borrow(state, m)
                for b in sorted(titles_on_loan(state, m["member_id"]))
                if b in without and b not in {h["book_id"] for h in open_holds(state, m["member_id"])}
            ),
            "member borrowing a title with no copy on the shelf",
        )
        refused(
            env,
            state,
            "place_hold",
            {"member_id": member["member_id"], "book_id": book_id},
            rule="no_hold_on_borrowed_title",
            says=["already has this title on loan"],
        )

    def test_hold_limit_of_the_tier(self, env: Environment, state: StateCopy) -> None:
        tiers = table(state, "membership_tiers", "tier")
        member = the_first(
            (
                m
                for m in state.rows("members")
                if m["tier"] == "student"
                and may_borrow(state, m)
                and len(self.holdable(state, m["member_id"]))
                > tiers["student"]["max_holds"] - len(open_holds(state, m["member_id"]))
            ),
            "student who may fill their hold limit",
        )
        mid = member["member_id"]
        limit = tiers["student"]["max_holds"]
        titles = self.holdable(state, mid)
        for book_id in titles[: limit - len(open_holds(state, mid))]:
            ok(env, state, "place_hold", {"member_id": mid, "book_id": book_id})
        assert len(open_holds(state, mid)) == limit
        refused(
            env,
            state,
            "place_hold",
            {"member_id": mid, "book_id": self.holdable(state, mid)[0]},
            rule="hold_limit",
            says=[f"has {limit} open holds; the limit for their tier is {limit}"],
        )

    def test_pickup_branch_outside_the_list(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "place_hold",
            {"member_id": "M-1001", "book_id": "BK-0004", "pickup_branch_id": "BR-XXX"},
            kind="invalid_arguments",
            says=["pickup_branch_id", "is not one of"],
        )


class TestCancelHold:
    def test_cancelling_a_waiting_hold_moves_the_queue_up(self, env: Environment, state: StateCopy) -> None:
        book_id = the_first(
            (b for b in titles_without_shelf_copy(state) if len(waiting_queue(state, b)) >= 2),
            "title with two waiting holds",
        )
        first, second = waiting_queue(state, book_id)[:2]
        result = ok(env, state, "cancel_hold", {"hold_id": first["hold_id"], "member_id": first["member_id"]})
        assert result == {
            "hold_id": first["hold_id"],
            "status": "cancelled",
            "released_copy_id": None,
            "passed_to_hold_id": None,
            "released_copy_status": None,
        }
        stored = table(state, "holds", "hold_id")[first["hold_id"]]
        assert (stored["status"], stored["copy_id"], stored["ready_until"]) == ("cancelled", None, None)
        assert waiting_queue(state, book_id)[0]["hold_id"] == second["hold_id"]
        listed = ok(env, state, "list_member_holds", {"member_id": second["member_id"]})
        assert next(r for r in listed["rows"] if r["hold_id"] == second["hold_id"])["queue_position"] == 1

    def test_cancelling_a_ready_hold_with_nobody_waiting_reshelves_the_copy(
        self, env: Environment, state: StateCopy
    ) -> None:
        hold = the_first(
            (h for h in state.rows("holds") if h["status"] == "ready" and not waiting_queue(state, h["book_id"])),
            "ready hold of a title nobody else waits for",
        )
        result = ok(env, state, "cancel_hold", {"hold_id": hold["hold_id"], "member_id": hold["member_id"]})
        assert result == {
            "hold_id": hold["hold_id"],
            "status": "cancelled",
            "released_copy_id": hold["copy_id"],
            "passed_to_hold_id": None,
            "released_copy_status": "available",
        }
        assert table(state, "holds", "hold_id")[hold["hold_id"]]["status"] == "cancelled"
        assert table(state, "copies", "copy_id")[hold["copy_id"]]["status"] == "available"

    def test_hold_of_another_member(self, env: Environment, state: StateCopy) -> None:
        hold = the_first((h for h in state.rows("holds") if h["status"] == "waiting"), "waiting hold")
        other = the_first(
            (m["member_id"] for m in state.rows("members") if m["member_id"] != hold["member_id"]), "member"
        )
        refused(
            env,
            state,
            "cancel_hold",
            {"hold_id": hold["hold_id"], "member_id": other},
            rule="hold_exists",
            says=[f"Member {other} has no hold {hold['hold_id']}"],
        )

    @pytest.mark.parametrize("status", ["cancelled", "fulfilled", "expired"])
    def test_closed_hold(self, env: Environment, state: StateCopy, status: str) -> None:
        hold = the_first((h for h in state.rows("holds") if h["status"] == status), f"{status} hold")
        refused(
            env,
            state,
            "cancel_hold",
            {"hold_id": hold["hold_id"], "member_id": hold["member_id"]},
            rule="hold_open",
            says=[f"Hold {hold['hold_id']} is already {status}"],
        )


class TestPayFine:
    @staticmethod
    def pay(fine: dict[str, Any], amount: Any, method: str = "cash") -> dict[str, Any]:
        return {"fine_id": fine["fine_id"], "member_id": fine["member_id"], "amount": amount, "method": method}

    def test_partial_then_full_payment(self, env: Environment, state: StateCopy) -> None:
        fine = the_first(
            (
                f
                for f in state.rows("fines")
                if f["status"] == "open" and money(f["amount"]) - money(f["amount_paid"]) >= Decimal("0.50")
            ),
            "open fine of $0.50+",
        )
        still = money(fine["amount"]) - money(fine["amount_paid"])
        pay_id = next_id(state, "payments", "payment_id", "PAY")

        part = ok(env, state, "pay_fine", self.pay(fine, 0.25))
        assert part["payment_id"] == pay_id
        assert (part["status"], money(part["owed"]), money(part["amount_paid"])) == (
            "open",
            still - Decimal("0.25"),
            money(fine["amount_paid"]) + Decimal("0.25"),
        )
        payment = table(state, "payments", "payment_id")[pay_id]
        assert (
            payment["fine_id"],
            payment["member_id"],
            money(payment["amount"]),
            payment["method"],
            payment["paid_at"],
        ) == (fine["fine_id"], fine["member_id"], Decimal("0.25"), "cash", NOW)

        rest = float(still - Decimal("0.25"))
        full = ok(env, state, "pay_fine", self.pay(fine, rest, "card"))
        assert (full["status"], money(full["owed"]), money(full["amount_paid"])) == (
            "paid",
            Decimal("0.00"),
            money(fine["amount"]),
        )
        assert table(state, "fines", "fine_id")[fine["fine_id"]]["status"] == "paid"
        assert fine["fine_id"] not in {
            r["fine_id"] for r in ok(env, state, "list_member_fines", {"member_id": fine["member_id"]})["rows"]
        }

    def test_unknown_fine(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[0]["member_id"]
        refused(
            env,
            state,
            "pay_fine",
            {"fine_id": "FINE-9999", "member_id": member, "amount": 1, "method": "cash"},
            rule="fine_exists",
            says=[f"Member {member} has no fine FINE-9999."],
        )

    def test_fine_of_another_member(self, env: Environment, state: StateCopy) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == "open"), "open fine")
        other = the_first(
            (m["member_id"] for m in state.rows("members") if m["member_id"] != fine["member_id"]), "member"
        )
        refused(
            env,
            state,
            "pay_fine",
            {**self.pay(fine, 0.25), "member_id": other},
            rule="fine_exists",
            says=[f"Member {other} has no fine {fine['fine_id']}."],
        )
        # the member who owes it still can pay it
        assert ok(env, state, "pay_fine", self.pay(fine, 0.25))["fine_id"] == fine["fine_id"]

    def test_member_is_required(self, env: Environment, state: StateCopy) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == "open"), "open fine")
        args = {k: v for k, v in self.pay(fine, 0.25).items() if k != "member_id"}
        refused(env, state, "pay_fine", args, kind="invalid_arguments", says=["member_id", REQUIRED])

    @pytest.mark.parametrize("status", ["paid", "waived"])
    def test_closed_fine(self, env: Environment, state: StateCopy, status: str) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == status), f"{status} fine")
        refused(
            env,
            state,
            "pay_fine",
            self.pay(fine, 0.1, "card"),
            rule="fine_open",
            says=[f"Fine {fine['fine_id']} is {status}", "nothing is owed"],
        )

    def test_overpayment(self, env: Environment, state: StateCopy) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == "open"), "open fine")
        still = money(fine["amount"]) - money(fine["amount_paid"])
        refused(
            env,
            state,
            "pay_fine",
            self.pay(fine, float(still + CENT)),
            rule="no_overpayment",
            says=[f"Only ${still} is owed on fine {fine['fine_id']}", f"a payment of ${still + CENT} is not accepted"],
        )

    @pytest.mark.parametrize(
        ("amount", "shown"),
        [(0.001, "0.001"), (0.255, "0.255"), (1.0000001, "1.0000001"), (0.1 + 0.2, "0.30000000000000004")],
    )
    def test_more_than_two_decimals_is_refused(
        self, env: Environment, state: StateCopy, amount: float, shown: str
    ) -> None:
        """Regression: a sub-cent amount used to be rounded (0.001 to a $0.00 'payment')."""
        fine = the_first(
            (
                f
                for f in state.rows("fines")
                if f["status"] == "open" and money(f["amount"]) - money(f["amount_paid"]) >= 2
            ),
            "open fine of $2.00+",
        )
        refused(
            env,
            state,
            "pay_fine",
            self.pay(fine, amount),
            rule="amount_in_cents",
            says=[f"Amounts are in dollars and cents; {shown} has more than two decimals."],
        )

    @pytest.mark.parametrize("amount", [0.1, 0.29, 1, 1.5, 2.0, 0.07])
    def test_whole_cents_are_accepted_exactly(self, env: Environment, state: StateCopy, amount: float) -> None:
        fine = the_first(
            (
                f
                for f in state.rows("fines")
                if f["status"] == "open" and money(f["amount"]) - money(f["amount_paid"]) >= 2
            ),
            "open fine of $2.00+",
        )
        result = ok(env, state, "pay_fine", self.pay(fine, amount))
        assert money(table(state, "payments", "payment_id")[result["payment_id"]]["amount"]) == money(amount)
        assert money(result["amount_paid"]) == money(fine["amount_paid"]) + money(amount)

    def test_the_owner_is_checked_before_the_decimals(self, env: Environment, state: StateCopy) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == "open"), "open fine")
        other = the_first(
            (m["member_id"] for m in state.rows("members") if m["member_id"] != fine["member_id"]), "member"
        )
        refused(env, state, "pay_fine", {**self.pay(fine, 0.001), "member_id": other}, rule="fine_exists")

    def test_decimals_are_checked_before_the_fine_status(self, env: Environment, state: StateCopy) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == "paid"), "paid fine")
        refused(env, state, "pay_fine", self.pay(fine, 0.001), rule="amount_in_cents")

    @pytest.mark.parametrize(
        ("amount", "says"),
        [
            (0, "less than or equal to the minimum of 0"),
            (-5, "less than or equal to the minimum of 0"),
            ("5", "is not of type"),
            (True, "is not of type"),
            (10_001, "greater than the maximum of 10000"),
            (float("inf"), "must be a finite number"),
            (float("nan"), "must be a finite number"),
        ],
    )
    def test_bad_amounts(self, env: Environment, state: StateCopy, amount: Any, says: str) -> None:
        refused(
            env,
            state,
            "pay_fine",
            {**VALID_ARGS["pay_fine"], "amount": amount},
            kind="invalid_arguments",
            says=["amount", says],
        )

    def test_method_outside_the_list(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "pay_fine",
            {**VALID_ARGS["pay_fine"], "method": "bitcoin"},
            kind="invalid_arguments",
            says=["method", "bitcoin", "is not one of"],
        )


class TestWaiveFine:
    @staticmethod
    def waivable(state: StateCopy) -> list[dict[str, Any]]:
        return [
            f
            for f in state.rows("fines")
            if f["status"] == "open"
            and f["kind"] == "overdue"
            and money(f["amount"]) <= WAIVE_LIMIT
            and money(f["amount_paid"]) == 0
        ]

    @staticmethod
    def waive(fine: dict[str, Any], reason: str = "goodwill") -> dict[str, str]:
        return {"fine_id": fine["fine_id"], "member_id": fine["member_id"], "reason": reason}

    def test_waives_a_small_unpaid_overdue_fine(self, env: Environment, state: StateCopy) -> None:
        fine = the_first(self.waivable(state), "open unpaid overdue fine of at most $5")
        owed_before = owed(state, fine["member_id"])
        result = ok(env, state, "waive_fine", self.waive(fine, "book drop was jammed"))
        note = f"{fine['note']}; waived: book drop was jammed" if fine["note"] else "waived: book drop was jammed"
        assert result == {"fine_id": fine["fine_id"], "amount": fine["amount"], "status": "waived", "note": note}
        stored = table(state, "fines", "fine_id")[fine["fine_id"]]
        assert (stored["status"], stored["note"], stored["amount_paid"]) == ("waived", note, fine["amount_paid"])
        assert owed(state, fine["member_id"]) == owed_before - money(fine["amount"])
        assert money(
            ok(env, state, "get_member", {"member_id": fine["member_id"]})["fines_owed"]
        ) == owed_before - money(fine["amount"])

    def test_unknown_fine(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[0]["member_id"]
        refused(
            env,
            state,
            "waive_fine",
            {"fine_id": "FINE-9999", "member_id": member, "reason": "goodwill"},
            rule="fine_exists",
            says=[f"Member {member} has no fine FINE-9999."],
        )

    def test_fine_of_another_member(self, env: Environment, state: StateCopy) -> None:
        fine = the_first(self.waivable(state), "open unpaid overdue fine of at most $5")
        other = the_first(
            (m["member_id"] for m in state.rows("members") if m["member_id"] != fine["member_id"]), "member"
        )
        refused(
            env,
            state,
            "waive_fine",
            {**self.waive(fine), "member_id": other},
            rule="fine_exists",
            says=[f"Member {other} has no fine {fine['fine_id']}."],
        )
        # the member who owes it may still have it waived
        assert ok(env, state, "waive_fine", self.waive(fine))["status"] == "waived"

    def test_member_is_required(self, env: Environment, state: StateCopy) -> None:
        fine = the_first(self.waivable(state), "open unpaid overdue fine of at most $5")
        refused(
            env,
            state,
            "waive_fine",
            {"fine_id": fine["fine_id"], "reason": "goodwill"},
            kind="invalid_arguments",
            says=["member_id", REQUIRED],
        )

    @pytest.mark.parametrize("kind", ["lost", "damage"])
    def test_only_overdue_fines(self, env: Environment, state: StateCopy, kind: str) -> None:
        fine = the_first(
            (f for f in state.rows("fines") if f["status"] == "open" and f["kind"] == kind), f"open {kind} fine"
        )
        refused(
            env,
            state,
            "waive_fine",
            self.waive(fine),
            rule="waive_overdue_only",
            says=[f"is a {kind} charge", "only overdue fines can be waived"],
        )

    @pytest.mark.parametrize("status", ["paid", "waived"])
    def test_closed_fine(self, env: Environment, state: StateCopy, status: str) -> None:
        fine = the_first((f for f in state.rows("fines") if f["status"] == status), f"{status} fine")
        refused(
            env,
            state,
            "waive_fine",
            self.waive(fine),
            rule="fine_open",
            says=[f"Fine {fine['fine_id']} is {status}", "only open fines can be waived"],
        )

    def test_partly_paid_fine(self, env: Environment, state: StateCopy) -> None:
        fine = the_first((f for f in self.waivable(state) if money(f["amount"]) > CENT), "waivable fine above one cent")
        ok(
            env,
            state,
            "pay_fine",
            {"fine_id": fine["fine_id"], "member_id": fine["member_id"], "amount": 0.01, "method": "cash"},
        )
        refused(
            env,
            state,
            "waive_fine",
            self.waive(fine),
            rule="waive_limit",
            says=[f"${money(fine['amount'])} with $0.01 paid", "only unpaid fines up to $5.00"],
        )

    def test_reason_too_short(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "waive_fine",
            {**VALID_ARGS["waive_fine"], "reason": "ok"},
            kind="invalid_arguments",
            says=["reason", SHORT],
        )

    def test_reason_too_long_is_refused(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "waive_fine",
            {**VALID_ARGS["waive_fine"], "reason": "x" * 201},
            kind="invalid_arguments",
            says=["Invalid arguments for waive_fine: reason: ", "xxx"],
        )

    # Regression: the runtime cut the validator's message at 200 characters, and the message starts
    # with the value itself, so for a long value the explanation was cut off.
    def test_reason_too_long_says_so(self, env: Environment, state: StateCopy) -> None:
        error = refused(
            env,
            state,
            "waive_fine",
            {**VALID_ARGS["waive_fine"], "reason": "x" * 201},
            kind="invalid_arguments",
            says=["reason", LONG, "200"],
        )
        [problem] = error["problems"]
        assert problem.startswith('reason: "xxx'), problem
        # the value is shortened, and says how long it was; the explanation survives in full
        assert "…(" in problem and "characters)" in problem
        assert "x" * 60 not in problem
        assert problem.endswith(("is too long", "is longer than 200 characters")), problem

    def test_long_id_is_shortened_not_the_explanation(self, env: Environment, state: StateCopy) -> None:
        bad = "FINE-0001" + "9" * 300 + "x"
        error = refused(
            env,
            state,
            "waive_fine",
            {**VALID_ARGS["waive_fine"], "fine_id": bad},
            kind="invalid_arguments",
            says=["fine_id", "does not match", "^FINE-[0-9]+$"],
        )
        assert bad not in error["message"]
        assert len(error["message"]) < 400

    def test_reason_is_required(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "waive_fine",
            {k: v for k, v in VALID_ARGS["waive_fine"].items() if k != "reason"},
            kind="invalid_arguments",
            says=["reason", REQUIRED],
        )


class TestReportLost:
    def test_charges_the_replacement_cost(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(active_loans(state), "active loan")
        book = book_of_copy(state, loan["copy_id"])
        fine_id = next_id(state, "fines", "fine_id", "FINE")
        owed_before = owed(state, loan["member_id"])
        listed_before = ok(env, state, "get_book", {"book_id": book["book_id"]})

        result = ok(env, state, "report_lost", {"loan_id": loan["loan_id"], "member_id": loan["member_id"]})

        assert result == {
            "fine_id": fine_id,
            "loan_id": loan["loan_id"],
            "amount": book["replacement_cost"],
            "status": "open",
            "note": f"Replacement cost of {book['title']}",
        }
        fine = table(state, "fines", "fine_id")[fine_id]
        assert (fine["member_id"], fine["kind"], fine["amount_paid"], fine["issued_on"]) == (
            loan["member_id"],
            "lost",
            0,
            TODAY.isoformat(),
        )
        assert table(state, "loans", "loan_id")[loan["loan_id"]]["status"] == "lost"
        assert table(state, "copies", "copy_id")[loan["copy_id"]]["status"] == "lost"
        assert owed(state, loan["member_id"]) == owed_before + money(book["replacement_cost"])
        counted = ok(env, state, "search_books", {"query": book["title"]})
        row = next(r for r in counted["rows"] if r["book_id"] == book["book_id"])
        assert row["copies"] == sum(c["status"] != "lost" for c in listed_before["copies"]) - 1
        # a lost copy can no longer be returned, and its charge cannot be waived
        refused(env, state, "return_copy", {"copy_id": loan["copy_id"]}, rule="copy_on_loan", says=["is not on loan"])
        refused(
            env,
            state,
            "waive_fine",
            {"fine_id": fine_id, "member_id": loan["member_id"], "reason": "found it"},
            rule="waive_overdue_only",
            says=["is a lost charge"],
        )

    def test_loan_of_another_member(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(active_loans(state), "active loan")
        other = the_first(
            (m["member_id"] for m in state.rows("members") if m["member_id"] != loan["member_id"]), "member"
        )
        refused(
            env,
            state,
            "report_lost",
            {"loan_id": loan["loan_id"], "member_id": other},
            rule="loan_exists",
            says=[f"Member {other} has no loan {loan['loan_id']}"],
        )

    @pytest.mark.parametrize("status", ["returned", "lost"])
    def test_closed_loan(self, env: Environment, state: StateCopy, status: str) -> None:
        loan = the_first((x for x in state.rows("loans") if x["status"] == status), f"{status} loan")
        refused(
            env,
            state,
            "report_lost",
            {"loan_id": loan["loan_id"], "member_id": loan["member_id"]},
            rule="loan_active",
            says=[f"Loan {loan['loan_id']} is {status}", "only a copy still on loan"],
        )


class TestUpdateMemberContact:
    def test_changes_email_and_phone(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[0]
        mid = member["member_id"]
        result = ok(
            env,
            state,
            "update_member_contact",
            {"member_id": mid, "email": "new.address@example.net", "phone": "(555) 010-9999"},
        )
        assert result == {
            "member_id": mid,
            "first_name": member["first_name"],
            "last_name": member["last_name"],
            "email": "new.address@example.net",
            "phone": "(555) 010-9999",
        }
        stored = table(state, "members", "member_id")[mid]
        assert (stored["email"], stored["phone"]) == ("new.address@example.net", "(555) 010-9999")
        assert [
            r["member_id"] for r in ok(env, state, "find_member", {"email": "NEW.address@example.net"})["rows"]
        ] == [mid]

    def test_phone_only_keeps_the_email(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[1]
        ok(env, state, "update_member_contact", {"member_id": member["member_id"], "phone": "555-111-2222"})
        stored = table(state, "members", "member_id")[member["member_id"]]
        assert (stored["email"], stored["phone"]) == (member["email"], "555-111-2222")

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "update_member_contact",
            {"member_id": "M-9999", "phone": "555-111-2222"},
            rule="member_exists",
            says=["No member has the id M-9999"],
        )

    def test_needs_a_new_value(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "update_member_contact",
            {"member_id": state.rows("members")[0]["member_id"]},
            rule="contact_change_needs_value",
            says=["Give a new email or phone number"],
        )

    def test_email_of_another_member_in_any_case(self, env: Environment, state: StateCopy) -> None:
        first, second = state.rows("members")[:2]
        taken = second["email"].upper()
        refused(
            env,
            state,
            "update_member_contact",
            {"member_id": first["member_id"], "email": taken},
            rule="email_unique",
            says=[f"The email {taken} already belongs to another member"],
        )

    def test_own_email_is_not_a_clash(self, env: Environment, state: StateCopy) -> None:
        member = state.rows("members")[0]
        ok(env, state, "update_member_contact", {"member_id": member["member_id"], "email": member["email"]})

    @pytest.mark.parametrize(
        ("args", "says"),
        [
            ({"email": "not-an-email"}, ("is not a 'email'", 'is not a "email"')),
            ({"phone": "call me maybe"}, "does not match"),
            ({"phone": "12"}, "does not match"),
            ({"email": "a" * 120 + "@example.org"}, LONG),
        ],
    )
    def test_bad_contact_values(
        self, env: Environment, state: StateCopy, args: dict[str, Any], says: str | tuple[str, ...]
    ) -> None:
        refused(
            env,
            state,
            "update_member_contact",
            {"member_id": "M-1001", **args},
            kind="invalid_arguments",
            says=[next(iter(args)), says],
        )


class TestRenewMembership:
    @staticmethod
    def in_window(state: StateCopy) -> list[dict[str, Any]]:
        return [m for m in state.rows("members") if (day(m["expires_on"]) - TODAY).days <= RENEWAL_WINDOW_DAYS]

    def test_renews_for_a_year_from_expiry(self, env: Environment, state: StateCopy) -> None:
        tiers = table(state, "membership_tiers", "tier")
        member = the_first(
            (
                m
                for m in self.in_window(state)
                if m["status"] == "active"
                and owed(state, m["member_id"]) == 0
                and day(m["expires_on"]) >= TODAY
                and tiers[m["tier"]]["annual_fee"] == 0
            ),
            "free-tier member in the renewal window owing nothing",
        )
        fines_before = len(state.rows("fines"))
        result = ok(env, state, "renew_membership", {"member_id": member["member_id"]})
        expiry = day(member["expires_on"])
        new_expiry = expiry.replace(year=expiry.year + 1).isoformat()
        assert result == {
            "member_id": member["member_id"],
            "tier": member["tier"],
            "expires_on": new_expiry,
            "fee_charged": 0,
        }
        assert table(state, "members", "member_id")[member["member_id"]]["expires_on"] == new_expiry
        assert len(state.rows("fines")) == fines_before

    def test_expired_membership_renews_from_today(self, env: Environment, state: StateCopy) -> None:
        member = the_first(
            (m for m in state.rows("members") if m["status"] == "active" and day(m["expires_on"]) < TODAY),
            "active member with an expired membership",
        )
        mid = member["member_id"]
        for fine in [f for f in state.rows("fines") if f["member_id"] == mid and f["status"] == "open"]:
            ok(
                env,
                state,
                "pay_fine",
                {
                    "fine_id": fine["fine_id"],
                    "member_id": mid,
                    "amount": float(money(fine["amount"]) - money(fine["amount_paid"])),
                    "method": "cash",
                },
            )
        result = ok(env, state, "renew_membership", {"member_id": mid})
        assert result["expires_on"] == TODAY.replace(year=TODAY.year + 1).isoformat()
        # and the member may borrow again
        copy_ = the_first(shelf_copies(state, exclude_titles=titles_on_loan(state, mid)), "available copy")
        ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": copy_["copy_id"]})

    def test_unknown_member(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "renew_membership",
            {"member_id": "M-9999"},
            rule="member_exists",
            says=["No member has the id M-9999"],
        )

    def test_suspended_member(self, env: Environment, state: StateCopy) -> None:
        member = the_first((m for m in state.rows("members") if m["status"] == "suspended"), "suspended member")
        refused(
            env,
            state,
            "renew_membership",
            {"member_id": member["member_id"]},
            rule="member_active",
            says=["suspended", "cannot be renewed at the desk"],
        )

    def test_open_fines_must_be_settled(self, env: Environment, state: StateCopy) -> None:
        member = the_first(
            (m for m in self.in_window(state) if m["status"] == "active" and owed(state, m["member_id"]) > 0),
            "member in the renewal window owing money",
        )
        refused(
            env,
            state,
            "renew_membership",
            {"member_id": member["member_id"]},
            rule="no_fines_to_renew",
            says=[f"owes ${owed(state, member['member_id'])}", "must be settled before renewing"],
        )

    def test_too_early(self, env: Environment, state: StateCopy) -> None:
        member = the_first(
            (
                m
                for m in state.rows("members")
                if m["status"] == "active"
                and owed(state, m["member_id"]) == 0
                and (day(m["expires_on"]) - TODAY).days > RENEWAL_WINDOW_DAYS
            ),
            "member owing nothing outside the renewal window",
        )
        refused(
            env,
            state,
            "renew_membership",
            {"member_id": member["member_id"]},
            rule="renewal_window",
            says=[f"runs until {member['expires_on']}", "from 60 days before expiry"],
        )


# ---------------------------------------------------------------------------------------------
# scenarios across tools
# ---------------------------------------------------------------------------------------------


class TestOverdueReturns:
    def test_every_overdue_return_charges_the_tier_rate(self, env: Environment, state: StateCopy) -> None:
        """Each seeded overdue loan, returned, is fined days late x its borrower's daily rate (capped)."""
        overdue = [loan for loan in active_loans(state) if day(loan["due_on"]) < TODAY]
        assert overdue, "the seed has no overdue loan"
        assert len({tier_of(state, loan["member_id"])["daily_fine"] for loan in overdue}) >= 2, "want two fine rates"
        for loan in overdue:
            rate = tier_of(state, loan["member_id"])["daily_fine"]
            expected = expected_overdue_fine(loan["due_on"], rate)
            fine_id = next_id(state, "fines", "fine_id", "FINE")
            owed_before = owed(state, loan["member_id"])

            result = ok(env, state, "return_copy", {"copy_id": loan["copy_id"]})

            assert result["days_late"] == days_late(loan["due_on"]) > 0
            assert money(result["fine_charged"]) == expected
            fine = table(state, "fines", "fine_id")[fine_id]
            assert (
                fine["member_id"],
                fine["loan_id"],
                fine["kind"],
                money(fine["amount"]),
                fine["amount_paid"],
                fine["status"],
                fine["issued_on"],
                fine["note"],
            ) == (
                loan["member_id"],
                loan["loan_id"],
                "overdue",
                expected,
                0,
                "open",
                TODAY.isoformat(),
                f"{days_late(loan['due_on'])} day(s) late",
            )
            assert owed(state, loan["member_id"]) == owed_before + expected

    def test_fine_is_capped_and_then_cannot_be_waived(self, env: Environment) -> None:
        """A variant seed holds a loan long overdue: the fine stops at $10.00, above the waiver limit."""

        def long_overdue(seed: dict[str, list[dict[str, Any]]]) -> None:
            members = {m["member_id"]: m for m in seed["members"]}
            rates = {t["tier"]: t["daily_fine"] for t in seed["membership_tiers"]}
            loan = next(
                x for x in seed["loans"] if x["status"] == "active" and rates[members[x["member_id"]]["tier"]] >= 0.25
            )
            loan.update(checked_out_at="2025-11-01 10:00:00", due_on="2025-11-22")

        variant_env = variant(env, long_overdue)
        s = variant_env.new_state()
        loan = next(x for x in active_loans(s) if x["due_on"] == "2025-11-22")
        rate = tier_of(s, loan["member_id"])["daily_fine"]
        assert Decimal(str(rate)) * days_late(loan["due_on"]) > OVERDUE_FINE_CAP
        fine_id = next_id(s, "fines", "fine_id", "FINE")

        result = ok(variant_env, s, "return_copy", {"copy_id": loan["copy_id"]})

        assert money(result["fine_charged"]) == OVERDUE_FINE_CAP == expected_overdue_fine(loan["due_on"], rate)
        assert money(table(s, "fines", "fine_id")[fine_id]["amount"]) == OVERDUE_FINE_CAP
        refused(
            variant_env,
            s,
            "waive_fine",
            {"fine_id": fine_id, "member_id": loan["member_id"], "reason": "goodwill"},
            rule="waive_limit",
            says=["$10.00 with $0.00 paid", "only unpaid fines up to $5.00"],
        )
        s.close()


class TestHoldQueue:
    @staticmethod
    def busiest_title(state: StateCopy) -> tuple[str, dict[str, Any]]:
        """A title with a copy out on loan and a long waiting queue, preferably one joined out of id
        order (so serving by hold_id instead of placed_at would show)."""
        loaned = {book_of_copy(state, loan["copy_id"])["book_id"]: loan for loan in active_loans(state)}
        candidates = [b for b in titles_without_shelf_copy(state) if b in loaned and len(waiting_queue(state, b)) >= 2]

        def preference(book_id: str) -> tuple[bool, int]:
            ids = [h["hold_id"] for h in waiting_queue(state, book_id)]
            out_of_order = ids[0] != min(ids) and ids[1:] != sorted(ids[1:])
            return (not out_of_order, -len(ids))

        book_id = the_first(sorted(candidates, key=preference), "title with two waiting holds and a copy on loan")
        return book_id, loaned[book_id]

    def test_returned_copy_is_set_aside_for_the_first_waiting_hold(self, env: Environment, state: StateCopy) -> None:
        book_id, loan = self.busiest_title(state)
        queue = waiting_queue(state, book_id)
        first = queue[0]

        result = ok(env, state, "return_copy", {"copy_id": loan["copy_id"]})

        assert result["held_for_hold_id"] == first["hold_id"]
        assert result["copy_status"] == "on_hold_shelf"
        ready = table(state, "holds", "hold_id")[first["hold_id"]]
        assert (ready["status"], ready["copy_id"], ready["ready_until"]) == (
            "ready",
            loan["copy_id"],
            (TODAY + timedelta(days=HOLD_PICKUP_DAYS)).isoformat(),
        )
        assert table(state, "copies", "copy_id")[loan["copy_id"]]["status"] == "on_hold_shelf"
        assert [h["hold_id"] for h in waiting_queue(state, book_id)] == [h["hold_id"] for h in queue[1:]]
        listed = ok(env, state, "list_member_holds", {"member_id": first["member_id"]})
        row = next(r for r in listed["rows"] if r["hold_id"] == first["hold_id"])
        assert (row["status"], row["copy_id"], row["queue_position"]) == ("ready", loan["copy_id"], None)

        # nobody else may take the copy off the hold shelf
        others = [
            m
            for m in borrowers(state)
            if m["member_id"] != first["member_id"] and book_id not in titles_on_loan(state, m["member_id"])
        ]
        assert others
        for member in [*(m for m in others if m["member_id"] == queue[1]["member_id"]), others[0]]:
            refused(
                env,
                state,
                "checkout_copy",
                {"member_id": member["member_id"], "copy_id": loan["copy_id"]},
                rule="copy_available",
                says=[f"is not available to {member['member_id']}", "(it is on_hold_shelf)"],
            )

    def test_queue_is_served_by_placement_time_not_by_id(self, env: Environment, state: StateCopy) -> None:
        """In the seed some queues were joined out of id order; the earliest placed_at is served first."""
        book_id = the_first(
            (
                b
                for b in titles_without_shelf_copy(state)
                if waiting_queue(state, b)
                and waiting_queue(state, b)[0]["hold_id"] != min(h["hold_id"] for h in waiting_queue(state, b))
                and any(book_of_copy(state, x["copy_id"])["book_id"] == b for x in active_loans(state))
            ),
            "queue whose first hold is not the lowest id",
        )
        loan = next(x for x in active_loans(state) if book_of_copy(state, x["copy_id"])["book_id"] == book_id)
        first = waiting_queue(state, book_id)[0]
        result = ok(env, state, "return_copy", {"copy_id": loan["copy_id"]})
        assert result["held_for_hold_id"] == first["hold_id"]
        assert table(state, "holds", "hold_id")[first["hold_id"]]["status"] == "ready"

    def test_cancelling_a_ready_hold_passes_the_copy_down_the_queue(self, env: Environment, state: StateCopy) -> None:
        book_id, loan = self.busiest_title(state)
        queue = waiting_queue(state, book_id)
        copy_id = loan["copy_id"]
        ok(env, state, "return_copy", {"copy_id": copy_id})

        for current, following in zip(queue, [*queue[1:], None], strict=True):
            assert table(state, "holds", "hold_id")[current["hold_id"]]["status"] == "ready"
            result = ok(env, state, "cancel_hold", {"hold_id": current["hold_id"], "member_id": current["member_id"]})
            assert (result["released_copy_id"], result["passed_to_hold_id"]) == (
                copy_id,
                following["hold_id"] if following else None,
            )
            assert result["released_copy_status"] == ("on_hold_shelf" if following else "available")
            cancelled = table(state, "holds", "hold_id")[current["hold_id"]]
            assert (cancelled["status"], cancelled["copy_id"], cancelled["ready_until"]) == ("cancelled", None, None)
            if following is not None:
                passed = table(state, "holds", "hold_id")[following["hold_id"]]
                assert (passed["status"], passed["copy_id"], passed["ready_until"]) == (
                    "ready",
                    copy_id,
                    (TODAY + timedelta(days=HOLD_PICKUP_DAYS)).isoformat(),
                )
                assert table(state, "copies", "copy_id")[copy_id]["status"] == "on_hold_shelf"
        # the queue is empty: the copy is back on the shelf for anyone
        assert waiting_queue(state, book_id) == []
        assert table(state, "copies", "copy_id")[copy_id]["status"] == "available"
        member = the_first(
            (m for m in borrowers(state) if book_id not in titles_on_loan(state, m["member_id"])), "borrower"
        )
        ok(env, state, "checkout_copy", {"member_id": member["member_id"], "copy_id": copy_id})

    @staticmethod
    def collectable(state: StateCopy) -> list[dict[str, Any]]:
        """Ready holds whose member may borrow another item and does not have the title on loan."""
        tiers = table(state, "membership_tiers", "tier")
        members = table(state, "members", "member_id")
        return [
            h
            for h in state.rows("holds")
            if h["status"] == "ready"
            and may_borrow(state, members[h["member_id"]])
            and h["book_id"] not in titles_on_loan(state, h["member_id"])
            and len(active_loans(state, h["member_id"])) < tiers[members[h["member_id"]]["tier"]]["max_loans"]
        ]

    # Regression: checkout_copy marked the ready hold 'fulfilled' but left its copy_id and
    # ready_until set, which broke the holds CHECK ready_hold_has_copy (execution_error), so the
    # member whose hold was ready could never collect the copy.
    def test_hold_member_collects_the_copy_from_the_hold_shelf(self, env: Environment, state: StateCopy) -> None:
        hold = the_first(self.collectable(state), "ready hold of a member in good standing")
        mid, copy_id = hold["member_id"], hold["copy_id"]
        loan_id = next_id(state, "loans", "loan_id", "LOAN")
        loan_days = tier_of(state, mid)["loan_days"]

        result = ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": copy_id})

        title = table(state, "books", "book_id")[hold["book_id"]]["title"]
        assert result == {
            "loan_id": loan_id,
            "copy_id": copy_id,
            "title": title,
            "member_id": mid,
            "checked_out_at": NOW,
            "due_on": (TODAY + timedelta(days=loan_days)).isoformat(),
        }
        fulfilled = table(state, "holds", "hold_id")[hold["hold_id"]]
        assert (fulfilled["status"], fulfilled["copy_id"], fulfilled["ready_until"]) == ("fulfilled", None, None)
        assert table(state, "copies", "copy_id")[copy_id]["status"] == "on_loan"
        assert table(state, "loans", "loan_id")[loan_id]["status"] == "active"
        listed = ok(env, state, "list_member_holds", {"member_id": mid})
        assert hold["hold_id"] not in {r["hold_id"] for r in listed["rows"]}
        # the hold is closed: it cannot be cancelled, and the copy comes back like any other loan
        refused(
            env,
            state,
            "cancel_hold",
            {"hold_id": hold["hold_id"], "member_id": mid},
            rule="hold_open",
            says=[f"Hold {hold['hold_id']} is already fulfilled"],
        )
        assert ok(env, state, "return_copy", {"copy_id": copy_id})["loan_id"] == loan_id

    def test_hold_member_must_take_the_held_copy_not_a_shelf_copy(self, env: Environment, state: StateCopy) -> None:
        """A member whose copy waits on the hold shelf is sent to that copy; others may take the shelf copy."""
        shelf = {c["book_id"]: c for c in shelf_copies(state)}
        hold = the_first(
            (h for h in self.collectable(state) if h["book_id"] in shelf),
            "ready hold of a title that also has a copy on the shelf",
        )
        mid, other_copy = hold["member_id"], shelf[hold["book_id"]]["copy_id"]
        title = table(state, "books", "book_id")[hold["book_id"]]["title"]

        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": mid, "copy_id": other_copy},
            rule="collect_held_copy",
            says=[
                f'Copy {hold["copy_id"]} of "{title}" is waiting on the hold shelf for {mid}; '
                "check out that copy instead."
            ],
        )

        someone = the_first(
            (
                m
                for m in borrowers(state)
                if m["member_id"] != mid and hold["book_id"] not in titles_on_loan(state, m["member_id"])
            ),
            "other borrower",
        )
        ok(env, state, "checkout_copy", {"member_id": someone["member_id"], "copy_id": other_copy})
        ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": hold["copy_id"]})
        assert table(state, "holds", "hold_id")[hold["hold_id"]]["status"] == "fulfilled"

    def test_a_copy_returned_after_the_hold_is_ready_is_not_for_the_hold_member(
        self, env: Environment, state: StateCopy
    ) -> None:
        """Another copy of the title comes back with nobody waiting: it goes to the shelf, yet the
        member whose copy is already set aside must still collect that one."""
        loaned = {book_of_copy(state, x["copy_id"])["book_id"]: x for x in active_loans(state)}
        hold = the_first(
            (
                h
                for h in self.collectable(state)
                if h["book_id"] in loaned
                and loaned[h["book_id"]]["member_id"] != h["member_id"]
                and not waiting_queue(state, h["book_id"])
            ),
            "ready hold of a title with another copy on loan and nobody waiting",
        )
        returned = loaned[hold["book_id"]]["copy_id"]

        result = ok(env, state, "return_copy", {"copy_id": returned})

        assert (result["copy_status"], result["held_for_hold_id"]) == ("available", None)
        error = refused(
            env,
            state,
            "checkout_copy",
            {"member_id": hold["member_id"], "copy_id": returned},
            rule="collect_held_copy",
            says=[f"Copy {hold['copy_id']} of", "check out that copy instead"],
        )
        assert error["tool"] == "checkout_copy"
        ok(env, state, "checkout_copy", {"member_id": hold["member_id"], "copy_id": hold["copy_id"]})
        # with the hold fulfilled the title is on loan to them, so the shelf copy is not theirs either
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": hold["member_id"], "copy_id": returned},
            rule="one_copy_per_title",
        )


class TestLoanLimits:
    @pytest.mark.parametrize("tier", ["standard", "student", "senior", "premium"])
    def test_each_tier_stops_at_its_loan_limit(self, env: Environment, state: StateCopy, tier: str) -> None:
        """Fill a member's loans up to the tier limit; one more is refused; a return frees a slot.

        The seed's only senior is suspended; for a tier without a member who may borrow, a variant
        seed moves a standard member with no loans into that tier.
        """
        if not borrowers(state, tier=tier):

            def move_to_tier(seed: dict[str, list[dict[str, Any]]]) -> None:
                busy = {x["member_id"] for x in seed["loans"] if x["status"] == "active"}
                busy |= {f["member_id"] for f in seed["fines"] if f["status"] == "open"}
                member = next(
                    m
                    for m in seed["members"]
                    if m["tier"] == "standard"
                    and m["status"] == "active"
                    and day(m["expires_on"]) >= TODAY
                    and m["member_id"] not in busy
                )
                member["tier"] = tier

            env = variant(env, move_to_tier)
            state = env.new_state()
        limit = table(state, "membership_tiers", "tier")[tier]["max_loans"]
        member = the_first(borrowers(state, tier=tier), f"{tier} member who may borrow")
        mid = member["member_id"]
        while len(active_loans(state, mid)) < limit:
            copy_ = the_first(shelf_copies(state, exclude_titles=titles_on_loan(state, mid)), "available copy")
            ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": copy_["copy_id"]})
        assert ok(env, state, "get_member", {"member_id": mid})["active_loans"] == limit

        extra = the_first(shelf_copies(state, exclude_titles=titles_on_loan(state, mid)), "available copy")
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": mid, "copy_id": extra["copy_id"]},
            rule="loan_limit",
            says=[f"already has {limit} items on loan; the limit for their tier is {limit}"],
        )

        # returning one frees a slot
        ok(env, state, "return_copy", {"copy_id": active_loans(state, mid)[0]["copy_id"]})
        ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": extra["copy_id"]})


class TestFinesBlockBorrowing:
    def test_paying_below_ten_dollars_unblocks(self, env: Environment, state: StateCopy) -> None:
        member = the_first(
            (
                m
                for m in state.rows("members")
                if m["status"] == "active"
                and day(m["expires_on"]) >= TODAY
                and owed(state, m["member_id"]) >= BORROWING_BLOCKED_FROM
            ),
            "active member owing $10 or more",
        )
        mid = member["member_id"]
        total = owed(state, mid)
        copy_ = the_first(shelf_copies(state, exclude_titles=titles_on_loan(state, mid)), "available copy")
        hold_title = the_first(
            (
                b
                for b in titles_without_shelf_copy(state)
                if b not in titles_on_loan(state, mid) and b not in {h["book_id"] for h in open_holds(state, mid)}
            ),
            "title to hold",
        )
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": mid, "copy_id": copy_["copy_id"]},
            rule="fines_block_borrowing",
            says=[f"owes ${total} in open fines", "blocked from $10.00"],
        )
        refused(
            env,
            state,
            "place_hold",
            {"member_id": mid, "book_id": hold_title},
            rule="fines_block_borrowing",
            says=[f"owes ${total}"],
        )

        fines = sorted(
            (f for f in state.rows("fines") if f["member_id"] == mid and f["status"] == "open"),
            key=lambda f: money(f["amount_paid"]) - money(f["amount"]),
        )
        biggest = fines[0]
        down_to_ten = total - BORROWING_BLOCKED_FROM
        assert money(biggest["amount"]) - money(biggest["amount_paid"]) > down_to_ten
        if down_to_ten > 0:
            ok(
                env,
                state,
                "pay_fine",
                {"fine_id": biggest["fine_id"], "member_id": mid, "amount": float(down_to_ten), "method": "card"},
            )
        assert owed(state, mid) == BORROWING_BLOCKED_FROM
        # exactly $10.00 still blocks
        refused(
            env,
            state,
            "checkout_copy",
            {"member_id": mid, "copy_id": copy_["copy_id"]},
            rule="fines_block_borrowing",
            says=["owes $10.00"],
        )

        ok(env, state, "pay_fine", {"fine_id": biggest["fine_id"], "member_id": mid, "amount": 0.01, "method": "cash"})
        assert money(ok(env, state, "get_member", {"member_id": mid})["fines_owed"]) == Decimal("9.99")
        ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": copy_["copy_id"]})
        ok(env, state, "place_hold", {"member_id": mid, "book_id": hold_title})

    # Regression: fines_block_borrowing compared the unrounded float SUM(amount - amount_paid) with 10,
    # so a balance of exactly $10.00 could sum to 9.999999999999998 and not block.
    def test_exactly_ten_dollars_blocks_whatever_the_float_rounding(self, env: Environment) -> None:
        assert 16.08 - 6.08 < 10  # the float trap the rule must not fall into
        member_id: dict[str, str] = {}

        def ten_dollars_owed(seed: dict[str, list[dict[str, Any]]]) -> None:
            owing = {f["member_id"] for f in seed["fines"] if f["status"] == "open"}
            member = next(
                m
                for m in seed["members"]
                if m["status"] == "active" and m["member_id"] not in owing and day(m["expires_on"]) >= TODAY
            )
            member_id["id"] = member["member_id"]
            seed["fines"].append(
                {
                    "fine_id": "FINE-9000",
                    "member_id": member["member_id"],
                    "kind": "damage",
                    "amount": 16.08,
                    "amount_paid": 6.08,
                    "status": "open",
                    "issued_on": "2026-03-01",
                }
            )

        variant_env = variant(env, ten_dollars_owed)
        s = variant_env.new_state()
        mid = member_id["id"]
        assert owed(s, mid) == BORROWING_BLOCKED_FROM
        copy_ = the_first(shelf_copies(s, exclude_titles=titles_on_loan(s, mid)), "available copy")
        hold_title = the_first(
            (
                b
                for b in titles_without_shelf_copy(s)
                if b not in titles_on_loan(s, mid) and b not in {h["book_id"] for h in open_holds(s, mid)}
            ),
            "title to hold",
        )
        refused(
            variant_env,
            s,
            "checkout_copy",
            {"member_id": mid, "copy_id": copy_["copy_id"]},
            rule="fines_block_borrowing",
            says=[f"Member {mid} owes $10.00 in open fines"],
        )
        refused(
            variant_env,
            s,
            "place_hold",
            {"member_id": mid, "book_id": hold_title},
            rule="fines_block_borrowing",
            says=["owes $10.00"],
        )
        # one cent less unblocks both
        paid = ok(
            variant_env, s, "pay_fine", {"fine_id": "FINE-9000", "member_id": mid, "amount": 0.01, "method": "cash"}
        )
        assert (money(paid["owed"]), paid["status"]) == (Decimal("9.99"), "open")
        ok(variant_env, s, "checkout_copy", {"member_id": mid, "copy_id": copy_["copy_id"]})
        ok(variant_env, s, "place_hold", {"member_id": mid, "book_id": hold_title})
        s.close()

    def test_membership_renewal_sees_a_single_cent_through_the_float_error(self, env: Environment) -> None:
        """no_fines_to_renew compares the rounded sum: a cent left on a float-unfriendly fine
        ($16.08 with $16.07 paid, 0.00999... as a float) still blocks, and paying it clears the way."""
        member_id: dict[str, str] = {}

        def one_cent_owed(seed: dict[str, list[dict[str, Any]]]) -> None:
            owing = {f["member_id"] for f in seed["fines"] if f["status"] == "open"}
            member = next(
                m
                for m in seed["members"]
                if m["status"] == "active" and m["member_id"] not in owing and m["tier"] != "premium"
            )
            member["expires_on"] = (TODAY + timedelta(days=10)).isoformat()
            member_id["id"] = member["member_id"]
            seed["fines"].append(
                {
                    "fine_id": "FINE-9000",
                    "member_id": member["member_id"],
                    "kind": "damage",
                    "amount": 16.08,
                    "amount_paid": 16.07,
                    "status": "open",
                    "issued_on": "2026-03-01",
                }
            )

        variant_env = variant(env, one_cent_owed)
        s = variant_env.new_state()
        mid = member_id["id"]
        assert 16.08 - 16.07 != 0.01 and owed(s, mid) == CENT
        refused(
            variant_env,
            s,
            "renew_membership",
            {"member_id": mid},
            rule="no_fines_to_renew",
            says=[f"Member {mid} owes $0.01", "must be settled before renewing"],
        )
        paid = ok(
            variant_env, s, "pay_fine", {"fine_id": "FINE-9000", "member_id": mid, "amount": 0.01, "method": "card"}
        )
        assert (money(paid["owed"]), paid["status"]) == (Decimal("0.00"), "paid")
        expiry = TODAY + timedelta(days=10)
        result = ok(variant_env, s, "renew_membership", {"member_id": mid})
        assert result["expires_on"] == expiry.replace(year=expiry.year + 1).isoformat()
        s.close()


class TestRenewalRules:
    def test_refused_while_others_wait(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(
            (
                x
                for x in active_loans(state)
                if day(x["due_on"]) >= TODAY
                and x["renewals"] < tier_of(state, x["member_id"])["max_renewals"]
                and waiting_queue(state, book_of_copy(state, x["copy_id"])["book_id"])
            ),
            "on-time loan of a title others wait for",
        )
        waiting = len(waiting_queue(state, book_of_copy(state, loan["copy_id"])["book_id"]))
        refused(
            env,
            state,
            "renew_loan",
            TestRenewLoan.renew(loan),
            rule="holds_block_renewal",
            says=[f"Other members are waiting for this title ({waiting} hold(s))"],
        )

    def test_refused_when_overdue(self, env: Environment, state: StateCopy) -> None:
        loan = the_first((x for x in active_loans(state) if day(x["due_on"]) < TODAY), "overdue loan")
        refused(
            env,
            state,
            "renew_loan",
            TestRenewLoan.renew(loan),
            rule="no_renewing_overdue",
            says=[f"was due on {loan['due_on']} and is overdue", "must be returned, not renewed"],
        )

    def test_refused_over_the_renewal_limit(self, env: Environment, state: StateCopy) -> None:
        loan = the_first(TestRenewLoan.renewable(state), "renewable loan")
        tier = tier_of(state, loan["member_id"])
        limit = tier["max_renewals"]
        due = day(loan["due_on"])
        for _ in range(limit - loan["renewals"]):
            due += timedelta(days=tier["loan_days"])  # each renewal adds a period to the due date
            assert ok(env, state, "renew_loan", TestRenewLoan.renew(loan))["due_on"] == due.isoformat()
        assert table(state, "loans", "loan_id")[loan["loan_id"]]["renewals"] == limit
        assert table(state, "loans", "loan_id")[loan["loan_id"]]["due_on"] == due.isoformat()
        refused(
            env,
            state,
            "renew_loan",
            TestRenewLoan.renew(loan),
            rule="renewal_limit",
            says=[f"has been renewed {limit} time(s); the limit for the member's tier is {limit}"],
        )

    def test_a_new_hold_blocks_the_next_renewal(self, env: Environment, state: StateCopy) -> None:
        """Renewable a moment ago; once someone queues for the title (none on the shelf), it is not."""
        loans = TestRenewLoan.renewable(state)
        without = set(titles_without_shelf_copy(state))
        loan = the_first(
            (x for x in loans if book_of_copy(state, x["copy_id"])["book_id"] in without),
            "renewable loan of a title with no copy on the shelf",
        )
        book_id = book_of_copy(state, loan["copy_id"])["book_id"]
        member = the_first(
            (
                m
                for m in state.rows("members")
                if may_borrow(state, m)
                and m["member_id"] != loan["member_id"]
                and book_id not in titles_on_loan(state, m["member_id"])
                and len(open_holds(state, m["member_id"])) < tier_of(state, m["member_id"])["max_holds"]
            ),
            "member who may hold the title",
        )
        ok(env, state, "place_hold", {"member_id": member["member_id"], "book_id": book_id})
        refused(env, state, "renew_loan", TestRenewLoan.renew(loan), rule="holds_block_renewal", says=["(1 hold(s))"])


class TestMembershipRenewalWindowAndFee:
    def test_window_boundary_and_premium_fee(self, env: Environment) -> None:
        """A variant seed puts one premium member exactly 60 days from expiry and another 61 days."""
        ids: dict[str, str] = {}

        def premium_near_expiry(seed: dict[str, list[dict[str, Any]]]) -> None:
            owing = {f["member_id"] for f in seed["fines"] if f["status"] == "open"}
            premium = [
                m
                for m in seed["members"]
                if m["tier"] == "premium" and m["status"] == "active" and m["member_id"] not in owing
            ]
            premium[0]["expires_on"] = (TODAY + timedelta(days=RENEWAL_WINDOW_DAYS)).isoformat()
            premium[1]["expires_on"] = (TODAY + timedelta(days=RENEWAL_WINDOW_DAYS + 1)).isoformat()
            ids["in"], ids["out"] = premium[0]["member_id"], premium[1]["member_id"]

        variant_env = variant(env, premium_near_expiry)
        s = variant_env.new_state()
        fee = money(table(s, "membership_tiers", "tier")["premium"]["annual_fee"])
        assert fee == Decimal("25.00")

        refused(
            variant_env,
            s,
            "renew_membership",
            {"member_id": ids["out"]},
            rule="renewal_window",
            says=[f"runs until {(TODAY + timedelta(days=61)).isoformat()}"],
        )

        fine_id = next_id(s, "fines", "fine_id", "FINE")
        result = ok(variant_env, s, "renew_membership", {"member_id": ids["in"]})
        expiry = TODAY + timedelta(days=RENEWAL_WINDOW_DAYS)
        assert result == {
            "member_id": ids["in"],
            "tier": "premium",
            "expires_on": expiry.replace(year=expiry.year + 1).isoformat(),
            "fee_charged": float(fee),
        }
        fine = table(s, "fines", "fine_id")[fine_id]
        assert (
            fine["member_id"],
            fine["kind"],
            money(fine["amount"]),
            fine["status"],
            fine["loan_id"],
            fine["note"],
        ) == (ids["in"], "membership", fee, "open", None, "Annual membership fee")

        # the fee is a charge like any other: it blocks borrowing until paid, and cannot be waived
        copy_ = the_first(shelf_copies(s, exclude_titles=titles_on_loan(s, ids["in"])), "available copy")
        refused(
            variant_env,
            s,
            "checkout_copy",
            {"member_id": ids["in"], "copy_id": copy_["copy_id"]},
            rule="fines_block_borrowing",
            says=["owes $25.00"],
        )
        refused(
            variant_env,
            s,
            "waive_fine",
            {"fine_id": fine_id, "member_id": ids["in"], "reason": "loyal member"},
            rule="waive_overdue_only",
            says=["is a membership charge"],
        )
        # renewing again right away is refused: the fee is owed
        refused(
            variant_env, s, "renew_membership", {"member_id": ids["in"]}, rule="no_fines_to_renew", says=["owes $25.00"]
        )
        ok(variant_env, s, "pay_fine", {"fine_id": fine_id, "member_id": ids["in"], "amount": 25, "method": "card"})
        ok(variant_env, s, "checkout_copy", {"member_id": ids["in"], "copy_id": copy_["copy_id"]})
        s.close()


class TestDeterminism:
    @staticmethod
    def script(env: Environment, state: StateCopy) -> list[dict[str, Any]]:
        """A fixed mix of writes, chosen from the state, returning every structured result."""
        member = the_first(borrowers(state, free_slots=2), "member with two free loan slots")
        mid = member["member_id"]
        shelf = shelf_copies(state, exclude_titles=titles_on_loan(state, mid))
        overdue = the_first((x for x in active_loans(state) if day(x["due_on"]) < TODAY), "overdue loan")
        results = [
            ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": shelf[0]["copy_id"]}),
            ok(env, state, "checkout_copy", {"member_id": mid, "copy_id": shelf[1]["copy_id"]}),
            ok(env, state, "return_copy", {"copy_id": overdue["copy_id"]}),
        ]
        assert results[-1]["fine_charged"] > 0
        fine_id = next(
            f["fine_id"] for f in state.rows("fines") if f["loan_id"] == overdue["loan_id"] and f["kind"] == "overdue"
        )
        results.append(
            ok(
                env,
                state,
                "pay_fine",
                {"fine_id": fine_id, "member_id": overdue["member_id"], "amount": 0.05, "method": "cash"},
            )
        )
        results.append(ok(env, state, "report_lost", {"loan_id": results[0]["loan_id"], "member_id": mid}))
        return results

    def test_new_ids_follow_the_seeds_highest(self, env: Environment, state: StateCopy) -> None:
        """LOAN-00NN etc. continue from the highest seeded number, one step per new record."""

        def highest(table_name: str, column: str, prefix: str) -> int:
            return max(int(row[column].removeprefix(prefix + "-")) for row in state.rows(table_name))

        loans, fines, payments = (
            highest("loans", "loan_id", "LOAN"),
            highest("fines", "fine_id", "FINE"),
            highest("payments", "payment_id", "PAY"),
        )
        results = self.script(env, state)
        assert results[0]["loan_id"] == f"LOAN-{loans + 1:04d}"
        assert results[1]["loan_id"] == f"LOAN-{loans + 2:04d}"
        assert results[3]["fine_id"] == f"FINE-{fines + 1:04d}"  # the overdue fine of the return
        assert results[3]["payment_id"] == f"PAY-{payments + 1:04d}"
        assert results[4]["fine_id"] == f"FINE-{fines + 2:04d}"  # the lost-item charge

    def test_refused_calls_do_not_consume_ids(self, env: Environment, state: StateCopy) -> None:
        member = the_first(borrowers(state), "member who may borrow")
        copy_ = the_first(
            shelf_copies(state, exclude_titles=titles_on_loan(state, member["member_id"])), "available copy"
        )
        expected = next_id(state, "loans", "loan_id", "LOAN")
        refused(
            env, state, "checkout_copy", {"member_id": member["member_id"], "copy_id": "C-99999"}, rule="copy_exists"
        )
        refused(env, state, "checkout_copy", {"member_id": "M-9999", "copy_id": copy_["copy_id"]}, rule="member_exists")
        result = ok(env, state, "checkout_copy", {"member_id": member["member_id"], "copy_id": copy_["copy_id"]})
        assert result["loan_id"] == expected

    def test_same_calls_on_two_fresh_states_give_the_same_digest(self, env: Environment) -> None:
        first, second = env.new_state(), env.new_state()
        assert first.digest() == second.digest()
        results_first = self.script(env, first)
        results_second = self.script(env, second)
        assert results_first == results_second
        assert first.digest() == second.digest()
        assert first.digest() != env.template.digest()
        first.close()
        second.close()


# ---------------------------------------------------------------------------------------------
# bad arguments, for every tool
# ---------------------------------------------------------------------------------------------


def _schema(env: Environment, tool: str) -> dict[str, Any]:
    spec_tool = env.spec.tool(tool)
    assert spec_tool is not None
    return spec_tool.parameters


class TestBadArguments:
    @pytest.mark.parametrize("tool", TOOLS)
    def test_extra_argument(self, env: Environment, state: StateCopy, tool: str) -> None:
        error = refused(
            env,
            state,
            tool,
            {**VALID_ARGS[tool], "admin": True},
            kind="invalid_arguments",
            says=[f"Invalid arguments for {tool}", "admin", "unexpected"],
        )
        assert len(error.get("problems", ["one"])) == 1  # the base arguments themselves are valid

    @pytest.mark.parametrize("tool", [t for t in TOOLS if t != "find_member"])
    def test_missing_required_argument(self, env: Environment, state: StateCopy, tool: str) -> None:
        required = _schema(env, tool)["required"]
        assert required
        args = {k: v for k, v in VALID_ARGS[tool].items() if k != required[0]}
        refused(
            env, state, tool, args, kind="invalid_arguments", says=[required[0], REQUIRED, f"{required[0]} (required)"]
        )

    @pytest.mark.parametrize("tool", TOOLS)
    def test_wrong_type(self, env: Environment, state: StateCopy, tool: str) -> None:
        name = next(k for k, v in VALID_ARGS[tool].items() if isinstance(v, str))
        refused(
            env,
            state,
            tool,
            {**VALID_ARGS[tool], name: 12345},
            kind="invalid_arguments",
            says=[name, NOT_OF_TYPE, "string"],
        )

    @pytest.mark.parametrize(
        ("tool", "param"),
        [
            (tool, param)
            for tool in TOOLS
            for param in VALID_ARGS[tool]
            if tool
            in {
                "get_member",
                "get_book",
                "list_member_loans",
                "list_member_holds",
                "list_member_fines",
                "checkout_copy",
                "return_copy",
                "renew_loan",
                "place_hold",
                "cancel_hold",
                "pay_fine",
                "waive_fine",
                "report_lost",
                "update_member_contact",
                "renew_membership",
            }
            and param.endswith("_id")
        ],
    )
    def test_injection_string_as_id_fails_the_pattern(
        self, env: Environment, state: StateCopy, tool: str, param: str
    ) -> None:
        pattern = _schema(env, tool)["properties"][param]["pattern"]
        bad = VALID_ARGS[tool][param] + INJECTION
        refused(
            env,
            state,
            tool,
            {**VALID_ARGS[tool], param: bad},
            kind="invalid_arguments",
            says=[param, "does not match", pattern],
        )

    @pytest.mark.parametrize("tool", ["get_member", "pay_fine", "checkout_copy"])
    @pytest.mark.parametrize("arguments", [["M-1001"], "M-1001", 7])
    def test_arguments_must_be_an_object(self, env: Environment, state: StateCopy, tool: str, arguments: Any) -> None:
        refused(
            env, state, tool, arguments, kind="invalid_arguments", says=[f"Arguments to {tool} must be a JSON object"]
        )

    @pytest.mark.parametrize(
        ("tool", "param"),
        [
            ("find_member", "name"),
            ("waive_fine", "reason"),
            ("search_books", "query"),
            ("update_member_contact", "email"),
        ],
    )
    def test_huge_strings_are_refused_by_the_length_limit(
        self, env: Environment, state: StateCopy, tool: str, param: str
    ) -> None:
        refused(
            env,
            state,
            tool,
            {**VALID_ARGS[tool], param: "é" * 100_000},
            kind="invalid_arguments",
            says=[f"{param} is 100,000 characters long"],
        )

    def test_nested_values_are_refused(self, env: Environment, state: StateCopy) -> None:
        refused(
            env,
            state,
            "get_member",
            {"member_id": {"$ne": None}},
            kind="invalid_arguments",
            says=["member_id", NOT_OF_TYPE, "string"],
        )

    def test_no_arguments_at_all(self, env: Environment, state: StateCopy) -> None:
        refused(env, state, "find_member", None, rule="search_needs_criteria")
        refused(env, state, "get_member", None, kind="invalid_arguments", says=["member_id", REQUIRED])
