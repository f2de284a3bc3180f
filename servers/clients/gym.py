"""A Gymnasium-style interface to episodes, for RL trainers: ``reset`` / ``step`` / ``close``.

An action is a tool call ``{"tool": name, "arguments": {...}}``, or the final answer
``{"answer": "text"}`` that ends the episode. The observation is text: the task's instruction
after ``reset``, the tool's result after each call. The reward is 0 until the episode ends; then
it is the task's score (fraction of checks passed). Gymnasium is not required; when it is
installed, ``observation_space`` is a ``gymnasium.spaces.Text``.
"""

from __future__ import annotations

import random
from typing import Any

from ..episodes.environment import Environment
from ..episodes.episode import Episode
from ..errors import EnvFleetError

__all__ = ["ToolUseEnv"]


class ToolUseEnv:
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, env: Environment, *, task_ids: list[str] | None = None, split: str | None = None, max_steps: int = 30
    ) -> None:
        self.env = env
        self.task_ids = task_ids or [t.id for t in env.tasks if split is None or t.split == split]
        if not self.task_ids:
            raise EnvFleetError(f"environment {env.id!r} has no tasks{f' in split {split!r}' if split else ''}")
        self.max_steps = max_steps
        self.episode: Episode | None = None
        self._rng = random.Random()
        self._steps = 0
        try:
            from gymnasium import spaces

            self.observation_space: Any = spaces.Text(max_length=1_000_000)
        except ImportError:
            self.observation_space = None
        self.action_space: Any = None  # structured: {"tool", "arguments"} or {"answer"}

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools as name / description / input schema, e.g. to build a function-calling prompt."""
        return [
            {"name": n, "description": t.description, "input_schema": t.input_schema}
            for n, t in self.env.tool_descriptors.items()
        ]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        if seed is not None:
            self._rng.seed(seed)
        task_id = (options or {}).get("task_id") or self._rng.choice(self.task_ids)
        if self.episode is not None:
            self.episode.close()
        self.episode = Episode(self.env, task_id)
        self._steps = 0
        info = {"task_id": task_id, "episode_id": self.episode.id, "policy": self.env.spec.policy, "tools": self.tools}
        return self.episode.instruction or "", info

    def step(self, action: dict[str, Any]) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.episode is None:
            raise EnvFleetError("call reset() before step()")
        if "answer" in action:
            return self._finish(str(action["answer"]), truncated=False)
        if "tool" not in action:
            raise EnvFleetError('an action is {"tool": name, "arguments": {...}} or {"answer": text}')
        result = self.episode.call(action["tool"], action.get("arguments") or {})
        self._steps += 1
        info = {"is_error": result.is_error, "structured": result.structured, "step": self._steps}
        if self._steps >= self.max_steps:
            observation, reward, terminated, truncated, final = self._finish(None, truncated=True)
            return result.text, reward, terminated, truncated, {**final, **info}
        return result.text, 0.0, False, False, info

    def _finish(self, answer: str | None, *, truncated: bool) -> tuple[str, float, bool, bool, dict[str, Any]]:
        assert self.episode is not None
        score = self.episode.evaluate(answer)
        return "", score.reward, not truncated, truncated, {"score": score.to_dict(), "success": score.success}

    def close(self) -> None:
        if self.episode is not None:
            self.episode.close()
            self.episode = None
