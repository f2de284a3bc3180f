"""State keys map to isolated copies that expire when idle, are capped, and are shared out by quotas."""

from __future__ import annotations

import gc
import json
import weakref

import pytest

from servers import Environment, Episode, EpisodeNotFound, StateCapacityError, StateError, StatePool
from servers.episodes import DEFAULT_STATE_QUOTAS, EpisodePool, Quotas, TrajectoryLimits, key_prefix


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


# -- quotas: no one client (or key prefix) can take the pool -------------------------------------


def quota_pool(clock: FakeClock, **quotas: object) -> StatePool:
    settings = {"per_client": None, "per_prefix": None, "rate": None, "burst": 1, "min_idle": None, **quotas}
    return StatePool(ttl=1800, max_states=100, quotas=Quotas(**settings), clock=clock)  # type: ignore[arg-type]


def test_a_client_at_its_cap_is_refused_with_a_retry_time_and_others_are_not(mini: Environment) -> None:
    clock = FakeClock()
    pool = quota_pool(clock, per_client=3)
    mine = [pool.state(mini, f"k{i}", client="10.0.0.1") for i in range(3)]
    with pytest.raises(
        StateCapacityError, match=r"3 states are live for client '10.0.0.1', the cap per client.*Retry in 1800 s"
    ) as refused:
        pool.state(mini, "k3", client="10.0.0.1")
    assert refused.value.retry_after == 1800
    assert pool.state(mini, "k0", client="10.0.0.1") is mine[0]  # existing states are always served
    assert pool.state(mini, "k0", client="10.0.0.2") is mine[0]  # whoever asks
    pool.state(mini, "other", client="10.0.0.2")
    pool.state(mini, "local")  # no client: only the pool's own cap applies
    assert pool.drop(("mini", "k1"))
    pool.state(mini, "k3", client="10.0.0.1")  # a dropped state frees its client's slot
    assert pool.stats().refused == 1


def test_a_key_prefix_is_capped_across_clients_and_environments(mini: Environment, library: Environment) -> None:
    assert key_prefix(("library", "url:run7-lib-001-trial0")) == "url:run7"
    assert key_prefix("run7.a") == key_prefix("run7_b") == key_prefix("run7~c") == "run7"
    assert key_prefix("session:0123abcd") == "session:0123abcd"
    clock = FakeClock()
    pool = quota_pool(clock, per_prefix=2)
    pool.state(mini, "url:run7-a", client="10.0.0.1")
    pool.state(library, "url:run7-b", client="10.0.0.2")
    with pytest.raises(StateCapacityError, match=r"under the key prefix 'url:run7', the cap per prefix"):
        pool.state(mini, "url:run7-c", client="10.0.0.3")
    pool.state(mini, "url:run8-a", client="10.0.0.1")


def test_idle_states_are_evicted_least_recently_used_first_before_anyone_is_refused(mini: Environment) -> None:
    clock = FakeClock()
    pool = StatePool(ttl=1800, max_states=3, quotas=Quotas(min_idle=60), clock=clock)
    old, middle, _ = (pool.state(mini, k) for k in ("old", "middle", "new"))
    mini.call(old, "restock", {"sku": "C-3", "delta": 2})
    clock.now += 30
    with pytest.raises(
        StateCapacityError,
        match=r"3 states are live, the configured maximum; states idle for 60 s are evicted "
        r"to make room\. Retry in 30 s",
    ) as refused:
        pool.state(mini, "fourth")  # nothing idle for 60 s yet
    assert refused.value.retry_after == 30
    clock.now += 31
    assert pool.state(mini, "old") is old  # used: now the most recently used
    pool.state(mini, "fourth")  # evicts "middle", the least recently used idle one
    assert pool.peek(("mini", "middle")) is None and pool.peek(("mini", "old")) is old
    assert pool.stats().evicted == 1 and len(pool) == 3
    assert pool.state(mini, "middle") is not middle  # evicted state comes back fresh (evicting "new")
    assert pool.peek(("mini", "old")) is old


def test_a_client_at_its_cap_evicts_its_own_idle_states_not_others(mini: Environment) -> None:
    clock = FakeClock()
    pool = StatePool(ttl=1800, max_states=100, quotas=Quotas(per_client=2, min_idle=60), clock=clock)
    theirs = pool.state(mini, "theirs", client="10.0.0.9")
    pool.state(mini, "a", client="10.0.0.1")
    pool.state(mini, "b", client="10.0.0.1")
    clock.now += 61
    pool.state(mini, "b", client="10.0.0.1")
    pool.state(mini, "c", client="10.0.0.1")  # evicts "a", this client's least recently used idle state
    assert pool.peek(("mini", "a")) is None
    assert pool.peek(("mini", "theirs")) is theirs  # idle as long, but another client's


def test_new_states_per_client_are_rate_limited_with_a_retry_time(mini: Environment) -> None:
    clock = FakeClock()
    pool = quota_pool(clock, rate=0.5, burst=3)
    for i in range(3):
        pool.state(mini, f"k{i}", client="10.0.0.1")
    with pytest.raises(
        StateCapacityError, match=r"faster than the allowed 0\.5 per second \(bursts of 3\).*Retry in 2 s"
    ) as refused:
        pool.state(mini, "k3", client="10.0.0.1")
    assert refused.value.retry_after == 2
    assert pool.state(mini, "k0", client="10.0.0.1") is not None  # existing states still work
    pool.state(mini, "k3", client="10.0.0.2")  # another client has its own bucket
    clock.now += 2
    pool.state(mini, "k3b", client="10.0.0.1")
    with pytest.raises(StateCapacityError, match="Retry in 2 s"):
        pool.state(mini, "k4", client="10.0.0.1")


def test_the_default_quotas_refuse_a_flood_from_one_client_but_not_from_many(mini: Environment) -> None:
    clock = FakeClock()
    pool = StatePool(clock=clock)
    assert pool.quotas == DEFAULT_STATE_QUOTAS
    flood = 0
    with pytest.raises(StateCapacityError, match="Retry in"):
        while True:
            pool.state(mini, f"k{flood}", client="203.0.113.7")
            flood += 1
    assert flood == DEFAULT_STATE_QUOTAS.burst
    for i in range(50):
        pool.state(mini, f"other{i}", client=f"198.51.100.{i}")


# -- episodes: trajectories keep clipped, serialisable records; memory goes with the episode ------


def test_a_trajectory_keeps_sanitised_capped_arguments_and_the_call_sees_them_whole(mini: Environment) -> None:
    episode = Episode(mini)
    limits = episode.limits
    note = "n" * (limits.argument_string + 10)
    placed = episode.call("place_order", {"sku": "C-3", "quantity": 1, "note": note})
    assert not placed.is_error and placed.structured["note"] == note  # the executor saw the real note
    assert episode.state.rows("orders")[-1]["note"] == note
    refused = episode.call("get_item", {"sku": "\ud800"})
    huge = episode.call(
        "get_item", {"sku": "x" * (4 << 20), "extra": [list(range(5000))], "n": float("nan"), "big": 10**400}
    )
    assert refused.is_error and huge.is_error
    stored_note = episode.trajectory[0].arguments["note"]
    assert stored_note.startswith("n" * 100) and stored_note.endswith(f"…[truncated: {len(note):,} characters]")
    assert episode.trajectory[1].arguments == {"sku": "\ufffd"}
    args = episode.trajectory[2].arguments
    assert (
        args["sku"].endswith("…[truncated: 4,194,304 characters]") and len(args["sku"]) < limits.argument_string + 100
    )
    assert args["extra"][0][-1] == f"…[{5000 - limits.items:,} more items]"
    assert args["n"] == "nan" and args["big"] == "…[integer of 1,329 bits]"
    record = json.dumps([s.to_dict() for s in episode.trajectory], ensure_ascii=False, allow_nan=False).encode()
    assert len(record) < limits.arguments + 3 * limits.result  # not 8 MiB: the text and result echo the sku, cut too
    assert episode.summary()["steps"] == 3


def test_a_trajectory_stops_recording_at_its_size_and_step_caps(mini: Environment) -> None:
    episode = Episode(mini)
    episode.limits = TrajectoryLimits(argument_string=1000, arguments=2000, result=2000, trajectory=5000, steps=6)
    for _ in range(8):
        assert episode.call("get_item", {"sku": "z" * 5000}).is_error
    assert len(episode.trajectory) == 6 and episode.summary()["steps"] == 8 and episode.summary()["steps_recorded"] == 6
    assert episode.trajectory[-1].arguments.startswith(
        "…[not recorded: the trajectory holds its maximum of 5,000 bytes]"
    )
    assert episode.trajectory[-1].tool == "get_item" and episode.trajectory[-1].is_error
    episode.reset()
    assert not episode.call("get_item", {"sku": "A-1"}).is_error and episode.trajectory[0].arguments == {"sku": "A-1"}


def test_deleting_an_episode_frees_it_and_its_trajectory(mini: Environment) -> None:
    pool = EpisodePool()
    episode = pool.open(mini)
    for _ in range(3):
        episode.call("get_item", {"sku": "y" * (1 << 20)})
    step, alive = weakref.ref(episode.trajectory[0]), weakref.ref(episode)
    assert pool.drop(episode.id)
    assert episode.trajectory == []  # freed even while someone still holds the episode
    del episode
    gc.collect()
    assert step() is None and alive() is None


def test_episode_ids_in_use_are_refused_and_episodes_can_be_capped_per_client(mini: Environment) -> None:
    pool = EpisodePool(quotas=Quotas(per_client=1))
    first = pool.open(mini, episode_id="run1-a", client="10.0.0.1")
    with pytest.raises(StateError, match="episode id 'run1-a' is in use"):
        pool.open(mini, episode_id="run1-a")
    assert pool.find("run1-a") is first
    with pytest.raises(StateCapacityError, match="1 episodes are live for client '10.0.0.1', the cap per client"):
        pool.open(mini, client="10.0.0.1")
    pool.open(mini, client="10.0.0.2")
    with pytest.raises(EpisodeNotFound, match=r"no live episode 'qqqqq.*…\[10,002 characters\]"):
        pool.find("q" * 10_000)


def test_a_closer_decides_when_dropped_entries_close(mini: Environment) -> None:
    """A server whose calls run in threads must not close a busy state inline: every way an entry leaves the pool
    (drop, expiry, eviction, drop_where, close) hands it to ``closer`` instead, and closes nothing itself."""
    clock = FakeClock()
    pool = quota_pool(clock, per_client=1, min_idle=10.0)
    handed: list[object] = []
    pool.closer = handed.append
    states = {
        key: pool.state(mini, key, client="c") if key == "evicted" else pool.state(mini, key)
        for key in ("evicted", "dropped", "swept", "matched", "left")
    }
    pool.drop((mini.id, "dropped"))
    clock.now += 11
    pool.state(mini, "newcomer", client="c")  # the client's one idle state is evicted to make room
    pool.drop_where(lambda key: key[1] == "matched")
    pool.get((mini.id, "left"))  # the other keys' timers are old; refresh one
    pool.ttl = 5.0
    pool.sweep()
    assert handed == [states["dropped"], states["evicted"], states["matched"], states["swept"]]
    pool.close()
    assert len(handed) == 6 and handed[5] is states["left"]
    for state in states.values():  # none was closed by the pool: the closer owns that
        assert state.digest()


def test_state_keys_and_episode_ids_share_one_rule() -> None:
    from servers.episodes import ID_RULE, valid_id

    assert all(valid_id(v) for v in ("a", "run.1", ".hidden", "-x", "_x", "~x", "a..b", "x" * 128, "A-Z_a~z.0-9"))
    assert not any(valid_id(v) for v in (".", "..", "...", "", "a/b", "a b", "x" * 129, "é", "a\x00", "a\n", None, 5))
    assert "not only dots" in ID_RULE
