"""Score a final state against a task: SQL checks, the collateral check and the answer check.

Evaluation depends only on the environment, the task, the initial and final states and the
agent's final message — never on how the agent got there. Success means every check passed, and
the reward is binary (1.0 on success, else 0.0), as in τ²-bench: a fractional reward paid an agent
that did nothing for the checks the initial state already passes (no collateral changes, a state
check that holds from the start). The fraction of checks passed is kept as ``partial``, for
diagnostics only.
"""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

from ..spec.tasks import Task
from ..state.diff import StateDiff, TableDiff, diff_states
from ..state.executor import expectation_holds
from ..state.store import StateCopy

__all__ = ["CheckResult", "Score", "score_state", "normalise_answer", "collateral_changes"]


@dataclass
class CheckResult:
    name: str  # "check[0]", "collateral", "answer"
    description: str
    passed: bool
    detail: str = ""


@dataclass
class Score:
    task_id: str | None
    reward: float  # 1.0 when every check passed, else 0.0
    success: bool
    checks: list[CheckResult]
    diff: dict[str, Any] = field(default_factory=dict)
    diff_summary: str = ""
    final_state_hash: str = ""
    partial: float = 0.0  # the fraction of checks passed: diagnostics, never a reward

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})(?::00)?z?$")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ISO_T = re.compile(r"(\d{4}-\d{2}-\d{2})t(\d{2}:\d{2})")
MONTHS = {  # English month names and abbreviations -> number; the heuristic agent reads dates with it too
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})(?!\d)"
_DATES = [
    re.compile(rf"\b{_MONTH}\s+{_DAY},?\s+{_YEAR}"),  # March 28, 2026; Mar 28 2026
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}"),  # 28 March 2026; 28th of March, 2026
    re.compile(r"\b(?P<year>\d{4})[-/](?P<month>\d{1,2})[-/](?P<day>\d{1,2})(?!\d)"),  # 2026-03-28, 2026/3/28
]
_MERIDIEM = re.compile(r"\b(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?(?::00)?\s*(?P<half>[ap])\.?m\b\.?")
_CURRENCY = {"usd", "dollar", "dollars", "eur", "euro", "euros", "gbp"}


def _date(match: re.Match[str]) -> str:
    month = match["month"]
    try:
        day = dt.date(int(match["year"]), int(month) if month.isdigit() else MONTHS[month], int(match["day"]))
    except ValueError:
        return match[0]
    return day.isoformat()


def _time(match: re.Match[str]) -> str:
    hour, minute = int(match["hour"]), int(match["minute"] or 0)
    if not 1 <= hour <= 12 or minute > 59:
        return match[0]
    return f"{hour % 12 + (12 if match['half'] == 'p' else 0):02d}:{minute:02d}"


def normalise_answer(text: str) -> list[str]:
    """Tokens for answer matching: case-folded, punctuation dropped, and canonical forms — numbers and money
    without thousands separators, trailing zeros or currency ($1,029.50, 1029.50 USD, 1,029.5 dollars → 1029.5),
    English dates with a year as ISO (March 28, 2026, 28 March 2026, Mar 28 2026 → 2026-03-28), times as 24-hour
    HH:MM (9:30 am, 9:30:00 → 09:30; 2 pm → 14:00), ISO date-times split at the T."""
    text = _THOUSANDS.sub("", unicodedata.normalize("NFKC", text).casefold())
    for pattern in _DATES:
        text = pattern.sub(_date, text)
    text = _MERIDIEM.sub(_time, _ISO_T.sub(r"\1 \2", text))
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
    return [  # a currency word next to a number says nothing the number does not
        token
        for index, token in enumerate(tokens)
        if not (
            token in _CURRENCY and any(_NUMBER.match(tokens[j]) for j in (index - 1, index + 1) if 0 <= j < len(tokens))
        )
    ]


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
        extra = collateral_changes(agent_diff, gold_diff, task.collateral.tables or list(primary_keys))
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
        wrong = [statement for statement in task.answer.wrong if _contains(said, normalise_answer(statement))]
        description = "The final message states: " + "; ".join(task.answer.facts)
        if task.answer.wrong:
            description += " — and none of: " + "; ".join(task.answer.wrong)
        detail = "; ".join(
            part
            for part in (
                "missing: " + "; ".join(missing) if missing else "",
                "wrong: " + "; ".join(wrong) if wrong else "",
            )
            if part
        )
        results.append(CheckResult("answer", description, not (missing or wrong), detail))
    passed = sum(1 for r in results if r.passed)
    success = passed == len(results)
    return Score(
        task_id=task.id,
        reward=1.0 if success else 0.0,
        success=success,
        checks=results,
        diff=agent_diff.to_dict(),
        diff_summary=agent_diff.summary(),
        final_state_hash=final.digest(),
        partial=round(passed / len(results), 6),
    )


def _how(diff: TableDiff, key: str) -> str:
    if key in diff.inserted:
        return "inserted"
    if key in diff.deleted:
        return "deleted"
    return "updated (" + ", ".join(sorted(diff.updated[key])) + ")"


def collateral_changes(agent: StateDiff, gold: StateDiff, tables: list[str]) -> list[str]:
    """The agent's changes the gold's do not cover, column by column: a row the gold leaves alone, a row changed
    another way (updated where the gold deletes), or a column of an updated row the gold does not change."""
    extra: list[str] = []
    for table in tables:
        mine, theirs = agent.tables.get(table), gold.tables.get(table) or TableDiff()
        if mine is None:
            continue
        for key in sorted(mine.touched()):
            how = _how(mine, key)
            if key not in theirs.touched():
                extra.append(f"{table} {key} {how}")
            elif how.split()[0] != (expected := _how(theirs, key)).split()[0]:
                extra.append(
                    f"{table} {key} {how.split()[0]}, where the task {expected.split()[0].removesuffix('d')}s it"
                )
            elif key in mine.updated:
                columns = sorted(set(mine.updated[key]) - set(theirs.updated[key]))
                if columns:
                    extra.append(f"{table} {key} updated ({', '.join(columns)}), which the task leaves alone")
    return extra
