"""An environment loaded from its folder: spec, seed, template state and executor, ready to serve.

An environment folder holds ``env.json`` (the spec) and ``seed.json`` (rows per table); later
``tasks/`` too. Loading runs every check: schema, static validation, seed against the DDL, and
every statement prepared by SQLite. What loads is safe to serve.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .compiler import compile_tools
from .ddl import constraint_messages
from .errors import SpecError, SpecIssue
from .executor import Executor, ToolResult
from .spec import EnvSpec
from .state import StateCopy, StateTemplate
from .validation import ValidationReport, parse_spec, validate_spec

__all__ = ["Environment", "content_hash", "SPEC_FILE", "SEED_FILE"]

SPEC_FILE = "env.json"
SEED_FILE = "seed.json"


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
    except json.JSONDecodeError as e:
        raise SpecError([SpecIssue(path.name, f"not valid JSON: {e}")], str(path.parent)) from None


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

    @property
    def id(self) -> str:
        return self.spec.id

    @classmethod
    def from_spec(cls, spec: EnvSpec | Mapping[str, Any], seed: Mapping[str, list[dict[str, Any]]] | None = None,
                  *, path: Path | None = None, source: str | None = None) -> Environment:
        """Validate and compile a spec; raises :class:`SpecError` with every problem found."""
        if not isinstance(spec, EnvSpec):
            spec = parse_spec(spec, source)
        seed = dict(seed or {})
        if not isinstance(seed, dict) or not all(isinstance(v, list) for v in seed.values()):
            raise SpecError([SpecIssue("seed", "must map table names to lists of row objects")], source)
        report = validate_spec(spec)
        if report.issues:
            raise SpecError(report.issues, source)
        try:
            template = StateTemplate(spec, seed)
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
        spec = parse_spec(_read_json(folder / SPEC_FILE), str(folder))
        seed_path = folder / SEED_FILE
        seed = _read_json(seed_path) if seed_path.exists() else {}
        return cls.from_spec(spec, seed, path=folder, source=str(folder))

    def new_state(self) -> StateCopy:
        """A fresh isolated copy of the seeded state."""
        return self.template.copy()

    def call(self, state: StateCopy, tool: str, arguments: Any = None) -> ToolResult:
        """Call a tool on a state copy; failures come back as a result with ``is_error``."""
        return self.executor.call(state, tool, arguments)

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.spec.tools]
