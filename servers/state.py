"""SQLite state: a template database built once from the seed, and cheap isolated copies of it.

Every state copy is an in-memory SQLite database made with the backup API from the template,
with the environment's deterministic SQL functions and an authorizer installed:

* ``now()`` / ``today()`` return the environment clock, and SQLite's own date functions are
  pinned to it (``date('now')`` is the clock, ``'localtime'`` is UTC), so no SQL sees real time;
* ``new_id('LOAN')`` yields ``LOAN-0001``, ``LOAN-0002``, ... from counters owned by the copy;
* the authorizer is the runtime second line behind static validation: only the env's own tables,
  only allow-listed functions, writes only while a write step runs, no schema or PRAGMA access.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from .ddl import build_metadata, create_statements
from .errors import SpecError, SpecIssue, StateError
from .spec import EnvSpec
from .sql_analysis import ALLOWED_FUNCTIONS
from .tasks import InsertRows, StateChange, UpdateRows

__all__ = ["AuthMode", "StateTemplate", "StateCopy", "to_sql_value"]

AuthMode = Literal["internal", "read", "write"]

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
    """One isolated, writable copy of an environment's state."""

    def __init__(self, template: StateTemplate, conn: sqlite3.Connection, counters: dict[str, int]) -> None:
        self.template = template
        self.conn = conn
        self.counters = counters
        self._authorizer = _Authorizer(template.table_names)
        spec = template.spec
        self._budget_left = spec.limits.max_sql_steps
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
        conn.set_progress_handler(self._tick, 1000)

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
        self._budget_left -= 1000
        return 1 if self._budget_left < 0 else 0

    @contextmanager
    def mode(self, mode: AuthMode) -> Iterator[None]:
        """Run statements under an authorizer mode, restoring the previous one after."""
        previous = self._authorizer.mode
        self._authorizer.mode = mode
        try:
            yield
        finally:
            self._authorizer.mode = previous

    def set_mode(self, mode: AuthMode) -> None:
        self._authorizer.mode = mode

    def begin_budget(self, instructions: int) -> None:
        """Allow this many SQLite VM instructions before statements are interrupted."""
        self._budget_left = instructions

    # -- inspection ----------------------------------------------------------------------------

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a table, in primary-key order."""
        with self.mode("internal"):
            return self.template.read_table(self.conn, table)

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        return {name: self.rows(name) for name in sorted(self.template.table_names)}

    def snapshot(self) -> tuple[list[tuple[Any, ...]], ...]:
        """Every table's rows as tuples: a cheap value to compare two moments of one copy."""
        with self.mode("internal"):
            return tuple(self.conn.execute(self.template.select_all[name]).fetchall() for name in sorted(self.template.table_names))

    def digest(self) -> str:
        """sha256 of the canonical dump: equal states have equal digests."""
        return _digest(self.dump(), self.counters)

    def close(self) -> None:
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
        conn = _connect()
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
        conn = _connect()
        with self._lock:
            self.conn.backup(conn)
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
        conn = _connect(cached_statements=512)
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


def _connect(cached_statements: int = 128) -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None, cached_statements=cached_statements)


def _apply(conn: sqlite3.Connection, spec: EnvSpec, metadata: sa.MetaData, changes: list[tuple[str, StateChange]]) -> None:
    """Apply inserts/updates/deletes built with SQLAlchemy Core in one transaction, or none of them."""
    issues: list[SpecIssue] = []
    conn.execute("BEGIN")
    for location, change in changes:
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
                        issues.append(SpecIssue(f"{location}[{index}]", f"rejected by the schema: {e}"))
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
            issues.append(SpecIssue(location, f"rejected by the schema: {e}"))
    if not issues:
        for table_name, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall():
            issues.append(SpecIssue(table_name, f"a row (rowid {rowid}) references a missing {parent} row"))
    if issues:
        conn.execute("ROLLBACK")
        raise SpecError(issues)
    conn.execute("COMMIT")


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
