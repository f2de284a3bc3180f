"""SQLite state: a template database built once from the seed, and cheap isolated copies of it.

Every state copy is an in-memory SQLite database made with the backup API from the template,
with the environment's deterministic SQL functions and an authorizer installed:

* ``now()`` / ``today()`` return the environment clock, and SQLite's own date functions are
  pinned to it (``date('now')`` is the clock, ``'localtime'`` is UTC), so no SQL sees real time;
* ``new_id('LOAN')`` yields ``LOAN-0001``, ``LOAN-0002``, ... from counters owned by the copy;
* numbers are exact and the same on every SQLite: ``sum()`` and ``avg()`` are replaced by exact
  versions (SQLite changed its float summation in 3.43), and ``round_half_even()``, ``mul_div()`` and
  ``money_text()`` round and format money without binary-float surprises;
* the authorizer is the runtime second line behind static validation: only the env's own tables,
  only allow-listed functions, writes only while a write step runs, no schema or PRAGMA access;
* every call is bounded: a progress handler stops it after ``limits.max_sql_steps`` instructions or
  ``limits.max_call_ms`` of wall-clock time, and SQLite's own limits cap the size of any value it
  builds (``limits.max_value_bytes``), the size of the copy (``limits.max_state_bytes``), the length
  of a statement and the shape of a query.
"""

from __future__ import annotations

import decimal
import hashlib
import itertools
import json
import math
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Literal, NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect

from ..errors import EnvFleetError, SpecError, SpecIssue, StateError
from ..spec.ddl import build_metadata, create_statements
from ..spec.models import EnvSpec, Limits
from ..spec.sql_analysis import ALLOWED_FUNCTIONS
from ..spec.tasks import InsertRows, StateChange, UpdateRows

__all__ = [
    "AuthMode",
    "StopReason",
    "StateTemplate",
    "StateCopy",
    "to_sql_value",
    "apply_limits",
    "install_functions",
    "function_error",
    "SQLITE_LIMITS",
    "MAX_ROUND_DIGITS",
]

AuthMode = Literal["internal", "read", "write"]
StopReason = Literal["max_sql_steps", "max_call_ms"]

_TICK = 1000
"""VM instructions between two progress-handler calls (about 10 µs of work)."""

SQLITE_LIMITS: dict[int, int] = {
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 1_000_000,  # bytes in one statement
    sqlite3.SQLITE_LIMIT_COLUMN: 500,  # columns of a table, a result, an index, GROUP BY / ORDER BY terms
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 500,  # nesting of an expression tree
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,  # terms of a UNION / INTERSECT / EXCEPT
    sqlite3.SQLITE_LIMIT_VDBE_OP: 250_000,  # instructions in one prepared statement
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 127,  # arguments of one function call
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,  # no other database, ever
    # a LIKE/GLOB costs up to value length x pattern length, in one step
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1_000,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 1_000,  # bound parameters in one statement
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
"""SQLite limits set on every state connection besides the length limit (``limits.max_value_bytes``);
each is far above what a reference environment's statements need and far below SQLite's defaults."""

_DATE_FUNCTIONS = {
    "date": (0,),
    "time": (0,),
    "datetime": (0,),
    "julianday": (0,),
    "unixepoch": (0,),
    "strftime": (1,),
    "timediff": (0, 1),
}
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


# -- exact numbers -------------------------------------------------------------------------------

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SCALE = 1074
"""Every finite double is a whole multiple of 2**-1074: scaled by 2**1074, sums of doubles are exact integers."""
MAX_ROUND_DIGITS = 20
"""Most decimal places round_half_even(x, digits) rounds to (a double prints with at most 17 significant digits)."""
_DECIMAL = decimal.Context(prec=400, rounding=decimal.ROUND_HALF_EVEN)  # 400 digits hold any double to 20 places
_ONE = decimal.Decimal(1)
_NUMBER_TEXT = re.compile(r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\s*")
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")
_failure = threading.local()


class _FunctionFailure(EnvFleetError):
    """Raised inside an environment SQL function; SQLite reports it as a generic "user-defined ..." error,
    and :func:`function_error` gives back the message."""


def _fail(message: str) -> NoReturn:
    _failure.message = message
    raise _FunctionFailure(message)


def function_error(error: BaseException) -> str | None:
    """The message of the environment SQL function (mul_div(), sum(), new_id()...) that failed the statement
    which raised ``error`` on this thread, or None. Python's sqlite3 reports any exception raised inside a
    function as "user-defined function raised exception"; this recovers what went wrong. Reading it clears it."""
    message = getattr(_failure, "message", None)
    _failure.message = None
    return message if message is not None and str(error).startswith("user-defined") else None


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    if isinstance(value, bytes):
        return "a blob"
    return f"the real {value!r}" if isinstance(value, float) else repr(value)


def _numeric(value: Any) -> int | float | None:
    """A SQL value as a number, as SQLite's numeric conversion reads it: an INTEGER or REAL as it is, text that
    is a well-formed decimal number converted (to an integer when it is written as one), anything else None."""
    if value is None or value.__class__ is int or value.__class__ is float:
        return value
    if not isinstance(value, str) or not _NUMBER_TEXT.fullmatch(value):
        return None
    if _INTEGER_TEXT.fullmatch(value):
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    return float(value)


def _integer_argument(function: str, value: Any) -> int:
    number = _numeric(value)
    if number.__class__ is not int:
        _fail(
            f"{function}() takes integers (amounts in minor units, e.g. cents), not {_show(value)}; make a value "
            "an integer with round_half_even(x) or CAST(x AS INTEGER)"
        )
    return number  # type: ignore[return-value]


def _in_int64(function: str, value: int) -> int:
    if not _INT64_MIN <= value <= _INT64_MAX:
        _fail(f"{function}(): the result {value} does not fit in a 64-bit integer (integer overflow)")
    return value


def _round_half_even(value: Any) -> int | None:
    """round_half_even(x): the integer nearest the decimal ``x`` prints as, halves to even (2.5 -> 2, 3.5 -> 4)."""
    number = _numeric(value)
    if number is None or number.__class__ is int:
        return number  # type: ignore[return-value]
    if not math.isfinite(number):
        _fail(f"round_half_even(): {number!r} has no integer value")
    return _in_int64("round_half_even", int(decimal.Decimal(repr(number)).quantize(_ONE, context=_DECIMAL)))


def _round_half_even_digits(value: Any, digits: Any) -> float | None:
    """round_half_even(x, digits): REAL. Rounds the decimal ``x`` prints as (``repr``), so 2.675 -> 2.68 and
    1.005 -> 1.0 (its shortest decimal is 1.005, a half: to even)."""
    number = _numeric(value)
    if number is None or digits is None:
        return None
    places = _numeric(digits)
    if places.__class__ is not int or not 0 <= places <= MAX_ROUND_DIGITS:  # type: ignore[operator]
        _fail(
            f"round_half_even(x, digits): digits must be an integer from 0 to {MAX_ROUND_DIGITS}, not {_show(digits)}"
        )
    if not math.isfinite(number):
        return float(number)
    exact = decimal.Decimal(repr(number) if number.__class__ is float else number)
    return float(exact.quantize(decimal.Decimal(1).scaleb(-places), context=_DECIMAL)) + 0.0  # type: ignore[arg-type]


def _mul_div(a: Any, b: Any, c: Any) -> int | None:
    """mul_div(a, b, c): a * b / c for integers, exactly, the quotient rounded half to even (a prorated refund:
    mul_div(price_cents, days_left, days))."""
    if a is None or b is None or c is None:
        return None
    numerator = _integer_argument("mul_div", a) * _integer_argument("mul_div", b)
    denominator = _integer_argument("mul_div", c)
    if denominator == 0:
        _fail("mul_div(a, b, c): division by zero (c is 0)")
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    quotient, remainder = divmod(numerator, denominator)  # floor: 0 <= remainder < denominator
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2 == 1):
        quotient += 1
    return _in_int64("mul_div", quotient)


def _money_text(cents: Any) -> str | None:
    """money_text(cents): the exact decimal text of an amount in minor units, two places: 1999 -> '19.99'."""
    if cents is None:
        return None
    number = _integer_argument("money_text", cents)
    whole, part = divmod(abs(number), 100)
    return f"{'-' if number < 0 else ''}{whole}.{part:02d}"


def _pieces(number: int) -> Iterator[float]:
    """Doubles that add up to the integer exactly (float() keeps 53 bits; the rest follows)."""
    while number:
        piece = float(number)
        yield piece
        number -= int(piece)


class _ExactSum:
    """sum() over the rows of a group or a window frame, exactly: integers as Python integers, doubles summed
    without rounding, only the result rounded (correctly, as math.fsum rounds). Text and blobs count as
    SQLite's sum() counts them. The same rows give the same bytes on every SQLite version.

    A group's doubles are kept in a list and summed once by math.fsum; a window frame, which also loses rows
    (``inverse``), keeps them as one exact integer, in units of 2**-1074 (every finite double is a whole number
    of them). The type follows the rows summed: INTEGER when every non-NULL one is an integer, REAL otherwise."""

    __slots__ = ("count", "reals", "ints", "floats", "scaled", "up", "down")

    def __init__(self) -> None:
        self.count = self.reals = self.ints = self.scaled = self.up = self.down = 0
        self.floats: list[float] = []

    def step(self, value: Any) -> None:
        kind = value.__class__
        if kind is int:
            self.count += 1
            self.ints += value
        elif kind is float:
            self.count += 1
            self.reals += 1
            self.floats.append(value)
        elif value is not None:
            self.step(_native("sum", value))  # text or blob: the number SQLite's sum() reads in it

    def inverse(self, value: Any) -> None:
        if value is None:
            return
        if value.__class__ is not int and value.__class__ is not float:
            value = _native("sum", value)
        self.count -= 1
        if value.__class__ is int:
            self.ints -= value
            return
        self.reals -= 1
        self._fold()
        self._scale(value, -1)

    def _scale(self, value: float, sign: int) -> None:
        if math.isfinite(value):
            numerator, denominator = value.as_integer_ratio()
            self.scaled += sign * (numerator << (_SCALE + 1 - denominator.bit_length()))
        elif value > 0:
            self.up += sign
        elif value < 0:
            self.down += sign
        else:  # NaN (SQLite never passes one): as +inf and -inf together, a NULL result
            self.up += sign
            self.down += sign

    def _fold(self) -> None:
        for value in self.floats:
            self._scale(value, 1)
        self.floats.clear()

    def _real(self) -> float | None:
        """The sum as a double, correctly rounded; None for inf - inf (SQLite's NaN, which it returns as NULL)."""
        if not (self.scaled or self.up or self.down):  # only integers and unfolded doubles: math.fsum
            try:
                total = math.fsum(itertools.chain(self.floats, _pieces(self.ints)))
            except (OverflowError, ValueError):  # an intermediate overflow, or inf - inf: the exact way below
                pass
            else:
                return None if math.isnan(total) else total
        self._fold()
        if self.up and self.down:
            return None
        if self.up or self.down:
            return math.inf if self.up else -math.inf
        exact, unit = (self.ints << _SCALE) + self.scaled, 1 << _SCALE
        try:
            return exact / unit  # Python's integer division is correctly rounded
        except OverflowError:
            return math.inf if exact > 0 else -math.inf

    def result(self) -> int | float | None:
        if self.count == 0:
            return None
        if self.reals == 0:
            if not _INT64_MIN <= self.ints <= _INT64_MAX:
                _fail("integer overflow")
            return self.ints
        return self._real()

    def value(self) -> int | float | None:
        """A window frame's result (asked once per row: the doubles are folded in, not summed again)."""
        self._fold()
        return self.result()

    def finalize(self) -> int | float | None:
        """A group's result (asked once: math.fsum sums its doubles)."""
        return self.result()


class _ExactAvg(_ExactSum):
    """avg(): the exact sum, rounded to a double, divided by the count; NULL for no rows."""

    __slots__ = ()

    def result(self) -> float | None:
        if self.count == 0:
            return None
        total = self._real()
        return None if total is None else total / self.count


def install_functions(conn: sqlite3.Connection, limits: Limits) -> None:
    """The environment's SQL functions every connection that runs spec or task SQL has (table checks included):
    linear instr()/replace()/trim()s, the exact number helpers, and exact sum()/avg() in place of SQLite's,
    whose float summation changed in 3.43 (aggregates and window functions alike; total(), which cannot be
    replaced faithfully, is not allowed: see :func:`servers.spec.sql_analysis.check_exact_aggregates`)."""
    conn.create_function("instr", 2, _instr, deterministic=True)
    conn.create_function("replace", 3, _replace_function(limits.max_value_bytes), deterministic=True)
    for name in ("trim", "ltrim", "rtrim"):
        conn.create_function(name, 2, _trim_function(name), deterministic=True)
    conn.create_function("round_half_even", 1, _round_half_even, deterministic=True)
    conn.create_function("round_half_even", 2, _round_half_even_digits, deterministic=True)
    conn.create_function("mul_div", 3, _mul_div, deterministic=True)
    conn.create_function("money_text", 1, _money_text, deterministic=True)
    conn.create_window_function("sum", 1, _ExactSum)
    conn.create_window_function("avg", 1, _ExactAvg)


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
            allowed = (
                arg1 in self.tables
                or name in ("json_each", "json_tree")
                or (db is None and not name.startswith("sqlite_"))
            )
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
            _fail(f"new_id(): unknown prefix {prefix!r}")
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
        _failure.message = None  # a function failure left over from an earlier statement is not this call's

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
            return tuple(
                self.conn.execute(self.template.select_all[name]).fetchall()
                for name in sorted(self.template.table_names)
            )

    def digest(self) -> str:
        """sha256 of the canonical dump: equal states have equal digests."""
        with self.lock:
            return _digest(self.dump(), self.counters)

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def _digest(dump: Mapping[str, Any], counters: Mapping[str, int]) -> str:
    canonical = json.dumps(
        {"tables": dump, "sequences": dict(sorted(counters.items()))},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
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
        statements = " ".join(spec.statements()).lower()
        self.table_functions = [f for f in ("json_each", "json_tree") if f in statements]
        self.select_all = {
            t.name: str(
                sa.select(sa.table(t.name, *(sa.column(c.name) for c in t.columns)))
                .order_by(*(sa.column(c) for c in t.primary_key))
                .compile(dialect=_DIALECT)
            )
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
        changes = [
            (f"seed.{t.name}", InsertRows.model_construct(op="insert", table=t.name, rows=seed[t.name]))
            for t in metadata.sorted_tables
            if seed.get(t.name)
        ]
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
    conn = sqlite3.connect(
        ":memory:", check_same_thread=False, isolation_level=None, cached_statements=cached_statements
    )
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {int(limits.max_state_bytes // page_size)}")
    return conn


def apply_limits(conn: sqlite3.Connection, limits: Limits) -> None:
    """Cap what one statement on ``conn`` can build (value length, statement length, query shape); the
    size of the database (``limits.max_state_bytes``) is capped when it is made. SQLite's ``instr()``, ``replace()``
    and two-argument ``trim()``/``ltrim()``/``rtrim()`` take time proportional to the product of their arguments'
    lengths, inside one VM step no deadline can interrupt; linear versions replace them (table checks use them too),
    and :func:`install_functions` adds the exact number functions."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limits.max_value_bytes)
    for category, value in SQLITE_LIMITS.items():
        conn.setlimit(category, value)
    install_functions(conn, limits)


def _apply(
    conn: sqlite3.Connection, spec: EnvSpec, metadata: sa.MetaData, changes: list[tuple[str, StateChange]]
) -> None:
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
                statement = (
                    sa.update(sa_table).where(condition).values({c: sa.bindparam(f"s_{c}") for c in assignments})
                )
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
    """A JSON value as SQLite stores it: booleans as 0/1, objects and arrays as JSON text, -0.0 as 0.0 (SQLite
    stores a negative zero as 0 in a column, but an expression sees its sign: ``1 / :x``, ``:x || ''``)."""
    if value.__class__ is float and value == 0:
        return 0.0
    if column_type == "json" and value is not None:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value
