"""The service's workers: each takes the oldest queued job and does it, stage by stage, writing
its progress to the job store as it goes; publishes every environment that passes; tells the
fleet to reload; and honours a cancel at the next stage boundary.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from servers import Environment, Registry, SpecError, TaskPackError
from servers.clients import check_task_in_process

from ..catalog import load_catalog
from ..llm import LLMConfig, LLMError
from ..llm.backend import LLMBackend
from ..pipeline import Stopped, more_tasks, publish_result, synthesize
from ..planning import plan_jobs
from ..publish import InvariantViolation, PublishConflict, add_files, publish_folder, temp_folder, write_env_folder
from ..topics import read_corpus_text
from .jobs import Job, JobStore

__all__ = ["ServiceSettings", "Runner"]

logger = logging.getLogger(__name__)


@dataclass
class ServiceSettings:
    env_root: Path
    registry: Path
    db: Path
    token: str | None = None  # bearer token every write must carry
    max_queued: int = 16
    workers: int = 1
    max_upload_bytes: int = 8 * 1024 * 1024
    fleet_url: str | None = None  # told to reload after each publish (POST /admin/reload)
    fleet_token: str | None = None
    llm_config: Path | None = None
    allowed_hosts: list[str] = field(default_factory=list)


class _Progress:
    """A job's progress, written through to the store at every stage of every environment."""

    def __init__(self, store: JobStore, job: Job) -> None:
        self.store, self.job = store, job
        self.data: dict[str, Any] = {"planned": 0, "done": 0, "published": 0, "failed": 0, "environments": []}
        self.published: list[str] = []
        self.errors: list[str] = []

    def save(self) -> None:
        self.store.update(self.job.id, progress=self.data, published=self.published, errors=self.errors)

    def begin(self, name: str) -> dict[str, Any]:
        entry = {"name": name, "env_id": None, "stage": "queued", "status": "running", "reason": None}
        self.data["environments"].append(entry)
        self.save()
        return entry

    def stage(self, entry: dict[str, Any], stage: str) -> None:
        if self.store.cancel_requested(self.job.id):
            entry.update(status="cancelled", stage=stage)
            self.save()
            raise Stopped(f"cancelled during {stage}")
        entry["stage"] = stage
        self.save()

    def end(self, entry: dict[str, Any], *, env_id: str | None, ok: bool, reason: str = "", **details: Any) -> None:
        entry.update(
            env_id=env_id, status="published" if ok else "failed", stage="done", reason=reason or None, **details
        )
        self.data["done"] += 1
        if ok and env_id:
            self.data["published"] += 1
            self.published.append(env_id)
        else:
            self.data["failed"] += 1
            self.errors.append(f"{env_id or entry['name']}: {reason}")
        self.save()


class Runner:
    def __init__(self, store: JobStore, settings: ServiceSettings) -> None:
        self.store = store
        self.settings = settings
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._work, name=f"synth-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self.store.wakeup:
            self.store.wakeup.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        while not self._stop.is_set():
            job = self.store.claim()
            if job is None:
                with self.store.wakeup:
                    self.store.wakeup.wait(timeout=1.0)
                continue
            self.run(job)

    # -- one job -------------------------------------------------------------------------------

    def run(self, job: Job) -> None:
        progress = _Progress(self.store, job)
        try:
            if job.kind == "task_pack":
                report = self._task_pack(job, progress)
            elif job.kind == "spec":
                report = self._upload(job, progress)
            else:
                report = self._synthesize(job, progress)
        except Stopped:
            self.store.finish(
                job.id, "cancelled", progress=progress.data, published=progress.published, errors=progress.errors
            )
            self.notify_fleet(progress.published)
            return
        except (LLMError, ValueError, OSError) as e:
            progress.errors.append(str(e))
            self.store.finish(
                job.id, "failed", progress=progress.data, published=progress.published, errors=progress.errors
            )
            return
        except Exception as e:  # a bug: the job fails with what it did so far, the service goes on
            logger.exception("job %s failed", job.id)
            progress.errors.append(f"internal error: {type(e).__name__}: {e}")
            self.store.finish(
                job.id, "failed", progress=progress.data, published=progress.published, errors=progress.errors
            )
            return
        published, failed = progress.data["published"], progress.data["failed"]
        status = "succeeded" if published and not failed else "partial" if published else "failed"
        self.store.finish(
            job.id, status, progress=progress.data, published=progress.published, errors=progress.errors, report=report
        )
        self.notify_fleet(progress.published)

    def _synthesize(self, job: Job, progress: _Progress) -> dict[str, Any]:
        request = job.request
        llm = self._llm(request) if request.get("backend") == "llm" else None
        try:
            corpus = request.get("corpus")
            texts = read_corpus_text(corpus) if isinstance(corpus, str) else corpus
            topics = [request["topic"]] if request.get("topic") else request.get("topics")
            plan = plan_jobs(
                load_catalog(),
                topics=topics,
                corpus=texts,
                count=request.get("count"),
                seed=request["seed"],
                variant=request["variant"],
                tasks=request["tasks_per_env"],
                llm=llm,
                max_envs=request.get("max_envs"),
            )
            progress.data["planned"] = len(plan.jobs)
            progress.save()
            for planned in plan.jobs:
                entry = progress.begin(planned.name)
                result = synthesize(
                    planned,
                    assist=llm.session() if llm else None,
                    progress=lambda stage, entry=entry: progress.stage(entry, stage),
                )
                ok, reason = result.ok, result.reason
                if ok:
                    progress.stage(entry, "publish")
                    try:
                        publish_result(
                            result,
                            self.settings.env_root,
                            self.settings.registry,
                            replace=request.get("replace", False),
                        )
                    except (PublishConflict, InvariantViolation) as e:
                        ok, reason = False, str(e)
                progress.end(
                    entry,
                    env_id=result.env_id,
                    ok=ok,
                    reason=reason,
                    tools=len(result.stages.get("spec", {}).get("tools", [])),
                    tasks=len(result.stages.get("tasks", [])),
                )
            return {
                "mining": plan.mining,
                "topics": plan.substitutions,
                "llm_usage": llm.client.usage.to_dict() if llm else None,
            }
        finally:
            if llm is not None:
                llm.client.close()

    def _llm(self, request: dict[str, Any]) -> LLMBackend:
        config = LLMConfig.load(self.settings.llm_config)
        taken = set(Registry.load(self.settings.registry).ids()) if self.settings.registry.exists() else set()
        return LLMBackend.from_options(
            config,
            stages=set(request["stages"]) if request.get("stages") else None,
            paraphrase=request.get("paraphrase", False),
            review=request.get("review", False),
            taken=taken,
        )

    def _upload(self, job: Job, progress: _Progress) -> dict[str, Any]:
        """An uploaded environment: the runtime's checks, its tasks through the gates, then published as it is."""
        request = job.request
        spec, seed, tasks = request["spec"], request["seed_data"], request.get("tasks") or []
        entry = progress.begin(str(spec.get("id")))
        progress.stage(entry, "validation")
        files: dict[str, Any] = {"env.json": spec, "seed.json": seed}
        if tasks:
            files["tasks/uploaded.jsonl"] = tasks
        staging = temp_folder(self.settings.env_root, "upload", job.id)
        try:
            write_env_folder(staging, files)
            try:
                env = Environment.load(staging)
            except (SpecError, TaskPackError) as e:
                progress.end(entry, env_id=spec.get("id"), ok=False, reason=str(e))
                return {}
            progress.stage(entry, "gates")
            results = [anyio.run(check_task_in_process, env, task) for task in env.tasks]
            failing = [f"{r.task_id}: {'; '.join(r.problems)}" for r in results if not r.passed]
            if failing:
                progress.end(
                    entry,
                    env_id=env.id,
                    ok=False,
                    reason="tasks fail the gates: " + " | ".join(failing),
                    failing_tasks=[r.task_id for r in results if not r.passed],
                )
                return {}
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        progress.stage(entry, "publish")
        try:
            publish_folder(
                self.settings.env_root,
                env.id,
                files,
                self.settings.registry,
                {"backend": "upload", "job": job.id, "tasks": {"uploaded": len(tasks)}},
                replace=request.get("replace", False),
            )
        except (PublishConflict, InvariantViolation) as e:
            progress.end(entry, env_id=env.id, ok=False, reason=str(e))
            return {}
        progress.end(entry, env_id=env.id, ok=True, tools=len(env.tool_names), tasks=len(env.tasks))
        return {"gates": {r.task_id: r.passed for r in results}}

    def _task_pack(self, job: Job, progress: _Progress) -> dict[str, Any]:
        request = job.request
        env_id, pack = request["env_id"], request["pack"]
        entry = progress.begin(env_id)
        progress.stage(entry, "tasks")
        folder = self.settings.env_root / env_id
        if not folder.is_dir():
            progress.end(entry, env_id=env_id, ok=False, reason=f"{env_id!r} is not published (any more)")
            return {}
        if (folder / "tasks" / f"{pack}.jsonl").exists():
            progress.end(entry, env_id=env_id, ok=False, reason=f"{env_id} already has a task pack named {pack!r}")
            return {}
        tasks, stats = more_tasks(folder, count=request["tasks"], seed=request["seed"], pack=pack)
        if not tasks:
            progress.end(entry, env_id=env_id, ok=False, reason=f"no new task passed the gates ({stats['failures']})")
            return {"task_stats": stats}
        progress.stage(entry, "publish")
        try:
            add_files(
                self.settings.env_root,
                env_id,
                {f"tasks/{pack}.jsonl": [t.model_dump(mode="json", exclude_none=True) for t in tasks]},
                self.settings.registry,
            )
        except (PublishConflict, InvariantViolation) as e:
            progress.end(entry, env_id=env_id, ok=False, reason=str(e))
            return {"task_stats": stats}
        progress.end(entry, env_id=env_id, ok=True, tasks=len(tasks))
        return {"task_stats": stats}

    def notify_fleet(self, changed: list[str]) -> None:
        """Best effort, in the background: the fleet also watches the registry; this only makes it immediate."""
        if changed and self.settings.fleet_url:
            threading.Thread(target=self._reload_fleet, name="fleet-reload", daemon=True).start()

    def _reload_fleet(self) -> None:
        assert self.settings.fleet_url is not None
        headers = {"Authorization": f"Bearer {self.settings.fleet_token}"} if self.settings.fleet_token else {}
        try:
            httpx.post(
                self.settings.fleet_url.rstrip("/") + "/admin/reload", headers=headers, timeout=10
            ).raise_for_status()
        except httpx.HTTPError as e:
            logger.warning("could not ask the fleet at %s to reload: %s", self.settings.fleet_url, e)
