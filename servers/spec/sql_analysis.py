"""Static analysis of one SQL statement from a spec, with sqlglot (SQLite dialect).

Answers, before anything runs: does it parse as exactly one statement of the kind the step
allows; which tables and columns does it read and write; which ``:params`` does it use; what
columns does it return. Anything it cannot vouch for is reported as a problem, not guessed.
SQLite itself prepares every statement again at load (see :mod:`servers.state.store`), so the
dialect details sqlglot might accept too leniently are caught there.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp
from sqlglot.errors import OptimizeError, ParseError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope, walk_in_scope
from sqlglot.schema import MappingSchema

from ..errors import EnvFleetError

__all__ = [
    "StatementKind",
    "OutputColumn",
    "StatementInfo",
    "SqlProblem",
    "analyze_statement",
    "check_determinism",
    "check_costs",
    "ALLOWED_FUNCTIONS",
    "MAX_FORMAT_WIDTH",
    "NUMBER_FUNCTIONS",
    "JSON_BUILDERS",
    "check_json_numbers",
    "check_exact_aggregates",
]

StatementKind = Literal["select", "dml"]

ALLOWED_FUNCTIONS = frozenset(
    """
    abs char coalesce concat concat_ws format glob hex ifnull iif if instr length like likelihood likely
    lower ltrim max min nullif octet_length printf quote replace round rtrim sign soundex substr substring
    trim typeof unhex unicode unistr unlikely upper
    avg count group_concat string_agg sum
    row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
    date time datetime julianday unixepoch strftime timediff
    acos acosh asin asinh atan atan2 atanh ceil ceiling cos cosh degrees exp floor ln log log10 log2 mod
    pi pow power radians sin sinh sqrt tan tanh trunc
    json json_array json_array_length json_error_position json_extract json_insert json_object json_patch
    json_pretty json_remove json_replace json_set json_type json_valid json_quote json_group_array
    json_group_object json_each json_tree -> ->>
    now today new_id round_half_even mul_div money_text
    """.split()
)
"""SQL functions (as SQLite names them) a spec may call; the runtime authorizer enforces this list, so
random(), load_extension(), zeroblob() and the like are refused however they are spelled. ``total()`` is not
one: ``sum()`` and ``avg()`` are exact replacements (see :func:`check_exact_aggregates`), and a replacement
cannot give total()'s 0.0 for no rows."""

NUMBER_FUNCTIONS = frozenset({"round_half_even", "mul_div", "money_text"})
"""The exact number helpers every state connection provides (see :mod:`servers.state.store`)."""


class _KnownNoise(logging.Filter):
    """Drop the warnings sqlglot logs about SQL that is not a problem for us: JSON paths in SQLite's own syntax
    (``'$[#-1]'``, which SQLite checks itself when the statement runs) and its fallback to an opaque command for
    a statement it does not know (analysis refuses such a statement with a located error of its own). Every
    other record, and every error, passes."""

    _PREFIXES = ("Invalid JSON path syntax",)
    _FRAGMENTS = ("Falling back to parsing as a 'Command'",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        message = record.getMessage()
        return not (message.startswith(self._PREFIXES) or any(f in message for f in self._FRAGMENTS))


_SQLGLOT_LOGGER = logging.getLogger("sqlglot")
if not any(isinstance(f, _KnownNoise) for f in _SQLGLOT_LOGGER.filters):
    _SQLGLOT_LOGGER.addFilter(_KnownNoise())

# Functions whose value changes from run to run; the environment clock and new_id() replace them.
_NONDETERMINISTIC = (exp.Rand, exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)
_NONDETERMINISTIC_NAMES = {"random", "randomblob", "changes", "total_changes", "last_insert_rowid"}
_CLOCK_WORDS = {"now", "localtime", "utc"}
_STATEMENTS = (
    exp.Query,
    exp.DML,
    exp.Command,
    exp.DDL,
    exp.Drop,
    exp.Pragma,
    exp.Attach,
    exp.Detach,
    exp.Analyze,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
)

MAX_FORMAT_WIDTH = 1_000
"""Largest width or precision a printf()/format() conversion may ask for."""
_FORMAT_SPEC = re.compile(r"%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d*))?(.)?", re.DOTALL)

# Table-valued JSON functions, given a schema so the columns they yield can be checked.
_TABLE_FUNCTIONS = {
    name: {c: "TEXT" for c in ("key", "value", "type", "atom", "id", "parent", "fullkey", "path")}
    for name in ("json_each", "json_tree")
}


class SqlProblem(EnvFleetError):
    """The statement is not acceptable; the message says why."""


@dataclass(frozen=True)
class OutputColumn:
    """A column a SELECT returns. ``table``/``column`` are set when it is a plain table column;
    ``type`` when the expression's type is evident (a comparison is boolean, COUNT an integer...)."""

    name: str
    table: str | None = None
    column: str | None = None
    type: str | None = None


_JSON_FUNCTIONS = {
    "json",
    "json_array",
    "json_object",
    "json_group_array",
    "json_group_object",
    "json_patch",
    "json_insert",
    "json_replace",
    "json_set",
    "json_remove",
}
_BOOLEAN_EXPRESSIONS = (exp.Predicate, exp.Connector, exp.Not, exp.Exists)


def _evident_type(node: exp.Expression) -> str | None:
    """The column type an expression obviously has, or None."""
    if isinstance(node, exp.Paren):
        return _evident_type(node.this)
    if isinstance(node, exp.Subquery) and isinstance(node.this, exp.Select) and len(node.this.expressions) == 1:
        only = node.this.expressions[0]
        return _evident_type(only.this if isinstance(only, exp.Alias) else only)
    if isinstance(node, _BOOLEAN_EXPRESSIONS):
        return "boolean"
    if isinstance(node, exp.Count):
        return "integer"
    if isinstance(node, exp.JSONArrayAgg | exp.JSONObjectAgg | exp.JSONObject | exp.JSONArray):
        return "json"
    if isinstance(node, exp.Anonymous) and node.name.lower() in _JSON_FUNCTIONS:
        return "json"
    if isinstance(node, exp.Anonymous) and node.name.lower() in NUMBER_FUNCTIONS:
        name, arguments = node.name.lower(), node.expressions
        if name == "money_text":
            return "text"
        return "integer" if name == "mul_div" or len(arguments) == 1 else "real"
    return None


@dataclass
class StatementInfo:
    statement: str  # the statement type, e.g. "select", "insert"
    params: list[str] = field(default_factory=list)
    reads: dict[str, set[str]] = field(default_factory=dict)
    writes: dict[str, set[str]] = field(default_factory=dict)
    outputs: list[OutputColumn] = field(default_factory=list)
    functions: set[str] = field(default_factory=set)
    new_id_prefixes: list[str | None] = field(default_factory=list)  # None: not a string literal


Catalog = Mapping[str, Mapping[str, str]]
"""table -> column -> type, as sqlglot's schema expects."""


def analyze_statement(sql: str, kind: StatementKind, catalog: Catalog) -> StatementInfo:
    """Check one statement against the catalog and describe it. Raises :class:`SqlProblem`.

    Results are cached by the statement and the part of the catalog it can name (the tables whose
    names occur in its text), so environments that share tables share the work."""
    named = {t for t in catalog if re.search(rf"\b{re.escape(t)}\b", sql)}
    relevant = tuple(sorted((t, tuple(catalog[t].items())) for t in named))
    others = tuple(sorted(set(catalog) - named))  # only named in error messages
    return copy.deepcopy(_analyze_cached(sql, kind, relevant, others))


@lru_cache(maxsize=8192)
def _analyze_cached(
    sql: str,
    kind: StatementKind,
    relevant: tuple[tuple[str, tuple[tuple[str, str], ...]], ...],
    others: tuple[str, ...],
) -> StatementInfo:
    catalog: dict[str, dict[str, str]] = {t: dict(cols) for t, cols in relevant}
    return _analyze(sql, kind, catalog, others)


def _analyze(sql: str, kind: StatementKind, catalog: Catalog, others: tuple[str, ...]) -> StatementInfo:
    try:
        statements = [s for s in sqlglot.parse(sql, read="sqlite") if s is not None]
    except ParseError as e:
        raise SqlProblem(f"does not parse as SQLite SQL: {_first_line(e)}") from e
    if len(statements) != 1:
        raise SqlProblem(f"must be exactly one statement, found {len(statements)}")
    tree = statements[0]

    if not isinstance(tree, _STATEMENTS):
        first = sql.split(None, 1)[0] if sql.split() else ""
        raise SqlProblem(f"does not parse as a SQL statement ({first!r} is not a statement this step can run)")
    if kind == "select" and not isinstance(tree, exp.Select | exp.SetOperation):
        raise SqlProblem(f"must be a SELECT, found {_describe(tree)}")
    if kind == "dml" and not isinstance(tree, exp.Insert | exp.Update | exp.Delete):
        raise SqlProblem(f"must be an INSERT, UPDATE or DELETE, found {_describe(tree)}")

    info = StatementInfo(statement=tree.key)
    info.params = _params(tree)
    info.functions = check_determinism(tree)
    check_exact_aggregates(tree)
    check_costs(tree)
    info.new_id_prefixes = _new_id_prefixes(tree)
    _check_tables(tree, catalog, others)

    if isinstance(tree, exp.Insert):
        _analyze_insert(tree, catalog, info)
    elif isinstance(tree, exp.Update):
        _analyze_update(tree, catalog, info)
    elif isinstance(tree, exp.Delete):
        _analyze_delete(tree, catalog, info)
    else:
        qualified = _qualify(tree, catalog)
        _collect_reads(qualified, info)
        check_json_numbers(qualified, catalog)
        info.outputs = _outputs(qualified)
    return info


JSON_BUILDERS = frozenset(
    {
        "json",
        "json_array",
        "json_object",
        "json_group_array",
        "json_group_object",
        "json_insert",
        "json_replace",
        "json_set",
        "json_patch",
        "json_quote",
    }
)
"""SQL functions that write their arguments into JSON text, numbers included."""
_BUILDER_CLASSES: dict[type[exp.Expression], str] = {
    exp.JSONObject: "json_object",
    exp.JSONArray: "json_array",
    exp.JSONArrayAgg: "json_group_array",
    exp.JSONObjectAgg: "json_group_object",
    exp.JSONSet: "json_set",
}
# Values that keep the realness of their arguments (a condition is not a value: If/Case conditions are skipped).
_PASS_THROUGH = (exp.Sum, exp.Max, exp.Min, exp.Abs, exp.Coalesce, exp.Greatest, exp.Least)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
_REAL_CASTS = (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DECIMAL)
_FLOAT_LITERAL = re.compile(r"[.eE]")


def _json_builder(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        return name if name in JSON_BUILDERS else None
    return _BUILDER_CLASSES.get(type(node))


def _builder_values(node: exp.Expression) -> Iterator[exp.Expression]:
    for argument in node.iter_expressions():
        if isinstance(argument, exp.JSONKeyValue):
            yield from (a for a in (argument.this, argument.expression) if a is not None)
        else:
            yield argument


def check_json_numbers(tree: exp.Expression, catalog: Catalog) -> None:
    """Refuse a REAL value written into JSON text by SQL (``tree`` is qualified: every column names its source).

    SQLite writes a REAL into JSON with at most 15 significant digits, and how it writes them has changed between
    versions, so such a statement would give different bytes for the same state on different machines. A value is
    refused when it is plainly real: a REAL column (also through a CTE or subquery), a float literal, avg(),
    total(), round(x, digits), round_half_even(x, digits), a CAST to REAL, or an expression over one of these.
    CAST(... AS INTEGER/TEXT), printf(), money_text(), round_half_even(x) and mul_div() make a value fine."""
    scopes = list(traverse_scope(tree))
    by_expression = {id(s.expression): s for s in scopes}
    for scope in scopes:
        for node in walk_in_scope(scope.expression):
            name = _json_builder(node)
            if name is None:
                continue
            for value in _builder_values(node):
                reason = _real_reason(value, scope, by_expression, catalog, set())
                if reason:
                    raise SqlProblem(
                        f"{name}() is given {reason} ({value.sql('sqlite')}): SQLite writes a REAL into JSON with at "
                        "most 15 significant digits (1e15 + 0.3 comes out as 1.0e+15), and how it writes them differs "
                        "between SQLite versions, so the same spec would give different bytes. Keep amounts in integer "
                        "minor units (an integer *_cents column) and show them with money_text(cents), or make the "
                        "value an integer first: CAST(x AS INTEGER), round_half_even(x) or mul_div(a, b, c)"
                    )


def _real_reason(
    node: exp.Expression,
    scope: Scope,
    scopes: Mapping[int, Scope],
    catalog: Catalog,
    seen: set[tuple[int, str]],
) -> str | None:
    """What makes ``node`` plainly a REAL value (e.g. "the REAL column items.price"), or None."""

    def reason(child: exp.Expression | None) -> str | None:
        return None if child is None else _real_reason(child, scope, scopes, catalog, seen)

    if isinstance(node, exp.Paren | exp.Neg | exp.Alias | exp.Window | exp.Filter):
        return reason(node.this)
    if isinstance(node, exp.Literal):
        real = not node.is_string and not node.this.lower().startswith("0x") and _FLOAT_LITERAL.search(node.this)
        return f"the float literal {node.this}" if real else None
    if isinstance(node, exp.Column):
        return _column_reason(node, scope, scopes, catalog, seen)
    if isinstance(node, exp.Cast):
        return "a CAST to REAL" if node.to.this in _REAL_CASTS else None
    if isinstance(node, exp.Avg):
        return "avg(), which is REAL"
    if isinstance(node, exp.Round):
        return "round(x, digits), which is REAL" if node.args.get("decimals") is not None else None
    if isinstance(node, exp.Anonymous):
        name, arguments = node.name.lower(), node.expressions
        if name == "total":
            return "total(), which is REAL"
        if name == "round_half_even" and len(arguments) == 2:
            return "round_half_even(x, digits), which is REAL"
        if name in ("ifnull", "nullif"):
            return reason(arguments[0] if arguments else None)
        return None
    if isinstance(node, _ARITHMETIC):
        return reason(node.this) or reason(node.expression)
    if isinstance(node, exp.Nullif):
        return reason(node.this)
    if isinstance(node, exp.If):
        return reason(node.args.get("true")) or reason(node.args.get("false"))
    if isinstance(node, exp.Case):
        return next((r for r in map(reason, [i.args.get("true") for i in node.args.get("ifs") or []]) if r), None) or (
            reason(node.args.get("default"))
        )
    if isinstance(node, _PASS_THROUGH):
        return next((r for r in map(reason, [node.this, *node.expressions]) if r), None)
    if isinstance(node, exp.Subquery):
        inner = scopes.get(id(node.this))
        select = node.this
        if inner is not None and isinstance(select, exp.Select) and select.expressions:
            return _real_reason(select.expressions[0], inner, scopes, catalog, seen)
    return None


def _column_reason(
    column: exp.Column,
    scope: Scope,
    scopes: Mapping[int, Scope],
    catalog: Catalog,
    seen: set[tuple[int, str]],
) -> str | None:
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table):
        kind = catalog.get(source.name, {}).get(column.name)
        return f"the REAL column {source.name}.{column.name}" if kind == "REAL" else None
    if not isinstance(source, Scope) or (id(source), column.name) in seen:
        return None
    seen.add((id(source), column.name))
    for branch in _branches(source):
        select = branch.expression
        if isinstance(select, exp.Select):
            for projection in select.expressions:
                if projection.alias_or_name == column.name:
                    found = _real_reason(projection, branch, scopes, catalog, seen)
                    if found:
                        return found
    return None


def _branches(scope: Scope) -> Iterator[Scope]:
    """The SELECT scopes a (possibly compound) query scope stands for."""
    if scope.set_operation_scopes:
        for branch in scope.set_operation_scopes:
            yield from _branches(branch)
    else:
        yield scope


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def _describe(tree: exp.Expression) -> str:
    if isinstance(tree, exp.Command):
        return f"{str(tree.this).upper()} (not allowed)"
    return tree.key.upper()


def _params(tree: exp.Expression) -> list[str]:
    names: list[str] = []
    for node in tree.find_all(exp.Placeholder, exp.Parameter):
        if isinstance(node, exp.Parameter) or not node.args.get("this"):
            raise SqlProblem(f"uses the parameter {node.sql('sqlite')!r}; only named ':name' parameters are allowed")
        if isinstance(node.parent, exp.Dot):
            raise SqlProblem(f"uses ':{node.name}.<field>'; a let row binds ':{node.name}_<column>' instead")
        if node.name not in names:
            names.append(node.name)
    return names


def check_determinism(tree: exp.Expression) -> set[str]:
    """Refuse the wall clock and randomness; return the names of the functions called."""
    names: set[str] = set()
    for node in tree.find_all(exp.Func):
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
        if isinstance(node, _NONDETERMINISTIC) or name in _NONDETERMINISTIC_NAMES:
            raise SqlProblem(
                f"calls {node.sql('sqlite')}, which is not deterministic; use now()/today() for the "
                "environment clock and new_id('PREFIX') for new ids"
            )
        names.add(name)
    for literal in tree.find_all(exp.Literal):
        if literal.is_string and literal.this.strip().lower() in _CLOCK_WORDS:
            raise SqlProblem(
                f"uses the time value {literal.sql('sqlite')}; use now() or today(), the environment clock"
            )
    return names


def check_costs(tree: exp.Expression) -> None:
    """Refuse calls whose cost an argument would control. ``printf``/``format`` build a string as wide as
    the width or precision they are given, inside one SQLite instruction where no step budget or deadline
    can stop them: the format must be a literal, with no ``*`` (a width taken from an argument) and no
    width or precision above :data:`MAX_FORMAT_WIDTH`. (Other growth, by ``replace``, ``||`` or
    aggregates, is capped at run time by ``limits.max_value_bytes``; ``zeroblob`` and ``randomblob`` are
    not allowed at all.)"""
    for node in tree.find_all(exp.Format, exp.Anonymous):
        if isinstance(node, exp.Format):
            name, template = "format", node.this
        elif node.name.lower() in ("printf", "format"):
            name, template = node.name.lower(), node.expressions[0] if node.expressions else None
        else:
            continue
        if not (isinstance(template, exp.Literal) and template.is_string):
            raise SqlProblem(
                f"{name}() needs a literal format string, e.g. {name}('%.2f', x); a format taken from a "
                "value or a parameter could ask for a string of any size"
            )
        for match in _FORMAT_SPEC.finditer(template.this):
            if match.group(0) == "%%" or match.group(0).startswith("%%"):
                continue
            width, precision = match.group(1), match.group(2)
            if "*" in (width, precision):
                raise SqlProblem(
                    f"{name}() format {template.this!r} takes a width or precision from an argument ('*'); "
                    "write the number into the format"
                )
            for number in (width, precision):
                if number and int(number) > MAX_FORMAT_WIDTH:
                    raise SqlProblem(
                        f"{name}() format {template.this!r} asks for a width or precision of {int(number):,}; "
                        f"the most is {MAX_FORMAT_WIDTH:,}"
                    )


def check_exact_aggregates(tree: exp.Expression) -> None:
    """Refuse what the exact sum()/avg() every state connection installs cannot do the way SQLite's own do.

    ``total()``: Python's sqlite3 returns NULL from an application aggregate that saw no rows, where total()
    gives 0.0. A window frame that can be empty for a row (``ROWS BETWEEN 2 PRECEDING AND 1 PRECEDING``, a
    frame starting after the current row, EXCLUDE, or FILTER on a window): Python's sqlite3 crashes the process
    when SQLite asks such a window function for a value before giving it a row (CPython gh-153800)."""
    for node in tree.find_all(exp.Anonymous):
        if node.name.lower() == "total":
            raise SqlProblem(
                "total() is not available (sum() and avg() are exact here, the same on every SQLite version, and "
                "total() cannot be); write coalesce(sum(x), 0) instead"
            )
    named = {
        window.name: window
        for select in tree.find_all(exp.Select)
        for window in select.args.get("windows") or []
        if isinstance(window.this, exp.Identifier)
    }
    for window in tree.find_all(exp.Window):
        function = window.this
        filtered = isinstance(function, exp.Filter)
        if filtered:
            function = function.this
        if not isinstance(function, exp.Sum | exp.Avg) or window.args.get("over") is None:
            continue
        spec, base, hops = window.args.get("spec"), window.args.get("alias"), 0
        while spec is None and base is not None and hops < 8:
            definition = named.get(base.name)
            if definition is None:
                break
            spec, base, hops = definition.args.get("spec"), definition.args.get("alias"), hops + 1
        problem = "a FILTER clause" if filtered else _empty_frame(spec)
        if problem:
            name = function.sql_name().lower()
            raise SqlProblem(
                f"{name}() OVER (...) with {problem}: the frame can be empty for a row, which the exact {name}() "
                "cannot be asked about; use a frame that contains the current row (e.g. ROWS BETWEEN 3 PRECEDING "
                f"AND CURRENT ROW) and a CASE instead of FILTER: {name}(CASE WHEN ... THEN x END) OVER (...)"
            )


def _empty_frame(spec: exp.Expression | None) -> str | None:
    """Why a window frame may hold no row for some row (None: it always holds the current row)."""
    if spec is None:
        return None
    exclude = spec.args.get("exclude")
    if exclude is not None and exclude.name.upper() != "NO OTHERS":
        return f"EXCLUDE {exclude.name.upper()}"
    start, start_side = spec.args.get("start"), (spec.args.get("start_side") or "").upper()
    end, end_side = spec.args.get("end"), (spec.args.get("end_side") or "").upper()

    def zero(bound: object) -> bool:
        return isinstance(bound, exp.Literal) and not bound.is_string and bound.this in ("0", "0.0")

    if start_side == "FOLLOWING" and not zero(start):
        return "a frame that starts after the current row"
    if end_side == "PRECEDING" and not zero(end):
        return "a frame that ends before the current row"
    return None


def _new_id_prefixes(tree: exp.Expression) -> list[str | None]:
    prefixes: list[str | None] = []
    for node in tree.find_all(exp.Anonymous):
        if node.name.lower() == "new_id":
            args = node.expressions
            literal = len(args) == 1 and isinstance(args[0], exp.Literal) and args[0].is_string
            prefixes.append(args[0].this if literal else None)
    return prefixes


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name for cte in tree.find_all(exp.CTE)}


def _check_tables(tree: exp.Expression, catalog: Catalog, others: tuple[str, ...] = ()) -> None:
    ctes = _cte_names(tree)
    for table in tree.find_all(exp.Table):
        if isinstance(table.this, exp.Anonymous):
            if table.this.name.lower() not in _TABLE_FUNCTIONS:
                raise SqlProblem(
                    f"reads from {table.this.name}(); the only table functions are json_each and json_tree"
                )
            continue
        if not table.name:
            raise SqlProblem(f"reads from {table.sql('sqlite')!r}, which is not one of the env's tables")
        if table.args.get("db") or table.args.get("catalog"):
            raise SqlProblem(f"names a schema-qualified table {table.sql('sqlite')!r}; only the env's own tables exist")
        if table.name not in catalog and table.name not in ctes:
            raise SqlProblem(f"unknown table {table.name!r}; tables are: {', '.join(sorted({*catalog, *others}))}")


def _without_table_functions(tree: exp.Expression) -> exp.Expression:
    """Stand a named pseudo-table in for each json_each(...)/json_tree(...) so sqlglot can qualify."""
    for table in list(tree.find_all(exp.Table)):
        if isinstance(table.this, exp.Anonymous):
            name = table.this.name.lower()
            alias = table.alias or name
            table.replace(
                exp.Table(this=exp.to_identifier(f"__{name}"), alias=exp.TableAlias(this=exp.to_identifier(alias)))
            )
    return tree


@lru_cache(maxsize=64)
def _mapping_schema(frozen: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]) -> MappingSchema:
    """sqlglot normalises a schema on every use; build it once per catalog instead."""
    schema = {table: dict(columns) for table, columns in frozen}
    schema.update({f"__{name}": cols for name, cols in _TABLE_FUNCTIONS.items()})
    return MappingSchema(schema, dialect="sqlite")


def _qualify(tree: exp.Expression, catalog: Catalog) -> exp.Expression:
    schema = _mapping_schema(tuple((t, tuple(cols.items())) for t, cols in catalog.items()))
    try:
        return qualify(
            _without_table_functions(tree.copy()),
            schema=schema,
            dialect="sqlite",
            validate_qualify_columns=True,
            quote_identifiers=False,
            identify=False,
        )
    except OptimizeError as e:
        raise SqlProblem(_column_message(str(e))) from e


def _column_message(message: str) -> str:
    message = message.split(". Line:")[0]
    return message[0].lower() + message[1:] if message else "cannot resolve every column"


def _collect_reads(tree: exp.Expression, info: StatementInfo) -> None:
    for scope in traverse_scope(tree):
        for table in scope.tables:
            if (
                table.name
                and not table.name.startswith("__")
                and isinstance(scope.sources.get(table.alias_or_name), exp.Table)
            ):
                info.reads.setdefault(table.name, set())
        for column in scope.columns:
            source = scope.sources.get(column.table)
            if isinstance(source, exp.Table) and source.name and not source.name.startswith("__"):
                info.reads.setdefault(source.name, set()).add(column.name)


def _outputs(tree: exp.Expression) -> list[OutputColumn]:
    select = tree
    while isinstance(select, exp.SetOperation):
        select = select.this
    if not isinstance(select, exp.Select):
        return []
    scope = next((s for s in traverse_scope(tree) if s.expression is select), None)
    outputs: list[OutputColumn] = []
    for projection in select.expressions:
        name = projection.alias_or_name
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        table = column = None
        kind = _evident_type(inner)
        if isinstance(inner, exp.Column) and scope is not None:
            table, column = _resolve_column(scope, inner)
            if kind is None and table is None:
                kind = _followed_type(scope, inner)
        outputs.append(OutputColumn(name=name, table=table, column=column, type=kind))
    return outputs


def _followed_type(scope: Scope, column: exp.Column) -> str | None:
    """The evident type of a computed column that ``column`` reads from a CTE or subquery (a fragment's
    ``json_group_array(...) AS items`` stays JSON when a step selects ``items`` from the fragment)."""
    source = scope.sources.get(column.table)
    if isinstance(source, Scope) and isinstance(source.expression, exp.Select):
        for projection in source.expression.expressions:
            if projection.alias_or_name == column.name:
                target = projection.this if isinstance(projection, exp.Alias) else projection
                return _followed_type(source, target) if isinstance(target, exp.Column) else _evident_type(target)
    return None


def _resolve_column(scope: Scope, column: exp.Column) -> tuple[str | None, str | None]:
    source = scope.sources.get(column.table)
    if isinstance(source, exp.Table) and source.name:
        if source.name.startswith("__"):
            return None, None
        return source.name, column.name
    if isinstance(source, Scope):  # a CTE or subquery: follow the column through it
        inner_select = source.expression
        if isinstance(inner_select, exp.Select):
            for projection in inner_select.expressions:
                if projection.alias_or_name == column.name:
                    target = projection.this if isinstance(projection, exp.Alias) else projection
                    if isinstance(target, exp.Column):
                        return _resolve_column(source, target)
    return None, None


def _check_written_columns(catalog: Catalog, table: str, columns: list[str], verb: str) -> None:
    known = catalog[table]
    for name in columns:
        if name not in known:
            raise SqlProblem(f"{verb} unknown column {table}.{name}; columns are: {', '.join(known)}")


def _check_dml_options(tree: exp.Expression) -> None:
    if tree.args.get("returning"):
        raise SqlProblem("uses RETURNING; read results back with a 'return' or 'let' step")
    if tree.args.get("alternative") or tree.args.get("conflict") or tree.args.get("ignore"):
        raise SqlProblem("uses OR REPLACE / OR IGNORE / ON CONFLICT; check with a 'require' step and write explicitly")


def _analyze_expressions_as_select(
    expressions: list[exp.Expression],
    table: str | None,
    where: exp.Expression | None,
    catalog: Catalog,
    info: StatementInfo,
    with_: exp.Expression | None = None,
) -> None:
    """Validate expressions by wrapping them in an equivalent SELECT that sqlglot can qualify."""
    select = exp.select(*(e.copy() for e in expressions) or [exp.Literal.number(1)])
    if table is not None:
        select = select.from_(exp.to_table(table))
    if where is not None:
        select = select.where(where.this.copy() if isinstance(where, exp.Where) else where.copy())
    if with_ is not None:
        select.set("with_", with_.copy())
    qualified = _qualify(select, catalog)
    _collect_reads(qualified, info)
    check_json_numbers(qualified, catalog)


def _analyze_insert(tree: exp.Insert, catalog: Catalog, info: StatementInfo) -> None:
    _check_dml_options(tree)
    target = tree.this
    if not isinstance(target, exp.Schema) or not target.expressions:
        raise SqlProblem("INSERT must list its columns: INSERT INTO table (col, ...) VALUES (...)")
    table = target.this.name
    columns = [c.name for c in target.expressions]
    _check_written_columns(catalog, table, columns, "inserts into")
    info.writes[table] = set(columns)
    source = tree.expression
    with_ = tree.args.get("with_")
    if isinstance(source, exp.Values):
        for row in source.expressions:
            values = row.expressions if isinstance(row, exp.Tuple) else [row]
            if len(values) != len(columns):
                raise SqlProblem(f"INSERT lists {len(columns)} column(s) but a VALUES row has {len(values)}")
            _analyze_expressions_as_select(values, None, None, catalog, info, with_)
    elif isinstance(source, exp.Select | exp.SetOperation):
        query = source.copy()
        if with_ is not None:
            query.set("with_", with_.copy())
        qualified = _qualify(query, catalog)
        _collect_reads(qualified, info)
        check_json_numbers(qualified, catalog)
        width = len(_outputs(qualified))
        if width != len(columns):
            raise SqlProblem(f"INSERT lists {len(columns)} column(s) but its SELECT returns {width}")
    else:
        raise SqlProblem("INSERT needs VALUES (...) or a SELECT")


def _analyze_update(tree: exp.Update, catalog: Catalog, info: StatementInfo) -> None:
    _check_dml_options(tree)
    if tree.args.get("from_") or tree.args.get("joins"):
        raise SqlProblem("UPDATE ... FROM is not supported; use a subquery in SET or WHERE")
    table = tree.this.name
    values: list[exp.Expression] = []
    columns: list[str] = []
    for assignment in tree.expressions:
        if not isinstance(assignment, exp.EQ) or not isinstance(assignment.this, exp.Column):
            raise SqlProblem(f"cannot read the SET clause {assignment.sql('sqlite')!r}")
        columns.append(assignment.this.name)
        values.append(assignment.expression)
    _check_written_columns(catalog, table, columns, "sets")
    info.writes[table] = set(columns)
    _analyze_expressions_as_select(values, table, tree.args.get("where"), catalog, info, tree.args.get("with_"))


def _analyze_delete(tree: exp.Delete, catalog: Catalog, info: StatementInfo) -> None:
    _check_dml_options(tree)
    table = tree.this.name
    info.writes[table] = set(catalog[table])
    _analyze_expressions_as_select([], table, tree.args.get("where"), catalog, info, tree.args.get("with_"))
