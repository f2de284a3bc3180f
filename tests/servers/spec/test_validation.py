"""Static validation: every kind of broken spec is refused with a located, readable issue."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from servers import Environment, SpecError
from tests.conftest import ENVFLEET, MINI_SEED, write_env


def tool(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in spec["tools"] if t["name"] == name)


def issues_of(spec: dict[str, Any], seed: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(spec, MINI_SEED if seed is None else seed)
    return [str(i) for i in caught.value.issues]


def set_sql(spec: dict[str, Any], tool_name: str, index: int, sql: str) -> None:
    tool(spec, tool_name)["steps"][index]["sql"] = sql


# (mutation, expected location fragment, expected message fragment)
BROKEN = {
    "unknown table": (
        lambda s: set_sql(s, "get_item", 1, "SELECT * FROM products WHERE sku = :sku"),
        "tools.get_item.steps[1](return).sql",
        "unknown table 'products'",
    ),
    "unknown column": (
        lambda s: set_sql(s, "get_item", 1, "SELECT sku, colour FROM items WHERE sku = :sku"),
        "tools.get_item.steps[1](return).sql",
        "colour",
    ),
    "unknown column in UPDATE SET": (
        lambda s: set_sql(s, "restock", 0, "UPDATE items SET qty = :delta WHERE sku = :sku"),
        "tools.restock.steps[0](exec).sql",
        "unknown column items.qty",
    ),
    "unknown column in WHERE of DELETE": (
        lambda s: set_sql(s, "restock", 0, "DELETE FROM items WHERE colour = :sku AND :delta = 1"),
        "tools.restock.steps[0](exec).sql",
        "colour",
    ),
    "unknown column in INSERT": (
        lambda s: set_sql(s, "place_order", 3, "INSERT INTO orders (order_id, colour) VALUES (:order_id, :sku)"),
        "tools.place_order.steps[3](exec).sql",
        "unknown column orders.colour",
    ),
    "DDL in exec": (
        lambda s: set_sql(s, "restock", 0, "DROP TABLE items"),
        "tools.restock.steps[0](exec).sql",
        "must be an INSERT, UPDATE or DELETE",
    ),
    "CREATE in exec": (
        lambda s: set_sql(s, "restock", 0, "CREATE TABLE x (a TEXT)"),
        "steps[0](exec).sql",
        "found CREATE",
    ),
    "PRAGMA in require": (
        lambda s: set_sql(s, "get_item", 0, "PRAGMA foreign_keys = OFF"),
        "tools.get_item.steps[0](require).sql",
        "must be a SELECT",
    ),
    "PRAGMA in exec": (
        lambda s: set_sql(s, "restock", 0, "PRAGMA writable_schema = ON"),
        "steps[0](exec).sql",
        "must be an INSERT",
    ),
    "ATTACH in exec": (
        lambda s: set_sql(s, "restock", 0, "ATTACH DATABASE '/tmp/x.db' AS other"),
        "steps[0](exec).sql",
        "ATTACH",
    ),
    "ATTACH in let": (
        lambda s: set_sql(s, "place_order", 2, "ATTACH DATABASE ':memory:' AS other"),
        "steps[2](let).sql",
        "must be a SELECT",
    ),
    "two statements": (
        lambda s: set_sql(s, "get_item", 0, "SELECT 1 FROM items WHERE sku = :sku; DELETE FROM items"),
        "tools.get_item.steps[0](require).sql",
        "exactly one statement, found 2",
    ),
    "undeclared param": (
        lambda s: set_sql(s, "get_item", 1, "SELECT * FROM items WHERE sku = :code"),
        "tools.get_item.steps[1](return).sql",
        "uses :code, which is neither a declared parameter",
    ),
    "let used before it is bound": (
        lambda s: set_sql(
            s, "place_order", 1, "SELECT stock >= :quantity AS ok, stock, :order_id AS o FROM items WHERE sku = :sku"
        ),
        "steps[1](require).sql",
        "only visible to later steps",
    ),
    "UPDATE in require": (
        lambda s: set_sql(s, "get_item", 0, "UPDATE items SET stock = 0 WHERE sku = :sku"),
        "steps[0](require).sql",
        "must be a SELECT, found UPDATE",
    ),
    "INSERT in let": (
        lambda s: set_sql(s, "place_order", 2, "INSERT INTO items (sku, name, stock, price) VALUES ('x', 'x', 1, 1)"),
        "steps[2](let).sql",
        "must be a SELECT, found INSERT",
    ),
    "DELETE in return": (
        lambda s: set_sql(s, "get_item", 1, "DELETE FROM items WHERE sku = :sku"),
        "steps[1](return).sql",
        "must be a SELECT, found DELETE",
    ),
    "SELECT in exec": (
        lambda s: set_sql(s, "restock", 0, "SELECT :sku, :delta"),
        "steps[0](exec).sql",
        "must be an INSERT",
    ),
    "positional parameter": (
        lambda s: set_sql(s, "get_item", 1, "SELECT * FROM items WHERE sku = ?"),
        "steps[1](return).sql",
        "only named ':name'",
    ),
    "nondeterministic function": (
        lambda s: set_sql(s, "get_item", 1, "SELECT sku, random() AS r FROM items WHERE sku = :sku"),
        "steps[1](return).sql",
        "not deterministic",
    ),
    "wall clock": (
        lambda s: set_sql(s, "get_item", 1, "SELECT sku, datetime('now') AS t FROM items WHERE sku = :sku"),
        "steps[1](return).sql",
        "use now() or today()",
    ),
    "sqlite_master": (
        lambda s: set_sql(s, "get_item", 1, "SELECT name FROM sqlite_master WHERE name = :sku"),
        "steps[1](return).sql",
        "unknown table 'sqlite_master'",
    ),
    "function SQLite refuses": (
        lambda s: set_sql(s, "get_item", 1, "SELECT load_extension(:sku) AS x"),
        "steps[1](return).sql",
        "SQLite refuses it",
    ),
    "unparseable SQL": (
        lambda s: set_sql(s, "get_item", 1, "SELEC sku FROM items"),
        "steps[1](return).sql",
        "does not parse",
    ),
    "OR REPLACE": (
        lambda s: set_sql(
            s, "restock", 0, "INSERT OR REPLACE INTO items (sku, name, stock, price) VALUES (:sku, 'x', :delta, 1)"
        ),
        "steps[0](exec).sql",
        "OR REPLACE",
    ),
    "INSERT without columns": (
        lambda s: set_sql(s, "restock", 0, "INSERT INTO items VALUES (:sku, 'x', :delta, 1, NULL)"),
        "steps[0](exec).sql",
        "must list its columns",
    ),
    "bad JSON Schema": (
        lambda s: tool(s, "get_item")["parameters"]["properties"]["sku"].update(type="text"),
        "tools.get_item.parameters",
        "not a valid JSON Schema",
    ),
    "parameters not an object schema": (
        lambda s: tool(s, "get_item").update(parameters={"type": "array", "items": {}}),
        "tools.get_item.parameters",
        '"type": "object"',
    ),
    "parameter without description": (
        lambda s: tool(s, "get_item")["parameters"]["properties"]["sku"].pop("description"),
        "tools.get_item.parameters.sku",
        "description",
    ),
    "required but not a property": (
        lambda s: tool(s, "get_item")["parameters"]["required"].append("colour"),
        "tools.get_item.parameters.required",
        "'colour' is required but not a property",
    ),
    "exec in a read tool": (
        lambda s: tool(s, "get_item")["steps"].insert(
            1, {"kind": "exec", "sql": "UPDATE items SET stock = 0 WHERE sku = :sku"}
        ),
        "tools.get_item.steps[1](exec)",
        "a read tool cannot have an exec step",
    ),
    "return not last": (
        lambda s: tool(s, "get_item")["steps"].reverse(),
        "tools.get_item.steps[0](return)",
        "must be the last step",
    ),
    "template names an unknown field": (
        lambda s: tool(s, "get_item")["steps"][0].update(error="No item {colour}."),
        "tools.get_item.steps[0](require).error",
        "{colour}",
    ),
    "undeclared sequence": (
        lambda s: set_sql(s, "place_order", 2, "SELECT new_id('INV')"),
        "steps[2](let).sql",
        "new_id('INV') names no declared sequence",
    ),
    "reference to unknown column": (
        lambda s: s["tables"][1]["columns"][1].update(references="items.code"),
        "tables.orders.columns.sku",
        "references unknown column items.code",
    ),
    "table without primary key": (
        lambda s: s["tables"][0]["columns"][0].update(primary_key=False),
        "tables.items",
        "no primary key",
    ),
    "check on another table": (
        lambda s: s["tables"][0]["checks"].append({"name": "x", "expression": "orders.quantity > 0", "message": "m"}),
        "tables.items.checks.x",
        "another table",
    ),
    "enum value of the wrong type": (
        lambda s: s["tables"][1]["columns"][6].update(enum=["placed", 3]),
        "tables.orders.columns.status",
        "enum value 3",
    ),
    "duplicate tool": (lambda s: s["tools"].append(dict(tool(s, "get_item"))), "tools.get_item", "duplicate tool name"),
    "step of unknown kind": (
        lambda s: tool(s, "get_item")["steps"].append({"kind": "shell", "sql": "rm -rf /"}),
        "tools.get_item.steps[2]",
        "tag",
    ),
    "unknown field (typo)": (
        lambda s: tool(s, "get_item").update(descripton="x"),
        "tools.get_item.descripton",
        "Extra inputs are not permitted",
    ),
    "printf width from a parameter": (
        lambda s: set_sql(s, "get_item", 1, "SELECT printf('%.*c', length(:sku), 'x') AS pad"),
        "tools.get_item.steps[1](return).sql",
        "takes a width or precision from an argument",
    ),
    "format string from a parameter": (
        lambda s: set_sql(s, "get_item", 1, "SELECT format(:sku, 1) AS f"),
        "tools.get_item.steps[1](return).sql",
        "needs a literal format string",
    ),
    "printf width in an UPDATE": (
        lambda s: set_sql(s, "restock", 0, "UPDATE items SET name = printf('%.*c', :delta, 'x') WHERE sku = :sku"),
        "tools.restock.steps[0](exec).sql",
        "takes a width or precision from an argument",
    ),
    "huge literal printf width": (
        lambda s: set_sql(s, "get_item", 1, "SELECT printf('%2000000s', :sku) AS pad"),
        "tools.get_item.steps[1](return).sql",
        "the most is 1,000",
    ),
    "zeroblob": (
        lambda s: set_sql(s, "get_item", 1, "SELECT zeroblob(length(:sku) * 1000000000) AS z"),
        "tools.get_item.steps[1](return).sql",
        "not authorized",
    ),
    "step budget above its ceiling": (
        lambda s: s.update(limits={"max_sql_steps": 10**15}),
        "limits.max_sql_steps",
        "less than or equal to 100000000",
    ),
    "deadline above its ceiling": (
        lambda s: s.update(limits={"max_call_ms": 3_600_000}),
        "limits.max_call_ms",
        "less than or equal to 10000",
    ),
    "value length below the longest argument": (
        lambda s: s.update(limits={"max_value_bytes": 100_000}),
        "limits",
        "max_value_bytes (100,000) must be at least 4 x max_string_length (262,144)",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_broken_spec_is_refused_with_location(mini_spec: dict[str, Any], case: str) -> None:
    mutate, location, message = BROKEN[case]
    mutate(mini_spec)
    issues = issues_of(mini_spec)
    assert any(location in issue and message in issue for issue in issues), issues


def test_every_problem_is_reported_not_just_the_first(mini_spec: dict[str, Any]) -> None:
    set_sql(mini_spec, "get_item", 1, "SELECT * FROM products")
    set_sql(mini_spec, "restock", 0, "DROP TABLE items")
    tool(mini_spec, "search_items")["parameters"]["properties"]["query"].pop("description")
    issues = issues_of(mini_spec)
    assert len(issues) >= 3
    assert {i.split(":")[0].split(".steps")[0].split(".parameters")[0] for i in issues} >= {
        "tools.get_item",
        "tools.restock",
        "tools.search_items",
    }


def test_seed_rows_are_checked_against_the_schema(mini_spec: dict[str, Any]) -> None:
    bad_seed = json.loads(json.dumps(MINI_SEED))
    bad_seed["items"].append({"sku": "D-4", "name": "Drum", "stock": -1, "price": 3.0})
    bad_seed["orders"].append({"order_id": "ORD-0050", "sku": "Z-9", "quantity": 1, "placed_at": "2026-01-02 10:00:00"})
    bad_seed["orders"].append({"order_id": "ORD-0051", "sku": "A-1", "quantity": 1, "placed_at": "yesterday"})
    bad_seed["items"].append({"sku": "E-5", "name": "Easel", "stock": 1, "price": 3.0, "colour": "red"})
    issues = issues_of(mini_spec, bad_seed)
    text = "\n".join(issues)
    assert "seed.items[3]" in text and "stock_not_negative" in text
    assert "seed.orders[1]" in text and "FOREIGN KEY" in text
    assert "seed.orders[2]" in text and "datetime" in text
    assert "seed.items[4]" in text and "colour" in text


def test_valid_spec_reports_read_and_write_sets(mini) -> None:
    analysis = mini.report.tools["place_order"].to_dict()
    assert analysis["kind"] == "write"
    assert analysis["writes"] == {
        "items": ["stock"],
        "orders": ["gift", "note", "order_id", "placed_at", "quantity", "sku"],
    }
    assert analysis["reads"]["items"] == ["sku", "stock"]
    assert mini.report.tools["get_item"].to_dict()["writes"] == {}


def test_cli_validate_exits_1_with_readable_errors(tmp_path, mini_spec: dict[str, Any]) -> None:
    set_sql(mini_spec, "get_item", 1, "SELECT * FROM products WHERE sku = :sku")
    set_sql(mini_spec, "restock", 0, "PRAGMA foreign_keys = OFF")
    folder = write_env(tmp_path / "broken", mini_spec)
    run = subprocess.run([*ENVFLEET, "validate", str(folder)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "tools.get_item.steps[1](return).sql" in run.stderr and "unknown table 'products'" in run.stderr
    assert "tools.restock.steps[0](exec).sql" in run.stderr and "PRAGMA" in run.stderr
    assert "Traceback" not in run.stderr


def test_cli_validate_accepts_a_valid_env_and_prints_sets_as_json(tmp_path, mini_spec: dict[str, Any]) -> None:
    folder = write_env(tmp_path / "mini", mini_spec)
    run = subprocess.run([*ENVFLEET, "validate", str(folder), "--json"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["ok"] is True and report["id"] == "mini"
    assert report["tools"]["restock"]["writes"] == {"items": ["stock"]}


def test_cli_validate_reports_invalid_json(tmp_path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "env.json").write_text("{not json")
    run = subprocess.run([*ENVFLEET, "validate", str(folder)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "env.json" in run.stderr and "not valid JSON" in run.stderr
