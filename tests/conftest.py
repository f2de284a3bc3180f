"""Shared fixtures: the reference environments, a small valid spec to mutate, and real servers."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import servers
from servers import Environment

ENV_ROOT = Path(servers.__file__).parent / "envs"
REPO = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("envfleet")
ENVFLEET = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "servers"]
"""The installed console script, as users run it."""


@pytest.fixture(scope="session")
def library() -> Environment:
    return Environment.load(ENV_ROOT / "library")


@pytest.fixture(scope="session")
def clinic() -> Environment:
    return Environment.load(ENV_ROOT / "clinic")


@pytest.fixture(scope="session")
def checkout_pair(library: Environment) -> tuple[str, str]:
    """A (member_id, copy_id) whose checkout succeeds on the seeded library state."""
    state = library.new_state()
    members = [m["member_id"] for m in state.rows("members")]
    copies = [c["copy_id"] for c in state.rows("copies") if c["status"] == "available"]
    for member in members:
        for copy_id in copies[:10]:
            probe = library.new_state()
            if not library.call(probe, "checkout_copy", {"member_id": member, "copy_id": copy_id}).is_error:
                return member, copy_id
    raise AssertionError("the seed has no member who can borrow")


MINI_SPEC: dict[str, Any] = {
    "id": "mini",
    "name": "Mini shop",
    "version": "0.1.0",
    "description": "A tiny shop used by the runtime tests.",
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
                {"name": "price", "type": "real", "nullable": False},
                {"name": "tags", "type": "json"},
            ],
            "checks": [
                {"name": "stock_not_negative", "expression": "stock >= 0", "message": "Stock cannot go below zero."}
            ],
        },
        {
            "name": "orders",
            "columns": [
                {"name": "order_id", "type": "text", "primary_key": True},
                {"name": "sku", "type": "text", "nullable": False, "references": "items.sku"},
                {"name": "quantity", "type": "integer", "nullable": False},
                {"name": "note", "type": "text"},
                {"name": "placed_at", "type": "datetime", "nullable": False},
                {"name": "gift", "type": "boolean", "nullable": False, "default": False},
                {
                    "name": "status",
                    "type": "text",
                    "nullable": False,
                    "enum": ["placed", "cancelled"],
                    "default": "placed",
                },
            ],
        },
    ],
    "tools": [
        {
            "name": "get_item",
            "description": "Look up an item by SKU.",
            "kind": "read",
            "parameters": {
                "type": "object",
                "properties": {"sku": {"type": "string", "description": "The SKU."}},
                "required": ["sku"],
            },
            "steps": [
                {"kind": "require", "sql": "SELECT 1 FROM items WHERE sku = :sku", "error": "No item {sku}."},
                {
                    "kind": "return",
                    "sql": "SELECT sku, name, stock, price, tags FROM items WHERE sku = :sku",
                    "shape": "row",
                },
            ],
        },
        {
            "name": "search_items",
            "description": "Search items by name.",
            "kind": "read",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "Part of the name."}},
                "required": ["query"],
            },
            "steps": [
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": (
                        "SELECT sku, name, stock > 0 AS in_stock FROM items WHERE name LIKE '%' || :query || '%' "
                        "ORDER BY sku"
                    ),
                }
            ],
        },
        {
            "name": "place_order",
            "description": "Order an item.",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "description": "The SKU."},
                    "quantity": {"type": "integer", "description": "How many.", "minimum": 1},
                    "note": {"type": "string", "description": "A note for the order."},
                    "gift": {"type": "boolean", "description": "Gift wrap.", "default": False},
                },
                "required": ["sku", "quantity"],
            },
            "steps": [
                {
                    "kind": "require",
                    "sql": "SELECT 1 FROM items WHERE sku = :sku",
                    "error": "No item {sku}.",
                    "rule": "item_exists",
                },
                {
                    "kind": "require",
                    "sql": "SELECT stock >= :quantity AS ok, stock FROM items WHERE sku = :sku",
                    "expect": "true",
                    "error": "Only {stock} of {sku} in stock.",
                    "rule": "in_stock",
                },
                {"kind": "let", "name": "order_id", "sql": "SELECT new_id('ORD')"},
                {
                    "kind": "exec",
                    "sql": (
                        "INSERT INTO orders (order_id, sku, quantity, note, placed_at, gift) VALUES (:order_id, "
                        ":sku, :quantity, :note, now(), :gift)"
                    ),
                },
                {
                    "kind": "exec",
                    "sql": "UPDATE items SET stock = stock - :quantity WHERE sku = :sku",
                    "affects": "one",
                    "error": "Item {sku} vanished.",
                },
                {
                    "kind": "return",
                    "sql": (
                        "SELECT order_id, sku, quantity, note, placed_at, gift FROM orders WHERE order_id = :order_id"
                    ),
                    "shape": "row",
                },
            ],
        },
        {
            "name": "restock",
            "description": "Set an item's stock (may break the stock rule).",
            "kind": "write",
            "parameters": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "description": "The SKU."},
                    "delta": {"type": "integer", "description": "Change in stock."},
                },
                "required": ["sku", "delta"],
            },
            "steps": [
                {
                    "kind": "exec",
                    "sql": "UPDATE items SET stock = stock + :delta WHERE sku = :sku",
                    "affects": "one",
                    "error": "No item {sku}.",
                },
                {"kind": "return", "message": "Stock of {sku} changed by {delta}."},
            ],
        },
        {
            "name": "count_orders",
            "description": "How many orders exist.",
            "kind": "read",
            "steps": [{"kind": "return", "sql": "SELECT COUNT(*) FROM orders", "shape": "scalar"}],
        },
    ],
}

MINI_SEED: dict[str, Any] = {
    "items": [
        {"sku": "A-1", "name": "Anvil", "stock": 3, "price": 99.5, "tags": ["heavy", "iron"]},
        {"sku": "B-2", "name": "Bucket", "stock": 0, "price": 4.25},
        {"sku": "C-3", "name": "Candle", "stock": 40, "price": 1.0},
    ],
    "orders": [{"order_id": "ORD-0041", "sku": "A-1", "quantity": 1, "placed_at": "2026-01-02 09:30:00"}],
}


MINI_TASKS: list[dict[str, Any]] = [
    {
        "id": "mini-001",
        "split": "train",
        "difficulty": "easy",
        "tags": ["order"],
        "instruction": "Please order two candles for me and tell me the order number.",
        "user": {"persona": "A shopper.", "known": {"item": "candles", "quantity": "2"}, "unknown": ["sku"]},
        "gold": [
            {"tool": "search_items", "arguments": {"query": "Candle"}},
            {"tool": "place_order", "arguments": {"sku": "C-3", "quantity": 2}},
        ],
        "checks": [
            {
                "description": "An order of 2 candles exists",
                "sql": "SELECT 1 FROM orders WHERE sku = 'C-3' AND quantity = 2",
            },
            {
                "description": "Candle stock went down to 38",
                "sql": "SELECT stock FROM items WHERE sku = 'C-3'",
                "expect": {"op": "==", "value": 38},
            },
        ],
        "answer": {"facts": ["ORD-0042"]},
    },
    {
        "id": "mini-002",
        "split": "test",
        "difficulty": "medium",
        "tags": ["restock", "initial-state"],
        "instruction": "The buckets are back: we received 5. Then order one bucket for me.",
        "user": {"persona": "The shop owner.", "known": {"received": "5 buckets"}, "unknown": []},
        "initial_state": [
            {"op": "update", "table": "items", "where": {"sku": "B-2"}, "set": {"name": "Blue bucket"}},
            {
                "op": "insert",
                "table": "orders",
                "rows": [{"order_id": "ORD-0100", "sku": "A-1", "quantity": 1, "placed_at": "2026-01-04 09:00:00"}],
            },
        ],
        "gold": [
            {"tool": "restock", "arguments": {"sku": "B-2", "delta": 5}},
            {"tool": "place_order", "arguments": {"sku": "B-2", "quantity": 1, "gift": True}},
        ],
        "checks": [
            {
                "description": "Bucket stock is 4",
                "sql": "SELECT stock FROM items WHERE sku = 'B-2'",
                "expect": {"op": "==", "value": 4},
            },
            {
                "description": "The new order took the next id after the task's ORD-0100",
                "sql": "SELECT 1 FROM orders WHERE order_id = 'ORD-0101' AND sku = 'B-2' AND gift = 1",
            },
        ],
    },
]


def write_tasks(folder: Path, tasks: list[dict[str, Any]], pack: str = "core") -> Path:
    (folder / "tasks").mkdir(parents=True, exist_ok=True)
    path = folder / "tasks" / f"{pack}.jsonl"
    path.write_text("".join(json.dumps(t) + "\n" for t in tasks))
    return path


@pytest.fixture
def mini_env_dir(tmp_path: Path) -> Path:
    """A fleet folder holding the mini environment with its task pack."""
    folder = write_env(tmp_path / "fleet" / "mini", copy.deepcopy(MINI_SPEC), copy.deepcopy(MINI_SEED))
    write_tasks(folder, copy.deepcopy(MINI_TASKS))
    return folder


@pytest.fixture
def mini_tasks(mini_env_dir: Path) -> Environment:
    """The mini environment with its task pack, loaded from its folder."""
    return Environment.load(mini_env_dir)


@pytest.fixture
def mini_spec() -> dict[str, Any]:
    """A fresh deep copy of a small valid spec, for tests to break."""
    return copy.deepcopy(MINI_SPEC)


@pytest.fixture
def mini() -> Environment:
    return Environment.from_spec(copy.deepcopy(MINI_SPEC), copy.deepcopy(MINI_SEED))


def write_env(folder: Path, spec: dict[str, Any], seed: dict[str, Any] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "env.json").write_text(json.dumps(spec, indent=2))
    (folder / "seed.json").write_text(json.dumps(seed if seed is not None else MINI_SEED, indent=2))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen[str], base: str, timeout: float) -> None:
    """Until ``base/healthz`` answers 200; a process that exits first, or a timeout, is an error."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not become healthy in {timeout:g} s")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[str], *, kill: bool = False, timeout: float = 10) -> str:
    """Stop a served process (terminate, or kill at once) and return what it printed."""
    if kill:
        proc.kill()
    else:
        proc.terminate()
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    return output or ""


class ServerProcess:
    """`envfleet serve ...` as a real subprocess on a free 127.0.0.1 port."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*ENVFLEET, "serve", *args, "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
        try:
            wait_healthy(self.proc, self.base, 30)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> str:
        return stop_process(self.proc)


@pytest.fixture(scope="session")
def fleet() -> Iterator[ServerProcess]:
    """`envfleet serve --all` over both reference environments."""
    server = ServerProcess(["--all"])
    yield server
    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
