"""Turn a validated spec into executable tools, proving each statement against real SQLite.

Static analysis (:mod:`servers.spec.validation`) vouches for names and statement kinds; here every
statement is also prepared by SQLite itself, on a throwaway copy of the seeded state and under
the same authorizer the calls will run under. That yields the exact column names each SELECT
returns, which message templates, ``let`` rows and output schemas are then checked against.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import sqlglot
from sqlglot import exp

from ..errors import SpecError, SpecIssue
from ..spec.ddl import check_expression
from ..spec.models import EnvSpec, ExecStep, LetStep, RequireStep, ReturnStep, Step, Tool
from ..spec.validation import ToolAnalysis, ValidationReport, step_location
from .store import StateCopy, StateTemplate

__all__ = ["CompiledStep", "CompiledTool", "compile_tools", "TEMPLATE_FIELD", "render_template"]

TEMPLATE_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_REPEATED = re.compile(r":\d+$")

_JSON_TYPES = {
    "text": "string", "date": "string", "datetime": "string",
    "integer": "integer", "real": "number", "boolean": "boolean",
}


def render_template(template: str, values: dict[str, Any]) -> str:
    """Fill ``{name}`` fields; an unknown name is left as written. No attribute access, no format specs."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            return match.group(0)
        value = values[name]
        if value is None:
            return "none"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    return TEMPLATE_FIELD.sub(fill, template)


@dataclass(frozen=True)
class CompiledStep:
    step: Step
    index: int
    location: str
    outputs: tuple[str, ...] = ()
    output_types: tuple[str | None, ...] = ()  # column type per output, when it is a plain column


@dataclass
class CompiledTool:
    tool: Tool
    analysis: ToolAnalysis
    steps: list[CompiledStep]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    validator: Any  # a compiled jsonschema_rs validator
    param_names: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    date_params: dict[str, str] = field(default_factory=dict)
    """Parameters holding a date (``date``) or a date and time (``datetime``), whose values must be real
    calendar dates: declared with ``format: date`` / ``date-time``, or with a ``pattern`` a date matches."""

    @property
    def name(self) -> str:
        return self.tool.name


def compile_tools(spec: EnvSpec, report: ValidationReport, template: StateTemplate) -> dict[str, CompiledTool]:
    """Compile every tool; raises :class:`SpecError` listing every statement SQLite refuses."""
    issues: list[SpecIssue] = []
    scratch = template.copy()
    try:
        _prepare_table_checks(spec, scratch, issues)
        tools = {tool.name: _compile_tool(spec, tool, report.tools[tool.name], scratch, issues) for tool in spec.tools}
    finally:
        scratch.close()
    if issues:
        raise SpecError(issues)
    return tools


def _compile_tool(spec: EnvSpec, tool: Tool, analysis: ToolAnalysis, scratch: StateCopy, issues: list[SpecIssue]) -> CompiledTool:
    params = tuple(analysis.params)
    bound: set[str] = set(params)
    steps: list[CompiledStep] = []
    for index, step in enumerate(tool.steps):
        location = step_location(tool, index)
        outputs: tuple[str, ...] = ()
        types: tuple[str | None, ...] = ()
        if step.sql is not None:
            try:
                outputs = _prepare(scratch, step, tool.kind, bound)
            except sqlite3.Error as e:
                issues.append(SpecIssue(f"{location}.sql", f"SQLite refuses it: {e}"))
                steps.append(CompiledStep(step, index, location))
                continue
            types = _output_types(spec, analysis, index, outputs)
            duplicated = sorted({n for n in outputs if outputs.count(n) > 1})
            if duplicated and not isinstance(step, ExecStep) and getattr(step, "shape", "row") != "scalar":
                issues.append(SpecIssue(f"{location}.sql", f"returns the column name(s) {', '.join(duplicated)} twice; alias them"))
        visible = bound | (set(outputs) if isinstance(step, RequireStep) else set())
        for text_field in ("error", "message"):
            text = getattr(step, text_field, None)
            if text:
                for name in TEMPLATE_FIELD.findall(text):
                    if name not in visible:
                        issues.append(SpecIssue(
                            f"{location}.{text_field}",
                            f"names {{{name}}}, which is not a parameter, an earlier let, or a column this step returns",
                        ))
        if isinstance(step, LetStep):
            bound |= {step.name} if step.shape == "scalar" else {f"{step.name}_{n}" for n in outputs}
        steps.append(CompiledStep(step, index, location, outputs, types))

    input_schema = dict(tool.parameters)
    input_schema.setdefault("properties", {})
    input_schema["additionalProperties"] = False
    properties = input_schema["properties"]
    return CompiledTool(
        tool=tool,
        analysis=analysis,
        steps=steps,
        input_schema=input_schema,
        output_schema=_output_schema(steps[-1] if steps else None),
        validator=jsonschema_rs.validator_for(input_schema, validate_formats=True),
        param_names=params,
        defaults={n: p["default"] for n, p in properties.items() if isinstance(p, dict) and "default" in p},
        date_params={n: kind for n, p in properties.items() if (kind := _date_kind(p))},
    )


_DATE_SAMPLES = ("2026-01-05",)
_DATETIME_SAMPLES = ("2026-01-05 14:30", "2026-01-05 14:30:00", "2026-01-05T14:30:00", "2026-01-05T14:30:00Z")


def _date_kind(prop: Any) -> str | None:
    """``date``, ``datetime`` or None: what a parameter's schema says its values are."""
    if not isinstance(prop, dict):
        return None
    declared = {"date": "date", "date-time": "datetime"}.get(prop.get("format"))  # type: ignore[arg-type]
    if declared:
        return declared
    pattern = prop.get("pattern")
    if not isinstance(pattern, str):
        return None
    try:
        compiled = re.compile(pattern)
    except re.error:
        return None
    if any(compiled.search(s) for s in _DATETIME_SAMPLES):
        return "datetime"
    if any(compiled.search(s) for s in _DATE_SAMPLES):
        return "date"
    return None


def _prepare_table_checks(spec: EnvSpec, scratch: StateCopy, issues: list[SpecIssue]) -> None:
    """SQLite does not consult the authorizer inside CHECK constraints, so prepare each one as a
    SELECT under it: a function outside the allow-list is refused here, at load."""
    for table in spec.tables:
        for check in table.checks:
            probe = sqlglot.select(check_expression(table, check.expression), dialect="sqlite").from_(
                exp.to_table(table.name)).sql(dialect="sqlite", identify=True)
            with scratch.mode("read"):
                try:
                    scratch.conn.execute(f"EXPLAIN {probe}").fetchall()
                except sqlite3.Error as e:
                    issues.append(SpecIssue(f"tables.{table.name}.checks.{check.name}", f"SQLite refuses it: {e}"))


def _prepare(scratch: StateCopy, step: Step, kind: str, bound: set[str]) -> tuple[str, ...]:
    """Have SQLite prepare the statement under the call's authorizer mode; return its column names.

    Nothing runs: DML is only EXPLAINed, and a SELECT is wrapped in ``LIMIT 0`` (SQLite reports a
    repeated name there as ``name:1``, which is turned back into the repeat it stands for).
    """
    nulls = dict.fromkeys(bound)
    with scratch.mode("write" if kind == "write" else "read"):
        if isinstance(step, ExecStep):
            scratch.conn.execute(f"EXPLAIN {step.sql}", nulls).fetchall()
            return ()
        scratch.conn.execute(f"EXPLAIN {step.sql}", nulls).fetchall()
        body = step.sql.strip().rstrip(";")
        cursor = scratch.conn.execute(f"SELECT * FROM (\n{body}\n) LIMIT 0", nulls)
        names = [d[0] for d in cursor.description or ()]
        cursor.close()
        return tuple(_REPEATED.sub("", n) if _REPEATED.sub("", n) in names else n for n in names)


def _output_types(spec: EnvSpec, analysis: ToolAnalysis, index: int, outputs: tuple[str, ...]) -> tuple[str | None, ...]:
    info = analysis.steps[index].info if index < len(analysis.steps) else None
    if info is None or len(info.outputs) != len(outputs):
        return (None,) * len(outputs)
    types: list[str | None] = []
    for output in info.outputs:
        table = spec.table(output.table) if output.table else None
        column = table.column(output.column) if table and output.column else None
        types.append(column.type if column else output.type)
    return tuple(types)


def _value_schema(column_type: str | None) -> dict[str, Any]:
    if column_type == "json":
        return {}
    if column_type is None:  # a computed SQLite value: NULL, INTEGER/REAL or TEXT (a BLOB comes back as hex text)
        return {"type": ["string", "number", "null"]}
    return {"type": [_JSON_TYPES[column_type], "null"]}


def _output_schema(last: CompiledStep | None) -> dict[str, Any]:
    step = last.step if last else None
    if not isinstance(step, ReturnStep) or step.sql is None:
        return {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
    assert last is not None
    if step.shape == "scalar":
        return {"type": "object", "properties": {"value": _value_schema(last.output_types[0] if last.output_types else None)},
                "required": ["value"]}
    row = {
        "type": "object",
        "properties": {name: _value_schema(t) for name, t in zip(last.outputs, last.output_types, strict=True)},
        "required": list(last.outputs),
    }
    if step.shape == "row":
        return row
    return {
        "type": "object",
        "properties": {
            "rows": {"type": "array", "items": row},
            "count": {"type": "integer", "description": "Rows returned."},
            "truncated": {"type": "boolean", "description": "True when more rows matched than were returned."},
        },
        "required": ["rows", "count", "truncated"],
    }
