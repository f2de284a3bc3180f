"""A run's scores: mean reward and success over the trials that ran, pass^k as τ-bench defines it,
and a line per task. Trials that failed for infrastructure reasons are counted apart and left out
of every model score.

pass^k is the chance that k independent trials of a task all succeed, estimated from n trials
with c successes as C(c, k) / C(n, k), averaged over tasks (tasks with fewer than k scored
trials are left out of that k).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from math import comb
from typing import Any

__all__ = ["summarize", "pass_hat_k"]


def pass_hat_k(trials: int, successes: int, k: int) -> float:
    return comb(successes, k) / comb(trials, k)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in records if r.get("status") == "ok" and r.get("reward") is not None]
    infra = [r for r in records if r.get("status") == "infra_error"]
    by_task: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in scored:
        by_task[(record["env_id"], record["task_id"])].append(record)
    max_k = max((len(v) for v in by_task.values()), default=0)
    pass_k = {}
    for k in range(1, max_k + 1):
        eligible = [v for v in by_task.values() if len(v) >= k]
        if eligible:
            pass_k[str(k)] = round(
                statistics.fmean(pass_hat_k(len(v), sum(bool(r["success"]) for r in v), k) for v in eligible), 4
            )
    tasks = []
    for (env_id, task_id), runs in sorted(by_task.items()):
        successes = sum(bool(r["success"]) for r in runs)
        tasks.append(
            {
                "env_id": env_id,
                "task_id": task_id,
                "trials": len(runs),
                "successes": successes,
                "mean_reward": round(statistics.fmean(r["reward"] for r in runs), 4),
                "pass^k": {str(k): round(pass_hat_k(len(runs), successes, k), 4) for k in range(1, len(runs) + 1)},
            }
        )
    infra_tasks = sorted({r["task_id"] for r in infra})
    tokens = {
        f"{side}_{kind}": sum((r.get("usage") or {}).get(side, {}).get(f"{kind}_tokens", 0) for r in records)
        for side in ("agent", "user")
        for kind in ("prompt", "completion")
    }
    return {
        "trials": len(records),
        "scored": len(scored),
        "infra_errors": len(infra),
        "infra_by_stage": dict(sorted(_count(r["infra_error"]["stage"] for r in infra).items())),
        "infra_tasks": infra_tasks,
        "mean_reward": round(statistics.fmean(r["reward"] for r in scored), 4) if scored else None,
        "success_rate": round(sum(bool(r["success"]) for r in scored) / len(scored), 4) if scored else None,
        "pass^k": pass_k,
        "tasks": tasks,
        "tokens": tokens,
        "mean_seconds": round(statistics.fmean(r.get("seconds", 0) for r in scored), 3) if scored else None,
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(counts)
