"""Stage 2, logic modeling: a catalog domain becomes an environment spec in the runtime's format.

Entities become tables; each gets query tools (get by id, search, list by relation, counts,
summaries) and state-change tools (create, update, one per lifecycle transition) — one module per
operation kind in ``synthesizer/operations/`` — whose business rules are ``require`` steps made by
each rule's kind (``synthesizer/rules/``). A seeded variant draws a subset of the optional entities
and rules and the rules' parameters, so one domain yields several distinct environments. The result
is plain data: the runtime validates it like any other spec.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .catalog import Attribute, Domain, Entity, Param, Rule
from .naming import p_, words
from .operations import OPERATIONS, ToolRole
from .operations.parts import DATETIME_PATTERN, record_fragment
from .policies import PolicyRef, policy_refs
from .rules import RuleRef, rule_kind
from .world import owner_chain

__all__ = ["Design", "ToolRole", "RuleRef", "design_domain", "build_spec", "p_", "MODELER_VERSION", "DATETIME_PATTERN"]

MODELER_VERSION = "1"


@dataclass
class Design:
    """A domain variant: the entities and rules kept, rule parameters, clock and names.

    ``refs`` are the kept rules with their stable ids and drawn parameters (made once, by
    ``design_domain``); ``roles`` are the tools ``build_spec`` made, by name: later stages find a
    tool by what it does (``tool``), never by rebuilding its name."""

    domain: Domain
    env_id: str
    name: str
    seed: int
    variant: int
    clock: datetime
    entities: list[Entity]
    rules: list[Rule]
    refs: list[RuleRef] = field(default_factory=list)
    roles: dict[str, ToolRole] = field(default_factory=dict)
    codes: dict[tuple[str, str], str] = field(default_factory=dict)  # (entity, attribute) -> sequence prefix
    vocabulary: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (entity, attribute) -> seed values

    tier_hours: dict[tuple[str, int], int] = field(default_factory=dict)  # (cancel op, tier) -> hours drawn
    policy_refs: list[PolicyRef] = field(default_factory=list)  # world designs: the policy-only rules

    def entity(self, name: str) -> Entity:
        return next(e for e in self.entities if e.name == name)

    @property
    def world(self) -> bool:
        """Modeled with the world vocabulary (principals, ledger, intent operations)."""
        return self.domain.world

    @property
    def principal(self) -> Entity:
        """The (first) principal entity of a world design."""
        return self.entity(self.domain.principals[0].entity)

    @property
    def org_name(self) -> str:
        assert self.domain.org is not None
        return self.domain.org.names[self.variant % len(self.domain.org.names)]

    def chain(self, entity: Entity) -> list[Entity] | None:
        """The owner chain of ``entity`` up to its principal, or None for a shared resource."""
        chain = owner_chain(self.domain, self.domain.entity(entity.name))
        return None if chain is None else [self.entity(e.name) for e in chain]

    def owned(self, entity: Entity) -> bool:
        """Owned by a principal, and not a principal itself."""
        chain = self.chain(entity)
        return chain is not None and len(chain) > 1

    def op_tool(self, op_id: str) -> str | None:
        """The tool made for a declared operation (world designs), found by its role's ``op_id``."""
        return next((name for name, role in self.roles.items() if role.op_id == op_id), None)

    def listing_tool(self, entity: Entity) -> str | None:
        """The read that lists the acting principal's records of ``entity`` (world designs)."""
        return self.tool("list_owned", entity.name)

    def operations(self, kind: str, entity: Entity) -> list[Any]:
        """The declared operations of ``kind`` on ``entity`` that are exposed as tools."""
        return [
            op
            for op in self.domain.operations
            if op.kind == kind and op.entity == entity.name and op.expose != "hidden"
        ]

    def table(self, entity: Entity | str) -> str:
        return (entity if isinstance(entity, Entity) else self.entity(entity)).plural

    def tool(self, kind: str, entity: str, *, relation: str | None = None, transition: str | None = None) -> str | None:
        """The name of the tool with this role, or None when the design has none."""
        wanted = (kind, entity, relation, transition)
        return next(
            (name for name, r in self.roles.items() if (r.kind, r.entity, r.relation, r.transition) == wanted), None
        )


def _draw(rng: random.Random, param: Param, variant: int) -> float:
    if variant == 0:
        return param.default
    steps = int(round((param.high - param.low) / param.step))
    return param.low + param.step * rng.randint(0, max(steps, 0))


def design_domain(domain: Domain, *, seed: int, variant: int = 0, env_id: str | None = None) -> Design:
    """Pick the variant: core entities always, others mostly; rules whose entities survive; parameters."""
    rng = random.Random(f"{domain.id}:{seed}:{variant}")
    kept = {e.name for e in domain.entities if e.core or variant == 0 or domain.world or rng.random() < 0.8}
    changed = True
    while changed:  # required relations pull their targets in
        changed = False
        for entity in domain.entities:
            if entity.name in kept:
                for relation in entity.relations:
                    if relation.required and relation.to not in kept:
                        kept.add(relation.to)
                        changed = True
    entities = [_without_dropped_relations(e, kept) for e in domain.entities if e.name in kept]
    by_name = {e.name: e for e in entities}
    rules = [r for r in domain.rules if r.entity in by_name and rule_kind(r.kind).applies(r, by_name)]
    if variant:
        chosen = [r for r in rules if rng.random() < 0.85]
        rules = chosen or rules[:1]
    day = datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + timedelta(days=rng.randint(0, 300))
    design = Design(
        domain,
        env_id or (domain.id if variant == 0 else f"{domain.id}_v{variant}"),
        domain.name if variant == 0 else f"{domain.name} ({variant})",
        seed,
        variant,
        day,
        entities,
        rules,
    )
    for index, rule in enumerate(rules):
        param = rule_kind(rule.kind).parameter(rule)
        design.refs.append(RuleRef.of(index, rule, None if param is None else _draw(rng, param, variant)))
    for op in domain.operations:  # world designs: refund tier hours drawn per variant
        for index, tier in enumerate(getattr(op, "refund", None).tiers if getattr(op, "refund", None) else []):
            if isinstance(tier.hours, Param):
                design.tier_hours[(op.name, index)] = int(_draw(rng, tier.hours, variant))
    if domain.world:
        design.policy_refs = policy_refs(design, rng, _draw)
    taken = {e.id_prefix for e in entities}
    if domain.ledger:
        taken |= {domain.ledger.prefix, domain.ledger.payment_prefix}
    for entity in entities:
        for attr in entity.attributes:
            if attr.generator.startswith("code:"):
                prefix = re.sub(r"[^A-Z0-9]", "", attr.generator[5:].upper())
                prefix = prefix if prefix[:1].isalpha() else "C" + prefix
                while prefix in taken:
                    prefix += "N"
                taken.add(prefix)
                design.codes[(entity.name, attr.name)] = prefix[:16]
    return design


def _without_dropped_relations(entity: Entity, kept: set[str]) -> Entity:
    relations = [r for r in entity.relations if r.to in kept]
    return entity if len(relations) == len(entity.relations) else entity.model_copy(update={"relations": relations})


# -- spec building ------------------------------------------------------------------------------


def _column(attr: Attribute) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": attr.name,
        "type": attr.type,
        "description": attr.description,
        "nullable": not attr.required,
    }
    if attr.enum:
        column["enum"] = sorted(set(attr.enum), key=attr.enum.index)
    if attr.unique:
        column["unique"] = True
    return column


def _policy(design: Design) -> str:
    domain = design.domain
    lines = [
        f"# {design.name} — agent policy",
        "",
        f"You work at {domain.actor}. {domain.description}",
        "",
        "## Before you act",
        "- Identify the person or record you are helping by name and one more fact they give you "
        "(a date, a phone number, an email); never act on a guess, and never invent ids.",
        "- Look records up before changing them, and confirm changes that cannot be undone before making them.",
        "",
        "## Rules",
    ]
    lines += [f"- {ref.policy}" for ref in design.refs]
    for entity in design.entities:
        if entity.lifecycle:
            flows = "; ".join(
                f"{t.name.replace('_', ' ')}: {' or '.join(t.from_states)} → {t.to}"
                for t in entity.lifecycle.transitions
            )
            lines.append(f"- {words(entity.plural).capitalize()} move through their states as follows: {flows}.")
    lines += [
        "",
        "## Conduct",
        "- Explain a refusal with the rule that applies, and offer what is allowed instead.",
        "- Do not promise exceptions the rules do not allow.",
    ]
    return "\n".join(lines) + "\n"


def style_tools(design: Design, style: str) -> list[dict[str, Any]]:
    """Every entity's reads, then every entity's writes, from the operation kinds of ``style`` ("legacy" or
    "world"); each tool's role is recorded in ``design.roles``."""
    design.roles.clear()
    tools = []
    for phase in ("read", "write"):
        for entity in design.entities:
            for operation in OPERATIONS.values():
                if operation.phase == phase and style in operation.styles:
                    for role, tool in operation.tools(design, entity):
                        design.roles[tool["name"]] = role
                        tools.append(tool)
    return tools


def entity_columns(
    design: Design,
    entity: Entity,
    extra: list[dict[str, Any]] | None = None,
    column: Callable[[Attribute], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """An entity's table columns: its id, its relations, its attributes (as ``column`` writes one), ``extra``
    ones, its lifecycle state."""
    columns: list[dict[str, Any]] = [
        {
            "name": f"{entity.name}_id",
            "type": "text",
            "primary_key": True,
            "description": f"Id, e.g. {entity.id_prefix}-0001.",
        }
    ]
    for relation in entity.relations:
        target = design.entity(relation.to)
        columns.append(
            {
                "name": relation.column,
                "type": "text",
                "nullable": not relation.required,
                "references": f"{target.plural}.{target.name}_id",
                "description": relation.description,
            }
        )
    columns += [(column or _column)(a) for a in entity.attributes]
    columns += extra or []
    if entity.lifecycle:
        columns.append(
            {
                "name": entity.lifecycle.field,
                "type": "text",
                "nullable": False,
                "enum": entity.lifecycle.states,
                "default": entity.lifecycle.initial,
                "description": "Where the record is in its lifecycle.",
            }
        )
    return columns


def build_spec(design: Design) -> dict[str, Any]:
    """The env.json content for a design."""
    if design.world:
        from .world_spec import build_world_spec  # noqa: PLC0415 (world_spec builds on this module)

        return build_world_spec(design)
    tools = style_tools(design, "legacy")
    tables = []
    for entity in design.entities:
        columns = entity_columns(design, entity)
        checks: list[dict[str, Any]] = []
        tables.append({"name": entity.plural, "description": entity.description, "columns": columns, "checks": checks})
    for ref in design.refs:
        for table_name, check in ref.kind.table_checks(design, ref):
            next(t for t in tables if t["name"] == table_name)["checks"].append(check)
    return {
        "format": 1,
        "id": design.env_id,
        "name": design.name,
        "version": "1.0.0",
        "description": design.domain.description,
        "domain": design.domain.id,
        "tags": ["synthesized", f"variant-{design.variant}"],
        "clock": design.clock.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "policy": _policy(design),
        "sequences": [
            {"prefix": e.id_prefix, "table": e.plural, "column": f"{e.name}_id", "width": 4} for e in design.entities
        ]
        + [
            {"prefix": prefix, "table": design.entity(entity).plural, "column": attr, "width": 5}
            for (entity, attr), prefix in design.codes.items()
        ],
        "tables": tables,
        "fragments": [f for e in design.entities if (f := record_fragment(design, e)) is not None],
        "tools": tools,
        "limits": {"max_rows": 50},
    }
