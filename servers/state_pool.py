"""Live state copies by state key, with an idle TTL and a cap.

A state key names one isolated copy of one environment's state: a stdio process, a handshake-era
MCP session, or a key chosen by the client in the URL. The pool creates a copy on first use,
keeps it while it is used, and drops it after ``ttl`` seconds idle. When ``max_states`` copies are
live a new key is refused with :class:`StateCapacityError` rather than evicting someone's work.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from .environment import Environment
from .errors import StateCapacityError
from .state import StateCopy

__all__ = ["StatePool", "PoolStats"]

DEFAULT_TTL = 30 * 60.0
DEFAULT_MAX_STATES = 4096


@dataclass(frozen=True)
class PoolStats:
    live: int
    max_states: int
    ttl: float
    created: int
    expired: int


class StatePool:
    def __init__(self, *, ttl: float = DEFAULT_TTL, max_states: int = DEFAULT_MAX_STATES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl <= 0 or max_states <= 0:
            raise ValueError("ttl and max_states must be positive")
        self.ttl = ttl
        self.max_states = max_states
        self._clock = clock
        self._states: OrderedDict[tuple[str, str], tuple[StateCopy, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._created = 0
        self._expired = 0

    def get(self, env: Environment, key: str) -> StateCopy:
        """The state copy for ``key`` in ``env``, created from the seed on first use."""
        slot = (env.id, key)
        now = self._clock()
        with self._lock:
            entry = self._states.get(slot)
            if entry is not None and now - entry[1] <= self.ttl:
                self._states[slot] = (entry[0], now)
                self._states.move_to_end(slot)
                return entry[0]
            if entry is not None:
                self._discard(slot)
            if len(self._states) >= self.max_states:
                self._sweep(now)
            if len(self._states) >= self.max_states:
                raise StateCapacityError(
                    f"{len(self._states)} states are live, the configured maximum; idle states expire after "
                    f"{self.ttl:g} s. Retry later, or raise --max-states."
                )
            state = env.new_state()
            self._states[slot] = (state, now)
            self._created += 1
            return state

    def peek(self, env_id: str, key: str) -> StateCopy | None:
        entry = self._states.get((env_id, key))
        return entry[0] if entry else None

    def drop(self, env_id: str, key: str) -> bool:
        with self._lock:
            return self._discard((env_id, key))

    def drop_env(self, env_id: str) -> int:
        with self._lock:
            slots = [s for s in self._states if s[0] == env_id]
            for slot in slots:
                self._discard(slot)
            return len(slots)

    def sweep(self) -> int:
        """Drop every copy idle for longer than the TTL; returns how many were dropped."""
        with self._lock:
            return self._sweep(self._clock())

    def _sweep(self, now: float) -> int:
        expired = 0
        while self._states:
            slot, (_, last_used) = next(iter(self._states.items()))
            if now - last_used <= self.ttl:
                break
            self._discard(slot)
            expired += 1
        self._expired += expired
        return expired

    def _discard(self, slot: tuple[str, str]) -> bool:
        entry = self._states.pop(slot, None)
        if entry is None:
            return False
        entry[0].close()
        return True

    def __len__(self) -> int:
        return len(self._states)

    def stats(self) -> PoolStats:
        return PoolStats(len(self._states), self.max_states, self.ttl, self._created, self._expired)

    def close(self) -> None:
        with self._lock:
            for slot in list(self._states):
                self._discard(slot)
