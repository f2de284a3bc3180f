"""An optional extra gate (off by default): a model reviews recorded tool calls, as EnvScaler's
second agent does — does each tool do what its description and the policy say?

The calls are the procedural tests' own: for each tool, the arguments a positive probe succeeded
with and a rule probe it refused, replayed on fresh states so the reviewer sees the real answers.
A tool judged wrong keeps the environment from being published, with the reviewer's reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from servers import Environment

from ..procedural_tests import TestReport
from . import prompts
from .client import ChatClient
from .repair import Problems, propose

__all__ = ["ReviewOutcome", "review_tools"]

BATCH = 15
MAX_TEXT = 600


@dataclass
class ReviewOutcome:
    rejected: dict[str, str] = field(default_factory=dict)  # tool -> the reviewer's reason
    reviewed: int = 0
    unreviewed: list[str] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.rejected and not self.unreviewed

    def report(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reviewed": self.reviewed,
            "rejected": self.rejected,
            "unreviewed": self.unreviewed,
            "rounds": sum(r["rounds"] for r in self.reports),
            "batches": self.reports,
        }


def recorded_calls(env: Environment, tests: TestReport) -> dict[str, list[dict[str, Any]]]:
    calls: dict[str, list[dict[str, Any]]] = {}
    for probe in tests.probes:
        if not probe.passed or probe.kind not in ("positive", "rule") or not isinstance(probe.arguments, dict):
            continue
        mine = calls.setdefault(probe.tool, [])
        if sum(1 for c in mine if c["expected"] == probe.kind) >= (2 if probe.kind == "positive" else 1):
            continue
        state = env.new_state()
        try:
            result = env.call(state, probe.tool, probe.arguments)
        finally:
            state.close()
        mine.append(
            {
                "expected": probe.kind,
                "arguments": probe.arguments,
                "error": result.is_error,
                "answer": result.text[:MAX_TEXT],
            }
        )
    return calls


def review_tools(client: ChatClient, env: Environment, tests: TestReport) -> ReviewOutcome:
    calls = recorded_calls(env, tests)
    tools = sorted(calls)
    descriptions = {name: env.tools[name].tool.description for name in tools}
    outcome = ReviewOutcome()
    for start in range(0, len(tools), BATCH):
        names = tools[start : start + BATCH]
        payload = [{"tool": n, "description": descriptions[n], "calls": calls[n]} for n in names]

        def check(data: dict[str, Any], names: list[str] = names) -> dict[str, tuple[bool, str]]:
            listed = data.get("verdicts")
            if not isinstance(listed, list):
                raise Problems(['verdicts: a list of {"tool", "ok", "reason"} objects is needed'])
            verdicts = {v["tool"]: v for v in listed if isinstance(v, dict) and isinstance(v.get("tool"), str)}
            missing = [n for n in names if not isinstance((verdicts.get(n) or {}).get("ok"), bool)]
            if missing:
                raise Problems([f"verdicts: no verdict (ok true/false) for {', '.join(missing)}"])
            return {n: (verdicts[n]["ok"], str(verdicts[n].get("reason") or "")) for n in names}

        proposal = propose(client, "review", prompts.review(payload, env.spec.policy), check)
        outcome.reports.append(proposal.report())
        if proposal.value is None:
            outcome.unreviewed += names
            continue
        for name, (ok, reason) in proposal.value.items():
            outcome.reviewed += 1
            if not ok:
                outcome.rejected[name] = reason or "judged wrong without a reason"
    return outcome


def describe(outcome: ReviewOutcome) -> str:
    parts = [f"{tool}: {reason}" for tool, reason in sorted(outcome.rejected.items())]
    if outcome.unreviewed:
        parts.append(f"no usable verdict for {', '.join(outcome.unreviewed)}")
    return "; ".join(parts) or json.dumps(outcome.report())[:200]
