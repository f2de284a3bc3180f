"""Layer 4, serving: episodes over the wire. The adapter from an environment to an MCP server
(``mcp.py``, where tool calls meet the MCP SDK, and ``sdk.py``, the SDK's transports: the only
server-side modules that import the SDK), the HTTP gateway that serves a fleet of them, the
hidden REST control plane for episodes, the stdio and uvicorn runners, and offline API docs.
Imports :mod:`servers.errors` and the spec, state and episodes layers; never the clients above.

The HTTP side (gateway, control plane, API docs: FastAPI) loads on first use of one of its names,
so a stdio server starts without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .mcp import CallRunner, CallTarget, build_server, error_details
from .runners import CONTROL_TOKEN_ENV, running_gateway, serve_http, serve_stdio, serving_in_thread
from .sdk import HostGuard, transport_security

if TYPE_CHECKING:
    from .api_docs import DOCS_KWARGS, mount_offline_docs
    from .control_plane import EpisodeHost
    from .gateway import Gateway, GatewaySettings, create_app

__all__ = [
    "build_server",
    "CallRunner",
    "CallTarget",
    "error_details",
    "Gateway",
    "GatewaySettings",
    "EpisodeHost",
    "create_app",
    "transport_security",
    "serve_stdio",
    "serve_http",
    "running_gateway",
    "serving_in_thread",
    "CONTROL_TOKEN_ENV",
    "DOCS_KWARGS",
    "mount_offline_docs",
    "HostGuard",
]

_HTTP_SIDE = {
    "DOCS_KWARGS": "api_docs",
    "mount_offline_docs": "api_docs",
    "EpisodeHost": "control_plane",
    "Gateway": "gateway",
    "GatewaySettings": "gateway",
    "create_app": "gateway",
}


def __getattr__(name: str) -> Any:
    if name not in _HTTP_SIDE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HTTP_SIDE[name]}", __name__), name)
