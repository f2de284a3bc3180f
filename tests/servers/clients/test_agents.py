"""schema_value: the one JSON-Schema value generator (the random agent, the synthesizer's probes and drafts)."""

from __future__ import annotations

import random
from typing import Any

import anyio

from servers import Environment
from servers.clients import RandomAgent, rollout_in_process, schema_value

SCHEMAS: list[dict[str, Any]] = [
    {"enum": ["a", "b", "c"]},
    {"type": "boolean"},
    {"type": "integer", "minimum": 3},
    {"type": "number"},
    {"type": "string", "pattern": "^B"},
    {"type": "string"},
]
AGENT = {"integers": (0, 30), "integer_span": 30, "numbers": None}
"""The random agent's parameters."""


def draws(seed: int, pool: list[Any], **options: Any) -> list[Any]:
    rng = random.Random(seed)
    return [schema_value(schema, rng, name="note", pool=pool, **options) for schema in SCHEMAS * 4]


def test_the_same_seed_gives_the_same_values_and_another_seed_others() -> None:
    pool = ["Anvil", "Bolt", 12, 2.5]
    assert draws(4, pool) == draws(4, pool) and draws(4, pool, **AGENT) == draws(4, pool, **AGENT)
    assert draws(4, []) != draws(5, [])


def test_the_random_agent_draws_what_it_drew_before_the_generators_were_one() -> None:
    """Values pinned from the random agent's own generator before it moved into schema_value."""
    rng = random.Random(4)
    pool = ["Anvil", "Bolt", 12, 2.5]
    assert [schema_value(s, rng, pool=pool, **AGENT) for s in SCHEMAS * 2] == [
        "a",
        True,
        18,
        12,
        "Bolt",
        "Bolt",
        "c",
        False,
        27,
        2.5,
        "Bolt",
        "Anvil",
    ]
    rng = random.Random(4)
    assert [schema_value(s, rng, **AGENT) for s in SCHEMAS] == ["a", True, 26, 12, "x", "x"]


def test_each_kind_of_schema_gets_a_value_it_allows() -> None:
    rng = random.Random(0)
    for _ in range(200):
        assert schema_value({"enum": [1, "two"]}, rng) in (1, "two")
        assert isinstance(schema_value({"type": "boolean"}, rng), bool)
        assert 1 <= schema_value({"type": "integer"}, rng) <= 4
        assert 3 <= schema_value({"type": "integer", "minimum": 3}, rng, integers=(1, 5)) <= 5
        assert 7 <= schema_value({"type": "integer", "minimum": 7}, rng, integer_span=2) <= 9
        number = schema_value({"type": "number"}, rng, numbers=(1, 50))
        assert 1 <= number <= 50 and number == round(number, 2)
        assert isinstance(schema_value({"type": "number"}, rng, numbers=None), int)
    assert {schema_value({"type": "boolean"}, rng) for _ in range(50)} == {True, False}


def test_a_pool_and_a_text_maker_fill_what_the_schema_leaves_open() -> None:
    rng = random.Random(1)
    integers = {schema_value({"type": "integer"}, rng, pool=[9.0, "9", True]) for _ in range(100)}
    assert 9 in integers and all(isinstance(v, int) and not isinstance(v, bool) for v in integers)  # 9.0 drawn as 9
    assert {schema_value({"type": "string", "pattern": "^B"}, rng, pool=["Anvil", "Bolt", 3]) for _ in range(20)} == {
        "Bolt"
    }
    assert schema_value({"type": "string", "pattern": "^Z"}, rng, pool=["Anvil"]) == "x"
    named = schema_value(
        {"type": "string"}, rng, name="email", text=lambda schema, name, r: f"{name}:{r.randint(1, 1)}"
    )
    assert named == "email:1"


def test_the_random_agent_makes_calls_its_tools_accept(mini_tasks: Environment) -> None:
    record = anyio.run(rollout_in_process, mini_tasks, mini_tasks.tasks[0].id, RandomAgent(seed=3, max_steps=12))
    assert len(record.trajectory) >= 6  # a draw a schema refuses is skipped before any call
    assert not [s for s in record.trajectory if s["result"].get("error", {}).get("type") == "invalid_arguments"]
