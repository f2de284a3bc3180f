"""Stage 2 for world designs: tables with the computed columns and the ledger, the shared fragments,
the tools of every kind that serves world designs, and the policy written from the domain's actors,
operations and rules (design §2, §3, §6, §9.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ledger import ledger_sequences, ledger_tables, owner_fragment, paid_fragment, payable_entities
from .modeling import entity_columns, style_tools
from .naming import words
from .operations.parts import record_fragment
from .policy import world_policy
from .world import counts_changes
from .world_invariants import derived_invariants

if TYPE_CHECKING:
    from .catalog import Attribute, Entity
    from .modeling import Design

__all__ = ["build_world_spec", "auto_columns", "computed_columns", "design_record"]


def _column(attr: Attribute) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": attr.name,
        "type": attr.column_type,
        "description": attr.description + (" In cents." if attr.type == "money" else ""),
        "nullable": not attr.required,
    }
    if attr.enum:
        column["enum"] = sorted(set(attr.enum), key=attr.enum.index)
    if attr.unique:
        column["unique"] = True
    return column


def auto_columns(design: Design, entity: Entity) -> list[dict[str, Any]]:
    """The columns the modeler adds: what a record has paid, when it was made, why and how much was refunded."""
    columns: list[dict[str, Any]] = []
    ops = [op for op in design.domain.operations if op.entity == entity.name]
    if entity in payable_entities(design):
        columns.append(
            {
                "name": "amount_paid_cents",
                "type": "integer",
                "nullable": False,
                "default": 0,
                "description": "What has been paid, net of refunds, in cents (the ledger's sum).",
            }
        )
    made = any(op.kind in ("book", "create") for op in ops)
    if design.owned(entity) and (made or entity in payable_entities(design)):
        columns.append(
            {"name": "created_at", "type": "datetime", "nullable": False, "description": "When it was made."}
        )
    if design.owned(entity) and counts_changes(design.domain, entity.name):
        columns.append(
            {
                "name": "changes",
                "type": "integer",
                "nullable": False,
                "default": 0,
                "description": "How many times it has been changed (moved, rescheduled, exchanged, amended).",
            }
        )
    cancels = [op for op in ops if op.kind == "cancel"]
    if cancels:
        reasons = list(dict.fromkeys(r for op in cancels for r in op.reasons))
        columns.append(
            {
                "name": "cancel_reason",
                "type": "text",
                "nullable": True,
                "enum": reasons,
                "description": "Why it was cancelled.",
            }
        )
    if any(op.refund for op in cancels):
        columns.append(
            {
                "name": "refund_cents",
                "type": "integer",
                "nullable": True,
                "description": "What the cancellation refunded, in cents.",
            }
        )
    return columns


def computed_columns(design: Design, entity: Entity) -> set[str]:
    """Columns the system computes (§3.1): never a parameter of a create, book or update tool."""
    stamps = {t.stamp for t in entity.lifecycle.transitions if t.stamp} if entity.lifecycle else set()
    fields = {entity.lifecycle.field} if entity.lifecycle else set()
    codes = {name for (owner, name) in design.codes if owner == entity.name}
    derived = {a.name for a in entity.attributes if a.derive}
    return derived | stamps | fields | codes | {c["name"] for c in auto_columns(design, entity)}


def build_world_spec(design: Design) -> dict[str, Any]:
    tools = style_tools(design, "world")
    tables = []
    for entity in design.entities:
        columns = entity_columns(design, entity, auto_columns(design, entity), _column)
        checks: list[dict[str, Any]] = []
        for attr in entity.attributes:
            if attr.type == "money":
                checks.append(
                    {
                        "name": f"{entity.name}_{attr.name}_not_negative",
                        "expression": f"{attr.name} IS NULL OR {attr.name} >= 0",
                        "message": f"{words(attr.name)} is never negative.",
                    }
                )
        tables.append({"name": entity.plural, "description": entity.description, "columns": columns, "checks": checks})
    if design.domain.ledger:
        tables += ledger_tables(design)
    for ref in design.refs:
        for table_name, check in ref.kind.table_checks(design, ref):
            next(t for t in tables if t["name"] == table_name)["checks"].append(check)
    fragments = [f for e in design.entities if (f := record_fragment(design, e)) is not None]
    fragments += [f for e in design.entities if (f := owner_fragment(design, e)) is not None]
    if design.domain.ledger:
        fragments += [paid_fragment(e) for e in payable_entities(design)]
    fragments += derived_invariants(design)
    sequences = [
        {"prefix": e.id_prefix, "table": e.plural, "column": f"{e.name}_id", "width": 4} for e in design.entities
    ] + [
        {"prefix": prefix, "table": design.entity(entity).plural, "column": attr, "width": 5}
        for (entity, attr), prefix in design.codes.items()
    ]
    if design.domain.ledger:
        sequences += ledger_sequences(design)
    return {
        "format": 1,
        "id": design.env_id,
        "name": f"{design.org_name} — {words(design.domain.name)}" if design.variant else design.org_name,
        "version": "1.0.0",
        "description": design.domain.description,
        "domain": design.domain.id,
        "tags": ["synthesized", f"variant-{design.variant}"],
        "clock": design.clock.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "policy": world_policy(design),
        "sequences": sequences,
        "tables": tables,
        "fragments": fragments,
        "tools": tools,
        "limits": {"max_rows": 50},
    }


_TAKES_VALUES = frozenset({"create", "update", "book"})
"""Tools whose parameters become the record's columns (design §12: a pay tool's amount is the payment's)."""


def design_record(design: Design, spec: dict[str, Any]) -> dict[str, Any]:
    """What provenance says about a world design (design §12): principals, the agent, and per tool its role,
    who may ask for it, whether it is exposed, the rule ids its steps name and any computed column it takes
    as a parameter (there must be none)."""
    domain = design.domain
    assert domain.agent is not None
    exposes = {op.name: op.expose for op in domain.operations}
    computed = {e.name: computed_columns(design, e) for e in design.entities}
    tools: dict[str, Any] = {}
    for tool in spec["tools"]:
        role = design.roles[tool["name"]]
        steps = [inner for step in tool["steps"] for inner in [step, *(step.get("steps") or [])]]
        params = set(tool.get("parameters", {}).get("properties", {}))
        tools[tool["name"]] = {
            "kind": role.kind,
            "entity": role.entity,
            "op_id": role.op_id,
            "by": role.by or "principal",
            "expose": exposes.get(role.op_id or "", "tool"),
            "rule_ids": [s["rule"] for s in steps if s.get("rule")],
            "computed_params": sorted(params & computed[role.entity]) if role.kind in _TAKES_VALUES else [],
        }
    return {
        "org": design.org_name,
        "principals": [p.entity for p in domain.principals],
        "agent": {"title": domain.agent.title, "role": domain.agent.role},
        "tools": tools,
        "policy_rules": [ref.id for ref in design.policy_refs],
        "invariants": [f["name"] for f in spec["fragments"] if f["name"].startswith("invariant_")],
    }
