"""Episodes: one isolated run of a task (or of the plain seed state), with its trajectory.

An episode owns a state copy made from its task's initial state, records every tool call, and
can be scored and reset. It works in process (``Episode(env, "lib-001")``); the gateway serves the
same objects over MCP at ``/envs/<env>/episodes/<id>/mcp`` and over its REST control plane.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import StateError
from ..spec.tasks import Task
from ..state.executor import ToolResult
from ..state.store import StateCopy
from .environment import Environment
from .evaluation import Score, score_state

__all__ = ["TrajectoryStep", "Episode", "TrajectoryLimits", "TRAJECTORY_LIMITS", "clip"]


@dataclass(frozen=True)
class TrajectoryLimits:
    """What a trajectory keeps of each call. The call itself always sees everything the agent sent;
    the record is cut to these sizes (strings and containers end in a visible ``…[...]`` marker)."""

    argument_string: int = 16 * 1024
    """Characters kept of any one string in a call's arguments (and of a tool name: 256)."""
    arguments: int = 64 * 1024
    """Approximate JSON bytes kept of one call's arguments."""
    result: int = 128 * 1024
    """Approximate JSON bytes kept of one call's result text, and again of its structured result."""
    items: int = 1000
    """Elements kept of any one list or object."""
    depth: int = 32
    """Nesting levels kept."""
    trajectory: int = 4 * 1024 * 1024
    """Approximate bytes kept for a whole trajectory; later steps keep their tool, verdict and timing only."""
    steps: int = 10_000
    """Steps kept; later calls are counted (``steps``) but not recorded."""


TRAJECTORY_LIMITS = TrajectoryLimits()

_SURROGATES = re.compile("[\ud800-\udfff]")
_MAX_INT_BITS = 128


class _Clipper:
    """Copies a value into plain JSON (str, int, float, bool, None, list, dict with str keys), within a byte budget."""

    def __init__(self, budget: int, max_string: int, limits: TrajectoryLimits) -> None:
        self.left = budget
        self.max_string = max_string
        self.limits = limits

    def text(self, value: str, limit: int | None = None) -> str:
        keep = max(0, min(limit if limit is not None else self.max_string, self.left))
        cut = value if len(value) <= keep else value[:keep]
        try:
            cut.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: JSON can carry them, UTF-8 cannot
            cut = _SURROGATES.sub("\ufffd", cut)
        if len(value) > keep:
            cut += f"…[truncated: {len(value):,} characters]"
        self.left -= len(cut) + 2
        return cut

    def value(self, value: Any, depth: int = 0) -> Any:
        if value is None or isinstance(value, bool):
            self.left -= 5
            return value
        if isinstance(value, int):
            self.left -= 8
            return value if value.bit_length() <= _MAX_INT_BITS else f"…[integer of {value.bit_length():,} bits]"
        if isinstance(value, float):
            self.left -= 8
            return value if math.isfinite(value) else repr(value)  # 'nan', 'inf': JSON has no such numbers
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, dict | list | tuple):
            return self.text(f"…[{type(value).__name__} value]")
        if depth >= self.limits.depth:
            return self.text(f"…[nested deeper than {self.limits.depth} levels]")
        self.left -= 2
        size = len(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for index, (key, item) in enumerate(value.items()):
                if index >= self.limits.items or self.left <= 0:
                    out["…"] = f"[{size - index:,} more keys]"
                    break
                out[self.text(key if isinstance(key, str) else repr(key), 256)] = self.value(item, depth + 1)
            return out
        items: list[Any] = []
        for index, item in enumerate(value):
            if index >= self.limits.items or self.left <= 0:
                items.append(f"…[{size - index:,} more items]")
                break
            items.append(self.value(item, depth + 1))
        return items


def clip(
    value: Any, budget: int, max_string: int | None = None, limits: TrajectoryLimits = TRAJECTORY_LIMITS
) -> tuple[Any, int]:
    """``value`` as plain JSON that any encoder accepts (invalid Unicode replaced, non-finite numbers
    as text), cut to about ``budget`` bytes; also returns the bytes it takes."""
    clipper = _Clipper(budget, max_string if max_string is not None else budget, limits)
    out = clipper.value(value)
    return out, budget - clipper.left


@dataclass
class TrajectoryStep:
    index: int
    tool: str
    arguments: Any
    result: dict[str, Any]
    text: str
    is_error: bool
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Episode:
    """An isolated state for one run, plus everything that happened to it."""

    def __init__(self, env: Environment, task_id: str | None = None, episode_id: str | None = None) -> None:
        self.env = env
        self.task: Task | None = env.task(task_id) if task_id is not None else None
        self.id = episode_id or uuid.uuid4().hex
        self.created_at = time.time()
        self.resets = 0
        self.trajectory: list[TrajectoryStep] = []
        self.calls = 0  # every call since the last reset, recorded or not
        self.limits = TRAJECTORY_LIMITS
        self._recorded = 0  # approximate bytes the trajectory holds
        self.state: StateCopy = self._fresh_state()
        self._closed = False

    def _fresh_state(self) -> StateCopy:
        return self.env.task_template(self.task.id).copy() if self.task else self.env.new_state()

    @property
    def task_id(self) -> str | None:
        return self.task.id if self.task else None

    @property
    def instruction(self) -> str | None:
        return self.task.instruction if self.task else None

    def call(self, tool: str, arguments: Any = None) -> ToolResult:
        """Call a tool on this episode's state and record it (arguments and result cut to
        :class:`TrajectoryLimits`; the call itself sees them whole)."""
        if self._closed:
            raise StateError(f"episode {self.id} is closed")
        result = self.env.call(self.state, tool, arguments)
        self.calls += 1
        if len(self.trajectory) < self.limits.steps:
            self.trajectory.append(self._record(tool, arguments, result))
        return result

    def _record(self, tool: str, arguments: Any, result: ToolResult) -> TrajectoryStep:
        limits = self.limits
        name, used = clip(tool, 512, 256, limits)
        left = limits.trajectory - self._recorded
        if left <= 0:
            note = f"…[not recorded: the trajectory holds its maximum of {limits.trajectory:,} bytes]"
            step = TrajectoryStep(len(self.trajectory), name, note, {}, note, result.is_error, result.duration_ms)
        else:
            args, size = clip(arguments, min(limits.arguments, left), limits.argument_string, limits)
            used += size
            text, size = clip(result.text, max(0, min(limits.result, left - used)), None, limits)
            used += size
            structured, size = clip(result.structured, max(0, min(limits.result, left - used)), None, limits)
            used += size
            step = TrajectoryStep(
                len(self.trajectory),
                name,
                args,
                structured if isinstance(structured, dict) else {},
                text,
                result.is_error,
                result.duration_ms,
            )
        self._recorded += used
        return step

    def evaluate(self, final_message: str | None = None) -> Score:
        """Score the current state against the task (an episode without a task cannot be scored)."""
        if self.task is None:
            raise StateError(f"episode {self.id} has no task, so there is nothing to score it against")
        env = self.env
        return score_state(
            self.task,
            env.task_initial_dump(self.task.id),
            self.state,
            env.gold_diff(self.task.id),
            env.primary_keys,
            final_message,
        )

    def reset(self) -> None:
        """Back to the task's initial state, with an empty trajectory."""
        self.state.close()
        self.state = self._fresh_state()
        self.trajectory = []
        self.calls = 0
        self._recorded = 0
        self.resets += 1

    def close(self) -> None:
        """Free the state and the trajectory (whoever still holds the episode holds little)."""
        if not self._closed:
            self.state.close()
            self.trajectory = []
            self._closed = True

    def summary(self) -> dict[str, Any]:
        return {
            "episode_id": self.id,
            "env_id": self.env.id,
            "task_id": self.task_id,
            "instruction": self.instruction,
            "steps": self.calls,
            "steps_recorded": len(self.trajectory),
            "resets": self.resets,
            "created_at": self.created_at,
            "state_hash": self.state.digest(),
        }
