"""The LLM backend wired into the pipeline: one :class:`LLMSession` per environment implements the
pipeline's ``Assist`` hooks with the stages a run enabled, and keeps that environment's reports,
usage and cache keys (its provenance).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from servers import Environment, Task

from ..catalog import Catalog, Domain, load_catalog
from ..modeling import Design
from ..pipeline import AssistFailed, Written
from ..procedural_tests import TestReport, ToolProbes, probe_tools
from .client import LLMClient
from .config import STAGES, LLMConfig
from .domains import propose_domain
from .environments import propose_environment, propose_tasks
from .errors import LLMConfigError, LLMError
from .paraphrase import paraphrase_tasks
from .prompts import PROMPT_VERSION
from .review import describe, review_tools
from .seed_values import propose_seed_values
from .tools import propose_tools

__all__ = ["LLMBackend", "LLMSession", "DEFAULT_STAGES"]

DEFAULT_STAGES = frozenset({"judge", "domain", "seed", "tools", "paraphrase"})
"""What ``--backend llm`` does unless told otherwise; ``review`` is an extra gate, off by default."""


class LLMBackend:
    """What every environment of a run shares: the client, the catalog and the enabled stages."""

    def __init__(
        self,
        client: LLMClient,
        stages: frozenset[str] | set[str] = DEFAULT_STAGES,
        *,
        tools_per_env: int = 3,
        catalog: Catalog | None = None,
        taken: set[str] | None = None,
    ) -> None:
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise LLMConfigError(f"unknown LLM stage(s): {', '.join(sorted(unknown))} (stages: {', '.join(STAGES)})")
        self.client = client
        self.stages = frozenset(stages)
        self.tools_per_env = tools_per_env
        self.catalog = catalog or load_catalog()
        self._taken = set(taken or ())  # environment ids a new domain may not have
        self._claims = threading.Lock()

    def claim(self, env_id: str) -> bool:
        """Reserve ``env_id`` for one modeled domain of this run; False when it is taken."""
        with self._claims:
            if env_id in self._taken:
                return False
            self._taken.add(env_id)
            return True

    @classmethod
    def from_options(
        cls,
        config: LLMConfig,
        *,
        stages: set[str] | None = None,
        paraphrase: bool = False,
        review: bool = False,
        taken: set[str] | None = None,
    ) -> LLMBackend:
        """The stages a run asked for: explicit ones, or only wording (``paraphrase``), or the
        defaults; ``review`` adds the reviewing gate. A stage without a model fails here, before any call."""
        chosen = set(stages) if stages else {"paraphrase"} if paraphrase else set(DEFAULT_STAGES)
        if review:
            chosen.add("review")
        backend = cls(LLMClient(config), chosen, taken=taken)
        for stage in sorted(chosen):
            config.model_for(stage)
        return backend

    def session(self) -> LLMSession:
        return LLMSession(self)


class LLMSession:
    """The ``Assist`` of one environment's synthesis."""

    def __init__(self, backend: LLMBackend) -> None:
        self.backend = backend
        self.stages = backend.stages
        self.client = backend.client.scoped()
        self.reports: dict[str, Any] = {}
        self._extra: tuple[Design, dict[str, ToolProbes]] | None = None

    def _guard(self, stage: str, work: Callable[[], Any]) -> Any:
        try:
            return work()
        except LLMError as e:
            self.reports[stage] = {"error": str(e)}
            raise AssistFailed(f"LLM {stage} stage: {e}") from None

    def model_domain(
        self, topic: str, requests: tuple[str, ...], check: Callable[[Domain, str], list[str]]
    ) -> tuple[Domain, str] | str:
        if "domain" not in self.stages:
            return "the LLM domain stage is off, and the topic matches no catalog domain"
        proposal = self._guard(
            "domain",
            lambda: propose_domain(
                self.client,
                self.backend.catalog,
                topic,
                requests=list(requests),
                check_env=check,
                claim=self.backend.claim,
            ),
        )
        self.reports["domain"] = proposal.report()
        if proposal.value is None:
            listed = "; ".join(proposal.problems[:5]) + (
                f" (+{len(proposal.problems) - 5} more)" if len(proposal.problems) > 5 else ""
            )
            verb = "refused" if proposal.refused and len(proposal.problems) == 1 else "still fails"
            return f"the model's domain for {topic!r} {verb} after {len(proposal.attempts)} round(s): {listed}"
        return proposal.value.domain, proposal.value.sector

    def model_environment(self, topic: str, requests: tuple[str, ...], tasks: int) -> Written | str | None:
        if "spec" not in self.stages:
            return None
        written = self._guard(
            "spec",
            lambda: propose_environment(
                self.client, topic, requests=list(requests), claim=self.backend.claim, example=_example()
            ),
        )
        self.reports["spec"] = written.report()
        if written.value is None:
            listed = "; ".join(written.problems[:5]) + (
                f" (+{len(written.problems) - 5} more)" if len(written.problems) > 5 else ""
            )
            return f"the model's environment for {topic!r} still fails after {len(written.attempts)} round(s): {listed}"
        outcome = self._guard("spec", lambda: propose_tasks(self.client, written.value, tasks))  # type: ignore[arg-type]
        self.reports["spec_tasks"] = outcome.report()
        proposed = written.value
        return Written(proposed.spec, proposed.seed, proposed.env, proposed.tests, outcome.tasks)

    def seed_values(self, design: Design) -> None:
        if "seed" in self.stages:
            outcome = self._guard("seed", lambda: propose_seed_values(self.client, design))
            design.vocabulary.update(outcome.vocabulary)
            self.reports["seed"] = outcome.report()

    def extra_tools(self, spec: dict[str, Any], seed: dict[str, Any], design: Design) -> dict[str, Any]:
        if "tools" not in self.stages:
            return spec
        outcome = self._guard(
            "tools", lambda: propose_tools(self.client, spec, seed, design, self.backend.tools_per_env)
        )
        self.reports["tools"] = outcome.report()
        self._extra = (design, outcome.probes)
        return {**spec, "tools": [*spec["tools"], *outcome.tools]} if outcome.tools else spec

    def rewrite_tasks(self, tasks: list[Task], business: str) -> list[Task]:
        if "paraphrase" not in self.stages or not tasks:
            return tasks
        outcome = self._guard("paraphrase", lambda: paraphrase_tasks(self.client, tasks, business))
        self.reports["paraphrase"] = outcome.report()
        return outcome.tasks

    def review(self, env: Environment, tests: TestReport) -> str | None:
        if "review" not in self.stages:
            return None
        if self._extra is not None and self._extra[1]:  # the model's own tools are reviewed on their probes too
            design, probes = self._extra
            extra = probe_tools(env, design, probes)
            tests = TestReport(tests.env_id, [*tests.probes, *extra.probes], [*tests.untested, *extra.untested])
        outcome = self._guard("review", lambda: review_tools(self.client, env, tests))
        self.reports["review"] = outcome.report()
        return None if outcome.passed else describe(outcome)

    def report(self) -> dict[str, Any]:
        usage = self.client.usage.to_dict()
        used = sorted(self.reports)
        return {
            "stages": self.reports,
            "usage": usage,
            "provenance": {  # only what a replay reproduces: no cache hits, retries or cost
                "backend": "llm",
                "prompt_version": PROMPT_VERSION,
                "stages": sorted(self.stages),
                "models": {stage: self.client.config.model_for(stage) for stage in used},
                "temperature": self.client.config.temperature,
                "seed": self.client.config.seed,
                "rounds": {stage: report.get("rounds") for stage, report in self.reports.items() if "rounds" in report},
                "tokens": {
                    stage: {"prompt": u["prompt_tokens"], "completion": u["completion_tokens"], "calls": u["calls"]}
                    for stage, u in usage["stages"].items()
                },
                "cache_keys": list(self.client.keys),
            },
        }


def _example() -> dict[str, Any]:
    """A small complete environment of the format, for the spec stage's prompt: the first tables and
    tools of a packaged one, enough to show every kind of step."""
    from servers.episodes import PACKAGED_ENV_ROOT

    spec = json.loads((PACKAGED_ENV_ROOT / "library" / "env.json").read_text(encoding="utf-8"))
    keep = {"get_member", "checkout_copy", "renew_loan"}
    spec["tools"] = [t for t in spec["tools"] if t["name"] in keep]
    spec["policy"] = spec["policy"][:600]
    return spec
