"""Agents that need no LLM: ``gold`` replays a task's solution, ``noop`` does nothing, ``random``
makes valid random calls. They drive an :class:`AgentSession`, which is an episode over MCP (the
real path, used by the gates) or in process.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema_rs

from ..spec.tasks import Task

__all__ = ["CallOutcome", "ToolSpec", "AgentSession", "Agent", "GoldAgent", "NoopAgent", "RandomAgent", "make_agent"]


@dataclass
class CallOutcome:
    is_error: bool
    structured: Any
    text: str


@dataclass
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool = False  # the tool changes nothing (MCP readOnlyHint): safe to re-send


class AgentSession(Protocol):
    """What an agent sees: the instruction, the policy, the tools, and a way to call them."""

    instruction: str | None
    policy: str | None
    tools: list[ToolSpec]

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallOutcome: ...


class Agent(Protocol):
    name: str

    async def run(self, session: AgentSession) -> str | None:
        """Act, then return the final message to the user (or None)."""
        ...


class GoldAgent:
    """Replays the task's gold calls; its final message states the task's answer facts."""

    name = "gold"

    def __init__(self, task: Task) -> None:
        self.task = task

    async def run(self, session: AgentSession) -> str | None:
        for call in self.task.gold:
            await session.call(call.tool, dict(call.arguments))
        if self.task.answer is not None:
            return "Here is what you asked for: " + "; ".join(self.task.answer.facts) + "."
        return "All done."


class NoopAgent:
    """Does nothing at all: the baseline every task must fail."""

    name = "noop"

    async def run(self, session: AgentSession) -> str | None:
        return ""


_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]*")


class RandomAgent:
    """Random but schema-valid calls, with values harvested from the instruction and earlier results."""

    name = "random"

    def __init__(self, seed: int = 0, max_steps: int = 8) -> None:
        self.rng = random.Random(seed)
        self.max_steps = max_steps

    async def run(self, session: AgentSession) -> str | None:
        pool: list[Any] = _TOKEN.findall(session.instruction or "")
        validators = {t.name: jsonschema_rs.validator_for(t.input_schema, validate_formats=True) for t in session.tools}
        for _ in range(self.max_steps):
            tool = self.rng.choice(session.tools)
            arguments = self._arguments(tool.input_schema, pool, validators[tool.name])
            if arguments is None:
                continue
            outcome = await session.call(tool.name, arguments)
            _harvest(outcome.structured, pool)
        return "I tried some things."

    def _arguments(self, schema: dict[str, Any], pool: list[Any], validator: Any) -> dict[str, Any] | None:
        required = set(schema.get("required", []))
        for _ in range(20):
            arguments = {}
            for name, prop in schema.get("properties", {}).items():
                if name not in required and self.rng.random() < 0.5:
                    continue
                arguments[name] = self._value(prop, pool)
            if validator.is_valid(arguments):
                return arguments
        return None

    def _value(self, prop: dict[str, Any], pool: list[Any]) -> Any:
        if "enum" in prop:
            return self.rng.choice(prop["enum"])
        kind = prop.get("type")
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind in ("integer", "number"):
            numbers = [v for v in pool if isinstance(v, int | float) and not isinstance(v, bool)]
            low = prop.get("minimum", prop.get("exclusiveMinimum", 0))
            value = self.rng.choice(numbers) if numbers and self.rng.random() < 0.7 else self.rng.randint(int(low), int(low) + 30)
            return int(value) if kind == "integer" else value
        strings = [v for v in pool if isinstance(v, str)]
        if "pattern" in prop:
            pattern = re.compile(prop["pattern"])
            strings = [v for v in strings if pattern.search(v)]
        return self.rng.choice(strings) if strings else "x"


def _harvest(value: Any, pool: list[Any]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _harvest(item, pool)
    elif isinstance(value, list):
        for item in value:
            _harvest(item, pool)
    elif isinstance(value, str | int | float) and not isinstance(value, bool) and len(pool) < 5000:
        pool.append(value)


def make_agent(name: str, task: Task | None, seed: int = 0) -> Agent:
    if name == "gold":
        if task is None:
            raise ValueError("the gold agent needs a task")
        return GoldAgent(task)
    if name == "noop":
        return NoopAgent()
    if name == "random":
        return RandomAgent(seed)
    raise ValueError(f"unknown agent {name!r}; built-in agents are gold, noop and random")
