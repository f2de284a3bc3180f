"""for_each steps and rows-lets: loops over list arguments and over rows, inside the call's one transaction."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from servers import Environment, SpecError
from tests.conftest import MINI_SEED, MINI_SPEC

SHOP: dict[str, Any] = {
    "id": "shop",
    "name": "Loop shop",
    "version": "0.1.0",
    "description": "Orders of several lines.",
    "domain": "retail",
    "clock": "2026-01-05T12:00:00Z",
    "policy": "Sell only what is in stock.",
    "sequences": [{"prefix": "ORD", "table": "orders", "column": "order_id"}],
    "tables": [
        {
            "name": "items",
            "columns": [
                {"name": "sku", "type": "text", "primary_key": True},
                {"name": "name", "type": "text", "nullable": False},
                {"name": "stock", "type": "integer", "nullable": False},
                {"name": "fragile", "type": "boolean", "nullable": False, "default": False},
            ],
            "checks": [{"name": "stock_not_negative", "expression": "stock >= 0", "message": "Out of stock."}],
        },
        {
            "name": "orders",
            "columns": [
                {"name": "order_id", "type": "text", "primary_key": True},
                {"name": "status", "type": "text", "nullable": False, "enum": ["placed", "cancelled"]},
            ],
        },
        {
            "name": "order_lines",
            "columns": [
                {"name": "order_id", "type": "text", "primary_key": True, "references": "orders.order_id"},
                {"name": "sku", "type": "text", "primary_key": True, "references": "items.sku"},
                {"name": "quantity", "type": "integer", "nullable": False},
            ],
        },
    ],
    "tools": [
        {
            "name": "place_order",
            "description": "Order several items at once.",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {
                    "lines": {
                        "type": "array",
                        "description": "What to order.",
                        "items": {
                            "type": "object",
                            "properties": {
                                "sku": {"type": "string", "description": "The SKU."},
                                "quantity": {"type": "integer", "description": "How many.", "minimum": 1},
                            },
                            "required": ["sku", "quantity"],
                            "additionalProperties": False,
                        },
                    }
                },
                "required": ["lines"],
            },
            "steps": [
                {"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
                {"kind": "exec", "sql": "INSERT INTO orders (order_id, status) VALUES (:order_id, 'placed')"},
                {
                    "kind": "for_each",
                    "over": "lines",
                    "as": "line",
                    "steps": [
                        {
                            "kind": "require",
                            "sql": "SELECT 1 FROM items WHERE sku = :line_sku",
                            "error": "Line {line_index}: no item {line_sku}.",
                            "rule": "item_exists",
                        },
                        {
                            "kind": "require",
                            "sql": "SELECT stock >= :line_quantity AS ok, stock FROM items WHERE sku = :line_sku",
                            "expect": "true",
                            "error": "Only {stock} of {line_sku} in stock.",
                            "rule": "in_stock",
                        },
                        {
                            "kind": "let",
                            "name": "left",
                            "sql": "SELECT stock - :line_quantity FROM items WHERE sku = :line_sku",
                        },
                        {
                            "kind": "exec",
                            "sql": "INSERT INTO order_lines (order_id, sku, quantity) "
                            "VALUES (:order_id, :line_sku, :line_quantity)",
                        },
                        {"kind": "exec", "sql": "UPDATE items SET stock = :left WHERE sku = :line_sku"},
                    ],
                },
                {
                    "kind": "return",
                    "shape": "row",
                    "sql": "SELECT order_id, (SELECT COUNT(*) FROM order_lines l WHERE l.order_id = o.order_id) "
                    "AS line_count FROM orders o WHERE order_id = :order_id",
                },
            ],
        },
        {
            "name": "restock",
            "description": "Add stock to several items, e.g. after a delivery; may break the stock rule.",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {
                    "skus": {"type": "array", "description": "SKUs.", "items": {"type": "string"}},
                    "delta": {"type": "integer", "description": "Change per SKU."},
                },
                "required": ["skus", "delta"],
            },
            "steps": [
                {
                    "kind": "for_each",
                    "over": "skus",
                    "as": "sku",
                    "steps": [
                        {
                            "kind": "exec",
                            "sql": "UPDATE items SET stock = stock + :delta WHERE sku = :sku",
                            "affects": "one",
                            "error": "No item {sku} (position {sku_index}).",
                        }
                    ],
                },
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": "SELECT sku, stock FROM items ORDER BY sku",
                },
            ],
        },
        {
            "name": "cancel_order",
            "description": "Cancel an order and put its items back in stock.",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "The order."}},
                "required": ["order_id"],
            },
            "steps": [
                {
                    "kind": "require",
                    "sql": "SELECT 1 FROM orders WHERE order_id = :order_id AND status = 'placed'",
                    "error": "No placed order {order_id}.",
                },
                {
                    "kind": "let",
                    "name": "lines",
                    "shape": "rows",
                    "sql": "SELECT l.sku, l.quantity, i.fragile FROM order_lines l JOIN items i USING (sku) "
                    "WHERE l.order_id = :order_id ORDER BY l.sku",
                },
                {
                    "kind": "for_each",
                    "over": "lines",
                    "as": "line",
                    "steps": [
                        {
                            "kind": "exec",
                            "sql": "UPDATE items SET stock = stock + :line_quantity WHERE sku = :line_sku",
                            "affects": "one",
                            "error": "Item {line_sku} vanished.",
                        }
                    ],
                },
                {
                    "kind": "exec",
                    "sql": "UPDATE orders SET status = 'cancelled' WHERE order_id = :order_id",
                },
                {
                    "kind": "return",
                    "shape": "row",
                    "sql": "SELECT :lines AS lines, (SELECT SUM(json_extract(j.value, '$.quantity')) "
                    "FROM json_each(:lines) j) AS returned",
                },
            ],
        },
    ],
}

SEED: dict[str, Any] = {
    "items": [
        {"sku": "A-1", "name": "Anvil", "stock": 3},
        {"sku": "B-2", "name": "Bucket", "stock": 0},
        {"sku": "C-3", "name": "Candle", "stock": 40, "fragile": True},
    ],
    "orders": [{"order_id": "ORD-0007", "status": "placed"}],
    "order_lines": [
        {"order_id": "ORD-0007", "sku": "A-1", "quantity": 2},
        {"order_id": "ORD-0007", "sku": "C-3", "quantity": 5},
    ],
}


def shop(limits: dict[str, Any] | None = None, spec: dict[str, Any] | None = None) -> Environment:
    spec = copy.deepcopy(spec or SHOP)
    if limits:
        spec["limits"] = limits
    return Environment.from_spec(spec, copy.deepcopy(SEED))


def stock(state: Any) -> dict[str, int]:
    return {r["sku"]: r["stock"] for r in state.rows("items")}


@pytest.fixture(scope="module")
def env() -> Environment:
    return shop()


def test_for_each_over_no_elements_runs_nothing(env: Environment) -> None:
    state = env.new_state()
    result = env.call(state, "place_order", {"lines": []})
    assert result.structured == {"order_id": "ORD-0008", "line_count": 0}
    assert stock(state) == {"A-1": 3, "B-2": 0, "C-3": 40}
    assert not env.call(state, "restock", {"skus": [], "delta": 5}).is_error
    assert stock(state) == {"A-1": 3, "B-2": 0, "C-3": 40}


def test_for_each_over_one_and_many_objects(env: Environment) -> None:
    state = env.new_state()
    one = env.call(state, "place_order", {"lines": [{"sku": "A-1", "quantity": 1}]})
    assert one.structured == {"order_id": "ORD-0008", "line_count": 1}
    many = env.call(state, "place_order", {"lines": [{"sku": "A-1", "quantity": 2}, {"sku": "C-3", "quantity": 7}]})
    assert many.structured == {"order_id": "ORD-0009", "line_count": 2}
    assert stock(state) == {"A-1": 0, "B-2": 0, "C-3": 33}
    lines = {(r["order_id"], r["sku"]): r["quantity"] for r in state.rows("order_lines")}
    assert lines[("ORD-0009", "C-3")] == 7 and lines[("ORD-0008", "A-1")] == 1


def test_for_each_over_scalars_binds_the_element_and_its_index(env: Environment) -> None:
    state = env.new_state()
    result = env.call(state, "restock", {"skus": ["B-2", "C-3", "B-2"], "delta": 4})
    assert not result.is_error, result.text
    assert stock(state) == {"A-1": 3, "B-2": 8, "C-3": 44}
    missing = env.call(state, "restock", {"skus": ["A-1", "Z-9"], "delta": 1})
    assert missing.is_error and missing.text == "No item Z-9 (position 1)."
    assert stock(state) == {"A-1": 3, "B-2": 8, "C-3": 44}


def test_for_each_over_a_rows_let_and_the_rows_as_json(env: Environment) -> None:
    state = env.new_state()
    result = env.call(state, "cancel_order", {"order_id": "ORD-0007"})
    assert not result.is_error, result.text
    assert stock(state) == {"A-1": 5, "B-2": 0, "C-3": 45}
    assert result.structured["returned"] == 7
    # the let's JSON: one object per row, booleans as JSON booleans, in the SELECT's order
    assert result.structured["lines"] == (
        '[{"sku":"A-1","quantity":2,"fragile":false},{"sku":"C-3","quantity":5,"fragile":true}]'
    )
    again = env.call(state, "cancel_order", {"order_id": "ORD-0007"})
    assert again.is_error and again.text == "No placed order ORD-0007."


def test_a_rows_let_with_no_rows_binds_an_empty_array(env: Environment) -> None:
    state = env.new_state()
    placed = env.call(state, "place_order", {"lines": []})
    result = env.call(state, "cancel_order", {"order_id": placed.structured["order_id"]})
    assert result.structured == {"lines": "[]", "returned": None}


def test_a_failure_at_element_k_undoes_the_elements_before_it_and_the_id_counter(env: Environment) -> None:
    state = env.new_state()
    before = state.digest()
    lines = [{"sku": "A-1", "quantity": 1}, {"sku": "C-3", "quantity": 2}, {"sku": "B-2", "quantity": 1}]
    result = env.call(state, "place_order", {"lines": lines})
    assert result.is_error and result.text == "Only 0 of B-2 in stock."
    assert result.structured["error"] == {
        "type": "rule_violation",
        "message": "Only 0 of B-2 in stock.",
        "rule": "in_stock",
        "tool": "place_order",
        "step": 2,
        "element": 2,
    }
    assert state.digest() == before
    ok = env.call(state, "place_order", {"lines": [{"sku": "A-1", "quantity": 1}]})
    assert ok.structured["order_id"] == "ORD-0008"  # the id drawn by the failed call is handed out again


def test_a_constraint_broken_inside_a_loop_names_the_element(env: Environment) -> None:
    state = env.new_state()
    before = state.digest()
    result = env.call(state, "restock", {"skus": ["C-3", "A-1"], "delta": -10})
    assert result.is_error and result.text == "Out of stock."
    assert result.structured["error"]["element"] == 1
    assert result.structured["error"]["constraint"] == "stock_not_negative"
    assert state.digest() == before


def test_element_templates_use_the_element_fields(env: Environment) -> None:
    state = env.new_state()
    result = env.call(state, "place_order", {"lines": [{"sku": "A-1", "quantity": 1}, {"sku": "Q-0", "quantity": 1}]})
    assert result.text == "Line 1: no item Q-0."
    assert result.structured["error"]["element"] == 1


def test_max_iterations_refuses_the_call_and_changes_nothing() -> None:
    env = shop({"max_iterations": 2})
    state = env.new_state()
    before = state.digest()
    result = env.call(state, "restock", {"skus": ["A-1", "B-2", "C-3"], "delta": 1})
    assert result.is_error
    assert result.structured["error"]["limit"] == "max_iterations"
    assert "limits.max_iterations" in result.text and "at most 2" in result.text and "skus has 3" in result.text
    assert state.digest() == before
    assert not env.call(state, "restock", {"skus": ["A-1", "B-2"], "delta": 1}).is_error


def test_max_sql_steps_counts_every_element() -> None:
    spec = copy.deepcopy(SHOP)
    loop = spec["tools"][1]["steps"][0]
    loop["steps"].insert(
        0,
        {
            "kind": "require",
            "sql": "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300) "
            "SELECT COUNT(*) FROM c",
            "error": "never",
        },
    )
    env = shop({"max_sql_steps": 10_000}, spec)
    state = env.new_state()
    before = state.digest()
    assert not env.call(state, "restock", {"skus": ["A-1"], "delta": 1}).is_error  # one element fits
    state = env.new_state()
    result = env.call(state, "restock", {"skus": ["A-1", "B-2", "C-3"] * 20, "delta": 1})
    assert result.is_error and result.structured["error"]["limit"] == "max_sql_steps"
    assert result.structured["error"]["element"] > 0
    assert state.digest() == before


def test_read_and_write_sets_include_nested_steps(env: Environment) -> None:
    tools = env.report.tools
    place = tools["place_order"].to_dict()
    assert place["writes"] == {
        "items": ["stock"],
        "order_lines": ["order_id", "quantity", "sku"],
        "orders": ["order_id", "status"],
    }
    assert place["reads"]["items"] == ["sku", "stock"]
    assert "select" in tools["place_order"].statement_kinds() and "update" in tools["place_order"].statement_kinds()
    assert tools["cancel_order"].to_dict()["reads"]["order_lines"] == ["order_id", "quantity", "sku"]


# -- static validation ------------------------------------------------------------------------------


def issues(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(spec, copy.deepcopy(SEED))
    return [str(i) for i in caught.value.issues]


def loop_of(spec: dict[str, Any]) -> dict[str, Any]:
    return spec["tools"][0]["steps"][2]


def test_nested_problems_point_at_the_nested_step() -> None:
    spec = copy.deepcopy(SHOP)
    loop_of(spec)["steps"][3]["sql"] = "INSERT INTO order_lines (order_id, sku, qty) VALUES (:order_id, :line_sku, 1)"
    loop_of(spec)["steps"][4]["sql"] = "UPDATE items SET stock = :nope WHERE sku = :line_sku"
    found = issues(spec)
    at = "tools.place_order.steps[2](for_each)"
    assert found == [
        f"{at}.steps[3](exec).sql: inserts into unknown column order_lines.qty; columns are: order_id, sku, quantity",
        f"{at}.steps[4](exec).sql: uses :nope, which is neither a declared parameter nor an earlier let",
    ]


def test_nested_lets_are_not_visible_after_the_loop() -> None:
    spec = copy.deepcopy(SHOP)
    spec["tools"][0]["steps"][3]["sql"] = "SELECT :left AS left_over, :line_sku AS sku"
    found = issues(spec)
    assert found == [
        "tools.place_order.steps[3](return).sql: uses :left, which is neither a declared parameter nor an earlier let",
        "tools.place_order.steps[3](return).sql: uses :line_sku, which is neither a declared parameter nor an earlier "
        "let",
    ]


def test_nested_template_fields_are_checked() -> None:
    spec = copy.deepcopy(SHOP)
    loop_of(spec)["steps"][0]["error"] = "No item {line_colour}."
    assert issues(spec) == [
        "tools.place_order.steps[2](for_each).steps[0](require).error: names {line_colour}, which is not a "
        "parameter, an earlier let, or a column this step returns"
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda s: loop_of(s).update(over="order_id"),
            "tools.place_order.steps[2](for_each).over: loops over 'order_id', which is neither a parameter nor an "
            "earlier let with shape 'rows'",
        ),
        (
            lambda s: loop_of(s).update(over="missing"),
            "tools.place_order.steps[2](for_each).over: 'missing' is neither a parameter nor an earlier let",
        ),
        (
            lambda s: s["tools"][0]["parameters"]["properties"]["lines"].update(type="string"),
            "tools.place_order.steps[2](for_each).over: loops over the parameter 'lines', which is not of type 'array'",
        ),
        (
            lambda s: s["tools"][0]["parameters"]["properties"]["lines"].update(items={"type": "object"}),
            "tools.place_order.steps[2](for_each).over: the items of 'lines' are objects, so they need "
            "'properties' (each binds a name)",
        ),
        (
            lambda s: s["tools"][1]["steps"][0].update({"as": "delta"}),
            "tools.restock.steps[0](for_each).as: the element binds :delta, which is already a parameter or a let; "
            "rename 'as'",
        ),
    ],
)
def test_a_loop_over_something_it_cannot_bind_is_refused(change: Any, expected: str) -> None:
    spec = copy.deepcopy(SHOP)
    change(spec)
    assert issues(spec)[0] == expected  # the nested steps' uses of an unknown element are not reported again
    assert len(issues(spec)) == 1 or "rename 'as'" in expected


def test_only_require_let_and_exec_nest() -> None:
    spec = copy.deepcopy(SHOP)
    loop_of(spec)["steps"].append({"kind": "return", "message": "Done."})
    found = issues(spec)
    assert len(found) == 1 and found[0].startswith("tools.place_order.steps[2].steps[5]: Input tag 'return'")
    spec = copy.deepcopy(SHOP)
    loop_of(spec)["steps"].append(copy.deepcopy(loop_of(spec)))
    assert issues(spec)[0].startswith("tools.place_order.steps[2].steps[5]: Input tag 'for_each'")


def test_a_read_tool_cannot_write_inside_a_loop() -> None:
    spec = copy.deepcopy(SHOP)
    spec["tools"][1]["kind"] = "read"
    assert (
        "tools.restock.steps[0](for_each).steps[0](exec): a read tool cannot have an exec step; make the tool kind "
        "'write'" in issues(spec)
    )


def test_the_as_field_round_trips_through_the_model() -> None:
    env = shop()
    dumped = env.spec.model_dump(mode="json")
    assert dumped["tools"][0]["steps"][2]["as"] == "line"
    assert Environment.from_spec(dumped, copy.deepcopy(SEED)).spec == env.spec


def test_a_rows_let_embeds_json_columns_and_keeps_reals_exact() -> None:
    spec = copy.deepcopy(MINI_SPEC)
    spec["tools"].append(
        {
            "name": "catalogue",
            "description": "Every item as JSON.",
            "kind": "read",
            "steps": [
                {
                    "kind": "let",
                    "name": "all",
                    "shape": "rows",
                    "sql": "SELECT sku, price, tags FROM items ORDER BY sku",
                },
                {"kind": "return", "shape": "scalar", "sql": "SELECT :all"},
            ],
        }
    )
    seed = copy.deepcopy(MINI_SEED)
    seed["items"][2]["price"] = 0.1 + 0.2
    env = Environment.from_spec(spec, seed)
    assert env.call(env.new_state(), "catalogue").structured["value"] == (
        '[{"sku":"A-1","price":99.5,"tags":["heavy","iron"]},{"sku":"B-2","price":4.25,"tags":null},'
        '{"sku":"C-3","price":0.30000000000000004,"tags":null}]'
    )


def test_a_rows_let_larger_than_max_value_bytes_stops_the_call() -> None:
    spec = copy.deepcopy(SHOP)
    spec["tools"][2]["steps"][1]["sql"] = (
        "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 200) "
        "SELECT 'A-1' AS sku, k AS quantity, 0 AS fragile FROM n"
    )
    env = shop({"max_string_length": 16, "max_value_bytes": 1_024, "max_result_bytes": 1_024}, spec)
    state = env.new_state()
    before = state.digest()
    result = env.call(state, "cancel_order", {"order_id": "ORD-0007"})
    assert result.is_error and result.structured["error"]["limit"] == "max_value_bytes"
    assert "the rows of lines are larger than 1,024 bytes as JSON (limits.max_value_bytes)" in result.text
    assert state.digest() == before
