"""Task wording from a model: natural instructions and personas, with every fact the gold chain
needs kept.

A task's *facts* are what the agent cannot solve it without: each value of a gold call's
arguments that the instruction states (a name, an email, a date, a code, an amount), and what the
user identifies themselves by. A paraphrase is accepted only if it states every fact verbatim
(case and spacing aside), adds no number, code or address the original did not have, and still
asks a question when the task expects an answer. Rejected items go back to the model with what
they lost or added; after the last round they keep their procedural wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from servers import Task

from . import prompts
from .client import ChatClient
from .repair import Problems, propose

__all__ = ["ParaphraseOutcome", "paraphrase_tasks", "task_facts"]

BATCH = 10
_SPECIFIC = re.compile(r"[\w.+-]*\d[\w.:/+-]*|[\w.+-]+@[\w.-]+")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _values(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _values(item)]
    if isinstance(value, list):
        return [v for item in value for v in _values(item)]
    if isinstance(value, bool) or value is None:
        return []
    return [str(value)]


def task_facts(task: Task) -> list[str]:
    """What the agent needs from the instruction: every value the gold chain uses that it states,
    every date, time, code, amount and address in it, and the user's name."""
    instruction = _norm(task.instruction)
    facts = [v for call in task.gold for v in _values(call.arguments) if len(v) >= 2 and _norm(v) in instruction]
    facts += [m.group(0).strip(".,;:") for m in _SPECIFIC.finditer(task.instruction)]
    name = task.user.known.get("name")
    if name and _norm(name) in instruction:
        facts.append(name)
    return list(dict.fromkeys(f for f in facts if f))


def _specifics(text: str) -> set[str]:
    return {m.group(0).lower().strip(".,;:") for m in _SPECIFIC.finditer(text)}


def wording_problems(task: Task, instruction: str, persona: str = "") -> list[str]:
    problems = [f"lost {fact!r}" for fact in task_facts(task) if _norm(fact) not in _norm(instruction)]
    added = sorted(_specifics(instruction) - _specifics(task.instruction))
    if added:
        problems.append(f"added {', '.join(repr(a) for a in added)}, which the request does not state")
    invented = sorted(_specifics(persona) - _specifics(task.user.persona))
    if invented:
        problems.append(f"the persona adds {', '.join(repr(a) for a in invented)}; describe the person, not facts")
    if (
        task.answer is not None and "?" in task.instruction and "?" not in instruction
    ):  # "please let me know …" asks too
        problems.append("dropped the question the customer asks")
    return problems


@dataclass
class ParaphraseOutcome:
    tasks: list[Task] = field(default_factory=list)
    rewritten: int = 0
    kept: dict[str, list[str]] = field(default_factory=dict)  # task id -> why its wording was kept
    reports: list[dict[str, Any]] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {
            "rewritten": self.rewritten,
            "kept": self.kept,
            "rounds": sum(r["rounds"] for r in self.reports),
            "batches": self.reports,
        }


def paraphrase_tasks(client: ChatClient, tasks: list[Task], business: str) -> ParaphraseOutcome:
    outcome = ParaphraseOutcome()
    by_id = {t.id: t for t in tasks}
    rewritten: dict[str, dict[str, str]] = {}
    for start in range(0, len(tasks), BATCH):
        batch = tasks[start : start + BATCH]
        items = [
            {"id": t.id, "instruction": t.instruction, "persona": t.user.persona, "must_keep": task_facts(t)}
            for t in batch
        ]
        accepted: dict[str, dict[str, str]] = {}
        last: dict[str, list[str]] = {}

        def check(
            data: dict[str, Any], batch: list[Task] = batch, accepted: dict = accepted, last: dict = last
        ) -> bool:
            listed = data.get("tasks")
            if not isinstance(listed, list):
                raise Problems(['tasks: a list of {"id", "instruction", "persona"} objects is needed'])
            answers = {a["id"]: a for a in listed if isinstance(a, dict) and isinstance(a.get("id"), str)}
            problems = []
            for task in batch:
                if task.id in accepted:
                    continue
                answer = answers.get(task.id)
                text, persona = (answer or {}).get("instruction"), (answer or {}).get("persona")
                if not isinstance(text, str) or not text.strip() or not isinstance(persona, str) or not persona.strip():
                    found = ["no instruction and persona given"]
                else:
                    found = wording_problems(task, text, persona)
                if found:
                    last[task.id] = found
                    problems += [f"tasks[{task.id}]: {p}" for p in found]
                else:
                    accepted[task.id] = {"instruction": " ".join(text.split()), "persona": " ".join(persona.split())}
                    last.pop(task.id, None)
            if problems:
                raise Problems(problems)
            return True

        proposal = propose(client, "paraphrase", prompts.paraphrase(items, business), check)
        outcome.reports.append(proposal.report())
        rewritten.update(accepted)
        outcome.kept.update(last)
    for task in tasks:
        new = rewritten.get(task.id)
        if new is None:
            outcome.tasks.append(task)
            continue
        user = task.user.model_copy(update={"persona": new["persona"]})
        outcome.tasks.append(by_id[task.id].model_copy(update={"instruction": new["instruction"], "user": user}))
        outcome.rewritten += 1
    return outcome
