"""Run environments as processes: one over stdio, or a gateway over HTTP with uvicorn."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anyio

from ..episodes.environment import Environment
from ..episodes.episode import Episode
from ..episodes.pool import DEFAULT_STATE_QUOTAS, Quotas
from ..episodes.registry import Registry
from .mcp import DEFAULT_CALL_THREADS, EpisodeRouter, build_server
from .sdk import run_stdio

__all__ = ["serve_stdio", "serve_http", "running_gateway", "serving_in_thread", "LocalGateway", "CONTROL_TOKEN_ENV"]

logger = logging.getLogger(__name__)

CONTROL_TOKEN_ENV = "ENVFLEET_CONTROL_TOKEN"


def serve_stdio(env: Environment, task_id: str | None = None) -> None:
    """Serve ``env`` over stdin/stdout. The process is one episode: the task's initial state (or
    the seed), for the whole life of the process. Calls run in a worker thread, one at a time."""
    episode = Episode(env, task_id)
    server = build_server(env, EpisodeRouter(episode))
    try:
        anyio.run(run_stdio, server)
    finally:
        episode.close()


def _app(
    registry: Registry,
    single: str | None,
    state_ttl: float,
    max_states: int,
    state_quotas: Quotas | None = DEFAULT_STATE_QUOTAS,
    **settings: Any,
) -> Any:
    from ..episodes.pool import StatePool
    from .gateway import GatewaySettings, create_app

    settings.setdefault("control_token", os.environ.get(CONTROL_TOKEN_ENV) or None)
    return create_app(
        registry,
        pool=StatePool(ttl=state_ttl, max_states=max_states, quotas=state_quotas),
        settings=GatewaySettings(**settings),
        single=single,
    )


def serve_http(
    registry: Registry,
    *,
    host: str = "127.0.0.1",
    port: int = 8100,
    single: str | None = None,
    json_response: bool = True,
    allowed_hosts: list[str] | None = None,
    state_ttl: float = 1800.0,
    max_states: int = 4096,
    episode_ttl: float = 1800.0,
    max_episodes: int = 4096,
    watch_interval: float = 2.0,
    log_level: str = "info",
    call_threads: int = DEFAULT_CALL_THREADS,
    state_quotas: Quotas | None = DEFAULT_STATE_QUOTAS,
    max_episodes_per_client: int | None = None,
    forwarded_allow_ips: str | None = None,
) -> None:
    """Serve the registry's environments (or just ``single``) over streamable HTTP, until stopped.
    ``call_threads`` worker threads run tool calls, so a slow call never holds the event loop.
    ``state_quotas`` and ``max_episodes_per_client`` apply per client address: the peer's, or, from
    the proxies listed in ``forwarded_allow_ips`` (comma-separated addresses or networks) only, the
    last address their ``X-Forwarded-For`` adds. Without it no forwarding header is believed, so no
    client can pose as another (uvicorn's own default would trust any local process)."""
    import uvicorn

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    local = host in ("127.0.0.1", "localhost", "::1")
    if not local and not allowed_hosts:
        logger.warning(
            "listening on %s but only localhost Host headers are accepted; pass --allowed-host "
            "(e.g. 'myhost:*', or '*' behind a trusted proxy) for clients that use another name",
            host,
        )
    if not local and not os.environ.get(CONTROL_TOKEN_ENV):
        logger.warning(
            "listening on %s with an open control plane; set %s to require a bearer token", host, CONTROL_TOKEN_ENV
        )
    app = _app(
        registry,
        single,
        state_ttl,
        max_states,
        state_quotas,
        json_response=json_response,
        allowed_hosts=allowed_hosts,
        episode_ttl=episode_ttl,
        max_episodes=max_episodes,
        watch_interval=watch_interval,
        call_threads=call_threads,
        max_episodes_per_client=max_episodes_per_client,
    )
    trusted = (forwarded_allow_ips or "").strip()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        lifespan="on",
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
    )


@dataclass(frozen=True)
class LocalGateway:
    url: str
    token: str


@contextlib.contextmanager
def serving_in_thread(app: Any, *, log_level: str = "warning", lifespan: str = "on", **config: Any) -> Iterator[str]:
    """``app`` under uvicorn on a free 127.0.0.1 port, in a background thread, for as long as the block
    runs; yields its base URL. Extra ``config`` goes to ``uvicorn.Config``."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level=log_level, lifespan=lifespan, **config)
    )
    thread = threading.Thread(target=server.run, name="envfleet-uvicorn", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextlib.contextmanager
def running_gateway(registry: Registry, *, log_level: str = "warning") -> Iterator[LocalGateway]:
    """A gateway on a free 127.0.0.1 port, in a background thread, for as long as the block runs,
    with a control plane guarded by a fresh token. Used by ``envfleet check`` and ``envfleet run``."""
    token = secrets.token_urlsafe(24)
    app = _app(registry, None, 1800.0, 100_000, max_episodes=100_000, control_token=token)
    with serving_in_thread(app, log_level=log_level, proxy_headers=False) as url:
        yield LocalGateway(url, token)
