"""Regression tests for edge cases found in review: each one broke a principle before it was fixed."""

from __future__ import annotations

import copy
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from servers.diff import diff_states
from servers.environment import Environment
from servers.errors import SpecError, TaskPackError
from tests.conftest import MINI_SEED, MINI_SPEC, MINI_TASKS, ServerProcess, write_env, write_tasks


def spec_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(MINI_SPEC)
    spec.update(changes)
    return spec


def test_seed_and_task_values_are_bound_by_column_name_not_position(tmp_path: Path) -> None:
    seed = copy.deepcopy(MINI_SEED)
    seed["items"] = [{"price": 2.5, "stock": 7, "name": "Drum", "sku": "D-4"}]  # keys in reverse table order
    seed["orders"] = []
    folder = write_env(tmp_path / "mini", copy.deepcopy(MINI_SPEC), seed)
    task = copy.deepcopy(MINI_TASKS[1])
    task["initial_state"] = [{"op": "update", "table": "items", "where": {"sku": "D-4"}, "set": {"price": 9.0, "name": "Big drum"}}]
    task["gold"] = [{"tool": "restock", "arguments": {"sku": "D-4", "delta": 1}}]
    write_tasks(folder, [task])
    env = Environment.load(folder)
    assert env.new_state().rows("items") == [{"sku": "D-4", "name": "Drum", "stock": 7, "price": 2.5, "tags": None}]
    assert env.episode("mini-002").state.rows("items")[0] == {"sku": "D-4", "name": "Big drum", "stock": 7, "price": 9.0, "tags": None}


def test_a_write_stopped_by_the_budget_is_a_tool_error_and_draws_no_id() -> None:
    spec = spec_with(limits={"max_sql_steps": 10_000})
    spec["tools"].append({
        "name": "heavy_order", "description": "An order with an expensive update.", "kind": "write",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer", "description": "Work to do."}}, "required": ["n"]},
        "steps": [{"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
                  {"kind": "exec", "sql": "INSERT INTO orders (order_id, sku, quantity, placed_at) VALUES (:order_id, 'C-3', 1, now())"},
                  {"kind": "exec", "sql": "UPDATE items SET stock = stock - 1 WHERE sku = 'C-3' AND 0 < "
                                          "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) SELECT COUNT(*) FROM c)"}]})
    env = Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    state = env.new_state()
    before = state.digest()
    result = env.call(state, "heavy_order", {"n": 10_000_000})
    assert result.is_error and "was stopped" in result.text
    assert state.digest() == before
    assert env.call(state, "place_order", {"sku": "C-3", "quantity": 1}).structured["order_id"] == "ORD-0042"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("stock <= 3 OR abs(random()) % 2 = 0", "not deterministic"),
        ("stock >= 0 OR name >= CURRENT_DATE", "not deterministic"),
        ("zeroblob(5) IS NOT NULL", "SQLite refuses it: not authorized to use function"),
    ],
)
def test_table_checks_must_be_deterministic_and_allowed(expression: str, message: str) -> None:
    spec = spec_with()
    spec["tables"][0]["checks"] = [{"name": "c", "expression": expression, "message": "m"}]
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    assert any(i.location == "tables.items.checks.c" and message in i.message for i in caught.value.issues)


def test_scoring_gets_a_fresh_budget_whatever_the_last_call_used(mini_env_dir: Path) -> None:
    spec = json.loads((mini_env_dir / "env.json").read_text())
    spec["limits"] = {"max_sql_steps": 10_000}
    spec["tools"].append({"name": "spin", "description": "Expensive.", "kind": "read", "steps": [{"kind": "return", "shape": "scalar",
                          "sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 9999999) SELECT COUNT(*) FROM c"}]})
    (mini_env_dir / "env.json").write_text(json.dumps(spec))
    env = Environment.load(mini_env_dir)
    episode = env.episode("mini-001")
    for call in env.task("mini-001").gold:
        episode.call(call.tool, call.arguments)
    assert episode.call("spin", {}).is_error
    scores = [episode.evaluate("ORD-0042").reward for _ in range(50)]
    assert scores == [1.0] * 50


def test_unpaired_surrogates_are_argument_errors(mini: Environment) -> None:
    state = mini.new_state()
    for args in ({"query": "\ud800"}, {"query": "ok", "\udfff": 1}):
        result = mini.call(state, "search_items", args)
        assert result.is_error and result.structured["error"]["type"] == "invalid_arguments"
        assert "not valid Unicode" in result.text


def test_new_id_is_for_write_tools_only(mini_env_dir: Path) -> None:
    spec = spec_with()
    spec["tools"].append({"name": "peek_id", "description": "Next id.", "kind": "read",
                          "steps": [{"kind": "return", "shape": "scalar", "sql": "SELECT new_id('ORD')"}]})
    with pytest.raises(SpecError, match="only write tools may call it"):
        Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    tasks = copy.deepcopy(MINI_TASKS)
    tasks[0]["checks"] = [{"description": "x", "sql": "SELECT new_id('ORD')"}]
    write_tasks(mini_env_dir, tasks)
    with pytest.raises(TaskPackError, match="calls new_id"):
        Environment.load(mini_env_dir)


def test_schema_tables_are_unreachable_even_without_columns(mini: Environment) -> None:
    state = mini.new_state()
    with state.mode("read"):
        for sql in ("SELECT count(*) FROM sqlite_master", "SELECT count(*) FROM SQLITE_SCHEMA", "SELECT 1 FROM sqlite_master LIMIT 1"):
            with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
                state.conn.execute(sql).fetchall()
        # a CTE read without columns is still fine
        assert state.conn.execute("WITH t AS (SELECT sku FROM items) SELECT count(*) FROM t").fetchone() == (3,)


def test_trailing_semicolon_and_comment_are_accepted() -> None:
    spec = spec_with()
    spec["tools"][0]["steps"][1]["sql"] = "SELECT sku, name, stock, price, tags FROM items WHERE sku = :sku -- by key"
    spec["tools"][1]["steps"][0]["sql"] = "SELECT sku, name, stock > 0 AS in_stock FROM items WHERE name LIKE '%' || :query || '%';"
    env = Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    state = env.new_state()
    assert env.call(state, "get_item", {"sku": "A-1"}).structured["name"] == "Anvil"
    assert env.call(state, "search_items", {"query": "Anv"}).structured["count"] == 1


@pytest.mark.parametrize(
    ("seed", "fragment"),
    [([1, 2], "must map table names to lists of row objects"), ("abc", "must map table names"),
     ({"items": [5]}, "a row must be an object of column values, not int")],
)
def test_malformed_seed_is_a_spec_error(seed: Any, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        Environment.from_spec(spec_with(), seed)


def test_non_utf8_files_are_spec_errors(tmp_path: Path, mini_env_dir: Path) -> None:
    folder = write_env(tmp_path / "latin", spec_with())
    (folder / "env.json").write_bytes(json.dumps(spec_with(name="Caf\u00e9"), ensure_ascii=False).encode("latin-1"))
    with pytest.raises(SpecError, match="env.json: not UTF-8 text"):
        Environment.load(folder)
    (mini_env_dir / "tasks" / "core.jsonl").write_bytes(b'{"id": "caf\xe9"}\n')
    with pytest.raises(TaskPackError, match="core.jsonl: not UTF-8 text"):
        Environment.load(mini_env_dir)


def test_expect_true_follows_sqlite_truth() -> None:
    spec = spec_with()
    spec["tools"][0]["steps"][0] = {"kind": "require", "sql": "SELECT '0' WHERE :sku <> ''", "expect": "true", "error": "Refused {sku}."}
    env = Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    assert env.call(env.new_state(), "get_item", {"sku": "A-1"}).text == "Refused A-1."


def test_composite_keys_do_not_collide_in_diffs() -> None:
    before = {"t": [{"a": "x|y", "b": "z", "v": 1}, {"a": "x", "b": "y|z", "v": 1}]}
    after = {"t": [{"a": "x|y", "b": "z", "v": 1}, {"a": "x", "b": "y|z", "v": 2}]}
    diff = diff_states(before, after, {"t": ["a", "b"]})
    assert list(diff.tables["t"].updated) == ['["x", "y|z"]']


@pytest.mark.anyio
async def test_rest_routes_check_the_host_and_ended_sessions_free_their_state(mini_env_dir: Path) -> None:
    server = ServerProcess(["--all", "--env-root", str(mini_env_dir.parent)])
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            assert (await http.get("/healthz", headers={"Host": "evil.example"})).status_code == 421
            assert (await http.post("/episodes", json={"env_id": "mini"}, headers={"Host": "evil.example:80"})).status_code == 421
            async with Client(f"{server.base}/envs/mini/mcp", mode="legacy") as client:
                await client.call_tool("restock", {"sku": "C-3", "delta": 1})
                assert (await http.get("/healthz")).json()["states"]["live"] == 1
            assert (await http.get("/healthz")).json()["states"]["live"] == 0
    finally:
        server.stop()
