"""Bounded calls: every limit has a ceiling, a call has a deadline, SQLite cannot build huge values, a state
copy is safe across threads, and arguments SQLite would misread (NUL, impossible dates) are refused.
Each limit hit is a tool error that names the limit and leaves the state as it was."""

from __future__ import annotations

import copy
import json
import sqlite3
import subprocess
import sys
import threading
from typing import Any

import pytest

from servers import Environment, SpecError
from servers.spec import Limits
from servers.state import CallPreempted, preemptible
from tests.conftest import MINI_SEED, MINI_SPEC, REPO

SPIN = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000000) SELECT COUNT(*) FROM n"
DOUBLING = (
    "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r WHERE length(s) < :n) SELECT "
    "max(length(s)) FROM r"
)


def spec_with(limits: dict[str, Any] | None = None, tools: list[dict[str, Any]] = ()) -> dict[str, Any]:
    spec = copy.deepcopy(MINI_SPEC)
    if limits is not None:
        spec["limits"] = limits
    spec["tools"].extend(copy.deepcopy(list(tools)))
    return spec


def read_tool(name: str, sql: str, params: dict[str, Any] | None = None, shape: str = "scalar") -> dict[str, Any]:
    return {
        "name": name,
        "description": "A probe.",
        "kind": "read",
        "parameters": {"type": "object", "properties": params or {}},
        "steps": [{"kind": "return", "shape": shape, "sql": sql}],
    }


def issues_of(spec: dict[str, Any], seed: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(spec, copy.deepcopy(MINI_SEED) if seed is None else seed)
    return [str(i) for i in caught.value.issues]


# -- 1. ceilings ------------------------------------------------------------------------------------

CEILINGS = {
    "max_rows": 10_000,
    "max_string_length": 4_194_304,
    "max_sql_steps": 100_000_000,
    "max_call_ms": 10_000,
    "max_value_bytes": 16_777_216,
    "max_result_bytes": 16_777_216,
    "max_state_bytes": 1_073_741_824,
    "max_iterations": 100_000,
}


@pytest.mark.parametrize(("name", "ceiling"), sorted(CEILINGS.items()))
def test_every_limit_has_a_ceiling(name: str, ceiling: int) -> None:
    assert set(CEILINGS) == set(Limits.model_fields)
    issues = issues_of(spec_with({name: 10**15}))
    assert issues == [f"limits.{name}: Input should be less than or equal to {ceiling}"]
    at_ceiling = {name: ceiling}
    if name == "max_string_length":
        at_ceiling |= {"max_value_bytes": 4 * ceiling, "max_result_bytes": 4 * ceiling}
    Environment.from_spec(spec_with(at_ceiling), copy.deepcopy(MINI_SEED))


@pytest.mark.parametrize("name", ["max_value_bytes", "max_result_bytes"])
def test_values_and_results_must_hold_the_longest_argument(name: str) -> None:
    issues = issues_of(
        spec_with(
            {
                "max_string_length": 1_000_000,
                "max_value_bytes": 4_000_000,
                "max_result_bytes": 4_000_000,
                name: 3_999_999,
            }
        )
    )
    assert len(issues) == 1 and issues[0].startswith(
        f"limits: Value error, {name} (3,999,999) must be at least 4 x max_string_length"
    )


def test_the_published_schema_states_the_ceilings() -> None:
    schema = json.loads((REPO / "docs" / "env-spec.schema.json").read_text())
    properties = schema["$defs"]["Limits"]["properties"]
    assert {name: p["maximum"] for name, p in properties.items()} == CEILINGS


# -- 2. deadline ------------------------------------------------------------------------------------


def test_a_call_past_its_deadline_is_stopped_and_undone() -> None:
    """The step budget is at its ceiling, so only the wall clock can stop this write in time."""
    writer = {
        "name": "order_and_spin",
        "description": "Orders, then spins.",
        "kind": "write",
        "steps": [
            {"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
            {
                "kind": "exec",
                "sql": "INSERT INTO orders (order_id, sku, quantity, placed_at) VALUES (:order_id, 'C-3', 1, now())",
            },
            {"kind": "exec", "sql": "UPDATE items SET stock = stock - 1 WHERE sku = 'C-3'"},
            {"kind": "return", "shape": "scalar", "sql": SPIN},
        ],
    }
    env = Environment.from_spec(
        spec_with({"max_call_ms": 30, "max_sql_steps": 100_000_000}, [read_tool("spin", SPIN), writer]),
        copy.deepcopy(MINI_SEED),
    )
    state = env.new_state()
    before = state.digest()
    for tool in ("spin", "order_and_spin"):
        result = env.call(state, tool, {})
        assert result.is_error, tool
        assert (
            result.text.startswith(f"{tool} was stopped after ")
            and " ms: a call may run for at most 30 ms (limits.max_call_ms)" in result.text
        )
        assert "Nothing was changed" in result.text
        assert result.structured["error"]["limit"] == "max_call_ms"
        assert state.digest() == before
    placed = env.call(state, "place_order", {"sku": "C-3", "quantity": 1})
    assert placed.structured["order_id"] == "ORD-0042"  # the id the stopped call drew is handed out again


def test_the_deadline_restarts_with_every_call() -> None:
    env = Environment.from_spec(
        spec_with({"max_call_ms": 30, "max_sql_steps": 100_000_000}, [read_tool("spin", SPIN)]),
        copy.deepcopy(MINI_SEED),
    )
    state = env.new_state()
    assert env.call(state, "spin", {}).is_error
    assert env.call(state, "count_orders", {}).structured == {"value": 1}


# -- 3. memory --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT printf('%.*c', :n, 'x')", "printf() format '%.*c' takes a width or precision from an argument ('*')"),
        ("SELECT printf('%*d', :n, 1)", "takes a width or precision from an argument"),
        ("SELECT format('%.*c', :n, 'x')", "format() format '%.*c' takes a width or precision from an argument"),
        ("SELECT printf('%' || :n || 'c', 'x')", "printf() needs a literal format string"),
        ("SELECT format(:f, 1) FROM items WHERE :n > 0", "format() needs a literal format string"),
        ("SELECT printf('%999999999c', :n)", "asks for a width or precision of 999,999,999; the most is 1,000"),
        ("SELECT printf('%.5000f', :n)", "width or precision of 5,000"),
    ],
)
def test_formats_whose_size_an_argument_controls_are_refused_at_validation(sql: str, fragment: str) -> None:
    params = {"n": {"type": "integer", "description": "A number."}, "f": {"type": "string", "description": "A format."}}
    issues = issues_of(spec_with(tools=[read_tool("probe", sql, params)]))
    assert len(issues) == 1 and issues[0].startswith("tools.probe.steps[0](return).sql: ") and fragment in issues[0]


def test_ordinary_formats_are_accepted() -> None:
    sql = "SELECT printf('%05d|%-20s|%.2f|100%%|%,d', stock, name, price, stock) AS line FROM items WHERE sku = :sku"
    env = Environment.from_spec(
        spec_with(tools=[read_tool("line", sql, {"sku": {"type": "string", "description": "SKU."}})]),
        copy.deepcopy(MINI_SEED),
    )
    assert env.call(env.new_state(), "line", {"sku": "A-1"}).structured == {
        "value": "00003|Anvil               |99.50|100%|3"
    }


def test_a_table_check_may_not_format_by_a_column() -> None:
    spec = spec_with()
    spec["tables"][0]["checks"].append(
        {"name": "wide", "expression": "length(printf('%.*c', stock, 'x')) >= 0", "message": "m"}
    )
    assert any("tables.items.checks.wide: expression printf() format" in i for i in issues_of(spec))


def test_a_value_growing_past_max_value_bytes_is_stopped() -> None:
    """A string-doubling CTE: SQLite refuses to build a value longer than the limit, so memory stays bounded."""
    params = {"n": {"type": "integer", "description": "Target length."}}
    env = Environment.from_spec(
        spec_with({"max_value_bytes": 1_048_576}, [read_tool("double", DOUBLING, params)]), copy.deepcopy(MINI_SEED)
    )
    state = env.new_state()
    before = state.digest()
    assert env.call(state, "double", {"n": 1000}).structured == {"value": 1024}
    result = env.call(state, "double", {"n": 10**10})
    assert result.is_error and result.structured["error"] == {
        "type": "execution_error",
        "limit": "max_value_bytes",
        "message": "double was stopped: a value grew beyond 1,048,576 bytes (limits.max_value_bytes). "
        "Nothing was changed. Use shorter values or ask for less.",
    }
    assert state.digest() == before


def test_a_write_building_a_huge_value_is_undone() -> None:
    writer = {
        "name": "bloat",
        "description": "Writes a long note.",
        "kind": "write",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer", "description": "Length."}}},
        "steps": [
            {"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
            {
                "kind": "exec",
                "sql": "INSERT INTO orders (order_id, sku, quantity, placed_at) VALUES (:order_id, 'C-3', 1, now())",
            },
            {"kind": "exec", "sql": f"UPDATE orders SET note = ({DOUBLING}) WHERE order_id = :order_id"},
        ],
    }
    env = Environment.from_spec(
        spec_with({"max_value_bytes": 4096, "max_string_length": 1024, "max_result_bytes": 4096}, [writer]),
        copy.deepcopy(MINI_SEED),
    )
    state = env.new_state()
    before = state.digest()
    result = env.call(state, "bloat", {"n": 10**6})
    assert result.is_error and result.structured["error"]["limit"] == "max_value_bytes"
    assert "beyond 4,096 bytes" in result.text
    assert state.digest() == before


def test_results_are_capped_in_bytes() -> None:
    seed = copy.deepcopy(MINI_SEED)
    seed["items"] = [{"sku": f"S-{i}", "name": "spoon " + "x" * 600, "stock": 1, "price": 1.0} for i in range(5)]
    seed["orders"] = []
    limits = {"max_result_bytes": 1024, "max_string_length": 256, "max_value_bytes": 4096}
    names = read_tool("names", "SELECT group_concat(name) FROM items")
    env = Environment.from_spec(spec_with(limits, [names]), seed)
    state = env.new_state()
    before = state.digest()
    assert env.call(state, "get_item", {"sku": "S-1"}).structured["sku"] == "S-1"  # one row fits
    for tool, args in (("search_items", {"query": "spoon"}), ("names", {})):
        result = env.call(state, tool, args)
        assert result.is_error and result.structured["error"]["limit"] == "max_result_bytes", tool
        assert "its result is larger than 1,024 bytes (limits.max_result_bytes)" in result.text
    assert state.digest() == before


SAMPLES = [
    "'hello', 'll'",
    "'abc', 'z'",
    "NULL, 'a'",
    "'a', NULL",
    "12345, 34",
    "1.5, '.'",
    "x'0102', x'02'",
    "'héllo', 'l'",
    "'', ''",
    "'abc', ''",
    "x'6162', 'b'",
    "'abc', x'62'",
    "'xxhixyx', 'xy'",
    "'  é é  ', ' é'",
    "120021, 1",
    "'aaa', 'a'",
]


@pytest.mark.parametrize("args", SAMPLES)
def test_linear_string_functions_agree_with_sqlite(mini: Environment, args: str) -> None:
    """State copies run instr(), replace() and trim(x, chars) in linear time (SQLite's take value length x
    needle length, inside one step no deadline can stop); they answer as SQLite's own do."""
    plain = sqlite3.connect(":memory:")
    sql = (
        f"SELECT instr({args}), replace({args}, 'Z'), typeof(replace({args}, 'Z')), replace({args}, ''), "
        f"replace({args}, NULL), "
        f"trim({args}), ltrim({args}), rtrim({args}), typeof(trim({args}))"
    )
    state = mini.new_state()
    with state.mode("read"):
        assert state.conn.execute(sql).fetchall() == plain.execute(sql).fetchall()


def test_replace_growth_past_max_value_bytes_is_stopped() -> None:
    params = {"n": {"type": "integer", "description": "Repeats."}}
    sql = "SELECT length(replace(printf('%.1000c%.100c', 'x', 'x'), 'x', printf('%.1000c', 'y')))"
    env = Environment.from_spec(
        spec_with({"max_value_bytes": 1_048_576}, [read_tool("grow", sql + " + :n", params)]), copy.deepcopy(MINI_SEED)
    )
    state = env.new_state()
    result = env.call(state, "grow", {"n": 1})
    assert result.is_error and result.structured["error"]["limit"] == "max_value_bytes"


def test_a_state_cannot_grow_past_max_state_bytes() -> None:
    """Big notes, one order at a time: the write that would pass the cap is stopped and undone; the
    state stays usable for calls that fit."""
    env = Environment.from_spec(
        spec_with(
            {
                "max_state_bytes": 1_048_576,
                "max_string_length": 60_000,
                "max_value_bytes": 240_000,
                "max_result_bytes": 240_000,
            }
        ),
        copy.deepcopy(MINI_SEED),
    )
    state = env.new_state()
    note = "n" * 60_000
    for _ in range(100):
        before = state.digest()
        result = env.call(state, "place_order", {"sku": "C-3", "quantity": 1, "note": note})
        if result.is_error:
            break
    else:
        pytest.fail("100 orders of 60 kB fitted in a 1 MiB state")
    assert result.structured["error"]["limit"] == "max_state_bytes"
    assert "the state would grow beyond 1,048,576 bytes (limits.max_state_bytes)" in result.text
    assert state.digest() == before
    assert not env.call(state, "place_order", {"sku": "C-3", "quantity": 1}).is_error


def test_a_seed_larger_than_max_state_bytes_is_refused() -> None:
    seed = copy.deepcopy(MINI_SEED)
    seed["items"] = [{"sku": f"S-{i}", "name": "x" * 50_000, "stock": 1, "price": 1.0} for i in range(30)]
    issues = issues_of(spec_with({"max_state_bytes": 1_048_576}), seed)
    assert issues and all(
        i.startswith("seed.items[") and i.endswith("the data does not fit in limits.max_state_bytes (1,048,576 bytes)")
        for i in issues
    ), issues


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        (" UNION ALL ".join(f"SELECT {i} AS n" for i in range(60)), "too many terms in compound SELECT"),
        ("SELECT " + " + ".join(["1"] * 600), "Expression tree is too large"),
    ],
)
def test_query_shape_is_bounded_by_sqlite_limits(sql: str, fragment: str) -> None:
    issues = issues_of(spec_with(tools=[read_tool("wide", sql)]))
    assert any(i.startswith("tools.wide.steps[0](return).sql: SQLite refuses it") and fragment in i for i in issues), (
        issues
    )


def test_seed_values_longer_than_max_value_bytes_are_refused_where_they_are() -> None:
    seed = copy.deepcopy(MINI_SEED)
    seed["items"][1]["name"] = "x" * 5000
    issues = issues_of(spec_with({"max_value_bytes": 4096, "max_string_length": 1024, "max_result_bytes": 4096}), seed)
    assert issues == ["seed.items[1]: a value is longer than limits.max_value_bytes (4,096 bytes)"]


# -- 4. threads -------------------------------------------------------------------------------------

HAMMER = """
import copy, json, sys, threading
from servers import Environment
from tests.conftest import MINI_SEED, MINI_SPEC
env = Environment.from_spec(copy.deepcopy(MINI_SPEC), copy.deepcopy(MINI_SEED))
state = env.new_state()
errors = []
def work():
    for _ in range(150):
        for tool, args in (("restock", {"sku": "C-3", "delta": 2}), ("place_order", {"sku": "C-3", "quantity": 1}),
                           ("search_items", {"query": "a"}), ("count_orders", {})):
            result = env.call(state, tool, args)
            if result.is_error:
                errors.append(result.text)
        state.digest()
        state.rows("orders")
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"digest": state.digest(), "errors": errors[:3], "stock": state.rows("items")[2]["stock"]}))
"""


def test_one_state_hammered_from_threads_ends_as_the_serial_run() -> None:
    """Four threads share one state copy. Unlocked, this froze the interpreter (hence the subprocess and
    its timeout); locked, every call is a whole transaction and the result equals the same calls in series."""
    done = subprocess.run([sys.executable, "-c", HAMMER], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    threaded = json.loads(done.stdout)
    assert threaded["errors"] == []
    env = Environment.from_spec(copy.deepcopy(MINI_SPEC), copy.deepcopy(MINI_SEED))
    serial = env.new_state()
    for _ in range(4 * 150):
        assert not env.call(serial, "restock", {"sku": "C-3", "delta": 2}).is_error
        assert not env.call(serial, "place_order", {"sku": "C-3", "quantity": 1}).is_error
    assert threaded["stock"] == 40 + 4 * 150
    assert threaded["digest"] == serial.digest()


def test_direct_connection_use_waits_for_the_call_in_progress(mini: Environment) -> None:
    """``mode()`` holds the state's lock, so another thread cannot touch the connection meanwhile."""
    state = mini.new_state()
    seen: list[bool] = []
    with state.mode("read"):
        probe = threading.Thread(target=lambda: seen.append(state.lock.acquire(blocking=False)))
        probe.start()
        probe.join()
    assert seen == [False]
    assert state.lock.acquire(blocking=False)
    state.lock.release()


# -- 5. arguments -----------------------------------------------------------------------------------


def test_nul_in_a_search_is_refused_instead_of_truncating(library: Environment) -> None:
    state = library.new_state()
    result = library.call(state, "search_books", {"query": "a\x00b"})
    assert result.is_error and result.structured["error"]["type"] == "invalid_arguments"
    assert "query contains a NUL character (\\u0000), which text may not hold; remove it" in result.text


def test_an_overlong_search_pattern_is_refused_by_name(library: Environment) -> None:
    """LIKE costs value length x pattern length inside one SQLite step, where no deadline can stop it;
    the pattern length is capped instead."""
    state = library.new_state()
    before = state.digest()
    assert not library.call(state, "search_books", {"query": "a" * 900}).is_error
    result = library.call(state, "search_books", {"query": "a_" * 1000})
    assert result.is_error and result.structured["error"]["limit"] == "like_pattern_length"
    assert "a search pattern may be at most 1,000 characters long" in result.text
    assert state.digest() == before


WHEN = {
    "name": "schedule",
    "description": "Schedules an order.",
    "kind": "write",
    "parameters": {
        "type": "object",
        "properties": {
            "at": {
                "type": "string",
                "description": "When.",
                "pattern": "^\\d{4}-\\d{2}-\\d{2}[ T]\\d{2}:\\d{2}(:\\d{2})?$",
            },
            "day": {"type": "string", "description": "Which day.", "format": "date"},
        },
        "required": ["at"],
    },
    "steps": [
        {
            "kind": "exec",
            "sql": "UPDATE orders SET note = :at || coalesce(' ' || :day, '') WHERE order_id = 'ORD-0041'",
        },
        {"kind": "return", "sql": "SELECT note FROM orders WHERE order_id = 'ORD-0041'", "shape": "scalar"},
    ],
}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ({"at": "9999-99-99 99:99"}, "at: '9999-99-99 99:99' is not a real date and time (write YYYY-MM-DD HH:MM[:SS]"),
        ({"at": "2026-02-29 10:00"}, "at: '2026-02-29 10:00' is not a real date and time"),
        ({"at": "2026-04-31T10:00"}, "is not a real date and time"),
        ({"at": "2026-01-05 24:00"}, "is not a real date and time"),
        ({"at": "2026-01-05 23:60:00"}, "is not a real date and time"),
        ({"at": "2026-01-05 10:00", "day": "2026-02-30"}, 'day: "2026-02-30" is not a "date"'),
        ({"at": "2026-01-05 10:00", "day": "2026-13-01"}, 'is not a "date"'),
    ],
)
def test_impossible_dates_are_refused(args: dict[str, str], fragment: str) -> None:
    env = Environment.from_spec(spec_with(tools=[WHEN]), copy.deepcopy(MINI_SEED))
    state = env.new_state()
    before = state.digest()
    result = env.call(state, "schedule", args)
    assert result.is_error and result.structured["error"]["type"] == "invalid_arguments"
    assert fragment in result.text, result.text
    assert state.digest() == before


@pytest.mark.parametrize("at", ["2028-02-29 10:00", "2026-01-05T23:59:59", "2026-12-31 00:00"])
def test_real_dates_pass(at: str) -> None:
    env = Environment.from_spec(spec_with(tools=[WHEN]), copy.deepcopy(MINI_SEED))
    assert env.call(env.new_state(), "schedule", {"at": at, "day": "2028-02-29"}).structured == {
        "value": f"{at} 2028-02-29"
    }


def test_a_reference_slot_search_refuses_the_thirtieth_of_february() -> None:
    """The clinic compares ``:from_date`` with dates in SQL, where 2026-02-30 would sort as a real day."""
    from tests.conftest import ENV_ROOT

    env = Environment.load(ENV_ROOT / "clinic")
    state = env.new_state()
    result = env.call(state, "find_open_slots", {"from_date": "2026-02-30"})
    assert result.is_error and 'from_date: "2026-02-30" is not a "date"' in result.text
    real = env.call(state, "find_open_slots", {"from_date": "2026-02-28"})  # the date passes; a rule asks for more
    assert real.structured["error"]["type"] == "rule_violation"


# -- preemptible calls (the server's inline fast path) ------------------------------------------------


def test_a_preemptible_call_that_outgrows_its_budget_is_rolled_back_and_rerun_alike() -> None:
    """A write that needs more than the small inline budget raises CallPreempted with nothing changed
    (rows and id counters), and the same call run without the budget gives what a plain call gives."""
    slow_write = {
        "name": "slow_order",
        "description": "Order after a long look.",
        "kind": "write",
        "parameters": {"type": "object", "properties": {}},
        "steps": [
            {"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
            {
                "kind": "let",
                "name": "n",
                "sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                "WHERE i < 50000) SELECT COUNT(*) FROM n",
            },
            {
                "kind": "exec",
                "sql": "INSERT INTO orders (order_id, sku, quantity, placed_at) VALUES (:order_id, 'C-3', 1, now())",
            },
            {"kind": "return", "sql": "SELECT order_id FROM orders WHERE order_id = :order_id", "shape": "row"},
        ],
    }
    env = Environment.from_spec(spec_with(tools=[slow_write]), copy.deepcopy(MINI_SEED))
    state, plain = env.new_state(), env.new_state()
    before = state.digest()
    with pytest.raises(CallPreempted), preemptible(10_000, 1_000):
        env.call(state, "slow_order", {})
    assert state.digest() == before
    assert (
        env.call(state, "slow_order", {}).structured
        == env.call(plain, "slow_order", {}).structured
        == {"order_id": "ORD-0042"}
    )
    assert state.digest() == plain.digest()
    with preemptible(10_000, 1_000):  # a small call fits the budget and runs as usual
        assert env.call(state, "get_item", {"sku": "A-1"}).structured["stock"] == 3


def test_a_preemptible_call_never_waits_for_a_busy_state() -> None:
    env = Environment.from_spec(spec_with(), copy.deepcopy(MINI_SEED))
    state = env.new_state()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with state.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        with pytest.raises(CallPreempted), preemptible(10_000, 1_000):
            env.call(state, "get_item", {"sku": "A-1"})
    finally:
        release.set()
        holder.join()
