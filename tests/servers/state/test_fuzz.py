"""Random and hostile arguments against every tool: an error or a result, never a crash, never a
change on error. The default run is bounded; ENVFLEET_FUZZ_CALLS raises it (the `slow` test runs 20x)."""

from __future__ import annotations

import os
import random
import zlib
from typing import Any

import pytest

from servers import Environment

CALLS = int(os.environ.get("ENVFLEET_FUZZ_CALLS", "25"))

HOSTILE: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63 - 1,
    -(2**63),
    2**64,
    1e308,
    -0.0,
    float("nan"),
    float("inf"),
    3.14159,
    "",
    " ",
    "'",
    "''",
    '"',
    "\\",
    "%",
    "_",
    "*",
    ";",
    "--",
    "/*",
    "NULL",
    "null",
    "now",
    "localtime",
    "' OR '1'='1",
    "'; DROP TABLE members; --",
    "1; DELETE FROM loans",
    "\x00",
    "\u202e\u0000\ufeff",
    "🦄" * 50,
    "Ωmega",
    "x" * 70_000,
    "é" * 5000,
    "2026-02-30",
    "2026-03-14 25:61:00",
    "9999-12-31",
    "0000-00-00",
    [],
    {},
    [1, 2, 3],
    {"a": {"b": {"c": [None]}}},
    ["' OR 1=1"],
    {"$where": "1"},
]


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = {"k": [value]}
    return value


def plausible_values(env: Environment) -> list[Any]:
    """Real ids and values from the seed, so some calls get past the argument checks."""
    state = env.new_state()
    values: list[Any] = []
    for table in env.spec.tables:
        for row in state.rows(table.name)[:8]:
            values.extend(v for v in row.values() if v is not None)
    return values


def random_arguments(rng: random.Random, schema: dict[str, Any], pool: list[Any]) -> Any:
    properties = schema.get("properties", {})
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(["not an object", [1, 2], 42, None])
    args: dict[str, Any] = {}
    for name, prop in properties.items():
        if rng.random() < 0.2:
            continue
        choice = rng.random()
        if choice < 0.45:
            args[name] = rng.choice(pool)
        elif choice < 0.6 and "enum" in prop:
            args[name] = rng.choice(prop["enum"])
        elif choice < 0.65:
            args[name] = nested(rng.randint(20, 60))
        else:
            args[name] = rng.choice(HOSTILE)
    if rng.random() < 0.1:
        args[rng.choice(["extra", "__proto__", "member_id; --", "a" * 300])] = rng.choice(HOSTILE)
    return args


def fuzz(env: Environment, calls_per_tool: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    pool = plausible_values(env) + HOSTILE
    state = env.new_state()
    outcomes = {"ok": 0, "error": 0}
    names = env.tool_names + ["no_such_tool"]
    for name in names:
        compiled = env.tools.get(name)
        schema = compiled.input_schema if compiled else {}
        for _ in range(calls_per_tool):
            args = random_arguments(rng, schema, pool)
            before = state.digest()
            result = env.call(state, name, args)  # must not raise
            if result.is_error:
                assert state.digest() == before, (name, args, result.text)
                assert result.text and result.structured["error"]["type"] in (
                    "invalid_arguments",
                    "unknown_tool",
                    "rule_violation",
                    "execution_error",
                )
                outcomes["error"] += 1
            else:
                outcomes["ok"] += 1
                if compiled and compiled.tool.kind == "read":
                    assert state.digest() == before, name
    return outcomes


@pytest.mark.parametrize("env_name", ["library", "clinic", "mini"])
def test_fuzz_every_tool(env_name: str, request: pytest.FixtureRequest) -> None:
    env: Environment = request.getfixturevalue(env_name)
    outcomes = fuzz(env, CALLS, seed=zlib.crc32(env_name.encode()))
    assert outcomes["error"] > 0
    assert outcomes["ok"] > 0, "no call got through; the fuzzer is not reaching the steps"


@pytest.mark.slow
@pytest.mark.parametrize("env_name", ["library", "clinic"])
def test_fuzz_every_tool_long(env_name: str, request: pytest.FixtureRequest) -> None:
    env: Environment = request.getfixturevalue(env_name)
    fuzz(env, CALLS * 20, seed=7)
