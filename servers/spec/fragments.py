"""SQL fragments: named SELECTs that a statement reads like tables, expanded into a WITH clause.

A statement that names fragments runs as ``WITH f1 AS (<sql>), f2 AS (<sql>) <statement>``, holding only
the fragments it uses (transitively), in declaration order (a fragment may use only earlier ones, so that
order is a dependency order). An existing leading ``WITH`` / ``WITH RECURSIVE`` clause gets the fragments
put at its front. The expansion is textual, a prefix: the statement runs exactly as written, never as
sqlglot would render it back. sqlglot only tells which names a statement reads as tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

__all__ = ["FragmentSet", "fragment_references", "expand_fragments"]


def fragment_references(sql: str, names: Sequence[str] | Mapping[str, object]) -> list[str]:
    """The fragment names ``sql`` reads as tables (not counting its own CTEs of the same name), in the order
    of ``names``. A statement sqlglot cannot parse names none: its analysis reports the parse error."""
    known = set(names)
    if not known or not any(name in sql.lower() for name in known):
        return []
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]  # noise filtered: sql_analysis
    except SqlglotError:
        return []
    own = {cte.alias_or_name.lower() for tree in trees for cte in tree.find_all(exp.CTE)}
    used = {
        table.name.lower()
        for tree in trees
        for table in tree.find_all(exp.Table)
        if isinstance(table.this, exp.Identifier) and not table.args.get("db")
    }
    return [name for name in names if name in used and name not in own]


def _body(sql: str) -> str:
    return sql.strip().rstrip(";").rstrip()


@dataclass(frozen=True)
class FragmentSet:
    """The fragments of a spec: their SQL and which earlier fragments each uses directly."""

    sql: Mapping[str, str]
    """name -> the fragment's SELECT, as written (trailing ``;`` removed)."""
    uses: Mapping[str, tuple[str, ...]]
    """name -> the fragments it names, in declaration order (only earlier ones are valid)."""

    @classmethod
    def build(cls, fragments: Sequence[tuple[str, str]]) -> FragmentSet:
        """From ``(name, sql)`` pairs in declaration order (the first of duplicate names wins)."""
        sql: dict[str, str] = {}
        for name, text in fragments:
            sql.setdefault(name, _body(text))
        return cls(sql, {name: tuple(fragment_references(text, list(sql))) for name, text in sql.items()})

    def closure(self, direct: Sequence[str]) -> list[str]:
        """``direct`` and every fragment they use, transitively, in declaration order (dependencies first)."""
        needed: set[str] = set()
        stack = [name for name in direct if name in self.sql]
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(self.uses.get(name, ()))
        return [name for name in self.sql if name in needed]

    def used_by(self, sql: str) -> list[str]:
        """Every fragment ``sql`` needs, transitively, in declaration order."""
        return self.closure(fragment_references(sql, list(self.sql)))


def expand_fragments(sql: str, fragments: FragmentSet, names: Sequence[str]) -> str:
    """``sql`` with ``names`` (in that order, dependencies first) defined in front of it as CTEs.

    Merged into the statement's own leading ``WITH`` / ``WITH RECURSIVE`` clause when it has one (the
    fragments come first, so its CTEs may read them); otherwise a ``WITH`` clause is put before it."""
    body = _body(sql)
    if not names:
        return body
    ctes = ",\n".join(f"{name} AS (\n{fragments.sql[name]}\n)" for name in names)
    try:
        tokens = SQLite().tokenize(body)
    except SqlglotError:
        tokens = []
    if tokens and tokens[0].token_type == TokenType.WITH:
        head = tokens[1] if len(tokens) > 1 and tokens[1].token_type == TokenType.RECURSIVE else tokens[0]
        cut = head.end + 1
        return f"{body[:cut]}\n{ctes},\n{body[cut:].lstrip()}"
    return f"WITH {ctes}\n{body}"
