"""The number contract: values round-trip exactly, the helpers round and format money exactly, sum()/avg() are
exact on every SQLite, and JSON built in SQL is never given a REAL (whose rendering depends on the SQLite)."""

from __future__ import annotations

import copy
import json
import math
import sqlite3
from typing import Any

import pytest

from servers import Environment, SpecError, StateCopy
from servers.state.store import function_error

_INT64_MAX = 2**63 - 1


def _read(name: str, sql: str, properties: dict[str, Any] | None = None, shape: str = "scalar") -> dict[str, Any]:
    properties = properties or {}
    return {
        "name": name,
        "description": f"The {name} tool of the ledger.",
        "kind": "read",
        "parameters": {"type": "object", "properties": properties, "required": sorted(properties)},
        "steps": [{"kind": "return", "sql": sql, "shape": shape}],
    }


def _number(description: str) -> dict[str, Any]:
    return {"type": "number", "description": description}


def _integer(description: str) -> dict[str, Any]:
    return {"type": "integer", "description": description}


_ENTRY = {"entry_id": {"type": "string", "description": "The entry."}}
_NOTE = {"note": {"type": "string", "description": "Entries with this note."}}

LEDGER: dict[str, Any] = {
    "id": "ledger",
    "name": "Ledger",
    "version": "0.1.0",
    "description": "Amounts as reals and as cents, for the number tests.",
    "domain": "finance",
    "clock": "2026-01-05T12:00:00Z",
    "policy": "Numbers are exact.",
    "tables": [
        {
            "name": "entries",
            "columns": [
                {"name": "entry_id", "type": "text", "primary_key": True},
                {"name": "amount", "type": "real"},
                {"name": "cents", "type": "integer"},
                {"name": "note", "type": "text"},
            ],
            "checks": [
                {
                    "name": "cents_are_whole",
                    "expression": "cents IS NULL OR mul_div(cents, 1, 1) = cents",
                    "message": "Cents are whole.",
                }
            ],
        }
    ],
    "tools": [
        {
            "name": "record",
            "description": "Record an entry.",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {
                    **_ENTRY,
                    "amount": _number("The amount."),
                    "cents": _integer("The amount in cents."),
                },
                "required": ["entry_id"],
            },
            "steps": [
                {
                    "kind": "require",
                    "sql": "SELECT 1 FROM entries WHERE entry_id = :entry_id",
                    "expect": "none",
                    "error": "{entry_id} exists.",
                },
                {
                    "kind": "exec",
                    "sql": "INSERT INTO entries (entry_id, amount, cents) VALUES (:entry_id, :amount, :cents)",
                },
                {
                    "kind": "return",
                    "sql": "SELECT entry_id, amount, cents FROM entries WHERE entry_id = :entry_id",
                    "shape": "row",
                },
            ],
        },
        _read("get_entry", "SELECT entry_id, amount, cents FROM entries WHERE entry_id = :entry_id", _ENTRY, "row"),
        _read("echo", "SELECT :x", {"x": _number("A number.")}),
        _read("add", "SELECT :a + :b", {"a": _number("A number."), "b": _number("Another.")}),
        _read("round_whole", "SELECT round_half_even(:x)", {"x": _number("A number.")}),
        _read(
            "round_places",
            "SELECT round_half_even(:x, :digits)",
            {"x": _number("A number."), "digits": _integer("Places.")},
        ),
        _read(
            "prorate",
            "SELECT mul_div(:a, :b, :c)",
            {"a": _integer("Amount."), "b": _integer("Numerator."), "c": _integer("Denominator.")},
        ),
        _read("money", "SELECT money_text(:cents)", {"cents": _integer("Cents.")}),
        _read(
            "totals",
            "SELECT sum(amount) AS amount_sum, sum(cents) AS cents_sum, avg(amount) AS amount_avg, "
            "avg(cents) AS cents_avg, count(*) AS n FROM entries WHERE note = :note",
            _NOTE,
            "row",
        ),
        _read(
            "running",
            "SELECT entry_id, sum(cents) OVER (ORDER BY entry_id ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS pair, "
            "sum(amount) OVER (ORDER BY entry_id) AS amount_so_far FROM entries WHERE note = :note ORDER BY entry_id",
            _NOTE,
            "rows",
        ),
        _read(
            "as_json",
            "SELECT json_object('cents', cents, 'text', money_text(cents), 'whole', CAST(amount AS INTEGER)) "
            "FROM entries WHERE entry_id = :entry_id",
            _ENTRY,
        ),
    ],
}

TENTHS = [{"entry_id": f"T-{i}", "amount": 0.1, "cents": 10, "note": "tenths"} for i in range(10)]
SEED = {
    "entries": [
        *TENTHS,
        {"entry_id": "B-1", "amount": 1e16, "cents": 2**62, "note": "big"},
        {"entry_id": "B-2", "amount": 1.0, "cents": 2**62, "note": "big"},
        {"entry_id": "B-3", "amount": -1e16, "cents": -(2**62), "note": "big"},
        {"entry_id": "O-1", "amount": 1.0, "cents": _INT64_MAX, "note": "overflow"},
        {"entry_id": "O-2", "amount": 1.0, "cents": 1, "note": "overflow"},
        {"entry_id": "W-1", "cents": 100, "amount": 0.5, "note": "window"},
        {"entry_id": "W-2", "cents": 250, "amount": 0.25, "note": "window"},
        {"entry_id": "W-3", "cents": -50, "amount": 0.1, "note": "window"},
    ]
}


@pytest.fixture(scope="module")
def ledger() -> Environment:
    return Environment.from_spec(LEDGER, SEED)


def value(env: Environment, tool: str, **arguments: Any) -> Any:
    result = env.call(env.new_state(), tool, arguments)
    assert not result.is_error, result.text
    assert json.loads(result.text) == result.structured  # the text an agent reads says the same, exactly
    return result.structured["value"]


@pytest.mark.parametrize(
    "amount", [0.1 + 0.2, 2.675, 1e15, 1e15 + 0.3, 1e-300, 5e-324, 1.7976931348623157e308, 123456789.98765433]
)
def test_reals_round_trip_through_state_results_and_json(ledger: Environment, amount: float) -> None:
    state = ledger.new_state()
    written = ledger.call(state, "record", {"entry_id": "R", "amount": amount})
    assert not written.is_error, written.text
    assert written.structured["amount"] == amount
    assert json.loads(written.text)["amount"] == amount  # shortest round-trip text, never 15 digits
    assert repr(amount) in written.text
    assert next(r["amount"] for r in state.rows("entries") if r["entry_id"] == "R") == amount
    assert json.loads(ledger.call(state, "get_entry", {"entry_id": "R"}).text)["amount"] == amount
    assert value(ledger, "echo", x=amount) == amount


def test_arithmetic_results_are_doubles_shown_exactly(ledger: Environment) -> None:
    assert value(ledger, "add", a=0.1, b=0.2) == 0.30000000000000004
    assert value(ledger, "add", a=1e15, b=0.3) == 1000000000000000.25


@pytest.mark.parametrize("cents", [0, -5, 9_007_199_254_740_993, 2**62 + 1, _INT64_MAX, -(2**63)])
def test_large_cents_are_exact(ledger: Environment, cents: int) -> None:
    state = ledger.new_state()
    written = ledger.call(state, "record", {"entry_id": "C", "cents": cents})
    assert not written.is_error, written.text
    assert written.structured["cents"] == cents and json.loads(written.text)["cents"] == cents
    assert str(cents) in written.text


def test_negative_zero_is_zero(ledger: Environment) -> None:
    echoed = ledger.call(ledger.new_state(), "echo", {"x": -0.0})
    assert echoed.structured["value"] == 0 and math.copysign(1.0, echoed.structured["value"]) == 1.0
    assert "-0" not in echoed.text
    state = ledger.new_state()
    written = ledger.call(state, "record", {"entry_id": "Z", "amount": -0.0})
    assert math.copysign(1.0, written.structured["amount"]) == 1.0 and "-0" not in written.text
    assert value(ledger, "round_places", x=-0.001, digits=2) == 0.0
    assert math.copysign(1.0, value(ledger, "round_places", x=-0.001, digits=2)) == 1.0


@pytest.mark.parametrize(
    ("x", "whole"),
    [(2.5, 2), (3.5, 4), (-2.5, -2), (-3.5, -4), (0.5, 0), (1.5, 2), (2.675, 3), (7, 7), (1e15 + 0.5, 10**15)],
)
def test_round_half_even_to_an_integer(ledger: Environment, x: float, whole: int) -> None:
    result = value(ledger, "round_whole", x=x)
    assert result == whole and isinstance(result, int)


@pytest.mark.parametrize(
    ("x", "digits", "rounded"),
    [
        (2.675, 2, 2.68),
        (1.005, 2, 1.0),
        (2.665, 2, 2.66),
        (0.125, 2, 0.12),
        (-0.125, 2, -0.12),
        (19.999, 2, 20.0),
        (0.1 + 0.2, 2, 0.3),
        (7, 2, 7.0),
        (1.23456789, 0, 1.0),
        (2.5, 0, 2.0),
    ],
)
def test_round_half_even_to_places_rounds_the_printed_decimal(
    ledger: Environment, x: float, digits: int, rounded: float
) -> None:
    result = value(ledger, "round_places", x=x, digits=digits)
    assert result == rounded and isinstance(result, float)


def test_round_half_even_refuses_unbounded_digits(ledger: Environment) -> None:
    result = ledger.call(ledger.new_state(), "round_places", {"x": 1.5, "digits": 21})
    assert result.is_error


@pytest.mark.parametrize(
    ("a", "b", "c", "quotient"),
    [
        (1999, 1, 2, 1000),  # 999.5 -> 1000 (even)
        (1997, 1, 2, 998),  # 998.5 -> 998 (even)
        (-1999, 1, 2, -1000),
        (-1997, 1, 2, -998),
        (1999, 3, 7, 857),  # 856.71...
        (1999, -3, 7, -857),
        (5, 1, -2, -2),  # -2.5 -> -2
        (10_000, 30, 31, 9677),  # 9677.419...
        (_INT64_MAX, _INT64_MAX, _INT64_MAX, _INT64_MAX),  # exact through a 126-bit product
    ],
)
def test_mul_div_is_exact_with_halves_to_even(ledger: Environment, a: int, b: int, c: int, quotient: int) -> None:
    assert value(ledger, "prorate", a=a, b=b, c=c) == quotient


def test_mul_div_by_zero_is_a_tool_error_that_changes_nothing(ledger: Environment) -> None:
    state = ledger.new_state()
    before = state.digest()
    result = ledger.call(state, "prorate", {"a": 1, "b": 1, "c": 0})
    assert result.is_error and result.structured["error"]["type"] == "execution_error"
    assert state.digest() == before


def test_function_errors_keep_their_message(ledger: Environment) -> None:
    """Python's sqlite3 reports any failure inside a function as a generic 'user-defined ...' error;
    function_error() gives back what went wrong, for the tool error's message."""
    state = ledger.new_state()
    with state.mode("read"):
        for sql, message in [
            ("SELECT mul_div(1, 1, 0)", "division by zero"),
            ("SELECT mul_div(1.5, 1, 2)", "takes integers"),
            ("SELECT money_text(19.99)", "takes integers"),
            ("SELECT round_half_even(1.5, -1)", "digits must be an integer from 0 to 20"),
            ("SELECT sum(cents) FROM entries WHERE note = 'overflow'", "integer overflow"),
        ]:
            with pytest.raises(sqlite3.OperationalError) as caught:
                state.conn.execute(sql).fetchall()
            detail = function_error(caught.value)
            assert detail is not None and message in detail, (sql, detail)
            assert function_error(caught.value) is None  # read once


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (1999, "19.99"),
        (-5, "-0.05"),
        (0, "0.00"),
        (100, "1.00"),
        (-123456, "-1234.56"),
        (2**62, "46116860184273879.04"),
    ],
)
def test_money_text(ledger: Environment, cents: int, text: str) -> None:
    assert value(ledger, "money", cents=cents) == text


def test_sum_of_tenths_is_exactly_one(ledger: Environment) -> None:
    totals = ledger.call(ledger.new_state(), "totals", {"note": "tenths"}).structured
    assert totals["amount_sum"] == 1.0 == math.fsum([0.1] * 10) != sum([0.1] * 10)
    assert totals["cents_sum"] == 100 and isinstance(totals["cents_sum"], int)
    assert totals["amount_avg"] == 0.1 and totals["cents_avg"] == 10.0 and totals["n"] == 10


def test_sums_are_exact_where_doubles_cancel(ledger: Environment) -> None:
    totals = ledger.call(ledger.new_state(), "totals", {"note": "big"}).structured
    assert totals["amount_sum"] == 1.0 == math.fsum([1e16, 1.0, -1e16])  # a running double sum gives 0.0
    assert totals["cents_sum"] == 2**62 and isinstance(totals["cents_sum"], int)  # 2**63 on the way: no overflow
    assert totals["cents_avg"] == 2**62 / 3


def test_sum_of_no_rows_is_null(ledger: Environment) -> None:
    totals = ledger.call(ledger.new_state(), "totals", {"note": "nothing"}).structured
    assert totals == {"amount_sum": None, "cents_sum": None, "amount_avg": None, "cents_avg": None, "n": 0}


def test_integer_overflow_is_a_tool_error(ledger: Environment) -> None:
    result = ledger.call(ledger.new_state(), "totals", {"note": "overflow"})
    assert result.is_error and result.structured["error"]["type"] == "execution_error"
    assert result.text == "totals failed: integer overflow."


def test_a_helper_failure_reads_as_what_went_wrong(ledger: Environment) -> None:
    result = ledger.call(ledger.new_state(), "prorate", {"a": 1, "b": 1, "c": 0})
    assert result.text == "prorate failed: mul_div(a, b, c): division by zero (c is 0)."


def test_window_sums(ledger: Environment) -> None:
    rows = ledger.call(ledger.new_state(), "running", {"note": "window"}).structured["rows"]
    assert [r["pair"] for r in rows] == [100, 350, 200]
    assert [r["amount_so_far"] for r in rows] == [0.5, 0.75, 0.85]  # 0.75 + 0.1 is 0.85 exactly rounded


def test_sum_distinct_and_the_evaluation_connection(ledger: Environment) -> None:
    """Task checks run on the state copy's own connection: the exact sum() is there too."""
    state: StateCopy = ledger.new_state()
    with state.mode("read"):
        row = state.conn.execute(
            "SELECT sum(DISTINCT amount), sum(amount), typeof(sum(cents)) FROM entries WHERE note = 'tenths'"
        ).fetchone()
    assert row == (0.1, 1.0, "integer")


def test_json_built_in_sql_uses_cents(ledger: Environment) -> None:
    state = ledger.new_state()
    ledger.call(state, "record", {"entry_id": "J", "amount": 19.99, "cents": 1999})
    assert ledger.call(state, "as_json", {"entry_id": "J"}).structured["value"] == {
        "cents": 1999,
        "text": "19.99",
        "whole": 19,
    }


# -- refused at load ----------------------------------------------------------------------------


def _with_return(sql: str) -> dict[str, Any]:
    spec = copy.deepcopy(LEDGER)
    spec["tools"].append(_read("probe", sql, _ENTRY))
    return spec


def _issues(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(spec, SEED)
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "SELECT json_object('amount', amount) FROM entries WHERE entry_id = :entry_id",
            "the REAL column entries.amount",
        ),
        ("SELECT json_array(cents / 100.0) FROM entries WHERE entry_id = :entry_id", "the float literal 100.0"),
        ("SELECT json_group_array(amount * 2) FROM entries WHERE entry_id = :entry_id", "REAL column entries.amount"),
        ("SELECT json_object('a', avg(cents)) FROM entries WHERE entry_id = :entry_id", "avg()"),
        ("SELECT json_object('a', round(cents, 2)) FROM entries WHERE entry_id = :entry_id", "round(x, digits)"),
        ("SELECT json_object('a', round_half_even(amount, 2)) FROM entries WHERE entry_id = :entry_id", "round_half"),
        (
            "WITH e AS (SELECT amount AS a FROM entries WHERE entry_id = :entry_id) "
            "SELECT json_object('a', e.a) FROM e",
            "the REAL column entries.amount",
        ),
        (
            "SELECT json_object('a', (SELECT max(amount) FROM entries)) FROM entries WHERE entry_id = :entry_id",
            "the REAL column entries.amount",
        ),
        ("SELECT json_set('{}', '$.a', coalesce(amount, 0)) FROM entries WHERE entry_id = :entry_id", "REAL column"),
    ],
)
def test_json_given_a_real_is_refused_with_tool_step_and_remedy(sql: str, reason: str) -> None:
    issues = _issues(_with_return(sql))
    assert len(issues) == 1
    assert issues[0].startswith("tools.probe.steps[0](return).sql")
    assert reason in issues[0]
    assert "15 significant digits" in issues[0] and "money_text" in issues[0] and "minor units" in issues[0]


def test_json_real_guard_sees_exec_steps() -> None:
    spec = copy.deepcopy(LEDGER)
    spec["tools"][0]["steps"][1]["sql"] = (
        "INSERT INTO entries (entry_id, amount, cents, note) "
        "VALUES (:entry_id, :amount, :cents, json_array(:amount * 1.5))"
    )
    issues = _issues(spec)
    assert len(issues) == 1 and issues[0].startswith("tools.record.steps[1](exec).sql")
    assert "json_array() is given the float literal 1.5" in issues[0]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT json_object('c', cents, 't', money_text(cents)) FROM entries WHERE entry_id = :entry_id",
        "SELECT json_object('c', CAST(amount * 100 AS INTEGER)) FROM entries WHERE entry_id = :entry_id",
        "SELECT json_object('c', round_half_even(amount * 100)) FROM entries WHERE entry_id = :entry_id",
        "SELECT json_object('c', printf('%.2f', amount)) FROM entries WHERE entry_id = :entry_id",
        "SELECT json_object('c', mul_div(cents, 3, 7), 'n', sum(cents)) FROM entries WHERE entry_id = :entry_id",
        "SELECT json_object('big', (amount > 1.5)) FROM entries WHERE entry_id = :entry_id",
        "SELECT json_group_array(entry_id) FROM entries WHERE amount > 0.5 AND entry_id = :entry_id",
    ],
)
def test_json_given_no_real_loads(sql: str) -> None:
    Environment.from_spec(_with_return(sql), SEED)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT total(cents) FROM entries WHERE entry_id = :entry_id", "coalesce(sum(x), 0)"),
        (
            "SELECT sum(cents) OVER (ORDER BY entry_id ROWS BETWEEN 2 PRECEDING AND 1 PRECEDING) FROM entries "
            "WHERE entry_id = :entry_id",
            "a frame that ends before the current row",
        ),
        (
            "SELECT avg(cents) OVER (ORDER BY entry_id ROWS BETWEEN 1 FOLLOWING AND 2 FOLLOWING) FROM entries "
            "WHERE entry_id = :entry_id",
            "a frame that starts after the current row",
        ),
        (
            "SELECT sum(cents) FILTER (WHERE cents > 0) OVER (ORDER BY entry_id) FROM entries "
            "WHERE entry_id = :entry_id",
            "a FILTER clause",
        ),
    ],
)
def test_what_the_exact_aggregates_cannot_do_is_refused(sql: str, message: str) -> None:
    issues = _issues(_with_return(sql))
    assert len(issues) == 1 and issues[0].startswith("tools.probe.steps[0](return).sql") and message in issues[0]


def test_output_schemas_know_the_helpers_types(ledger: Environment) -> None:
    def schema(tool: str) -> Any:
        return ledger.tools[tool].output_schema["properties"]["value"]

    assert schema("prorate") == {"type": ["integer", "null"]}
    assert schema("round_whole") == {"type": ["integer", "null"]}
    assert schema("round_places") == {"type": ["number", "null"]}
    assert schema("money") == {"type": ["string", "null"]}
