"""The synthesis pipeline: topic → spec → procedural tests → dependency graph → tasks → publish.

``synthesize`` runs the stages for one environment and returns every stage's output as plain
data (so ``--dry-run`` can keep them for inspection); ``publish_result`` writes a result into an
environment root and the registry. ``run_batch`` does many environments in worker processes;
results depend only on (domain, seed, variant), never on scheduling.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from servers import Environment, SpecError, Task
from servers.episodes import PROVENANCE_FILE

from . import __version__
from .catalog import Domain, load_catalog
from .dependency_graph import build_graph, graph_json
from .errors import SynthesisError
from .modeling import MODELER_VERSION, Design, build_spec, design_domain
from .procedural_tests import TestReport, run_procedural_tests
from .publish import publish_folder, write_env_folder
from .seeding import SeedingError, seed_rows
from .task_synthesis import synthesize_tasks
from .world_spec import design_record

__all__ = [
    "Job",
    "Result",
    "Written",
    "Assist",
    "AssistFailed",
    "Stopped",
    "synthesize",
    "more_tasks",
    "publish_result",
    "run_batch",
    "plan_batch",
]


@dataclass(frozen=True)
class Job:
    domain_id: str | None  # a catalog domain or composite; None when ``topic`` is modeled by a model
    seed: int
    variant: int = 0
    tasks: int = 20
    env_id: str | None = None
    topic: str | None = None  # a topic for the LLM backend to model as a new domain
    requests: tuple[str, ...] = ()  # user requests that asked for it (from a mined corpus)
    held_out: bool = False  # every task in the test split: an environment no training task comes from

    @property
    def name(self) -> str:
        return self.domain_id or self.topic or "?"

    @property
    def label(self) -> str:
        """A folder-safe name for the job before it has an environment id."""
        if self.domain_id:
            return self.domain_id
        text = self.topic or ""
        slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or "topic"
        return f"{slug}_{hashlib.sha256(text.encode()).hexdigest()[:6]}"


@dataclass
class Result:
    job: Job
    env_id: str
    ok: bool
    reason: str = ""
    stages: dict[str, Any] = field(default_factory=dict)  # stage name -> its output (plain data)
    seconds: float = 0.0
    backend: str = "procedural"

    @property
    def files(self) -> dict[str, Any]:
        """The environment folder's files, ready to write."""
        files = {
            "env.json": self.stages["spec"],
            "seed.json": self.stages["seed"],
            "tool_graph.json": self.stages["graph"],
            "tasks/synthesized.jsonl": self.stages["tasks"],
        }
        if "domain" in self.stages:
            files[DOMAIN_FILE] = self.stages["domain"]
        return files

    def provenance(self) -> dict[str, Any]:
        tests, tasks = self.stages.get("procedural_tests", {}), self.stages.get("task_stats", {})
        provenance = {
            "synthesizer": __version__,
            "modeler": MODELER_VERSION,
            "backend": self.backend,
            "domain": self.stages.get("topic", {}).get("domain", self.job.domain_id),
            "sector": self.stages.get("topic", {}).get("sector"),
            "seed": self.job.seed,
            "variant": self.job.variant,
            "procedural_tests": {k: tests.get(k) for k in ("score", "passed", "probes")},
            "tasks": {
                k: tasks.get(k)
                for k in ("attempted", "published", "failures", "families", "templates", "chain_lengths")
            },
        }
        if self.job.held_out:
            provenance["held_out"] = True
        if "design" in self.stages:  # world designs only: legacy provenance stays as it was
            provenance["design"] = self.stages["design"]
        if "llm" in self.stages:
            provenance["llm"] = self.stages["llm"]["provenance"]
        return provenance


logger = logging.getLogger(__name__)

Progress = Callable[[str], None] | None
DOMAIN_FILE = "domain.json"
"""A model-proposed domain, kept in its environment's folder (catalog domains are in the catalog)."""


class Assist(Protocol):
    """What a model adds to the procedural stages; the LLM backend (``synthesizer.llm``) implements
    it. Each method does nothing for a stage the run did not enable."""

    def model_domain(
        self, topic: str, requests: tuple[str, ...], check: Callable[[Domain, str], list[str]]
    ) -> tuple[Domain, str] | str: ...

    def model_environment(self, topic: str, requests: tuple[str, ...], tasks: int) -> Written | str | None:
        """A whole environment written by the model (None: that stage is off; text: why it failed)."""
        ...

    def seed_values(self, design: Design) -> None: ...

    def extra_tools(self, spec: dict[str, Any], seed: dict[str, Any], design: Design) -> dict[str, Any]: ...

    def rewrite_tasks(self, tasks: list[Task], business: str) -> list[Task]: ...

    def review(self, env: Environment, tests: TestReport) -> str | None: ...

    def report(self) -> dict[str, Any]: ...


@dataclass
class Written:
    """An environment a model wrote whole, already checked: its spec, seed, tool probes and tasks."""

    spec: dict[str, Any]
    seed: dict[str, Any]
    env: Environment
    tests: TestReport
    tasks: list[Task]


class _Refused(SynthesisError):
    """A draft the runtime or the procedural tests refuse; ``problems`` say why, one per line."""

    def __init__(self, reason: str, problems: list[str] | None = None) -> None:
        super().__init__(reason)
        self.problems = problems or [reason]


@dataclass
class _Built:
    design: Design
    spec: dict[str, Any]
    seed: dict[str, Any]
    env: Environment
    tests: TestReport


def _build(domain: Domain, sector: str, job: Job, assist: Assist | None = None, progress: Progress = None) -> _Built:
    """Stages 2–4 for a domain: the design, its spec and seed, the runtime's load, the procedural tests."""
    step = progress or (lambda stage: None)
    step("modeling")
    design = design_domain(domain, seed=job.seed, variant=job.variant, env_id=job.env_id)
    spec = build_spec(design)
    spec["tags"] = sorted({*spec["tags"], sector})
    step("seeding")
    if assist is not None:
        assist.seed_values(design)
    try:
        seed = seed_rows(design)
    except SeedingError as e:
        raise _Refused(f"the seed cannot be made: {e}") from None
    try:
        env = Environment.from_spec(spec, seed)
    except SpecError as e:
        raise _Refused(f"the runtime refuses the spec: {e}", [str(i) for i in e.issues]) from None
    step("procedural_tests")
    tests = run_procedural_tests(env, design)
    if not tests.passed:
        raise _Refused(tests.why(), [f"{p.tool} ({p.kind}, {p.arguments}): {p.detail}" for p in tests.failures()[:20]])
    return _Built(design, spec, seed, env, tests)


class Stopped(SynthesisError):
    """Raised by a progress callback to stop the work (a cancelled job); never caught here."""


class AssistFailed(SynthesisError):
    """A model the run depends on could not help (unreachable, refusing keys ...): the job fails, the batch goes on."""


def synthesize(job: Job, min_tasks: int = 1, assist: Assist | None = None, progress: Progress = None) -> Result:
    """Run stages 1–6 for one environment. Never raises for a bad draft: the result says why.
    ``progress`` hears the name of each stage as it starts (and may raise to stop the work)."""
    started = time.perf_counter()
    min_tasks = min(min_tasks, job.tasks)  # a job asking for no tasks publishes the environment alone
    try:
        return _synthesize(job, min_tasks, assist, started, progress or (lambda stage: None))
    except Stopped:
        raise
    except AssistFailed as e:
        result = Result(job, job.env_id or job.label, ok=False, reason=str(e), backend="llm")
        return _done(result, started, assist)
    except Exception as e:  # a bug, not a bad draft: this environment fails, the batch goes on
        logger.exception("synthesizing %s failed", job.name)
        result = Result(
            job,
            job.env_id or job.label,
            ok=False,
            reason=f"internal error: {type(e).__name__}: {e}",
            backend="procedural" if assist is None else "llm",
        )
        return _done(result, started, assist)


def _synthesize(job: Job, min_tasks: int, assist: Assist | None, started: float, step: Callable[[str], None]) -> Result:
    catalog = load_catalog()
    if job.domain_id is None and assist is not None and job.topic is not None:
        step("spec")
        written = assist.model_environment(job.topic, job.requests, job.tasks)
        if written is not None:
            return _from_written(job, assist, written, started, step, min_tasks)
    if job.domain_id is None:
        step("domain")
        if assist is None or job.topic is None:
            raise ValueError("a job without a catalog domain needs a topic and the LLM backend")
        result = Result(job, job.env_id or job.label, ok=False, backend="llm")

        def check(domain: Domain, sector: str) -> list[str]:
            try:
                built = _build(domain, sector, job)
            except _Refused as e:
                return e.problems
            tasks, stats = synthesize_tasks(
                built.env, built.design, build_graph(built.env), count=max(1, min_tasks), seed=job.seed, max_attempts=12
            )
            if len(tasks) < min_tasks:
                return [
                    f"no task passes the gates on this domain ({stats.attempted} drafted; failures: "
                    f"{dict(stats.failures)}): the customer needs records of their own with transitions they would "
                    "ask for (cancel, pay, renew ...), and relations from those records to the customer"
                ]
            return []

        modeled = assist.model_domain(job.topic, job.requests, check)
        if isinstance(modeled, str):
            result.reason = modeled
            return _done(result, started, assist)
        domain, sector = modeled
    else:
        domain, sector = catalog.domain(job.domain_id), catalog.sector_of[job.domain_id]
    result = Result(job, job.env_id or domain.id, ok=False, backend="procedural" if assist is None else "llm")
    result.stages["topic"] = {"domain": domain.id, "sector": sector, "name": domain.name}
    if job.domain_id is None:  # kept with the environment: more tasks can be made for it later
        result.stages["domain"] = domain.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    try:
        built = _build(domain, sector, job, assist, step)
    except _Refused as e:
        result.reason = str(e)
        return _done(result, started, assist)
    result.env_id = built.design.env_id
    spec, env = built.spec, built.env
    if built.design.world:
        result.stages["design"] = design_record(built.design, spec)
    if assist is not None:
        step("extra_tools")
        extended = assist.extra_tools(spec, built.seed, built.design)
        if extended is not spec:
            spec, env = extended, Environment.from_spec(extended, built.seed)
    result.stages["spec"] = spec
    result.stages["seed"] = built.seed
    result.stages["procedural_tests"] = built.tests.to_dict()
    step("dependency_graph")
    graph = build_graph(env)
    result.stages["graph"] = graph_json(graph)
    step("tasks")
    tasks, stats = synthesize_tasks(
        env, built.design, graph, count=job.tasks, seed=job.seed, test_share=1.0 if job.held_out else 0.3
    )
    if assist is not None:
        step("paraphrase")
        tasks = assist.rewrite_tasks(tasks, built.design.name)
        step("review")
        rejected = assist.review(env, built.tests)
        if rejected:
            result.reason = f"the reviewing model rejects tools: {rejected}"
            return _done(result, started, assist)
    result.stages["tasks"] = [t.model_dump(mode="json", exclude_none=True) for t in tasks]
    result.stages["task_stats"] = stats.to_dict()
    if len(tasks) < min_tasks:
        result.reason = f"only {len(tasks)} task(s) passed the gates"
        return _done(result, started, assist)
    result.ok = True
    return _done(result, started, assist)


def _from_written(
    job: Job, assist: Assist, written: Written | str, started: float, step: Callable[[str], None], min_tasks: int
) -> Result:
    """The rest of the pipeline for an environment the model wrote whole: its graph, its tasks'
    wording, the review; it was checked, probed and gated on the way in."""
    result = Result(job, job.env_id or job.label, ok=False, backend="llm")
    if isinstance(written, str):
        result.reason = written
        return _done(result, started, assist)
    result.env_id = written.env.id
    result.stages["topic"] = {"domain": written.env.spec.domain, "sector": None, "name": written.env.spec.name}
    result.stages["spec"] = written.spec
    result.stages["seed"] = written.seed
    result.stages["procedural_tests"] = written.tests.to_dict()
    step("dependency_graph")
    result.stages["graph"] = graph_json(build_graph(written.env))
    step("paraphrase")
    tasks = assist.rewrite_tasks(written.tasks, written.env.spec.name)
    step("review")
    rejected = assist.review(written.env, written.tests)
    if rejected:
        result.reason = f"the reviewing model rejects tools: {rejected}"
        return _done(result, started, assist)
    result.stages["tasks"] = [t.model_dump(mode="json", exclude_none=True) for t in tasks]
    result.stages["task_stats"] = {
        "attempted": len(written.tasks),
        "published": len(tasks),
        "failures": {},
        "families": {},
        "templates": {},
        "chain_lengths": {},
    }
    if len(tasks) < min_tasks:
        result.reason = f"only {len(tasks)} task(s) passed the gates"
        return _done(result, started, assist)
    result.ok = True
    return _done(result, started, assist)


def _done(result: Result, started: float, assist: Assist | None = None) -> Result:
    if assist is not None:
        result.stages["llm"] = assist.report()
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def publish_result(result: Result, env_root: Path, registry_path: Path, *, replace: bool = True) -> None:
    publish_folder(env_root, result.env_id, result.files, registry_path, result.provenance(), replace=replace)


def save_stages(result: Result, out: Path) -> None:
    """Every stage's output as JSON files under ``out/<env_id>/stages/`` (for --dry-run)."""
    folder = out / result.env_id
    stages = {f"stages/{i}_{name}.json": value for i, (name, value) in enumerate(result.stages.items(), start=1)}
    write_env_folder(
        folder, {**stages, "stages/result.json": {"ok": result.ok, "reason": result.reason, "seconds": result.seconds}}
    )
    if result.ok:
        write_env_folder(folder, {**result.files, "provenance.json": result.provenance()})


def more_tasks(folder: Path, *, count: int, seed: int, pack: str) -> tuple[list[Task], dict[str, Any]]:
    """New verified tasks for a published synthesized environment, as a pack named ``pack``: its
    design is rebuilt from its provenance (and ``domain.json`` for a model-proposed domain), the
    tasks are made on the environment as published, and none repeats a task it already has."""
    provenance_path = folder / PROVENANCE_FILE
    if not provenance_path.exists():
        raise ValueError(f"{folder.name} was not synthesized (no {PROVENANCE_FILE}); its tasks are written by hand")
    provenance = json.loads(provenance_path.read_text(encoding="utf-8"))
    if (folder / DOMAIN_FILE).exists():
        domain = Domain.model_validate(json.loads((folder / DOMAIN_FILE).read_text(encoding="utf-8")))
    else:
        domain = load_catalog().domain(provenance["domain"])
    env = Environment.load(folder)
    design = design_domain(domain, seed=provenance["seed"], variant=provenance.get("variant", 0), env_id=env.id)
    build_spec(design)  # fills the design's tool roles, which task synthesis reads
    tasks, stats = synthesize_tasks(
        env,
        design,
        build_graph(env),
        count=count,
        seed=seed,
        id_prefix=f"{env.id}-{pack}",
        avoid=env.tasks,
        test_share=1.0 if provenance.get("held_out") else 0.3,
    )
    return tasks, stats.to_dict()


def plan_batch(count: int, seed: int, tasks: int, domains: Iterable[str] | None = None) -> list[Job]:
    """``count`` jobs spread over the catalog's sectors (composites included), over the domains migrated to
    the world vocabulary; after one pass over every domain, further jobs are seeded variants. The last domain
    of the first pass is held out (all its tasks, in every variant, are test tasks), so a fleet has a world no
    training task was drawn from."""
    catalog = load_catalog()
    if domains is None:
        by_sector: dict[str, list[str]] = {}
        for domain_id in catalog.world_ids() or catalog.ids():
            by_sector.setdefault(catalog.sector_of[domain_id], []).append(domain_id)
        order: list[str] = []
        while any(by_sector.values()):  # round-robin over sectors
            for sector in sorted(by_sector):
                if by_sector[sector]:
                    order.append(by_sector[sector].pop(0))
        domains = order
    domains = list(domains)
    held_out = domains[min(count, len(domains)) - 1] if count > 1 and len(domains) > 1 else None
    return [
        Job(domains[i % len(domains)], seed, i // len(domains), tasks, held_out=domains[i % len(domains)] == held_out)
        for i in range(count)
    ]


def run_batch(
    jobs: list[Job],
    workers: int | None = None,
    on_result: Callable[[Result], None] | None = None,
    assist: Callable[[], Assist] | None = None,
) -> list[Result]:
    """Synthesize every job; results in job order. Procedural jobs run in worker processes; with
    ``assist`` (a factory of one :class:`Assist` per job) they run in threads, since they mostly
    wait for the model (its client caps the requests in flight)."""
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    results: dict[int, Result] = {}

    def one(job: Job) -> Result:
        return synthesize(job, assist=assist() if assist else None)

    if workers == 1:
        for index, job in enumerate(jobs):
            results[index] = one(job)
            if on_result:
                on_result(results[index])
    else:
        pool = ThreadPoolExecutor(max_workers=workers) if assist else ProcessPoolExecutor(max_workers=workers)
        with pool:
            futures = {pool.submit(one if assist else synthesize, job): index for index, job in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                if on_result:
                    on_result(results[futures[future]])
    return [results[i] for i in range(len(jobs))]
