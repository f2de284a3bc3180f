"""A read on one environment while a runaway call runs on another: latency with and without it.

The gateway serves the library and ``spin``, a copy of the library with one more read tool whose SQL
never ends (a recursive CTE with no bound) and every limit a spec may set at its ceiling. A client
reads one library member, call after call, on its own state key; in alternate rounds another
client keeps a ``spin`` call running the whole time (one after another: the executor's deadline
stops each). Prints the median and p95 latency of the read in both conditions, side by side, and
of ``/healthz`` under the runaway. Target: the read under a runaway in < 100 ms. Run:

    .venv/bin/python bench/runaway.py [--reads 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "servers" / "envs" / "library"
RUNAWAY_SQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c"
TARGET_MS = 100.0


def fleet(root: Path) -> None:
    """``library`` as shipped, and ``spin``: the library plus the runaway tool, limits at their ceilings."""
    from servers.spec import Limits

    shutil.copytree(LIBRARY, root / "library", ignore=shutil.ignore_patterns("tasks"))
    spec = json.loads((LIBRARY / "env.json").read_text())
    ceilings = {
        name: next((m.le for m in info.metadata if getattr(m, "le", None) is not None), None)
        for name, info in Limits.model_fields.items()
        if name in ("max_sql_steps", "max_call_ms")
    }
    spec.update(id="spin", name="Spin", limits={**spec.get("limits", {}), **{k: v for k, v in ceilings.items() if v}})
    spec["tools"].append(
        {
            "name": "spin",
            "description": "Counts forever.",
            "kind": "read",
            "steps": [{"kind": "return", "shape": "scalar", "sql": RUNAWAY_SQL}],
        }
    )
    (root / "spin").mkdir()
    (root / "spin" / "env.json").write_text(json.dumps(spec))
    shutil.copy(LIBRARY / "seed.json", root / "spin" / "seed.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    script = Path(sys.executable).with_name("envfleet")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "servers"]
    proc = subprocess.Popen(
        [*command, "serve", "--all", "--env-root", str(root), "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the gateway did not start")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)


async def running(http: httpx.AsyncClient) -> int:
    return (await http.get("/healthz")).json()["calls"]["running"]


async def measure(base: str, reads: int, rounds: int) -> dict[str, list[float]]:
    from servers.clients import GatewayClient

    latencies: dict[str, list[float]] = {"quiet": [], "runaway": [], "healthz": []}
    spins = 0
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as http,
        GatewayClient(base) as gateway,
        gateway.mcp(f"{base}/envs/library/s/{uuid.uuid4().hex}/mcp") as reader,
    ):

        async def read() -> float:
            started = time.perf_counter()
            result = await reader.call_tool("get_member", {"member_id": "M-1001"})
            elapsed = (time.perf_counter() - started) * 1000
            assert not result.is_error, result.content[0].text
            return elapsed

        for _ in range(20):  # warm up: the library and its statements are loaded and prepared
            await read()
        gc.collect()
        gc.disable()  # this client's own collections (up to 0.3 s on a busy machine) are not the server's latency
        for _ in range(rounds):
            while await running(http):  # the last round's runaway runs on until the executor stops it
                await anyio.sleep(0.05)
            latencies["quiet"] += [await read() for _ in range(reads)]
            async with (
                anyio.create_task_group() as tg,
                gateway.mcp(f"{base}/envs/spin/s/{uuid.uuid4().hex}/mcp") as spinner,
            ):

                async def spin_forever() -> None:
                    nonlocal spins
                    while True:
                        await spinner.call_tool("spin", {})  # each ends in a tool error when the deadline stops it
                        spins += 1

                tg.start_soon(spin_forever)
                while not await running(http):
                    await anyio.sleep(0.005)
                for _ in range(reads):
                    elapsed = await read()
                    if await running(http):  # count only reads with the runaway still running when they ended
                        latencies["runaway"].append(elapsed)
                    started = time.perf_counter()
                    assert (await http.get("/healthz")).status_code == 200
                    latencies["healthz"].append((time.perf_counter() - started) * 1000)
                tg.cancel_scope.cancel()
    gc.enable()
    print(f"({spins} runaway calls were stopped by the executor during the rounds)")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=200, help="reads per round and condition")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fleet"
        root.mkdir()
        fleet(root)
        proc, base = serve(root)
        try:
            latencies = anyio.run(measure, base, args.reads, args.rounds)
        finally:
            proc.kill()
            proc.wait()
    quiet, runaway, health = latencies["quiet"], latencies["runaway"], latencies["healthz"]
    print(
        f"{os.cpu_count()} CPUs, {args.rounds} rounds x {args.reads} reads; library get_member on its own state key\n"
    )
    print("| read of another environment | n | median ms | p95 ms | max ms |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in (
        ("no runaway", quiet),
        ("runaway call running", runaway),
        ("/healthz, runaway running", health),
    ):
        print(f"| {name} | {len(values)} | {statistics.median(values):.2f} | {p95(values):.2f} | {max(values):.2f} |")
    print(
        f"\nratio under runaway / quiet: median {statistics.median(runaway) / statistics.median(quiet):.2f}x, "
        f"p95 {p95(runaway) / p95(quiet):.2f}x"
    )
    verdict = "met" if p95(runaway) < TARGET_MS else "NOT met"
    print(f"target: the read under a runaway in < {TARGET_MS:g} ms (p95 {p95(runaway):.2f} ms): {verdict}")


if __name__ == "__main__":
    main()
