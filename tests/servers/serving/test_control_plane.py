"""The episode control plane over real HTTP, and episodes over real MCP."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import CLIENT_CAPABILITIES_META_KEY, CLIENT_INFO_META_KEY, PROTOCOL_VERSION_META_KEY

from servers.serving import error_details
from tests.conftest import ServerProcess

pytestmark = pytest.mark.anyio


@pytest.fixture
def mini_fleet(mini_env_dir: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(["--all", "--env-root", str(mini_env_dir.parent)])
    yield server
    server.stop()


async def start(http: httpx.AsyncClient, task_id: str | None = "mini-001", env_id: str = "mini") -> dict:
    response = await http.post("/episodes", json={"env_id": env_id, "task_id": task_id})
    assert response.status_code == 201, response.text
    return response.json()


async def test_episode_lifecycle(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        created = await start(http)
        assert created["instruction"].startswith("Please order two candles")
        assert created["mcp_url"] == f"{mini_fleet.base}/envs/mini/episodes/{created['episode_id']}/mcp"
        assert "place_order" in created["tools"] and created["policy"] == "Sell only what is in stock."
        episode = f"/episodes/{created['episode_id']}"

        async with Client(created["mcp_url"]) as client:
            prompts = (await client.list_prompts()).prompts
            assert [p.name for p in prompts] == ["task"]
            prompt = await client.get_prompt("task")
            assert prompt.messages[0].content.text == created["instruction"]
            assert not (await client.call_tool("search_items", {"query": "Candle"})).is_error
            placed = await client.call_tool("place_order", {"sku": "C-3", "quantity": 2})
            assert placed.structured_content["order_id"] == "ORD-0042"

        info = (await http.get(episode)).json()
        assert info["steps"] == 2 and [s["tool"] for s in info["trajectory"]] == ["search_items", "place_order"]
        assert info["trajectory"][1]["arguments"] == {"sku": "C-3", "quantity": 2}

        score = (await http.post(f"{episode}/evaluate", json={"final_message": "Order ORD-0042 is on its way."})).json()
        assert score["success"] is True and score["reward"] == 1.0
        assert [c["name"] for c in score["checks"]] == ["check[0]", "check[1]", "collateral", "answer"]
        unsaid = (await http.post(f"{episode}/evaluate", json={})).json()
        assert unsaid["reward"] == 0.0 and unsaid["partial"] == 0.75 and not unsaid["success"]

        reset = (await http.post(f"{episode}/reset")).json()
        assert reset["steps"] == 0 and reset["resets"] == 1
        after_reset = (await http.post(f"{episode}/evaluate", json={"final_message": "ORD-0042"})).json()
        assert not after_reset["success"] and after_reset["diff_summary"] == "no changes"

        listed = (await http.get("/episodes")).json()
        assert created["episode_id"] in {e["episode_id"] for e in listed}
        assert (await http.delete(episode)).status_code == 204
        gone = await http.get(episode)
        assert gone.status_code == 404 and "no live episode" in gone.json()["detail"]
        assert (await http.post(f"{episode}/evaluate", json={})).status_code == 404
        async with httpx.AsyncClient() as raw:
            stale = await raw.post(
                created["mcp_url"], json={}, headers={"Accept": "application/json, text/event-stream"}
            )
            assert stale.status_code == 404


async def test_bad_requests_get_clear_errors(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        unknown_env = await http.post("/episodes", json={"env_id": "atlantis"})
        assert unknown_env.status_code == 404 and "unknown environment 'atlantis'" in unknown_env.json()["detail"]
        unknown_task = await http.post("/episodes", json={"env_id": "mini", "task_id": "mini-999"})
        assert unknown_task.status_code == 404 and "no task 'mini-999'" in unknown_task.json()["detail"]
        assert (await http.post("/episodes", json={"task_id": "x"})).status_code == 422
        assert (await http.get("/episodes/0123456789abcdef")).status_code == 404
        no_task = await start(http, task_id=None)
        refused = await http.post(f"/episodes/{no_task['episode_id']}/evaluate", json={})
        assert refused.status_code == 409 and "has no task" in refused.json()["detail"]


async def test_the_agent_cannot_reach_the_control_plane_through_mcp(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        created = await start(http)
    async with Client(created["mcp_url"]) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert names == {"get_item", "search_items", "place_order", "restock", "count_orders"}
        for probe in ("evaluate", "get_gold", "score", "reset", "checks", "episodes/evaluate", "../evaluate"):
            result = await client.call_tool(probe, {"episode_id": created["episode_id"]})
            assert result.is_error and error_details(result)["error"]["type"] == "unknown_tool"
        resources = {str(r.uri) for r in (await client.list_resources()).resources}
        assert resources == {"envfleet://mini/policy", "envfleet://mini/schema"}
        for uri in ("envfleet://mini/tasks", "envfleet://mini/gold", "file:///etc/passwd"):
            with pytest.raises(MCPError):
                await client.read_resource(uri)
        with pytest.raises(MCPError, match="Unknown prompt"):
            await client.get_prompt("gold")
        text = (await client.get_prompt("task")).messages[0].content.text
        assert "ORD-0042" not in text and "place_order" not in text


async def test_concurrent_episodes_of_one_task_over_mcp(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        created = [await start(http) for _ in range(8)]

        async def act(index: int, episode: dict) -> None:
            async with Client(episode["mcp_url"], mode="legacy" if index % 2 else "auto") as client:
                for step in range(2):  # interleaved with the others: one call, yield, the next
                    if index % 2 == 0:
                        if step == 0:
                            await client.call_tool("place_order", {"sku": "C-3", "quantity": 2})
                        else:
                            await client.call_tool("search_items", {"query": "Candle"})
                    else:
                        await client.call_tool("restock", {"sku": "C-3", "delta": 1})
                    await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            for index, episode in enumerate(created):
                tg.start_soon(act, index, episode)
        for index, episode in enumerate(created):
            score = (
                await http.post(f"/episodes/{episode['episode_id']}/evaluate", json={"final_message": "ORD-0042"})
            ).json()
            assert score["success"] is (index % 2 == 0), (index, score)
            stock = score["diff"]["items"]["updated"]["C-3"]["stock"]["new"]
            assert stock == (38 if index % 2 == 0 else 42)


async def test_expiry_and_cap(mini_env_dir: Path) -> None:
    server = ServerProcess(
        ["--all", "--env-root", str(mini_env_dir.parent), "--episode-ttl", "1", "--max-episodes", "2"]
    )
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            first = await start(http)
            await start(http)
            full = await http.post("/episodes", json={"env_id": "mini", "task_id": "mini-001"})
            assert full.status_code == 429 and "2 episodes are live, the configured maximum" in full.json()["detail"]
            assert "Retry in 1 s" in full.json()["detail"] and full.headers["retry-after"] == "1"
            time.sleep(1.2)
            expired = await http.get(f"/episodes/{first['episode_id']}")
            assert expired.status_code == 404 and "expired after 1 s idle" in expired.json()["detail"]
            assert (await http.post("/episodes", json={"env_id": "mini", "task_id": "mini-001"})).status_code == 201
    finally:
        server.stop()


async def test_bearer_token_guards_the_control_plane_only(mini_env_dir: Path) -> None:
    server = ServerProcess(["--all", "--env-root", str(mini_env_dir.parent)], env={"ENVFLEET_CONTROL_TOKEN": "s3cret"})
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            assert (await http.post("/episodes", json={"env_id": "mini"})).status_code == 401
            wrong = await http.post("/episodes", json={"env_id": "mini"}, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
            authed = httpx.AsyncClient(base_url=server.base, headers={"Authorization": "Bearer s3cret"})
            async with authed:
                created = await start(authed)
                assert (await authed.get(f"/episodes/{created['episode_id']}")).status_code == 200
            assert (await http.get(f"/episodes/{created['episode_id']}")).status_code == 401
            assert (await http.get("/healthz")).status_code == 200
        async with Client(created["mcp_url"]) as client:  # the episode URL is the agent's capability
            assert not (await client.call_tool("count_orders", {})).is_error
    finally:
        server.stop()


async def test_openapi_documents_the_control_plane(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert {
        "/episodes",
        "/episodes/{episode_id}",
        "/episodes/{episode_id}/evaluate",
        "/episodes/{episode_id}/reset",
    } <= set(paths)
    assert set(paths["/episodes/{episode_id}"]) == {"get", "delete"}


# -- hardening: whatever a client or an agent sends, the control plane answers clearly -----------

MODERN_META = {
    PROTOCOL_VERSION_META_KEY: "2026-07-28",
    CLIENT_CAPABILITIES_META_KEY: {},
    CLIENT_INFO_META_KEY: {"name": "probe", "version": "1"},
}


async def raw_call(http: httpx.AsyncClient, path: str, tool: str, arguments_json: str) -> dict:
    """A sessionless tools/call written by hand: the official client cannot send a lone surrogate."""
    body = (
        '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": '
        + json.dumps(MODERN_META)
        + f', "name": "{tool}", "arguments": '
        + arguments_json
        + "}}"
    )
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    response = await http.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text[:500]
    return response.json()["result"]


async def test_a_lone_surrogate_or_a_huge_argument_never_breaks_the_trajectory(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base, timeout=60) as http:
        created = await start(http)
        episode = f"/episodes/{created['episode_id']}"
        assert (await raw_call(http, created["mcp_path"], "get_item", '{"sku": "\\ud800"}'))["isError"]
        huge = "x" * (1 << 20)
        assert (await raw_call(http, created["mcp_path"], "get_item", json.dumps({"sku": huge})))["isError"]
        assert not (await raw_call(http, created["mcp_path"], "get_item", '{"sku": "C-3"}')).get("isError")
        info = await http.get(episode)
        assert info.status_code == 200, info.text[:500]
        steps = info.json()["trajectory"]
        assert steps[0]["arguments"] == {"sku": "\ufffd"} and steps[0]["is_error"]
        stored = steps[1]["arguments"]["sku"]
        assert (
            stored.startswith("xxxx") and stored.endswith("…[truncated: 1,048,576 characters]") and len(stored) < 20_000
        )
        assert steps[2]["arguments"] == {"sku": "C-3"} and steps[2]["result"]["name"] == "Candle"
        assert len(info.content) < 400_000  # the 1 MiB value is stored cut, in the arguments and in any echo of it
        score = (await http.post(f"{episode}/evaluate", json={"final_message": "ORD-0042"})).json()
        assert (score["reward"], score["partial"]) == (0.0, 0.5)  # 2 of 4 checks
        assert (await http.delete(episode)).status_code == 204
        assert (await http.get(episode)).status_code == 404


async def test_path_like_episode_ids_are_refused_naming_the_field(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        for episode_id in (".", "..", "...", "a/b", "a b", "é", "x" * 129):
            in_body = await http.post("/episodes", json={"env_id": "mini", "episode_id": episode_id})
            assert in_body.status_code == 422 and in_body.json()["detail"][0]["loc"] == ["body", "episode_id"], (
                episode_id
            )
            in_header = await http.post(
                "/episodes", json={"env_id": "mini"}, headers={"X-Episode-Id": episode_id.encode()}
            )
            assert in_header.status_code == 400 and "header x-episode-id" in in_header.json()["detail"], episode_id
            assert "not only dots" in in_header.json()["detail"]  # the state keys' rule, word for word
        assert (await http.get("/episodes")).json() == []
        chosen = await http.post("/episodes", json={"env_id": "mini"}, headers={"X-Episode-Id": "run7-mini.t0_a~b"})
        assert chosen.status_code == 201 and chosen.json()["mcp_path"] == "/envs/mini/episodes/run7-mini.t0_a~b/mcp"
        for episode_id in (".hidden", "-x", "_x", "~x"):  # every valid state key is a valid episode id, and the reverse
            made = await http.post("/episodes", json={"env_id": "mini", "episode_id": episode_id})
            assert made.status_code == 201 and made.json()["mcp_path"] == f"/envs/mini/episodes/{episode_id}/mcp", (
                made.text
            )
            async with Client(made.json()["mcp_url"]) as client:
                assert not (await client.call_tool("get_item", {"sku": "A-1"})).is_error


async def test_bodies_over_the_cap_are_refused_unread_with_413(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base, timeout=60) as http:
        big = b'{"env_id": "mini", "task_id": "' + b"a" * (50 << 20) + b'"}'
        refused = await http.post("/episodes", content=big, headers={"Content-Type": "application/json"})
        assert (
            refused.status_code == 413
            and "at most 65,536 bytes" in refused.json()["detail"]
            and len(refused.content) < 300
        )

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"env_id": "mini", "task_id": "'
            for _ in range(100):
                yield b"a" * 1024
            yield b'"}'

        streamed = await http.post("/episodes", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        created = await start(http)
        evaluate = await http.post(f"/episodes/{created['episode_id']}/evaluate", json={"final_message": "m" * 70_000})
        assert evaluate.status_code == 413
        assert (await http.get("/healthz")).status_code == 200


async def test_odd_input_gets_a_short_clear_4xx_never_a_500_or_an_echo(mini_fleet: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=mini_fleet.base) as http:
        long_task = await http.post("/episodes", json={"env_id": "mini", "task_id": "t" * 60_000})
        assert long_task.status_code == 422 and long_task.json()["detail"][0]["loc"] == ["body", "task_id"]
        assert len(long_task.content) < 1000
        long_env = await http.post("/episodes", json={"env_id": "e" * 10_000})
        assert long_env.status_code == 422 and len(long_env.content) < 1000
        for body in (
            '{"env_id": "\\ud800"}',
            '{"env_id": "mini", "episode_id": "\\ud800"}',
            '{"env_id": "mini", "task_id": "\\udfff"}',
            '{"env_id": NaN}',
            "[]",
            '{"env_id": "mini"',
            '"mini"',
            '{"env_id": 1e999999}',
        ):
            odd = await http.post("/episodes", content=body, headers={"Content-Type": "application/json"})
            assert 400 <= odd.status_code < 500, (body, odd.status_code, odd.text)
        unknown = await http.get("/episodes/" + "q" * 5000)
        assert unknown.status_code == 404 and len(unknown.content) < 400
        assert (await http.delete("/episodes/" + "q" * 5000)).status_code == 404
        created = await start(http)
        odd_final = await http.post(
            f"/episodes/{created['episode_id']}/evaluate",
            content='{"final_message": "\\ud800"}',
            headers={"Content-Type": "application/json"},
        )
        assert odd_final.status_code == 200 and odd_final.json()["checks"][-1]["name"] == "answer"
