"""The official MCP client over real stdio, spawning `envfleet serve`, in both protocol eras."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from tests.conftest import ENVFLEET, MINI_SEED, write_env

pytestmark = pytest.mark.anyio

ERAS = ["auto", "legacy"]


def stdio(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=ENVFLEET[0], args=[*ENVFLEET[1:], "serve", *args, "--log-level", "warning"])


@pytest.mark.parametrize("mode", ERAS)
async def test_library_over_stdio(mode: str, checkout_pair: tuple[str, str]) -> None:
    member, copy_id = checkout_pair
    async with Client(stdio("library"), mode=mode) as client:
        assert client.server_info is not None and client.server_info.name == "envfleet-library"
        assert client.server_info.version == "1.0.0"
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert len(tools) >= 12
        assert tools["search_books"].annotations.read_only_hint is True
        assert tools["checkout_copy"].annotations.read_only_hint is False
        assert tools["checkout_copy"].input_schema["required"] == ["member_id", "copy_id"]
        assert tools["checkout_copy"].input_schema["additionalProperties"] is False

        found = await client.call_tool("search_books", {"query": "Emma"})
        assert not found.is_error
        assert [b["title"] for b in found.structured_content["rows"]] == ["Emma"]
        assert json.loads(found.content[0].text) == found.structured_content

        checkout = await client.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert not checkout.is_error, checkout.content[0].text
        loan_id = checkout.structured_content["loan_id"]
        loans = await client.call_tool("list_member_loans", {"member_id": member})
        assert loan_id in {row["loan_id"] for row in loans.structured_content["rows"]}

        refused = await client.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert refused.is_error and "not available" in refused.content[0].text

        bad = await client.call_tool("checkout_copy", {"member_id": member})
        assert bad.is_error and '"copy_id" is a required property' in bad.content[0].text
        unknown = await client.call_tool("format_disk", {})
        assert unknown.is_error and "Unknown tool 'format_disk'" in unknown.content[0].text

        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert set(resources) == {"envfleet://library/policy", "envfleet://library/schema"}
        policy = await client.read_resource("envfleet://library/policy")
        assert "Riverside Public Library" in policy.contents[0].text
        schema = await client.read_resource("envfleet://library/schema")
        assert "## loans" in schema.contents[0].text and "→ members.member_id" in schema.contents[0].text

        still_alive = await client.call_tool("get_member", {"member_id": member})
        assert still_alive.structured_content["active_loans"] == loans.structured_content["count"]


@pytest.mark.parametrize("mode", ERAS)
async def test_each_stdio_process_has_its_own_state(mode: str, checkout_pair: tuple[str, str]) -> None:
    member, copy_id = checkout_pair
    async with Client(stdio("library"), mode=mode) as first, Client(stdio("library"), mode=mode) as second:
        done = await first.call_tool("checkout_copy", {"member_id": member, "copy_id": copy_id})
        assert not done.is_error
        mine = await first.call_tool("list_member_loans", {"member_id": member})
        theirs = await second.call_tool("list_member_loans", {"member_id": member})
        assert mine.structured_content["count"] == theirs.structured_content["count"] + 1


async def test_serve_an_environment_folder(tmp_path: Any, mini_spec: dict[str, Any]) -> None:
    folder = write_env(tmp_path / "mini", mini_spec, MINI_SEED)
    async with Client(stdio(str(folder))) as client:
        result = await client.call_tool("place_order", {"sku": "A-1", "quantity": 1})
        assert result.structured_content["order_id"] == "ORD-0042"
