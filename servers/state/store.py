"""SQLite state: a template database built once from the seed, and cheap isolated copies of it.

Every state copy is an in-memory SQLite database made with the backup API from the template,
with the environment's deterministic SQL functions and an authorizer installed:

* ``now()`` / ``today()`` return the environment clock, and SQLite's own date functions are
  pinned to it (``date('now')`` is the clock, ``'localtime'`` is UTC), so no SQL sees real time;
* ``new_id('LOAN')`` yields ``LOAN-0001``, ``LOAN-0002``, ... from counters owned by the copy;
* the authorizer is the runtime second line behind static validation: only the env's own tables,
  only allow-listed functions, writes only while a write step runs, no schema or PRAGMA access;
* every call is bounded: a progress handler stops it after ``limits.max_sql_steps`` instructions or
  ``limits.max_call_ms`` of wall-clock time, and SQLite's own limits cap the size of any value it
  builds (``limits.max_value_bytes``), the size of the copy (``limits.max_state_bytes``), the length
  of a statement and the shape of a query.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..errors import SpecError, SpecIssue, StateError
from ..spec.ddl import build_metadata, create_statements
from ..spec.models import EnvSpec, Limits
from ..spec.sql_analysis import ALLOWED_FUNCTIONS
from ..spec.tasks import InsertRows, StateChange, UpdateRows

__all__ = ["AuthMode", "StopReason", "StateTemplate", "StateCopy", "to_sql_value", "apply_limits", "SQLITE_LIMITS"]

AuthMode = Literal["internal", "read", "write"]
StopReason = Literal["max_sql_steps", "max_call_ms"]

_TICK = 1000
"""VM instructions between two progress-handler calls (about 10 µs of work)."""

SQLITE_LIMITS: dict[int, int] = {
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 1_000_000,     # bytes in one statement
    sqlite3.SQLITE_LIMIT_COLUMN: 500,               # columns of a table, a result, an index, GROUP BY / ORDER BY terms
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 500,           # nesting of an expression tree
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,       # terms of a UNION / INTERSECT / EXCEPT
    sqlite3.SQLITE_LIMIT_VDBE_OP: 250_000,          # instructions in one prepared statement
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 127,         # arguments of one function call
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,               # no other database, ever
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1_000,  # a LIKE/GLOB costs up to value length x pattern length, in one step
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 1_000,    # bound parameters in one statement
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
"""SQLite limits set on every state connection besides the length limit (``limits.max_value_bytes``);
each is far above what a reference environment's statements need and far below SQLite's defaults."""

_DATE_FUNCTIONS = {"date": (0,), "time": (0,), "datetime": (0,), "julianday": (0,), "unixepoch": (0,),
                   "strftime": (1,), "timediff": (0, 1)}
_IGNORED_MODIFIERS = {"localtime", "utc"}
_helper = threading.local()


def _helper_connection() -> sqlite3.Connection:
    """A plain connection whose built-in date functions compute the pinned ones."""
    conn = getattr(_helper, "conn", None)
    if conn is None:
        conn = _helper.conn = sqlite3.connect(":memory:", check_same_thread=False)
    return conn


@lru_cache(maxsize=65_536)
def _date_function(name: str, args: tuple[Any, ...]) -> Any:
    placeholders = ", ".join("?" * len(args))
    return _helper_connection().execute(f"SELECT {name}({placeholders})", args).fetchone()[0]


def _pinned_date_function(name: str, time_positions: tuple[int, ...], clock: str):
    def pinned(*args: Any) -> Any:
        values = list(args)
        for position in time_positions:
            if position >= len(values):
                values.append(clock)
            elif isinstance(values[position], str) and values[position].strip().lower() == "now":
                values[position] = clock
        first_modifier = max(time_positions) + 1
        values = values[:first_modifier] + [
            v for v in values[first_modifier:] if not (isinstance(v, str) and v.strip().lower() in _IGNORED_MODIFIERS)
        ]
        return _date_function(name, tuple(values))

    return pinned


def _as_text(value: Any) -> str:
    """A number or text as SQLite's text functions see it (numbers converted the way SQLite converts them)."""
    if isinstance(value, str):
        return value
    return _helper_connection().execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]


def _native(name: str, *args: Any) -> Any:
    """SQLite's own function, for blob arguments (no column type holds blobs; only a spec's CAST makes one)."""
    return _helper_connection().execute(f"SELECT {name}({', '.join('?' * len(args))})", args).fetchone()[0]


def _instr(haystack: Any, needle: Any) -> int | None:
    """SQLite's instr() in linear time (its own compares at every position: value length x needle length,
    inside one VM step that no deadline can interrupt)."""
    if haystack is None or needle is None:
        return None
    if isinstance(haystack, bytes) and isinstance(needle, bytes):
        return haystack.find(needle) + 1
    if isinstance(haystack, bytes) or isinstance(needle, bytes):
        return _native("instr", haystack, needle)
    return _as_text(haystack).find(_as_text(needle)) + 1


def _trim_function(name: str):
    def trim(value: Any, characters: Any) -> Any:
        """SQLite's two-argument trim()/ltrim()/rtrim() in linear time (its own tests every character of the
        value against every character of the set: value length x set length, inside one VM step)."""
        if value is None or characters is None:
            return None
        if isinstance(value, bytes) or isinstance(characters, bytes):
            return _native(name, value, characters)
        text, strip = _as_text(value), frozenset(_as_text(characters))
        start, end = 0, len(text)
        if name != "rtrim":
            while start < end and text[start] in strip:
                start += 1
        if name != "ltrim":
            while end > start and text[end - 1] in strip:
                end -= 1
        return text[start:end]

    return trim


def _replace_function(max_bytes: int):
    def replace(value: Any, old: Any, new: Any) -> Any:
        """SQLite's replace() in linear time, refusing (as SQLite does) a result longer than the length limit."""
        if value is None or old is None:
            return None
        if any(isinstance(v, bytes) for v in (value, old, new)):
            return _native("replace", value, old, new)
        text, pattern = _as_text(value), _as_text(old)
        if pattern == "":
            return value
        if new is None:
            return None
        replacement = _as_text(new)
        count = text.count(pattern)
        if count == 0:
            return text
        growth = len(replacement.encode()) - len(pattern.encode())
        if len(text.encode()) + count * growth > max_bytes:
            return bytes(max_bytes + 1)  # SQLite refuses a value over its length limit: "string or blob too big"
        return text.replace(pattern, replacement)

    return replace


class _Authorizer:
    """SQLite authorizer callback; ``mode`` is switched by the executor around each step."""

    __slots__ = ("tables", "mode")

    def __init__(self, tables: frozenset[str]) -> None:
        self.tables = tables
        self.mode: AuthMode = "internal"

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        if self.mode == "internal":
            return sqlite3.SQLITE_OK
        if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_RECURSIVE):
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_READ:
            # env tables, the JSON table functions, and CTE names (reported with no database; SQLite's own
            # schema tables can be reported that way too, by a column-less read such as count(*))
            name = (arg1 or "").lower()
            allowed = arg1 in self.tables or name in ("json_each", "json_tree") or (db is None and not name.startswith("sqlite_"))
            return sqlite3.SQLITE_OK if allowed else sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION:
            return sqlite3.SQLITE_OK if (arg2 or "").lower() in ALLOWED_FUNCTIONS else sqlite3.SQLITE_DENY
        if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE):
            return sqlite3.SQLITE_OK if self.mode == "write" and arg1 in self.tables else sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_DENY


class StateCopy:
    """One isolated, writable copy of an environment's state.

    **Threads.** A copy may be used from any thread, and from several at once. Every operation
    that touches the connection (a tool call, :meth:`mode`, :meth:`rows`, :meth:`dump`,
    :meth:`snapshot`, :meth:`digest`, :meth:`close`) holds :attr:`lock`, a re-entrant lock, so
    calls on one copy run one at a time, each as a whole transaction, never interleaved: the
    final state is that of some serial order of the calls. Two copies never wait for each other.
    Code that uses :attr:`conn` directly must hold :attr:`lock` (``with state.lock:`` or ``with
    state.mode(...):``): SQLite calls back into Python while it holds the connection's mutex, so
    an unlocked access from a second thread can freeze the interpreter.
    """

    def __init__(self, template: StateTemplate, conn: sqlite3.Connection, counters: dict[str, int]) -> None:
        self.template = template
        self.conn = conn
        self.counters = counters
        self.lock = threading.RLock()
        self._authorizer = _Authorizer(template.table_names)
        spec = template.spec
        self._budget_left = spec.limits.max_sql_steps
        self._started = time.monotonic()
        self._deadline: float | None = None
        self.stopped_by: StopReason | None = None
        """Which guard stopped the last statement, if one did (reset by :meth:`begin_budget`)."""
        apply_limits(conn, spec.limits)
        conn.execute("PRAGMA foreign_keys = ON")
        # Eponymous virtual tables touch the schema on first use; do that before the authorizer.
        for function in template.table_functions:
            conn.execute(f"SELECT 1 FROM {function}('[]')").fetchall()
        clock = spec.clock_sql
        conn.create_function("now", 0, lambda: clock, deterministic=True)
        conn.create_function("today", 0, lambda: clock[:10], deterministic=True)
        conn.create_function("new_id", 1, self._new_id)
        for name, positions in _DATE_FUNCTIONS.items():
            conn.create_function(name, -1, _pinned_date_function(name, positions, clock), deterministic=True)
        conn.set_authorizer(self._authorizer)
        conn.set_progress_handler(self._tick, _TICK)

    # -- SQL functions and guards -------------------------------------------------------------

    def _new_id(self, prefix: Any) -> str:
        sequence = self.template.sequences.get(prefix) if isinstance(prefix, str) else None
        if sequence is None:
            raise ValueError(f"new_id: unknown prefix {prefix!r}")
        number = self.counters[prefix]
        self.counters[prefix] = number + 1
        return f"{prefix}-{number:0{sequence}d}"

    def _tick(self) -> int:
        if self._authorizer.mode == "internal":
            return 0
        self._budget_left -= _TICK
        if self._budget_left < 0:
            self.stopped_by = "max_sql_steps"
            return 1
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.stopped_by = "max_call_ms"
            return 1
        return 0

    @contextmanager
    def mode(self, mode: AuthMode) -> Iterator[None]:
        """Hold :attr:`lock` and run statements under an authorizer mode, restoring the previous one after."""
        with self.lock:
            previous = self._authorizer.mode
            self._authorizer.mode = mode
            try:
                yield
            finally:
                self._authorizer.mode = previous

    def set_mode(self, mode: AuthMode) -> None:
        """Switch the authorizer mode; the caller holds :attr:`lock`."""
        self._authorizer.mode = mode

    def begin_budget(self, instructions: int, deadline_ms: int | None = None) -> None:
        """Allow this many SQLite VM instructions, and ``deadline_ms`` (default ``limits.max_call_ms``) of
        wall-clock time from now, before statements outside the internal mode are interrupted."""
        self._budget_left = instructions
        self._started = time.monotonic()
        milliseconds = self.template.spec.limits.max_call_ms if deadline_ms is None else deadline_ms
        self._deadline = self._started + milliseconds / 1000
        self.stopped_by = None

    def elapsed_ms(self) -> int:
        """Milliseconds since the last :meth:`begin_budget`."""
        return round((time.monotonic() - self._started) * 1000)

    # -- inspection ----------------------------------------------------------------------------

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a table, in primary-key order."""
        with self.mode("internal"):
            return self.template.read_table(self.conn, table)

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        with self.lock:
            return {name: self.rows(name) for name in sorted(self.template.table_names)}

    def snapshot(self) -> tuple[list[tuple[Any, ...]], ...]:
        """Every table's rows as tuples: a cheap value to compare two moments of one copy."""
        with self.mode("internal"):
            return tuple(self.conn.execute(self.template.select_all[name]).fetchall() for name in sorted(self.template.table_names))

    def digest(self) -> str:
        """sha256 of the canonical dump: equal states have equal digests."""
        with self.lock:
            return _digest(self.dump(), self.counters)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _digest(dump: Mapping[str, Any], counters: Mapping[str, int]) -> str:
    canonical = json.dumps({"tables": dump, "sequences": dict(sorted(counters.items()))}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class StateTemplate:
    """The seeded database of one environment (or one task), from which state copies are made.

    Build the environment's template with :meth:`from_seed`; a task's template comes from
    :meth:`derive`, which applies the task's changes to a copy.
    """

    def __init__(self, spec: EnvSpec, conn: sqlite3.Connection, metadata: sa.MetaData) -> None:
        self.spec = spec
        self.conn = conn
        self.metadata = metadata
        self.table_names = frozenset(t.name for t in spec.tables)
        self.sequences = {s.prefix: s.width for s in spec.sequences}
        statements = " ".join(step.sql or "" for tool in spec.tools for step in tool.steps).lower()
        self.table_functions = [f for f in ("json_each", "json_tree") if f in statements]
        self.select_all = {
            t.name: str(sa.select(sa.table(t.name, *(sa.column(c.name) for c in t.columns)))
                        .order_by(*(sa.column(c) for c in t.primary_key)).compile(dialect=_DIALECT))
            for t in spec.tables
        }
        self._lock = threading.Lock()
        self.start_counters = self._sequence_starts()

    @classmethod
    def from_seed(cls, spec: EnvSpec, seed: Mapping[str, list[dict[str, Any]]]) -> StateTemplate:
        """Create the tables (SQLAlchemy DDL) and load the seed; raises :class:`SpecError` on bad rows."""
        conn = _connect(spec.limits)
        apply_limits(conn, spec.limits)
        conn.execute("PRAGMA foreign_keys = ON")
        metadata = build_metadata(spec)
        for statement in create_statements(metadata):
            conn.execute(statement)
        unknown = [SpecIssue(f"seed.{name}", f"unknown table {name!r}") for name in seed if name not in metadata.tables]
        if unknown:
            raise SpecError(unknown)
        changes = [(f"seed.{t.name}", InsertRows.model_construct(op="insert", table=t.name, rows=seed[t.name]))
                   for t in metadata.sorted_tables if seed.get(t.name)]
        _apply(conn, spec, metadata, changes)
        return cls(spec, conn, metadata)

    def derive(self, changes: list[tuple[str, StateChange]]) -> StateTemplate:
        """A new template: this one's data with ``changes`` (each with its location) applied in order.

        A ``where`` must match at least one row. Raises :class:`SpecError` with each problem at its location.
        """
        conn = _connect(self.spec.limits)
        with self._lock:
            self.conn.backup(conn)
        apply_limits(conn, self.spec.limits)
        conn.execute("PRAGMA foreign_keys = ON")
        _apply(conn, self.spec, self.metadata, changes)
        return StateTemplate(self.spec, conn, self.metadata)

    def _sequence_starts(self) -> dict[str, int]:
        starts: dict[str, int] = {}
        for sequence in self.spec.sequences:
            pattern = re.compile(rf"^{re.escape(sequence.prefix)}-(\d+)$")
            table = sa.table(sequence.table, sa.column(sequence.column))
            sql = str(sa.select(table.c[sequence.column]).compile(dialect=_DIALECT))
            highest = 0
            for (value,) in self.conn.execute(sql):
                match = pattern.match(value) if isinstance(value, str) else None
                if match:
                    highest = max(highest, int(match.group(1)))
            starts[sequence.prefix] = highest + 1
        return starts

    def read_table(self, conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` on ``conn``, in primary-key order."""
        if table not in self.table_names:
            raise StateError(f"unknown table {table!r}")
        cursor = conn.execute(self.select_all[table])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def copy(self) -> StateCopy:
        """A fresh, isolated copy of this template's state."""
        conn = _connect(self.spec.limits, cached_statements=512)
        with self._lock:
            self.conn.backup(conn)
        return StateCopy(self, conn, dict(self.start_counters))

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {t: self.read_table(self.conn, t) for t in sorted(self.table_names)}

    def digest(self) -> str:
        return _digest(self.dump(), self.start_counters)


_DIALECT = sqlite_dialect.dialect()
_NAMED = sqlite_dialect.dialect(paramstyle="named")


def _connect(limits: Limits, cached_statements: int = 128) -> sqlite3.Connection:
    """A private in-memory database capped at ``limits.max_state_bytes``; usable from any thread (a
    :class:`StateCopy` serialises access itself). The cap is set while the database is still empty:
    it survives a backup into it, and setting it on a loaded database costs several times the copy."""
    conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None, cached_statements=cached_statements)
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {int(limits.max_state_bytes // page_size)}")
    return conn


def apply_limits(conn: sqlite3.Connection, limits: Limits) -> None:
    """Cap what one statement on ``conn`` can build (value length, statement length, query shape); the
    size of the database (``limits.max_state_bytes``) is capped when it is made. SQLite's ``instr()``, ``replace()`` and two-argument
    ``trim()``/``ltrim()``/``rtrim()`` take time proportional to the product of their arguments' lengths,
    inside one VM step no deadline can interrupt; linear versions replace them (table checks use them too)."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    for category, value in SQLITE_LIMITS.items():
        conn.setlimit(category, value)
    conn.create_function("instr", 2, _instr, deterministic=True)
    conn.create_function("replace", 3, _replace_function(limits.max_value_bytes), deterministic=True)
    for name in ("trim", "ltrim", "rtrim"):
        conn.create_function(name, 2, _trim_function(name), deterministic=True)


def _apply(conn: sqlite3.Connection, spec: EnvSpec, metadata: sa.MetaData, changes: list[tuple[str, StateChange]]) -> None:
    """Apply inserts/updates/deletes built with SQLAlchemy Core in one transaction, or none of them."""
    issues: list[SpecIssue] = []
    conn.execute("BEGIN")
    for location, change in changes:
        if not conn.in_transaction:  # SQLite rolled the transaction back (the database is full): stop here
            break
        table = spec.table(change.table)
        if table is None:
            issues.append(SpecIssue(location, f"unknown table {change.table!r}"))
            continue
        sa_table = metadata.tables[change.table]
        types = {c.name: c.type for c in table.columns}
        try:
            if isinstance(change, InsertRows):
                for index, row in enumerate(change.rows):
                    problem = _row_problem(row, types, change.table)
                    if problem:
                        issues.append(SpecIssue(f"{location}[{index}]", problem))
                        continue
                    statement = sa.insert(sa_table).values({c: sa.bindparam(f"v_{c}") for c in row})
                    try:
                        conn.execute(_sql(statement), {f"v_{c}": to_sql_value(v, types[c]) for c, v in row.items()})
                    except (sqlite3.Error, OverflowError) as e:
                        issues.append(SpecIssue(f"{location}[{index}]", _refusal(e, spec)))
                        if not conn.in_transaction:
                            break
                continue
            assignments = change.set if isinstance(change, UpdateRows) else {}
            unknown = sorted((set(change.where) | set(assignments)) - set(types))
            if unknown:
                issues.append(SpecIssue(location, f"{change.table} has no column(s) {', '.join(unknown)}"))
                continue
            condition = sa.and_(*(sa_table.c[c] == sa.bindparam(f"w_{c}") for c in change.where))
            params = {f"w_{c}": to_sql_value(v, types[c]) for c, v in change.where.items()}
            if isinstance(change, UpdateRows):
                statement = sa.update(sa_table).where(condition).values({c: sa.bindparam(f"s_{c}") for c in assignments})
                params.update({f"s_{c}": to_sql_value(v, types[c]) for c, v in assignments.items()})
            else:
                statement = sa.delete(sa_table).where(condition)
            if conn.execute(_sql(statement), params).rowcount == 0:
                issues.append(SpecIssue(location, f"{change.op} of {change.table} where {change.where} matches no row"))
        except (sqlite3.Error, OverflowError) as e:
            issues.append(SpecIssue(location, _refusal(e, spec)))
    if not issues:
        for table_name, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall():
            issues.append(SpecIssue(table_name, f"a row (rowid {rowid}) references a missing {parent} row"))
    if issues:
        if conn.in_transaction:  # SQLite may already have rolled back, e.g. when the database is full
            conn.execute("ROLLBACK")
        raise SpecError(issues)
    conn.execute("COMMIT")


def _refusal(error: Exception, spec: EnvSpec) -> str:
    message = str(error)
    if message == "database or disk is full":
        return f"the data does not fit in limits.max_state_bytes ({spec.limits.max_state_bytes:,} bytes)"
    if message == "string or blob too big":
        return f"a value is longer than limits.max_value_bytes ({spec.limits.max_value_bytes:,} bytes)"
    return f"rejected by the schema: {message}"


def _row_problem(row: Any, types: Mapping[str, str], table: str) -> str | None:
    if not isinstance(row, dict):
        return f"a row must be an object of column values, not {type(row).__name__}"
    unknown = sorted(set(row) - set(types))
    return f"{table} has no column(s) {', '.join(unknown)}" if unknown else None


def _sql(statement: sa.sql.ClauseElement) -> str:
    """SQL text with named (:name) parameters, so values are bound by name, never by position."""
    return str(statement.compile(dialect=_NAMED))


def to_sql_value(value: Any, column_type: str | None = None) -> Any:
    """A JSON value as SQLite stores it: booleans as 0/1, objects and arrays as JSON text."""
    if column_type == "json" and value is not None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value
