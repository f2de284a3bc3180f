"""The environment spec: the data an environment is made of.

An environment is tables, tools built from SQL steps, a policy and a fixed clock. It is plain
data (``env.json``), so a spec proposed by a program or a model can be checked before anything
runs. These models define the format; :mod:`servers.spec.validation` checks what a schema alone
cannot (SQL, names, references). ``docs/env-spec.schema.json`` is exported from them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "SPEC_FORMAT",
    "ColumnType",
    "Column",
    "TableCheck",
    "Table",
    "IdSequence",
    "Comparison",
    "RequireStep",
    "LetStep",
    "ExecStep",
    "ReturnStep",
    "ForEachStep",
    "NestedStep",
    "Step",
    "Fragment",
    "Tool",
    "Limits",
    "EnvSpec",
    "spec_json_schema",
]

SPEC_FORMAT = 1
"""Version of the env.json format itself (not of any environment)."""

Identifier = Annotated[
    str,
    Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=63, description="A lower_snake_case SQL identifier."),
]
ScalarValue = str | int | float | bool | None

ColumnType = Literal["text", "integer", "real", "boolean", "date", "datetime", "json"]
"""Column types. ``date`` is stored as ``YYYY-MM-DD`` text, ``datetime`` as ``YYYY-MM-DD HH:MM:SS``
(UTC, SQLite's own format, so ``datetime(now(), '+14 days')`` compares correctly), ``boolean`` as
0/1 and ``json`` as JSON text; each is enforced by a CHECK constraint."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Model):
    """A column of a table."""

    name: Identifier
    type: ColumnType
    description: str = ""
    primary_key: bool = Field(False, description="Part of the primary key (several columns make a composite key).")
    nullable: bool = Field(True, description="Whether NULL is allowed. Primary-key columns are never NULL.")
    unique: bool = False
    default: ScalarValue = Field(None, description="Literal default used when an INSERT omits the column.")
    enum: list[str | int] | None = Field(None, min_length=1, description="The only values allowed.")
    references: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$",
        description="Foreign key as 'table.column'.",
    )


class TableCheck(_Model):
    """A table-level invariant, written as a SQL boolean expression over the table's own columns."""

    name: Identifier
    expression: str = Field(min_length=1, examples=["copies_available <= copies_total"])
    message: str = Field(min_length=1, description="Shown to the agent when a write would break the invariant.")


class Table(_Model):
    name: Identifier
    description: str = ""
    columns: list[Column] = Field(min_length=1)
    checks: list[TableCheck] = []

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.primary_key]

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


class IdSequence(_Model):
    """A seeded id generator: ``new_id('LOAN')`` yields ``LOAN-0001``, ``LOAN-0002``, ...

    Numbering starts after the highest id with this prefix already in ``table.column``, and is
    kept per state copy, so the same calls always produce the same ids.
    """

    prefix: str = Field(pattern=r"^[A-Z][A-Z0-9]*$", max_length=16)
    table: Identifier
    column: Identifier
    width: int = Field(4, ge=1, le=12, description="Digits, zero-padded.")


class Comparison(_Model):
    """Compare the first column of the first row with a literal value."""

    op: Literal["==", "!=", "<", "<=", ">", ">="]
    value: ScalarValue


class RequireStep(_Model):
    """A business rule: run a SELECT and refuse the call unless the expectation holds.

    ``exists``/``none``: the SELECT returns at least one row / no row. ``true``: the first column
    of the first row is true. A comparison tests that first column against a value. ``error`` is
    a message template: ``{name}`` names a parameter, a ``let`` binding, or a column of the row
    this SELECT returned.
    """

    kind: Literal["require"]
    sql: str = Field(min_length=1)
    expect: Literal["exists", "none", "true"] | Comparison = "exists"
    error: str = Field(
        min_length=1, examples=["Member {member_id} has {active} active loans; the limit is {max_loans}."]
    )
    rule: str | None = Field(None, description="A short name for the business rule this step enforces.")


class LetStep(_Model):
    """Bind a value for later steps. ``scalar`` binds ``:name`` to the first column of the first row
    (NULL when there is no row); ``row`` binds ``:name_<column>`` for every column of that row;
    ``rows`` binds ``:name`` to a JSON array of row objects (read it with ``json_each(:name)``), which a
    ``for_each`` step can loop over."""

    kind: Literal["let"]
    name: Identifier
    sql: str = Field(min_length=1)
    shape: Literal["scalar", "row", "rows"] = "scalar"


class ExecStep(_Model):
    """An INSERT, UPDATE or DELETE. ``affects`` can demand that rows were changed; ``error`` is then
    the message template used when they were not."""

    kind: Literal["exec"]
    sql: str = Field(min_length=1)
    affects: Literal["any", "one", "at_least_one"] = "any"
    error: str | None = None

    @model_validator(mode="after")
    def _error_when_affects(self) -> ExecStep:
        if self.affects != "any" and not self.error:
            raise ValueError("an exec step with 'affects' needs an 'error' message")
        return self


class ReturnStep(_Model):
    """The result of the call: a SELECT shaped as ``row`` / ``rows`` / ``scalar`` / ``text``, or a literal
    ``message`` template. A ``row`` that finds nothing fails the call with ``not_found``; ``text`` answers
    the first column of the first row as plain text (``""`` when there is none)."""

    kind: Literal["return"]
    sql: str | None = None
    shape: Literal["row", "rows", "scalar", "text"] | None = None
    message: str | None = None
    not_found: str = "No matching record was found."

    @model_validator(mode="after")
    def _sql_xor_message(self) -> ReturnStep:
        if (self.sql is None) == (self.message is None):
            raise ValueError("a return step has either 'sql' (with 'shape') or 'message', not both")
        if self.sql is not None and self.shape is None:
            raise ValueError("a return step with 'sql' needs a 'shape': row, rows, scalar or text")
        if self.message is not None and self.shape is not None:
            raise ValueError("'shape' applies only to a return step with 'sql'")
        return self


NestedStep = Annotated[RequireStep | LetStep | ExecStep, Field(discriminator="kind")]
"""The steps a ``for_each`` step may run for each element."""


class ForEachStep(_Model):
    """Run nested ``require`` / ``let`` / ``exec`` steps once per element of a list, inside the call's one
    transaction (a failure at any element undoes every element).

    ``over`` names a parameter of type ``array`` or an earlier ``let`` with ``shape: rows``. For the nested
    steps only, an object element (an array of objects, or a row) binds ``:<as>_<key>`` for each key (for a
    parameter, each of ``items.properties``; an absent key binds NULL), a scalar element binds ``:<as>``, and
    ``:<as>_index`` is always the 0-based position. A nested ``let`` is visible to the later nested steps of
    the same element only. At most ``limits.max_iterations`` elements."""

    model_config = ConfigDict(extra="forbid", frozen=True, serialize_by_alias=True)  # "as" in JSON, as_ here

    kind: Literal["for_each"]
    over: Identifier = Field(description="A parameter of type array, or an earlier let with shape 'rows'.")
    as_: Identifier = Field(alias="as", description="The element's name: binds :<as> or :<as>_<key>, and :<as>_index.")
    steps: list[NestedStep] = Field(min_length=1, description="require, let and exec steps, run for each element.")


Step = Annotated[RequireStep | LetStep | ExecStep | ReturnStep | ForEachStep, Field(discriminator="kind")]


class Fragment(_Model):
    """A named SELECT that any step may read like a table (``FROM order_summary``). Each statement that
    names it is run as ``WITH order_summary AS (<sql>) <statement>``. It may use earlier fragments and
    ``:parameters`` (which must then be in scope wherever it is used)."""

    name: Identifier
    description: str = ""
    sql: str = Field(min_length=1, examples=["SELECT o.order_id, o.status, COUNT(*) AS lines FROM orders o ..."])


class Tool(_Model):
    """A tool the agent can call: a JSON Schema for its arguments and ordered SQL steps, all run in
    one transaction."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
    description: str = Field(min_length=1)
    kind: Literal["read", "write"] = Field(description="Read tools may not change state.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema (draft 2020-12) of the arguments: an object whose properties are the "
        "parameters, each with a description. Each parameter is bound as ':name' in the steps.",
    )
    steps: list[Step] = Field(min_length=1)


class Limits(_Model):
    """Guards applied to every call. Each has a hard ceiling, so no spec can switch a guard off (the reference
    environments use at most a few thousand SQL steps, a few milliseconds and a few tens of KB per call)."""

    max_rows: int = Field(100, ge=1, le=10_000, description="Rows a 'rows' return yields before truncating.")
    max_string_length: int = Field(
        65_536, ge=16, le=4_194_304, description="Longest string argument accepted, in characters."
    )
    max_sql_steps: int = Field(
        2_000_000,
        ge=10_000,
        le=100_000_000,
        description="SQLite virtual-machine instructions one call may run before it is stopped.",
    )
    max_call_ms: int = Field(
        2_000, ge=1, le=10_000, description="Wall-clock milliseconds one call may run before it is stopped and undone."
    )
    max_value_bytes: int = Field(
        1_048_576,
        ge=1_024,
        le=16_777_216,
        description="Largest string or blob SQLite may hold or build during a call (its length limit), in bytes. "
        "At least 4 x max_string_length, so every accepted argument can be stored.",
    )
    max_result_bytes: int = Field(
        1_048_576,
        ge=1_024,
        le=16_777_216,
        description="Largest result one call may return (text and blob bytes of every value), in bytes. "
        "At least 4 x max_string_length.",
    )
    max_iterations: int = Field(
        1_000, ge=1, le=100_000, description="Elements one for_each step may loop over; more fail the call."
    )
    max_state_bytes: int = Field(
        67_108_864,
        ge=1_048_576,
        le=1_073_741_824,
        description="Largest a state copy may grow, seed included, in bytes: a write that would pass it is stopped "
        "and undone.",
    )

    @model_validator(mode="after")
    def _values_hold_arguments(self) -> Limits:
        least = 4 * self.max_string_length  # a character takes up to 4 bytes
        for name in ("max_value_bytes", "max_result_bytes"):
            if getattr(self, name) < least:
                raise ValueError(
                    f"{name} ({getattr(self, name):,}) must be at least 4 x max_string_length ({least:,}), so that any "
                    "string argument can be stored and returned; raise it or lower max_string_length"
                )
        return self


class EnvSpec(_Model):
    """An environment: identity, fixed clock, policy, tables, id sequences, SQL fragments and tools."""

    format: Literal[1] = SPEC_FORMAT
    id: str = Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=64, description="Slug; also the URL segment.")
    name: str = Field(min_length=1)
    version: str = Field(pattern=r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$", examples=["1.0.0"])
    description: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    tags: list[str] = []
    clock: datetime = Field(
        description="What the environment believes is 'now' (ISO 8601; UTC unless an offset is given). "
        "now() and today() return it; SQLite's 'now' is pinned to it too."
    )
    policy: str = Field(min_length=1, description="Markdown rules the agent must follow.")
    tables: list[Table] = Field(min_length=1)
    sequences: list[IdSequence] = []
    fragments: list[Fragment] = Field(
        [], description="Named SELECTs that any step may read like tables; validated once, expanded per use."
    )
    tools: list[Tool] = Field(min_length=1)
    limits: Limits = Limits()

    @field_validator("clock")
    @classmethod
    def _clock_utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @property
    def clock_sql(self) -> str:
        """The clock in SQLite's datetime format."""
        return self.clock.strftime("%Y-%m-%d %H:%M:%S")

    def table(self, name: str) -> Table | None:
        return next((t for t in self.tables if t.name == name), None)

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def statements(self) -> list[str]:
        """Every SQL text of the spec as written: each step's (a for_each's nested steps included) and each
        fragment's, for scans such as which table functions a state must prepare."""
        texts = [f.sql for f in self.fragments]
        for tool in self.tools:
            for step in tool.steps:
                for inner in step.steps if isinstance(step, ForEachStep) else [step]:
                    if inner.sql is not None:
                        texts.append(inner.sql)
        return texts


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema of env.json, as published in ``docs/env-spec.schema.json``."""
    schema = EnvSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:envfleet:env-spec:1"
    return schema
