"""An environment's invariants: SQL assertions its seed and every gold final state must satisfy.

An invariant is a spec fragment named ``invariant_<id>`` (design docs/design/worlds.md §8): a SELECT
returning the rows that violate it, so the runtime parses, analyses and prepares it at load like any
fragment. Here it is run on a live state the way task checks are (servers/episodes/evaluation.py):
read-only authorizer mode and the full ``max_sql_steps`` budget, expanded with the earlier fragments
it uses. A violation count is a number of rows; an environment without invariants has none.
"""

from __future__ import annotations

import sqlite3

from servers import Environment, StateCopy
from servers.spec import FragmentSet, expand_fragments

from .errors import SynthesisError

__all__ = [
    "INVARIANT_PREFIX",
    "InvariantError",
    "invariant_names",
    "violations",
    "seed_violations",
    "gold_violations",
    "describe",
    "statement",
]

INVARIANT_PREFIX = "invariant_"


class InvariantError(SynthesisError):
    """An invariant could not be evaluated (its SQL failed on the state, or ran out of budget)."""


def invariant_names(env: Environment) -> list[str]:
    """The fragment names of the environment's invariants (``invariant_<id>``), in declaration order."""
    return [f.name for f in env.spec.fragments if f.name.startswith(INVARIANT_PREFIX)]


def statement(env: Environment, name: str) -> str:
    """``SELECT * FROM <name>`` expanded the way the runtime expands any statement that names fragments
    (docs/spec.md "Fragments"), so the invariant runs exactly as the validated fragment."""
    fragments = FragmentSet.build([(f.name, f.sql) for f in env.spec.fragments])
    sql = f"SELECT * FROM {name}"
    return expand_fragments(sql, fragments, fragments.used_by(sql))


def violations(env: Environment, state: StateCopy) -> dict[str, int]:
    """Rows each invariant returns on ``state`` (read-only; each gets the full step budget). Every invariant
    is listed, with 0 when it holds; ``{}`` when the environment has none. Raises :class:`InvariantError`
    when one cannot run."""
    names = invariant_names(env)
    if not names:
        return {}
    budget = env.spec.limits.max_sql_steps
    counts: dict[str, int] = {}
    for name in names:
        sql = statement(env, name)
        with state.mode("read"):
            state.begin_budget(budget)
            try:
                counts[name] = len(state.conn.execute(sql).fetchall())
            except sqlite3.Error as e:
                raise InvariantError(f"{env.id}: invariant {name} cannot be evaluated: {e}") from None
    return counts


def seed_violations(env: Environment) -> dict[str, int]:
    """:func:`violations` on a fresh copy of the seeded state."""
    state = env.new_state()
    try:
        return violations(env, state)
    finally:
        state.close()


def gold_violations(env: Environment) -> dict[str, dict[str, int]]:
    """Per task, the invariants its gold final state violates (only those with rows; tasks with none are
    left out). A task whose gold fails a call is judged on the state the calls left."""
    if not invariant_names(env):
        return {}
    found: dict[str, dict[str, int]] = {}
    for task in env.tasks:
        replay = env.replay_gold(env.task_template(task.id), task.gold)
        try:
            broken = {name: rows for name, rows in violations(env, replay.state).items() if rows}
        finally:
            replay.close()
        if broken:
            found[task.id] = broken
    return found


def describe(counts: dict[str, int]) -> str:
    """``invariant_x (3 rows), invariant_y (1 row)`` for the invariants with rows."""
    return ", ".join(f"{name} ({rows} row{'s' if rows != 1 else ''})" for name, rows in counts.items() if rows)
