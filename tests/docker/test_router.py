"""docker/nginx.conf in front of two real fleet processes: every episode, state key and session
sticks to the replica that holds its state. Runs where nginx is installed (Debian's package)."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp import Client

from tests.conftest import MINI_SEED, MINI_SPEC, MINI_TASKS, REPO, ServerProcess, free_port, write_env, write_tasks

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)"),
]


def render(config: str, upstreams: list[str], port: int, scratch: Path) -> str:
    """The shipped config with this machine's replicas, port and scratch folders."""
    config = re.sub(
        r"    server fleet-a:8100;\n    server fleet-b:8100;\n",
        "".join(f"    server {u};\n" for u in upstreams),
        config,
    )
    config = config.replace("listen 80;", f"listen 127.0.0.1:{port};")
    temp = "".join(
        f"  {name}_temp_path {scratch / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    config = config.replace("http {\n", "http {\n" + temp, 1)
    return f"pid {scratch / 'nginx.pid'};\nerror_log stderr warn;\n" + config.replace(
        "worker_processes auto;", "worker_processes 1;"
    )


@pytest.fixture
def routed(tmp_path: Path) -> Iterator[tuple[str, list[ServerProcess]]]:
    root = tmp_path / "envs"
    folder = write_env(root / "mini", copy.deepcopy(MINI_SPEC), copy.deepcopy(MINI_SEED))
    write_tasks(folder, copy.deepcopy(MINI_TASKS))
    replicas = [ServerProcess(["--all", "--env-root", str(root)]) for _ in range(2)]
    port = free_port()
    config = render(
        (REPO / "docker" / "nginx.conf").read_text(), [f"127.0.0.1:{r.port}" for r in replicas], port, tmp_path
    )
    assert "hash $route consistent;" in config
    (tmp_path / "nginx.conf").write_text(config)
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if nginx.poll() is not None or time.monotonic() > deadline:
            out = nginx.stdout.read() if nginx.stdout and nginx.poll() is not None else ""
            for r in replicas:
                r.stop()
            raise RuntimeError(f"nginx did not start: {out}")
        time.sleep(0.1)
    yield base, replicas
    nginx.terminate()
    nginx.wait(timeout=10)
    for r in replicas:
        r.stop()


async def test_episodes_and_keys_stick_to_the_replica_holding_them(routed) -> None:
    base, replicas = routed
    episodes = [
        httpx.post(f"{base}/episodes", json={"env_id": "mini", "task_id": "mini-001"}).json() for _ in range(12)
    ]
    homes = [{e["episode_id"] for e in httpx.get(f"{r.base}/episodes").json()} for r in replicas]
    assert all(homes) and homes[0].isdisjoint(homes[1])  # spread over both replicas ...
    assert homes[0] | homes[1] == {e["episode_id"] for e in episodes}  # ... each id named by the router
    for episode in episodes:
        assert episode["mcp_url"].startswith(base)  # the agent goes through the router too
        async with Client(episode["mcp_url"]) as client:
            placed = await client.call_tool("place_order", {"sku": "C-3", "quantity": 2})
            assert not placed.is_error, placed.content
        info = httpx.get(f"{base}/episodes/{episode['episode_id']}").json()
        assert info["steps"] == 1
        score = httpx.post(
            f"{base}/episodes/{episode['episode_id']}/evaluate", json={"final_message": "ORD-0042"}
        ).json()
        assert score["success"] is True

    for index in range(6):  # ids the client chose (as envfleet run does): routed by them from the start
        chosen = f"run1.mini-001.t{index}"
        created = httpx.post(
            f"{base}/episodes", json={"env_id": "mini", "task_id": "mini-001"}, headers={"X-Episode-Id": chosen}
        )
        assert created.status_code == 201 and created.json()["episode_id"] == chosen
        async with Client(created.json()["mcp_url"]) as client:
            assert not (await client.call_tool("place_order", {"sku": "C-3", "quantity": 2})).is_error
        assert httpx.get(f"{base}/episodes/{chosen}").json()["steps"] == 1

    for _ in range(6):  # a keyed state: the write and the read land on the same replica
        url = f"{base}/envs/mini/s/{uuid.uuid4().hex}/mcp"
        async with Client(url) as client:
            await client.call_tool("place_order", {"sku": "C-3", "quantity": 1})
        async with Client(url) as client:
            assert (await client.call_tool("count_orders", {})).structured_content["value"] == 2

    async with Client(f"{base}/envs/mini/mcp", mode="legacy") as client:  # a handshake-era session on the plain URL
        await client.call_tool("place_order", {"sku": "C-3", "quantity": 1})
        assert (await client.call_tool("count_orders", {})).structured_content["value"] == 2
