"""Streamable HTTP with real uvicorn processes: state keys, both protocol eras, the plain URL, the gateway."""

from __future__ import annotations

import re
import uuid

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from servers.serving import error_details
from tests.conftest import ServerProcess

pytestmark = pytest.mark.anyio

ERAS = ["auto", "legacy"]


def key() -> str:
    return uuid.uuid4().hex


def deep(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": [value]}
    return value


async def loan_count(client: Client, member: str) -> int:
    result = await client.call_tool("list_member_loans", {"member_id": member})
    assert not result.is_error, result.content[0].text
    return result.structured_content["count"]


@pytest.mark.parametrize("mode", ERAS)
async def test_keyed_urls_isolate_state(fleet: ServerProcess, mode: str, checkout_pair: tuple[str, str]) -> None:
    member, copy_id = checkout_pair
    url_a = f"{fleet.base}/envs/library/s/{key()}/mcp"
    url_b = f"{fleet.base}/envs/library/s/{key()}/mcp"
    async with Client(url_a, mode=mode) as a, Client(url_b, mode=mode) as b:
        if mode == "legacy":
            assert a.protocol_version == "2025-11-25"
        else:
            assert a.protocol_version == "2026-07-28"
        baseline = await loan_count(b, member)
        assert await loan_count(a, member) == baseline
        done = await a.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert not done.is_error, done.content[0].text
        assert await loan_count(a, member) == baseline + 1
        assert await loan_count(b, member) == baseline
        # the copy is still on the shelf in b's world
        again = await b.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert not again.is_error
    # a later connection with the same key finds the same state
    async with Client(url_a, mode=mode) as a_again:
        assert await loan_count(a_again, member) == baseline + 1


async def test_concurrent_clients_of_both_eras_on_different_keys(
    fleet: ServerProcess, checkout_pair: tuple[str, str]
) -> None:
    member, copy_id = checkout_pair
    keys = [key() for _ in range(8)]
    counts: dict[str, int] = {}

    async def worker(index: int) -> None:
        mode = ERAS[index % 2]
        async with Client(f"{fleet.base}/envs/library/s/{keys[index]}/mcp", mode=mode) as client:
            if index % 4 == 0:
                result = await client.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
                assert not result.is_error, result.content[0].text
            await anyio.sleep(0.05)
            counts[keys[index]] = await loan_count(client, member)

    async with anyio.create_task_group() as tg:
        for index in range(len(keys)):
            tg.start_soon(worker, index)
    writers = {keys[i] for i in range(len(keys)) if i % 4 == 0}
    base = min(counts.values())
    assert {k for k, v in counts.items() if v == base + 1} == writers
    assert all(counts[k] == base for k in keys if k not in writers)


async def test_plain_url_modern_client_reads_but_cannot_write(
    fleet: ServerProcess, checkout_pair: tuple[str, str]
) -> None:
    member, copy_id = checkout_pair
    async with Client(f"{fleet.base}/envs/library/mcp") as client:
        assert client.protocol_version == "2026-07-28"
        baseline = await loan_count(client, member)
        refused = await client.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert refused.is_error
        assert error_details(refused)["error"]["type"] == "read_only_state"
        assert "/s/<key>/mcp" in refused.content[0].text
        assert await loan_count(client, member) == baseline


async def test_plain_url_legacy_clients_get_state_per_session(
    fleet: ServerProcess, checkout_pair: tuple[str, str]
) -> None:
    member, copy_id = checkout_pair
    url = f"{fleet.base}/envs/library/mcp"
    async with Client(url, mode="legacy") as a, Client(url, mode="legacy") as b:
        baseline = await loan_count(b, member)
        done = await a.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert not done.is_error, done.content[0].text
        assert await loan_count(a, member) == baseline + 1
        assert await loan_count(b, member) == baseline
    async with Client(url) as modern:  # the shared state never saw the write
        assert await loan_count(modern, member) == baseline


@pytest.mark.parametrize("mode", ERAS)
async def test_errors_leave_the_server_alive_and_state_unchanged(fleet: ServerProcess, mode: str) -> None:
    async with Client(f"{fleet.base}/envs/library/s/{key()}/mcp", mode=mode) as client:
        before = (await client.call_tool("get_member", {"member_id": "M-1005"})).structured_content
        for name, args in [
            ("checkout_copy", {"member_id": "M-1005"}),
            ("checkout_copy", {"member_id": "M-1005", "copy_id": "C-00002", "extra": True}),
            ("checkout_copy", {"member_id": 1005, "copy_id": "C-00002"}),
            ("checkout_copy", {"member_id": "M-1005' OR 1=1 --", "copy_id": "C-00002"}),
            ("find_member", {"name": "x" * 100_000}),
            ("find_member", {"name": "'; DROP TABLE members; --"}),
            ("no_such_tool", {}),
            ("pay_fine", {"fine_id": "FINE-0001", "amount": -5, "method": "card"}),
            ("pay_fine", {"fine_id": "FINE-0001", "amount": 1.0, "method": "c" * 1_000_000}),
            ("pay_fine", {"fine_id": "FINE-0001", "amount": float("nan"), "method": "card"}),
            ("pay_fine", {"fine_id": "FINE-0001", "amount": float("inf"), "method": "card"}),
            ("checkout_copy", {"member_id": "M-1005\u0000\u202e\U0001f4da", "copy_id": "C-00002"}),
            ("checkout_copy", {"member_id": "M-1005", "copy_id": "C-00002", "note": deep(50)}),
            ("checkout_copy", {"member_id": deep(50), "copy_id": "C-00002"}),
        ]:
            result = await client.call_tool(name, args)
            assert result.is_error or result.structured_content.get("count") == 0, (name, args)
        after = (await client.call_tool("get_member", {"member_id": "M-1005"})).structured_content
        assert after == before


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_and_resources_of_both_envs_through_the_gateway(fleet: ServerProcess, mode: str) -> None:
    for env_id in ("library", "clinic"):
        async with Client(f"{fleet.base}/envs/{env_id}/s/{key()}/mcp", mode=mode) as client:
            assert client.server_info.name == f"envfleet-{env_id}"
            tools = (await client.list_tools()).tools
            assert len(tools) >= 12
            assert all(t.input_schema["type"] == "object" and t.output_schema for t in tools)
            resources = {str(r.uri) for r in (await client.list_resources()).resources}
            assert resources == {f"envfleet://{env_id}/policy", f"envfleet://{env_id}/schema"}
            policy = (await client.read_resource(f"envfleet://{env_id}/policy")).contents[0]
            assert policy.mime_type == "text/markdown" and "#" in policy.text and len(policy.text) > 500
            schema = (await client.read_resource(f"envfleet://{env_id}/schema")).contents[0]
            assert "## patients" in schema.text if env_id == "clinic" else "## members" in schema.text
            assert "| column | type |" in schema.text
            with pytest.raises(MCPError, match="Unknown resource"):
                await client.read_resource(f"envfleet://{env_id}/secrets")


async def test_rest_endpoints(fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=fleet.base) as http:
        health = (await http.get("/healthz")).json()
        assert health["status"] == "ok" and set(health["environments"]) >= {"library", "clinic"}
        envs = (await http.get("/envs")).json()
        assert {e["id"] for e in envs} >= {"library", "clinic"}
        assert (await http.get("/envs/library")).json()["launch"]["http"]["path"] == "/envs/library/mcp"
        missing = await http.post("/envs/atlantis/mcp", json={})
        assert missing.status_code == 404 and "unknown environment 'atlantis'" in missing.json()["error"]
        bad_key = await http.post("/envs/library/s/has%20space/mcp", json={})
        assert bad_key.status_code == 400
        openapi = (await http.get("/openapi.json")).json()
        assert "/healthz" in openapi["paths"]


async def test_api_docs_work_offline(fleet: ServerProcess) -> None:
    """/docs is Swagger UI whose every script, style, icon and spec URL is served by the gateway itself."""
    async with httpx.AsyncClient(base_url=fleet.base) as http:
        page = await http.get("/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        assert "://" not in page.text  # nothing from another origin (a CDN), so it renders without internet access
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
        assert {"/openapi.json", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
        for asset in assets:
            assert asset.startswith("/") and not asset.startswith("//"), asset
            response = await http.get(asset)
            assert response.status_code == 200 and response.content, asset
        assert (await http.get("/redoc")).status_code == 404  # the CDN-backed page is off


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


async def test_foreign_host_header_is_refused(fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=fleet.base) as http:
        ok = await http.post("/envs/library/mcp", headers=MCP_HEADERS, json=INITIALIZE)
        assert ok.status_code == 200
        refused = await http.post(
            "/envs/library/mcp", headers={**MCP_HEADERS, "Host": "evil.example:80"}, json=INITIALIZE
        )
        assert refused.status_code == 421


async def test_allowed_host_and_single_env_paths() -> None:
    server = ServerProcess(["library", "--transport", "http", "--allowed-host", "fleet.internal:*"])
    try:
        async with Client(f"{server.base}/mcp") as client:
            assert len((await client.list_tools()).tools) >= 12
        async with Client(f"{server.base}/s/{key()}/mcp") as client:
            result = await client.call_tool("get_member", {"member_id": "M-1001"})
            assert not result.is_error
        async with httpx.AsyncClient(base_url=server.base) as http:
            allowed = await http.post("/mcp", headers={**MCP_HEADERS, "Host": "fleet.internal:8100"}, json=INITIALIZE)
            assert allowed.status_code == 200
            refused = await http.post("/mcp", headers={**MCP_HEADERS, "Host": "other.internal:8100"}, json=INITIALIZE)
            assert refused.status_code == 421
            assert (await http.get("/healthz")).json()["environments"] == ["library"]
    finally:
        server.stop()


async def test_state_cap_is_a_clear_error() -> None:
    server = ServerProcess(["--all", "--max-states", "2"])
    try:
        for _ in range(2):
            async with Client(f"{server.base}/envs/library/s/{key()}/mcp") as client:
                assert not (await client.call_tool("get_member", {"member_id": "M-1001"})).is_error
        async with Client(f"{server.base}/envs/library/s/{key()}/mcp") as client:
            with pytest.raises(MCPError, match="2 states are live, the configured maximum"):
                await client.call_tool("get_member", {"member_id": "M-1001"})
            # the shared read-only state needs no slot
        async with Client(f"{server.base}/envs/library/mcp") as client:
            assert not (await client.call_tool("get_member", {"member_id": "M-1001"})).is_error
    finally:
        server.stop()


async def test_json_too_deep_to_parse_is_a_protocol_error_not_a_crash(fleet: ServerProcess) -> None:
    url = f"{fleet.base}/envs/library/s/{key()}/mcp"
    arguments = "{}"
    for _ in range(5000):
        arguments = '{"a": [' + arguments + "]}"
    body = (
        '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "find_member", "arguments": '
        + arguments
        + "}}"
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        )
    assert response.status_code in (200, 400)
    assert response.json()["error"]["code"] in (-32700, -32600, -32602)
    async with Client(url) as client:  # the server is alive and the state intact
        found = await client.call_tool("find_member", {"name": "Ada"})
        assert not found.is_error
