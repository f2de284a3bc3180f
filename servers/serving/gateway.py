"""The HTTP fleet gateway: many environments in one ASGI app, each an MCP endpoint.

Routes (``{env_id}`` from the registry, ``{state_key}`` chosen by the client):

* ``/envs/{env_id}/mcp`` — streamable HTTP. Handshake-era clients get state per MCP session;
  sessionless (2026-07-28) clients read the pristine state and cannot write.
* ``/envs/{env_id}/s/{state_key}/mcp`` — streamable HTTP on the private state named by the key.
* ``/envs/{env_id}/episodes/{episode_id}/mcp`` — streamable HTTP on an episode's state.
* ``/episodes…`` — the REST control plane (:mod:`servers.serving.control_plane`).
* ``/healthz``, ``/envs``, ``/envs/{env_id}`` — JSON about the fleet; ``/docs`` — their API, offline.

Tool calls run in the worker threads of one :class:`CallRunner` for the whole gateway, never on
the event loop, and so does all other work on a state: the control plane's scoring and resets
take the episode's turn, and a state or episode the pools drop (expiry, eviction, reload, DELETE)
is closed once its running call ends (:meth:`Gateway.close_later`), so nothing the event loop does
waits for a call. A handshake-era session id reaches state only if this gateway's session manager
issued it (see :class:`HttpRouter`); state keys must be :func:`~servers.episodes.pool.valid_id`.

A single-environment app also answers at ``/mcp`` and ``/s/{state_key}/mcp``. Environments load
on first use. Mounted ASGI apps get no lifespan, so the gateway runs each environment's session
manager itself, inside its own task group.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ..episodes.environment import Environment
from ..episodes.pool import ID_RULE, EpisodePool, Quotas, StatePool, valid_id
from ..episodes.registry import Registry
from ..errors import EnvFleetError, EpisodeNotFound, RegistryError
from ..version import __version__
from .api_docs import DOCS_KWARGS, mount_offline_docs
from .control_plane import admin, control_plane
from .mcp import (
    DEFAULT_CALL_THREADS,
    SESSION_HEADER,
    CallRunner,
    HttpRouter,
    McpServer,
    build_server,
    session_state_key,
)
from .sdk import HostGuard, SessionManager, open_sessions, session_manager, transport_security

__all__ = ["GatewaySettings", "Gateway", "GatewayApp", "ReloadReport", "create_app", "transport_security"]

logger = logging.getLogger(__name__)


@dataclass
class GatewaySettings:
    json_response: bool = True
    allowed_hosts: list[str] | None = None
    session_idle_timeout: float = 30 * 60
    max_sessions: int = 10_000
    sweep_interval: float = 30.0
    episode_ttl: float = 30 * 60
    max_episodes: int = 4096
    control_token: str | None = None  # bearer token for the control plane; None leaves it open
    watch_interval: float = 2.0  # seconds between looks at registry.json for changes; 0 turns watching off
    call_threads: int = DEFAULT_CALL_THREADS  # worker threads running tool calls at once, across all environments
    max_episodes_per_client: int | None = None  # live episodes one client address may have started; None: no cap


@dataclass
class _Hosted:
    env: Environment
    server: McpServer
    manager: SessionManager
    router: HttpRouter
    stop: anyio.Event
    world: str | None = None  # the spec and seed it was loaded from (keyed states depend on them)


@dataclass
class ReloadReport:
    added: list[str]
    removed: list[str]
    changed: list[str]
    environments: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "environments": self.environments,
        }


class Gateway:
    """Loads environments on first use and runs their MCP session managers. It is the
    :class:`~servers.serving.control_plane.EpisodeHost` the control plane is mounted on."""

    def __init__(
        self,
        registry: Registry,
        pool: StatePool,
        settings: GatewaySettings | None = None,
        env_ids: list[str] | None = None,
        refresh: Callable[[], Registry] | None = None,
        watch: Path | None = None,
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.settings = settings or GatewaySettings()
        self.episodes = EpisodePool(
            ttl=self.settings.episode_ttl,
            max_episodes=self.settings.max_episodes,
            quotas=Quotas(per_client=self.settings.max_episodes_per_client),
        )
        self.calls = CallRunner(self.settings.call_threads)  # tool calls run here, off the event loop
        self.pool.closer = self.episodes.closer = self.close_later
        self._loop_thread: int | None = None
        self.fixed = env_ids is not None  # an explicit list (one environment) is never reloaded
        self.env_ids = list(env_ids) if env_ids is not None else registry.ids()
        for env_id in self.env_ids:
            registry.entry(env_id)  # unknown ids fail now, not on first request
        source, root = registry.source, registry.root
        if refresh is None and source is not None:
            refresh = lambda: Registry.load(source)  # noqa: E731
        elif refresh is None and root is not None:
            refresh = lambda: Registry.build(root)  # noqa: E731
        self.refresh = refresh
        self.watch = watch or source or root  # a change of this file (or folder) triggers a reload
        self._hosted: dict[str, _Hosted] = {}
        self._retired: list[_Hosted] = []  # replaced or removed, kept while their episodes live
        self._locks: dict[str, anyio.Lock] = {}
        self._task_group: TaskGroup | None = None
        self._reload_lock = anyio.Lock()
        self._generation = 0  # bumped by every reload; a load that straddles one is redone
        self._seen = self._signature()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            self._task_group = tg
            self._loop_thread = threading.get_ident()
            tg.start_soon(self._sweep_forever)
            if self.settings.watch_interval and self.refresh is not None and self.watch is not None and not self.fixed:
                tg.start_soon(self._watch_forever)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
                self._task_group = None
                self._hosted.clear()
                self._retired.clear()
                self.pool.close()
                self.episodes.close()

    def close_later(self, item: Any) -> None:
        """The pools' closer: close a dropped state copy or episode once no call runs on it.

        A call holds its state's turn (and, in the executor, its lock) for as long as it runs, so
        closing inline could freeze the event loop behind a runaway call. Here the close waits for
        the turn in a task of its own and runs in a thread; off the loop (or once the gateway has
        stopped) it runs at once."""
        tg = self._task_group
        if tg is None or threading.get_ident() != self._loop_thread:
            item.close()
            return
        tg.start_soon(self._close_after_turn, item)

    async def _close_after_turn(self, item: Any) -> None:
        async with self.calls.turn(item):
            await anyio.to_thread.run_sync(item.close)

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.sweep_interval)
            expired = self.pool.sweep() + self.episodes.sweep()
            if expired:
                logger.info("expired %d idle state(s) and episode(s)", expired)
            self._stop_idle_retired()

    # -- live reload ---------------------------------------------------------------------------

    def _signature(self) -> tuple[int, int] | None:
        try:
            stat = self.watch.stat() if self.watch is not None else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    async def _watch_forever(self) -> None:
        while True:
            await anyio.sleep(self.settings.watch_interval)
            if self._signature() != self._seen:
                try:
                    await self.reload()
                except Exception as e:  # noqa: BLE001 - a half-written or broken registry: keep serving the last good one
                    self._seen = self._signature()  # try again when it changes next
                    logger.error("registry changed but cannot be reloaded: %s: %s", type(e).__name__, e)

    async def reload(self) -> ReloadReport:
        """Re-read the registry: serve environments published since, stop offering removed ones,
        and give changed ones to new sessions. Live episodes keep the environment they started on."""
        if self.refresh is None or self.fixed:
            raise RegistryError("this gateway serves a fixed set of environments and cannot reload")
        async with self._reload_lock:
            signature = self._signature()
            fresh = await anyio.to_thread.run_sync(self.refresh)
            old = {i: self.registry.entry(i).content_hash for i in self.env_ids}
            new = {i: fresh.entry(i).content_hash for i in fresh.ids()}
            report = ReloadReport(
                added=sorted(set(new) - set(old)),
                removed=sorted(set(old) - set(new)),
                changed=sorted(i for i in set(old) & set(new) if old[i] != new[i]),
                environments=len(new),
            )
            for env_id in report.removed + report.changed:
                hosted = self._hosted.pop(env_id, None)
                if hosted is not None:
                    self._retired.append(hosted)
                if env_id in report.removed or hosted is None or hosted.world != _world(fresh, env_id):
                    self.pool.drop_where(
                        lambda key, env_id=env_id: key[0] == env_id
                    )  # keyed states restart on the new seed
            self.registry, self.env_ids, self._seen = fresh, fresh.ids(), signature
            self._generation += 1
            self._stop_idle_retired()
        if report.added or report.removed or report.changed:
            logger.info("registry reloaded: +%s -%s ~%s", report.added, report.removed, report.changed)
        return report

    def _stop_idle_retired(self) -> None:
        """Stop retired versions nothing uses any more: no live episode, no open MCP session."""
        live = {id(e.env) for e in (self.episodes.peek(k) for k in self.episodes) if e is not None}
        for hosted in [h for h in self._retired if id(h.env) not in live and not open_sessions(h.manager)]:
            hosted.stop.set()
            self._retired.remove(hosted)

    def hosted_for_session(self, env_id: str, session_id: str) -> _Hosted | None:
        """The retired version a handshake-era MCP session was opened on, if it was."""
        return next((h for h in self._retired if h.env.id == env_id and session_id in open_sessions(h.manager)), None)

    def hosted_for(self, env: Environment) -> _Hosted | None:
        """Where an episode's environment is served: the current one, or a retired one it started on."""
        current = self._hosted.get(env.id)
        if current is not None and current.env is env:
            return current
        return next((h for h in self._retired if h.env is env), None)

    async def hosted(self, env_id: str) -> _Hosted:
        if env_id in self._hosted:
            return self._hosted[env_id]
        if env_id not in self.env_ids:
            raise RegistryError(f"unknown environment {env_id!r}; this gateway serves: {', '.join(self.env_ids)}")
        lock = self._locks.setdefault(env_id, anyio.Lock())
        async with lock:
            while env_id not in self._hosted:
                generation = self._generation
                hosted = await self._start(env_id)
                if generation == self._generation:
                    self._hosted[env_id] = hosted
                else:  # a reload ran while it loaded: what was read may be the old version
                    hosted.stop.set()
                    if env_id not in self.env_ids:
                        raise RegistryError(f"environment {env_id!r} was removed from the registry")
        return self._hosted[env_id]

    async def _start(self, env_id: str) -> _Hosted:
        env = await anyio.to_thread.run_sync(self.registry.environment, env_id)
        if env.content_hash != self.registry.entry(env_id).content_hash:
            logger.warning("%s changed since registry.json was built; run `envfleet registry build`", env_id)
        router = HttpRouter(env, self.pool, self.episodes)
        server = build_server(env, router, self.calls)
        manager = session_manager(
            server,
            json_response=self.settings.json_response,
            allowed_hosts=self.settings.allowed_hosts,
            session_idle_timeout=self.settings.session_idle_timeout,
            max_sessions=self.settings.max_sessions,
        )
        router.issued = lambda session_id: session_id in open_sessions(manager)
        if self._task_group is None:
            raise RuntimeError("the gateway is not running; serve its app with an ASGI server that runs lifespans")
        stop = anyio.Event()
        await self._task_group.start(_run_manager, manager, stop)
        logger.info("loaded environment %s (%d tools)", env_id, len(env.tool_names))
        return _Hosted(env, server, manager, router, stop, _world(self.registry, env_id))

    def loaded(self) -> list[str]:
        return sorted(self._hosted)


def _world(registry: Registry, env_id: str) -> str | None:
    """What a keyed state depends on: the spec and seed files (not the task packs)."""
    try:
        folder = registry.folder(env_id)
        return hashlib.sha256(
            (folder / "env.json").read_bytes() + b"\0" + (folder / "seed.json").read_bytes()
        ).hexdigest()
    except (OSError, RegistryError):
        return None


async def _run_manager(
    manager: SessionManager, stop: anyio.Event, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    async with manager.run():
        task_status.started()
        await stop.wait()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class _McpEndpoint:
    """ASGI endpoint that hands a request to its environment's session manager."""

    def __init__(self, gateway: Gateway, env_id: str | None = None) -> None:
        self.gateway = gateway
        self.env_id = env_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = scope.get("path_params", {})
        env_id = self.env_id or params.get("env_id", "")
        key = params.get("state_key")
        if key is not None and not valid_id(key):
            await _error(400, f"state keys are {ID_RULE}")(scope, receive, send)
            return
        episode_id = params.get("episode_id")
        hosted = None
        if episode_id is not None:
            try:
                episode = self.gateway.episodes.find(episode_id, env_id)
            except EpisodeNotFound as e:
                await _error(404, str(e))(scope, receive, send)
                return
            hosted = self.gateway.hosted_for(episode.env)  # the version it started on, even after a reload
        session = dict(scope["headers"]).get(SESSION_HEADER.encode())
        if hosted is None and session is not None:  # a session opened before a reload stays where it was opened
            hosted = self.gateway.hosted_for_session(env_id, session.decode("latin-1"))
        try:
            hosted = hosted or await self.gateway.hosted(env_id)
        except RegistryError as e:
            await _error(404, str(e))(scope, receive, send)
            return
        except EnvFleetError as e:
            logger.error("environment %s does not load: %s", env_id, e)
            await _error(503, f"environment {env_id!r} does not load; see the server log")(scope, receive, send)
            return
        session_id = session.decode("latin-1") if session is not None else None
        was_open = session_id is not None and session_id in open_sessions(hosted.manager)
        await hosted.manager.handle_request(scope, receive, send)
        if was_open and session_id not in open_sessions(hosted.manager) and key is None and episode_id is None:
            # the SDK ended a session it had issued (the client's DELETE): its state goes with it, closed once no
            # call runs on it (the id is no longer issued, so no new state can appear under that key meanwhile)
            self.gateway.pool.drop((env_id, session_state_key(session_id)))


_FLEET_PATH = re.compile(r"^/envs/(?P<env_id>[^/]+)/(?:s/(?P<state_key>[^/]*)/|episodes/(?P<episode_id>[^/]+)/)?mcp/?$")
_SINGLE_PATH = re.compile(r"^/(?:s/(?P<state_key>[^/]*)/)?mcp/?$")


class GatewayApp:
    """The ASGI app: MCP paths go straight to their environment, everything else to ``api``.

    MCP traffic skips the REST framework's middleware and router, which would otherwise cost a
    large share of each tool call's server CPU.
    """

    def __init__(self, api: FastAPI, gateway: Gateway, single: str | None) -> None:
        self.api = api
        self.gateway = gateway
        self._guarded_api = HostGuard(
            api, gateway.settings.allowed_hosts
        )  # REST routes: the MCP endpoints' Host/Origin check
        self._fleet = _McpEndpoint(gateway)
        self._single = _McpEndpoint(gateway, single) if single is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            match = _FLEET_PATH.match(path)
            endpoint = self._fleet
            if match is None and self._single is not None:
                match = _SINGLE_PATH.match(path)
                endpoint = self._single
            if match is not None:
                scope["path_params"] = {k: v for k, v in match.groupdict().items() if v is not None}
                await endpoint(scope, receive, send)
                return
        await self._guarded_api(scope, receive, send)


def create_app(
    registry: Registry,
    *,
    pool: StatePool | None = None,
    settings: GatewaySettings | None = None,
    env_ids: list[str] | None = None,
    single: str | None = None,
    refresh: Callable[[], Registry] | None = None,
    watch: Path | None = None,
) -> GatewayApp:
    """The gateway app. ``single`` also serves that environment at ``/mcp`` and ``/s/{state_key}/mcp``.
    ``refresh`` re-reads the registry for reloads (default: the file it came from); a change of
    ``watch`` (default: that file) triggers one."""
    if single is not None:
        env_ids = [single]
    gateway = Gateway(registry, pool if pool is not None else StatePool(), settings, env_ids, refresh, watch)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with gateway.running():
            yield

    app = FastAPI(
        title="EnvFleet gateway",
        version=__version__,
        summary="Stateful tool-use environments served over MCP (streamable HTTP).",
        lifespan=lifespan,
        **DOCS_KWARGS,
    )
    app.state.gateway = gateway
    mount_offline_docs(app)

    @app.get("/healthz", tags=["fleet"], summary="Liveness and what is loaded", response_model=None)
    async def healthz() -> dict[str, Any] | JSONResponse:
        if gateway._task_group is None:  # the session managers are not running: nothing can be served
            return _error(503, "the gateway is not running its environments")
        states, episodes = gateway.pool.stats(), gateway.episodes.stats()
        quotas, episode_quotas = gateway.pool.quotas, gateway.episodes.quotas
        return {
            "status": "ok",
            "version": __version__,
            "environments": gateway.env_ids,
            "loaded": gateway.loaded(),
            "states": {
                "live": states.live,
                "max": states.max_items,
                "ttl_seconds": states.ttl,
                "max_per_client": quotas.per_client,
                "max_per_prefix": quotas.per_prefix,
                "new_per_second": quotas.rate,
                "new_burst": quotas.burst if quotas.rate is not None else None,
                "min_idle_seconds": quotas.min_idle,
                "evicted": states.evicted,
                "refused": states.refused,
            },
            "calls": {"running": gateway.calls.busy(), "threads": gateway.settings.call_threads},
            "episodes": {
                "live": episodes.live,
                "max": episodes.max_items,
                "ttl_seconds": episodes.ttl,
                "max_per_client": episode_quotas.per_client,
                "evicted": episodes.evicted,
                "refused": episodes.refused,
            },
        }

    @app.get("/envs", tags=["fleet"], summary="The environments this gateway serves (registry entries)")
    async def list_envs() -> list[dict[str, Any]]:
        return [gateway.registry.entry(i).model_dump(mode="json", by_alias=True) for i in gateway.env_ids]

    @app.get("/envs/{env_id}", tags=["fleet"], summary="One environment's registry entry", response_model=None)
    async def get_env(env_id: str) -> dict[str, Any] | JSONResponse:
        if env_id not in gateway.env_ids:
            return _error(404, f"unknown environment {env_id!r}")
        return gateway.registry.entry(env_id).model_dump(mode="json", by_alias=True)

    app.include_router(control_plane(gateway, gateway.settings.control_token))
    app.include_router(admin(gateway, gateway.settings.control_token))
    return GatewayApp(app, gateway, single)
