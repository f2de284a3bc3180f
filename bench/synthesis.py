"""Offline synthesis rate: environments and gated tasks per minute, extrapolated to 1,000 envs.

    .venv/bin/python bench/synthesis.py [--envs 100] [--tasks 20] [--workers 2]

Runs the whole pipeline (modeling, seeding, procedural tests, graph, task synthesis with the four
gates) for a batch spread over the catalog, in worker processes, without publishing, and prints
the rate next to the target: 1,000 environments with at least 20 gated tasks each in 15 minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from synthesizer.pipeline import plan_batch, run_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    jobs = plan_batch(args.envs, args.seed, args.tasks)
    started = time.perf_counter()
    results = run_batch(jobs, args.workers)
    elapsed = time.perf_counter() - started
    ok = [r for r in results if r.ok]
    tasks = sum(len(r.stages.get("tasks", [])) for r in ok)
    full = sum(1 for r in ok if len(r.stages.get("tasks", [])) >= args.tasks)
    per_env = [r.seconds for r in results]
    minutes = elapsed / 60
    projected = minutes * 1000 / len(results)
    print(f"batch: {len(results)} environments × {args.tasks} tasks, {args.workers} workers, {elapsed:.1f} s")
    print(f"  published: {len(ok)} ({len(ok) / len(results):.0%}); with all {args.tasks} tasks: {full}")
    print(f"  gated tasks: {tasks}")
    print(f"  rate: {len(results) / minutes:.1f} envs/min, {tasks / minutes:.0f} gated tasks/min")
    print(
        f"  per environment (one worker): median {statistics.median(per_env):.2f} s, p95 "
        f"{sorted(per_env)[int(0.95 * (len(per_env) - 1))]:.2f} s"
    )
    print(
        f"  projected for 1,000 environments: {projected:.1f} min   (target: 15 min; ratio {projected / 15:.2f}x "
        "the budget)"
    )
    failures: dict[str, int] = {}
    for r in results:
        if not r.ok:
            key = r.reason.split(":")[0][:60]
            failures[key] = failures.get(key, 0) + 1
    for reason, count in sorted(failures.items(), key=lambda kv: -kv[1]):
        print(f"  not published: {count} × {reason}")


if __name__ == "__main__":
    main()
