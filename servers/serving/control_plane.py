"""The hidden control plane: create, inspect, score, reset and delete episodes over REST.

Lives on the gateway app next to the MCP endpoints, but the agent never reaches it through MCP:
its MCP surface is the environment's tools, a policy and the task's instruction. Scoring needs
the task's checks and gold footprint, which only this side holds. Set ``ENVFLEET_CONTROL_TOKEN``
to require ``Authorization: Bearer <token>`` on every route here.

Every route here reads at most :data:`MAX_BODY_BYTES` of request body (more is a 413 before any
parsing), never echoes more than a short, escaped excerpt of what a client sent, and serialises
whatever an agent sent (trajectories are clipped by :class:`~servers.episodes.episode.TrajectoryLimits`).

Work on an episode's state (scoring, a reset, the state hash of a summary) takes the episode's
turn in the gateway's :class:`~servers.serving.mcp.CallRunner` and runs in a worker thread: it
waits for a tool call running on that episode rather than racing it, and never holds the event
loop, so a runaway call delays only requests about its own episode.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator

from ..episodes.environment import Environment
from ..episodes.episode import Episode, TrajectoryLimits, TrajectoryStep, clip
from ..episodes.pool import ID_RULE, EpisodePool, valid_id
from ..errors import EnvFleetError, EpisodeNotFound, RegistryError, StateCapacityError, StateError, TaskPackError
from .mcp import CallRunner

__all__ = [
    "control_plane",
    "admin",
    "EpisodeHost",
    "EPISODE_ID_HEADER",
    "MAX_BODY_BYTES",
    "GuardedRoute",
    "SafeJSONResponse",
]


# Episode ids follow the state keys' rule (servers.episodes.pool.valid_id): each is one segment of an MCP URL.
EPISODE_ID_HEADER = "x-episode-id"
"""A proxy that routes by episode id (the scale-out nginx) names new episodes with this header."""
MAX_BODY_BYTES = 64 * 1024
"""Largest request body a control-plane route reads; a larger one is refused with 413 unread."""
R = TypeVar("R")


class HostedEnvironment(Protocol):
    """An environment a host serves (the gateway's per-environment record)."""

    @property
    def env(self) -> Environment: ...


class ReloadOutcome(Protocol):
    """What a reload changed, as JSON."""

    def to_dict(self) -> dict[str, Any]: ...


class EpisodeHost(Protocol):
    """What the control plane needs from the server it is mounted on (:class:`~servers.serving.gateway.Gateway`
    satisfies it): the live episodes, the runner whose turns order work on an episode, environments by id,
    and a registry reload. The control plane depends on this, not on the gateway."""

    @property
    def episodes(self) -> EpisodePool: ...

    @property
    def calls(self) -> CallRunner: ...

    async def hosted(self, env_id: str) -> HostedEnvironment: ...

    async def reload(self) -> ReloadOutcome: ...


def _show(value: object, limit: int = 80) -> str:
    """``repr(value)`` (escaped: safe in any response), cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}…[{len(text):,} characters]"


class SafeJSONResponse(JSONResponse):
    """JSON that never fails to encode: content that plain JSON cannot carry (lone surrogates,
    NaN, integers too long to print, foreign types) is re-encoded through :func:`clip`."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
            safe, _ = clip(content, 1 << 62, None, _RESCUE)
            return json.dumps(safe, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


_RESCUE = TrajectoryLimits(items=1 << 62, depth=64)


def _validation_detail(error: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 details without the ``input`` and ``ctx`` it would echo (a 60 KiB id, a lone surrogate)."""
    return [
        {
            "loc": [part if isinstance(part, int) else _show(part, 64).strip("'\"") for part in e.get("loc", ())],
            "msg": str(e.get("msg", ""))[:300],
            "type": str(e.get("type", "")),
        }
        for e in error.errors()[:20]
    ]


def _too_large(size: int | None) -> Response:
    got = f" (this one is {size:,} bytes)" if size is not None else ""
    return SafeJSONResponse(
        {"detail": f"request body too large: the control plane reads at most {MAX_BODY_BYTES:,} bytes{got}"},
        status_code=413,
    )


async def _read_body(request: Request) -> Response | None:
    """Read the body into the request, refusing (413) past :data:`MAX_BODY_BYTES` before anything parses it."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            return SafeJSONResponse({"detail": "Content-Length is not a number"}, status_code=400)
        if int(length) > MAX_BODY_BYTES:
            return _too_large(int(length))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _too_large(None)
    request._body = bytes(body)  # what FastAPI's request.body() returns from now on
    return None


class GuardedRoute(APIRoute):
    """A control-plane route: body capped, errors rendered safely and without echoing the input."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            refusal = await _read_body(request)
            if refusal is not None:
                return refusal
            try:
                return await handler(request)
            except RequestValidationError as e:
                return SafeJSONResponse({"detail": _validation_detail(e)}, status_code=422)
            except HTTPException as e:
                return SafeJSONResponse({"detail": e.detail}, status_code=e.status_code, headers=e.headers)

        return guarded


class EpisodeCreate(BaseModel):
    env_id: str = Field(max_length=128, examples=["library"])
    task_id: str | None = Field(
        None,
        max_length=256,
        description="A task of the environment; without one the episode "
        "starts from the seed state and cannot be scored.",
        examples=["lib-001"],
    )
    episode_id: str | None = Field(
        None,
        max_length=128,
        description=f"Choose the episode's id ({ID_RULE}; default: a random one). An id in use is refused with 409.",
        examples=["run7-lib-001-trial0"],
    )

    @field_validator("episode_id")
    @classmethod
    def _episode_id(cls, value: str | None) -> str | None:
        if value is not None and not valid_id(value):
            raise ValueError(f"episode ids are {ID_RULE}")
        return value


class EpisodeCreated(BaseModel):
    episode_id: str
    env_id: str
    task_id: str | None
    mcp_url: str = Field(
        description="Streamable-HTTP MCP endpoint bound to this episode's state; give it to the agent."
    )
    mcp_path: str
    instruction: str | None = Field(description="What the user wants (the task's instruction).")
    policy: str
    tools: list[str]


class EpisodeInfo(BaseModel):
    episode_id: str
    env_id: str
    task_id: str | None
    instruction: str | None
    policy: str | None = None
    steps: int = Field(description="Tool calls since the last reset.")
    steps_recorded: int = Field(0, description="Of those, how many the trajectory holds (it keeps at most 10,000).")
    resets: int
    created_at: float
    state_hash: str
    trajectory: list[TrajectoryStep] = []


class Evaluate(BaseModel):
    final_message: str | None = Field(None, description="The agent's final message, for tasks with an answer to check.")


class CheckOut(BaseModel):
    name: str
    description: str
    passed: bool
    detail: str


class ScoreOut(BaseModel):
    episode_id: str
    task_id: str | None
    reward: float = Field(description="1.0 when every check passed (collateral and answer included), else 0.0.")
    success: bool
    partial: float = Field(description="Fraction of checks passed: diagnostics, never a reward.")
    checks: list[CheckOut]
    diff: dict[str, Any]
    diff_summary: str
    final_state_hash: str


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status_code=code, detail=message, headers=headers)


def _client(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


def _check_token(token: str | None, credentials: HTTPAuthorizationCredentials | None) -> None:
    if token is None:
        return
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required for the control plane",
            headers={"WWW-Authenticate": "Bearer"},
        )


def control_plane(gateway: EpisodeHost, token: str | None) -> APIRouter:
    """The episode routes, guarded by ``token`` when one is set."""
    bearer = HTTPBearer(auto_error=False, description="ENVFLEET_CONTROL_TOKEN, when the server sets one.")

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        _check_token(token, credentials)

    router = APIRouter(
        prefix="/episodes",
        tags=["episodes"],
        dependencies=[Depends(authorize)],
        route_class=GuardedRoute,
        default_response_class=SafeJSONResponse,
    )

    def find(episode_id: str) -> Episode:
        if not valid_id(episode_id):
            raise _error(404, f"no live episode {_show(episode_id)}: episode ids are {ID_RULE}")
        try:
            return gateway.episodes.find(episode_id)
        except EpisodeNotFound as e:
            raise _error(404, str(e)) from None

    def info(episode: Episode, with_trajectory: bool) -> EpisodeInfo:
        return EpisodeInfo(
            **episode.summary(),
            policy=episode.env.spec.policy,
            trajectory=list(episode.trajectory) if with_trajectory else [],
        )

    async def in_turn(episode: Episode, function: Callable[..., R], *args: Any) -> R | None:
        """``function(*args)`` in a worker thread, in ``episode``'s turn (after any call running on it);
        None if the episode ended while this waited (deleted, expired: its state is closed or about to be)."""
        async with gateway.calls.turn(episode):
            if gateway.episodes.peek(episode.id) is not episode:
                return None
            return await anyio.to_thread.run_sync(function, *args, limiter=gateway.calls.limiter)

    def ended(episode: Episode) -> HTTPException:
        return _error(404, f"episode {episode.id!r} ended while this request waited for its running tool call")

    @router.post(
        "",
        status_code=201,
        response_model=EpisodeCreated,
        summary="Start an episode",
        responses={404: {"description": "Unknown environment or task"}, 429: {"description": "Too many live episodes"}},
    )
    async def create(body: EpisodeCreate, request: Request) -> EpisodeCreated:
        try:
            hosted = await gateway.hosted(body.env_id)
        except RegistryError as e:
            raise _error(404, str(e)) from None
        except EnvFleetError as e:
            raise _error(503, f"environment {body.env_id!r} does not load: {e}") from None
        env = hosted.env
        if body.task_id is not None and body.task_id not in {t.id for t in env.tasks}:
            raise _error(404, f"environment {env.id!r} has no task {_show(body.task_id)}")
        header = request.headers.get(EPISODE_ID_HEADER)
        if header and not valid_id(header):
            raise _error(
                400, f"header {EPISODE_ID_HEADER} {_show(header)} is not an episode id: episode ids are {ID_RULE}"
            )
        if header and body.episode_id and header != body.episode_id:
            raise _error(
                400,
                f"episode_id {body.episode_id!r} and the {EPISODE_ID_HEADER} header {header!r} disagree; send one "
                "(behind a routing proxy: the header)",
            )
        episode_id = header or body.episode_id
        if episode_id is not None and gateway.episodes.peek(episode_id) is not None:
            raise _error(409, f"episode id {episode_id!r} is in use; choose another or delete that episode")
        try:
            episode = gateway.episodes.open(env, body.task_id, episode_id, client=_client(request))
        except StateCapacityError as e:
            retry = {"Retry-After": str(math.ceil(e.retry_after))} if e.retry_after is not None else None
            raise _error(429, str(e), retry) from None
        except TaskPackError as e:
            raise _error(422, f"task {body.task_id!r} cannot start: {e}") from None
        except StateError as e:  # the id was taken between the check above and now
            raise _error(409, str(e)) from None
        path = f"/envs/{env.id}/episodes/{episode.id}/mcp"
        return EpisodeCreated(
            episode_id=episode.id,
            env_id=env.id,
            task_id=episode.task_id,
            mcp_path=path,
            mcp_url=str(request.base_url).rstrip("/") + path,
            instruction=episode.instruction,
            policy=env.spec.policy,
            tools=env.tool_names,
        )

    @router.get("", response_model=list[EpisodeInfo], summary="Live episodes (without trajectories)")
    async def list_episodes() -> list[EpisodeInfo]:
        found = []
        for episode in [e for e in (gateway.episodes.peek(k) for k in gateway.episodes) if e is not None]:
            summary = await in_turn(episode, info, episode, False)
            if summary is not None:
                found.append(summary)
        return found

    @router.get(
        "/{episode_id}",
        response_model=EpisodeInfo,
        summary="An episode and its trajectory",
        description="Waits for a tool call running on the episode to finish.",
    )
    async def get(episode_id: str) -> EpisodeInfo:
        episode = find(episode_id)
        result = await in_turn(episode, info, episode, True)
        if result is None:
            raise ended(episode)
        return result

    @router.post(
        "/{episode_id}/evaluate",
        response_model=ScoreOut,
        summary="Score the episode's current state",
        description="Waits for a tool call running on the episode to finish, then scores the state it left.",
    )
    async def evaluate(episode_id: str, body: Evaluate | None = None) -> ScoreOut:
        episode = find(episode_id)
        try:
            score = await in_turn(episode, episode.evaluate, (body or Evaluate()).final_message)
        except StateError as e:
            raise _error(409, str(e)) from None
        except TaskPackError as e:
            raise _error(422, f"the task cannot be scored: {e}") from None
        if score is None:
            raise ended(episode)
        return ScoreOut(episode_id=episode.id, **score.to_dict())

    def reset_episode(episode: Episode) -> EpisodeInfo:
        episode.reset()
        return info(episode, False)

    @router.post(
        "/{episode_id}/reset",
        response_model=EpisodeInfo,
        summary="Back to the task's initial state",
        description="Waits for a tool call running on the episode to finish, then resets.",
    )
    async def reset(episode_id: str) -> EpisodeInfo:
        episode = find(episode_id)
        result = await in_turn(episode, reset_episode, episode)
        if result is None:
            raise ended(episode)
        return result

    @router.delete(
        "/{episode_id}",
        status_code=204,
        summary="End an episode and free its state and trajectory",
        description="Answers at once; a tool call still running on the episode finishes, then its state is freed.",
    )
    async def delete(episode_id: str) -> Response:
        if not gateway.episodes.drop(episode_id):
            raise _error(404, f"no live episode {_show(episode_id)}")
        return Response(status_code=204)

    return router


def admin(gateway: EpisodeHost, token: str | None) -> APIRouter:
    """Fleet administration, guarded like the control plane: reload the registry now (the
    synthesizer service calls this after it publishes; the gateway also watches the file)."""
    bearer = HTTPBearer(auto_error=False, description="ENVFLEET_CONTROL_TOKEN, when the server sets one.")

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        _check_token(token, credentials)

    router = APIRouter(
        prefix="/admin",
        tags=["admin"],
        dependencies=[Depends(authorize)],
        route_class=GuardedRoute,
        default_response_class=SafeJSONResponse,
    )

    @router.post(
        "/reload",
        summary="Re-read the registry: serve new environments, drop removed ones",
        responses={409: {"description": "This gateway serves a fixed set of environments"}},
    )
    async def reload() -> dict[str, Any]:
        try:
            return (await gateway.reload()).to_dict()
        except RegistryError as e:
            raise _error(409, str(e)) from None
        except EnvFleetError as e:
            raise _error(503, f"the registry cannot be reloaded: {e}") from None

    return router
