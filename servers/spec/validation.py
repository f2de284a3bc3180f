"""Static validation of an environment spec: everything that can be checked without running it.

``parse_spec`` turns JSON into an :class:`EnvSpec` (schema errors located by path);
``validate_spec`` checks names, references, JSON Schemas and every SQL statement, and computes
each tool's read and write sets. A spec that passes here is then prepared against a real
SQLite copy by :mod:`servers.state.compiler`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import jsonschema_rs
from pydantic import ValidationError
from sqlglot.dialects.sqlite import SQLite

from ..errors import SpecError, SpecIssue
from .ddl import CheckProblem, check_expression
from .fragments import FragmentSet, expand_fragments, fragment_references
from .models import EnvSpec, ExecStep, ForEachStep, LetStep, NestedStep, RequireStep, ReturnStep, Step, Tool
from .sql_analysis import OutputColumn, SqlProblem, StatementInfo, analyze_statement

__all__ = [
    "StepAnalysis",
    "ToolAnalysis",
    "ValidationReport",
    "parse_spec",
    "validate_spec",
    "step_location",
    "nested_location",
    "sql_catalog",
    "element_keys",
    "element_names",
]

_SQL_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "real": "REAL",
    "boolean": "INTEGER",
    "date": "TEXT",
    "datetime": "TEXT",
    "json": "TEXT",
}
_SQL_KEYWORDS = frozenset(k for k in SQLite.Tokenizer.KEYWORDS if k.isalpha())
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "integer": (int,),
    "real": (int, float),
    "boolean": (bool,),
    "date": (str,),
    "datetime": (str,),
    "json": (str, int, float, bool),
}


@dataclass
class StepAnalysis:
    """One step as validated. A ``for_each`` step is followed by its nested steps, each with ``parent`` set."""

    index: int
    kind: str
    info: StatementInfo | None  # None for a message-only return, a for_each, or a statement with problems
    location: str = ""
    parent: int | None = None  # the for_each step's index, for a nested step
    sql: str | None = None  # the statement as it runs: the step's SQL with the fragments it uses in front
    fragments: tuple[str, ...] = ()  # the fragments it uses, transitively


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

    def step(self, location: str) -> StepAnalysis | None:
        return next((s for s in self.steps if s.location == location), None)

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
    fragments: dict[str, StatementInfo] = field(default_factory=dict)
    """Each fragment that is valid on its own, analysed with the fragments it uses."""

    @property
    def ok(self) -> bool:
        return not self.issues

    def error(self, location: str, message: str) -> None:
        self.issues.append(SpecIssue(location, message))

    def warn(self, location: str, message: str) -> None:
        self.warnings.append(SpecIssue(location, message))


def step_location(tool: Tool, index: int) -> str:
    return f"tools.{tool.name}.steps[{index}]({tool.steps[index].kind})"


def nested_location(tool: Tool, index: int, nested: int) -> str:
    """``tools.place_order.steps[2](for_each).steps[1](exec)``"""
    loop = tool.steps[index]
    assert isinstance(loop, ForEachStep)
    return f"{step_location(tool, index)}.steps[{nested}]({loop.steps[nested].kind})"


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
            named = (
                node[item].get("name")
                if isinstance(node, list) and item < len(node) and isinstance(node[item], dict)
                else None
            )
            if named and parts and parts[-1] in ("tools", "tables", "columns", "checks", "fragments"):
                parts[-1] = f"{parts[-1]}.{named}"
            elif parts:
                parts[-1] = f"{parts[-1]}[{item}]"
            else:
                parts.append(f"[{item}]")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        elif item in ("require", "let", "exec", "return", "for_each") and parts and parts[-1].startswith("steps"):
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
    fragments = _check_fragments(spec, catalog, report)
    names: set[str] = set()
    for tool in spec.tools:
        if tool.name in names:
            report.error(f"tools.{tool.name}", "duplicate tool name")
        names.add(tool.name)
        report.tools[tool.name] = _ToolChecker(spec, tool, catalog, fragments, report).run()
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
        report.error(where, 'must be a JSON Schema with "type": "object"')
        return []
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        report.error(where, "'properties' must be an object")
        return []
    for name, prop in properties.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.islower() or name.startswith("_"):
            report.error(f"{where}.{name}", "parameter names are lower_snake_case identifiers (they bind as :name)")
        elif name.upper() in _SQL_KEYWORDS:
            report.error(
                f"{where}.{name}", f"'{name}' is an SQL keyword, so ':{name}' does not parse; choose another name"
            )
        elif not isinstance(prop, dict) or not prop.get("description"):
            report.error(f"{where}.{name}", "needs a 'description' the agent can read")
        elif "type" not in prop and "enum" not in prop and "const" not in prop:
            report.error(f"{where}.{name}", "needs a 'type' (or 'enum')")
        elif "errorMessage" in prop and not (isinstance(prop["errorMessage"], str) and prop["errorMessage"].strip()):
            report.error(
                f"{where}.{name}.errorMessage",
                "must be a non-empty string: the message an agent reads when this argument is wrong or missing",
            )
    for name in schema.get("required", []):
        if name not in properties:
            report.error(f"{where}.required", f"{name!r} is required but not a property")
    if schema.get("additionalProperties", False) is not False:
        report.error(where, "'additionalProperties' must be false (or absent): unknown arguments are refused")
    return list(properties)


_SCALAR_TYPES = frozenset({"string", "integer", "number", "boolean"})


def element_keys(
    tool: Tool, step: ForEachStep, rows_lets: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...] | None, str | None]:
    """What each element of a ``for_each`` binds: ``(keys, None)`` when elements are objects (``:<as>_<key>``
    per key), ``(None, None)`` when they are scalars (``:<as>``), or ``(None, problem)``."""
    if step.over in rows_lets:
        return tuple(rows_lets[step.over]), None
    properties = tool.parameters.get("properties", {})
    schema = properties.get(step.over) if isinstance(properties, dict) else None
    if not isinstance(schema, dict):
        return None, (f"loops over {step.over!r}, which is neither a parameter nor an earlier let with shape 'rows'")
    types = schema.get("type")
    types = {types} if isinstance(types, str) else set(types) if isinstance(types, list) else set()
    if "array" not in types or not types <= {"array", "null"}:
        return None, f"loops over the parameter {step.over!r}, which is not of type 'array'"
    items = schema.get("items")
    if not isinstance(items, dict):
        return None, f"the parameter {step.over!r} needs 'items' (an object with 'properties', or a scalar type)"
    item_types = items.get("type")
    item_types = (
        {item_types} if isinstance(item_types, str) else set(item_types) if isinstance(item_types, list) else set()
    )
    item_types.discard("null")
    if item_types == {"object"} or (not item_types and isinstance(items.get("properties"), dict)):
        keys = items.get("properties")
        if not isinstance(keys, dict) or not keys:
            return None, f"the items of {step.over!r} are objects, so they need 'properties' (each binds a name)"
        bad = [k for k in keys if not (isinstance(k, str) and k.isidentifier() and k.islower())]
        if bad:
            return None, f"the items of {step.over!r} have the key {bad[0]!r}, which cannot bind as a parameter"
        return tuple(keys), None
    if (item_types and item_types <= _SCALAR_TYPES) or (not item_types and ("enum" in items or "const" in items)):
        return None, None
    return None, (
        f"the items of {step.over!r} must be objects with 'properties' or scalars (string, integer, number, boolean)"
    )


def element_names(step: ForEachStep, keys: tuple[str, ...] | None) -> set[str]:
    """The names one element binds for the nested steps."""
    names = {f"{step.as_}_{k}" for k in keys} if keys is not None else {step.as_}
    return names | {f"{step.as_}_index"}


def _check_fragments(spec: EnvSpec, catalog: Mapping[str, Mapping[str, str]], report: ValidationReport) -> _Fragments:
    """Each fragment on its own, once: its uses of other fragments, then its SQL with them expanded."""
    tables = {t.name for t in spec.tables}  # a fragment named like a table is refused, and never expanded
    fragments = FragmentSet.build([(f.name, f.sql) for f in spec.fragments if f.name not in tables])
    order = list(fragments.sql)
    broken: set[str] = set()
    for name in _duplicates([f.name for f in spec.fragments]):
        report.error(f"fragments.{name}", "duplicate fragment name")
    for fragment in spec.fragments:
        name, where = fragment.name, f"fragments.{fragment.name}"
        if name in tables:
            report.error(where, f"{name!r} is also a table name; give the fragment a name of its own")
            continue
        if fragments.sql.get(name) != fragment.sql.strip().rstrip(";").rstrip():
            continue  # a duplicate, reported above
        later = [u for u in fragments.uses[name] if order.index(u) >= order.index(name)]
        if later:
            problem = "uses itself" if name in later else f"uses fragment {later[0]}, which is declared after it"
            report.error(f"{where}.sql", f"{problem}; a fragment may use only fragments declared before it")
            broken.add(name)
            continue
        used = fragments.closure(fragments.uses[name])
        failed = [u for u in fragments.uses[name] if u in broken]
        if failed:
            report.error(f"{where}.sql", f"uses fragment {failed[0]}, which has errors")
            broken.add(name)
            continue
        try:
            info = analyze_statement(expand_fragments(fragment.sql, fragments, used), "select", catalog)
        except SqlProblem as e:
            report.error(f"{where}.sql", str(e))
            broken.add(name)
            continue
        if info.new_id_prefixes:
            report.error(f"{where}.sql", "new_id() draws an id; call it in a step, not in a fragment")
            broken.add(name)
            continue
        report.fragments[name] = info
    return _Fragments(fragments, broken, {n: set(i.params) for n, i in report.fragments.items()})


@dataclass
class _Fragments:
    set: FragmentSet
    broken: set[str]
    params: dict[str, set[str]]


class _ToolChecker:
    """Checks one tool's steps in order, tracking what is bound where (parameters, lets, loop elements)."""

    def __init__(
        self,
        spec: EnvSpec,
        tool: Tool,
        catalog: Mapping[str, Mapping[str, str]],
        fragments: _Fragments,
        report: ValidationReport,
    ) -> None:
        self.spec, self.tool, self.catalog, self.fragments, self.report = spec, tool, catalog, fragments, report
        self.prefixes = {s.prefix for s in spec.sequences}
        self.analysis = ToolAnalysis(name=tool.name, kind=tool.kind, params=[])
        self.lets: set[str] = set()
        self.rows_lets: dict[str, list[str]] = {}
        self.unknown_element: str | None = None  # inside a loop whose elements are unknown: their name prefix

    def run(self) -> ToolAnalysis:
        tool, report = self.tool, self.report
        params = _check_parameters(tool, report)
        self.analysis.params = params
        bound = set(params)
        for index, step in enumerate(tool.steps):
            where = step_location(tool, index)
            if isinstance(step, ReturnStep) and index != len(tool.steps) - 1:
                report.error(where, "a return step must be the last step")
            if isinstance(step, ForEachStep):
                self._check_loop(index, step, where, bound)
            else:
                self._check_step(index, None, step, where, bound, self.lets, self._later_lets(index))
        every = [s for s in tool.steps for s in (s.steps if isinstance(s, ForEachStep) else [s])]
        if tool.kind == "write" and not any(isinstance(s, ExecStep) for s in every):
            report.error(f"tools.{tool.name}", "a write tool needs at least one exec step; otherwise make it 'read'")
        if not any(isinstance(s, RequireStep) for s in every) and tool.kind == "write":
            report.warn(f"tools.{tool.name}", "a write tool with no require step enforces no business rule")
        return self.analysis

    def _later_lets(self, index: int) -> set[str]:
        later: set[str] = set()
        for step in self.tool.steps[index:]:
            for inner in step.steps if isinstance(step, ForEachStep) else [step]:
                if isinstance(inner, LetStep):
                    later.add(inner.name)
        return later

    def _check_loop(self, index: int, step: ForEachStep, where: str, bound: set[str]) -> None:
        self.analysis.steps.append(StepAnalysis(index, step.kind, None, where))
        if step.over not in bound:
            self.report.error(
                f"{where}.over",
                f"{step.over!r} is neither a parameter nor an earlier let"
                + (" (a let binding is only visible to later steps)" if step.over in self._later_lets(index) else ""),
            )
            keys: tuple[str, ...] | None = None
            problem: str | None = "unknown"
        else:
            keys, problem = element_keys(self.tool, step, self.rows_lets)
            if problem:
                self.report.error(f"{where}.over", problem)
        # when the elements are unknown, the nested steps' uses of :<as>_<key> are not reported again
        self.unknown_element = None if step.over in bound and not problem else f"{step.as_}_"
        names = element_names(step, keys)
        clash = sorted(names & bound)
        if clash:
            self.report.error(
                f"{where}.as", f"the element binds :{clash[0]}, which is already a parameter or a let; rename 'as'"
            )
        inner, inner_lets = bound | names, set(self.lets)  # nested lets are visible inside the loop only
        for nested, nested_step in enumerate(step.steps):
            location = nested_location(self.tool, index, nested)
            later = {s.name for s in step.steps[nested:] if isinstance(s, LetStep)} | self._later_lets(index + 1)
            self._check_step(nested, index, nested_step, location, inner, inner_lets, later)
            if isinstance(nested_step, LetStep) and nested_step.shape == "rows":
                self.rows_lets.pop(nested_step.name, None)  # a loop cannot be nested
        self.unknown_element = None

    def _check_step(
        self,
        index: int,
        parent: int | None,
        step: Step | NestedStep,
        where: str,
        bound: set[str],
        lets: set[str],
        later: set[str],
    ) -> None:
        """Check a statement step; a ``let`` adds its name to ``lets`` and what it binds to ``bound``."""
        tool, report = self.tool, self.report
        if isinstance(step, ExecStep) and tool.kind == "read":
            report.error(where, "a read tool cannot have an exec step; make the tool kind 'write'")
        analysed = StepAnalysis(index, step.kind, None, where, parent)
        self.analysis.steps.append(analysed)
        if isinstance(step, LetStep) and (step.name in bound or step.name in lets):
            report.error(f"{where}.name", f"{step.name!r} is already a parameter or an earlier let")
        if isinstance(step, LetStep):
            lets.add(step.name)
        if isinstance(step, ForEachStep):
            return
        sql = step.sql
        if sql is None:
            return
        fragments = self.fragments
        direct = fragment_references(sql, list(fragments.set.sql))
        used = fragments.set.closure(direct)
        failed = [f for f in direct if f in fragments.broken]
        if failed:
            report.error(f"{where}.sql", f"uses fragment {failed[0]}, which has errors (see fragments.{failed[0]})")
            return
        expanded = expand_fragments(sql, fragments.set, used)
        try:
            info = analyze_statement(expanded, "dml" if isinstance(step, ExecStep) else "select", self.catalog)
        except SqlProblem as e:
            report.error(f"{where}.sql", str(e))
            return
        analysed.info, analysed.sql, analysed.fragments = info, expanded, tuple(used)
        for name in info.params:
            if name in bound or (self.unknown_element and name.startswith(self.unknown_element)):
                continue
            via = [f for f in used if name in fragments.params.get(f, set())]
            hint = " (a let binding is only visible to later steps)" if name in later else ""
            if via and not re.search(rf":{name}\b", sql):
                report.error(
                    f"{where}.sql",
                    f"uses fragment {via[0]}, whose :{name} is neither a declared parameter nor an earlier let "
                    f"here{hint}",
                )
            else:
                report.error(
                    f"{where}.sql", f"uses :{name}, which is neither a declared parameter nor an earlier let{hint}"
                )
        if info.new_id_prefixes and tool.kind == "read":
            report.error(f"{where}.sql", "new_id() draws an id, which changes state; only write tools may call it")
        for prefix in info.new_id_prefixes:
            if prefix is None:
                report.error(f"{where}.sql", "new_id() takes a literal prefix, e.g. new_id('LOAN')")
            elif prefix not in self.prefixes:
                report.error(f"{where}.sql", f"new_id('{prefix}') names no declared sequence; add it to 'sequences'")
        for table, columns in info.reads.items():
            self.analysis.reads.setdefault(table, set()).update(columns)
        for table, columns in info.writes.items():
            self.analysis.writes.setdefault(table, set()).update(columns)
        if isinstance(step, LetStep):
            bound |= _let_names(step, info.outputs)
            if step.shape == "rows":
                self.rows_lets[step.name] = [o.name for o in info.outputs]


def _let_names(step: LetStep, outputs: list[OutputColumn]) -> set[str]:
    if step.shape in ("scalar", "rows"):
        return {step.name}
    return {f"{step.name}_{o.name}" for o in outputs}
