"""The SDK adapters over real transports: the session table :func:`open_sessions` reads, the Host/Origin guard,
stdio serving, and the client side's connections (servers/clients/mcp_client.py) — against real uvicorn servers
on 127.0.0.1 and a real ``envfleet serve`` process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from servers import Registry
from servers.clients import GatewayClient
from servers.clients.mcp_client import connect_http, connect_stdio, mcp_http_client
from servers.serving import HostGuard, create_app, serving_in_thread
from servers.serving.sdk import open_sessions
from tests.conftest import ENVFLEET

pytestmark = pytest.mark.anyio

HANDSHAKE = "2025-11-25"
JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


served = serving_in_thread


async def test_open_sessions_holds_the_ids_issued_and_not_yet_ended(mini_env_dir: Path) -> None:
    """What the gateway's session bookkeeping relies on: an id is in the table from ``initialize`` to its DELETE."""
    app = create_app(Registry.build(mini_env_dir.parent))
    with served(app) as base:
        url = f"{base}/envs/mini/mcp"
        async with httpx.AsyncClient(timeout=30) as http:
            opened = await http.post(
                url,
                headers=JSON_HEADERS,
                json={
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": HANDSHAKE,
                        "capabilities": {},
                        "clientInfo": {"name": "probe", "version": "1"},
                    },
                },
            )
            assert opened.status_code == 200, opened.text
            session = opened.headers["mcp-session-id"]
            manager = app.gateway._hosted["mini"].manager
            assert set(open_sessions(manager)) == {session}
            headers = {**JSON_HEADERS, "Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}
            assert (
                await http.post(url, headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
            ).status_code == 202
            assert (await http.delete(url, headers=headers)).status_code in (200, 204)
            with anyio.fail_after(30):  # the SDK forgets the session just after it has answered the DELETE
                while session in open_sessions(manager):
                    await anyio.sleep(0.01)
            assert set(open_sessions(manager)) == set()


async def _lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            if message["type"] == "lifespan.startup":
                scope["state"]["started"] = True
                await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = scope["state"].get("started") and b"started" or b"no lifespan"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("allowed", "host", "origin", "status"),
    [
        (None, None, None, 200),
        (None, "evil.example", None, 421),  # DNS rebinding: a foreign name for our address
        (None, None, "http://evil.example", 403),  # a web page on another site
        (["api.example:*"], "api.example:8443", "https://api.example:8443", 200),
        (["api.example:*"], "other.example:8443", None, 421),
        (["*"], "evil.example", "http://evil.example", 200),  # the check turned off
    ],
)
async def test_host_guard_refuses_foreign_hosts_and_origins(
    allowed: list[str] | None, host: str | None, origin: str | None, status: int
) -> None:
    with served(HostGuard(_lifespan_app, allowed)) as base:
        headers = {k: v for k, v in (("Host", host), ("Origin", origin)) if v}
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{base}/anything", headers=headers)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.text == "started"  # the app got its lifespan through the guard


async def test_stdio_server_and_client(mini_env_dir: Path) -> None:
    """``envfleet serve`` over stdio (serving's run_stdio) and the client adapter's connect_stdio, end to end."""
    args = [*ENVFLEET[1:], "serve", str(mini_env_dir), "--log-level", "warning"]
    async with connect_stdio(ENVFLEET[0], args) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"get_item", "place_order"}
        placed = await client.call_tool("place_order", {"sku": "A-1", "quantity": 1})
        assert not placed.is_error and placed.structured_content["order_id"] == "ORD-0042"
        refused = await client.call_tool("place_order", {"sku": "A-1", "quantity": 99})
        assert refused.is_error and "in stock" in refused.content[0].text


async def test_http_clients_share_a_pool_the_caller_owns(mini_env_dir: Path) -> None:
    app = create_app(Registry.build(mini_env_dir.parent))
    with served(app) as base:
        url = f"{base}/envs/mini/s/shared-pool/mcp"
        pool = mcp_http_client()
        try:
            for expected in ("ORD-0042", "ORD-0043"):  # two connections, one pool, one keyed state
                async with connect_http(url, pool) as client:
                    placed = await client.call_tool("place_order", {"sku": "C-3", "quantity": 1})
                    assert placed.structured_content["order_id"] == expected
                assert not pool.is_closed  # leaving the connection leaves the caller's pool open
        finally:
            await pool.aclose()
        async with connect_http(url) as client:  # a pool of its own
            count = await client.call_tool("count_orders", {})
            assert count.structured_content["value"] == 3


def _first(error: BaseException) -> BaseException:
    while (
        isinstance(error, BaseExceptionGroup) and error.exceptions
    ):  # the MCP client's task group wraps what it raises
        error = error.exceptions[0]
    return error


async def test_what_a_gateway_client_raises_for_a_refusal_or_a_lost_connection_is_a_transport_error(
    mini_env_dir: Path,
) -> None:
    """``GatewayClient.TRANSPORT_ERRORS`` (the harness files these as infrastructure failures) covers a JSON-RPC
    refusal from the MCP server, and a server gone from under both pools; a tool error stays a result."""
    app = create_app(Registry.build(mini_env_dir.parent))
    with served(app) as base:
        url = f"{base}/envs/mini/s/refusals/mcp"
        async with GatewayClient(base) as gateway, gateway.mcp(url) as client:
            failed = await client.call_tool("place_order", {"sku": "nope", "quantity": 1})
            assert failed.is_error  # a result, not an exception
            with pytest.raises(GatewayClient.TRANSPORT_ERRORS) as refused:
                await client.get_prompt("no-such-prompt")
            assert "Unknown prompt" in str(refused.value)
    async with GatewayClient(base) as gateway:  # nothing listens there any more
        with pytest.raises(BaseException) as lost:
            async with gateway.mcp(url) as client:
                await client.list_tools()
        assert isinstance(_first(lost.value), GatewayClient.TRANSPORT_ERRORS), repr(lost.value)
        with pytest.raises(GatewayClient.TRANSPORT_ERRORS):
            await gateway.control.get("/healthz")
