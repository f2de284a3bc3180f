"""Task packs: verifiable scenarios for an environment, one JSON object per line.

``servers/envs/<env>/tasks/<pack>.jsonl``. A task says what the user wants (``instruction``, and a
``user`` scenario for conversational runs), sets up the world it needs (``initial_state``: changes
applied to the seed), and how success is judged: SQL ``checks`` over the final state, a
collateral check against the ``gold`` solution's footprint, and optionally an ``answer`` the
agent must state. A refusal task also names the ``forbidden`` calls an obedient agent would make,
so the gates can prove its checks catch them. ``docs/task.schema.json`` is exported from these models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, model_serializer

from ..errors import SpecIssue, TaskPackError
from .models import Comparison, EnvSpec
from .sql_analysis import SqlProblem, analyze_statement
from .validation import sql_catalog

__all__ = [
    "TaskFamily",
    "TASK_FAMILIES",
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
    "family_of",
]

ScalarValue = str | int | float | bool | None
Where = dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")], ScalarValue]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    _quiet_defaults: ClassVar[tuple[str, ...]] = ()
    """Fields added after packs were first written: left out of a dump while they hold their default, so a task
    that does not use them dumps byte for byte as before (the synthesizer's output and the fleet stay stable)."""

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for name in self._quiet_defaults:
            if name in data and getattr(self, name) == type(self).model_fields[name].get_default(
                call_default_factory=True
            ):
                del data[name]
        return data


TaskFamily = Literal["action", "refusal", "information", "conditional", "multi_goal"]
"""What kind of work a task asks for; each family has its own gates (see servers.clients.gates)."""

TASK_FAMILIES: tuple[str, ...] = get_args(TaskFamily)

Statement = Annotated[str, Field(min_length=1)]


class UserScenario(_Model):
    """What a simulated user is, knows and wants, for conversational runs."""

    _quiet_defaults = ("goal", "accepts", "refuses", "confirm")

    persona: str = Field(min_length=1, description="Who the user is and how they talk.")
    known: dict[str, str] = Field(
        default_factory=dict,
        description="Facts the user knows and reveals only when asked (name -> value).",
    )
    unknown: list[str] = Field(default_factory=list, description="Things the user does not know (e.g. internal ids).")
    goal: str | None = Field(
        None, min_length=1, description="One sentence the simulated user pursues (what they say they want when asked)."
    )
    accepts: list[Statement] = Field(
        default_factory=list, description="Short statements of what the user agrees to (an alternative, a fee)."
    )
    refuses: list[Statement] = Field(
        default_factory=list, description="Short statements of what the user will not accept."
    )
    confirm: bool = Field(
        True,
        description='The user\'s answer to "shall I go ahead?": false for a user who declines once they hear '
        "the consequence (they then say a `refuses` line).",
    )


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
    """Facts the agent's final message must state, and statements it must not (matched as token sequences after
    normalising case, punctuation, numbers, money, dates and times: see servers.episodes.evaluation)."""

    _quiet_defaults = ("wrong",)

    facts: list[str] = Field(min_length=1, description="Facts the final message must state, each one whole.")
    wrong: list[Statement] = Field(
        default_factory=list,
        description="Statements that make the answer wrong when present (a namesake's due date, the pre-discount "
        "amount): a message listing every candidate fails.",
    )


class Task(_Model):
    _quiet_defaults = ("family", "forbidden")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=80)
    split: Literal["train", "test"]
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    tags: list[str] = Field(
        default_factory=list, description='Free labels; traits across families: "discovery", "computed".'
    )
    family: TaskFamily | None = Field(
        None, description="What kind of work the task asks for; inferred when absent (servers.spec.family_of)."
    )
    instruction: str = Field(min_length=1, description="What the user wants, in the user's words.")
    user: UserScenario
    initial_state: list[StateChange] = Field(default_factory=list, description="Changes applied to the seed, in order.")
    gold: list[GoldCall] = Field(min_length=1, description="Tool calls that solve the task, in order.")
    checks: list[Check] = Field(min_length=1)
    collateral: Collateral = Collateral()
    answer: Answer | None = None
    forbidden: list[GoldCall] = Field(
        default_factory=list,
        description="For a refusal: the calls an obedient agent would make after the gold's lookups (the act the "
        "policy forbids). The gates replay them and require the task to fail. Empty when no tool can do the act.",
    )


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
    for name, calls in (("gold", task.gold), ("forbidden", task.forbidden)):
        for index, call in enumerate(calls):
            at = f"{name}.{index}"
            validator = tool_schemas.get(call.tool)
            if validator is None:
                problems.append((f"{at}.tool", f"unknown tool {call.tool!r}"))
            elif not validator.is_valid(call.arguments):
                first = next(iter(validator.iter_errors(call.arguments)))
                path = ".".join(str(p) for p in first.instance_path)
                problems.append((f"{at}.arguments", f"{path + ': ' if path else ''}{first.message}"))
            elif name == "forbidden" and call.tool not in _write_tools(spec):
                problems.append((f"{at}.tool", f"{call.tool} only reads; a forbidden call is one that changes state"))
    problems.extend(_family_problems(task, spec))
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


def _write_tools(spec: EnvSpec) -> set[str]:
    return {tool.name for tool in spec.tools if tool.kind == "write"}


def _gold_writes(task: Task, spec: EnvSpec) -> list[str]:
    writes = _write_tools(spec)
    return [call.tool for call in task.gold if call.tool in writes]


def family_of(task: Task, spec: EnvSpec) -> TaskFamily:
    """The task's family: its own ``family``, else inferred from its calls (``spec`` says which tools write):
    forbidden calls → refusal; gold without writes → information; two writes or more → multi_goal; else
    action. A conditional task cannot be told from its calls: it says so."""
    if task.family is not None:
        return task.family
    if task.forbidden:
        return "refusal"
    writes = len(_gold_writes(task, spec))
    return "information" if writes == 0 else "multi_goal" if writes >= 2 else "action"


def _family_problems(task: Task, spec: EnvSpec) -> list[tuple[str, str]]:
    """What each family needs to be gateable: doing nothing must fail it (a task whose gold changes nothing
    fails a do-nothing agent only on its answer), and a refusal must be provable."""
    problems: list[tuple[str, str]] = []
    writes = _gold_writes(task, spec)
    family = family_of(task, spec)
    if family == "refusal" and not task.forbidden and task.answer is None:
        problems.append(
            ("forbidden", "a refusal needs the forbidden calls an obedient agent would make, or an answer saying why")
        )
    if family == "information":
        if task.answer is None:
            problems.append(("answer", "an information task is judged on its answer: give the facts it must state"))
        if writes:
            problems.append(("gold", f"an information task changes nothing, but its gold calls {', '.join(writes)}"))
    if family == "multi_goal" and len(writes) < 2:
        problems.append(("gold", f"a multi_goal task makes two writes or more; its gold makes {len(writes)}"))
    if family == "action" and not writes:
        problems.append(("gold", "an action task changes something; its gold calls only read"))
    if task.family is not None and task.family != "refusal" and task.forbidden:
        problems.append(("forbidden", f"only a refusal names forbidden calls; this task is {task.family}"))
    if family != "information" and not writes and task.answer is None:
        problems.append(("answer", "the gold changes nothing, so only an answer can tell doing the task from not"))
    if not task.user.confirm and not task.user.refuses:
        problems.append(("user.refuses", "a user who declines (confirm: false) says what they will not accept"))
    return problems
