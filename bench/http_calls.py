"""Tool-call throughput and server CPU per call over streamable HTTP: EnvFleet vs a bare `mcp` server.

Both servers answer the same tool, a SQLite point read of one library member, with JSON responses.
EnvFleet serves it from a one-tool environment (same rows, same query) through the full runtime:
argument validation, state keys, the authorizer, one savepoint per call. Server CPU is read from
/proc for each server process, so the client's own cost does not count. Run:

    .venv/bin/python bench/http_calls.py [--calls 2000] [--sessions 1 16]

Also prints in-process executor calls/s, without any transport.
"""

from __future__ import annotations

import argparse
import json
import os
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
from mcp import Client

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "servers" / "envs" / "library" / "seed.json"
TICKS = os.sysconf("SC_CLK_TCK")


def point_read_env(folder: Path) -> None:
    """A one-tool environment with the library's members and the same point read as the bare server."""
    library = json.loads((REPO / "servers" / "envs" / "library" / "env.json").read_text())
    members = next(t for t in library["tables"] if t["name"] == "members")
    members = {**members, "columns": [{k: v for k, v in c.items() if k != "references"} for c in members["columns"]]}
    spec = {
        "id": "bench",
        "name": "Point read",
        "version": "1.0.0",
        "description": "One SQLite point read.",
        "domain": "benchmark",
        "clock": library["clock"],
        "policy": "None.",
        "tables": [members],
        "tools": [
            {
                "name": "get_member",
                "description": "A member.",
                "kind": "read",
                "parameters": {
                    "type": "object",
                    "properties": {"member_id": {"type": "string", "description": "Card number."}},
                    "required": ["member_id"],
                },
                "steps": [
                    {"kind": "return", "shape": "row", "sql": "SELECT * FROM members WHERE member_id = :member_id"}
                ],
            }
        ],
    }
    (folder / "bench").mkdir(parents=True)
    (folder / "bench" / "env.json").write_text(json.dumps(spec))
    (folder / "bench" / "seed.json").write_text(json.dumps({"members": json.loads(SEED.read_text())["members"]}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


SERVER_CPUS = {1} if len(os.sched_getaffinity(0)) >= 2 else None
"""Servers on CPU 1, this client on CPU 0: the two never compete for a core, so runs repeat."""


def start(command: list[str], port: int) -> subprocess.Popen[bytes]:
    pin = (lambda: os.sched_setaffinity(0, SERVER_CPUS)) if SERVER_CPUS else None
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{command} did not start")


async def drive(urls: list[str], calls: int, member_ids: list[str], http: httpx.AsyncClient | None = None) -> float:
    """Spread `calls` tool calls over one client per URL, concurrently; return wall seconds."""
    per_session = calls // len(urls)

    async def session(url: str) -> None:
        async with Client(url) as client:
            await client.list_tools()
            for i in range(per_session):
                result = await client.call_tool("get_member", {"member_id": member_ids[i % len(member_ids)]})
                assert not result.is_error

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(session, url)
    return time.perf_counter() - started


def measure(proc: subprocess.Popen[bytes], urls: list[str], calls: int, member_ids: list[str]) -> tuple[float, float]:
    anyio.run(drive, urls, max(len(urls) * 10, calls // 10), member_ids)  # warm up
    cpu_before = cpu_seconds(proc.pid)
    wall = anyio.run(drive, urls, calls, member_ids)
    cpu = cpu_seconds(proc.pid) - cpu_before
    done = (calls // len(urls)) * len(urls)
    return done / wall, cpu / done * 1000


def in_process(calls: int) -> tuple[float, float]:
    import sqlite3

    sys.path.insert(0, str(REPO))
    from servers import Environment

    if SERVER_CPUS:
        os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - SERVER_CPUS)
    with tempfile.TemporaryDirectory() as tmp:
        point_read_env(Path(tmp))
        env = Environment.load(Path(tmp) / "bench")
    library = Environment.load(REPO / "servers" / "envs" / "library")
    state, lib_state = env.new_state(), library.new_state()
    ids = [m["member_id"] for m in json.loads(SEED.read_text())["members"]]
    started = time.perf_counter()
    for i in range(calls):
        env.call(state, "get_member", {"member_id": ids[i % len(ids)]})
    runtime = calls / (time.perf_counter() - started)
    raw = sqlite3.connect(":memory:")
    state.conn.backup(raw)
    started = time.perf_counter()
    for i in range(calls):
        cursor = raw.execute("SELECT * FROM members WHERE member_id = ?", (ids[i % len(ids)],))
        dict(zip([d[0] for d in cursor.description], cursor.fetchone(), strict=True))
    bare = calls / (time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(calls // 10):
        library.call(lib_state, "get_member", {"member_id": ids[i % len(ids)]})
    rich = (calls // 10) / (time.perf_counter() - started)
    rows = sum(len(r) for r in library.seed.values())
    copies = 2000
    started = time.perf_counter()
    for _ in range(copies):
        library.new_state().close()
    print(f"  new state copy (library, {rows} rows, 9 tables): {(time.perf_counter() - started) / copies * 1e6:.0f} µs")
    started = time.perf_counter()
    for _ in range(copies):
        fresh = library.new_state()
        library.call(fresh, "get_member", {"member_id": "M-1001"})  # the first statement parses the schema
        fresh.close()
    print(f"  new state copy + its first call: {(time.perf_counter() - started) / copies * 1e6:.0f} µs")
    return runtime, bare, rich


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3, help="Alternating runs per server; medians are printed.")
    parser.add_argument("--in-process-only", action="store_true", help="Skip the HTTP comparison.")
    args = parser.parse_args()
    ids = [m["member_id"] for m in json.loads(SEED.read_text())["members"]]

    print("in-process (no transport):")
    runtime, bare, rich = in_process(args.calls * 10)
    print(f"  executor, point read:        {runtime:10,.0f} calls/s")
    print(f"  raw sqlite3, point read:     {bare:10,.0f} calls/s   ({bare / runtime:.1f}x the executor)")
    print(f"  executor, library get_member (require + 5 subqueries): {rich:,.0f} calls/s")
    if args.in_process_only:
        return

    if SERVER_CPUS:
        os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - SERVER_CPUS)
    with tempfile.TemporaryDirectory() as tmp:
        point_read_env(Path(tmp))
        ours_port, bare_port = free_port(), free_port()
        envfleet = str(Path(sys.executable).with_name("envfleet"))
        ours = start(
            [envfleet, "serve", "--all", "--env-root", tmp, "--port", str(ours_port), "--log-level", "warning"],
            ours_port,
        )
        baseline = start([sys.executable, str(REPO / "bench" / "bare_server.py"), str(SEED), str(bare_port)], bare_port)
        try:
            pinned = "servers pinned to CPU 1, client to the rest" if SERVER_CPUS else "not pinned (one CPU)"
            print(
                f"\nstreamable HTTP, JSON responses, {args.calls} calls per run, median of {args.rounds} alternating "
                "runs, "
                f"{pinned}; CPU ratio 2.00x = twice the bare server's CPU per call (range over rounds):"
            )
            print(
                f"  {'sessions':>8} | {'bare calls/s':>12} | {'envfleet calls/s':>16} | {'bare CPU ms/call':>16} | "
                f"{'envfleet CPU ms/call':>20} | {'CPU ratio':>9} | range"
            )
            for sessions in args.sessions:
                bare_urls = [f"http://127.0.0.1:{bare_port}/mcp"] * sessions
                our_urls = [
                    f"http://127.0.0.1:{ours_port}/envs/bench/s/{uuid.uuid4().hex}/mcp" for _ in range(sessions)
                ]
                bare_runs, our_runs = [], []
                for _ in range(args.rounds):  # alternate, so drift on the machine hits both alike
                    bare_runs.append(measure(baseline, bare_urls, args.calls, ids))
                    our_runs.append(measure(ours, our_urls, args.calls, ids))
                bare_rate, bare_cpu = (statistics.median(r[i] for r in bare_runs) for i in (0, 1))
                our_rate, our_cpu = (statistics.median(r[i] for r in our_runs) for i in (0, 1))
                ratios = [o[1] / b[1] for b, o in zip(bare_runs, our_runs, strict=True)]
                print(
                    f"  {sessions:>8} | {bare_rate:>12,.0f} | {our_rate:>16,.0f} | {bare_cpu:>16.3f} | "
                    f"{our_cpu:>20.3f} | "
                    f"{our_cpu / bare_cpu:>8.2f}x | {min(ratios):.2f}–{max(ratios):.2f}x"
                )
        finally:
            for proc in (ours, baseline):
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
