"""Live objects by key with an idle TTL, caps and quotas: state copies by state key, episodes by id.

An entry is created on first use (or added), kept while used, and dropped — closed — after
``ttl`` seconds idle. Creating one is subject to :class:`Quotas`, so that no single client can
take the whole pool:

* ``max_items`` live entries in all; ``per_client`` for one client address; ``per_prefix`` for
  keys that share a prefix (see :func:`key_prefix`), so one run or tenant cannot crowd out others;
* ``rate`` new entries per second per client (a token bucket holding ``burst``);
* when a cap is reached, the least recently used entry in that cap's scope that has been idle for
  at least ``min_idle`` seconds is evicted to make room; only when none is, the new key is refused
  with :class:`StateCapacityError`, whose ``retry_after`` says when room can appear.

An existing key is always served, whoever asks: quotas bound what is created, not what is used.
Entries made without a client (in process, stdio) count only against ``max_items`` and ``per_prefix``.

A dropped entry is closed by ``closer`` (default: at once). A server whose calls run in worker
threads sets one that waits for the entry's running call, so dropping never blocks its event loop.
State keys and episode ids follow one rule, :func:`valid_id`.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from ..errors import EpisodeNotFound, StateCapacityError, StateError
from ..state.store import StateCopy
from .environment import Environment
from .episode import Episode

__all__ = [
    "ExpiringPool",
    "StatePool",
    "EpisodePool",
    "PoolStats",
    "Quotas",
    "key_prefix",
    "valid_id",
    "ID_RULE",
    "DEFAULT_TTL",
    "DEFAULT_MAX_STATES",
    "DEFAULT_STATE_QUOTAS",
    "DEFAULT_EPISODE_QUOTAS",
]

DEFAULT_TTL = 30 * 60.0
DEFAULT_MAX_STATES = 4096
_MAX_BUCKETS = 65_536  # rate buckets kept for distinct clients before full (idle) ones are pruned
_SEGMENT = re.compile(r"[-._~]")
_ID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ ~ -, not only dots"
"""What :func:`valid_id` accepts, in words for error messages."""


def valid_id(value: object) -> bool:
    """Whether ``value`` can name a state key or an episode id: one segment of a URL path as it is.

    Only URL-unreserved characters, so the id needs no escaping anywhere. ``.`` and ``..`` are
    dot-segments that clients and proxies resolve away (``…/s/../mcp`` is ``…/mcp``), so a URL
    built from them points elsewhere; ids made only of dots are refused too.
    """
    return isinstance(value, str) and _ID.fullmatch(value) is not None and value.strip(".") != ""


@dataclass(frozen=True)
class Quotas:
    """Who may hold how much of a pool. ``None`` turns a limit off."""

    per_client: int | None = None
    """Live entries one client address may have created."""
    per_prefix: int | None = None
    """Live entries whose keys share a prefix (:func:`key_prefix`)."""
    rate: float | None = None
    """New entries per second per client, sustained (a token bucket refilled at this rate)."""
    burst: int = 1
    """New entries a client may create at once (the bucket's size)."""
    min_idle: float | None = None
    """Entries idle at least this long may be evicted, least recently used first, to make room."""

    def __post_init__(self) -> None:
        for name in ("per_client", "per_prefix", "rate", "min_idle"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name} must be positive (or None to turn it off), not {value!r}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst!r}")


DEFAULT_STATE_QUOTAS = Quotas(per_client=1024, per_prefix=1024, rate=20.0, burst=200, min_idle=300.0)
"""A quarter of the default pool per client and per key prefix, 20 new states/s per client (200 at once),
and states idle for 5 minutes evicted (least recently used first) before anyone is refused."""

DEFAULT_EPISODE_QUOTAS = Quotas()
"""None: the control plane is the operator's (token-guarded), one harness host legitimately owns
every episode, and an episode's trajectory and score are never evicted from under it."""


def key_prefix(key: Hashable) -> str:
    """The group a key counts against for ``per_prefix``: its first segment, up to the first ``-``,
    ``.``, ``_`` or ``~`` (``run7-lib-001-trial0`` → ``run7``), after any ``namespace:`` the server
    adds (``url:run7-a`` → ``url:run7``; a session key ``session:<hex>`` is its own group). For a
    tuple key (environment, key) the last element is used, so a prefix spans environments."""
    text = key[-1] if isinstance(key, tuple) and key else key
    text = text if isinstance(text, str) else repr(text)
    namespace, colon, rest = text.partition(":")
    if not colon:
        namespace, rest = "", text
    return f"{namespace}{colon}{_SEGMENT.split(rest, maxsplit=1)[0]}"


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
    evicted: int = 0
    refused: int = 0


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    last_used: float
    client: str | None
    prefix: str


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class ExpiringPool(Generic[T]):
    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_items: int = DEFAULT_MAX_STATES,
        what: str = "states",
        quotas: Quotas | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_items <= 0:
            raise ValueError("ttl and max_items must be positive")
        self.ttl = ttl
        self.max_items = max_items
        self.what = what
        self.quotas = quotas or Quotas()
        self._clock = clock
        self.closer: Callable[[T], None] | None = None
        """Closes a dropped entry; None closes it at once (see the module docstring)."""
        self._items: OrderedDict[Hashable, _Entry[T]] = OrderedDict()
        self._groups: dict[
            tuple[str, str], OrderedDict[Hashable, None]
        ] = {}  # ("client"|"prefix", name) -> keys, LRU first
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.RLock()
        self._created = 0
        self._expired = 0
        self._evicted = 0
        self._refused = 0

    def get_or_create(self, key: Hashable, factory: Callable[[], T], *, client: str | None = None) -> T:
        """The live item for ``key``, or a new one from ``factory`` if ``client``'s quotas leave room."""
        with self._lock:
            item = self.get(key)
            if item is not None:
                return item
            return self._insert(key, factory, client)

    def add(self, key: Hashable, item: T, *, client: str | None = None) -> T:
        """Add ``item`` under ``key``, if ``client``'s quotas leave room (else ``item`` is closed)."""
        with self._lock:
            existing = self._items.get(key)
            if existing is not None and existing.item is item:
                return item
            self._discard(key)
            try:
                return self._insert(key, lambda: item, client)
            except StateCapacityError:
                item.close()
                raise

    def _insert(self, key: Hashable, factory: Callable[[], T], client: str | None) -> T:
        now = self._clock()
        prefix = key_prefix(key)
        self._make_room(client, prefix, now)
        item = factory()
        self._take_token(client, now)
        self._items[key] = _Entry(item, now, client, prefix)
        for group in self._group_names(client, prefix):
            self._groups.setdefault(group, OrderedDict())[key] = None
        self._created += 1
        return item

    def get(self, key: Hashable) -> T | None:
        """The live item for ``key`` (refreshing its idle timer), or None if absent or expired."""
        now = self._clock()
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            if now - entry.last_used > self.ttl:
                self._discard(key)
                self._expired += 1
                return None
            entry.last_used = now
            self._items.move_to_end(key)
            for group in self._group_names(entry.client, entry.prefix):
                self._groups[group].move_to_end(key)
            return entry.item

    def peek(self, key: Hashable) -> T | None:
        """The item for ``key`` without touching its idle timer."""
        entry = self._items.get(key)
        return entry.item if entry is not None and self._clock() - entry.last_used <= self.ttl else None

    # -- quotas -------------------------------------------------------------------------------

    def _group_names(self, client: str | None, prefix: str) -> list[tuple[str, str]]:
        names = [("prefix", prefix)] if self.quotas.per_prefix is not None else []
        return names + [("client", client)] if client is not None and self.quotas.per_client is not None else names

    def _make_room(self, client: str | None, prefix: str, now: float) -> None:
        """Refuse a new entry for ``client`` under ``prefix`` unless every quota has room (evicting if allowed)."""
        self._check_rate(client, now)
        quotas = self.quotas
        scopes: list[tuple[Any, int | None, str]] = [
            (
                self._groups.get(("client", client)) if client is not None else None,
                quotas.per_client,
                f" for client {_show(client)}, the cap per client",
            ),
            (
                self._groups.get(("prefix", prefix)),
                quotas.per_prefix,
                f" under the key prefix {_show(prefix)}, the cap per prefix (a key's text before its first - . _ or ~)",
            ),
            (self._items, self.max_items, ", the configured maximum"),
        ]
        for keys, cap, whose in scopes:
            if keys is None or cap is None or len(keys) < cap:
                continue
            if keys is self._items:
                self._sweep(now)
            while len(keys) >= cap and self._evict_lru(keys, now):
                pass
            if len(keys) >= cap:
                retry = self._room_in(keys, now)
                self._refused += 1
                min_idle = self.quotas.min_idle
                idle = (
                    f"{self.what} idle for {min_idle:g} s are evicted to make room"
                    if min_idle is not None and min_idle < self.ttl
                    else f"idle {self.what} expire after {self.ttl:g} s"
                )
                raise StateCapacityError(
                    f"{len(keys)} {self.what} are live{whose}; {idle}. Retry in {retry:.0f} s, "
                    f"delete finished ones, or raise the limit.",
                    retry_after=retry,
                )

    def _evict_lru(self, keys: OrderedDict[Hashable, object], now: float) -> bool:
        """Evict the least recently used of ``keys`` if it has been idle long enough; False if not."""
        if not keys:
            return False
        key = next(iter(keys))
        entry = self._items[key]
        idle = now - entry.last_used
        if idle > self.ttl:
            self._expired += 1
        elif self.quotas.min_idle is not None and idle >= self.quotas.min_idle:
            self._evicted += 1
        else:
            return False
        self._discard(key)
        return True

    def _room_in(self, keys: OrderedDict[Hashable, object], now: float) -> float:
        """Seconds until the oldest of ``keys`` can be evicted (or expires), at least 1."""
        oldest = self._items[next(iter(keys))].last_used
        wait = self.ttl if self.quotas.min_idle is None else min(self.quotas.min_idle, self.ttl)
        return max(1.0, math.ceil(oldest + wait - now))

    def _check_rate(self, client: str | None, now: float) -> None:
        rate = self.quotas.rate
        if client is None or rate is None:
            return
        bucket = self._refill(client, now)
        if bucket is not None and bucket.tokens < 1:
            retry = max(1.0, math.ceil((1 - bucket.tokens) / rate))
            self._refused += 1
            raise StateCapacityError(
                f"client {_show(client)} is creating {self.what} faster than the allowed {rate:g} per second "
                f"(bursts of {self.quotas.burst}); existing ones still work. Retry in {retry:.0f} s.",
                retry_after=retry,
            )

    def _refill(self, client: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(client)
        if bucket is not None and self.quotas.rate is not None:
            bucket.tokens = min(float(self.quotas.burst), bucket.tokens + (now - bucket.stamp) * self.quotas.rate)
            bucket.stamp = now
        return bucket

    def _take_token(self, client: str | None, now: float) -> None:
        if client is None or self.quotas.rate is None:
            return
        bucket = self._refill(client, now)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._prune_buckets(now)
            bucket = self._buckets[client] = _Bucket(float(self.quotas.burst), now)
        bucket.tokens -= 1

    def _prune_buckets(self, now: float) -> None:
        """Forget clients whose bucket has refilled: they are indistinguishable from new ones."""
        for client in list(self._buckets):
            bucket = self._refill(client, now)
            if bucket is not None and bucket.tokens >= self.quotas.burst:
                del self._buckets[client]

    # -- removal ------------------------------------------------------------------------------

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
            now = self._clock()
            if self.quotas.rate is not None:
                self._prune_buckets(now)
            return self._sweep(now)

    def _sweep(self, now: float) -> int:
        expired = 0
        while self._items:
            key, entry = next(iter(self._items.items()))
            if now - entry.last_used <= self.ttl:
                break
            self._discard(key)
            expired += 1
        self._expired += expired
        return expired

    def _discard(self, key: Hashable) -> bool:
        entry = self._items.pop(key, None)
        if entry is None:
            return False
        for group in self._group_names(entry.client, entry.prefix):
            keys = self._groups.get(group)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del self._groups[group]
        if self.closer is not None:
            self.closer(entry.item)
        else:
            entry.item.close()
        return True

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._items))

    def stats(self) -> PoolStats:
        return PoolStats(
            len(self._items), self.max_items, self.ttl, self._created, self._expired, self._evicted, self._refused
        )

    def close(self) -> None:
        with self._lock:
            for key in list(self._items):
                self._discard(key)
            self._buckets.clear()


def _show(value: object, limit: int = 64) -> str:
    """``repr(value)``, cut to ``limit`` characters: safe to put in a message whatever a client sent."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text):,} characters]"


class StatePool(ExpiringPool[StateCopy]):
    """State copies by (environment, state key)."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_states: int = DEFAULT_MAX_STATES,
        quotas: Quotas | None = DEFAULT_STATE_QUOTAS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl=ttl, max_items=max_states, what="states", quotas=quotas, clock=clock)

    def state(self, env: Environment, key: str, *, client: str | None = None) -> StateCopy:
        """The state copy for ``key`` in ``env``, created from the seed on first use. ``client`` (the
        caller's address) is what the per-client cap and rate apply to; without one they do not."""
        return self.get_or_create((env.id, key), env.new_state, client=client)


class EpisodePool(ExpiringPool[Episode]):
    """Live episodes by id."""

    def __init__(
        self,
        *,
        ttl: float = DEFAULT_TTL,
        max_episodes: int = DEFAULT_MAX_STATES,
        quotas: Quotas | None = DEFAULT_EPISODE_QUOTAS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(ttl=ttl, max_items=max_episodes, what="episodes", quotas=quotas, clock=clock)

    def open(
        self, env: Environment, task_id: str | None = None, episode_id: str | None = None, *, client: str | None = None
    ) -> Episode:
        """Start an episode (with a chosen id, or a random one), if ``client``'s quotas leave room.
        An id in use is refused with :class:`StateError` (never replaced: that would orphan its episode)."""
        episode_id = episode_id if episode_id is not None else uuid.uuid4().hex
        with self._lock:
            if self.peek(episode_id) is not None:
                raise StateError(f"episode id {_show(episode_id)} is in use; choose another or delete that episode")
            if self._discard(episode_id):  # expired but not yet swept
                self._expired += 1
            return self._insert(episode_id, lambda: Episode(env, task_id, episode_id), client)

    def find(self, episode_id: str, env_id: str | None = None) -> Episode:
        """The live episode (refreshing its idle timer); :class:`EpisodeNotFound` says why not."""
        episode = self.get(episode_id)
        if episode is None or (env_id is not None and episode.env.id != env_id):
            where = f" in {_show(env_id)}" if env_id else ""
            raise EpisodeNotFound(
                f"no live episode {_show(episode_id)}{where}: it never existed, was deleted, "
                f"or expired after {self.ttl:g} s idle"
            )
        return episode
