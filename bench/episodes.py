"""Episode creation time and memory per live episode: EnvFleet vs an AWM-style baseline.

EnvFleet makes an episode in process: an in-memory SQLite copy of the task's template (backup
API). The baseline does what a process-per-episode design does: copy the database file and start
a server process on it. Run:

    .venv/bin/python bench/episodes.py [--baseline 10]

Prints p50/p95 creation time for a ~1 MB initial state, RSS per idle episode with 1,000 and
10,000 live episodes (the library environment), and the ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from servers import Environment, Episode  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_self() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def big_env(folder: Path, rows: int = 2000) -> Path:
    """An environment whose state is about 1 MB: 2,000 records of ~450 bytes."""
    spec = {
        "id": "big",
        "name": "Big state",
        "version": "1.0.0",
        "description": "About 1 MB of rows.",
        "domain": "benchmark",
        "clock": "2026-01-01T00:00:00Z",
        "policy": "None.",
        "tables": [
            {
                "name": "records",
                "columns": [
                    {"name": "record_id", "type": "text", "primary_key": True},
                    {"name": "body", "type": "text", "nullable": False},
                    {"name": "n", "type": "integer", "nullable": False},
                ],
            }
        ],
        "tools": [
            {
                "name": "get_record",
                "description": "A record.",
                "kind": "read",
                "parameters": {
                    "type": "object",
                    "properties": {"record_id": {"type": "string", "description": "Id."}},
                    "required": ["record_id"],
                },
                "steps": [
                    {"kind": "return", "shape": "row", "sql": "SELECT * FROM records WHERE record_id = :record_id"}
                ],
            }
        ],
    }
    seed = {
        "records": [
            {"record_id": f"R-{i:05d}", "body": ("lorem ipsum dolor sit amet " * 16)[: 420 + i % 40], "n": i}
            for i in range(rows)
        ]
    }
    target = folder / "big"
    target.mkdir(parents=True)
    (target / "env.json").write_text(json.dumps(spec))
    (target / "seed.json").write_text(json.dumps(seed))
    return target


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def ours_create(env: Environment, count: int) -> list[float]:
    times = []
    episodes = []
    for _ in range(count):
        started = time.perf_counter()
        episodes.append(Episode(env))
        times.append((time.perf_counter() - started) * 1000)
    for episode in episodes:
        episode.close()
    return times


def ours_rss(count: int) -> float:
    """RSS per live library episode, measured in a fresh process so freed memory is not reused."""
    code = (
        "import gc, sys; sys.path.insert(0, sys.argv[1]); from bench.episodes import rss_self; from servers import "
        "Environment, Episode; "
        "env = Environment.load(sys.argv[1] + '/servers/envs/library'); Episode(env).close(); gc.collect(); before "
        "= rss_self(); "
        "episodes = [Episode(env) for _ in range(int(sys.argv[2]))]; gc.collect(); "
        "print((rss_self() - before) / len(episodes))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(count)], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BASELINE_SERVER = """
import sqlite3, sys, json, uvicorn
import mcp_types as types
from mcp.server import Server
db = sqlite3.connect(sys.argv[1], check_same_thread=False)
async def list_tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="get_record", \
description="A record.", input_schema={"type": "object"})])
async def call_tool(ctx, params):
    row = db.execute("SELECT * FROM records WHERE record_id = ?", \
((params.arguments or {}).get("record_id"),)).fetchone()
    return types.CallToolResult(content=[types.TextContent(text=json.dumps(row))])
app = Server("baseline", on_list_tools=list_tools, on_call_tool=call_tool).streamable_http_app(json_response=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def baseline(db_file: Path, count: int, workdir: Path) -> tuple[list[float], float]:
    """Per episode: copy the DB file and start a server process on it; time until it accepts connections."""
    script = workdir / "baseline_server.py"
    script.write_text(BASELINE_SERVER)
    times, procs = [], []
    try:
        for index in range(count):
            started = time.perf_counter()
            copy = workdir / f"episode-{index}.sqlite"
            shutil.copyfile(db_file, copy)
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, str(script), str(copy), str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                        break
                except OSError:
                    time.sleep(0.005)
            times.append((time.perf_counter() - started) * 1000)
        per_episode = statistics.mean(rss_of(p.pid) for p in procs) + db_file.stat().st_size
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    return times, per_episode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--creates", type=int, default=500, help="Episodes created for the timing.")
    parser.add_argument("--live", type=int, nargs="+", default=[1000, 10000], help="Live episode counts for RSS.")
    parser.add_argument("--baseline", type=int, default=10, help="Baseline episodes (each a server process).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        big = Environment.load(big_env(tmpdir))
        state_bytes = big.template.conn.execute("PRAGMA page_count").fetchone()[0] * 4096
        db_file = tmpdir / "big.sqlite"
        disk = sqlite3.connect(db_file)
        big.template.conn.backup(disk)
        disk.close()

        ours = ours_create(big, args.creates)
        base_times, base_rss = baseline(db_file, args.baseline, tmpdir)
        print(f"episode creation, {state_bytes / 1e6:.2f} MB initial state:")
        print(f"  {'':28} {'p50 ms':>9} {'p95 ms':>9}")
        print(f"  {'envfleet (in-process copy)':28} {percentile(ours, 0.5):9.3f} {percentile(ours, 0.95):9.3f}")
        print(
            f"  {'baseline (file + process)':28} {percentile(base_times, 0.5):9.1f} {percentile(base_times, 0.95):9.1f}"
        )
        print(
            f"  ratio baseline/envfleet (p50): {percentile(base_times, 0.5) / percentile(ours, 0.5):,.0f}x   "
            "target: p50 <= 2 ms"
        )

        library = Environment.load(REPO / "servers" / "envs" / "library")
        lib_bytes = library.template.conn.execute("PRAGMA page_count").fetchone()[0] * 4096
        print(f"\nRSS per idle episode (library, state {lib_bytes / 1024:.0f} KB):")
        for count in args.live:
            per = ours_rss(count)
            print(
                f"  envfleet, {count:>6} live: {per / 1024:8.0f} KB  (state + {(per - lib_bytes) / 1024:.0f} KB; "
                "target: state + 100 KB)"
            )
        print(f"  baseline, per process: {base_rss / 1024:8.0f} KB  ({base_rss / max(per, 1):.0f}x envfleet)")


if __name__ == "__main__":
    main()
