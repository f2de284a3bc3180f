"""The online store reference environment: per-item loops refund exactly and undo as one call, gift cards
never go negative, and the seed's money agrees with itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

import servers
from servers import Environment, StateCopy
from servers.clients import check_task_in_process

ONLINE_STORE = Path(servers.__file__).parent / "envs" / "online_store"


@pytest.fixture(scope="module")
def store() -> Environment:
    return Environment.load(ONLINE_STORE)


def _one(state: StateCopy, sql: str) -> Any:
    with state.mode("read"):
        row = state.conn.execute(sql).fetchone()
    return row[0] if row is not None else None


def _balance(state: StateCopy, method: str) -> int:
    return _one(state, f"SELECT balance_cents FROM payment_methods WHERE payment_method_id = '{method}'")


def test_a_multi_item_return_refunds_each_item_to_the_original_method(store: Environment) -> None:
    """W-70138 was paid by gift card PM-2045 ($99.99 left): each returned item is refunded on its own line,
    and the card is credited at once with the exact sum."""
    state = store.new_state()
    result = store.call(
        state,
        "return_delivered_order_items",
        {"customer_id": "C-1028", "order_id": "W-70138", "line_ids": ["LN-0058", "LN-0059"]},
    )
    assert not result.is_error, result.text
    with state.mode("read"):
        refunds = state.conn.execute(
            "SELECT line_id, payment_method_id, amount_cents FROM payments "
            "WHERE order_id = 'W-70138' AND kind = 'refund' ORDER BY line_id"
        ).fetchall()
    assert [tuple(r) for r in refunds] == [("LN-0058", "PM-2045", 7999), ("LN-0059", "PM-2045", 3900)]
    assert _balance(state, "PM-2045") == 9999 + 7999 + 3900
    statuses = {i["line_id"]: i["status"] for i in state.rows("order_items") if i["order_id"] == "W-70138"}
    assert statuses == {"LN-0058": "return_requested", "LN-0059": "return_requested", "LN-0060": "ordered"}


def test_a_failing_item_undoes_the_items_returned_before_it(store: Environment) -> None:
    """The third item belongs to another order: the whole call is refused, naming that element, and the first
    two items (already refunded inside the call) are back as they were, id counter included."""
    state = store.new_state()
    before = state.digest()
    result = store.call(
        state,
        "return_delivered_order_items",
        {"customer_id": "C-1007", "order_id": "W-70111", "line_ids": ["LN-0017", "LN-0018", "LN-0006"]},
    )
    assert result.is_error
    assert result.text == "Order W-70111 has no item LN-0006."
    assert result.structured["error"]["rule"] == "item_in_order"
    assert result.structured["error"]["element"] == 2
    assert state.digest() == before
    retry = store.call(
        state, "return_delivered_order_items", {"customer_id": "C-1007", "order_id": "W-70111", "line_ids": ["LN-0017"]}
    )
    assert not retry.is_error
    assert _one(state, "SELECT payment_id FROM payments WHERE line_id = 'LN-0017'") == "TX-0066"


def test_an_item_already_returned_is_refused_without_refunding_the_others(store: Environment) -> None:
    state = store.new_state()
    before = state.digest()
    result = store.call(
        state,
        "return_delivered_order_items",
        {"customer_id": "C-1018", "order_id": "W-70128", "line_ids": ["LN-0042", "LN-0043"]},
    )
    assert result.is_error
    assert "LN-0043 (Canvas Daypack, colour: olive, capacity: 20 l) was already returned" in result.text
    assert state.digest() == before


def test_a_return_of_an_order_not_delivered_is_refused(store: Environment) -> None:
    state = store.new_state()
    before = state.digest()
    result = store.call(
        state, "return_delivered_order_items", {"customer_id": "C-1008", "order_id": "W-70114", "line_ids": ["LN-0023"]}
    )
    assert result.is_error and result.structured["error"]["rule"] == "return_only_delivered"
    assert result.text == "Order W-70114 is shipped; only items of a delivered order can be returned."
    assert state.digest() == before


def test_a_gift_card_charge_beyond_its_balance_is_refused_and_undone(store: Environment) -> None:
    """$70.00 more on a $5.00 gift card: refused after the loop changed the item and the stock, so both go back."""
    state = store.new_state()
    before = state.digest()
    arguments = {
        "customer_id": "C-1021",
        "order_id": "W-70131",
        "items": [{"line_id": "LN-0048", "new_variant_id": "V-1071"}],
    }
    refused = store.call(state, "modify_pending_order_items", {**arguments, "payment_method_id": "PM-2035"})
    assert refused.is_error and refused.structured["error"]["rule"] == "gift_card_covers_charge"
    assert refused.text == (
        "Gift card PM-2035 holds $5.00, less than the $70.00 price difference. Choose another payment method."
    )
    assert state.digest() == before
    done = store.call(state, "modify_pending_order_items", {**arguments, "payment_method_id": "PM-2034"})
    assert not done.is_error, done.text
    assert _balance(state, "PM-2035") == 500
    assert _one(state, "SELECT total_cents FROM orders WHERE order_id = 'W-70131'") == 19900


@pytest.mark.parametrize(("balance", "refused"), [(1500, False), (1499, True)])
def test_a_gift_card_pays_up_to_its_whole_balance(balance: int, refused: bool) -> None:
    """Two exchanges of W-70139 cost $10.00 + $5.00 more: a gift card holding exactly $15.00 pays it down to
    zero; one cent less and the call is refused with every item and stock change undone."""
    spec = json.loads((ONLINE_STORE / "env.json").read_text())
    seed = json.loads((ONLINE_STORE / "seed.json").read_text())
    card = next(m for m in seed["payment_methods"] if m["payment_method_id"] == "PM-2042")
    card["balance_cents"] = balance
    env = Environment.from_spec(spec, seed)
    state = env.new_state()
    before = state.digest()
    result = env.call(
        state,
        "exchange_delivered_order_items",
        {
            "customer_id": "C-1026",
            "order_id": "W-70139",
            "items": [
                {"line_id": "LN-0061", "new_variant_id": "V-1132"},
                {"line_id": "LN-0062", "new_variant_id": "V-1045"},
            ],
            "payment_method_id": "PM-2042",
        },
    )
    assert result.is_error is refused, result.text
    if refused:
        assert result.text == (
            "Gift card PM-2042 holds $14.99, less than the $15.00 price difference. Choose another payment method."
        )
        assert state.digest() == before
    else:
        assert _balance(state, "PM-2042") == 0
        charged = "SELECT amount_cents FROM payments WHERE order_id = 'W-70139' AND payment_method_id = 'PM-2042'"
        assert _one(state, charged) == 1500
        stock = (
            "SELECT group_concat(stock) FROM "
            "(SELECT stock FROM variants WHERE variant_id IN ('V-1132', 'V-1045') ORDER BY variant_id)"
        )
        assert _one(state, stock) == "1,1"


def test_cancelling_refunds_each_payment_method_what_it_paid(store: Environment) -> None:
    """W-70108 was paid $197.00 by PayPal and $10.00 by gift card (an earlier item change): the loop over the
    rows-let refunds each its own share, the gift card at once, and the stock comes back."""
    state = store.new_state()
    result = store.call(
        state, "cancel_pending_order", {"customer_id": "C-1005", "order_id": "W-70108", "reason": "no longer needed"}
    )
    assert not result.is_error, result.text
    with state.mode("read"):
        refunds = state.conn.execute(
            "SELECT payment_method_id, amount_cents FROM payments WHERE order_id = 'W-70108' AND kind = 'refund' "
            "ORDER BY payment_method_id"
        ).fetchall()
    assert [tuple(r) for r in refunds] == [("PM-2007", 19700), ("PM-2008", 1000)]
    assert _balance(state, "PM-2008") == 21000
    assert result.structured["status"] == "cancelled"
    again = store.call(
        state, "cancel_pending_order", {"customer_id": "C-1005", "order_id": "W-70108", "reason": "no longer needed"}
    )
    assert again.is_error and again.text == "Order W-70108 is cancelled; only pending orders can be cancelled."


def test_an_order_lists_its_items_and_payments_as_json_through_its_fragment(store: Environment) -> None:
    """get_order selects from the order_view fragment; its computed JSON columns stay typed as JSON."""
    order = store.call(store.new_state(), "get_order", {"order_id": _one(store.new_state(), _FIRST_ORDER)})
    assert not order.is_error, order.text
    assert isinstance(order.structured["items"], list) and order.structured["items"]
    assert isinstance(order.structured["payments"], list)
    assert store.tools["get_order"].output_schema["properties"]["items"] == {}


_FIRST_ORDER = "SELECT order_id FROM orders ORDER BY order_id LIMIT 1"


@pytest.mark.parametrize(
    ("a", "operation", "b", "cents", "dollars"),
    [
        (12999, "add", 1, 13000, "130.00"),
        (5, "subtract", 10, -5, "-0.05"),
        (2995, "multiply", 3, 8985, "89.85"),
        (25, "divide", 10, 2, "0.02"),  # 2.5 -> 2
        (35, "divide", 10, 4, "0.04"),  # 3.5 -> 4
        (-25, "divide", 10, -2, "-0.02"),
        (1, "divide", -2, 0, "0.00"),  # -0.5 -> 0, never "-0.00"
        (-1000000000000, "divide", -7, 142857142857, "1428571428.57"),
        (1000000000000, "multiply", 1000000, 10**18, "10000000000000000.00"),
    ],
)
def test_calculate_is_exact_and_rounds_half_to_even(
    store: Environment, a: int, operation: str, b: int, cents: int, dollars: str
) -> None:
    result = store.call(store.new_state(), "calculate", {"a": a, "operation": operation, "b": b})
    assert result.structured == {"result_cents": cents, "result_dollars": dollars}


def test_the_seed_money_agrees_with_itself(store: Environment) -> None:
    """Totals are the sum of item prices; what each order's payments net to is what its items are worth now
    (nothing once cancelled, nothing for a returned item, the new price for an exchanged one); every method
    that paid belongs to the order's customer; gift cards, and only they, hold a balance."""
    state = store.new_state()
    with state.mode("read"):
        conn = state.conn
        totals = conn.execute(
            "SELECT o.order_id FROM orders o WHERE o.total_cents <> "
            "(SELECT SUM(i.price_cents) FROM order_items i WHERE i.order_id = o.order_id)"
        ).fetchall()
        net = conn.execute(
            "SELECT o.order_id FROM orders o WHERE "
            "(SELECT SUM(CASE p.kind WHEN 'charge' THEN p.amount_cents ELSE -p.amount_cents END) "
            " FROM payments p WHERE p.order_id = o.order_id) <> "
            "CASE WHEN o.status = 'cancelled' THEN 0 ELSE (SELECT SUM(CASE i.status WHEN 'return_requested' THEN 0 "
            " WHEN 'exchange_requested' THEN i.exchange_price_cents ELSE i.price_cents END) "
            " FROM order_items i WHERE i.order_id = o.order_id) END"
        ).fetchall()
        strangers = conn.execute(
            "SELECT p.payment_id FROM payments p JOIN orders o ON o.order_id = p.order_id "
            "JOIN payment_methods m ON m.payment_method_id = p.payment_method_id WHERE m.customer_id <> o.customer_id"
        ).fetchall()
        late = conn.execute(
            "SELECT order_id FROM orders WHERE placed_at > now() OR delivered_on > today() "
            "OR (status = 'delivered' AND (tracking_number IS NULL OR delivered_on < shipped_on))"
        ).fetchall()
        wallets = conn.execute(
            "SELECT payment_method_id FROM payment_methods "
            "WHERE (kind = 'gift_card') <> (balance_cents IS NOT NULL) OR balance_cents < 0"
        ).fetchall()
    assert (totals, net, strangers, late, wallets) == ([], [], [], [], [])
    assert sum(len(state.rows(t.name)) for t in store.spec.tables) >= 300


def test_every_task_passes_the_gates_in_process(store: Environment) -> None:
    assert len(store.tasks) >= 20
    failed = {}
    for task in store.tasks:
        verdict = anyio.run(check_task_in_process, store, task)
        if not verdict.passed:
            failed[task.id] = verdict.problems
    assert failed == {}
