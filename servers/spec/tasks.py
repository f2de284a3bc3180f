"""Task packs: verifiable scenarios for an environment, one JSON object per line.

``servers/envs/<env>/tasks/<pack>.jsonl``. A task says what the user wants (``instruction``, and a
``user`` scenario for conversational runs), sets up the world it needs (``initial_state``: changes
applied to the seed), and how success is judged: SQL ``checks`` over the final state, a
collateral check against the ``gold`` solution's footprint, and optionally an ``answer`` the
agent must state. ``docs/task.schema.json`` is exported from these models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SpecIssue, TaskPackError
from .models import Comparison, EnvSpec
from .sql_analysis import SqlProblem, analyze_statement
from .validation import sql_catalog

__all__ = [
    "UserScenario",
    "InsertRows",
    "UpdateRows",
    "DeleteRows",
    "StateChange",
    "GoldCall",
    "Check",
    "Collateral",
    "Answer",
    "Task",
    "TaskPack",
    "load_task_pack",
    "task_json_schema",
    "task_problems",
]

ScalarValue = str | int | float | bool | None
Where = dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ScalarValue]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserScenario(_Model):
    """What a simulated user is and knows, for conversational runs."""

    persona: str = Field(min_length=1, description="Who the user is and how they talk.")
    known: dict[str, str] = Field(
        default_factory=dict, description="Facts the user knows and reveals when asked (name -> value)."
    )
    unknown: list[str] = Field(default_factory=list, description="Things the user does not know (e.g. internal ids).")


class InsertRows(_Model):
    op: Literal["insert"]
    table: str
    rows: list[dict[str, Any]] = Field(min_length=1)


class UpdateRows(_Model):
    op: Literal["update"]
    table: str
    where: Where = Field(min_length=1, description="Column = value conditions, all of which must hold.")
    set: dict[str, Any] = Field(min_length=1)


class DeleteRows(_Model):
    op: Literal["delete"]
    table: str
    where: Where = Field(min_length=1)


StateChange = Annotated[InsertRows | UpdateRows | DeleteRows, Field(discriminator="op")]


class GoldCall(_Model):
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Check(_Model):
    """An assertion over the final state: a SELECT and what it must return (as in a ``require`` step)."""

    description: str = Field(min_length=1)
    sql: str = Field(min_length=1)
    expect: Literal["exists", "none", "true"] | Comparison = "exists"


class Collateral(_Model):
    """The agent may change only rows the gold solution changes, in the watched tables."""

    enabled: bool = True
    tables: list[str] | None = Field(None, description="Tables to watch; all tables when absent.")


class Answer(_Model):
    """Facts the agent's final message must state (matched after normalising case, spacing and punctuation)."""

    facts: list[str] = Field(min_length=1)


class Task(_Model):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    split: Literal["train", "test"]
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    tags: list[str] = []
    instruction: str = Field(min_length=1, description="What the user wants, in the user's words.")
    user: UserScenario
    initial_state: list[StateChange] = Field(default_factory=list, description="Changes applied to the seed, in order.")
    gold: list[GoldCall] = Field(min_length=1, description="Tool calls that solve the task, in order.")
    checks: list[Check] = Field(min_length=1)
    collateral: Collateral = Collateral()
    answer: Answer | None = None


@dataclass
class TaskPack:
    name: str
    path: Path | None
    tasks: list[Task]
    content_hash: str = ""
    splits: dict[str, int] = field(default_factory=dict)


def task_json_schema() -> dict[str, Any]:
    schema = Task.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:envfleet:task:1"
    schema["description"] = "One line of a task pack (tasks/<pack>.jsonl)."
    return schema


def load_task_pack(path: Path, spec: EnvSpec, tool_schemas: dict[str, Any]) -> TaskPack:
    """Read and check a task pack; every problem is reported with its line and field."""
    issues: list[SpecIssue] = []
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TaskPackError(
            [SpecIssue(path.name, f"not UTF-8 text: {e.reason} at byte {e.start}")], str(path)
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            issues.append(SpecIssue(where, f"not valid JSON: {e.msg} (column {e.colno})"))
            continue
        try:
            task = Task.model_validate(data)
        except ValidationError as e:
            for error in e.errors():
                location = ".".join(str(part) for part in error["loc"])
                issues.append(SpecIssue(f"{where} {location}", error["msg"]))
            continue
        if task.id in seen:
            issues.append(SpecIssue(f"{where} id", f"task id {task.id!r} is already used on line {seen[task.id]}"))
        seen[task.id] = number
        issues.extend(SpecIssue(f"{where} {loc}", msg) for loc, msg in task_problems(task, spec, tool_schemas))
        tasks.append(task)
    if issues:
        raise TaskPackError(issues, str(path))
    splits = {split: sum(1 for t in tasks if t.split == split) for split in ("train", "test")}
    return TaskPack(path.stem, path, tasks, "sha256:" + hashlib.sha256(raw).hexdigest(), splits)


def task_problems(task: Task, spec: EnvSpec, tool_schemas: dict[str, Any]) -> list[tuple[str, str]]:
    """Static checks of one task against its environment: (field, message) pairs."""
    problems: list[tuple[str, str]] = []
    tables = {t.name: t for t in spec.tables}
    catalog = sql_catalog(spec)
    for index, change in enumerate(task.initial_state):
        at = f"initial_state.{index}"
        table = tables.get(change.table)
        if table is None:
            problems.append((f"{at}.table", f"unknown table {change.table!r}"))
            continue
        columns = {c.name for c in table.columns}
        named: list[str] = []
        if isinstance(change, InsertRows):
            named = [c for row in change.rows for c in row]
        elif isinstance(change, UpdateRows):
            named = [*change.where, *change.set]
        else:
            named = list(change.where)
        for name in dict.fromkeys(named):
            if name not in columns:
                problems.append((at, f"{change.table} has no column {name!r}"))
    for index, call in enumerate(task.gold):
        at = f"gold.{index}"
        validator = tool_schemas.get(call.tool)
        if validator is None:
            problems.append((f"{at}.tool", f"unknown tool {call.tool!r}"))
        elif not validator.is_valid(call.arguments):
            first = next(iter(validator.iter_errors(call.arguments)))
            path = ".".join(str(p) for p in first.instance_path)
            problems.append((f"{at}.arguments", f"{path + ': ' if path else ''}{first.message}"))
    for index, check in enumerate(task.checks):
        try:
            info = analyze_statement(check.sql, "select", catalog)
        except SqlProblem as e:
            problems.append((f"checks.{index}.sql", str(e)))
            continue
        if info.params:
            problems.append(
                (f"checks.{index}.sql", f"uses :{info.params[0]}; checks are plain SELECTs without parameters")
            )
        if info.new_id_prefixes:
            problems.append((f"checks.{index}.sql", "calls new_id(), which changes state; a check only reads"))
    if task.collateral.tables:
        for name in task.collateral.tables:
            if name not in tables:
                problems.append(("collateral.tables", f"unknown table {name!r}"))
    return problems
