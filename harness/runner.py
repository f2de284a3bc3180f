"""Batch rollouts: every (task, trial) of a run, a few at a time, through one gateway, with one
connection pool for the control plane, one for MCP and one for the model.

Each finished trial is appended to the run's JSONL file at once, so an interrupted run resumes
where it stopped: trials already recorded with ``status: "ok"`` are skipped, and ones that
failed for infrastructure reasons are tried again. When a run completes, the file is rewritten
with one line per trial (its latest attempt), in trial and task order. A failure of the model endpoint, of the
transport or of the control plane, or a timeout, is recorded as ``status: "infra_error"`` with
its stage — never as a low score — and a state-changing tool call that failed in transit is not
re-sent (its episode ends there, as an infrastructure failure).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import httpx

from servers import EnvFleetError, Task
from servers.clients import (
    Agent,
    ControlPlaneError,
    GatewayClient,
    RolloutRecord,
    ToolCallUncertain,
    make_agent,
    rollout_http,
)

from .agent import SYSTEM_PROMPT, LLMAgent, openai_tools
from .chat import ChatClient, ChatError, ChatSettings
from .errors import HarnessError
from .users import LLMUser, ScriptedUser

__all__ = ["RunConfig", "RunMismatch", "run_trials", "read_records", "TRAJECTORIES"]

TRAJECTORIES = "trajectories.jsonl"
RUN_FILE = "run.json"


@dataclass
class RunConfig:
    env_id: str
    tasks: list[Task]
    agent: str  # gold, noop, random, or openai:MODEL
    mode: str = "non-conv"  # or conv
    user: str = "scripted"  # conv mode: scripted, or openai:MODEL
    trials: int = 1
    concurrency: int = 4
    seed: int = 0
    max_steps: int = 30
    max_turns: int = 20
    episode_timeout: float = 600.0
    infra_retries: int = 1  # a trial that failed for infrastructure reasons runs again, on a fresh episode
    agent_chat: ChatSettings | None = None
    user_chat: ChatSettings | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "agent": self.agent,
            "mode": self.mode,
            "user": self.user if self.mode == "conv" else None,
            "trials": self.trials,
            "seed": self.seed,
            "max_steps": self.max_steps,
            "max_turns": self.max_turns,
            "tasks": [t.id for t in self.tasks],
            "agent_model": self.agent_chat.model if self.agent_chat else None,
            "user_model": self.user_chat.model if self.user_chat else None,
            "temperature": self.agent_chat.temperature if self.agent_chat else None,
            **self.meta,
        }


class RunMismatch(HarnessError, ValueError):
    """Resuming a run with other settings would mix two experiments in one file."""


_RESUMABLE = (
    "env_id",
    "agent",
    "mode",
    "user",
    "seed",
    "max_steps",
    "max_turns",
    "agent_model",
    "user_model",
    "temperature",
)


def _same_run(path: Path, config: RunConfig) -> None:
    """A run folder is resumed only by the run it holds (more trials or other tasks are fine)."""
    if not path.exists():
        return
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    now = config.describe()
    different = [f"{k}: {before.get(k)!r} then {now.get(k)!r}" for k in _RESUMABLE if before.get(k) != now.get(k)]
    if different:
        raise RunMismatch(
            f"{path.parent} holds another run ({'; '.join(different)}); resume it with the same options, or "
            "choose a new --out"
        )


def trajectories_path(out: Path) -> Path:
    """A run is a folder (``trajectories.jsonl`` and ``run.json``), or a single ``.jsonl`` file."""
    return out if out.suffix == ".jsonl" else out / TRAJECTORIES


def read_records(out: Path) -> list[dict[str, Any]]:
    """Every record of a run, the latest one per (task, trial)."""
    path = trajectories_path(out)
    if not path.exists():
        return []
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interruption
            latest[(record.get("env_id"), record.get("task_id"), record.get("trial"))] = record
    return list(latest.values())


class _Writer:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.lock = anyio.Lock()

    async def write(self, record: dict[str, Any]) -> None:
        async with self.lock:
            with self.path.open("a+b") as handle:
                handle.seek(0, 2)
                if handle.tell():  # a line cut short by an interruption must not swallow this one
                    handle.seek(-1, 2)
                    if handle.read(1) != b"\n":
                        handle.write(b"\n")
                handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode())


async def run_trials(
    config: RunConfig, gateway: GatewayClient, out: Path, on_record: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Run every (task, trial) not already done in ``out``; returns the run's records (old and new)."""
    path = trajectories_path(out)
    if out.suffix != ".jsonl":
        out.mkdir(parents=True, exist_ok=True)
        _same_run(out / RUN_FILE, config)
        (out / RUN_FILE).write_text(json.dumps(config.describe(), indent=2) + "\n", encoding="utf-8")
    done = {
        (r["task_id"], r["trial"])
        for r in read_records(out)
        if r.get("status") == "ok" and r.get("env_id") == config.env_id
    }
    todo = [(task, trial) for trial in range(config.trials) for task in config.tasks if (task.id, trial) not in done]
    writer = _Writer(path)
    limiter = anyio.Semaphore(config.concurrency)
    async with httpx.AsyncClient(
        timeout=None, limits=httpx.Limits(max_connections=max(10, config.concurrency * 2))
    ) as llm_http:

        async def one(task: Task, trial: int) -> None:
            async with limiter:
                for attempt in range(config.infra_retries + 1):
                    record = await run_trial(config, gateway, llm_http, task, trial)
                    record["attempt"] = attempt
                    await writer.write(record)
                    if record["status"] == "ok":
                        break
                    await anyio.sleep(min(30.0, 2.0**attempt))
                if on_record:
                    on_record(record)

        async with anyio.create_task_group() as tg:
            for task, trial in todo:
                tg.start_soon(one, task, trial)
    records = read_records(out)
    order = {t.id: i for i, t in enumerate(config.tasks)}
    records.sort(
        key=lambda r: (
            r.get("env_id") != config.env_id,
            r.get("trial", 0),
            order.get(r.get("task_id"), len(order)),
            str(r.get("task_id")),
        )
    )
    compact = path.with_name(f".{path.name}.tmp")  # the finished run, one line per trial in task order
    compact.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    compact.replace(path)
    return records


def _agent(config: RunConfig, task: Task, trial: int, http: httpx.AsyncClient) -> Agent:
    seed = config.seed + trial
    if config.agent_chat is None:
        return make_agent(config.agent, task, seed)
    chat = ChatClient(_seeded(config.agent_chat, seed), http)
    user = None
    if config.mode == "conv":
        user = (
            ScriptedUser(task)
            if config.user_chat is None
            else LLMUser(task, ChatClient(_seeded(config.user_chat, seed), http, "user"))
        )
    return LLMAgent(chat, user=user, max_steps=config.max_steps, max_turns=config.max_turns)


def _seeded(settings: ChatSettings, seed: int) -> ChatSettings:
    return replace(settings, seed=seed if settings.seed is None else settings.seed + seed)


async def run_trial(
    config: RunConfig, gateway: GatewayClient, http: httpx.AsyncClient, task: Task, trial: int
) -> dict[str, Any]:
    agent = _agent(config, task, trial, http)
    episode_id = f"{task.id}.t{trial}.{uuid.uuid4().hex[:10]}"
    started = time.perf_counter()
    record: dict[str, Any] = {
        "env_id": config.env_id,
        "task_id": task.id,
        "trial": trial,
        "agent": config.agent,
        "mode": config.mode,
        "seed": config.seed + trial,
        "episode_id": episode_id,
    }
    failure: tuple[str, str] | None = None
    rollout: RolloutRecord | None = None
    try:
        with anyio.fail_after(config.episode_timeout):
            rollout = await rollout_http(gateway, config.env_id, task.id, agent, episode_id=episode_id)
    except TimeoutError:
        failure = ("timeout", f"the episode did not finish within {config.episode_timeout:g} s")
    except Exception as e:  # noqa: BLE001 - sorted below; a bug is recorded, not lost
        failure = _infrastructure(e)
    record["seconds"] = round(time.perf_counter() - started, 3)
    user = getattr(agent, "user", None)
    record["usage"] = {
        "agent": {
            "prompt_tokens": getattr(agent, "prompt_tokens", 0),
            "completion_tokens": getattr(agent, "completion_tokens", 0),
        },
        "user": {
            "prompt_tokens": getattr(user, "prompt_tokens", 0),
            "completion_tokens": getattr(user, "completion_tokens", 0),
        },
    }
    if failure is not None:
        record.update(
            status="infra_error", infra_error={"stage": failure[0], "message": failure[1]}, reward=None, success=None
        )
        record["messages"] = getattr(agent, "messages", [])
        return record
    assert rollout is not None
    record.update(
        status="ok",
        reward=rollout.reward,
        success=rollout.success,
        score=rollout.score,
        final_message=rollout.final_message,
        trajectory=rollout.trajectory,
        final_state_hash=rollout.final_state_hash,
        stopped=getattr(agent, "stopped", None),
    )
    if isinstance(agent, LLMAgent):
        record["messages"], record["tools"] = agent.messages, agent.tools
    else:  # a built-in agent's calls, written down as the conversation a model would have had
        record["messages"], record["tools"] = _as_messages(task, rollout), openai_tools(rollout.tools)
    return record


def _infrastructure(error: BaseException) -> tuple[str, str]:
    """(stage, message) of what went wrong; errors raised inside the MCP client arrive in groups."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, ChatError):
        return ("user_model" if error.role == "user" else "model"), str(error)
    if isinstance(error, ToolCallUncertain):
        return "tool_call", str(error)
    if isinstance(error, ControlPlaneError):
        return "control_plane", str(error)
    if isinstance(
        error,
        (*GatewayClient.TRANSPORT_ERRORS, anyio.ClosedResourceError, anyio.BrokenResourceError, OSError, TimeoutError),
    ):
        return "transport", f"{type(error).__name__}: {error}"
    if isinstance(error, EnvFleetError):
        return "environment", str(error)
    return "internal", f"{type(error).__name__}: {error}"


def _as_messages(task: Task, rollout: RolloutRecord) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT.format(policy=rollout.policy or "(none)")},
        {"role": "user", "content": task.instruction},
    ]
    for index, step in enumerate(rollout.trajectory):
        call_id = f"call_{index}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": step["tool"], "arguments": json.dumps(step["arguments"])},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": call_id, "content": step["text"]})
    messages.append({"role": "assistant", "content": rollout.final_message or ""})
    return messages
