"""A running fleet picks up published, changed and deleted environments without a restart, and
without disturbing live episodes."""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from mcp import Client

from servers import Registry
from tests.conftest import MINI_SEED, MINI_SPEC, MINI_TASKS, ServerProcess, write_env, write_tasks

pytestmark = pytest.mark.anyio


def publish_registry(root: Path, registry: Path) -> None:
    """What a publisher does: write the new registry beside the old one, then rename it over."""
    fresh = registry.with_name(".registry.json.tmp")
    Registry.build(root, relative_to=registry.parent).write(fresh)
    os.replace(fresh, registry)


def add_env(root: Path, env_id: str, policy: str = "Sell only what is in stock.") -> Path:
    spec = {**copy.deepcopy(MINI_SPEC), "id": env_id, "policy": policy}
    folder = write_env(root / env_id, spec, copy.deepcopy(MINI_SEED))
    write_tasks(folder, [{**t, "id": t["id"].replace("mini", env_id)} for t in copy.deepcopy(MINI_TASKS)])
    return folder


def wait_for(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the fleet did not pick up the change in time")
        time.sleep(0.1)


def served(base: str) -> set[str]:
    return {e["id"] for e in httpx.get(f"{base}/envs").json()}


async def order_candles(url: str) -> bool:
    async with Client(url) as client:
        result = await client.call_tool("place_order", {"sku": "C-3", "quantity": 2})
        return not result.is_error


def watched_fleet(tmp_path: Path) -> tuple[Path, Path, ServerProcess]:
    """A fleet of one environment, served from a registry file the gateway watches."""
    root, registry = tmp_path / "envs", tmp_path / "registry.json"
    add_env(root, "shop")
    publish_registry(root, registry)
    return root, registry, ServerProcess(["--all", "--registry", str(registry), "--watch-interval", "0.2"])


async def test_published_changed_and_deleted_environments_while_episodes_run(tmp_path: Path) -> None:
    root, registry, server = watched_fleet(tmp_path)
    try:
        base = server.base
        running = httpx.post(f"{base}/episodes", json={"env_id": "shop", "task_id": "shop-001"}).json()

        add_env(root, "kiosk")  # published after the fleet started
        publish_registry(root, registry)
        wait_for(lambda: "kiosk" in served(base))
        kiosk = httpx.post(f"{base}/episodes", json={"env_id": "kiosk", "task_id": "kiosk-001"})
        assert kiosk.status_code == 201
        assert await order_candles(kiosk.json()["mcp_url"])

        add_env(root, "shop", policy="Sell only what is in stock. Be kind.")  # republished with a new policy
        publish_registry(root, registry)
        wait_for(lambda: httpx.post(f"{base}/episodes", json={"env_id": "shop"}).json()["policy"].endswith("Be kind."))
        assert await order_candles(running["mcp_url"])  # the episode that started before goes on, on its version
        score = httpx.post(
            f"{base}/episodes/{running['episode_id']}/evaluate", json={"final_message": "Your order is ORD-0042."}
        ).json()
        assert score["success"] is True

        shutil.rmtree(root / "kiosk")  # deleted
        publish_registry(root, registry)
        wait_for(lambda: "kiosk" not in served(base))
        refused = httpx.post(f"{base}/episodes", json={"env_id": "kiosk", "task_id": "kiosk-001"})
        assert refused.status_code == 404 and "unknown environment 'kiosk'" in refused.json()["detail"]
        async with Client(kiosk.json()["mcp_url"]) as client:  # its live episode still answers
            assert not (await client.call_tool("count_orders", {})).is_error
        assert httpx.get(f"{base}/episodes/{kiosk.json()['episode_id']}").json()["steps"] == 2

        registry.write_text("{ half-written")  # a broken registry: keep serving the last good one
        time.sleep(0.6)
        assert served(base) == {"shop"}
        registry.write_bytes(b"\xff\xfe" + registry.read_bytes())  # not even text
        time.sleep(0.6)
        assert served(base) == {"shop"} and httpx.get(f"{base}/healthz").status_code == 200
        assert await order_candles(running["mcp_url"])  # and the episodes go on
    finally:
        output = server.stop()
    assert "cannot be reloaded" in output


async def test_an_env_root_fleet_reloads_on_request_with_the_token(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    add_env(root, "shop")
    server = ServerProcess(
        ["--all", "--env-root", str(root), "--watch-interval", "0"], env={"ENVFLEET_CONTROL_TOKEN": "t0k"}
    )
    try:
        add_env(root, "kiosk")
        assert httpx.post(f"{server.base}/admin/reload").status_code == 401
        report = httpx.post(f"{server.base}/admin/reload", headers={"Authorization": "Bearer t0k"}).json()
        assert report == {"added": ["kiosk"], "removed": [], "changed": [], "environments": 2}
        assert served(server.base) == {"shop", "kiosk"}
    finally:
        server.stop()


async def test_episode_ids_chosen_by_the_client_or_a_routing_proxy(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    add_env(root, "shop")
    server = ServerProcess(["--all", "--env-root", str(root)])
    try:
        base = server.base
        chosen = httpx.post(f"{base}/episodes", json={"env_id": "shop", "task_id": "shop-001", "episode_id": "run7.t0"})
        assert chosen.status_code == 201 and chosen.json()["mcp_url"].endswith("/envs/shop/episodes/run7.t0/mcp")
        again = httpx.post(f"{base}/episodes", json={"env_id": "shop", "episode_id": "run7.t0"})
        assert again.status_code == 409 and "in use" in again.json()["detail"]
        proxied = httpx.post(f"{base}/episodes", json={"env_id": "shop"}, headers={"X-Episode-Id": "0f3a9c"})
        assert proxied.json()["episode_id"] == "0f3a9c"
        bad = httpx.post(f"{base}/episodes", json={"env_id": "shop"}, headers={"X-Episode-Id": "no/slashes"})
        assert bad.status_code == 400
        assert json.loads(httpx.get(f"{base}/episodes/0f3a9c").text)["env_id"] == "shop"
    finally:
        server.stop()


async def test_sessions_and_keyed_states_outlive_a_reload(tmp_path: Path) -> None:
    root, registry, server = watched_fleet(tmp_path)
    try:
        keyed = f"{server.base}/envs/shop/s/alice/mcp"
        assert await order_candles(keyed)
        async with Client(f"{server.base}/envs/shop/mcp", mode="legacy") as session:
            await session.call_tool("place_order", {"sku": "C-3", "quantity": 1})
            write_tasks(root / "shop", [{**MINI_TASKS[0], "id": "shop-003"}], pack="more")  # only the tasks change
            publish_registry(root, registry)
            wait_for(
                lambda: (
                    httpx.post(f"{server.base}/episodes", json={"env_id": "shop", "task_id": "shop-003"}).status_code
                    == 201
                )
            )
            count = await session.call_tool("count_orders", {})  # the session opened before the reload still answers
            assert not count.is_error and count.structured_content["value"] == 2
        async with Client(keyed) as client:  # the keyed state kept its order: the world did not change
            assert (await client.call_tool("count_orders", {})).structured_content["value"] == 2
        add_env(root, "shop", policy="New rules.")  # now the spec changes: keyed states start over
        publish_registry(root, registry)
        wait_for(
            lambda: httpx.post(f"{server.base}/episodes", json={"env_id": "shop"}).json()["policy"] == "New rules."
        )
        async with Client(keyed) as client:
            assert (await client.call_tool("count_orders", {})).structured_content["value"] == 1
    finally:
        server.stop()
