"""Run a tool call against one state copy: check the arguments, run the steps in one transaction.

A call either commits every step or changes nothing. Values only ever reach SQLite as bound
parameters. A failure becomes a :class:`~servers.errors.ToolError` whose message tells the agent
what to fix; :meth:`Executor.call` turns it into a :class:`ToolResult` with ``is_error`` set.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ..errors import (
    EnvFleetError,
    ReadOnlyStateError,
    RuleViolation,
    ToolArgumentError,
    ToolError,
    ToolExecutionError,
    UnknownToolError,
)
from ..spec.models import Comparison, ExecStep, ForEachStep, LetStep, Limits, RequireStep, ReturnStep
from .compiler import CompiledStep, CompiledTool, render_template
from .store import SQLITE_LIMITS, StateCopy, function_error, to_sql_value

__all__ = ["ToolResult", "Executor", "expectation_holds", "CallPreempted", "preemptible"]

_MAX_DEPTH = 32
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SAVEPOINT = "envfleet_call"
_CONSTRAINT = re.compile(r"^(CHECK|UNIQUE|NOT NULL|FOREIGN KEY) constraint failed(?:: (.+))?$")
_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class CallPreempted(EnvFleetError):
    """A call run under :func:`preemptible` outgrew its small budget (or found its state busy) and was
    rolled back untouched, id counters included: run it again without the budget and it does the same."""


_PREEMPT: ContextVar[tuple[int, float] | None] = ContextVar("envfleet_preempt", default=None)


@contextmanager
def preemptible(steps: int, milliseconds: float) -> Iterator[None]:
    """Calls inside run with a small budget of SQLite steps and wall-clock time; one that needs more
    raises :class:`CallPreempted` instead of an error. A server runs most calls this way on its event
    loop, where they are cheapest, and only the ones that raise in a worker thread."""
    token = _PREEMPT.set((steps, milliseconds))
    try:
        yield
    finally:
        _PREEMPT.reset(token)


@dataclass
class ToolResult:
    """The outcome of one call, in the shape an MCP ``CallToolResult`` needs."""

    tool: str
    arguments: Any
    structured: dict[str, Any]
    is_error: bool = False
    duration_ms: float = 0.0
    error: ToolError | None = field(default=None, repr=False)
    plain_text: bool = False
    """The result is a ``text`` return: its text is the content, not JSON."""

    @property
    def text(self) -> str:
        if self.is_error and self.error is not None:
            return self.error.message
        if self.plain_text:
            return str(self.structured["text"])
        if set(self.structured) == {"message"}:
            return str(self.structured["message"])
        return json.dumps(self.structured, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _Call:
    """What one call has bound so far, and where in a loop it is (for the error it may raise)."""

    tool: CompiledTool
    bindings: dict[str, Any]
    args: dict[str, Any]
    rows: dict[str, tuple[tuple[str, ...], list[tuple[Any, ...]]]] = field(default_factory=dict)
    element: int | None = None


class Executor:
    """Executes the compiled tools of one environment against any of its state copies."""

    def __init__(
        self, tools: Mapping[str, CompiledTool], limits: Limits, constraint_messages: Mapping[str, str]
    ) -> None:
        self.tools = dict(tools)
        self.limits = limits
        self.constraint_messages = dict(constraint_messages)

    def call(self, state: StateCopy | None, name: str, arguments: Any = None, *, read_only: bool = False) -> ToolResult:
        """Run a call and never raise a :class:`ToolError`: failures come back with ``is_error``."""
        started = time.perf_counter()
        try:
            structured = self.execute(state, name, arguments, read_only=read_only)
        except ToolError as e:
            return ToolResult(name, arguments, {"error": e.to_dict()}, True, _ms(started), e)
        last = self.tools[name].tool.steps[-1]
        plain = isinstance(last, ReturnStep) and last.shape == "text"
        return ToolResult(name, arguments, structured, False, _ms(started), plain_text=plain)

    def execute(
        self, state: StateCopy | None, name: str, arguments: Any = None, *, read_only: bool = False
    ) -> dict[str, Any]:
        """Run a call; raises :class:`ToolError` on any failure, after rolling everything back.

        ``read_only`` marks shared state: write tools are refused before anything runs.
        """
        tool = self.tools.get(name)
        if tool is None:
            raise UnknownToolError(f"Unknown tool {name!r}. Available tools: {', '.join(sorted(self.tools))}.")
        args = self._check_arguments(tool, arguments)
        if tool.tool.kind == "write" and (read_only or state is None):
            raise ReadOnlyStateError(
                f"{name} changes state, and this connection's state is shared and read-only. Connect to a "
                "private state URL (…/s/<key>/mcp, with a key of your choosing) to make changes."
            )
        assert state is not None
        bindings: dict[str, Any] = {
            p: to_sql_value(args[p] if p in args else tool.defaults.get(p)) for p in tool.param_names
        }
        preempt = _PREEMPT.get()
        if preempt is not None:
            if not state.lock.acquire(blocking=False):  # never wait for another thread here
                raise CallPreempted(name)
            try:
                return self._transaction(state, tool, bindings, args, preempt)
            finally:
                state.lock.release()
        with state.lock:  # one call at a time per state copy, whichever threads the calls come from
            return self._transaction(state, tool, bindings, args)

    def _transaction(
        self,
        state: StateCopy,
        tool: CompiledTool,
        bindings: dict[str, Any],
        args: dict[str, Any],
        preempt: tuple[int, float] | None = None,
    ) -> dict[str, Any]:
        """Every step in one savepoint: all committed, or all undone (rows and id counters)."""
        name = tool.name
        call = _Call(tool, bindings, args)
        counters = dict(state.counters)
        conn = state.conn
        changes = conn.total_changes
        state.set_mode("internal")
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        try:
            if preempt is not None:
                state.begin_budget(min(preempt[0], self.limits.max_sql_steps), min(preempt[1], self.limits.max_call_ms))
            else:
                state.begin_budget(self.limits.max_sql_steps, self.limits.max_call_ms)
            state.set_mode("write" if tool.tool.kind == "write" else "read")
            result: dict[str, Any] = {"message": "Done."}
            for step in tool.steps:
                if isinstance(step.step, ForEachStep):
                    self._run_loop(call, step, conn)
                    continue
                outcome = self._run_step(call, step, conn, bindings, args)
                if outcome is not None:
                    result = outcome
            if tool.tool.kind == "read" and (conn.total_changes != changes or state.counters != counters):
                raise ToolExecutionError(f"{name} is a read tool but changed state; the change was undone.")
        except BaseException as e:
            state.set_mode("internal")
            if conn.in_transaction:  # an interrupted write has already been rolled back by SQLite
                conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
                conn.execute(f"RELEASE {_SAVEPOINT}")
            state.counters.clear()
            state.counters.update(counters)
            if preempt is not None and state.stopped_by is not None and isinstance(e, sqlite3.OperationalError):
                raise CallPreempted(name) from e
            if isinstance(e, sqlite3.Error | OverflowError):
                error = self._sqlite_error(name, e, state)
                if call.element is not None:
                    error.details["element"] = call.element
                raise error from e
            if isinstance(e, ToolError) and call.element is not None:
                e.details.setdefault("element", call.element)
            raise
        state.set_mode("internal")
        conn.execute(f"RELEASE {_SAVEPOINT}")
        return result

    # -- arguments -----------------------------------------------------------------------------

    def _check_arguments(self, tool: CompiledTool, arguments: Any) -> dict[str, Any]:
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ToolArgumentError(f"Arguments to {tool.name} must be a JSON object, not {type(arguments).__name__}.")
        found = _value_problems(arguments, self.limits.max_string_length)
        if not found and not tool.validator.is_valid(arguments):
            found = [(_parameter_of(e), _describe_schema_error(e)) for e in tool.validator.iter_errors(arguments)]
        if not found:
            found = [(n, p) for n, kind in tool.date_params.items() if (p := _date_problem(n, arguments.get(n), kind))]
        problems: list[str] = []
        for parameter, problem in found:
            worded = tool.error_messages.get(parameter) if parameter is not None else None
            text = f"{parameter}: {worded}" if worded else problem
            if text not in problems:
                problems.append(text)
        if problems:
            accepted = (
                ", ".join(
                    f"{p}{'' if p not in tool.input_schema.get('required', []) else ' (required)'}"
                    for p in tool.input_schema["properties"]
                )
                or "none"
            )
            raise ToolArgumentError(
                f"Invalid arguments for {tool.name}: {'; '.join(problems[:5]).rstrip('.')}. Parameters: {accepted}.",
                problems=problems,
            )
        return arguments

    # -- steps ---------------------------------------------------------------------------------

    def _run_loop(self, call: _Call, compiled: CompiledStep, conn: sqlite3.Connection) -> None:
        """The nested steps once per element, each element seeing the bindings so far plus its own."""
        step = compiled.step
        assert isinstance(step, ForEachStep)
        if step.over in call.rows:
            columns, rows = call.rows[step.over]
            elements: list[Any] = [dict(zip(columns, row, strict=True)) for row in rows]
            shown: list[Any] = elements
        else:
            value = call.args.get(step.over, call.tool.defaults.get(step.over))
            shown = list(value) if isinstance(value, list) else []
            elements = (
                [
                    {k: to_sql_value(e.get(k)) for k in compiled.element_keys} if isinstance(e, dict) else {}
                    for e in shown
                ]
                if compiled.element_keys is not None
                else [to_sql_value(e) for e in shown]
            )
        limit = self.limits.max_iterations
        if len(elements) > limit:
            raise ToolExecutionError(
                f"{call.tool.name} was refused: {step.over} has {len(elements):,} elements, and one for_each step may "
                f"loop over at most {limit:,} (limits.max_iterations). Nothing was changed. Send fewer at a time.",
                limit="max_iterations",
                step=compiled.index,
            )
        index_name = f"{step.as_}_index"
        for position, element in enumerate(elements):
            call.element = position
            bindings = dict(call.bindings)
            if compiled.element_keys is None:
                bindings[step.as_] = element
                extra = {step.as_: shown[position]}
            else:
                own = {f"{step.as_}_{k}": element.get(k) for k in compiled.element_keys}
                bindings.update(own)
                raw = shown[position]
                extra = {
                    **own,
                    **{f"{step.as_}_{k}": raw[k] for k in compiled.element_keys if isinstance(raw, dict) and k in raw},
                }
            bindings[index_name] = position
            extra[index_name] = position
            shown_values = {**call.args, **extra}
            for nested in compiled.nested:
                self._run_step(call, nested, conn, bindings, shown_values)
        call.element = None

    def _run_step(
        self,
        call: _Call,
        compiled: CompiledStep,
        conn: sqlite3.Connection,
        bindings: dict[str, Any],
        args: dict[str, Any],
    ) -> dict[str, Any] | None:
        """Run one step with ``bindings``; ``args`` are the values templates show over them (as sent)."""
        step = compiled.step
        tool = call.tool
        sql = compiled.sql or ""
        at = compiled.index if compiled.parent is None else compiled.parent
        if isinstance(step, RequireStep):
            cursor = conn.execute(sql, bindings)
            row = cursor.fetchone()
            cursor.close()
            if not expectation_holds(step.expect, row):
                values = {**bindings, **args}
                if row is not None:
                    values.update(zip(compiled.outputs, row, strict=False))
                raise RuleViolation(render_template(step.error, values), rule=step.rule, tool=tool.name, step=at)
            return None
        if isinstance(step, LetStep):
            cursor = conn.execute(sql, bindings)
            if step.shape == "rows":
                try:
                    bindings[step.name] = self._rows_json(call, compiled, step.name, cursor)
                finally:
                    cursor.close()
                return None
            row = cursor.fetchone()
            cursor.close()
            if step.shape == "scalar":
                bindings[step.name] = row[0] if row is not None else None
            else:
                for position, column in enumerate(compiled.outputs):
                    bindings[f"{step.name}_{column}"] = row[position] if row is not None else None
            return None
        if isinstance(step, ExecStep):
            cursor = conn.execute(sql, bindings)
            affected = cursor.rowcount
            if (step.affects == "one" and affected != 1) or (step.affects == "at_least_one" and affected < 1):
                raise RuleViolation(
                    render_template(step.error or "", {**bindings, **args}), rule="affects", tool=tool.name, step=at
                )
            return None
        assert isinstance(step, ReturnStep)
        if step.sql is None:
            return {"message": render_template(step.message or "", {**bindings, **args})}
        cursor = conn.execute(sql, bindings)
        budget = self.limits.max_result_bytes
        try:
            if step.shape in ("scalar", "text"):
                row = cursor.fetchone()
                value = row[0] if row is not None else None
                self._check_result_size(tool.name, _size(row), budget)
                column_type = compiled.output_types[0] if compiled.output_types else None
                if step.shape == "text":
                    return {"text": _to_text(value, column_type)}
                return {"value": _to_json(value, column_type)}
            if step.shape == "row":
                row = cursor.fetchone()
                if row is None:
                    raise RuleViolation(
                        render_template(step.not_found, {**bindings, **args}),
                        rule="not_found",
                        tool=tool.name,
                        step=at,
                    )
                self._check_result_size(tool.name, _size(row), budget)
                return _row(compiled, row)
            rows: list[tuple[Any, ...]] = []
            size = 0
            while len(rows) <= self.limits.max_rows and (row := cursor.fetchone()) is not None:
                rows.append(row)
                if len(rows) <= self.limits.max_rows:  # the extra row only tells that there are more
                    size += _size(row)
                    self._check_result_size(tool.name, size, budget)
        finally:
            cursor.close()
        truncated = len(rows) > self.limits.max_rows
        rows = rows[: self.limits.max_rows]
        return {"rows": [_row(compiled, r) for r in rows], "count": len(rows), "truncated": truncated}

    def _rows_json(self, call: _Call, compiled: CompiledStep, name: str, cursor: sqlite3.Cursor) -> str:
        """A ``rows`` let's value: its rows as a JSON array of objects, at most ``max_value_bytes`` long. The
        rows themselves are kept too, for a for_each over them."""
        budget = self.limits.max_value_bytes
        rows: list[tuple[Any, ...]] = []
        parts: list[str] = []
        size = 2
        for row in cursor:
            try:
                part = json.dumps(_row(compiled, row), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            except ValueError:
                raise ToolExecutionError(
                    f"{call.tool.name} failed: a row of {name} holds a number JSON cannot hold (an infinity)."
                ) from None
            size += (len(part) if part.isascii() else len(part.encode())) + 1
            if size > budget:
                raise ToolExecutionError(
                    f"{call.tool.name} was stopped: the rows of {name} are larger than {budget:,} bytes as JSON "
                    "(limits.max_value_bytes). Nothing was changed. Narrow the request: fewer records at a time.",
                    limit="max_value_bytes",
                )
            rows.append(row)
            parts.append(part)
        call.rows[name] = (compiled.outputs, rows)
        return f"[{','.join(parts)}]"

    @staticmethod
    def _check_result_size(name: str, size: int, budget: int) -> None:
        if size > budget:
            raise ToolExecutionError(
                f"{name} was stopped: its result is larger than {budget:,} bytes (limits.max_result_bytes). Nothing "
                "was "
                "changed. Ask for less: a narrower filter, fewer rows, or one record at a time.",
                limit="max_result_bytes",
            )

    # -- errors --------------------------------------------------------------------------------

    def _sqlite_error(self, name: str, error: sqlite3.Error | OverflowError, state: StateCopy) -> ToolError:
        message = str(error)
        detail = function_error(error)
        if detail is not None:  # a number helper, sum()/avg() or new_id() said what went wrong
            return ToolExecutionError(f"{name} failed: {detail}.")
        if message == "interrupted" and state.stopped_by == "max_call_ms":
            return ToolExecutionError(
                f"{name} was stopped after {state.elapsed_ms():,} ms: a call may run for at most "
                f"{self.limits.max_call_ms:,} ms "
                "(limits.max_call_ms). Nothing was changed. Narrow the request: a more specific filter or fewer "
                "records.",
                limit="max_call_ms",
            )
        if message == "interrupted":
            return ToolExecutionError(
                f"{name} was stopped: it needed more than {self.limits.max_sql_steps:,} SQL steps "
                "(limits.max_sql_steps). "
                "Nothing was changed. Narrow the request: a more specific filter or fewer records.",
                limit="max_sql_steps",
            )
        if message == "LIKE or GLOB pattern too complex":
            longest = SQLITE_LIMITS[sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH]
            return ToolExecutionError(
                f"{name} was refused: a search pattern may be at most {longest:,} characters long (the LIKE pattern "
                "limit). "
                "Nothing was changed. Search for a shorter text.",
                limit="like_pattern_length",
            )
        if message == "database or disk is full":
            return ToolExecutionError(
                f"{name} was stopped: the state would grow beyond {self.limits.max_state_bytes:,} bytes "
                "(limits.max_state_bytes). Nothing was changed. Store less, or remove records you no longer need.",
                limit="max_state_bytes",
            )
        if message == "string or blob too big":
            return ToolExecutionError(
                f"{name} was stopped: a value grew beyond {self.limits.max_value_bytes:,} bytes "
                "(limits.max_value_bytes). "
                "Nothing was changed. Use shorter values or ask for less.",
                limit="max_value_bytes",
            )
        match = _CONSTRAINT.match(message)
        if match:
            kind, detail = match.group(1), match.group(2) or ""
            if kind == "CHECK" and detail in self.constraint_messages:
                return ToolExecutionError(self.constraint_messages[detail], constraint=detail)
            if kind == "UNIQUE":
                return ToolExecutionError(f"A record with the same {detail} already exists.", constraint=detail)
            if kind == "NOT NULL":
                return ToolExecutionError(f"{detail} is required and cannot be empty.", constraint=detail)
            if kind == "FOREIGN KEY":
                return ToolExecutionError("The request refers to a record that does not exist.")
            return ToolExecutionError(f"The change breaks a rule of the data ({kind} {detail}).")
        if "cannot store" in message:
            return ToolExecutionError(f"A value has the wrong type: {message}.")
        if "too big" in message or "too large" in message:
            return ToolExecutionError("A value is too large to store.")
        return ToolExecutionError(f"{name} failed: {message}.")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _value_problems(arguments: dict[str, Any], max_string: int) -> list[tuple[str | None, str]]:
    """Values no schema keyword catches: non-finite numbers, integers SQLite cannot hold, deep nesting,
    huge strings, NUL characters (SQLite's text functions stop at one, so ``a\\u0000b`` would act as ``a``).
    Checked iteratively, before the schema, so no value can exhaust the stack. Each problem comes with the
    parameter it is in."""
    if not all(_encodes(str(k)) for k in arguments):
        return [(None, "an argument name is not valid Unicode")]
    if any("\x00" in str(k) for k in arguments):
        return [(None, "an argument name contains a NUL character (\\u0000)")]
    stack: list[tuple[str, str, Any, int]] = [(k, k, v, 1) for k, v in arguments.items()]
    while stack:
        top, path, value, depth = stack.pop()
        problem = _value_problem(path, value, depth, max_string)
        if problem is not None:
            return [(top, problem)]
        if isinstance(value, dict):
            stack.extend((top, f"{path}.{k}", v, depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((top, f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value))
    return []


def _value_problem(path: str, value: Any, depth: int, max_string: int) -> str | None:
    if depth > _MAX_DEPTH:
        return f"{path} is nested more than {_MAX_DEPTH} levels deep"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{path} must be a finite number, not {value}"
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        return f"{path} is outside the 64-bit integer range"
    if isinstance(value, str):
        if len(value) > max_string:
            return f"{path} is {len(value):,} characters long; the limit is {max_string:,}"
        if not _encodes(value):
            return f"{path} contains an unpaired surrogate, which is not valid Unicode"
        if "\x00" in value:
            return f"{path} contains a NUL character (\\u0000), which text may not hold; remove it"
    if isinstance(value, dict):
        if not all(_encodes(str(k)) for k in value):
            return f"{path} has a key that is not valid Unicode"
        if any("\x00" in str(k) for k in value):
            return f"{path} has a key containing a NUL character (\\u0000)"
    return None


def _parameter_of(error: Any) -> str | None:
    """The parameter a schema error is about: the first step of its path, or the missing property."""
    if error.instance_path:
        first = error.instance_path[0]
        return first if isinstance(first, str) else None
    return getattr(error.kind, "property", None)


_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(?:[Zz]|[+-](\d{2}):?(\d{2}))?$"
)


def _date_problem(name: str, value: Any, kind: str) -> str | None:
    """A date-shaped value must be a real date (and time): no 2026-02-30, no 24:00, no 9999-99-99 99:99.

    ``kind`` is ``date`` or ``datetime`` (see :attr:`CompiledTool.date_params`); a value without the
    shape is left to the schema's own ``format`` or ``pattern``."""
    if not isinstance(value, str):
        return None
    if kind == "date":
        match = _DATE.match(value)
        example = "YYYY-MM-DD, e.g. 2026-01-05"
    else:
        match = _DATETIME.match(value) or _DATE.match(value)
        example = "YYYY-MM-DD HH:MM[:SS], e.g. 2026-01-05 14:30"
    if match is None:
        return None
    parts = [int(g) if g is not None else 0 for g in match.groups()]
    try:
        date(*parts[:3])
        if len(parts) > 3:
            datetime(*parts[:6])
            if not (0 <= parts[6] <= 23 and 0 <= parts[7] <= 59):
                raise ValueError("bad offset")
    except ValueError:
        thing = "date" if kind == "date" else "date and time"
        return f"{name}: {value!r} is not a real {thing} (write {example})"
    return None


def _size(row: tuple[Any, ...] | None) -> int:
    """Bytes a row adds to a result: text and blob lengths, 8 for anything else."""
    if row is None:
        return 0
    total = 0
    for value in row:  # a plain loop: this runs for every row of every result
        if isinstance(value, str):
            total += len(value) if value.isascii() else len(value.encode())  # isascii() is O(1)
        elif isinstance(value, bytes):
            total += len(value)
        else:
            total += 8
    return total


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _describe_schema_error(error: Any) -> str:
    """``path: message``, with a long offending value shortened so the reason stays readable."""
    path = ".".join(str(p) for p in error.instance_path)
    message = error.message
    value = json.dumps(error.instance, ensure_ascii=False, separators=(",", ":"))
    if len(value) > 60 and message.startswith(value):
        size = len(error.instance) if isinstance(error.instance, str | list | dict) else len(value)
        unit = (
            "characters"
            if isinstance(error.instance, str)
            else "items"
            if isinstance(error.instance, list | dict)
            else "characters"
        )
        message = f"{value[:40]}…({size:,} {unit}){message[len(value) :]}"
    return f"{path}: {message}" if path else message


def expectation_holds(expect: Any, row: tuple[Any, ...] | None) -> bool:
    if expect == "exists":
        return row is not None
    if expect == "none":
        return row is None
    if row is None:
        return False
    value = row[0]
    if expect == "true":
        return sqlite_truthy(value)
    assert isinstance(expect, Comparison)
    target = to_sql_value(expect.value)
    if value is None or target is None:
        return _COMPARE[expect.op](value, target) if expect.op in ("==", "!=") else False
    try:
        return bool(_COMPARE[expect.op](value, target))
    except TypeError:
        return False


_NUMERIC_PREFIX = re.compile(r"^\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def sqlite_truthy(value: Any) -> bool:
    """Truth as SQLite's WHERE sees it: NULL is false, numbers are true unless zero, text by its numeric prefix."""
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    match = _NUMERIC_PREFIX.match(str(value))
    return bool(match) and float(match.group(0)) != 0


def _to_json(value: Any, column_type: str | None) -> Any:
    if value is None:
        return None
    if value.__class__ is float and value == 0:
        return 0.0  # negative zero is zero (SQL arithmetic can make one: -x, x * -1.0)
    if column_type == "boolean":
        return bool(value)
    if column_type == "json" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, bytes):
        return value.hex()
    return value


def _to_text(value: Any, column_type: str | None) -> str:
    """A value as plain text: NULL is empty, a boolean column true/false, anything else as SQLite prints it."""
    if value is None:
        return ""
    if value.__class__ is float and value == 0:
        return "0.0"  # negative zero is zero
    if column_type == "boolean" and isinstance(value, int):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _row(compiled: CompiledStep, row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        name: _to_json(value, column_type)
        for name, value, column_type in zip(compiled.outputs, row, compiled.output_types, strict=True)
    }
