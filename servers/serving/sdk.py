"""The MCP SDK's server transports, behind the few names the runtime uses.

With :mod:`servers.serving.mcp` (the protocol side: the low-level ``Server``, its handlers and the
wire types) this is the only runtime module that imports the ``mcp`` SDK; everything else in
``servers/``, ``synthesizer/`` and ``harness/`` goes through the two (``tests/test_sdk_boundary.py``).
Here: streamable-HTTP session managers, the Host/Origin check against DNS rebinding, and stdio.

One thing the SDK offers no public API for is which handshake-era sessions a session manager
holds; :func:`open_sessions` reads its private table, and is the only code that touches a private
SDK name. It was checked against the ``mcp`` versions in :data:`SDK_CHECKED`; a test fails once
the installed SDK leaves that range, so someone re-reads it before the upgrade lands.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcp.server import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "SessionManager",
    "HostGuard",
    "SDK_CHECKED",
    "transport_security",
    "session_manager",
    "open_sessions",
    "run_stdio",
]

SessionManager = StreamableHTTPSessionManager
"""The SDK's streamable-HTTP session manager: one per served environment (see :func:`session_manager`)."""

SDK_CHECKED = ((2, 3), (2, 3))
"""The (major, minor) range of ``mcp`` that :func:`open_sessions` was checked against, inclusive."""

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
"""Host patterns always allowed: a local service answers to its own names."""


def transport_security(allowed_hosts: list[str] | None) -> TransportSecuritySettings:
    """DNS-rebinding protection: localhost only by default; ``["*"]`` turns the check off."""
    if allowed_hosts and "*" in allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = LOCAL_HOSTS + [h for h in allowed_hosts or [] if h not in LOCAL_HOSTS]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


class HostGuard:
    """ASGI middleware: the MCP endpoints' Host/Origin check (:func:`transport_security`) on every
    HTTP request to ``app``, so a web page cannot drive a local service through DNS rebinding or
    CSRF. A foreign Host is a 421, a foreign Origin a 403; other scopes (lifespan) pass through."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str] | None) -> None:
        self.app = app
        self._security = TransportSecurityMiddleware(transport_security(allowed_hosts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = await self._security.validate_request(Request(scope), is_post=False)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def session_manager(
    server: Server[Any],
    *,
    json_response: bool,
    allowed_hosts: list[str] | None,
    session_idle_timeout: float,
    max_sessions: int,
) -> StreamableHTTPSessionManager:
    """A streamable-HTTP session manager for ``server``, behind the Host/Origin check. Fails at once
    (when its environment loads) if the SDK no longer has the session table :func:`open_sessions` reads."""
    manager = StreamableHTTPSessionManager(
        app=server,
        json_response=json_response,
        security_settings=transport_security(allowed_hosts),
        session_idle_timeout=session_idle_timeout,
        max_sessions=max_sessions,
    )
    open_sessions(manager)
    return manager


def open_sessions(manager: StreamableHTTPSessionManager) -> Mapping[str, Any]:
    """The handshake-era sessions ``manager`` holds, by id: the ids it issued on ``initialize``
    (``uuid4().hex``) and has not discarded (idle timeout, DELETE, shutdown).

    The SDK has no public accessor, so this reads its private ``_server_instances`` table — the one
    private SDK name in the runtime, valid for the ``mcp`` versions in :data:`SDK_CHECKED`. Raises
    if the table is gone rather than answering "no sessions", which would quietly move every
    handshake-era client onto the shared read-only state."""
    try:
        sessions = manager._server_instances
    except AttributeError:
        sessions = None
    if not isinstance(sessions, dict):
        raise RuntimeError(
            "this mcp SDK has no session table StreamableHTTPSessionManager._server_instances; "
            "update servers/serving/sdk.py open_sessions() for it"
        )
    return sessions


async def run_stdio(server: Server[Any]) -> None:
    """Serve ``server`` over this process's stdin and stdout until the client closes them."""
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
