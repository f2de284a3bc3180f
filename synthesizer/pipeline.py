"""The synthesis pipeline: topic → spec → procedural tests → dependency graph → tasks → publish.

``synthesize`` runs the stages for one environment and returns every stage's output as plain
data (so ``--dry-run`` can keep them for inspection); ``publish_result`` writes a result into an
environment root and the registry. ``run_batch`` does many environments in worker processes;
results depend only on (domain, seed, variant), never on scheduling.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers import Environment, SpecError

from . import __version__
from .catalog import load_catalog
from .dependency_graph import build_graph, graph_json
from .modeling import MODELER_VERSION, build_spec, design_domain
from .procedural_tests import run_procedural_tests
from .publish import publish_folder, write_env_folder
from .seeding import seed_rows
from .task_synthesis import synthesize_tasks

__all__ = ["Job", "Result", "synthesize", "publish_result", "run_batch", "plan_batch"]


@dataclass(frozen=True)
class Job:
    domain_id: str
    seed: int
    variant: int = 0
    tasks: int = 20
    env_id: str | None = None


@dataclass
class Result:
    job: Job
    env_id: str
    ok: bool
    reason: str = ""
    stages: dict[str, Any] = field(default_factory=dict)  # stage name -> its output (plain data)
    seconds: float = 0.0

    @property
    def files(self) -> dict[str, Any]:
        """The environment folder's files, ready to write."""
        return {"env.json": self.stages["spec"], "seed.json": self.stages["seed"],
                "tool_graph.json": self.stages["graph"], "tasks/synthesized.jsonl": self.stages["tasks"]}

    def provenance(self) -> dict[str, Any]:
        tests, tasks = self.stages.get("procedural_tests", {}), self.stages.get("task_stats", {})
        return {
            "synthesizer": __version__, "modeler": MODELER_VERSION, "backend": "procedural",
            "domain": self.job.domain_id, "sector": self.stages.get("topic", {}).get("sector"),
            "seed": self.job.seed, "variant": self.job.variant,
            "procedural_tests": {k: tests.get(k) for k in ("score", "passed", "probes")},
            "tasks": {k: tasks.get(k) for k in ("attempted", "published", "failures", "families", "templates", "chain_lengths")},
        }


def synthesize(job: Job, min_tasks: int = 1) -> Result:
    """Run stages 1–6 for one environment. Never raises for a bad draft: the result says why."""
    started = time.perf_counter()
    catalog = load_catalog()
    domain = catalog.domain(job.domain_id)
    design = design_domain(domain, seed=job.seed, variant=job.variant, env_id=job.env_id)
    result = Result(job, design.env_id, ok=False)
    result.stages["topic"] = {"domain": domain.id, "sector": catalog.sector_of[job.domain_id], "name": domain.name}
    spec = build_spec(design)
    spec["tags"] = sorted({*spec["tags"], catalog.sector_of[job.domain_id]})
    result.stages["spec"] = spec
    result.stages["seed"] = seed_rows(design)
    try:
        env = Environment.from_spec(spec, result.stages["seed"])
    except SpecError as e:
        result.reason = f"the runtime refuses the spec: {e}"
        return _done(result, started)
    report = run_procedural_tests(env, design)
    result.stages["procedural_tests"] = report.to_dict()
    if not report.passed:
        result.reason = report.why()
        return _done(result, started)
    graph = build_graph(env)
    result.stages["graph"] = graph_json(graph)
    tasks, stats = synthesize_tasks(env, design, graph, count=job.tasks, seed=job.seed)
    result.stages["tasks"] = [t.model_dump(mode="json", exclude_none=True) for t in tasks]
    result.stages["task_stats"] = stats.to_dict()
    if len(tasks) < min_tasks:
        result.reason = f"only {len(tasks)} task(s) passed the gates"
        return _done(result, started)
    result.ok = True
    return _done(result, started)


def _done(result: Result, started: float) -> Result:
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def publish_result(result: Result, env_root: Path, registry_path: Path) -> None:
    publish_folder(env_root, result.env_id, result.files, registry_path, result.provenance())


def save_stages(result: Result, out: Path) -> None:
    """Every stage's output as JSON files under ``out/<env_id>/stages/`` (for --dry-run)."""
    folder = out / result.env_id
    stages = {f"stages/{i}_{name}.json": value for i, (name, value) in enumerate(result.stages.items(), start=1)}
    write_env_folder(folder, {**stages, "stages/result.json": {"ok": result.ok, "reason": result.reason,
                                                               "seconds": result.seconds}})
    if result.ok:
        write_env_folder(folder, {**result.files, "provenance.json": result.provenance()})


def plan_batch(count: int, seed: int, tasks: int, domains: Iterable[str] | None = None) -> list[Job]:
    """``count`` jobs spread over the catalog's sectors (composites included); after one pass over
    every domain, further jobs are seeded variants."""
    catalog = load_catalog()
    if domains is None:
        by_sector: dict[str, list[str]] = {}
        for domain_id in catalog.ids():
            by_sector.setdefault(catalog.sector_of[domain_id], []).append(domain_id)
        order: list[str] = []
        while any(by_sector.values()):  # round-robin over sectors
            for sector in sorted(by_sector):
                if by_sector[sector]:
                    order.append(by_sector[sector].pop(0))
        domains = order
    domains = list(domains)
    return [Job(domains[i % len(domains)], seed, i // len(domains), tasks) for i in range(count)]


def run_batch(jobs: list[Job], workers: int | None = None, on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Synthesize every job, in parallel worker processes; results in job order."""
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    results: dict[int, Result] = {}
    if workers == 1:
        for index, job in enumerate(jobs):
            results[index] = synthesize(job)
            if on_result:
                on_result(results[index])
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(synthesize, job): index for index, job in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_result:
                    on_result(results[futures[future]])
    return [results[i] for i in range(len(jobs))]
