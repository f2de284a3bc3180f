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
from ..spec.models import EnvSpec, ExecStep, ForEachStep, LetStep, NestedStep, RequireStep, ReturnStep, Step, Tool
from ..spec.sql_analysis import StatementInfo
from ..spec.validation import (
    ToolAnalysis,
    ValidationReport,
    element_keys,
    element_names,
    nested_location,
    step_location,
)
from .store import StateCopy, StateTemplate

__all__ = ["CompiledStep", "CompiledTool", "compile_tools", "TEMPLATE_FIELD", "render_template"]

TEMPLATE_FIELD = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_REPEATED = re.compile(r":\d+$")

_JSON_TYPES = {
    "text": "string",
    "date": "string",
    "datetime": "string",
    "integer": "integer",
    "real": "number",
    "boolean": "boolean",
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
    step: Step | NestedStep
    index: int  # position in its list of steps (a nested step's within its for_each)
    location: str
    outputs: tuple[str, ...] = ()
    output_types: tuple[str | None, ...] = ()  # column type per output, when it is a plain column
    sql: str | None = None
    """The statement as it runs: the step's SQL with the fragments it uses defined in front."""
    parent: int | None = None  # the for_each step's index, for a nested step
    nested: tuple[CompiledStep, ...] = ()  # a for_each's steps
    element_keys: tuple[str, ...] | None = None
    """A for_each's elements are objects binding ``:<as>_<key>`` per key; None: scalars binding ``:<as>``."""


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
    error_messages: dict[str, str] = field(default_factory=dict)
    """A parameter's own ``errorMessage``: reported for any problem with its argument, missing included."""
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


def _compile_tool(
    spec: EnvSpec, tool: Tool, analysis: ToolAnalysis, scratch: StateCopy, issues: list[SpecIssue]
) -> CompiledTool:
    params = tuple(analysis.params)
    bound: set[str] = set(params)
    rows_lets: dict[str, tuple[str, ...]] = {}
    steps: list[CompiledStep] = []
    for index, step in enumerate(tool.steps):
        location = step_location(tool, index)
        if not isinstance(step, ForEachStep):
            steps.append(_compile_step(spec, tool, analysis, scratch, issues, step, index, location, bound, rows_lets))
            continue
        keys, _problem = element_keys(tool, step, rows_lets)  # a problem was reported by validation
        inner = bound | element_names(step, keys)
        nested = tuple(
            _compile_step(
                spec, tool, analysis, scratch, issues, inner_step, n, nested_location(tool, index, n), inner, {}, index
            )
            for n, inner_step in enumerate(step.steps)
        )
        steps.append(CompiledStep(step, index, location, nested=nested, element_keys=keys))

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
        error_messages={
            n: p["errorMessage"]
            for n, p in properties.items()
            if isinstance(p, dict) and isinstance(p.get("errorMessage"), str)
        },
        date_params={n: kind for n, p in properties.items() if (kind := _date_kind(p))},
    )


def _compile_step(
    spec: EnvSpec,
    tool: Tool,
    analysis: ToolAnalysis,
    scratch: StateCopy,
    issues: list[SpecIssue],
    step: Step | NestedStep,
    index: int,
    location: str,
    bound: set[str],
    rows_lets: dict[str, tuple[str, ...]],
    parent: int | None = None,
) -> CompiledStep:
    """Prepare one statement step and check its templates; a ``let`` adds what it binds to ``bound``."""
    analysed = analysis.step(location)
    sql = analysed.sql if analysed is not None and analysed.sql is not None else step.sql
    outputs: tuple[str, ...] = ()
    types: tuple[str | None, ...] = ()
    if sql is not None:
        try:
            outputs = _prepare(scratch, step, sql, tool.kind, bound)
        except sqlite3.Error as e:
            issues.append(SpecIssue(f"{location}.sql", f"SQLite refuses it: {e}"))
            return CompiledStep(step, index, location, sql=sql, parent=parent)
        types = _output_types(spec, analysed.info if analysed else None, outputs)
        duplicated = sorted({n for n in outputs if outputs.count(n) > 1})
        if duplicated and not isinstance(step, ExecStep) and getattr(step, "shape", "row") not in ("scalar", "text"):
            issues.append(
                SpecIssue(f"{location}.sql", f"returns the column name(s) {', '.join(duplicated)} twice; alias them")
            )
    visible = bound | (set(outputs) if isinstance(step, RequireStep) else set())
    for text_field in ("error", "message"):
        text = getattr(step, text_field, None)
        if text:
            for name in TEMPLATE_FIELD.findall(text):
                if name not in visible:
                    issues.append(
                        SpecIssue(
                            f"{location}.{text_field}",
                            (
                                f"names {{{name}}}, which is not a parameter, an earlier let, or a column "
                                "this step returns"
                            ),
                        )
                    )
    if isinstance(step, LetStep):
        bound |= {step.name} if step.shape in ("scalar", "rows") else {f"{step.name}_{n}" for n in outputs}
        if step.shape == "rows":
            rows_lets[step.name] = outputs
    return CompiledStep(step, index, location, outputs, types, sql, parent)


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
            probe = (
                sqlglot.select(check_expression(table, check.expression), dialect="sqlite")
                .from_(exp.to_table(table.name))
                .sql(dialect="sqlite", identify=True)
            )
            with scratch.mode("read"):
                try:
                    scratch.conn.execute(f"EXPLAIN {probe}").fetchall()
                except sqlite3.Error as e:
                    issues.append(SpecIssue(f"tables.{table.name}.checks.{check.name}", f"SQLite refuses it: {e}"))


def _prepare(scratch: StateCopy, step: Step | NestedStep, sql: str, kind: str, bound: set[str]) -> tuple[str, ...]:
    """Have SQLite prepare the statement under the call's authorizer mode; return its column names.

    Nothing runs: DML is only EXPLAINed, and a SELECT is wrapped in ``LIMIT 0`` (SQLite reports a
    repeated name there as ``name:1``, which is turned back into the repeat it stands for).
    """
    nulls = dict.fromkeys(bound)
    with scratch.mode("write" if kind == "write" else "read"):
        scratch.conn.execute(f"EXPLAIN {sql}", nulls).fetchall()
        if isinstance(step, ExecStep):
            return ()
        body = sql.strip().rstrip(";")
        cursor = scratch.conn.execute(f"SELECT * FROM (\n{body}\n) LIMIT 0", nulls)
        names = [d[0] for d in cursor.description or ()]
        cursor.close()
        return tuple(_REPEATED.sub("", n) if _REPEATED.sub("", n) in names else n for n in names)


def _output_types(spec: EnvSpec, info: StatementInfo | None, outputs: tuple[str, ...]) -> tuple[str | None, ...]:
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
        return {
            "type": "object",
            "properties": {"value": _value_schema(last.output_types[0] if last.output_types else None)},
            "required": ["value"],
        }
    if step.shape == "text":
        return {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
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
