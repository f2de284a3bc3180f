"""Invariants (``invariant_*`` fragments) evaluated on live states, and publish refusing a world that breaks them.

``shop_spec``/``shop_seed``/``shop_task``/``write_env`` build the small hand-made environment folders the
stats tests use too."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from servers import Environment, Registry
from synthesizer.invariants import (
    InvariantError,
    gold_violations,
    invariant_names,
    seed_violations,
    statement,
    violations,
)
from synthesizer.publish import InvariantViolation, add_files, publish_folder

LEDGER = (
    "SELECT o.order_id FROM orders o WHERE o.paid_cents <> "
    "COALESCE((SELECT SUM(p.amount_cents) FROM payments p WHERE p.order_id = o.order_id), 0)"
)

_TOOLS: list[dict[str, Any]] = [
    {
        "name": "find_customer",
        "description": "Customers with this full name.",
        "kind": "read",
        "parameters": {
            "type": "object",
            "properties": {"full_name": {"type": "string", "description": "Full name."}},
            "required": ["full_name"],
        },
        "steps": [{"kind": "return", "shape": "rows", "sql": "SELECT * FROM customers WHERE full_name = :full_name"}],
    },
    {
        "name": "get_order",
        "description": "One order.",
        "kind": "read",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "Order id."}},
            "required": ["order_id"],
        },
        "steps": [{"kind": "return", "shape": "row", "sql": "SELECT * FROM orders WHERE order_id = :order_id"}],
    },
    {
        "name": "cancel_order",
        "description": "Cancel an open order.",
        "kind": "write",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "Order id."}},
            "required": ["order_id"],
        },
        "steps": [
            {
                "kind": "require",
                "sql": "SELECT 1 FROM orders WHERE order_id = :order_id",
                "error": "No order {order_id}.",
                "rule": "exists.order",
            },
            {
                "kind": "require",
                "sql": "SELECT status = 'open' FROM orders WHERE order_id = :order_id",
                "expect": "true",
                "error": "Only open orders can be cancelled.",
                "rule": "state.cancel",
            },
            {"kind": "exec", "sql": "UPDATE orders SET status = 'cancelled' WHERE order_id = :order_id"},
            {"kind": "return", "message": "Order {order_id} is cancelled."},
        ],
    },
    {
        "name": "pay_order",
        "description": "Pay towards an order.",
        "kind": "write",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": "Order id."},
                "amount_cents": {"type": "integer", "minimum": 1, "description": "Amount in cents."},
            },
            "required": ["order_id", "amount_cents"],
        },
        "steps": [
            {
                "kind": "require",
                "sql": "SELECT :amount_cents <= total_cents - paid_cents FROM orders WHERE order_id = :order_id",
                "expect": "true",
                "error": "That is more than is due on {order_id}.",
                "rule": "pay.no_overpay",
            },
            {
                "kind": "exec",
                "sql": "INSERT INTO payments (payment_id, order_id, amount_cents) "
                "VALUES (new_id('PAY'), :order_id, :amount_cents)",
            },
            {
                "kind": "exec",
                "sql": "UPDATE orders SET paid_cents = paid_cents + :amount_cents WHERE order_id = :order_id",
            },
            {"kind": "return", "message": "Paid."},
        ],
    },
    {
        "name": "mark_paid",
        "description": "Back office: mark an order paid in full.",
        "kind": "write",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "Order id."}},
            "required": ["order_id"],
        },
        "steps": [
            {"kind": "exec", "sql": "UPDATE orders SET paid_cents = total_cents WHERE order_id = :order_id"},
            {"kind": "return", "message": "Marked."},
        ],
    },
]

_SPEC: dict[str, Any] = {
    "id": "shop",
    "name": "Acme shop",
    "version": "1.0.0",
    "description": "A tiny shop with a payment ledger.",
    "domain": "retail",
    "clock": "2026-01-05T12:00:00Z",
    "policy": "# Acme shop policy\n\nYou are a service agent at Acme Shop, a hardware store.\n\n"
    "## Who may ask for what\n- Customers may cancel and pay their own orders.\n\n"
    "## Closing\n- Be kind.\n",
    "sequences": [{"prefix": "PAY", "table": "payments", "column": "payment_id"}],
    "tables": [
        {
            "name": "customers",
            "columns": [
                {"name": "customer_id", "type": "text", "primary_key": True},
                {"name": "full_name", "type": "text", "nullable": False},
                {"name": "email", "type": "text"},
            ],
        },
        {
            "name": "orders",
            "columns": [
                {"name": "order_id", "type": "text", "primary_key": True},
                {"name": "customer_id", "type": "text", "nullable": False, "references": "customers.customer_id"},
                {"name": "status", "type": "text", "nullable": False},
                {"name": "total_cents", "type": "integer", "nullable": False},
                {"name": "paid_cents", "type": "integer", "nullable": False},
            ],
        },
        {
            "name": "payments",
            "columns": [
                {"name": "payment_id", "type": "text", "primary_key": True},
                {"name": "order_id", "type": "text", "nullable": False, "references": "orders.order_id"},
                {"name": "amount_cents", "type": "integer", "nullable": False},
            ],
        },
    ],
    "fragments": [],
    "tools": _TOOLS,
}


def shop_spec(*, invariants: bool = True, tools: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    """The shop spec; with ``invariants`` its ledger invariant (through a helper fragment) and an unrelated one;
    ``tools`` keeps only the named tools."""
    spec = copy.deepcopy(_SPEC)
    if invariants:
        spec["fragments"] = [
            {"name": "order_paid", "description": "Paid per order.", "sql": LEDGER},
            {
                "name": "invariant_paid_matches_ledger",
                "description": "Invariant: paid = ledger.",
                "sql": ("SELECT * FROM order_paid"),
            },
            {
                "name": "invariant_total_positive",
                "description": "Invariant: totals > 0.",
                "sql": ("SELECT order_id FROM orders WHERE total_cents <= 0"),
            },
        ]
    if tools is not None:
        spec["tools"] = [t for t in spec["tools"] if t["name"] in tools]
    spec.update(changes)
    return spec


def shop_seed(*, broken: int = 0) -> dict[str, list[dict[str, Any]]]:
    """Two customers, three orders, one payment; ``broken`` orders claim a payment the ledger lacks."""
    orders = [
        {"order_id": "ORD-0001", "customer_id": "CUS-0001", "status": "open", "total_cents": 5000, "paid_cents": 1000},
        {"order_id": "ORD-0002", "customer_id": "CUS-0001", "status": "open", "total_cents": 2500, "paid_cents": 0},
        {"order_id": "ORD-0003", "customer_id": "CUS-0002", "status": "open", "total_cents": 900, "paid_cents": 0},
    ]
    for order in orders[1 : 1 + broken]:
        order["paid_cents"] = 700
    return {
        "customers": [
            {"customer_id": "CUS-0001", "full_name": "Ada Moss", "email": "ada@example.net"},
            {"customer_id": "CUS-0002", "full_name": "Ben Ortiz", "email": "ben@example.net"},
        ],
        "orders": orders,
        "payments": [{"payment_id": "PAY-0001", "order_id": "ORD-0001", "amount_cents": 1000}],
    }


def shop_task(
    task_id: str,
    *,
    split: str = "train",
    gold: list[tuple[str, dict[str, Any]]] | None = None,
    checks: int = 2,
    instruction: str = "Please cancel my second order; I no longer need it.",
    name: str = "Ada Moss",
    **fields: Any,
) -> dict[str, Any]:
    """A task (JSON) on the shop: by default Ada cancels ORD-0002, with two state checks."""
    calls = (
        gold
        if gold is not None
        else [("find_customer", {"full_name": name}), ("cancel_order", {"order_id": "ORD-0002"})]
    )
    all_checks = [
        {
            "description": "cancelled",
            "sql": "SELECT 1 FROM orders WHERE order_id = 'ORD-0002' AND status = 'cancelled'",
        },
        {"description": "nothing paid", "sql": "SELECT 1 FROM payments WHERE order_id = 'ORD-0002'", "expect": "none"},
    ]
    task = {
        "id": task_id,
        "split": split,
        "instruction": instruction,
        "user": {"persona": f"{name}, a customer; brief.", "known": {"name": name}},
        "gold": [{"tool": tool, "arguments": arguments} for tool, arguments in calls],
        "checks": all_checks[:checks],
    }
    task.update(fields)
    return task


def write_env(
    root: Path,
    env_id: str = "shop",
    *,
    spec: dict[str, Any] | None = None,
    seed: dict[str, Any] | None = None,
    tasks: list[dict[str, Any]] | None = None,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """A published-looking environment folder under ``root`` (with provenance: a synthesized one)."""
    folder = root / env_id
    (folder / "tasks").mkdir(parents=True)
    spec = {**(spec or shop_spec()), "id": env_id}
    (folder / "env.json").write_text(json.dumps(spec), encoding="utf-8")
    (folder / "seed.json").write_text(json.dumps(seed or shop_seed()), encoding="utf-8")
    lines = tasks if tasks is not None else [shop_task(f"{env_id}-1")]
    (folder / "tasks" / "synthesized.jsonl").write_text("".join(json.dumps(t) + "\n" for t in lines), encoding="utf-8")
    record = {"domain": env_id, "sector": "retail", "seed": 1, "variant": 0, **(provenance or {})}
    (folder / "provenance.json").write_text(json.dumps(record), encoding="utf-8")
    return folder


# -- the API ------------------------------------------------------------------------------------


def test_invariant_names_are_the_invariant_fragments_in_order() -> None:
    env = Environment.from_spec(shop_spec(), shop_seed())
    assert invariant_names(env) == ["invariant_paid_matches_ledger", "invariant_total_positive"]
    assert invariant_names(Environment.from_spec(shop_spec(invariants=False), shop_seed())) == []


def test_an_invariant_runs_with_the_fragments_it_uses_and_no_others() -> None:
    env = Environment.from_spec(shop_spec(), shop_seed())
    sql = statement(env, "invariant_paid_matches_ledger")
    assert "order_paid AS" in sql and "invariant_total_positive" not in sql
    assert sql.index("order_paid AS") < sql.index("invariant_paid_matches_ledger AS")


def test_seed_violations_count_rows_per_invariant() -> None:
    clean = Environment.from_spec(shop_spec(), shop_seed())
    assert seed_violations(clean) == {"invariant_paid_matches_ledger": 0, "invariant_total_positive": 0}
    broken = Environment.from_spec(shop_spec(), shop_seed(broken=2))
    assert seed_violations(broken) == {"invariant_paid_matches_ledger": 2, "invariant_total_positive": 0}


def test_an_environment_without_invariants_has_no_violations() -> None:
    env = Environment.from_spec(shop_spec(invariants=False), shop_seed(broken=2))
    assert seed_violations(env) == {}
    assert gold_violations(env) == {}
    state = env.new_state()
    try:
        assert violations(env, state) == {}
    finally:
        state.close()


def test_violations_read_a_live_state_and_change_nothing() -> None:
    env = Environment.from_spec(shop_spec(), shop_seed())
    state = env.new_state()
    try:
        assert not env.call(state, "mark_paid", {"order_id": "ORD-0003"}).is_error
        before = state.digest()
        assert violations(env, state)["invariant_paid_matches_ledger"] == 1
        assert state.digest() == before
        assert not env.call(state, "pay_order", {"order_id": "ORD-0002", "amount_cents": 100}).is_error
        assert violations(env, state)["invariant_paid_matches_ledger"] == 1  # a real payment keeps the ledger true
    finally:
        state.close()


def test_each_invariant_gets_the_full_step_budget_whatever_was_used_before() -> None:
    seed = shop_seed(broken=1)
    seed["orders"] += [  # enough rows that the ledger invariant runs thousands of SQLite instructions
        {"order_id": f"ORD-{n:04d}", "customer_id": "CUS-0002", "status": "open", "total_cents": 100, "paid_cents": 0}
        for n in range(100, 400)
    ]
    env = Environment.from_spec(shop_spec(), seed)
    state = env.new_state()
    try:
        state.begin_budget(0)  # as if the last call had used it all
        assert violations(env, state)["invariant_paid_matches_ledger"] == 1
    finally:
        state.close()


def test_an_invariant_that_cannot_run_is_an_error_naming_it() -> None:
    spec = shop_spec()
    spec["fragments"].append(
        {"name": "invariant_needs_a_value", "sql": "SELECT order_id FROM orders WHERE total_cents > :limit"}
    )
    env = Environment.from_spec(spec, shop_seed())
    with pytest.raises(InvariantError, match="invariant_needs_a_value"):
        seed_violations(env)


def test_gold_violations_name_the_task_and_invariant(tmp_path: Path) -> None:
    tasks = [
        shop_task("shop-1"),
        shop_task("shop-2", gold=[("mark_paid", {"order_id": "ORD-0003"})], checks=1),
    ]
    env = Environment.load(write_env(tmp_path, tasks=tasks))
    assert gold_violations(env) == {"shop-2": {"invariant_paid_matches_ledger": 1}}


# -- publish ------------------------------------------------------------------------------------


def _files(seed: dict[str, Any], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"env.json": shop_spec(), "seed.json": seed, "tasks/synthesized.jsonl": tasks}


def test_publish_refuses_a_seed_that_violates_an_invariant(tmp_path: Path) -> None:
    root, registry = tmp_path / "envs", tmp_path / "registry.json"
    with pytest.raises(InvariantViolation, match=r"seed violates invariant_paid_matches_ledger \(2 rows\)"):
        publish_folder(root, "shop", _files(shop_seed(broken=2), [shop_task("shop-1")]), registry, {"seed": 1})
    assert not (root / "shop").exists() and not registry.exists()
    assert [p.name for p in root.iterdir()] == []  # no staging folder left behind

    publish_folder(root, "shop", _files(shop_seed(), [shop_task("shop-1")]), registry, {"seed": 1})
    assert Registry.load(registry).ids() == ["shop"]


def test_publish_refuses_a_gold_final_state_that_violates_an_invariant(tmp_path: Path) -> None:
    root, registry = tmp_path / "envs", tmp_path / "registry.json"
    tasks = [shop_task("shop-1"), shop_task("shop-2", gold=[("mark_paid", {"order_id": "ORD-0003"})], checks=1)]
    with pytest.raises(InvariantViolation, match=r"task shop-2 violates invariant_paid_matches_ledger \(1 row\)"):
        publish_folder(root, "shop", _files(shop_seed(), tasks), registry, {"seed": 1})
    assert not (root / "shop").exists() and not registry.exists()


def test_a_task_pack_whose_gold_breaks_an_invariant_is_not_added(tmp_path: Path) -> None:
    root, registry = tmp_path / "envs", tmp_path / "registry.json"
    publish_folder(root, "shop", _files(shop_seed(), [shop_task("shop-1")]), registry, {"seed": 1})
    before = {p.name: p.read_bytes() for p in (root / "shop").rglob("*") if p.is_file()}
    breaking = [shop_task("more-1", gold=[("mark_paid", {"order_id": "ORD-0003"})], checks=1)]
    with pytest.raises(InvariantViolation, match="task more-1 violates invariant_paid_matches_ledger"):
        add_files(root, "shop", {"tasks/more.jsonl": breaking}, registry)
    assert {p.name: p.read_bytes() for p in (root / "shop").rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in root.iterdir()) == ["shop"]
