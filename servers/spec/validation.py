"""Static validation of an environment spec: everything that can be checked without running it.

``parse_spec`` turns JSON into an :class:`EnvSpec` (schema errors located by path);
``validate_spec`` checks names, references, JSON Schemas and every SQL statement, and computes
each tool's read and write sets. A spec that passes here is then prepared against a real
SQLite copy by :mod:`servers.state.compiler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema_rs
from pydantic import ValidationError
from sqlglot.dialects.sqlite import SQLite

from ..errors import SpecError, SpecIssue
from .ddl import CheckProblem, check_expression
from .models import EnvSpec, ExecStep, LetStep, RequireStep, ReturnStep, Tool
from .sql_analysis import OutputColumn, SqlProblem, StatementInfo, analyze_statement

__all__ = ["StepAnalysis", "ToolAnalysis", "ValidationReport", "parse_spec", "validate_spec", "step_location", "sql_catalog"]

_SQL_TYPES = {
    "text": "TEXT", "integer": "INTEGER", "real": "REAL", "boolean": "INTEGER",
    "date": "TEXT", "datetime": "TEXT", "json": "TEXT",
}
_SQL_KEYWORDS = frozenset(k for k in SQLite.Tokenizer.KEYWORDS if k.isalpha())
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,), "integer": (int,), "real": (int, float), "boolean": (bool,),
    "date": (str,), "datetime": (str,), "json": (str, int, float, bool),
}


@dataclass
class StepAnalysis:
    index: int
    kind: str
    info: StatementInfo | None  # None for a message-only return


@dataclass
class ToolAnalysis:
    """What a tool touches: its read set and write set (table -> columns), step by step."""

    name: str
    kind: str
    params: list[str]
    steps: list[StepAnalysis] = field(default_factory=list)
    reads: dict[str, set[str]] = field(default_factory=dict)
    writes: dict[str, set[str]] = field(default_factory=dict)

    def statement_kinds(self) -> set[str]:
        """e.g. {"select", "insert", "update"}"""
        return {s.info.statement for s in self.steps if s.info is not None}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": self.params,
            "reads": {t: sorted(c) for t, c in sorted(self.reads.items())},
            "writes": {t: sorted(c) for t, c in sorted(self.writes.items())},
        }


@dataclass
class ValidationReport:
    issues: list[SpecIssue] = field(default_factory=list)
    warnings: list[SpecIssue] = field(default_factory=list)
    tools: dict[str, ToolAnalysis] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues

    def error(self, location: str, message: str) -> None:
        self.issues.append(SpecIssue(location, message))

    def warn(self, location: str, message: str) -> None:
        self.warnings.append(SpecIssue(location, message))


def step_location(tool: Tool, index: int) -> str:
    return f"tools.{tool.name}.steps[{index}]({tool.steps[index].kind})"


def parse_spec(data: Any, source: str | None = None) -> EnvSpec:
    """Parse env.json content; schema errors become a :class:`SpecError` with readable locations."""
    try:
        return EnvSpec.model_validate(data)
    except ValidationError as e:
        issues = [SpecIssue(_pydantic_location(data, err["loc"]), err["msg"]) for err in e.errors()]
        raise SpecError(issues, source) from None


def _pydantic_location(data: Any, loc: tuple[Any, ...]) -> str:
    """``('tools', 3, 'steps', 1, 'exec', 'sql')`` -> ``tools.checkout.steps[1].sql``."""
    parts: list[str] = []
    node = data
    for item in loc:
        if isinstance(item, int):
            named = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            if named and parts and parts[-1] in ("tools", "tables", "columns", "checks"):
                parts[-1] = f"{parts[-1]}.{named}"
            elif parts:
                parts[-1] = f"{parts[-1]}[{item}]"
            else:
                parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif item in ("require", "let", "exec", "return") and parts and parts[-1].startswith("steps"):
            continue  # the discriminated-union tag pydantic inserts
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(root)"


def validate_spec(spec: EnvSpec) -> ValidationReport:
    """Every static check; the report carries all issues found, not just the first."""
    report = ValidationReport()
    _check_tables(spec, report)
    _check_sequences(spec, report)
    catalog = sql_catalog(spec)
    names: set[str] = set()
    for tool in spec.tools:
        if tool.name in names:
            report.error(f"tools.{tool.name}", "duplicate tool name")
        names.add(tool.name)
        report.tools[tool.name] = _check_tool(spec, tool, catalog, report)
    return report


def sql_catalog(spec: EnvSpec) -> dict[str, dict[str, str]]:
    """table -> column -> SQL type: the schema that statements are checked against."""
    return {t.name: {c.name: _SQL_TYPES[c.type] for c in t.columns} for t in spec.tables}


def _duplicates(values: list[str]) -> set[str]:
    seen: set[str] = set()
    return {v for v in values if v in seen or seen.add(v)}  # type: ignore[func-returns-value]


def _check_tables(spec: EnvSpec, report: ValidationReport) -> None:
    for name in _duplicates([t.name for t in spec.tables]):
        report.error(f"tables.{name}", "duplicate table name")
    for name in _duplicates([c.name for t in spec.tables for c in t.checks]):
        report.error("tables", f"check name {name!r} is used twice; check names are unique across the spec")
    for table in spec.tables:
        where = f"tables.{table.name}"
        if table.name.startswith("sqlite_"):
            report.error(where, "table names may not start with 'sqlite_'")
        for name in _duplicates([c.name for c in table.columns]):
            report.error(f"{where}.columns.{name}", "duplicate column name")
        if not table.primary_key:
            report.error(where, "has no primary key; mark one or more columns primary_key: true")
        for column in table.columns:
            _check_column(spec, where, column, report)
        for check in table.checks:
            try:
                check_expression(table, check.expression)
            except CheckProblem as e:
                report.error(f"{where}.checks.{check.name}", f"expression {e}")


def _check_column(spec: EnvSpec, where: str, column: Any, report: ValidationReport) -> None:
    at = f"{where}.columns.{column.name}"
    allowed = _PYTHON_TYPES[column.type]
    if column.enum is not None:
        if column.type not in ("text", "integer"):
            report.error(at, f"enum is only for text or integer columns, not {column.type}")
        for value in column.enum:
            if not isinstance(value, allowed) or isinstance(value, bool) != (column.type == "boolean"):
                report.error(at, f"enum value {value!r} is not a {column.type}")
    if column.default is not None:
        if not isinstance(column.default, allowed) or (isinstance(column.default, bool) and column.type != "boolean"):
            report.error(at, f"default {column.default!r} is not a {column.type}")
        elif column.enum is not None and column.default not in column.enum:
            report.error(at, f"default {column.default!r} is not one of the enum values")
    if column.references:
        ref_table_name, ref_column_name = column.references.split(".")
        ref_table = spec.table(ref_table_name)
        ref_column = ref_table.column(ref_column_name) if ref_table else None
        if ref_column is None:
            report.error(at, f"references unknown column {column.references}")
        else:
            if not (ref_column.unique or ref_table.primary_key == [ref_column.name]):  # type: ignore[union-attr]
                report.error(at, f"references {column.references}, which is neither the primary key nor unique")
            if _SQL_TYPES[ref_column.type] != _SQL_TYPES[column.type]:
                report.error(at, f"is {column.type} but references {column.references} ({ref_column.type})")


def _check_sequences(spec: EnvSpec, report: ValidationReport) -> None:
    for prefix in _duplicates([s.prefix for s in spec.sequences]):
        report.error(f"sequences.{prefix}", "duplicate prefix")
    for sequence in spec.sequences:
        table = spec.table(sequence.table)
        column = table.column(sequence.column) if table else None
        if column is None:
            report.error(f"sequences.{sequence.prefix}", f"unknown column {sequence.table}.{sequence.column}")
        elif column.type != "text":
            report.error(f"sequences.{sequence.prefix}", f"{sequence.table}.{sequence.column} must be a text column")


def _check_parameters(tool: Tool, report: ValidationReport) -> list[str]:
    where = f"tools.{tool.name}.parameters"
    schema = tool.parameters
    try:
        if not jsonschema_rs.meta.is_valid(schema):  # fast path; the message comes from jsonschema
            jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        path = "/".join(str(p) for p in e.path)
        report.error(where, f"not a valid JSON Schema: {e.message}" + (f" (at {path})" if path else ""))
        return []
    if schema.get("type") != "object":
        report.error(where, "must be a JSON Schema with \"type\": \"object\"")
        return []
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        report.error(where, "'properties' must be an object")
        return []
    for name, prop in properties.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.islower() or name.startswith("_"):
            report.error(f"{where}.{name}", "parameter names are lower_snake_case identifiers (they bind as :name)")
        elif name.upper() in _SQL_KEYWORDS:
            report.error(f"{where}.{name}", f"'{name}' is an SQL keyword, so ':{name}' does not parse; choose another name")
        elif not isinstance(prop, dict) or not prop.get("description"):
            report.error(f"{where}.{name}", "needs a 'description' the agent can read")
        elif "type" not in prop and "enum" not in prop and "const" not in prop:
            report.error(f"{where}.{name}", "needs a 'type' (or 'enum')")
    for name in schema.get("required", []):
        if name not in properties:
            report.error(f"{where}.required", f"{name!r} is required but not a property")
    if schema.get("additionalProperties", False) is not False:
        report.error(where, "'additionalProperties' must be false (or absent): unknown arguments are refused")
    return list(properties)


def _check_tool(spec: EnvSpec, tool: Tool, catalog: Mapping[str, Mapping[str, str]], report: ValidationReport) -> ToolAnalysis:
    params = _check_parameters(tool, report)
    analysis = ToolAnalysis(name=tool.name, kind=tool.kind, params=params)
    bound = set(params)
    lets: set[str] = set()
    prefixes = {s.prefix for s in spec.sequences}
    for index, step in enumerate(tool.steps):
        where = step_location(tool, index)
        if isinstance(step, ReturnStep) and index != len(tool.steps) - 1:
            report.error(where, "a return step must be the last step")
        if isinstance(step, ExecStep) and tool.kind == "read":
            report.error(where, "a read tool cannot have an exec step; make the tool kind 'write'")
        sql = step.sql
        if sql is None:
            analysis.steps.append(StepAnalysis(index, step.kind, None))
            continue
        try:
            info = analyze_statement(sql, "dml" if isinstance(step, ExecStep) else "select", catalog)
        except SqlProblem as e:
            report.error(f"{where}.sql", str(e))
            analysis.steps.append(StepAnalysis(index, step.kind, None))
            continue
        for name in info.params:
            if name not in bound:
                hint = " (a let binding is only visible to later steps)" if name in _later_lets(tool, index) else ""
                report.error(f"{where}.sql", f"uses :{name}, which is neither a declared parameter nor an earlier let{hint}")
        if info.new_id_prefixes and tool.kind == "read":
            report.error(f"{where}.sql", "new_id() draws an id, which changes state; only write tools may call it")
        for prefix in info.new_id_prefixes:
            if prefix is None:
                report.error(f"{where}.sql", "new_id() takes a literal prefix, e.g. new_id('LOAN')")
            elif prefix not in prefixes:
                report.error(f"{where}.sql", f"new_id('{prefix}') names no declared sequence; add it to 'sequences'")
        for table, columns in info.reads.items():
            analysis.reads.setdefault(table, set()).update(columns)
        for table, columns in info.writes.items():
            analysis.writes.setdefault(table, set()).update(columns)
        analysis.steps.append(StepAnalysis(index, step.kind, info))
        if isinstance(step, LetStep):
            if step.name in bound or step.name in lets:
                report.error(f"{where}.name", f"{step.name!r} is already a parameter or an earlier let")
            lets.add(step.name)
            bound |= _let_names(step, info.outputs)
    if tool.kind == "write" and not any(isinstance(s, ExecStep) for s in tool.steps):
        report.error(f"tools.{tool.name}", "a write tool needs at least one exec step; otherwise make it 'read'")
    if not any(isinstance(s, RequireStep) for s in tool.steps) and tool.kind == "write":
        report.warn(f"tools.{tool.name}", "a write tool with no require step enforces no business rule")
    return analysis


def _let_names(step: LetStep, outputs: list[OutputColumn]) -> set[str]:
    if step.shape == "scalar":
        return {step.name}
    return {f"{step.name}_{o.name}" for o in outputs}


def _later_lets(tool: Tool, index: int) -> set[str]:
    return {s.name for s in tool.steps[index:] if isinstance(s, LetStep)}
