"""The MCP SDK's client, behind the few names the runtime's clients use.

The only client-side module that imports the ``mcp`` SDK (``tests/test_sdk_boundary.py``): rollouts,
the harness and the benchmarks open their connections here — over streamable HTTP or stdio — and
get an :data:`McpClient` to list and call tools on (``list_tools()``, ``call_tool(name, arguments)``,
used as an ``async with`` block). No private SDK name is used: the HTTP connection pool is built
here, with the SDK transport's own defaults, rather than through the SDK's private helper.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx2
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

__all__ = [
    "McpClient",
    "MCP_CLIENT_ERRORS",
    "HTTP_TIMEOUT",
    "HTTP_READ_TIMEOUT",
    "mcp_http_client",
    "connect_http",
    "connect_stdio",
]

McpClient = Client
"""The SDK's client: ``async with`` it to connect; ``list_tools()``, ``call_tool(name, arguments)``. A failed tool
call is a result with ``is_error`` set, not an exception."""

MCP_CLIENT_ERRORS: tuple[type[Exception], ...] = (MCPError, httpx2.HTTPError)
"""What an MCP client raises when the server refuses a request (a JSON-RPC error, e.g. no state to be had) or
the HTTP connection fails: never a tool error, which comes back as a result."""

HTTP_TIMEOUT = 30.0
"""Seconds to connect, write, or wait for a pooled connection: the SDK transport's default."""
HTTP_READ_TIMEOUT = 300.0
"""Seconds to wait for the next bytes of a response: the SDK transport's default, long because a server may hold
an event stream open."""


def mcp_http_client(headers: dict[str, str] | None = None) -> httpx2.AsyncClient:
    """An HTTP connection pool for MCP clients, to share between many connections (see :func:`connect_http`).

    As the SDK's transport builds its own: :data:`HTTP_TIMEOUT` / :data:`HTTP_READ_TIMEOUT`, and
    ``follow_redirects`` off (the transport follows a redirect itself, only within the endpoint's origin).
    Close it (``aclose()``) when done."""
    return httpx2.AsyncClient(timeout=httpx2.Timeout(HTTP_TIMEOUT, read=HTTP_READ_TIMEOUT), headers=headers)


def connect_http(url: str, http_client: httpx2.AsyncClient | None = None) -> McpClient:
    """An MCP client for the streamable-HTTP endpoint ``url``, not yet connected (``async with`` it).

    Over ``http_client`` (from :func:`mcp_http_client`) when given, which the caller closes; else over a pool of
    its own, closed with the connection."""
    if http_client is None:
        return Client(url)
    return Client(streamable_http_client(url, http_client=http_client))


def connect_stdio(
    command: str, args: Sequence[str] = (), *, env: dict[str, str] | None = None, cwd: str | Path | None = None
) -> McpClient:
    """An MCP client that starts ``command args…`` and talks to it over its stdin and stdout, not yet connected
    (``async with`` it; leaving the block ends the process). ``env`` is merged over the SDK's safe default
    environment, not over this process's."""
    return Client(StdioServerParameters(command=command, args=list(args), env=env, cwd=cwd))
