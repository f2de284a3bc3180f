"""Invariants derived from a world design's vocabulary (design §8), as ``invariant_<id>`` fragments.

Each is a SELECT of the violating rows: a copied column that differs from its parent's, a capacity
counter that is not capacity minus what is held, a paid sum that is not the ledger's, a paid state
that disagrees with the amounts, a state whose phase disagrees with the clock, a cancellation stamp
that disagrees with the state, a principal younger than the domain allows. The seed and every gold
final state must return none (``synthesizer.invariants`` evaluates them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ledger import payable_entities
from .operations.book import counter_of

if TYPE_CHECKING:
    from .modeling import Design

__all__ = ["derived_invariants"]


def _fragment(name: str, description: str, sql: str) -> dict[str, Any]:
    return {"name": f"invariant_{name}", "description": f"Invariant: {description}", "sql": sql}


def _states(states: list[str]) -> str:
    return ", ".join(f"'{s}'" for s in states)


def derived_invariants(design: Design) -> list[dict[str, Any]]:
    domain = design.domain
    found: list[dict[str, Any]] = []
    for entity in design.entities:
        e, table = entity.name, entity.plural
        for attr in entity.attributes:
            if attr.derive and attr.derive.copy_:
                target, source = attr.derive.copy_.split(".")
                column = next(r.column for r in entity.relations if r.to == target)
                parent = design.entity(target)
                found.append(
                    _fragment(
                        f"{e}_{attr.name}_copied",
                        f"a {e}'s {attr.name} is its {target}'s.",
                        f"SELECT t.{e}_id FROM {table} t JOIN {parent.plural} r ON r.{target}_id = t.{column} "
                        f"WHERE t.{attr.name} IS NOT r.{source}",
                    )
                )
        held = counter_of(design, entity)
        if held:
            resource, counter, availability = held
            assert counter.derive is not None and counter.derive.counter is not None
            column = next(r.column for r in entity.relations if r.to == resource.name)
            life = entity.lifecycle
            holding = f" AND t.{life.field} IN ({_states(availability.holds)})" if life else ""
            found.append(
                _fragment(
                    f"{resource.name}_{counter.name}",
                    f"{counter.name} = {counter.derive.counter.capacity} − what {entity.plural} hold.",
                    f"SELECT r.{resource.name}_id FROM {resource.plural} r WHERE r.{counter.name} <> "
                    f"r.{counter.derive.counter.capacity} - COALESCE((SELECT SUM(t.{availability.amount}) FROM "
                    f"{table} t WHERE t.{column} = r.{resource.name}_id{holding}), 0)",
                )
            )
        life = entity.lifecycle
        if life and life.at and life.phases:
            before = [s for s, p in life.phases.items() if p == "before"]
            after = [s for s, p in life.phases.items() if p == "after"]
            found.append(
                _fragment(
                    f"{e}_phase",
                    f"a {e}'s state agrees with when its {life.at} lies.",
                    f"SELECT {e}_id FROM {table} WHERE ({life.field} IN ({_states(after)}) AND {life.at} > now()) "
                    f"OR ({life.field} IN ({_states(before)}) AND {life.at} <= now())",
                )
            )
    for entity in payable_entities(design):
        e, table = entity.name, entity.plural
        found.append(
            _fragment(
                f"{e}_paid_matches_ledger",
                f"what a {e} has paid is its net charges.",
                f"SELECT t.{e}_id FROM {table} t WHERE t.amount_paid_cents <> COALESCE((SELECT SUM(p.net_cents) "
                f"FROM {e}_paid p WHERE p.{e}_id = t.{e}_id), 0)",
            )
        )
    for op in domain.operations:
        entity = design.entity(op.entity)
        if op.kind == "pay" and entity.lifecycle:
            total = next(a.name for a in entity.attributes if a.derive and a.derive.price)
            field_name = entity.lifecycle.field
            found.append(
                _fragment(
                    f"{entity.name}_paid_state",
                    f"a {entity.name} is {op.paid_state} exactly when it is paid in full.",
                    f"SELECT {entity.name}_id FROM {entity.plural} WHERE {field_name} IN "
                    f"({_states([*op.payable_states, op.paid_state])}) AND ({field_name} = '{op.paid_state}') <> "
                    f"(amount_paid_cents = {total})",
                )
            )
        if op.kind == "cancel" and entity.lifecycle:
            transition = next(t for t in entity.lifecycle.transitions if t.name == op.transition)
            if transition.stamp:
                found.append(
                    _fragment(
                        f"{entity.name}_{transition.stamp}",
                        f"a {entity.name} has a {transition.stamp} exactly when it is {transition.to}, never later "
                        "than now.",
                        f"SELECT {entity.name}_id FROM {entity.plural} WHERE ({entity.lifecycle.field} = "
                        f"'{transition.to}') <> ({transition.stamp} IS NOT NULL) OR {transition.stamp} > now()",
                    )
                )
    for principal in domain.principals:
        entity = design.entity(principal.entity)
        born = next((a for a in entity.attributes if a.name == "date_of_birth" and a.type == "date"), None)
        if born is not None and principal.min_age:
            found.append(
                _fragment(
                    f"principal_{entity.name}_age",
                    f"every {entity.name} is at least {principal.min_age}.",
                    f"SELECT {entity.name}_id FROM {entity.plural} WHERE date_of_birth > "
                    f"date(now(), '-{principal.min_age} years')",
                )
            )
    return found
