"""Run environments as processes: one over stdio, or a gateway over HTTP with uvicorn."""

from __future__ import annotations

import logging

import anyio

from .environment import Environment
from .mcp_server import FixedState, build_server
from .registry import Registry

__all__ = ["serve_stdio", "serve_http"]

logger = logging.getLogger(__name__)


def serve_stdio(env: Environment) -> None:
    """Serve ``env`` over stdin/stdout. The process owns one state copy for its whole life."""
    from mcp.server.stdio import stdio_server

    state = env.new_state()
    server = build_server(env, FixedState(state))

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    try:
        anyio.run(run)
    finally:
        state.close()


def serve_http(registry: Registry, *, host: str = "127.0.0.1", port: int = 8100, single: str | None = None,
               json_response: bool = True, allowed_hosts: list[str] | None = None, state_ttl: float = 1800.0,
               max_states: int = 4096, log_level: str = "info") -> None:
    """Serve the registry's environments (or just ``single``) over streamable HTTP."""
    import uvicorn

    from .gateway import GatewaySettings, create_app
    from .state_pool import StatePool

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    if host not in ("127.0.0.1", "localhost", "::1") and not allowed_hosts:
        logger.warning(
            "listening on %s but only localhost Host headers are accepted; pass --allowed-host "
            "(e.g. 'myhost:*', or '*' behind a trusted proxy) for clients that use another name", host,
        )
    app = create_app(
        registry,
        pool=StatePool(ttl=state_ttl, max_states=max_states),
        settings=GatewaySettings(json_response=json_response, allowed_hosts=allowed_hosts),
        single=single,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), lifespan="on")
