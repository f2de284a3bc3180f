"""The synthesis loop: ask the family furthest below its share for a draft, gate it, keep it.

A draft becomes a task only if it passes the runtime's own gates in process (``servers.clients.GateTrial``:
gold scores 1.0, two replays agree, doing nothing fails, the initial state fails a state check, and an
obedient agent fails a refusal that names forbidden calls), leaves no invariant broken (when
``synthesizer.invariants`` offers ``violations``), does nothing an earlier task does (effect signature)
and reads unlike every task of the other split (wording signature). Splits are by person: all of one
customer's tasks land in the same split, so a test task never reuses a training customer.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from servers import Environment, Task
from servers.clients import GateTrial
from servers.spec import Answer

from ..modeling import Design
from ..naming import words
from .checks import checks_from_diff
from .family import FAMILIES
from .world import Draft, World

__all__ = ["SynthesisStats", "TaskSynthesizer", "synthesize_tasks", "effect_signature", "wording_signature"]

_GATE_FAILURES = {
    "gold": "gold_below_one",
    "deterministic": "nondeterministic",
    "noop": "initial_passes",
    "initial": "initial_passes",
    "obedient": "obedient_passes",
}
"""The synthesis statistics' name for each gate a finished draft can fail (servers.clients.GateResult.failed_gates)."""


@dataclass
class SynthesisStats:
    attempted: int = 0
    published: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    templates: Counter[str] = field(default_factory=Counter)
    chain_lengths: Counter[int] = field(default_factory=Counter)
    writes: Counter[int] = field(default_factory=Counter)
    other_branches: dict[str, Any] = field(default_factory=dict)  # conditional task id -> the branch not taken

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "published": self.published,
            "failures": dict(self.failures),
            "families": dict(self.families),
            "templates": dict(self.templates),
            "chain_lengths": {str(k): v for k, v in sorted(self.chain_lengths.items())},
            "writes": {str(k): v for k, v in sorted(self.writes.items())},
        }


def effect_signature(task: Task, write_tools: set[str]) -> Any:
    """What a task does: its writes and what it must say (two wordings of one job are one task)."""
    writes = tuple((c.tool, tuple(sorted(c.arguments.items()))) for c in task.gold if c.tool in write_tools)
    facts = tuple(task.answer.facts) if task.answer else ()
    if writes:
        return writes, facts
    # a question or a refusal: what it is about (the records its reads reach) and what must be said
    return tuple(sorted({repr(sorted(c.arguments.items())) for c in task.gold})), facts


_VARIABLE = re.compile(r"\$?[\d][\d,.:/-]*|\b[A-Z][\w'.-]*|@\S+")


def wording_signature(task: Task) -> str:
    """The instruction with names, numbers, dates and addresses taken out: two tasks with the same skeleton
    and family are near-duplicates, whoever and whatever they name."""
    skeleton = _VARIABLE.sub("_", task.instruction.split(".", 1)[-1])
    return f"{task.family}:{' '.join(skeleton.lower().split())}"


class TaskSynthesizer:
    """One environment's drafts, gates and bookkeeping."""

    def __init__(self, env: Environment, design: Design, graph: nx.DiGraph | None, seed: int) -> None:
        import random

        self.env = env
        self.design = design
        self.graph = graph
        self.seed = seed
        self.rng = random.Random(f"tasks:{design.env_id}:{seed}")
        self.world = World(env, design, self.rng)
        self.stats = SynthesisStats()
        self.writes = {name for name in env.tool_names if env.tools[name].tool.kind == "write"}
        self.violations = self.world.invariants
        self.state = env.new_state()  # kept for callers that close it (compatibility)

    def split_of(self, person: str, test_share: float) -> str:
        digest = hashlib.sha256(f"{self.design.env_id}:{self.seed}:{person}".encode()).digest()
        return "test" if digest[0] / 256 < test_share else "train"

    def finish(self, draft: Draft, task_id: str, split: str) -> Task | None:
        """The draft as a task, if it passes the gates; else None, with the first reason counted. Every state
        copy it makes is closed, whatever the outcome."""
        env = self.env
        # new rows first, then changes to existing ones (neither depends on the other): a stable order readers expect
        draft.changes = sorted(draft.changes, key=lambda c: c.op != "insert")
        changes = [(f"draft {task_id} initial_state.{i}", c) for i, c in enumerate(draft.changes)]
        try:
            template = env.template.derive(changes) if changes else env.template
        except Exception:
            self.stats.failures["initial_state"] += 1
            return None
        with GateTrial.run(env, template, draft.gold) as trial:
            if trial.first.first_error() is not None:
                self.stats.failures["gold_error"] += 1
                return None
            if not trial.deterministic:
                self.stats.failures["nondeterministic"] += 1
                return None
            diff = trial.gold_diff
            writes = sum(1 for c in draft.gold if c.tool in self.writes)
            if not draft.facts and (not diff.tables or not writes):
                self.stats.failures["no_change"] += 1
                return None
            names = {e.plural: words(e.name) for e in self.design.entities}
            checks = checks_from_diff(diff, env.primary_keys, names=names) + draft.checks
            conn = trial.first.state.conn
            for table, where, column, state, what in draft.counts:
                count = conn.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE {where} AND {column} = ?", (state,)
                ).fetchone()
                from .checks import count_in_state

                check = count_in_state(table, where, column, state, int(count[0]), what)
                if check not in checks:
                    checks.append(check)
            if writes and len(checks) < 2:
                self.stats.failures["one_check"] += 1
                return None
            if self.violations is not None and any(self.violations(env, trial.first.state).values()):
                self.stats.failures["invariant"] += 1
                return None
            if self.breaks_policy(conn):  # the gold keeps the policy-only rules too (a cancel's reasons, limits)
                self.stats.failures["policy"] += 1
                return None
            answer = Answer(facts=draft.facts, wrong=draft.wrong) if draft.facts else None
            task = Task(
                id=task_id,
                split=split,  # type: ignore[arg-type]
                difficulty=self.difficulty(draft, writes),
                tags=sorted(set(draft.tags)),
                family=draft.family,  # type: ignore[arg-type]
                instruction=draft.instruction,
                user=draft.user,
                initial_state=draft.changes,
                gold=draft.gold,
                checks=checks,
                answer=answer,
                forbidden=draft.forbidden,
            )
            verdict = trial.judge(
                task, "Here is what you asked for: " + "; ".join(draft.facts) + "." if draft.facts else "All done."
            )
        if not verdict.passed:
            self.stats.failures[_GATE_FAILURES[verdict.failed_gates[0]] if verdict.failed_gates else "gate"] += 1
            return None
        return task

    def breaks_policy(self, conn: Any) -> bool:
        """Whether a state shows what a policy-only rule forbids (each kind's SQL over what the episode did)."""
        for ref in getattr(self.design, "policy_refs", []):
            sql = ref.kind.violation(self.design, ref)
            if sql is not None and conn.execute(sql).fetchone() is not None:
                return True
        return False

    @staticmethod
    def difficulty(draft: Draft, writes: int) -> str:
        if draft.family in ("refusal", "conditional") or writes >= 3 or len(draft.gold) >= 7:
            return "hard"
        return "easy" if len(draft.gold) <= 3 and writes <= 1 else "medium"

    def next_family(self, made: Counter[str], failed: Counter[str]) -> str:
        """The family furthest below its share (ties by registry order), skipping those that keep failing."""
        total = sum(made.values()) + 1
        live = [name for name in FAMILIES if failed[name] < 30] or list(FAMILIES)
        return max(live, key=lambda name: (FAMILIES[name].share - made[name] / total, -list(FAMILIES).index(name)))


def synthesize_tasks(
    env: Environment,
    design: Design,
    graph: nx.DiGraph,
    *,
    count: int,
    seed: int,
    test_share: float = 0.3,
    max_attempts: int | None = None,
    id_prefix: str | None = None,
    avoid: list[Task] | None = None,
) -> tuple[list[Task], SynthesisStats]:
    """Up to ``count`` verified tasks for ``env``, with the statistics of what was tried; none does what a
    task of ``avoid`` (the environment's existing packs) already does."""
    synth = TaskSynthesizer(env, design, graph, seed)
    tasks: list[Task] = []
    seen = {effect_signature(t, synth.writes) for t in avoid or []}
    skeletons: dict[str, str] = {}
    made: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    attempts = max_attempts or count * 8
    try:
        while len(tasks) < count and synth.stats.attempted < attempts:
            synth.stats.attempted += 1
            name = synth.next_family(made, failed)
            draft = FAMILIES[name].draft(synth.world)
            if draft is None:
                synth.stats.failures["no_draft"] += 1
                failed[name] += 1
                continue
            split = synth.split_of(draft.person, test_share)
            task = synth.finish(draft, f"{id_prefix or env.id}-{len(tasks) + 1:03d}", split)
            if task is None:
                failed[name] += 1
                continue
            signature = effect_signature(task, synth.writes)
            skeleton = wording_signature(task)
            if signature in seen:
                synth.stats.failures["duplicate"] += 1
                failed[name] += 1
                continue
            if skeletons.get(skeleton, split) != split:
                synth.stats.failures["near_duplicate"] += 1
                failed[name] += 1
                continue
            seen.add(signature)
            skeletons[skeleton] = split
            tasks.append(task)
            if draft.other is not None:
                synth.stats.other_branches[task.id] = draft.other
            made[name] += 1
            synth.stats.published += 1
            synth.stats.families[draft.family] += 1
            synth.stats.templates[draft.template] += 1
            synth.stats.chain_lengths[len(task.gold)] += 1
            synth.stats.writes[sum(1 for c in task.gold if c.tool in synth.writes)] += 1
    finally:
        synth.state.close()
    return tasks, synth.stats
