"""Phases shared by the kinds that count an owner's children (``limit_per_owner``, ``unique_active``)
and the relation checks several kinds make."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from ..naming import words
from .base import RuleRef, column_to, state_field

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..procedural_tests import Tester
    from ..seeding import Seeder

__all__ = ["owner_states_problems", "required_problems", "push_over_limit", "exhaust"]


def owner_states_problems(rule: Any, entity: Entity) -> list[str]:
    """Checks shared by the kinds that count an owner's children in some states."""
    problems = []
    related = {r.to for r in entity.relations}
    states = set(entity.lifecycle.states) if entity.lifecycle else set()
    if rule.owner not in related:
        problems.append(f"{rule.owner!r} is not a relation")
    if not set(rule.states) <= states:
        problems.append(f"states {rule.states} are not all lifecycle states")
    return problems


def required_problems(names: list[str], entity: Entity) -> list[str]:
    """The relations a rule counts or reads through must be required (in the order given, once each)."""
    relations = {r.to: r for r in entity.relations}
    return [
        f"the relation to {name!r} must be required"
        for name in dict.fromkeys(names)
        if name in relations and not relations[name].required
    ]


def push_over_limit(seeder: Seeder, ref: RuleRef, limit: int, parties: tuple[str, ...]) -> None:
    """Push seed rows that would break a per-owner count (``parties``: the owner, then a target for a
    unique pair) into a state the rule does not count."""
    rule, design = ref.rule, seeder.design
    entity = design.entity(rule.entity)
    if entity.lifecycle is None:
        return
    uncounted = [s for s in entity.lifecycle.states if s not in rule.states]
    phases = entity.lifecycle.phases or {}  # a world seed re-aligns states with the clock afterwards: a state
    spare = next((s for s in uncounted if phases.get(s) == "any"), None)  # true at any moment stays put
    spare = spare or next(iter(uncounted), None)
    if spare is None:
        return
    owner = column_to(entity, rule.owner)
    columns = [column_to(entity, party) for party in parties]
    per_owner = len(parties) == 1
    field = entity.lifecycle.field
    seen: dict[Any, int] = defaultdict(int)
    rows = seeder.rows[entity.plural]
    in_state = Counter(row[field] for row in rows)
    owner_ids = [r[f"{rule.owner}_id"] for r in seeder.rows.get(design.entity(rule.owner).plural, [])]
    for row in rows:
        if row[field] not in rule.states:
            continue
        key = tuple(row[c] for c in columns)
        if seen[key] >= limit and in_state[row[field]] == 1 and per_owner:
            roomy = next((o for o in owner_ids if seen[(o,)] < limit), None)
            if roomy is not None:  # the only record in its state keeps it, with an owner who has room
                row[owner], key = roomy, (roomy,)
        seen[key] += 1
        if seen[key] > limit:
            in_state[row[field]] -= 1
            in_state[spare] += 1
            row[field] = spare
            for attr, value in seeder.stamps(entity, spare).items():
                row[attr] = value


def exhaust(
    tester: Tester, ref: RuleRef, tool: str, base: dict[str, Any], limit: int, target: str | None
) -> str | None:
    """Bring the owner to the limit directly in the state, then one more create must be refused by
    this rule (and change nothing). For a unique pair (``target``), the limit is one with that target."""
    design, rule = tester.design, ref.rule
    entity = design.entity(rule.entity)
    owner = column_to(entity, rule.owner)
    field_name = state_field(entity)
    existing = [c for c in tester.rows(entity.name) if c[owner] == base.get(owner) and c.get(field_name) in rule.states]
    if target is None:
        missing = limit - len(existing)
        avoid = {r.column: base.get(r.column) for r in entity.relations if r.column != owner}
    else:
        target_column = column_to(entity, target)
        missing, avoid = 1, {}
    template = tester.rows(entity.name)
    if missing < 1 or not template:
        return f"the seed has no {words(entity.name)} to copy" if not template else "the owner is at the limit already"
    state = tester.env.new_state()
    with state.mode("internal"):
        for index in range(missing):
            row = dict(template[index % len(template)])
            row[f"{entity.name}_id"] = f"{entity.id_prefix}-{8000 + index}"
            row[owner], row[field_name] = base.get(owner), rule.states[0]
            for attr in entity.attributes:
                if attr.unique and row.get(attr.name) is not None:
                    row[attr.name] = f"{row[attr.name]}-P{index}"
            if target is not None:
                row[target_column] = base.get(target_column)
            for column, value in avoid.items():  # keep unique-pair rules out of the way
                if row.get(column) == value:
                    related = next(r.to for r in entity.relations if r.column == column)
                    alternatives = [r[f"{related}_id"] for r in tester.rows(related) if r[f"{related}_id"] != value]
                    if alternatives:
                        row[column] = alternatives[index % len(alternatives)]
            columns = ", ".join(row)
            state.conn.execute(
                f"INSERT INTO {entity.plural} ({columns}) VALUES ({', '.join(':' + c for c in row)})", row
            )
    expected = {ref.id}
    if target is not None:  # the extra row may also bring the owner to a per-owner limit
        expected |= {r.id for r in design.refs if r.kind.limits_rows and r.rule.entity == entity.name}
    tester.negative(tool, "rule", base, expected, state=state, rule=ref.id)
    state.close()
    return None
