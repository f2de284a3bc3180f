"""What to make: topics, a corpus of user requests and batch counts turned into pipeline jobs.

Shared by ``envfleet synth`` and the REST service. A topic is matched to the catalog — or, with
the LLM backend's domain stage, kept as a topic for the model to model; a corpus is mined (by
keywords, or by the LLM judge) into catalog domains and new topics; ``count`` spreads a batch
over the catalog's sectors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .catalog import Catalog
from .pipeline import Job, plan_batch
from .topics import TopicMatch, match_topic, mine_requests, stem, tokens

if TYPE_CHECKING:
    from .llm.backend import LLMBackend

__all__ = ["Plan", "plan_jobs", "planned_env_id", "substitution"]


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    mining: dict[str, Any] | None = None  # the corpus report, when there was a corpus
    substitutions: list[dict[str, Any]] = field(
        default_factory=list
    )  # topics made as a differently named catalog domain


def planned_env_id(job: Job) -> str | None:
    """The id a planned catalog job publishes under (as the modeler names variants); None for a
    topic a model will name."""
    if job.env_id:
        return job.env_id
    if job.domain_id is None:
        return None
    return job.domain_id if job.variant == 0 else f"{job.domain_id}_v{job.variant}"


def substitution(catalog: Catalog, topic: str, match: TopicMatch) -> dict[str, Any] | None:
    """What to tell the user when ``topic`` is made as a catalog domain whose name is not the topic
    (e.g. "pet grooming salon" as pet_supplies_store): which domain, and on which words it matched."""
    if topic in catalog.domains or topic in catalog.composites:
        return None
    domain = catalog.domain(match.domain_id)
    asked, named = {stem(w) for w in tokens(topic)}, {stem(w) for w in tokens(domain.name)}
    if asked == named or asked == {stem(w) for w in tokens(match.domain_id.replace("_", " "))}:
        return None
    return {
        "topic": topic,
        "domain": match.domain_id,
        "name": domain.name,
        "sector": match.sector,
        "score": match.score,
        "matched": sorted(set(match.keywords)),
    }


def plan_jobs(
    catalog: Catalog,
    *,
    topics: list[str] | None = None,
    corpus: list[str] | None = None,
    count: int | None = None,
    seed: int = 1,
    variant: int = 0,
    tasks: int = 20,
    llm: LLMBackend | None = None,
    max_envs: int | None = None,
) -> Plan:
    """Jobs for the request; raises ``NoMatchingDomain`` for a topic nothing fits (without a model)."""
    plan = Plan()
    modeled = llm is not None and bool({"domain", "spec"} & llm.stages)
    for text in topics or []:
        exact = text in catalog.domains or text in catalog.composites  # a catalog id is made from the catalog
        if modeled and not exact:
            plan.jobs.append(Job(None, seed, variant, tasks, topic=text))
            continue
        match = match_topic(catalog, text)
        plan.jobs.append(Job(match.domain_id, seed, variant, tasks))
        note = substitution(catalog, text, match)
        if note is not None:
            plan.substitutions.append(note)
    if corpus is not None:
        mined: list[Job] = []
        if llm is None or "judge" not in llm.stages:
            report = mine_requests(catalog, corpus)
            mined = [Job(d, seed, 0, tasks) for d in report.domains()]
        else:
            from .llm.mining import mine_requests_with_llm

            report = mine_requests_with_llm(llm.client, catalog, corpus)
            mined = [Job(d, seed, 0, tasks, requests=tuple(report.examples.get(d, []))) for d in report.domains()]
            if modeled:
                mined += [
                    Job(None, seed, 0, tasks, topic=t, requests=tuple(examples[:8]))
                    for t, examples in report.new_topics.items()
                ]
        plan.mining = report.to_dict()
        plan.jobs += mined[:max_envs] if max_envs is not None else mined
    if count:
        plan.jobs += plan_batch(count, seed, tasks)
    return plan
