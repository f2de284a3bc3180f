"""The service's request and response bodies (with the examples its OpenAPI shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..llm.config import STAGES

__all__ = ["EnvironmentsRequest", "TaskPackRequest", "JobAccepted", "JobOut", "ErrorOut"]

Stage = Literal["judge", "domain", "spec", "seed", "tools", "paraphrase", "review"]
assert set(Stage.__args__) == set(STAGES)  # type: ignore[attr-defined]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EnvironmentsRequest(_Body):
    """Exactly one source: ``topic``, ``topics``, ``corpus``, ``spec`` (an uploaded environment) or ``count``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"topic": "dental clinic", "seed": 7, "tasks_per_env": 20},
                {"topics": ["car rental", "pharmacy"], "tasks_per_env": 10},
                {"corpus": ["Book a table for two tonight.", "Cancel my dentist appointment on Friday."]},
                {"topic": "veterinary clinic with boarding", "backend": "llm"},
                {"count": 20, "seed": 3},
            ]
        },
    )

    topic: str | None = Field(
        None, min_length=1, max_length=300, description="A domain id or words like 'dental clinic'."
    )
    topics: list[str] | None = Field(
        None, min_length=1, max_length=200, description="Several topics, one environment each."
    )
    corpus: list[str] | str | None = Field(
        None,
        description='User requests to mine for topics: a list of texts, or JSONL text with one {"text": ...} per line.',
    )
    spec: dict[str, Any] | None = Field(None, description="An environment to publish as it is: its env.json ...")
    seed_data: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="... its seed.json (rows per table) ..."
    )
    tasks: list[dict[str, Any]] | None = Field(
        None, description="... and optionally a task pack; every task must pass the gates."
    )
    count: int | None = Field(None, ge=1, le=1000, description="A batch spread over the catalog's sectors.")
    seed: int = Field(1, description="The same seed gives byte-identical environments.")
    variant: int = Field(0, ge=0, description="Variant of a topic's domain.")
    tasks_per_env: int = Field(20, ge=1, le=200)
    max_envs: int | None = Field(None, ge=1, le=1000, description="At most this many environments from a corpus.")
    backend: Literal["procedural", "llm"] = "procedural"
    stages: list[Stage] | None = Field(
        None, description="LLM stages to run (default: judge, domain, seed, tools, paraphrase)."
    )
    paraphrase: bool = Field(False, description="LLM: a procedural environment with model-worded instructions.")
    review: bool = Field(False, description="LLM: add the reviewing model's gate.")
    replace: bool = Field(
        False,
        description="Replace environments that are published already under the same id "
        "(default: such an id is a 409, or a failed environment of the job).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> EnvironmentsRequest:
        given = [name for name in ("topic", "topics", "corpus", "spec", "count") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of topic, topics, corpus, spec or count (got {', '.join(given) or 'none'})"
            )
        if self.spec is not None and self.seed_data is None:
            raise ValueError("seed_data: an uploaded spec needs its seed rows (an empty object for none)")
        if self.spec is None and (self.seed_data is not None or self.tasks is not None):
            raise ValueError("seed_data and tasks go with an uploaded spec")
        if self.backend == "procedural" and (self.stages or self.paraphrase or self.review):
            raise ValueError("backend: stages, paraphrase and review need the llm backend")
        if isinstance(self.corpus, list) and not any(t.strip() for t in self.corpus):
            raise ValueError("corpus: empty; give at least one request")
        if isinstance(self.corpus, str) and not self.corpus.strip():
            raise ValueError("corpus: empty; give at least one request")
        return self

    @property
    def kind(self) -> str:
        return next(name for name in ("topic", "topics", "corpus", "spec", "count") if getattr(self, name) is not None)


class TaskPackRequest(_Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"tasks": 20, "seed": 2, "pack": "more"}]}
    )

    tasks: int = Field(20, ge=1, le=200, description="How many new tasks.")
    seed: int = Field(2, description="Seed of the new tasks (choose one the pack has not used).")
    pack: str = Field("more", pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="The pack's name: tasks/<pack>.jsonl.")


class JobAccepted(BaseModel):
    job_id: str
    status: str
    kind: str
    links: dict[str, str]


class JobOut(BaseModel):
    job_id: str
    kind: str
    status: Literal["queued", "running", "succeeded", "partial", "failed", "cancelled", "interrupted"]
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    cancel_requested: bool
    request: dict[str, Any]
    progress: dict[str, Any] = Field(
        description="planned/done/published/failed counts, and per environment its current stage, status and reason."
    )
    published: list[str]
    errors: list[str]
    report: dict[str, Any] | None
    withheld: list[str] = Field(
        default_factory=list,
        description="What this read left out because it carried no valid "
        "token: uploaded tasks (gold calls, checks, answers) and gate reports that quote them.",
    )


class ErrorOut(BaseModel):
    detail: str
