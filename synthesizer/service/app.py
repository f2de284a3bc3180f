"""The synthesizer's REST API (FastAPI): submit work as jobs, follow them, browse and manage the
published environments. Every write needs the bearer token when one is set; reads are open but
never show what would let an agent game an evaluation (uploaded tasks' gold calls, checks and
answers, and gate failures that quote them) without that token. Every route checks Host and
Origin as the gateway does, so a web page cannot drive a local service (DNS rebinding, CSRF).
"""

from __future__ import annotations

import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servers import Environment, Registry, RegistryError, SpecError, TaskPackError
from servers.episodes import PROVENANCE_FILE
from servers.serving import DOCS_KWARGS, HostGuard, mount_offline_docs

from .. import __version__
from ..catalog import load_catalog
from ..dependency_graph import build_graph, graph_json
from ..llm import LLMConfig, LLMError
from ..llm.backend import LLMBackend
from ..planning import plan_jobs, planned_env_id
from ..publish import clean_stale, unpublish, write_env_folder
from ..topics import NoMatchingDomain, read_corpus_text
from .jobs import IdempotencyConflict, JobStore, QueueFull
from .runner import Runner, ServiceSettings
from .schemas import EnvironmentsRequest, ErrorOut, JobAccepted, JobOut, TaskPackRequest

__all__ = ["create_app", "HostCheck", "public_job", "allowed_host_patterns"]

WITHHELD = "withheld: send the service's bearer token to read it"


def allowed_host_patterns(hosts: list[str]) -> list[str]:
    """``--allowed-host`` values as the gateway's Host patterns: a bare name is accepted with any port."""
    if "*" in hosts:
        return ["*"]
    patterns: list[str] = []
    for host in hosts:
        bare = host.startswith("[") and host.endswith("]") or ":" not in host
        patterns += [host, f"{host}:*"] if bare else [host]
    return patterns


class HostCheck(HostGuard):
    """The gateway's Host/Origin check (``servers.serving.HostGuard``) on every route: localhost by
    default, plus the allowed hosts (``--allowed-host`` values); a foreign Host is a 421, a foreign Origin a 403."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        super().__init__(app, allowed_host_patterns(allowed_hosts))


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """A job as a reader without the token sees it: uploaded tasks (their gold calls, checks and
    answers) are withheld, and so is what a failed gate or load said about them (it quotes checks
    and expected values); the ids of failing tasks stay. ``withheld`` lists what was left out."""
    if not isinstance(job["request"].get("tasks"), list):
        return {**job, "withheld": []}
    request = {**job["request"], "tasks": {"count": len(job["request"]["tasks"]), "withheld": WITHHELD}}
    withheld = ["request.tasks"]
    progress = dict(job["progress"] or {})
    if any(e.get("reason") for e in progress.get("environments", [])):
        progress["environments"] = [
            {
                **e,
                "reason": e["reason"]
                and (
                    f"tasks fail the gates: {', '.join(e['failing_tasks'])} (details {WITHHELD})"
                    if e.get("failing_tasks")
                    else f"details {WITHHELD}"
                ),
            }
            for e in progress["environments"]
        ]
        withheld.append("progress.environments[].reason")
    errors = [f"{len(job['errors'])} error(s), {WITHHELD}"] if job["errors"] else []
    if errors:
        withheld.append("errors")
    return {**job, "request": request, "progress": progress, "errors": errors, "withheld": withheld}


class UploadLimit:
    """Refuses request bodies over the limit with 413 — by Content-Length, or while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(int(declared), scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI passes an HTTPException raised while it reads the body through
                raise HTTPException(413, self._message(seen))
            return message

        await self.app(scope, counted, send)

    def _message(self, size: int) -> str:
        return (
            f"body: {size:,} bytes or more is over this service's upload limit of {self.max_bytes:,} bytes "
            "(--max-upload-mb)"
        )

    async def _refuse(self, size: int, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"detail": self._message(size)}, status_code=413)(scope, receive, send)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p != "body"]
    return ".".join(parts) or "body"


def create_app(settings: ServiceSettings) -> FastAPI:
    store = JobStore(settings.db)
    runner = Runner(store, settings)
    bearer = HTTPBearer(auto_error=False, description="The service's token (ENVFLEET_SYNTH_TOKEN), for every write.")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store.recover()
        clean_stale(settings.env_root, settings.registry)  # what publishers killed mid-publish left
        runner.start()
        try:
            yield
        finally:
            runner.stop()
            store.close()

    app = FastAPI(
        **DOCS_KWARGS,
        title="EnvFleet synthesizer",
        version=__version__,
        lifespan=lifespan,
        summary="Make tool-use environments and task packs as jobs; browse and manage the published fleet.",
        description="Every write (POST, DELETE) needs `Authorization: Bearer <token>` when the service has a token; "
        "without "
        "that token, job reads withhold uploaded tasks (gold calls, checks, answers) and what their gates "
        "said. POSTs take an `Idempotency-Key` header: the same key and body give back the same job.",
    )
    mount_offline_docs(app)
    app.add_middleware(UploadLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(HostCheck, allowed_hosts=settings.allowed_hosts)  # outermost: before anything reads the body
    app.state.store, app.state.runner = store, runner

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        broken = next((e for e in error.errors() if e["type"] == "json_invalid"), None)
        if broken is not None:
            position = broken["loc"][-1] if broken["loc"] else "?"
            reason = (broken.get("ctx") or {}).get("error", "not JSON")
            message = f"body: malformed JSON at character {position}: {reason}"
            return JSONResponse({"detail": message, "errors": [{"field": "body", "message": message}]}, status_code=400)
        problems = [
            {"field": _field(tuple(e["loc"])), "message": e["msg"].removeprefix("Value error, ")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{p['field']}: {p['message']}" if p["field"] != "body" else p["message"] for p in problems)
        return JSONResponse({"detail": detail, "errors": problems}, status_code=422)

    async def authorize(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), settings.token.encode()):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid bearer token is required for this request",
                headers={"WWW-Authenticate": "Bearer"},
            )

    async def trusted(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> bool:
        """Whether a read may show secrets: only with the service's token (a service without one never shows them)."""
        if credentials is None or settings.token is None:
            return False
        await authorize(credentials)  # a wrong token is a 401, not a quiet downgrade
        return True

    def view(job: Any, full: bool) -> dict[str, Any]:
        data = job.to_dict()
        return {**data, "withheld": []} if full else public_job(data)

    def registry() -> Registry | None:
        if not settings.registry.exists():
            return None
        try:
            return Registry.load(settings.registry)
        except RegistryError as e:
            raise HTTPException(503, f"the registry cannot be read: {e}") from None

    def entry_or_404(env_id: str) -> tuple[Registry, Any]:
        reg = registry()
        if reg is None or env_id not in reg.entries:
            raise HTTPException(404, f"unknown environment {env_id!r}")
        return reg, reg.entries[env_id]

    def accepted(job: Any, created: bool, response: Response) -> JobAccepted:
        response.status_code = 202
        response.headers["Location"] = f"/v1/jobs/{job.id}"
        if not created:
            response.headers["Idempotent-Replayed"] = "true"
        return JobAccepted(job_id=job.id, status=job.status, kind=job.kind, links={"self": f"/v1/jobs/{job.id}"})

    def submit(kind: str, body: dict[str, Any], key: str | None) -> tuple[Any, bool]:
        try:
            return store.submit(kind, body, max_queued=settings.max_queued, idempotency_key=key)
        except QueueFull as e:
            raise HTTPException(429, str(e), headers={"Retry-After": "30"}) from None
        except IdempotencyConflict as e:
            raise HTTPException(409, str(e)) from None

    # -- fleet ---------------------------------------------------------------------------------

    @app.get("/healthz", tags=["service"], summary="Liveness, jobs by status, the queue")
    async def healthz() -> dict[str, Any]:
        counts = store.counts()
        return {
            "status": "ok",
            "version": __version__,
            "jobs": counts,
            "workers": settings.workers,
            "queue": {"queued": counts.get("queued", 0), "max": settings.max_queued},
        }

    @app.get(
        "/registry.json",
        tags=["environments"],
        summary="The fleet's registry.json",
        response_model=None,
        responses={404: {"model": ErrorOut}},
    )
    async def registry_json() -> Response:
        if not settings.registry.exists():
            raise HTTPException(404, "nothing is published yet")
        return Response(settings.registry.read_bytes(), media_type="application/json")

    # -- environments --------------------------------------------------------------------------

    @app.post(
        "/v1/environments",
        status_code=202,
        response_model=JobAccepted,
        tags=["environments"],
        summary="Make environments (a topic, topics, a corpus, a batch) or publish an uploaded one, as a job",
        dependencies=[Depends(authorize)],
        responses={
            400: {"model": ErrorOut},
            401: {"model": ErrorOut},
            409: {"model": ErrorOut},
            413: {"model": ErrorOut},
            422: {"model": ErrorOut},
            429: {"model": ErrorOut},
        },
    )
    def make_environments(
        body: EnvironmentsRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JobAccepted:
        request = body.model_dump(mode="json", exclude_none=True)
        try:
            earlier = store.replay(body.kind, request, idempotency_key)
        except IdempotencyConflict as e:
            raise HTTPException(409, str(e)) from None
        if earlier is not None:  # a retried POST: the job it made, whatever has happened since
            return accepted(earlier, False, response)
        if body.spec is not None:
            _check_upload(body)
        elif body.backend == "procedural":
            _check_plan(body)
        if body.backend == "llm":
            try:
                LLMBackend.from_options(
                    LLMConfig.load(settings.llm_config),
                    stages=set(body.stages or []) or None,
                    paraphrase=body.paraphrase,
                    review=body.review,
                ).client.close()
            except LLMError as e:
                raise HTTPException(422, f"backend: the llm backend is not usable on this service: {e}") from None
        job, created = submit(body.kind, request, idempotency_key)
        return accepted(job, created, response)

    @app.get("/v1/environments", tags=["environments"], summary="The published environments (registry entries)")
    async def list_environments(
        domain: str | None = None, sector: str | None = None, tag: str | None = None
    ) -> list[dict[str, Any]]:
        reg = registry()
        if reg is None:
            return []
        entries = [reg.entries[i] for i in reg.ids()]
        if domain:
            entries = [e for e in entries if e.domain == domain or (e.provenance or {}).get("domain") == domain]
        if sector:
            entries = [e for e in entries if (e.provenance or {}).get("sector") == sector or sector in e.tags]
        if tag:
            entries = [e for e in entries if tag in e.tags]
        return [e.model_dump(mode="json", by_alias=True) for e in entries]

    @app.get(
        "/v1/environments/{env_id}",
        tags=["environments"],
        responses={404: {"model": ErrorOut}},
        summary="One environment: spec summary, tools, dependency graph, task packs, quality report",
    )
    def get_environment(env_id: str) -> dict[str, Any]:
        reg, entry = entry_or_404(env_id)
        folder = reg.folder(env_id)
        try:
            env = reg.environment(env_id)
        except SpecError as e:
            raise HTTPException(503, f"{env_id!r} is listed but does not load: {e}") from None
        graph_file = folder / "tool_graph.json"
        graph = (
            json.loads(graph_file.read_text(encoding="utf-8")) if graph_file.exists() else graph_json(build_graph(env))
        )
        packs = []
        for pack in env.task_packs:
            difficulty: dict[str, int] = {}
            for task in pack.tasks:
                difficulty[task.difficulty] = difficulty.get(task.difficulty, 0) + 1
            packs.append(
                {
                    "name": pack.name,
                    "tasks": len(pack.tasks),
                    "splits": pack.splits,
                    "difficulty": difficulty,
                    "gold_calls": _histogram(len(t.gold) for t in pack.tasks),
                }
            )
        provenance = entry.provenance or {}
        return {
            "entry": entry.model_dump(mode="json", by_alias=True),
            "spec": {
                "name": env.spec.name,
                "description": env.spec.description,
                "domain": env.spec.domain,
                "clock": env.spec.clock.isoformat(),
                "policy": env.spec.policy,
                "tables": [{"name": t.name, "columns": [c.name for c in t.columns]} for t in env.spec.tables],
            },
            "tools": [
                {"name": t.name, "kind": t.kind, "description": t.description, **env.report.tools[t.name].to_dict()}
                for t in env.spec.tools
            ],
            "graph": graph,
            "task_packs": packs,
            "quality": {
                "backend": provenance.get("backend", "hand-written"),
                "procedural_tests": provenance.get("procedural_tests"),
                "tasks": provenance.get("tasks"),
                "llm": provenance.get("llm"),
            }
            if provenance
            else None,
        }

    @app.post(
        "/v1/environments/{env_id}/task-packs",
        status_code=202,
        response_model=JobAccepted,
        tags=["environments"],
        summary="More gold-verified tasks for a synthesized environment, as a job",
        dependencies=[Depends(authorize)],
        responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 429: {"model": ErrorOut}},
    )
    def more_task_packs(
        env_id: str,
        body: TaskPackRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JobAccepted:
        request = {"env_id": env_id, **body.model_dump(mode="json")}
        try:
            earlier = store.replay("task_pack", request, idempotency_key)
        except IdempotencyConflict as e:
            raise HTTPException(409, str(e)) from None
        if earlier is not None:
            return accepted(earlier, False, response)
        reg, _ = entry_or_404(env_id)
        folder = reg.folder(env_id)
        if not (folder / PROVENANCE_FILE).exists():
            raise HTTPException(
                409, f"{env_id!r} was written by hand; only synthesized environments get more tasks here"
            )
        if (folder / "tasks" / f"{body.pack}.jsonl").exists():
            raise HTTPException(409, f"pack: {env_id!r} already has a task pack named {body.pack!r}")
        job, created = submit("task_pack", request, idempotency_key)
        return accepted(job, created, response)

    @app.delete(
        "/v1/environments/{env_id}",
        status_code=204,
        tags=["environments"],
        dependencies=[Depends(authorize)],
        summary="Unpublish an environment and delete its folder",
        responses={404: {"model": ErrorOut}},
    )
    def delete_environment(env_id: str) -> Response:
        entry_or_404(env_id)
        busy = [
            j.id
            for j in store.list(None, 1000)
            if j.status in ("queued", "running") and j.kind == "task_pack" and j.request.get("env_id") == env_id
        ]
        if busy:
            raise HTTPException(409, f"job(s) {', '.join(busy)} are making tasks for {env_id!r}; cancel them or wait")
        unpublish(settings.env_root, env_id, settings.registry)
        runner.notify_fleet([env_id])
        return Response(status_code=204)

    # -- jobs ----------------------------------------------------------------------------------

    @app.get("/v1/jobs", response_model=list[JobOut], tags=["jobs"], summary="Jobs, newest first")
    async def list_jobs(
        status_filter: Annotated[str | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        full: bool = Depends(trusted),
    ) -> list[dict[str, Any]]:
        return [view(j, full) for j in store.list(status_filter, limit)]

    @app.get(
        "/v1/jobs/{job_id}",
        response_model=JobOut,
        tags=["jobs"],
        responses={404: {"model": ErrorOut}},
        summary="A job: its status, stage-by-stage progress, what it published, its errors",
    )
    async def get_job(job_id: str, full: bool = Depends(trusted)) -> dict[str, Any]:
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return view(job, full)

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        response_model=JobOut,
        tags=["jobs"],
        dependencies=[Depends(authorize)],
        summary="Cancel a queued job, or stop a running one at its next stage",
        responses={404: {"model": ErrorOut}, 409: {"model": ErrorOut}},
    )
    async def cancel_job(job_id: str, full: bool = Depends(trusted)) -> dict[str, Any]:
        job = store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        if job.status == "cancelled":
            return view(job, full)  # a retried cancel gets the same answer
        if job.status not in ("queued", "running"):
            raise HTTPException(409, f"job {job_id} already finished ({job.status})")
        cancelled = store.cancel(job_id)
        assert cancelled is not None
        return view(cancelled, full)

    def _check_plan(body: EnvironmentsRequest) -> None:
        """Topics and corpora are planned now (it is cheap without a model), so a topic nothing fits or
        an unreadable corpus is a 422 naming the field, and an id published already is a 409."""
        field = body.kind
        try:
            corpus = read_corpus_text(body.corpus) if isinstance(body.corpus, str) else body.corpus
            plan = plan_jobs(
                load_catalog(),
                topics=[body.topic] if body.topic else body.topics,
                corpus=corpus,
                count=body.count,
                seed=body.seed,
                variant=body.variant,
                tasks=body.tasks_per_env,
                max_envs=body.max_envs,
            )
        except (NoMatchingDomain, ValueError) as e:
            raise HTTPException(422, f"{field}: {e}") from None
        if not plan.jobs:
            raise HTTPException(
                422,
                f"{field}: nothing to make: no request in it needs state a system keeps "
                f"({(plan.mining or {}).get('stateful', 0)} stateful of {(plan.mining or {}).get('total', 0)})",
            )
        reg = registry()
        taken = sorted({planned_env_id(j) for j in plan.jobs} & set(reg.entries if reg else ()))  # type: ignore[type-var]
        if taken and not body.replace:
            raise HTTPException(
                409,
                f'{field}: {", ".join(taken)} is published already; pass "replace": true, or another seed or variant',
            )

    def _check_upload(body: EnvironmentsRequest) -> None:
        """An uploaded environment is checked now, so a bad one is a 422 naming the field, not a failed job."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "upload"
            files: dict[str, Any] = {"env.json": body.spec, "seed.json": body.seed_data}
            if body.tasks:
                files["tasks/uploaded.jsonl"] = body.tasks
            write_env_folder(folder, files)
            try:
                env = Environment.load(folder)
            except (SpecError, TaskPackError) as e:
                where = "tasks" if isinstance(e, TaskPackError) else "spec"
                issues = [f"{where}.{i.location}: {i.message}" for i in e.issues]
                raise HTTPException(422, f"{where}: {len(issues)} problem(s): " + "; ".join(issues)) from None
        reg = registry()
        if reg is not None and env.id in reg.entries and not body.replace:
            raise HTTPException(
                409,
                f'spec.id: an environment {env.id!r} is already published; pass "replace": true, or choose another id',
            )

    return app


def _histogram(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: int(kv[0])))
