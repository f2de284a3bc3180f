"""Agents that need no LLM: ``gold`` replays a task's solution, ``noop`` does nothing, ``random``
makes valid random calls, and ``heuristic`` (:mod:`.heuristic`) is the shallow-script baseline. They drive an
:class:`AgentSession`, which is an episode over MCP (the real path, used by the gates) or in process.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema_rs

from ..spec.tasks import Task

__all__ = [
    "CallOutcome",
    "ToolSpec",
    "AgentSession",
    "Agent",
    "GoldAgent",
    "NoopAgent",
    "RandomAgent",
    "make_agent",
    "BUILT_IN_AGENTS",
    "schema_value",
]


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
        return self.final_message(self.task)

    @staticmethod
    def final_message(task: Task) -> str:
        """What the gold agent tells the user at the end: the task's answer facts, if it has any."""
        if task.answer is not None:
            return "Here is what you asked for: " + "; ".join(task.answer.facts) + "."
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
                arguments[name] = schema_value(
                    prop, self.rng, pool=pool, integers=(0, 30), integer_span=30, numbers=None
                )
            if validator.is_valid(arguments):
                return arguments
        return None


TextMaker = Callable[[Mapping[str, Any], str, random.Random], Any]
"""Text for a string parameter: (its schema, its name, the random source) -> the value."""


def _plain(schema: Mapping[str, Any], name: str, rng: random.Random) -> str:
    """A string nothing else suggests: one letter, so that the call is made (and refused, if it must be)."""
    return "x"


def schema_value(
    schema: Mapping[str, Any],
    rng: random.Random,
    *,
    name: str = "",
    pool: Sequence[Any] = (),
    integers: tuple[int, int] = (1, 4),
    integer_span: int | None = None,
    numbers: tuple[float, float] | None = (10.0, 200.0),
    text: TextMaker = _plain,
) -> Any:
    """A value for a tool parameter's JSON Schema: the one generator behind the random agent, the synthesizer's
    tool probes and its task drafts. Deterministic for a seeded ``rng`` (same schema, same draws, same value).

    An ``enum`` gives one of its members, a boolean a coin flip. A number is one of the numbers in ``pool``
    (values an agent has seen) seven times in ten, else drawn: an integer from ``integers`` (a schema
    ``minimum``, or ``exclusiveMinimum``, raises the low end), or from the minimum up ``integer_span`` when
    that is given (the minimum defaulting to the low end); a ``number`` from ``numbers`` to two decimals,
    or like an integer when ``numbers`` is None. A string is one of the strings in ``pool`` that match the
    schema's ``pattern`` when there is one, else ``text(schema, name, rng)``."""
    if "enum" in schema:
        return rng.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return rng.random() < 0.5
    if kind in ("integer", "number"):
        seen = [v for v in pool if isinstance(v, int | float) and not isinstance(v, bool)]
        if seen and rng.random() < 0.7:
            value = rng.choice(seen)
            return int(value) if kind == "integer" else value
        if kind == "number" and numbers is not None:
            return round(rng.uniform(*numbers), 2)
        low = schema.get("minimum", schema.get("exclusiveMinimum", integers[0]))
        if integer_span is not None:
            return rng.randint(int(low), int(low) + integer_span)
        return rng.randint(max(int(low), integers[0]), integers[1])
    strings = [v for v in pool if isinstance(v, str)]
    if "pattern" in schema:
        pattern = re.compile(schema["pattern"])
        strings = [v for v in strings if pattern.search(v)]
    return rng.choice(strings) if strings else text(schema, name, rng)


def _harvest(value: Any, pool: list[Any]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _harvest(item, pool)
    elif isinstance(value, list):
        for item in value:
            _harvest(item, pool)
    elif isinstance(value, str | int | float) and not isinstance(value, bool) and len(pool) < 5000:
        pool.append(value)


BUILT_IN_AGENTS = ("gold", "noop", "random", "heuristic")
"""The agents that need no model, by the names ``make_agent`` and ``envfleet run --agent`` take."""


def make_agent(name: str, task: Task | None, seed: int = 0) -> Agent:
    if name == "gold":
        if task is None:
            raise ValueError("the gold agent needs a task")
        return GoldAgent(task)
    if name == "noop":
        return NoopAgent()
    if name == "random":
        return RandomAgent(seed)
    if name == "heuristic":
        from .heuristic import HeuristicAgent  # it builds on this module

        return HeuristicAgent(seed)
    raise ValueError(f"unknown agent {name!r}; built-in agents are {', '.join(BUILT_IN_AGENTS)}")
