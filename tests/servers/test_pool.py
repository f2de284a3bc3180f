"""State keys map to isolated copies that expire when idle and are capped."""

from __future__ import annotations

import pytest

from servers.environment import Environment
from servers.errors import StateCapacityError
from servers.pool import StatePool


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_same_key_same_state_other_key_other_state(mini: Environment) -> None:
    pool = StatePool()
    a = pool.state(mini, "a")
    assert pool.state(mini, "a") is a
    b = pool.state(mini, "b")
    assert b is not a
    mini.call(a, "restock", {"sku": "C-3", "delta": 2})
    assert a.digest() != b.digest()
    assert len(pool) == 2


def test_idle_states_expire_and_come_back_fresh(mini: Environment) -> None:
    clock = FakeClock()
    pool = StatePool(ttl=60, clock=clock)
    state = pool.state(mini, "k")
    mini.call(state, "restock", {"sku": "C-3", "delta": 2})
    clock.now += 59
    assert pool.state(mini, "k") is state  # use refreshes the idle timer
    clock.now += 59
    assert pool.sweep() == 0
    clock.now += 61
    assert pool.sweep() == 1 and len(pool) == 0
    fresh = pool.state(mini, "k")
    assert fresh is not state and fresh.digest() == mini.new_state().digest()
    assert pool.stats().expired == 1 and pool.stats().created == 2


def test_cap_refuses_new_keys_but_serves_existing_ones(mini: Environment) -> None:
    clock = FakeClock()
    pool = StatePool(ttl=60, max_states=2, clock=clock)
    first = pool.state(mini, "a")
    pool.state(mini, "b")
    with pytest.raises(StateCapacityError, match="2 states are live, the configured maximum"):
        pool.state(mini, "c")
    assert pool.state(mini, "a") is first
    clock.now += 61  # both idle past the TTL: room again
    pool.state(mini, "c")
    assert len(pool) == 1


def test_keys_are_per_environment(mini: Environment, library: Environment) -> None:
    pool = StatePool()
    assert pool.state(mini, "k") is not pool.state(library, "k")
    assert pool.drop(("mini", "k")) and len(pool) == 1
    assert pool.drop(("library", "k")) and not pool.drop(("library", "k"))


def test_copies_do_not_share_writes_even_with_the_template(mini: Environment) -> None:
    before = mini.template.digest()
    state = mini.new_state()
    mini.call(state, "place_order", {"sku": "A-1", "quantity": 1})
    assert mini.template.digest() == before
    assert mini.new_state().digest() != state.digest()
