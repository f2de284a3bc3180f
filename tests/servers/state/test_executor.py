"""Tool-call semantics: argument checks, one transaction per call, errors that change nothing."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import jsonschema
import pytest

from servers import Environment, StateCopy


def call(env: Environment, state: StateCopy, tool: str, args: Any = None):
    return env.call(state, tool, args)


def test_success_commits_and_returns_structured_and_text(mini: Environment) -> None:
    state = mini.new_state()
    result = call(mini, state, "place_order", {"sku": "A-1", "quantity": 2, "note": "fragile"})
    assert not result.is_error
    assert result.structured == {
        "order_id": "ORD-0042",
        "sku": "A-1",
        "quantity": 2,
        "note": "fragile",
        "placed_at": "2026-01-05 12:00:00",
        "gift": False,
    }
    assert json.loads(result.text) == result.structured
    assert {r["sku"]: r["stock"] for r in state.rows("items")}["A-1"] == 1


def test_shapes_rows_scalar_message_and_json_columns(mini: Environment) -> None:
    state = mini.new_state()
    rows = call(mini, state, "search_items", {"query": "c"})
    assert rows.structured == {
        "rows": [
            {"sku": "B-2", "name": "Bucket", "in_stock": False},
            {"sku": "C-3", "name": "Candle", "in_stock": True},
        ],
        "count": 2,
        "truncated": False,
    }
    assert call(mini, state, "count_orders").structured == {"value": 1}
    message = call(mini, state, "restock", {"sku": "C-3", "delta": 5})
    assert (
        message.structured == {"message": "Stock of C-3 changed by 5."} and message.text == "Stock of C-3 changed by 5."
    )
    assert call(mini, state, "get_item", {"sku": "A-1"}).structured["tags"] == ["heavy", "iron"]


def test_rows_are_truncated_at_the_limit(mini_spec: dict[str, Any]) -> None:
    mini_spec["limits"] = {"max_rows": 2}
    env = Environment.from_spec(
        mini_spec, {"items": [{"sku": f"S-{i}", "name": f"Spoon {i}", "stock": 1, "price": 1.0} for i in range(5)]}
    )
    result = env.call(env.new_state(), "search_items", {"query": "Spoon"})
    assert result.structured["count"] == 2 and result.structured["truncated"] is True


def test_rule_violation_is_an_error_that_names_the_rule(mini: Environment) -> None:
    state = mini.new_state()
    before = state.digest()
    result = call(mini, state, "place_order", {"sku": "A-1", "quantity": 4})
    assert result.is_error
    assert result.text == "Only 3 of A-1 in stock."
    assert result.structured["error"] == {
        "type": "rule_violation",
        "message": "Only 3 of A-1 in stock.",
        "rule": "in_stock",
        "tool": "place_order",
        "step": 1,
    }
    assert state.digest() == before


def test_failure_after_writes_rolls_back_every_step_and_the_id_counter(mini: Environment) -> None:
    """restock breaks the table check in its only exec step; place_order's insert is undone when its
    later UPDATE fails, and the id it drew is handed out again."""
    state = mini.new_state()
    before = state.digest()
    result = call(mini, state, "restock", {"sku": "A-1", "delta": -10})
    assert result.is_error and result.text == "Stock cannot go below zero."
    assert result.structured["error"]["constraint"] == "stock_not_negative"
    assert state.digest() == before
    ok = call(mini, state, "place_order", {"sku": "C-3", "quantity": 1})
    assert ok.structured["order_id"] == "ORD-0042"


def test_exec_affects_check(mini: Environment) -> None:
    state = mini.new_state()
    before = state.digest()
    result = call(mini, state, "restock", {"sku": "Z-404", "delta": 1})
    assert result.is_error and result.text == "No item Z-404."
    assert state.digest() == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({}, '"sku" is a required property'),
        ({"sku": "A-1"}, '"quantity" is a required property'),
        ({"sku": "A-1", "quantity": "two"}, 'quantity: "two" is not of type "integer"'),
        ({"sku": "A-1", "quantity": 0}, "quantity: 0 is less than the minimum of 1"),
        ({"sku": "A-1", "quantity": 1, "coupon": "FREE"}, "'coupon' was unexpected"),
        ({"sku": ["A-1"], "quantity": 1}, 'sku: ["A-1"] is not of type "string"'),
        ({"sku": "A-1", "quantity": 1.5}, 'quantity: 1.5 is not of type "integer"'),
        ({"sku": "A-1", "quantity": float("nan")}, "must be a finite number"),
        ({"sku": "A-1", "quantity": float("inf")}, "must be a finite number"),
        ({"sku": "x" * 70_000, "quantity": 1}, "the limit is 65,536"),
        ({"sku": "A-1", "quantity": 1, "note": {"a": {"b": {}}}}, 'note: {"a":{"b":{}}} is not of type "string"'),
        ("not an object", "must be a JSON object"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(mini: Environment, args: Any, fragment: str) -> None:
    state = mini.new_state()
    before = state.digest()
    result = call(mini, state, "place_order", args)
    assert result.is_error
    assert result.structured["error"]["type"] == "invalid_arguments"
    assert fragment in result.text
    if isinstance(args, dict):
        assert result.text.endswith("Parameters: sku (required), quantity (required), note, gift.")
    assert state.digest() == before


def test_deeply_nested_argument(mini: Environment) -> None:
    deep: Any = "x"
    for _ in range(500):
        deep = [deep]
    result = call(mini, mini.new_state(), "place_order", {"sku": "A-1", "quantity": 1, "note": deep})
    assert result.is_error and "nested more than 32 levels" in result.text


def test_unknown_tool_lists_the_tools(mini: Environment) -> None:
    result = call(mini, mini.new_state(), "drop_everything", {})
    assert result.is_error and result.structured["error"]["type"] == "unknown_tool"
    assert "Available tools: count_orders, get_item, place_order, restock, search_items" in result.text


@pytest.mark.parametrize(
    "hostile",
    [
        "A-1' OR '1'='1",
        "A-1'; DROP TABLE items; --",
        "'); DELETE FROM orders; --",
        "Ω≈ç√∫˜µ≤≥÷ 🦄 \u202e",
        "%",
        "_",
    ],
)
def test_hostile_strings_are_only_ever_values(mini: Environment, hostile: str) -> None:
    state = mini.new_state()
    before = state.digest()
    found = call(mini, state, "get_item", {"sku": hostile})
    assert found.is_error and found.structured["error"]["rule"] is None and "No item" in found.text
    order = call(mini, state, "place_order", {"sku": hostile, "quantity": 1})
    assert order.is_error and order.structured["error"]["rule"] == "item_exists"
    assert state.digest() == before
    # the same string is stored and read back intact where a free-text value is accepted
    saved = call(mini, state, "place_order", {"sku": "C-3", "quantity": 1, "note": hostile})
    assert saved.structured["note"] == hostile
    assert len(state.rows("items")) == 3


def test_a_one_megabyte_string_is_stored_when_the_limit_allows(mini_spec: dict[str, Any]) -> None:
    mini_spec["limits"] = {"max_string_length": 2_000_000, "max_value_bytes": 8_000_000, "max_result_bytes": 8_000_000}
    env = Environment.from_spec(mini_spec, {"items": [{"sku": "A-1", "name": "Anvil", "stock": 3, "price": 1.0}]})
    state = env.new_state()
    note = "é" * 1_000_000
    result = env.call(state, "place_order", {"sku": "A-1", "quantity": 1, "note": note})
    assert not result.is_error and result.structured["note"] == note


def test_wrong_value_for_a_typed_column_is_a_readable_error(mini: Environment) -> None:
    state = mini.new_state()
    before = state.digest()
    result = call(mini, state, "restock", {"sku": "A-1", "delta": 10**30})
    assert result.is_error and "outside the 64-bit integer range" in result.text
    result = call(mini, state, "restock", {"sku": "A-1", "delta": 2**63 - 1})
    assert result.is_error and result.structured["error"]["type"] == "execution_error"
    assert state.digest() == before


def test_runaway_statement_is_stopped_by_the_budget(mini_spec: dict[str, Any]) -> None:
    mini_spec["limits"] = {"max_sql_steps": 10_000}
    mini_spec["tools"].append(
        {
            "name": "spin",
            "description": "An expensive query.",
            "kind": "read",
            "steps": [
                {
                    "kind": "return",
                    "shape": "scalar",
                    "sql": (
                        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
                        "SELECT COUNT(*) FROM n"
                    ),
                }
            ],
        }
    )
    env = Environment.from_spec(mini_spec, {})
    state = env.new_state()
    result = env.call(state, "spin", {})
    assert result.is_error and "was stopped" in result.text
    assert "more than 10,000 SQL steps (limits.max_sql_steps)" in result.text
    assert result.structured["error"]["limit"] == "max_sql_steps"
    assert not env.call(state, "count_orders", {}).is_error  # the state is still usable


@pytest.mark.parametrize("value", ["A-1\x00", "a\x00b", "\x00"])
def test_nul_characters_are_refused_not_truncated(mini: Environment, value: str) -> None:
    """SQLite's text functions stop at NUL, so 'A-1\\u0000' would act as 'A-1'; it is an argument error instead,
    in a top-level string, in a nested value, and in a key."""
    state = mini.new_state()
    before = state.digest()
    for tool, args in (
        ("get_item", {"sku": value}),
        ("search_items", {"query": value}),
        ("place_order", {"sku": "C-3", "quantity": 1, "note": value}),
    ):
        result = call(mini, state, tool, args)
        assert result.is_error and result.structured["error"]["type"] == "invalid_arguments", (tool, result.text)
        assert "contains a NUL character (\\u0000)" in result.text
    nested = call(mini, state, "place_order", {"sku": "C-3", "quantity": 1, "note": [{"k": value}]})
    assert nested.is_error and "note[0].k contains a NUL character" in nested.text
    keyed = call(mini, state, "place_order", {"sku": "C-3", "quantity": 1, "note": {value: 1}})
    assert keyed.is_error and "has a key containing a NUL character" in keyed.text
    assert state.digest() == before


def test_clock_is_the_environment_clock_everywhere(mini_spec: dict[str, Any]) -> None:
    mini_spec["tools"].append(
        {
            "name": "clock",
            "description": "What time the env thinks it is.",
            "kind": "read",
            "parameters": {
                "type": "object",
                "properties": {
                    "at": {"type": "string", "description": "A time value."},
                    "modifier": {"type": "string", "description": "A modifier."},
                },
                "required": ["at", "modifier"],
            },
            "steps": [
                {
                    "kind": "return",
                    "shape": "row",
                    "sql": "SELECT now() AS now, today() AS today, date(:at) AS d, datetime(:at, :modifier) AS local, "
                    "strftime('%Y', :at) AS y, julianday(:at) - julianday(today()) AS days",
                }
            ],
        }
    )
    env = Environment.from_spec(mini_spec, {})
    result = env.call(env.new_state(), "clock", {"at": "now", "modifier": "localtime"})
    assert result.structured == {
        "now": "2026-01-05 12:00:00",
        "today": "2026-01-05",
        "d": "2026-01-05",
        "local": "2026-01-05 12:00:00",
        "y": "2026",
        "days": 0.5,
    }


def test_ids_are_deterministic_per_state_and_copies_are_isolated(mini: Environment) -> None:
    first, second = mini.new_state(), mini.new_state()
    for state in (first, second):
        ids = [call(mini, state, "place_order", {"sku": "C-3", "quantity": 1}).structured["order_id"] for _ in range(3)]
        assert ids == ["ORD-0042", "ORD-0043", "ORD-0044"]
    assert first.digest() == second.digest()
    call(mini, first, "restock", {"sku": "C-3", "delta": 1})
    assert first.digest() != second.digest()
    assert {r["sku"]: r["stock"] for r in second.rows("items")}["C-3"] == 37


def test_shared_read_only_state_refuses_writes(mini: Environment) -> None:
    state = mini.new_state()
    before = state.digest()
    refused = mini.executor.call(state, "place_order", {"sku": "C-3", "quantity": 1}, read_only=True)
    assert refused.is_error and refused.structured["error"]["type"] == "read_only_state"
    assert "/s/<key>/mcp" in refused.text
    assert not mini.executor.call(state, "get_item", {"sku": "C-3"}, read_only=True).is_error
    assert state.digest() == before


def test_authorizer_is_a_second_line_behind_validation(mini: Environment) -> None:
    """SQL that slipped past static checks still cannot touch the schema, other files or the clock."""
    state = mini.new_state()
    state.set_mode("read")
    for sql in (
        "SELECT name FROM sqlite_master",
        "PRAGMA foreign_keys = OFF",
        "ATTACH DATABASE ':memory:' AS x",
        "SELECT random()",
        "SELECT load_extension('x')",
        "DELETE FROM items",
        "CREATE TABLE t (a)",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="not authorized|prohibited"):
            state.conn.execute(sql)
    state.set_mode("write")
    for sql in ("DROP TABLE items", "CREATE TABLE t (a)", "PRAGMA writable_schema = ON", "SELECT zeroblob(1000000000)"):
        with pytest.raises(sqlite3.DatabaseError, match="not authorized|prohibited"):
            state.conn.execute(sql)
    state.conn.execute("UPDATE items SET stock = 1 WHERE sku = 'C-3'")  # allowed in write mode
    state.set_mode("internal")


def test_output_schemas_type_computed_values(library: Environment) -> None:
    """A computed column (no declared type) still says what JSON it can be, so strict clients have a schema
    to check; what a call returns fits it."""
    compiled = library.executor.tools["get_member"]
    fines = compiled.output_schema["properties"]["fines_owed"]
    assert fines == {"type": ["string", "number", "null"]}
    result = library.call(library.new_state(), "get_member", {"member_id": "M-1005"})
    jsonschema.validate(result.structured, compiled.output_schema)
