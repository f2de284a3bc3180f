"""An environment loaded from its folder: spec, seed, template state and executor, ready to serve.

An environment folder holds ``env.json`` (the spec) and ``seed.json`` (rows per table); later
``tasks/`` too. Loading runs every check: schema, static validation, seed against the DDL, and
every statement prepared by SQLite. What loads is safe to serve.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import SpecError, SpecIssue, TaskPackError
from ..spec.ddl import constraint_messages
from ..spec.models import EnvSpec
from ..spec.tasks import GoldCall, Task, TaskPack, load_task_pack
from ..spec.validation import ValidationReport, parse_spec, validate_spec
from ..state.compiler import CompiledTool, compile_tools
from ..state.diff import StateDiff, diff_states
from ..state.executor import Executor, ToolResult
from ..state.store import StateCopy, StateTemplate

__all__ = ["Environment", "GoldReplay", "ToolDescriptor", "content_hash", "SPEC_FILE", "SEED_FILE", "TASKS_DIR"]

SPEC_FILE = "env.json"
SEED_FILE = "seed.json"
TASKS_DIR = "tasks"


def content_hash(folder: Path) -> str:
    """sha256 over every file of an environment folder (relative path and bytes, in path order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") or part == "__pycache__" for part in relative.split("/")):
            continue
        digest.update(relative.encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError([SpecIssue(path.name, "file not found")], str(path.parent)) from None
    except UnicodeDecodeError as e:
        raise SpecError(
            [SpecIssue(path.name, f"not UTF-8 text: {e.reason} at byte {e.start}")], str(path.parent)
        ) from None
    except json.JSONDecodeError as e:
        raise SpecError([SpecIssue(path.name, f"not valid JSON: {e}")], str(path.parent)) from None


@dataclass(frozen=True)
class ToolDescriptor:
    """What a client is told about a tool (MCP ``tools/list``, an agent's tool list, a gym's tools)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    read_only: bool  # the tool changes nothing (MCP readOnlyHint)
    destructive: bool  # the tool may delete rows (MCP destructiveHint)


@dataclass
class GoldReplay:
    """Gold calls replayed on a fresh copy of an initial state: the copy they leave and each call's result.
    It owns the copy: close it, whatever the replay showed."""

    calls: Sequence[GoldCall]
    state: StateCopy
    results: list[ToolResult]

    def first_error(self) -> int | None:
        """The index of the first gold call that failed, if one did."""
        return next((index for index, result in enumerate(self.results) if result.is_error), None)

    def close(self) -> None:
        self.state.close()


@dataclass
class Environment:
    """A loaded, validated environment. Make state copies with :meth:`new_state`."""

    spec: EnvSpec
    seed: Mapping[str, list[dict[str, Any]]]
    report: ValidationReport
    template: StateTemplate
    executor: Executor
    path: Path | None = None
    content_hash: str | None = None
    task_packs: list[TaskPack] = field(default_factory=list)
    _task_templates: dict[str, StateTemplate] = field(default_factory=dict, repr=False)
    _initial_dumps: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict, repr=False)
    _gold_diffs: dict[str, StateDiff] = field(default_factory=dict, repr=False)

    @property
    def id(self) -> str:
        return self.spec.id

    @classmethod
    def from_spec(
        cls,
        spec: EnvSpec | Mapping[str, Any],
        seed: Mapping[str, list[dict[str, Any]]] | None = None,
        *,
        path: Path | None = None,
        source: str | None = None,
    ) -> Environment:
        """Validate and compile a spec; raises :class:`SpecError` with every problem found."""
        if not isinstance(spec, EnvSpec):
            spec = parse_spec(spec, source)
        seed = seed or {}
        if not isinstance(seed, Mapping) or not all(isinstance(v, list) for v in seed.values()):
            raise SpecError([SpecIssue("seed", "must map table names to lists of row objects")], source)
        seed = dict(seed)
        report = validate_spec(spec)
        if report.issues:
            raise SpecError(report.issues, source)
        try:
            template = StateTemplate.from_seed(spec, seed)
            tools = compile_tools(spec, report, template)
        except SpecError as e:
            raise SpecError(e.issues, source) from None
        executor = Executor(tools, spec.limits, constraint_messages(spec))
        return cls(spec, seed, report, template, executor, path, content_hash(path) if path else None)

    @classmethod
    def load(cls, folder: str | Path) -> Environment:
        """Load ``env.json`` and ``seed.json`` from an environment folder."""
        folder = Path(folder)
        if folder.is_file():
            folder = folder.parent
        for _ in range(3):  # a folder replaced while it was read is read again
            before = content_hash(folder) if folder.is_dir() else None
            spec = parse_spec(_read_json(folder / SPEC_FILE), str(folder))
            seed_path = folder / SEED_FILE
            seed = _read_json(seed_path) if seed_path.exists() else {}
            env = cls.from_spec(spec, seed, path=folder, source=str(folder))
            for pack in sorted((folder / TASKS_DIR).glob("*.jsonl")):
                env.add_task_pack(load_task_pack(pack, env.spec, {n: t.validator for n, t in env.tools.items()}))
            if env.content_hash == before:
                break
        return env

    # -- tasks ---------------------------------------------------------------------------------

    def add_task_pack(self, pack: TaskPack) -> None:
        known = {t.id for t in self.tasks}
        clashes = [t.id for t in pack.tasks if t.id in known]
        if clashes:
            raise TaskPackError(
                [SpecIssue(pack.name, f"task id(s) already used by another pack: {', '.join(clashes)}")]
            )
        self.task_packs.append(pack)

    @property
    def tasks(self) -> list[Task]:
        return [task for pack in self.task_packs for task in pack.tasks]

    def task(self, task_id: str) -> Task:
        for pack in self.task_packs:
            for task in pack.tasks:
                if task.id == task_id:
                    return task
        raise KeyError(f"environment {self.id!r} has no task {task_id!r}")

    def task_template(self, task_id: str) -> StateTemplate:
        """The task's initial state (the seed with the task's changes), built once."""
        if task_id not in self._task_templates:
            task = self.task(task_id)
            changes = [(f"task {task_id} initial_state.{i}", change) for i, change in enumerate(task.initial_state)]
            try:
                self._task_templates[task_id] = self.template.derive(changes) if changes else self.template
            except SpecError as e:
                raise TaskPackError(e.issues) from None
        return self._task_templates[task_id]

    def task_initial_dump(self, task_id: str) -> dict[str, list[dict[str, Any]]]:
        if task_id not in self._initial_dumps:
            self._initial_dumps[task_id] = self.task_template(task_id).dump()
        return self._initial_dumps[task_id]

    def replay_gold(self, template: StateTemplate, calls: Sequence[GoldCall]) -> GoldReplay:
        """Every call of ``calls`` on a fresh copy of ``template``, in order (a failed call does not stop the
        rest). How gold solutions run in process: for the gold diff here, for the task gates
        (servers.clients.GateTrial) and for the synthesizer's drafts."""
        state = template.copy()
        try:
            results = [self.executor.call(state, call.tool, call.arguments) for call in calls]
        except BaseException:
            state.close()
            raise
        return GoldReplay(calls, state, results)

    def gold_diff(self, task_id: str) -> StateDiff:
        """What the task's gold calls change, replayed once on a fresh copy of its initial state."""
        if task_id not in self._gold_diffs:
            task = self.task(task_id)
            replay = self.replay_gold(self.task_template(task_id), task.gold)
            try:
                index = replay.first_error()
                if index is not None:
                    call = task.gold[index]
                    raise TaskPackError(
                        [SpecIssue(f"task {task_id} gold.{index}", f"{call.tool} fails: {replay.results[index].text}")]
                    )
                self._gold_diffs[task_id] = diff_states(
                    self.task_initial_dump(task_id), replay.state.dump(), self.primary_keys
                )
            finally:
                replay.close()
        return self._gold_diffs[task_id]

    @property
    def primary_keys(self) -> dict[str, list[str]]:
        return {t.name: t.primary_key for t in self.spec.tables}

    def new_state(self) -> StateCopy:
        """A fresh isolated copy of the seeded state."""
        return self.template.copy()

    def call(self, state: StateCopy, tool: str, arguments: Any = None, *, read_only: bool = False) -> ToolResult:
        """Call a tool on a state copy; failures come back as a result with ``is_error``. ``read_only`` marks
        shared state: a write tool is refused before anything runs."""
        return self.executor.call(state, tool, arguments, read_only=read_only)

    @property
    def tools(self) -> Mapping[str, CompiledTool]:
        """Each tool as compiled at load, by name: its schemas, argument validator and read/write analysis."""
        return MappingProxyType(self.executor.tools)

    @functools.cached_property
    def tool_descriptors(self) -> dict[str, ToolDescriptor]:
        """Each tool as clients see it, by name (in the order tools were compiled)."""
        return {
            name: ToolDescriptor(
                name=compiled.tool.name,
                description=compiled.tool.description,
                input_schema=compiled.input_schema,
                output_schema=compiled.output_schema,
                read_only=compiled.tool.kind == "read",
                destructive=compiled.tool.kind == "write" and "delete" in compiled.analysis.statement_kinds(),
            )
            for name, compiled in self.tools.items()
        }

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.spec.tools]
