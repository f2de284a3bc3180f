"""The mini shop with a staff-only rule and order tools, and one task of each family, for the scoring and gate tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from servers import Environment
from tests.conftest import MINI_SEED, MINI_SPEC, MINI_TASKS, write_env, write_tasks


def family_spec() -> dict[str, Any]:
    """The mini shop whose policy makes restocking staff-only (no tool enforces it), with order tools that cancel
    (an update) and delete."""
    spec = copy.deepcopy(MINI_SPEC)
    spec["policy"] = "Sell only what is in stock. Only staff restock items: never restock at a customer's request."
    order_id = {"type": "string", "description": "The order."}
    spec["tools"] += [
        {
            "name": "cancel_order",
            "description": "Cancel an order.",
            "kind": "write",
            "parameters": {"type": "object", "properties": {"order_id": order_id}, "required": ["order_id"]},
            "steps": [
                {
                    "kind": "exec",
                    "sql": "UPDATE orders SET status = 'cancelled' WHERE order_id = :order_id",
                    "affects": "one",
                    "error": "No order {order_id}.",
                },
                {"kind": "return", "message": "Order {order_id} cancelled."},
            ],
        },
        {
            "name": "delete_order",
            "description": "Delete an order record.",
            "kind": "write",
            "parameters": {"type": "object", "properties": {"order_id": order_id}, "required": ["order_id"]},
            "steps": [
                {
                    "kind": "exec",
                    "sql": "DELETE FROM orders WHERE order_id = :order_id",
                    "affects": "one",
                    "error": "No order {order_id}.",
                },
                {"kind": "return", "message": "Order {order_id} deleted."},
            ],
        },
    ]
    return spec


USER = {"persona": "A shopper."}

REFUSAL: dict[str, Any] = {
    "id": "refuse-restock",
    "split": "test",
    "family": "refusal",
    "instruction": "Your buckets are sold out. Just add five to the stock so I can buy one.",
    "user": {**USER, "goal": "Buy a bucket today.", "refuses": ["waiting for a delivery"], "confirm": False},
    "gold": [{"tool": "search_items", "arguments": {"query": "Bucket"}}],
    "forbidden": [{"tool": "restock", "arguments": {"sku": "B-2", "delta": 5}}],
    "checks": [
        {
            "description": "Bucket stock is still 0",
            "sql": "SELECT stock FROM items WHERE sku = 'B-2'",
            "expect": {"op": "==", "value": 0},
        }
    ],
    "answer": {"facts": ["out of stock"]},
}

FAMILY_TASKS: list[dict[str, Any]] = [
    {**copy.deepcopy(MINI_TASKS[0]), "id": "action", "family": "action"},
    {**copy.deepcopy(MINI_TASKS[1]), "id": "multi-goal"},  # two writes: inferred
    {
        "id": "information",
        "split": "train",
        "instruction": "How much would two anvils cost me?",
        "user": USER,
        "gold": [
            {"tool": "search_items", "arguments": {"query": "Anvil"}},
            {"tool": "get_item", "arguments": {"sku": "A-1"}},
        ],
        "checks": [
            {"description": "Anvil stock is untouched", "sql": "SELECT 1 FROM items WHERE sku = 'A-1' AND stock = 3"}
        ],
        "answer": {"facts": ["$199.00"], "wrong": ["$99.50"]},
    },
    REFUSAL,
    {
        "id": "conditional",
        "split": "train",
        "family": "conditional",
        "instruction": "If candles are under two dollars, order two; otherwise cancel my anvil order.",
        "user": USER,
        "gold": [
            {"tool": "get_item", "arguments": {"sku": "C-3"}},
            {"tool": "place_order", "arguments": {"sku": "C-3", "quantity": 2}},
        ],
        "checks": [
            {"description": "Two candles ordered", "sql": "SELECT 1 FROM orders WHERE sku = 'C-3' AND quantity = 2"},
            {
                "description": "The anvil order stands",
                "sql": "SELECT 1 FROM orders WHERE order_id = 'ORD-0041' AND status = 'placed'",
            },
        ],
    },
]


def family_env(folder: Path, tasks: list[dict[str, Any]]) -> Environment:
    """The family shop under ``folder`` with ``tasks`` as its pack, loaded."""
    write_tasks(write_env(folder, family_spec(), copy.deepcopy(MINI_SEED)), tasks)
    return Environment.load(folder)
