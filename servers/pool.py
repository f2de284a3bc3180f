"""Live objects by key with an idle TTL and a cap: state copies by state key, episodes by id.

An entry is created on first use (or added), kept while used, and dropped — closed — after
``ttl`` seconds idle. When ``max_items`` are live a new key is refused with
:class:`StateCapacityError` rather than evicting someone's work.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from .environment import Environment
from .episodes import Episode
from .errors import EpisodeNotFound, StateCapacityError
from .state import StateCopy

__all__ = ["ExpiringPool", "StatePool", "EpisodePool", "PoolStats", "DEFAULT_TTL", "DEFAULT_MAX_STATES"]

DEFAULT_TTL = 30 * 60.0
DEFAULT_MAX_STATES = 4096


class Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


@dataclass(frozen=True)
class PoolStats:
    live: int
    max_items: int
    ttl: float
    created: int
    expired: int


class ExpiringPool(Generic[T]):
    def __init__(self, *, ttl: float = DEFAULT_TTL, max_items: int = DEFAULT_MAX_STATES, what: str = "states",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0 or max_items <= 0:
            raise ValueError("ttl and max_items must be positive")
        self.ttl = ttl
        self.max_items = max_items
        self.what = what
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[T, float]] = OrderedDict()
        self._lock = threading.RLock()
        self._created = 0
        self._expired = 0

    def get_or_create(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The live item for ``key``, or a new one from ``factory`` if there is room."""
        with self._lock:
            item = self.get(key)
            if item is not None:
                return item
            self._make_room()
            item = factory()
            self._items[key] = (item, self._clock())
            self._created += 1
            return item

    def add(self, key: Hashable, item: T) -> T:
        """Add ``item`` under ``key``, if there is room."""
        with self._lock:
            self._make_room()
            self._items[key] = (item, self._clock())
            self._created += 1
            return item

    def get(self, key: Hashable) -> T | None:
        """The live item for ``key`` (refreshing its idle timer), or None if absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            if now - entry[1] > self.ttl:
                self._discard(key)
                self._expired += 1
                return None
            self._items[key] = (entry[0], now)
            self._items.move_to_end(key)
            return entry[0]

    def peek(self, key: Hashable) -> T | None:
        """The item for ``key`` without touching its idle timer."""
        entry = self._items.get(key)
        return entry[0] if entry is not None and self._clock() - entry[1] <= self.ttl else None

    def _make_room(self) -> None:
        if len(self._items) >= self.max_items:
            self._sweep(self._clock())
        if len(self._items) >= self.max_items:
            raise StateCapacityError(
                f"{len(self._items)} {self.what} are live, the configured maximum; idle {self.what} expire after "
                f"{self.ttl:g} s. Retry later, delete finished ones, or raise the limit."
            )

    def drop(self, key: Hashable) -> bool:
        with self._lock:
            return self._discard(key)

    def drop_where(self, predicate: Callable[[Hashable], bool]) -> int:
        with self._lock:
            keys = [k for k in self._items if predicate(k)]
            for key in keys:
                self._discard(key)
            return len(keys)

    def sweep(self) -> int:
        """Drop every item idle for longer than the TTL; returns how many were dropped."""
        with self._lock:
            return self._sweep(self._clock())

    def _sweep(self, now: float) -> int:
        expired = 0
        while self._items:
            key, (_, last_used) = next(iter(self._items.items()))
            if now - last_used <= self.ttl:
                break
            self._discard(key)
            expired += 1
        self._expired += expired
        return expired

    def _discard(self, key: Hashable) -> bool:
        entry = self._items.pop(key, None)
        if entry is None:
            return False
        entry[0].close()
        return True

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._items))

    def stats(self) -> PoolStats:
        return PoolStats(len(self._items), self.max_items, self.ttl, self._created, self._expired)

    def close(self) -> None:
        with self._lock:
            for key in list(self._items):
                self._discard(key)


class StatePool(ExpiringPool[StateCopy]):
    """State copies by (environment, state key)."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, max_states: int = DEFAULT_MAX_STATES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl=ttl, max_items=max_states, what="states", clock=clock)

    def state(self, env: Environment, key: str) -> StateCopy:
        """The state copy for ``key`` in ``env``, created from the seed on first use."""
        return self.get_or_create((env.id, key), env.new_state)



class EpisodePool(ExpiringPool[Episode]):
    """Live episodes by id."""

    def __init__(self, *, ttl: float = DEFAULT_TTL, max_episodes: int = DEFAULT_MAX_STATES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(ttl=ttl, max_items=max_episodes, what="episodes", clock=clock)

    def open(self, env: Environment, task_id: str | None = None, episode_id: str | None = None) -> Episode:
        """Start an episode (with a chosen id, or a random one), if there is room for one more."""
        with self._lock:
            self._make_room()
            episode = env.episode(task_id, episode_id)
            return self.add(episode.id, episode)

    def find(self, episode_id: str, env_id: str | None = None) -> Episode:
        """The live episode (refreshing its idle timer); :class:`EpisodeNotFound` says why not."""
        episode = self.get(episode_id)
        if episode is None or (env_id is not None and episode.env.id != env_id):
            where = f" in {env_id!r}" if env_id else ""
            raise EpisodeNotFound(f"no live episode {episode_id!r}{where}: it never existed, was deleted, "
                                  f"or expired after {self.ttl:g} s idle")
        return episode
