"""The ``spec`` stage: a model writes a whole environment — ``env.json`` against the spec's exported
JSON Schema, its seed rows, probes for every tool — and then its tasks, as data.

Nothing a model writes here runs as code. The environment is checked by the runtime like any
hand-written one (schema, every statement parsed and prepared, names, parameters, the seed
against the tables), then every tool by its probes on fresh states (success writes only what its
statements declare, a refusal changes nothing, malformed arguments are refused). Tasks are
checked by running their gold calls: each must succeed, the run must change the world, checks
are derived from what it changed, and the four gates apply (gold scores 1.0, doing nothing
fails, the initial state fails a check, two replays agree). Problems go back located
(``spec.tools.rent_bike.steps[2](exec).sql: ...``, ``tasks[3].gold[1] (return_bike): ...``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servers import Environment, SpecError, Task
from servers.clients import GateTrial, GoldAgent
from servers.spec import Answer, GoldCall, UserScenario, spec_json_schema, task_problems

from ..procedural_tests import TestReport, ToolProbes, probe_tools
from ..task_synthesis import checks_from_diff
from . import prompts
from .client import ChatClient
from .repair import Problems, Proposal, propose
from .tools import HELPERS, spec_summary

__all__ = ["ProposedEnvironment", "propose_environment", "propose_tasks", "MIN_TOOLS", "MIN_WRITES"]

MIN_TOOLS, MIN_WRITES, MIN_TABLES = 6, 2, 2


@dataclass
class ProposedEnvironment:
    spec: dict[str, Any]
    seed: dict[str, list[dict[str, Any]]]
    env: Environment
    tests: TestReport


def _probes(raw: Any, spec: dict[str, Any]) -> tuple[dict[str, ToolProbes], list[str]]:
    problems, probes = [], {}
    raw = raw if isinstance(raw, dict) else {}
    for tool in spec.get("tools", []):
        name = tool.get("name") if isinstance(tool, dict) else None
        calls = raw.get(name) if isinstance(raw.get(name), dict) else {}
        succeeds = (
            [a for a in calls.get("succeeds") or [] if isinstance(a, dict)]
            if isinstance(calls.get("succeeds"), list)
            else []
        )
        fails_raw = calls.get("fails") if isinstance(calls.get("fails"), list) else []
        fails = [f["arguments"] for f in fails_raw if isinstance(f, dict) and isinstance(f.get("arguments"), dict)]
        if not succeeds:
            problems.append(f"probes.{name}.succeeds: give 1 to 3 argument objects the tool succeeds on")
        if tool.get("kind") == "write" and not fails:
            problems.append(f"probes.{name}.fails: a write tool needs 1 to 3 calls its rules refuse")
        probes[str(name)] = ToolProbes(succeeds, fails)
    return probes, problems


def propose_environment(
    client: ChatClient,
    topic: str,
    *,
    requests: list[str] | None = None,
    claim: Callable[[str], bool] | None = None,
    example: dict[str, Any] | None = None,
) -> Proposal[ProposedEnvironment]:
    messages = prompts.environment(topic, spec_json_schema(), HELPERS, example or {}, requests, MIN_TOOLS)

    def check(data: dict[str, Any]) -> ProposedEnvironment:
        spec, seed = data.get("spec"), data.get("seed")
        if not isinstance(spec, dict) or not isinstance(seed, dict):
            raise Problems(
                ['answer {"spec": {...env.json...}, "seed": {"<table>": [rows]}, "probes": {"<tool>": {...}}}']
            )
        try:
            env = Environment.from_spec(spec, seed)
        except SpecError as e:
            raise Problems(
                [
                    f"spec.{issue.location}: {issue.message}" if not issue.location.startswith("seed") else str(issue)
                    for issue in e.issues
                ]
            ) from None
        problems = []
        writes = sum(1 for t in env.spec.tools if t.kind == "write")
        if len(env.spec.tools) < MIN_TOOLS or writes < MIN_WRITES or len(env.spec.tables) < MIN_TABLES:
            problems.append(
                f"spec: {len(env.spec.tools)} tools ({writes} writes) on {len(env.spec.tables)} tables; a realistic "
                f"environment has at least {MIN_TOOLS} tools, {MIN_WRITES} of them writes, on {MIN_TABLES}+ tables"
            )
        for table in env.spec.tables:
            if len(seed.get(table.name) or []) < 3:
                problems.append(f"seed.{table.name}: at least 3 rows are needed")
        probes, missing = _probes(data.get("probes"), spec)
        problems += missing
        if problems:
            raise Problems(problems)
        report = probe_tools(env, None, probes)
        problems = [
            f"probes.{p.tool} ({p.kind} {json.dumps(p.arguments, ensure_ascii=False)[:160]}): {p.detail}"
            for p in report.failures()
        ]
        if problems:
            raise Problems(problems)
        if claim is not None and not claim(env.id):
            raise Problems([f"spec.id: an environment named {env.id!r} exists already; choose an id of its own"])
        return ProposedEnvironment(spec, seed, env, report)

    return propose(client, "spec", messages, check)


@dataclass
class TasksOutcome:
    tasks: list[Task] = field(default_factory=list)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    proposal: Proposal[list[Task]] | None = None

    def report(self) -> dict[str, Any]:
        return {
            "accepted": [t.id for t in self.tasks],
            "rejected": self.rejected,
            **(self.proposal.report() if self.proposal else {}),
        }


def propose_tasks(client: ChatClient, proposed: ProposedEnvironment, count: int) -> TasksOutcome:
    """Tasks for a model-written environment, each kept only if its gold run passes the gates."""
    env = proposed.env
    schemas = {name: t.validator for name, t in env.tools.items()}
    keys = {t.name: t.primary_key for t in env.spec.tables}
    identifiers = {
        str(row[key[0]])
        for table, rows in proposed.seed.items()
        for row in rows
        for key in [keys.get(table, [])]
        if len(key) == 1 and key[0] in row
    }
    outcome = TasksOutcome()
    kept: dict[str, Task] = {}

    def check(data: dict[str, Any]) -> list[Task]:
        items = data.get("tasks")
        if not isinstance(items, list) or not items:
            raise Problems(['tasks: answer {"tasks": [{"instruction", "user", "gold", "answer"?}, ...]}'])
        problems: list[str] = []
        for index, item in enumerate(items[:count]):
            task, found = _task(env, item, index, f"{env.id}-{index + 1:03d}", schemas, keys, identifiers)
            if found:
                problems += [f"tasks[{index}]{p}" for p in found]
                outcome.rejected[f"tasks[{index}]"] = found
            elif task is not None:
                kept[task.id] = task
                outcome.rejected.pop(f"tasks[{index}]", None)
        if problems:
            raise Problems(problems)
        return list(kept.values())

    outcome.proposal = propose(
        client, "spec", prompts.environment_tasks(spec_summary(proposed.spec, proposed.seed, 5), count), check
    )
    outcome.tasks = outcome.proposal.value if outcome.proposal.ok else list(kept.values())
    return outcome


def _task(
    env: Environment,
    item: Any,
    index: int,
    task_id: str,
    schemas: dict[str, Any],
    keys: dict[str, list[str]],
    identifiers: set[str],
) -> tuple[Task | None, list[str]]:
    if not isinstance(item, dict):
        return None, [": each task is an object"]
    try:
        gold = [GoldCall.model_validate(c) for c in item.get("gold") or []]
        user = UserScenario.model_validate(item.get("user") or {})
        answer = Answer.model_validate(item["answer"]) if item.get("answer") else None
        instruction = str(item.get("instruction") or "").strip()
    except ValueError as e:
        return None, [f": {e}".splitlines()[0]]
    if not instruction or not gold:
        return None, [": needs an instruction and gold calls"]
    leaked = sorted(v for v in identifiers if v in instruction and any(v in json.dumps(c.arguments) for c in gold))
    if leaked:
        return None, [
            f".instruction: states internal id(s) {', '.join(leaked)}; say what a customer would know (a name, "
            "a date) and let the agent look the id up"
        ]
    with GateTrial.run(env, env.template, gold) as trial:
        position = trial.first.first_error()
        if position is not None:
            return None, [f".gold[{position}] ({gold[position].tool}): failed: {trial.first.results[position].text}"]
        diff = trial.gold_diff
        if not diff.tables:
            return None, [": the gold calls change nothing; a task asks for a change (and may also ask a question)"]
        split = "test" if index % 3 == 2 else "train"
        task = Task(
            id=task_id,
            split=split,
            difficulty="easy" if len(gold) <= 3 else "medium" if len(gold) <= 5 else "hard",
            tags=["model-written"],
            instruction=instruction,
            user=user,
            gold=gold,
            checks=checks_from_diff(diff, keys),
            answer=answer,
        )
        issues = task_problems(task, env.spec, schemas)
        if issues:
            return None, [f".{where}: {message}" for where, message in issues]
        gates = trial.judge(task, GoldAgent.final_message(task))
    return (task, []) if gates.passed else (None, [f": fails the gates: {'; '.join(gates.problems)}"])
