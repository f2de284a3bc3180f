"""Episodes: one isolated run of a task (or of the plain seed state), with its trajectory.

An episode owns a state copy made from its task's initial state, records every tool call, and
can be scored and reset. It works in process (``env.episode("lib-001")``); the gateway serves the
same objects over MCP at ``/envs/<env>/episodes/<id>/mcp`` and over its REST control plane.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .errors import StateError
from .evaluation import Score, score_state
from .executor import ToolResult

if TYPE_CHECKING:
    from .environment import Environment
    from .state import StateCopy
    from .tasks import Task

__all__ = ["TrajectoryStep", "Episode"]


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
        """Call a tool on this episode's state and record it."""
        if self._closed:
            raise StateError(f"episode {self.id} is closed")
        result = self.env.executor.call(self.state, tool, arguments)
        self.trajectory.append(TrajectoryStep(
            len(self.trajectory), tool, arguments, result.structured, result.text, result.is_error, result.duration_ms))
        return result

    def evaluate(self, final_message: str | None = None) -> Score:
        """Score the current state against the task (an episode without a task cannot be scored)."""
        if self.task is None:
            raise StateError(f"episode {self.id} has no task, so there is nothing to score it against")
        env = self.env
        return score_state(self.task, env.task_initial_dump(self.task.id), self.state, env.gold_diff(self.task.id),
                           env.primary_keys, final_message)

    def reset(self) -> None:
        """Back to the task's initial state, with an empty trajectory."""
        self.state.close()
        self.state = self._fresh_state()
        self.trajectory = []
        self.resets += 1

    def close(self) -> None:
        if not self._closed:
            self.state.close()
            self._closed = True

    def summary(self) -> dict[str, Any]:
        return {
            "episode_id": self.id,
            "env_id": self.env.id,
            "task_id": self.task_id,
            "instruction": self.instruction,
            "steps": len(self.trajectory),
            "resets": self.resets,
            "created_at": self.created_at,
            "state_hash": self.state.digest(),
        }
