"""Row-level differences between two states, keyed by primary key.

Used to score the collateral check (which rows did the agent touch that the gold solution did
not?) and to show a readable summary of what an episode changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TableDiff", "StateDiff", "diff_states"]

Dump = Mapping[str, list[dict[str, Any]]]


def row_key(row: Mapping[str, Any], primary_key: list[str]) -> str:
    """A row's primary key as text: the value itself, or a JSON array for a composite key."""
    if len(primary_key) == 1:
        return str(row[primary_key[0]])
    return json.dumps([row[c] for c in primary_key], ensure_ascii=False)


@dataclass
class TableDiff:
    inserted: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: dict[str, dict[str, Any]] = field(default_factory=dict)
    updated: dict[str, dict[str, tuple[Any, Any]]] = field(default_factory=dict)  # key -> column -> (old, new)

    def touched(self) -> set[str]:
        return set(self.inserted) | set(self.deleted) | set(self.updated)

    def __bool__(self) -> bool:
        return bool(self.inserted or self.deleted or self.updated)


@dataclass
class StateDiff:
    tables: dict[str, TableDiff] = field(default_factory=dict)

    def touched(self, table: str) -> set[str]:
        diff = self.tables.get(table)
        return diff.touched() if diff else set()

    def to_dict(self) -> dict[str, Any]:
        return {
            name: {
                "inserted": sorted(diff.inserted),
                "deleted": sorted(diff.deleted),
                "updated": {
                    key: {c: {"old": old, "new": new} for c, (old, new) in cols.items()}
                    for key, cols in sorted(diff.updated.items())
                },
            }
            for name, diff in sorted(self.tables.items())
        }

    def summary(self) -> str:
        """One line per changed table, e.g. ``loans: +LOAN-0084; copies: C-00002 status available→on_loan``."""
        if not self.tables:
            return "no changes"
        lines = []
        for name, diff in sorted(self.tables.items()):
            parts = [f"+{k}" for k in sorted(diff.inserted)] + [f"-{k}" for k in sorted(diff.deleted)]
            for key, cols in sorted(diff.updated.items()):
                changes = ", ".join(f"{c} {old!r}→{new!r}" for c, (old, new) in sorted(cols.items()))
                parts.append(f"{key} {changes}")
            lines.append(f"{name}: " + "; ".join(parts))
        return "\n".join(lines)


def diff_states(before: Dump, after: Dump, primary_keys: Mapping[str, list[str]]) -> StateDiff:
    """What changed from ``before`` to ``after``, table by table (unchanged tables are left out)."""
    result = StateDiff()
    for table, key_columns in primary_keys.items():
        old = {row_key(r, key_columns): r for r in before.get(table, [])}
        new = {row_key(r, key_columns): r for r in after.get(table, [])}
        diff = TableDiff()
        for key in new.keys() - old.keys():
            diff.inserted[key] = new[key]
        for key in old.keys() - new.keys():
            diff.deleted[key] = old[key]
        for key in old.keys() & new.keys():
            if old[key] != new[key]:
                diff.updated[key] = {c: (old[key].get(c), v) for c, v in new[key].items() if old[key].get(c) != v}
        if diff:
            result.tables[table] = diff
    return result
