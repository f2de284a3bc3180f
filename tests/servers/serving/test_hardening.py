"""Regression tests for edge cases found in review: each one broke a principle before it was fixed."""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from servers import Environment, Episode, SpecError, TaskPackError
from servers.serving import CallRunner, CallTarget
from servers.state import diff_states
from tests.conftest import MINI_SEED, MINI_SPEC, MINI_TASKS, ServerProcess, stop_process, write_env, write_tasks


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
    task["initial_state"] = [
        {"op": "update", "table": "items", "where": {"sku": "D-4"}, "set": {"price": 9.0, "name": "Big drum"}}
    ]
    task["gold"] = [{"tool": "restock", "arguments": {"sku": "D-4", "delta": 1}}]
    write_tasks(folder, [task])
    env = Environment.load(folder)
    assert env.new_state().rows("items") == [{"sku": "D-4", "name": "Drum", "stock": 7, "price": 2.5, "tags": None}]
    assert Episode(env, "mini-002").state.rows("items")[0] == {
        "sku": "D-4",
        "name": "Big drum",
        "stock": 7,
        "price": 9.0,
        "tags": None,
    }


def test_a_write_stopped_by_the_budget_is_a_tool_error_and_draws_no_id() -> None:
    spec = spec_with(limits={"max_sql_steps": 10_000})
    spec["tools"].append(
        {
            "name": "heavy_order",
            "description": "An order with an expensive update.",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {"n": {"type": "integer", "description": "Work to do."}},
                "required": ["n"],
            },
            "steps": [
                {"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
                {
                    "kind": "exec",
                    "sql": (
                        "INSERT INTO orders (order_id, sku, quantity, placed_at) VALUES (:order_id, 'C-3', 1, now())"
                    ),
                },
                {
                    "kind": "exec",
                    "sql": "UPDATE items SET stock = stock - 1 WHERE sku = 'C-3' AND 0 < "
                    "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < :n) SELECT COUNT(*) "
                    "FROM c)",
                },
            ],
        }
    )
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
    spec["tools"].append(
        {
            "name": "spin",
            "description": "Expensive.",
            "kind": "read",
            "steps": [
                {
                    "kind": "return",
                    "shape": "scalar",
                    "sql": (
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 9999999) "
                        "SELECT COUNT(*) FROM c"
                    ),
                }
            ],
        }
    )
    (mini_env_dir / "env.json").write_text(json.dumps(spec))
    env = Environment.load(mini_env_dir)
    episode = Episode(env, "mini-001")
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
    spec["tools"].append(
        {
            "name": "peek_id",
            "description": "Next id.",
            "kind": "read",
            "steps": [{"kind": "return", "shape": "scalar", "sql": "SELECT new_id('ORD')"}],
        }
    )
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
        for sql in (
            "SELECT count(*) FROM sqlite_master",
            "SELECT count(*) FROM SQLITE_SCHEMA",
            "SELECT 1 FROM sqlite_master LIMIT 1",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="prohibited|not authorized"):
                state.conn.execute(sql).fetchall()
        # a CTE read without columns is still fine
        assert state.conn.execute("WITH t AS (SELECT sku FROM items) SELECT count(*) FROM t").fetchone() == (3,)


def test_trailing_semicolon_and_comment_are_accepted() -> None:
    spec = spec_with()
    spec["tools"][0]["steps"][1]["sql"] = "SELECT sku, name, stock, price, tags FROM items WHERE sku = :sku -- by key"
    spec["tools"][1]["steps"][0]["sql"] = (
        "SELECT sku, name, stock > 0 AS in_stock FROM items WHERE name LIKE '%' || :query || '%';"
    )
    env = Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    state = env.new_state()
    assert env.call(state, "get_item", {"sku": "A-1"}).structured["name"] == "Anvil"
    assert env.call(state, "search_items", {"query": "Anv"}).structured["count"] == 1


@pytest.mark.parametrize(
    ("seed", "fragment"),
    [
        ([1, 2], "must map table names to lists of row objects"),
        ("abc", "must map table names"),
        ({"items": [5]}, "a row must be an object of column values, not int"),
    ],
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
    spec["tools"][0]["steps"][0] = {
        "kind": "require",
        "sql": "SELECT '0' WHERE :sku <> ''",
        "expect": "true",
        "error": "Refused {sku}.",
    }
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
            assert (
                await http.post("/episodes", json={"env_id": "mini"}, headers={"Host": "evil.example:80"})
            ).status_code == 421
            async with Client(f"{server.base}/envs/mini/mcp", mode="legacy") as client:
                await client.call_tool("restock", {"sku": "C-3", "delta": 1})
                assert (await http.get("/healthz")).json()["states"]["live"] == 1
            assert (await http.get("/healthz")).json()["states"]["live"] == 0
    finally:
        server.stop()


# -- the serving layer under attack: a runaway call, forged sessions, path-like ids, odd arguments --------------------
#
# Each attack runs against a real `envfleet serve` process while a watcher asks /healthz over and over; the fleet
# must answer every one within HEALTHZ_BOUND seconds (the issue's bound, and the only timing these tests assert).

HEALTHZ_BOUND = 1.0
RUNAWAY_SQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
MODERN = "2026-07-28"
HANDSHAKE = "2025-11-25"
_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _ceiling(field: str, fallback: int) -> int:
    """The highest value a spec may give a limit (the field's ``le``), or ``fallback`` where it has none."""
    from servers.spec import Limits

    info = Limits.model_fields.get(field)
    bounds = [getattr(m, "le", None) for m in (info.metadata if info is not None else [])]
    return next((b for b in bounds if b is not None), fallback)


def runaway_spec() -> dict[str, Any]:
    """The mini shop as environment ``spin``, with a read tool whose SQL never ends and every limit a spec
    may set as high as it may go."""
    from servers.spec import Limits

    spec = spec_with(id="spin", name="Spin shop")
    spec["limits"] = {"max_sql_steps": _ceiling("max_sql_steps", 10**15)}
    if "max_call_ms" in Limits.model_fields:
        spec["limits"]["max_call_ms"] = _ceiling("max_call_ms", 10**9)
    spec["tools"].append(
        {
            "name": "spin",
            "description": "Counts forever.",
            "kind": "read",
            "steps": [{"kind": "return", "shape": "scalar", "sql": RUNAWAY_SQL}],
        }
    )
    return spec


def hostile_root(root: Path) -> Path:
    """An env root with ``mini`` (the plain test spec) and ``spin`` (the runaway one)."""
    write_env(root / "mini", copy.deepcopy(MINI_SPEC))
    write_env(root / "spin", runaway_spec())
    return root


@pytest.fixture(scope="module")
def hostile_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """`envfleet serve --all` over ``mini`` and ``spin``, for the attacks that leave no call running."""
    server = ServerProcess(["--all", "--env-root", str(hostile_root(tmp_path_factory.mktemp("hostile")))])
    yield server
    server.stop()


class HealthWatch:
    """Asks /healthz back to back while an attack runs; every answer must be a 200 within HEALTHZ_BOUND s."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.answers = 0
        self.failures: list[str] = []

    async def _watch(self, stop: Any) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=HEALTHZ_BOUND) as http:
            while not stop.is_set():
                try:
                    status = (await http.get("/healthz")).status_code
                except httpx.TimeoutException:
                    self.failures.append(f"no answer within {HEALTHZ_BOUND:g} s")
                    continue
                if status != 200:
                    self.failures.append(f"status {status}")
                self.answers += 1
                await anyio.sleep(0.02)

    @contextlib.asynccontextmanager
    async def during(self) -> AsyncIterator[HealthWatch]:
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch, stop)
            try:
                yield self
            finally:
                stop.set()
        assert not self.failures, self.failures
        assert self.answers > 0


async def health(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.get("/healthz", timeout=HEALTHZ_BOUND)
    assert response.status_code == 200
    return response.json()


def modern_call(tool: str, arguments: Any, request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": _META},
    }


def modern_headers(tool: str, session: str | None = None) -> dict[str, str]:
    headers = {**JSON_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": tool}
    return {**headers, "Mcp-Session-Id": session} if session else headers


class LegacySession:
    """A handshake-era MCP session driven by hand, so the test knows its id."""

    def __init__(self, http: httpx.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.id = ""
        self._next = 1

    async def open(self) -> LegacySession:
        opened = await self.http.post(
            self.url,
            headers=JSON_HEADERS,
            json={
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": HANDSHAKE,
                    "capabilities": {},
                    "clientInfo": {"name": "probe", "version": "1"},
                },
            },
        )
        assert opened.status_code == 200, opened.text
        self.id = opened.headers["mcp-session-id"]
        done = await self.http.post(
            self.url, headers=self.headers(), json={"jsonrpc": "2.0", "method": "notifications/initialized"}
        )
        assert done.status_code == 202
        return self

    def headers(self) -> dict[str, str]:
        return {**JSON_HEADERS, "Mcp-Session-Id": self.id, "MCP-Protocol-Version": HANDSHAKE}

    async def call(self, tool: str, arguments: Any) -> dict[str, Any]:
        self._next += 1
        response = await self.http.post(
            self.url,
            headers=self.headers(),
            json={
                "jsonrpc": "2.0",
                "id": self._next,
                "method": "tools/call",
                "params": {"name": tool, "arguments": arguments},
            },
        )
        assert response.status_code == 200, response.text
        return response.json()


def _text(reply: dict[str, Any]) -> str:
    return reply["result"]["content"][0]["text"]


def _stock(reply: dict[str, Any]) -> int:
    return reply["result"]["structuredContent"]["stock"]


@pytest.mark.anyio
async def test_a_runaway_call_holds_neither_healthz_nor_other_sessions(tmp_path: Path) -> None:
    server = ServerProcess(["--all", "--env-root", str(hostile_root(tmp_path / "fleet"))])
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            async with HealthWatch(server.base).during(), anyio.create_task_group() as tg:
                runaway_done = anyio.Event()

                async def runaway() -> None:
                    async with Client(f"{server.base}/envs/spin/s/runaway/mcp") as client:
                        await client.call_tool("spin", {})  # never ends here; a deadline makes it a tool error
                    runaway_done.set()

                tg.start_soon(runaway)
                while (await health(http))["calls"]["running"] < 1:  # until the server is inside the call
                    assert not runaway_done.is_set()
                    await anyio.sleep(0.01)
                async with Client(f"{server.base}/envs/mini/s/bystander/mcp") as other:
                    item = await other.call_tool("get_item", {"sku": "A-1"})
                    assert not item.is_error and item.structured_content["name"] == "Anvil"
                assert not runaway_done.is_set()  # the read finished while the runaway was still running
                assert (await health(http))["calls"]["running"] >= 1
                tg.cancel_scope.cancel()
    finally:
        stop_process(server.proc, kill=True)  # the runaway may still hold a worker thread


async def start_episode(http: httpx.AsyncClient, env_id: str, task_id: str | None = "mini-001") -> dict[str, Any]:
    response = await http.post("/episodes", json={"env_id": env_id, "task_id": task_id})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.anyio
async def test_control_plane_work_on_a_busy_episode_waits_for_its_call_and_holds_nothing_else(tmp_path: Path) -> None:
    """Scoring, reading, resetting and deleting episodes run in the episode's turn, in a worker thread: with runaway
    calls on two episodes, /healthz and every request about another episode answer at once (within HEALTHZ_BOUND,
    the client's timeout), deleting a busy episode answers at once, and scoring the busy one waits for its call."""
    root = hostile_root(tmp_path / "fleet")
    write_tasks(root / "spin", copy.deepcopy(MINI_TASKS))
    server = ServerProcess(["--all", "--env-root", str(root)])
    try:
        with anyio.fail_after(
            120
        ):  # a guard against a hang, not a measurement: the executor's deadline ends each runaway
            async with httpx.AsyncClient(base_url=server.base, timeout=HEALTHZ_BOUND) as http:
                busy, doomed, other = [await start_episode(http, "spin") for _ in range(3)]
                runaways: dict[str, Any] = {}
                scored: dict[str, httpx.Response] = {}
                async with HealthWatch(server.base).during(), anyio.create_task_group() as tg:

                    async def runaway(episode: dict[str, Any]) -> None:
                        async with Client(episode["mcp_url"]) as client:
                            runaways[episode["episode_id"]] = await client.call_tool("spin", {})

                    async def evaluate_busy() -> None:
                        async with httpx.AsyncClient(base_url=server.base, timeout=60) as patient:
                            scored["busy"] = await patient.post(
                                f"/episodes/{busy['episode_id']}/evaluate", json={"final_message": "ORD-0042"}
                            )

                    tg.start_soon(runaway, busy)
                    tg.start_soon(runaway, doomed)
                    while (await health(http))["calls"]["running"] < 2:  # until both calls run in the server
                        await anyio.sleep(0.01)
                    tg.start_soon(evaluate_busy)
                    # another episode of the same environment: every control-plane route answers (http's 1 s timeout)
                    score = await http.post(
                        f"/episodes/{other['episode_id']}/evaluate", json={"final_message": "ORD-0042"}
                    )
                    assert score.status_code == 200 and score.json()["episode_id"] == other["episode_id"]
                    assert (await http.get(f"/episodes/{other['episode_id']}")).json()["steps"] == 0
                    assert (await http.post(f"/episodes/{other['episode_id']}/reset")).json()["resets"] == 1
                    # deleting an episode whose call still runs answers at once; its state is closed after the call
                    assert (await http.delete(f"/episodes/{doomed['episode_id']}")).status_code == 204
                    assert (await http.get(f"/episodes/{doomed['episode_id']}")).status_code == 404
                    # the busy episode's score has not raced its call: it is still waiting while that call runs
                    assert "busy" not in scored
                    assert (await health(http))["calls"]["running"] >= 2
                assert scored["busy"].status_code == 200, scored["busy"].text
                assert scored["busy"].json()["success"] is False  # scored after the call, on the state it left
                assert all(result.is_error and "stopped" in result.content[0].text for result in runaways.values())
                after = (await http.get(f"/episodes/{busy['episode_id']}")).json()
                assert (
                    after["steps"] == 1
                    and after["trajectory"][0]["tool"] == "spin"
                    and after["trajectory"][0]["is_error"]
                )
                assert (await health(http))["calls"]["running"] == 0
    finally:
        stop_process(server.proc, kill=True)


@pytest.mark.anyio
async def test_dropping_a_keyed_state_whose_call_runs_holds_nothing(tmp_path: Path) -> None:
    """A reload and an eviction drop keyed states from the pool while their calls still run: each close waits for
    its call in the background, so /healthz and other sessions keep answering, and the calls end normally."""
    root = hostile_root(tmp_path / "fleet")
    server = ServerProcess(
        ["--all", "--env-root", str(root), "--max-states-per-client", "1", "--state-min-idle", "0.5"]
    )
    try:
        with anyio.fail_after(120):  # a guard against a hang, not a measurement
            async with httpx.AsyncClient(base_url=server.base, timeout=HEALTHZ_BOUND) as http:
                results: list[Any] = []
                async with HealthWatch(server.base).during(), anyio.create_task_group() as tg:

                    async def runaway(key: str) -> None:
                        async with Client(f"{server.base}/envs/spin/s/{key}/mcp") as client:
                            results.append(await client.call_tool("spin", {}))

                    tg.start_soon(runaway, "a")
                    while (await health(http))["calls"]["running"] < 1:
                        await anyio.sleep(0.01)
                    # a changed spec: the reload drops spin's keyed states, the busy one included, and answers at once
                    (root / "spin" / "env.json").write_text(
                        json.dumps({**runaway_spec(), "description": "Spins again."})
                    )
                    reloaded = await http.post("/admin/reload")
                    assert reloaded.status_code == 200 and reloaded.json()["changed"] == ["spin"]
                    stats = await health(http)
                    assert stats["states"]["live"] == 0 and stats["calls"]["running"] == 1 and not results

                    tg.start_soon(runaway, "b")
                    while (await health(http))["calls"]["running"] < 2:
                        await anyio.sleep(0.01)
                    # this client's one state is busy; once it has gone uncalled for --state-min-idle, a new key
                    # evicts it
                    while True:
                        async with Client(f"{server.base}/envs/mini/s/second/mcp") as client:
                            try:
                                item = await client.call_tool("get_item", {"sku": "A-1"})
                                break
                            except MCPError as e:
                                assert "Retry in" in str(e), e
                        await anyio.sleep(0.1)
                    assert not item.is_error
                    stats = await health(http)
                    assert stats["states"]["evicted"] == 1 and stats["states"]["live"] == 1
                    assert stats["calls"]["running"] == 2 and not results
                assert len(results) == 2 and all(r.is_error and "stopped" in r.content[0].text for r in results)
    finally:
        stop_process(server.proc, kill=True)


@pytest.mark.anyio
async def test_forged_session_ids_create_no_state_and_reach_no_session(hostile_fleet: ServerProcess) -> None:
    url = f"{hostile_fleet.base}/envs/mini/mcp"
    async with httpx.AsyncClient(base_url=hostile_fleet.base) as http, HealthWatch(hostile_fleet.base).during():
        live = (await health(http))["states"]["live"]
        for index in range(200):
            forged = uuid.uuid4().hex if index % 2 else f"forged-{index}"
            # a sessionless request carrying an invented id: the plain URL's shared, read-only state
            reply = (
                await http.post(
                    url,
                    headers=modern_headers("restock", forged),
                    json=modern_call("restock", {"sku": "C-3", "delta": 1}, index),
                )
            ).json()
            assert reply["result"]["isError"] and "shared and read-only" in _text(reply)
            # a handshake-era request with an id the server never issued: no such session
            refused = await http.post(
                url,
                headers={**JSON_HEADERS, "Mcp-Session-Id": forged, "MCP-Protocol-Version": HANDSHAKE},
                json={
                    "jsonrpc": "2.0",
                    "id": index,
                    "method": "tools/call",
                    "params": {"name": "restock", "arguments": {"sku": "C-3", "delta": 1}},
                },
            )
            assert refused.status_code == 404
        assert (await health(http))["states"]["live"] == live

        # a real session's id, borrowed by a sessionless request, neither reads nor writes that session's state
        session = await LegacySession(http, url).open()
        assert not (await session.call("restock", {"sku": "C-3", "delta": 5}))["result"].get("isError")
        assert _stock(await session.call("get_item", {"sku": "C-3"})) == 45
        assert (await health(http))["states"]["live"] == live + 1
        borrowed = (
            await http.post(
                url, headers=modern_headers("get_item", session.id), json=modern_call("get_item", {"sku": "C-3"})
            )
        ).json()
        assert _stock(borrowed) == 40
        write = (
            await http.post(
                url,
                headers=modern_headers("restock", session.id),
                json=modern_call("restock", {"sku": "C-3", "delta": 1}),
            )
        ).json()
        assert write["result"]["isError"]
        # nor can it end the session and so free its state
        await http.delete(url, headers={**JSON_HEADERS, "Mcp-Session-Id": session.id, "MCP-Protocol-Version": MODERN})
        assert _stock(await session.call("get_item", {"sku": "C-3"})) == 45
        assert (await health(http))["states"]["live"] == live + 1
        # the session's own DELETE ends it, and its state goes with it
        assert (await http.delete(url, headers=session.headers())).status_code in (200, 204)
        assert (await health(http))["states"]["live"] == live


def _raw_status(base: str, path: str) -> tuple[int, str]:
    """POST an initialize to ``path`` exactly as written (httpx would resolve ``.`` and ``..`` first)."""
    parsed = httpx.URL(base)
    conn = http.client.HTTPConnection(parsed.host, parsed.port, timeout=10)
    try:
        conn.request(
            "POST",
            path,
            body=json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": HANDSHAKE,
                        "capabilities": {},
                        "clientInfo": {"name": "probe", "version": "1"},
                    },
                }
            ),
            headers=JSON_HEADERS,
        )
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.anyio
@pytest.mark.parametrize("state_key", [".", "..", "..."])
async def test_dot_state_keys_are_refused(hostile_fleet: ServerProcess, state_key: str) -> None:
    async with httpx.AsyncClient(base_url=hostile_fleet.base) as http, HealthWatch(hostile_fleet.base).during():
        live = (await health(http))["states"]["live"]
        status, body = await anyio.to_thread.run_sync(_raw_status, hostile_fleet.base, f"/envs/mini/s/{state_key}/mcp")
        assert status == 400 and "not only dots" in json.loads(body)["error"]
        assert (await health(http))["states"]["live"] == live
    # keys with dots among other characters stay valid
    async with Client(f"{hostile_fleet.base}/envs/mini/s/run.{state_key}.1/mcp") as client:
        assert not (await client.call_tool("get_item", {"sku": "A-1"})).is_error


def test_path_ids() -> None:
    from servers.episodes import valid_id

    assert all(valid_id(v) for v in ("a", "run.1", ".hidden", "a..b", "x" * 128, "A-Z_a~z.0-9"))
    assert not any(valid_id(v) for v in (".", "..", "...", "", "a/b", "a b", "x" * 129, "é", "a\x00"))


@pytest.mark.anyio
@pytest.mark.parametrize("arguments", [[1, 2], "sku=A-1", 5, True])
async def test_non_object_arguments_are_tool_errors(hostile_fleet: ServerProcess, arguments: Any) -> None:
    kind = {list: "list", str: "str", int: "int", bool: "bool"}[type(arguments)]
    expected = f"Arguments to get_item must be a JSON object, not {kind}."
    async with httpx.AsyncClient(base_url=hostile_fleet.base) as http, HealthWatch(hostile_fleet.base).during():
        for path in ("/envs/mini/mcp", f"/envs/mini/s/{uuid.uuid4().hex}/mcp"):  # the shared state and a keyed one
            reply = (
                await http.post(path, headers=modern_headers("get_item"), json=modern_call("get_item", arguments))
            ).json()
            assert reply["result"]["isError"] and _text(reply) == expected, reply
        session = await LegacySession(http, f"{hostile_fleet.base}/envs/mini/mcp").open()
        reply = await session.call("get_item", arguments)
        assert reply["result"]["isError"] and _text(reply) == expected, reply
        assert (await http.delete(session.url, headers=session.headers())).status_code in (200, 204)


@pytest.mark.anyio
async def test_calls_on_one_state_still_run_one_at_a_time(hostile_fleet: ServerProcess) -> None:
    """Calls now run in worker threads; those on one state copy must still apply one after another."""
    url = f"{hostile_fleet.base}/envs/mini/s/{uuid.uuid4().hex}/mcp"
    async with Client(url) as a, Client(url, mode="legacy") as b, anyio.create_task_group() as tg:
        for index in range(40):
            tg.start_soon((a if index % 2 else b).call_tool, "restock", {"sku": "C-3", "delta": 1})
    async with Client(url) as client:
        assert (await client.call_tool("get_item", {"sku": "C-3"})).structured_content["stock"] == 80


@pytest.mark.anyio
async def test_a_runaway_call_over_stdio_does_not_hold_the_server(tmp_path: Path) -> None:
    from mcp import StdioServerParameters

    from tests.conftest import ENVFLEET

    folder = write_env(tmp_path / "spin", runaway_spec())
    params = StdioServerParameters(
        command=ENVFLEET[0], args=[*ENVFLEET[1:], "serve", str(folder), "--log-level", "warning"]
    )
    async with Client(params) as client, anyio.create_task_group() as tg:
        runaway_done = anyio.Event()

        async def runaway() -> None:
            await client.call_tool("spin", {})
            runaway_done.set()

        assert (
            len((await client.list_tools()).tools) == 6
        )  # the client knows the tools: call_tool sends the call at once
        tg.start_soon(runaway)
        await anyio.sleep(0)
        # the server reads the call before this request (one pipe, in order), and must answer while the call runs
        assert len((await client.list_tools()).tools) == 6
        policy = await client.read_resource("envfleet://spin/policy")
        assert policy.contents[0].text == MINI_SPEC["policy"]
        assert not runaway_done.is_set()
        tg.cancel_scope.cancel()


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_fleet_under_sustained_attack(tmp_path: Path) -> None:
    """The longer variant: runaway calls back to back on two sessions while eight sessions of both eras read and
    write another environment, and 2,000 forged session ids, dot keys and non-object arguments arrive."""
    server = ServerProcess(["--all", "--env-root", str(hostile_root(tmp_path / "fleet"))])
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            live = (await health(http))["states"]["live"]
            stopped: list[bool] = []
            async with HealthWatch(server.base).during(), anyio.create_task_group() as attackers:

                async def runaways(index: int) -> None:
                    async with Client(f"{server.base}/envs/spin/s/runaway-{index}/mcp") as client:
                        while True:
                            stopped.append((await client.call_tool("spin", {})).is_error)

                async def forge(count: int) -> None:
                    for index in range(count):
                        reply = (
                            await http.post(
                                "/envs/mini/mcp",
                                headers=modern_headers("restock", uuid.uuid4().hex),
                                json=modern_call("restock", {"sku": "C-3", "delta": 1}, index),
                            )
                        ).json()
                        assert reply["result"]["isError"]
                        missing = await http.post(
                            "/envs/mini/mcp",
                            json={"jsonrpc": "2.0", "id": index, "method": "ping"},
                            headers={**JSON_HEADERS, "Mcp-Session-Id": uuid.uuid4().hex},
                        )
                        assert missing.status_code == 404

                for index in range(2):
                    attackers.start_soon(runaways, index)
                while (await health(http))["calls"]["running"] < 2:
                    await anyio.sleep(0.01)

                async def bystander(index: int) -> None:
                    url = f"{server.base}/envs/mini/s/bystander-{index}/mcp"
                    async with Client(url, mode="legacy" if index % 2 else "auto") as client:
                        for _ in range(50):
                            assert not (await client.call_tool("restock", {"sku": "A-1", "delta": 1})).is_error
                            odd = (
                                await http.post(
                                    url, headers=modern_headers("get_item"), json=modern_call("get_item", [1, 2])
                                )
                            ).json()
                            assert odd["result"]["isError"] and "must be a JSON object" in _text(odd)
                        item = await client.call_tool("get_item", {"sku": "A-1"})
                        assert item.structured_content["stock"] == 3 + 50

                async with anyio.create_task_group() as work:
                    for index in range(8):
                        work.start_soon(bystander, index)
                    work.start_soon(forge, 1000)
                    work.start_soon(forge, 1000)
                    for key in (".", "..", "..."):
                        status, _ = await anyio.to_thread.run_sync(_raw_status, server.base, f"/envs/mini/s/{key}/mcp")
                        assert status == 400
                attackers.cancel_scope.cancel()
            assert (await health(http))["states"]["live"] == live + 8 + 2
            assert all(stopped)  # every runaway call that ended was stopped with a tool error, none hung the fleet
    finally:
        stop_process(server.proc, kill=True)


def test_small_calls_run_on_the_loop_and_big_ones_in_a_worker_thread() -> None:
    """The call runner's fast path: a call within INLINE_BUDGET never leaves the event loop's thread;
    one that outgrows it is rolled back and run again in a worker, with the same result as a plain call."""
    spec = copy.deepcopy(MINI_SPEC)
    spec["tools"].append(
        {
            "name": "count_slowly",
            "description": "Count to 100,000.",
            "kind": "read",
            "steps": [
                {
                    "kind": "return",
                    "shape": "scalar",
                    "sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                    "SELECT i + 1 FROM n WHERE i < 100000) SELECT COUNT(*) FROM n",
                }
            ],
        }
    )
    env = Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    state = env.new_state()
    threads: list[int] = []

    def run(tool: str, arguments: Any) -> Any:
        threads.append(threading.get_ident())
        return env.executor.call(state, tool, arguments)

    async def main() -> tuple[int, Any, Any]:
        runner = CallRunner(threads=2)
        small = await runner.run(CallTarget(run, state), "get_item", {"sku": "A-1"})
        big = await runner.run(CallTarget(run, state), "count_slowly", {})
        return threading.get_ident(), small, big

    loop_thread, small, big = anyio.run(main)
    assert small.structured["stock"] == 3 and big.structured == {"value": 100000}
    assert threads[0] == loop_thread  # the small call: once, inline
    assert (
        threads[1] == loop_thread and threads[2] != loop_thread and len(threads) == 3
    )  # the big one: tried, then moved
