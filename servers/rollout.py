"""Run an agent through one episode and record what happened.

Over HTTP (the real path): the control plane creates the episode, the agent talks to its MCP
URL with the official client, the control plane scores it and hands back the trajectory, and
the episode is deleted. In process: the same with an :class:`~servers.episodes.Episode`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
from mcp import Client

from .agents import Agent, CallOutcome, ToolSpec
from .environment import Environment
from .errors import EnvFleetError

__all__ = ["RolloutRecord", "McpSession", "EpisodeSession", "rollout_http", "rollout_in_process", "ControlPlaneError"]


class ControlPlaneError(EnvFleetError):
    """The control plane refused a request; the message carries its answer."""


@dataclass
class RolloutRecord:
    env_id: str
    task_id: str | None
    agent: str
    episode_id: str
    final_message: str | None
    reward: float | None
    success: bool | None
    score: dict[str, Any] | None
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    final_state_hash: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class McpSession:
    """An agent session over a real MCP client connection."""

    def __init__(self, client: Client, instruction: str | None, tools: list[ToolSpec]) -> None:
        self.client = client
        self.instruction = instruction
        self.tools = tools

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        result = await self.client.call_tool(tool, arguments)
        text = "".join(getattr(block, "text", "") for block in result.content)
        return CallOutcome(result.is_error, result.structured_content, text)


class EpisodeSession:
    """An agent session on an in-process episode."""

    def __init__(self, episode: Any) -> None:
        self.episode = episode
        self.instruction = episode.instruction
        env = episode.env
        self.tools = [ToolSpec(n, t.tool.description, t.input_schema) for n, t in env.executor.tools.items()]

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        result = self.episode.call(tool, arguments)
        return CallOutcome(result.is_error, result.structured, result.text)


async def _request(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await http.request(method, path, **kwargs)
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise ControlPlaneError(f"{method} {path}: HTTP {response.status_code}: {detail}")
    return response.json() if response.content else None


async def rollout_http(http: httpx.AsyncClient, env_id: str, task_id: str | None, agent: Agent,
                       *, keep: bool = False) -> RolloutRecord:
    """One episode through the gateway that ``http`` points at (its base URL and any bearer token)."""
    started = time.perf_counter()
    created = await _request(http, "POST", "/episodes", json={"env_id": env_id, "task_id": task_id})
    episode_id = created["episode_id"]
    try:
        async with Client(created["mcp_url"]) as client:
            listed = await client.list_tools()
            tools = [ToolSpec(t.name, t.description or "", t.input_schema) for t in listed.tools]
            final_message = await agent.run(McpSession(client, created["instruction"], tools))
        score = await _request(http, "POST", f"/episodes/{episode_id}/evaluate", json={"final_message": final_message}) \
            if task_id is not None else None
        info = await _request(http, "GET", f"/episodes/{episode_id}")
    finally:
        if not keep:
            await http.delete(f"/episodes/{episode_id}")
    return RolloutRecord(
        env_id=env_id, task_id=task_id, agent=agent.name, episode_id=episode_id, final_message=final_message,
        reward=score["reward"] if score else None, success=score["success"] if score else None, score=score,
        trajectory=info["trajectory"], final_state_hash=info["state_hash"], seconds=round(time.perf_counter() - started, 4),
    )


async def rollout_in_process(env: Environment, task_id: str | None, agent: Agent) -> RolloutRecord:
    started = time.perf_counter()
    episode = env.episode(task_id)
    try:
        final_message = await agent.run(EpisodeSession(episode))
        score = episode.evaluate(final_message).to_dict() if task_id is not None else None
        return RolloutRecord(
            env_id=env.id, task_id=task_id, agent=agent.name, episode_id=episode.id, final_message=final_message,
            reward=score["reward"] if score else None, success=score["success"] if score else None, score=score,
            trajectory=[s.to_dict() for s in episode.trajectory], final_state_hash=episode.state.digest(),
            seconds=round(time.perf_counter() - started, 4),
        )
    finally:
        episode.close()
