"""State checks for synthesized tasks: one per change a gold run made (from its diff), and the
independent checks families add (a distractor left alone, the user's records counted in a state), so a
write task never rests on a single assertion."""

from __future__ import annotations

import json
from typing import Any

from servers.spec import Check

from ..naming import words as _words
from .world import literal as _literal

__all__ = ["checks_from_diff", "unchanged", "count_in_state"]


def checks_from_diff(
    diff: Any,
    primary_keys: dict[str, list[str]],
    *,
    names: dict[str, str] | None = None,
    alternatives: dict[str, list[Any]] | None = None,
) -> list[Check]:
    """A check per change a gold run made: each new row by its values (``alternatives`` lists the
    values a column may take instead), each changed field by its row's key, each deleted row gone."""
    checks = []
    for table, changes in sorted(diff.tables.items()):
        noun = (names or {}).get(table) or _words(table.removesuffix("s"))
        key_columns = primary_keys[table]
        for _, row in sorted(changes.inserted.items()):
            conditions = []
            for column, value in row.items():
                if column in key_columns and len(key_columns) == 1:
                    continue  # a generated id: any id will do
                if column in (alternatives or {}):
                    conditions.append(f"{column} IN ({', '.join(_literal(v) for v in alternatives[column])})")  # type: ignore[index]
                else:
                    conditions.append(f"{column} IS NULL" if value is None else f"{column} = {_literal(value)}")
            checks.append(
                Check(
                    description=f"A new {noun} exists with the requested details",
                    sql=f"SELECT 1 FROM {table} WHERE {' AND '.join(conditions) or '1'}",
                )
            )
        for key, columns in sorted(changes.updated.items()):
            conditions = _key_conditions(key_columns, key) + [
                f"{c} IS NULL" if new is None else f"{c} = {_literal(new)}" for c, (_, new) in sorted(columns.items())
            ]
            changed = ", ".join(_words(c) for c in sorted(columns))
            checks.append(
                Check(
                    description=f"{noun.capitalize()} {key}: {changed} updated",
                    sql=f"SELECT 1 FROM {table} WHERE {' AND '.join(conditions)}",
                )
            )
        for key in sorted(changes.deleted):
            checks.append(
                Check(
                    description=f"{noun.capitalize()} {key} removed",
                    sql=f"SELECT 1 FROM {table} WHERE {' AND '.join(_key_conditions(key_columns, key))}",
                    expect="none",
                )
            )
    return checks


def _key_conditions(key_columns: list[str], key: str) -> list[str]:
    """Conditions naming one row by the diff's key text (a JSON array for a composite key)."""
    values = json.loads(key) if len(key_columns) > 1 else [key]
    return [f"{column} = {_literal(value)}" for column, value in zip(key_columns, values, strict=True)]


def unchanged(table: str, key_column: str, key: Any, column: str, value: Any, what: str) -> Check:
    """``what`` (a distractor, a record the user did not mean) still has ``column`` = ``value``."""
    condition = f"{column} IS NULL" if value is None else f"{column} = {_literal(value)}"
    return Check(
        description=f"{what} is left as it was",
        sql=f"SELECT 1 FROM {table} WHERE {key_column} = {_literal(key)} AND {condition}",
    )


def count_in_state(table: str, where: str, field: str, state: str, count: int, what: str) -> Check:
    """Exactly ``count`` of the rows ``where`` selects are in ``state`` (the user's records after the task)."""
    return Check(
        description=f"{what}: exactly {count} {state}",
        sql=f"SELECT COUNT(*) = {count} FROM {table} WHERE {where} AND {field} = {_literal(state)}",
        expect="true",
    )
