"""Tables of a spec as SQLAlchemy Core metadata, and the CREATE statements made from it.

Names from a spec never reach SQL by string concatenation: SQLAlchemy quotes identifiers and
renders literals, and a table check's expression is parsed by sqlglot, confined to the table's
own columns, and rendered back from the parse tree. Tables are STRICT, so a column holds only
values of its type; the types SQLite lacks (boolean, date, datetime, json) get CHECKs.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlglot
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.schema import CreateTable
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from ..errors import EnvFleetError
from .models import Column, EnvSpec, Table
from .sql_analysis import SqlProblem, check_costs, check_determinism

__all__ = ["build_metadata", "create_statements", "check_expression", "constraint_messages", "CheckProblem"]

_STORAGE = {
    "text": sa.Text,
    "integer": sa.Integer,
    "real": sa.REAL,
    "boolean": sa.Integer,
    "date": sa.Text,
    "datetime": sa.Text,
    "json": sa.Text,
}


class CheckProblem(EnvFleetError, ValueError):
    """A table check expression is not acceptable."""


def check_expression(table: Table, expression: str) -> str:
    """Parse a table check and render it back as SQL, refusing anything but the table's own columns
    and deterministic functions (the compiler also has SQLite prepare it under the authorizer)."""
    try:
        tree = sqlglot.parse_one(expression, read="sqlite", into=exp.Condition)
    except ParseError as e:
        raise CheckProblem(f"does not parse: {str(e).splitlines()[0]}") from e
    try:
        check_determinism(tree)
        check_costs(tree)
    except SqlProblem as e:
        raise CheckProblem(str(e)) from None
    columns = {c.name for c in table.columns}
    for node in tree.walk():
        if isinstance(node, exp.Query | exp.Subquery | exp.Placeholder | exp.Parameter):
            raise CheckProblem("may not contain a subquery or a parameter")
        if isinstance(node, exp.Column):
            if node.table and node.table != table.name:
                raise CheckProblem(f"refers to another table ({node.table}); a check sees only its own row")
            if node.name not in columns:
                raise CheckProblem(f"unknown column {node.name!r} in table {table.name}")
    try:
        return tree.sql(dialect="sqlite", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as e:  # sqlglot would render it differently from what was written: refuse, quietly
        raise CheckProblem(f"cannot be rendered back as SQLite SQL: {str(e).splitlines()[0]}") from None


def _column_constraints(table: sa.Table, column: Column) -> list[sa.CheckConstraint]:
    col = table.c[column.name]
    checks: list[sa.CheckConstraint] = []
    prefix = f"ck_{table.name}_{column.name}"
    if column.type == "boolean":
        checks.append(sa.CheckConstraint(col.in_([0, 1]), name=f"{prefix}_boolean"))
    elif column.type == "date":
        checks.append(sa.CheckConstraint(sa.func.date(col).is_not_distinct_from(col), name=f"{prefix}_date"))
    elif column.type == "datetime":
        checks.append(sa.CheckConstraint(sa.func.datetime(col).is_not_distinct_from(col), name=f"{prefix}_datetime"))
    elif column.type == "json":
        checks.append(sa.CheckConstraint(sa.or_(col.is_(None), sa.func.json_valid(col) == 1), name=f"{prefix}_json"))
    if column.enum is not None:
        checks.append(sa.CheckConstraint(col.in_(column.enum), name=f"{prefix}_enum"))
    return checks


def _default(column: Column) -> sa.TextClause | None:
    if column.default is None:
        return None
    value = column.default
    if isinstance(value, bool):
        value = int(value)
    literal = sa.literal(value).compile(dialect=sqlite_dialect.dialect(), compile_kwargs={"literal_binds": True})
    return sa.text(str(literal))


def build_metadata(spec: EnvSpec) -> sa.MetaData:
    """SQLAlchemy metadata for the spec's tables (assumes the spec passed validation)."""
    metadata = sa.MetaData()
    for table in spec.tables:
        columns = []
        for column in table.columns:
            args: list[sa.SchemaItem] = []
            if column.references:
                ref_table, ref_column = column.references.split(".")
                args.append(sa.ForeignKey(f"{ref_table}.{ref_column}"))
            columns.append(
                sa.Column(
                    column.name,
                    _STORAGE[column.type](),
                    *args,
                    primary_key=column.primary_key,
                    nullable=column.nullable and not column.primary_key,
                    unique=column.unique or None,
                    server_default=_default(column),
                    autoincrement=False,
                )
            )
        sa_table = sa.Table(table.name, metadata, *columns, sqlite_strict=True)
        for column in table.columns:
            for check in _column_constraints(sa_table, column):
                sa_table.append_constraint(check)
        for check in table.checks:
            sa_table.append_constraint(
                sa.CheckConstraint(sa.text(check_expression(table, check.expression)), name=check.name)
            )
    return metadata


def create_statements(metadata: sa.MetaData) -> list[str]:
    """CREATE TABLE statements in dependency order."""
    dialect = sqlite_dialect.dialect()
    return [
        str(CreateTable(table).compile(dialect=dialect, compile_kwargs={"literal_binds": True})).strip()
        for table in metadata.sorted_tables
    ]


def constraint_messages(spec: EnvSpec) -> dict[str, str]:
    """Agent-facing messages for each named constraint, keyed by constraint name."""
    formats = {
        "boolean": "must be true or false",
        "date": "must be a date written YYYY-MM-DD",
        "datetime": "must be a date and time written YYYY-MM-DD HH:MM:SS",
        "json": "must be valid JSON",
    }
    messages: dict[str, str] = {}
    for table in spec.tables:
        for column in table.columns:
            prefix = f"ck_{table.name}_{column.name}"
            if column.type in formats:
                messages[f"{prefix}_{column.type}"] = f"{table.name}.{column.name} {formats[column.type]}."
            if column.enum is not None:
                allowed = ", ".join(repr(v) for v in column.enum)
                messages[f"{prefix}_enum"] = f"{table.name}.{column.name} must be one of {allowed}."
        for check in table.checks:
            messages[check.name] = check.message
    return messages
