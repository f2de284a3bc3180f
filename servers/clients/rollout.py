"""Run an agent through one episode and record what happened.

Over HTTP (the real path): the control plane creates the episode, the agent talks to its MCP
URL with the official client, the control plane scores it and hands back the trajectory, and
the episode is deleted. In process: the same with an :class:`~servers.episodes.episode.Episode`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import httpx

from ..episodes.environment import Environment
from ..episodes.episode import Episode
from ..errors import EnvFleetError
from ..serving.mcp import error_details
from .agents import Agent, CallOutcome, ToolSpec
from .mcp_client import MCP_CLIENT_ERRORS, McpClient, connect_http, mcp_http_client

__all__ = [
    "RolloutRecord",
    "GatewayClient",
    "McpSession",
    "EpisodeSession",
    "rollout_http",
    "rollout_in_process",
    "ControlPlaneError",
    "ToolCallUncertain",
]


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
    tools: list[ToolSpec] = field(default_factory=list, repr=False)  # what the agent was offered
    policy: str | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("tools")
        data.pop("policy")
        return data


class GatewayClient:
    """A running gateway and the two connection pools all its episodes share: the control plane's
    and MCP's. A fresh MCP client per episode would build a new pool (and TLS context) each time,
    ~40 ms here; a shared one costs next to nothing."""

    TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, *MCP_CLIENT_ERRORS)
    """What a request through either pool raises when it fails in transit, or when the MCP server refuses it (a
    JSON-RPC error): never a tool error (a result) or a control-plane answer (:class:`ControlPlaneError`)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 120) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.control = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)
        self.mcp_http = mcp_http_client()

    def mcp(self, url: str) -> McpClient:
        """An MCP client for ``url`` over the shared pool."""
        return connect_http(url, self.mcp_http)

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.mcp_http.aclose()
        await self.control.aclose()


class ToolCallUncertain(EnvFleetError):
    """A state-changing call failed in transit: it may or may not have happened, so it was not re-sent."""


class McpSession:
    """An agent session over a real MCP client connection. It remembers the call in flight: if the
    connection breaks during a state-changing call, nobody can tell whether it happened, and
    :func:`rollout_http` ends the episode with :class:`ToolCallUncertain` instead of re-sending it."""

    def __init__(
        self, client: McpClient, instruction: str | None, tools: list[ToolSpec], policy: str | None = None
    ) -> None:
        self.client = client
        self.instruction = instruction
        self.policy = policy
        self.tools = tools
        self.read_only = {t.name for t in tools if t.read_only}
        self.in_flight: str | None = None

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        self.in_flight = tool
        result = await self.client.call_tool(tool, arguments)
        self.in_flight = None
        if result.is_error:  # the message, then the error details (see servers.serving.mcp.call_tool_result)
            text = getattr(result.content[0], "text", "") if result.content else ""
            return CallOutcome(True, error_details(result), text)
        text = "".join(getattr(block, "text", "") for block in result.content)
        return CallOutcome(False, result.structured_content, text)


class EpisodeSession:
    """An agent session on an in-process episode."""

    def __init__(self, episode: Any) -> None:
        self.episode = episode
        self.instruction = episode.instruction
        env = episode.env
        self.policy = env.spec.policy
        self.tools = [ToolSpec(n, t.description, t.input_schema, t.read_only) for n, t in env.tool_descriptors.items()]

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


async def rollout_http(
    gateway: GatewayClient,
    env_id: str,
    task_id: str | None,
    agent: Agent,
    *,
    keep: bool = False,
    episode_id: str | None = None,
) -> RolloutRecord:
    """One episode through ``gateway``: created and scored by its control plane, played over MCP.
    Control-plane requests that fail in transit are retried (creating names the episode, so a
    retried create finds its own episode rather than making a second one)."""
    started = time.perf_counter()
    http = gateway.control
    body = {"env_id": env_id, "task_id": task_id}
    headers = {"X-Episode-Id": episode_id} if episode_id else {}  # a header, so a routing proxy can hash by it
    try:
        created = await _retrying(http, "POST", "/episodes", json=body, headers=headers)
    except ControlPlaneError as e:
        if not (episode_id and "HTTP 409" in str(e)):
            raise
        created = await _created(http, episode_id)  # the first attempt made it: go on with it
    episode_id = created["episode_id"]
    session: McpSession | None = None
    try:
        try:
            async with gateway.mcp(created["mcp_url"]) as client:
                listed = await client.list_tools()
                tools = [
                    ToolSpec(
                        t.name,
                        t.description or "",
                        t.input_schema,
                        bool(t.annotations and t.annotations.read_only_hint),
                    )
                    for t in listed.tools
                ]
                session = McpSession(client, created["instruction"], tools, created.get("policy"))
                final_message = await agent.run(session)
        except BaseExceptionGroup as group:  # the MCP client ends its task group when its connection breaks
            tool = session.in_flight if session is not None else None
            if tool is not None and tool not in session.read_only:  # type: ignore[union-attr]
                raise ToolCallUncertain(
                    f"the connection broke during a call to {tool}, which changes state; it was not "
                    "re-sent, and the episode ends with its state uncertain"
                ) from group
            raise
        score = (
            await _retrying(http, "POST", f"/episodes/{episode_id}/evaluate", json={"final_message": final_message})
            if task_id is not None
            else None
        )
        info = await _retrying(http, "GET", f"/episodes/{episode_id}")
    finally:
        if not keep:  # even when the caller's deadline cancelled the episode: it must not linger on the gateway
            with anyio.CancelScope(shield=True), anyio.move_on_after(10), contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/episodes/{episode_id}")
    return RolloutRecord(
        env_id=env_id,
        task_id=task_id,
        agent=agent.name,
        episode_id=episode_id,
        final_message=final_message,
        reward=score["reward"] if score else None,
        success=score["success"] if score else None,
        score=score,
        trajectory=info["trajectory"],
        final_state_hash=info["state_hash"],
        seconds=round(time.perf_counter() - started, 4),
        tools=session.tools,
        policy=session.policy,
    )


async def _retrying(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """A control-plane request, re-sent after a failure in transit (each one is safe to repeat)."""
    for attempt in range(3):
        try:
            return await _request(http, method, path, **kwargs)
        except httpx.TransportError:
            if attempt == 2:
                raise
            await anyio.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


async def _created(http: httpx.AsyncClient, episode_id: str) -> dict[str, Any]:
    info = await _request(http, "GET", f"/episodes/{episode_id}")
    base = str(http.base_url).rstrip("/")
    path = f"/envs/{info['env_id']}/episodes/{episode_id}/mcp"
    return {
        "episode_id": episode_id,
        "env_id": info["env_id"],
        "mcp_url": base + path,
        "mcp_path": path,
        "instruction": info["instruction"],
        "policy": info.get("policy"),
    }


async def rollout_in_process(env: Environment, task_id: str | None, agent: Agent) -> RolloutRecord:
    started = time.perf_counter()
    episode = Episode(env, task_id)
    try:
        final_message = await agent.run(EpisodeSession(episode))
        score = episode.evaluate(final_message).to_dict() if task_id is not None else None
        return RolloutRecord(
            env_id=env.id,
            task_id=task_id,
            agent=agent.name,
            episode_id=episode.id,
            final_message=final_message,
            reward=score["reward"] if score else None,
            success=score["success"] if score else None,
            score=score,
            trajectory=[s.to_dict() for s in episode.trajectory],
            final_state_hash=episode.state.digest(),
            seconds=round(time.perf_counter() - started, 4),
        )
    finally:
        episode.close()
