"""Jobs, kept in SQLite through SQLAlchemy, so a restart loses nothing.

A job is one request (make environments from a topic, a corpus, an uploaded spec; more tasks for
an environment) and moves ``queued → running → succeeded | partial | failed | cancelled``. A job
that was running when the service stopped is marked ``interrupted`` at the next start; queued
ones wait for a worker again. The store is also the queue: workers claim the oldest queued job
in one UPDATE, and its length is what the 429 of a full queue counts.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ..errors import SynthesisError

__all__ = ["Job", "JobStore", "QueueFull", "IdempotencyConflict", "ACTIVE", "FINISHED"]

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "partial", "failed", "cancelled", "interrupted")

_metadata = sa.MetaData()
_jobs = sa.Table(
    "jobs",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("idempotency_key", sa.String(200), unique=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("progress", sa.JSON, nullable=False),
    sa.Column("published", sa.JSON, nullable=False),
    sa.Column("errors", sa.JSON, nullable=False),
    sa.Column("report", sa.JSON),
)


class QueueFull(SynthesisError):
    """As many jobs are waiting as the service allows."""


class IdempotencyConflict(SynthesisError):
    """The idempotency key was used before, for a different request."""


@dataclass
class Job:
    id: str
    kind: str
    status: str
    created_at: float
    updated_at: float
    request: dict[str, Any]
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    progress: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    report: dict[str, Any] | None = None
    idempotency_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "kind": self.kind,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "cancel_requested": self.cancel_requested,
            "request": self.request,
            "progress": self.progress,
            "published": self.published,
            "errors": self.errors,
            "report": self.report,
        }


def request_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JobStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        _metadata.create_all(self.engine)
        self._lock = threading.Lock()
        self.wakeup = threading.Condition()

    def close(self) -> None:
        self.engine.dispose()

    # -- lifecycle -----------------------------------------------------------------------------

    def recover(self) -> int:
        """At start: jobs a previous process was running are ``interrupted`` (nothing silently lost)."""
        now = time.time()
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(_jobs)
                .where(_jobs.c.status == "running")
                .values(
                    status="interrupted",
                    updated_at=now,
                    finished_at=now,
                    errors=sa.func.json_insert(
                        _jobs.c.errors,
                        "$[#]",
                        "the service stopped while this job was running; "
                        "what it published before is kept; submit it again for the rest",
                    ),
                )
            ).rowcount

    def submit(
        self, kind: str, request: dict[str, Any], *, max_queued: int, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """A new queued job, or the job this idempotency key already made (then ``False``)."""
        digest = request_hash({"kind": kind, **request})
        with self._lock, self.engine.begin() as conn:
            if idempotency_key is not None:
                row = conn.execute(sa.select(_jobs).where(_jobs.c.idempotency_key == idempotency_key)).first()
                if row is not None:
                    if row.request_hash != digest:
                        raise IdempotencyConflict(
                            f"Idempotency-Key {idempotency_key!r} was used for a different request "
                            f"(job {row.id}); use a new key"
                        )
                    return _job(row), False
            queued = conn.execute(
                sa.select(sa.func.count()).select_from(_jobs).where(_jobs.c.status == "queued")
            ).scalar_one()
            if queued >= max_queued:
                raise QueueFull(
                    f"{queued} jobs are already waiting, the most this service queues; retry when some finish"
                )
            now = time.time()
            job = Job(uuid.uuid4().hex, kind, "queued", now, now, request, idempotency_key=idempotency_key)
            conn.execute(
                sa.insert(_jobs).values(
                    id=job.id,
                    kind=kind,
                    status="queued",
                    created_at=now,
                    updated_at=now,
                    request=request,
                    request_hash=digest,
                    idempotency_key=idempotency_key,
                    cancel_requested=False,
                    progress={},
                    published=[],
                    errors=[],
                )
            )
        with self.wakeup:
            self.wakeup.notify()
        return job, True

    def replay(self, kind: str, request: dict[str, Any], idempotency_key: str | None) -> Job | None:
        """The job this idempotency key made for this very request, if any (a retried POST)."""
        if idempotency_key is None:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.idempotency_key == idempotency_key)).first()
        if row is None:
            return None
        if row.request_hash != request_hash({"kind": kind, **request}):
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} was used for a different request (job {row.id}); use a new key"
            )
        return _job(row)

    def claim(self) -> Job | None:
        """The oldest queued job, now running (or None)."""
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(
                sa.select(_jobs).where(_jobs.c.status == "queued").order_by(_jobs.c.created_at).limit(1)
            ).first()
            if row is None:
                return None
            now = time.time()
            conn.execute(
                sa.update(_jobs).where(_jobs.c.id == row.id).values(status="running", started_at=now, updated_at=now)
            )
        return self.get(row.id)

    def update(self, job_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id).values(updated_at=time.time(), **values))

    def finish(self, job_id: str, status: str, **values: Any) -> None:
        now = time.time()
        self.update(job_id, status=status, finished_at=now, **values)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job now; ask a running one to stop at its next stage. Finished jobs stay as they are."""
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.id == job_id)).first()
            if row is None:
                return None
            now = time.time()
            if row.status == "queued":
                conn.execute(
                    sa.update(_jobs)
                    .where(_jobs.c.id == job_id)
                    .values(status="cancelled", cancel_requested=True, updated_at=now, finished_at=now)
                )
            elif row.status == "running":
                conn.execute(sa.update(_jobs).where(_jobs.c.id == job_id).values(cancel_requested=True, updated_at=now))
        return self.get(job_id)

    # -- reading -------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_jobs).where(_jobs.c.id == job_id)).first()
        return _job(row) if row is not None else None

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.execute(sa.select(_jobs.c.cancel_requested).where(_jobs.c.id == job_id)).scalar())

    def list(self, status: str | None = None, limit: int = 100) -> list[Job]:
        query = sa.select(_jobs).order_by(_jobs.c.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(_jobs.c.status == status)
        with self.engine.connect() as conn:
            return [_job(row) for row in conn.execute(query)]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(conn.execute(sa.select(_jobs.c.status, sa.func.count()).group_by(_jobs.c.status)).all())


def _job(row: Any) -> Job:
    return Job(
        id=row.id,
        kind=row.kind,
        status=row.status,
        created_at=row.created_at,
        updated_at=row.updated_at,
        request=row.request,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cancel_requested=bool(row.cancel_requested),
        progress=row.progress or {},
        published=row.published or [],
        errors=row.errors or [],
        report=row.report,
        idempotency_key=row.idempotency_key,
    )
