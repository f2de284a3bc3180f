"""Score a final state against a task: SQL checks, the collateral check and the answer check.

Evaluation depends only on the environment, the task, the initial and final states and the
agent's final message — never on how the agent got there. Reward is the fraction of checks
passed; success means all of them passed.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from ..spec.tasks import Task
from ..state.diff import StateDiff, diff_states
from ..state.executor import expectation_holds
from ..state.store import StateCopy

__all__ = ["CheckResult", "Score", "score_state", "normalise_answer"]


@dataclass
class CheckResult:
    name: str  # "check[0]", "collateral", "answer"
    description: str
    passed: bool
    detail: str = ""


@dataclass
class Score:
    task_id: str | None
    reward: float
    success: bool
    checks: list[CheckResult]
    diff: dict[str, Any] = field(default_factory=dict)
    diff_summary: str = ""
    final_state_hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?z?$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ISO_T = re.compile(r"(\d{4}-\d{2}-\d{2})t(\d{2}:\d{2})")


def normalise_answer(text: str) -> list[str]:
    """Tokens for answer matching: case-folded, punctuation dropped, numbers canonical ($1,029.50 →
    1029.5), times as HH:MM (9:30:00 → 09:30), ISO date-times split at the T."""
    text = _ISO_T.sub(r"\1 \2", _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).casefold()))
    tokens: list[str] = []
    for token in re.sub(r"[^\w.:\-/]+", " ", text).split():
        token = token.strip(".:-/")
        if not token:
            continue
        if _NUMBER.match(token):
            token = token.rstrip("0").rstrip(".") if "." in token else token.lstrip("0") or "0"
        elif time := _TIME.match(token):
            token = f"{int(time.group(1)):02d}:{time.group(2)}"
        tokens.append(token)
    return tokens


def _contains(message: list[str], fact: list[str]) -> bool:
    width = len(fact)
    return width > 0 and any(message[i : i + width] == fact for i in range(len(message) - width + 1))


def score_state(
    task: Task,
    initial: dict[str, list[dict[str, Any]]],
    final: StateCopy,
    gold_diff: StateDiff,
    primary_keys: dict[str, list[str]],
    final_message: str | None = None,
) -> Score:
    """Score ``final`` (a live state copy) for ``task``; ``initial`` is the task's starting dump."""
    results: list[CheckResult] = []
    budget = final.template.spec.limits.max_sql_steps
    for index, check in enumerate(task.checks):
        with final.mode("read"):
            final.begin_budget(budget)  # every check gets the full budget, whatever the agent's last call used
            try:
                row = final.conn.execute(check.sql).fetchone()
                passed, detail = expectation_holds(check.expect, row), "" if row is None else f"first row: {list(row)}"
            except sqlite3.Error as e:
                passed, detail = False, f"check failed to run: {e}"
        results.append(CheckResult(f"check[{index}]", check.description, passed, "" if passed else detail))

    agent_diff = diff_states(initial, final.dump(), primary_keys)
    if task.collateral.enabled:
        watched = task.collateral.tables or list(primary_keys)
        extra = []
        for table in watched:
            for key in sorted(agent_diff.touched(table) - gold_diff.touched(table)):
                diff = agent_diff.tables[table]
                how = (
                    "inserted"
                    if key in diff.inserted
                    else "deleted"
                    if key in diff.deleted
                    else "updated (" + ", ".join(sorted(diff.updated[key])) + ")"
                )
                extra.append(f"{table} {key} {how}")
        results.append(
            CheckResult(
                "collateral",
                "No changes beyond what the task needs",
                not extra,
                ("unexpected changes: " + "; ".join(extra[:10]) + (" …" if len(extra) > 10 else "")) if extra else "",
            )
        )
    if task.answer is not None:
        said = normalise_answer(final_message or "")
        missing = [fact for fact in task.answer.facts if not _contains(said, normalise_answer(fact))]
        results.append(
            CheckResult(
                "answer",
                "The final message states: " + "; ".join(task.answer.facts),
                not missing,
                ("missing: " + "; ".join(missing)) if missing else "",
            )
        )
    passed = sum(1 for r in results if r.passed)
    return Score(
        task_id=task.id,
        reward=round(passed / len(results), 6),
        success=passed == len(results),
        checks=results,
        diff=agent_diff.to_dict(),
        diff_summary=agent_diff.summary(),
        final_state_hash=final.digest(),
    )
