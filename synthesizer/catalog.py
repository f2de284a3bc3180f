"""The domain catalog: real-world domains described as data, from which environments are modeled.

Each sector file (``synthesizer/domains/<sector>.json``) lists domains. A domain has entities
(typed attributes, relations, an optional lifecycle of states and transitions) and business
rules drawn from a closed vocabulary: the kinds registered in ``synthesizer/rules/`` (limit per
owner, consumes, time window, eligibility, unique active), each one module with its model, its
checks and every later phase. Rule parameters carry a range, so one domain yields several
distinct environments.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import SynthesisError
from .operations import Operation, operation_problems
from .policies import PolicyRule, policy_problems
from .rules import Consumes, Eligibility, LimitPerOwner, Param, Rule, TimeWindow, UniqueActive, rule_kind
from .rules.base import Identifier
from .world import COMPUTED_AUTO, Agent, Derive, Ledger, Org, Pricing, Principal, owner_chain

__all__ = [
    "Attribute",
    "Relation",
    "Transition",
    "Lifecycle",
    "Entity",
    "Param",
    "LimitPerOwner",
    "Consumes",
    "TimeWindow",
    "Eligibility",
    "UniqueActive",
    "Rule",
    "Domain",
    "Composite",
    "Sector",
    "Catalog",
    "CatalogError",
    "load_catalog",
    "DOMAINS_DIR",
    "Operation",
]

DOMAINS_DIR = Path(__file__).parent / "domains"


class CatalogError(SynthesisError, ValueError):
    """The catalog data is inconsistent; the message names the sector, domain and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Attribute(_Model):
    name: Identifier
    type: Literal["text", "integer", "real", "boolean", "date", "datetime", "money"] = Field(
        description="'money' (world domains): integer cents, the name ends in _cents."
    )
    description: str = Field(min_length=1)
    generator: str = Field(
        description="How seed values are made: a Faker method ('name', 'company', 'city', 'email', 'sentence', ...), "
        "'choice' (from enum), 'int:LOW:HIGH', 'money:LOW:HIGH', 'bool:P', 'date:-DAYS:+DAYS' / 'datetime:-DAYS:+DAYS' "
        "(relative to the clock), 'code:PREFIX' (unique codes), 'words:N'."
    )
    enum: list[str] | None = None
    searchable: bool = Field(False, description="Offered as a search filter (text: partial match; enum: equality).")
    mutable: bool = Field(False, description="Can be changed by the update tool.")
    required: bool = True
    unique: bool = False
    derive: Derive | None = Field(None, description="System-computed (world domains): never a tool parameter.")
    input: bool = Field(False, description="A parameter of the entity's book operation (world domains).")
    set_by: str | None = Field(
        None, pattern=r"^(principal|system|staff:[a-z][a-z0-9_]*)$", description="Who may change it (world domains)."
    )
    values: list[str] | None = Field(None, description="The vocabulary of the 'pick' generator.")
    differs_from: Identifier | None = Field(None, description="Another attribute this one never equals (origin).")

    @property
    def column_type(self) -> str:
        """The column's runtime type: money is integer cents."""
        return "integer" if self.type == "money" else self.type


class Relation(_Model):
    to: Identifier = Field(description="The entity referred to.")
    field: Identifier | None = Field(None, description="The foreign-key column; default '<to>_id'.")
    description: str = Field(min_length=1)
    required: bool = True

    @property
    def column(self) -> str:
        return self.field or f"{self.to}_id"


class Transition(_Model):
    name: Identifier = Field(description="A verb: cancel, ship, check_in, approve ...")
    from_states: list[str] = Field(alias="from", min_length=1)
    to: str
    description: str = Field(min_length=1)
    stamp: Identifier | None = Field(None, description="A datetime attribute set to now() by the transition.")
    compensates: bool = Field(False, description="Gives back what 'consumes' rules took (cancel, refund, return).")
    by: str | None = Field(None, pattern=r"^(principal|system|staff:[a-z][a-z0-9_]*)$")
    expose: Literal["tool", "hidden", "forbidden"] | None = None


class Lifecycle(_Model):
    field: Identifier = "status"
    initial: str
    states: list[str] = Field(min_length=2)
    transitions: list[Transition] = Field(min_length=1)
    seed_mix: dict[str, float] | None = Field(
        None, description="Share of seed rows per state (default: mostly early states)."
    )
    at: Identifier | None = Field(None, description="The moment the lifecycle revolves around (world domains).")
    phases: dict[str, Literal["before", "after", "any"]] | None = Field(
        None, description="Where 'at' lies relative to the clock in each state (world domains)."
    )


class Entity(_Model):
    name: Identifier = Field(description="Singular: patient, order, loan.")
    plural: Identifier
    description: str = Field(min_length=1)
    id_prefix: str = Field(pattern=r"^[A-Z]{2,6}$")
    label: Identifier = Field(description="The attribute people use to refer to a record (a name or title).")
    attributes: list[Attribute] = Field(min_length=1)
    relations: list[Relation] = []
    lifecycle: Lifecycle | None = None
    creatable: bool = True
    core: bool = Field(False, description="Always part of the modeled environment.")
    seed_count: int = Field(30, ge=3, le=400)
    owner: str | None = Field(
        "auto", description="World domains: 'auto' derives the owner chain; null marks a shared resource."
    )
    kind: Literal["person", "organisation", "thing"] = "thing"


class Domain(_Model):
    id: Identifier
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    keywords: list[str] = Field(min_length=2, description="Words and phrases that point to this domain.")
    actor: str = Field(description="Who the agent is: 'the front desk of a dental clinic'.")
    customer: Identifier | None = Field(
        None,
        description="The entity the user talking to the agent is (patient, "
        "guest, account holder); by default the core entity most others refer to.",
    )
    entities: list[Entity] = Field(min_length=2)
    rules: list[Rule] = Field(min_length=1)
    legacy: bool = Field(
        True, description="Modeled as before the world vocabulary; a migrated domain says false and declares it."
    )
    org: Org | None = None
    agent: Agent | None = None
    staff_roles: dict[Identifier, str] = {}
    principals: list[Principal] = []
    ledger: Ledger | None = None
    pricing: dict[Identifier, Pricing] = {}
    operations: list[Operation] = []
    policy_rules: list[PolicyRule] = Field(
        [], description="Rules the policy states and the tools do not enforce (synthesizer/policies)."
    )

    @property
    def world(self) -> bool:
        """Whether the domain uses the world vocabulary (principals, ledger, intent operations)."""
        return not self.legacy

    def entity(self, name: str) -> Entity:
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(name)

    def customer_entity(self) -> Entity:
        if self.world and self.principals:  # the person the agent talks to is the principal
            return self.entity(self.principals[0].entity)
        if self.customer:
            return self.entity(self.customer)
        referred = {
            e.name: sum(1 for other in self.entities for r in other.relations if r.to == e.name) for e in self.entities
        }
        return max(self.entities, key=lambda e: (e.core, referred[e.name], e.creatable))

    @model_validator(mode="after")
    def _consistent(self) -> Domain:
        problems = _domain_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Composite(_Model):
    """Two related domains joined into one environment; ``shared`` entities are merged."""

    id: Identifier
    name: str
    domains: list[Identifier] = Field(min_length=2, max_length=2)
    shared: dict[Identifier, Identifier] = Field(
        default_factory=dict, description="Entity of the second domain -> the entity of the first it is merged into."
    )
    description: str


class Sector(_Model):
    sector: Identifier
    name: str
    domains: list[Domain] = Field(min_length=1)
    composites: list[Composite] = []


def _domain_problems(domain: Domain) -> list[str]:
    problems: list[str] = []
    names = {e.name for e in domain.entities}
    if domain.customer and domain.customer not in names:
        problems.append(f"customer {domain.customer!r} is not an entity")
    for i, entity in enumerate(domain.entities):
        at = f"entities[{i}] ({entity.name})"
        attrs = {a.name: a for a in entity.attributes}
        if entity.label not in attrs:
            problems.append(f"{at}.label: {entity.label!r} is not an attribute")
        for relation in entity.relations:
            if relation.to not in names:
                problems.append(f"{at}.relations: relation to unknown entity {relation.to!r}")
        for attr in entity.attributes:
            if attr.generator == "choice" and not attr.enum:
                problems.append(f"{at}.attributes ({attr.name}): generator 'choice' needs an enum")
        if entity.lifecycle:
            life = entity.lifecycle
            if life.initial not in life.states:
                problems.append(f"{at}.lifecycle.initial: initial state {life.initial!r} is not a state")
            if life.field in attrs:
                problems.append(f"{at}.lifecycle.field: {life.field!r} must not also be an attribute")
            for transition in life.transitions:
                for state in [*transition.from_states, transition.to]:
                    if state not in life.states:
                        problems.append(f"{at}.lifecycle.transitions ({transition.name}): unknown state {state!r}")
                if transition.stamp and (
                    transition.stamp not in attrs
                    or attrs[transition.stamp].type != "datetime"
                    or attrs[transition.stamp].required
                ):
                    problems.append(
                        f"{at}.lifecycle.transitions ({transition.name}): stamp {transition.stamp!r} must be an "
                        "optional datetime attribute"
                    )
    by_name = {e.name: e for e in domain.entities}
    for j, rule in enumerate(domain.rules):
        at = f"rules[{j}] ({rule.kind} on {rule.entity})"
        entity = by_name.get(rule.entity)
        if entity is None:
            problems.append(f"{at}: unknown entity {rule.entity!r}")
            continue
        problems += [f"{at}: {problem}" for problem in rule_kind(rule.kind).problems(rule, entity, by_name)]
    if domain.world:
        problems += _world_problems(domain)
    elif domain.operations or domain.principals or domain.ledger or domain.pricing or domain.policy_rules:
        problems.append("operations, principals, ledger, pricing and policy_rules need 'legacy': false")
    elif any(a.type == "money" or a.derive or a.input for e in domain.entities for a in e.attributes):
        problems.append("money attributes, derive and input need 'legacy': false")
    return problems


def _world_problems(domain: Domain) -> list[str]:
    """§1–§3 validation of a migrated domain: who is who, what is money, what is computed."""
    problems: list[str] = []
    by_name = {e.name: e for e in domain.entities}
    for field_name in ("org", "agent"):
        if getattr(domain, field_name) is None:
            problems.append(f"{field_name}: a world domain declares it")
    if domain.agent and domain.agent.role not in domain.staff_roles:
        problems.append(f"agent.role: {domain.agent.role!r} is not one of staff_roles")
    if not domain.principals:
        problems.append("principals: a world domain names at least one")
    for principal in domain.principals:
        entity = by_name.get(principal.entity)
        if entity is None:
            problems.append(f"principals: {principal.entity!r} is not an entity")
            continue
        attrs = {a.name for a in entity.attributes}
        for key_set in principal.identify_by:
            for name in key_set:
                if name not in attrs:
                    problems.append(f"principals ({principal.entity}).identify_by: {name!r} is not an attribute")
    if problems:
        return problems
    for entity in domain.entities:
        attrs = {a.name: a for a in entity.attributes}
        for attr in entity.attributes:
            at = f"{entity.name}.{attr.name}"
            if attr.type == "money" and not attr.name.endswith("_cents"):
                problems.append(f"{at}: a money attribute's name ends in _cents")
            if attr.generator == "pick" and not attr.values:
                problems.append(f"{at}: generator 'pick' needs values")
            if attr.differs_from and attr.differs_from not in attrs:
                problems.append(f"{at}: differs_from {attr.differs_from!r} is not an attribute")
            if attr.input and attr.derive:
                problems.append(f"{at}: a derived attribute is never an input")
            derive = attr.derive
            if derive is None:
                continue
            if derive.copy_:
                target, column = derive.copy_.split(".")
                relation = next((r for r in entity.relations if r.to == target and r.required), None)
                if relation is None or column not in {a.name for a in by_name[target].attributes}:
                    problems.append(f"{at}: derive.copy {derive.copy_!r} needs a required relation and its attribute")
            if derive.price and derive.price not in domain.pricing:
                problems.append(f"{at}: derive.price {derive.price!r} is not a pricing id")
            if derive.counter:
                holder = by_name.get(derive.counter.entity)
                if derive.counter.capacity not in attrs or holder is None:
                    problems.append(f"{at}: derive.counter needs a capacity attribute and a holding entity")
                elif derive.counter.amount not in {a.name for a in holder.attributes}:
                    problems.append(f"{at}: derive.counter amount {derive.counter.amount!r} is not an attribute")
            if derive.lookup and derive.lookup.by not in attrs:
                problems.append(f"{at}: derive.lookup by {derive.lookup.by!r} is not an attribute")
            if derive.by_state is not None:
                states = set(entity.lifecycle.states) if entity.lifecycle else set()
                if attr.type != "integer" or not states or not set(derive.by_state) <= states | {"*"}:
                    problems.append(f"{at}: derive.by_state needs an integer attribute, keyed by its states or '*'")
        if entity.lifecycle and entity.lifecycle.at and entity.lifecycle.at not in attrs:
            problems.append(f"{entity.name}.lifecycle.at: {entity.lifecycle.at!r} is not an attribute")
        for name in COMPUTED_AUTO:
            if name in attrs:
                problems.append(f"{entity.name}.{name}: the modeler adds this column; do not declare it")
    for pricing_id, pricing in domain.pricing.items():
        problems += [f"pricing.{pricing_id}: {p}" for p in _pricing_problems(domain, pricing)]
    names = [op.name for op in domain.operations]
    if len(names) != len(set(names)):
        problems.append("operations: tool names repeat")
    for j, op in enumerate(domain.operations):
        at = f"operations[{j}] ({op.name})"
        if op.entity not in by_name:
            problems.append(f"{at}: unknown entity {op.entity!r}")
            continue
        if op.by_or_default() == "principal" and owner_chain(domain, by_name[op.entity]) is None:
            problems.append(f"{at}: a principal's operation acts on an owned entity; {op.entity!r} has no owner")
        problems += [f"{at}: {p}" for p in operation_problems(op, domain)]
    rule_ids = [rule.id for rule in domain.rules if rule.id]
    if len(rule_ids) != len(set(rule_ids)):
        problems.append("rules: ids repeat")
    ids = [rule.id for rule in domain.policy_rules]
    if len(ids) != len(set(ids)):
        problems.append("policy_rules: ids repeat")
    for j, rule in enumerate(domain.policy_rules):
        problems += [f"policy_rules[{j}] ({rule.id}): {p}" for p in policy_problems(rule, domain)]
    return problems


def _pricing_problems(domain: Domain, pricing: Pricing) -> list[str]:
    problems: list[str] = []
    if pricing.unit.column:
        target, column = pricing.unit.column.split(".")
        if target not in {e.name for e in domain.entities} or column not in {
            a.name for a in domain.entity(target).attributes
        }:
            problems.append(f"unit.column {pricing.unit.column!r} is not an attribute")
    if pricing.discount:
        target, column = pricing.discount.by.split(".")
        if target not in {e.name for e in domain.entities} or column not in {
            a.name for a in domain.entity(target).attributes
        }:
            problems.append(f"discount.by {pricing.discount.by!r} is not an attribute")
    return problems


class Catalog:
    """Every sector's domains and composites, by id."""

    def __init__(self, sectors: list[Sector]) -> None:
        self.sectors = sectors
        self.domains: dict[str, Domain] = {}
        self.sector_of: dict[str, str] = {}
        self.composites: dict[str, Composite] = {}
        for sector in sectors:
            for domain in sector.domains:
                if domain.id in self.domains:
                    raise CatalogError(f"domain id {domain.id!r} appears twice")
                self.domains[domain.id] = domain
                self.sector_of[domain.id] = sector.sector
            for composite in sector.composites:
                self.composites[composite.id] = composite
        self.waiting: dict[str, str] = {}  # composite id -> why it is not offered yet
        for composite in list(self.composites.values()):
            world = [d for d in composite.domains if d in self.domains and self.domains[d].world]
            if world and len(world) < len(composite.domains):  # one member migrated, the other not yet
                self.waiting[composite.id] = f"joins {', '.join(world)}, migrated to the world vocabulary"
                del self.composites[composite.id]
        for composite in self.composites.values():
            for domain_id in composite.domains:
                if domain_id not in self.domains:
                    raise CatalogError(f"composite {composite.id!r} names unknown domain {domain_id!r}")
            if composite.id in self.domains:
                raise CatalogError(f"composite id {composite.id!r} is also a domain id")
            self.sector_of[composite.id] = self.sector_of[composite.domains[0]]

    def domain(self, domain_id: str) -> Domain:
        """A domain, or a composite merged into one domain."""
        if domain_id in self.domains:
            return self.domains[domain_id]
        if domain_id in self.composites:
            return compose(self.composites[domain_id], [self.domains[d] for d in self.composites[domain_id].domains])
        if domain_id in self.waiting:
            raise CatalogError(
                f"composite {domain_id!r} is not offered until its members share one vocabulary: it "
                f"{self.waiting[domain_id]}"
            )
        raise CatalogError(f"no domain or composite {domain_id!r}")

    def ids(self) -> list[str]:
        return sorted([*self.domains, *self.composites])

    def world_ids(self) -> list[str]:
        """Domains and composites in the world vocabulary: what a batch is planned over (a legacy domain is
        still synthesized when asked for by name or topic, until its migration)."""
        composites = [c for c in self.composites.values() if all(self.domains[d].world for d in c.domains)]
        return sorted([*(d for d, domain in self.domains.items() if domain.world), *(c.id for c in composites)])


def compose(composite: Composite, domains: list[Domain]) -> Domain:
    """Merge two domains: the second's ``shared`` entities become the first's, and its relations and
    rules follow them; every other entity keeps its name (names must not clash)."""
    first, second = domains
    rename = dict(composite.shared)
    clashes = {e.name for e in second.entities if e.name not in rename} & {e.name for e in first.entities}
    if clashes:
        raise CatalogError(
            f"composite {composite.id!r}: entity names clash ({', '.join(sorted(clashes))}); share or rename them"
        )
    prefixes = {e.id_prefix for e in first.entities}

    def mapped(name: str) -> str:
        return rename.get(name, name)

    entities = [e.model_dump(by_alias=True) for e in first.entities]
    for entity in second.entities:
        if entity.name in rename:
            continue
        data = entity.model_dump(by_alias=True)
        for relation in data["relations"]:
            relation["to"] = mapped(relation["to"])
        if data["id_prefix"] in prefixes:
            base = data["id_prefix"][:5]
            data["id_prefix"] = next(base + letter for letter in "XYZQWV" if base + letter not in prefixes)
        prefixes.add(data["id_prefix"])
        entities.append(data)
    rules = [r.model_dump(by_alias=True) for r in first.rules]
    for rule in second.rules:
        data = rule.model_dump(by_alias=True)
        for key in ["entity", *rule_kind(rule.kind).references(rule)]:
            data[key] = mapped(data[key])
        rules.append(data)
    merged: dict[str, Any] = {
        "id": composite.id,
        "name": composite.name,
        "description": composite.description,
        "keywords": sorted({*first.keywords, *second.keywords}),
        "actor": f"{first.actor}, working together with {second.actor}",
        "customer": first.customer,
        "entities": entities,
        "rules": rules,
    }
    if first.world and second.world:
        own = merged["entities"][len(first.entities) :]
        for entity in own:  # the second's own entities, renamed throughout
            entity.update(_renamed(entity, rename))
        parts = _renamed(second.model_dump(by_alias=True), rename)
        if first.agent and second.agent:  # what the second's agent did, the merged business's agent does
            theirs, ours = f"staff:{second.agent.role}", f"staff:{first.agent.role}"
            transitions = [t for e in own for t in ((e.get("lifecycle") or {}).get("transitions") or [])]
            for item in [*parts["operations"], *transitions]:
                if item.get("by") == theirs:
                    item["by"] = ours
        merged.update(_world_parts(first, parts, own))
        for theirs, ours in rename.items():  # a shared entity keeps what the second domain knows of it too
            entity = next(e for e in merged["entities"] if e["name"] == ours)
            known = {a["name"] for a in entity["attributes"]}
            extra = [a for a in second.entity(theirs).model_dump(by_alias=True)["attributes"] if a["name"] not in known]
            entity["attributes"] = [*entity["attributes"], *extra]
    # a rule, operation or policy rule on something the merged domain lacks (an attribute only the second's
    # shared entity had) goes, one at a time against what is kept so far; what is left validates as one domain
    kept: dict[str, Any] = {**merged, "rules": []}
    if "operations" in merged:
        kept.update(operations=[], policy_rules=[])
    for key in ("rules", "operations", "policy_rules"):
        for item in merged.get(key, []):
            if _survives({**kept, key: [*kept[key], item]}):
                kept[key].append(item)
    try:
        return Domain.model_validate(kept)
    except ValidationError as e:
        raise CatalogError(f"composite {composite.id!r}: {e}") from None


_ENTITY_KEYS = frozenset({"entity", "resource", "to", "relation", "subject", "owner", "target"})
_PATH_KEYS = frozenset({"path", "copy", "column", "by"})  # "entity.attribute" values


def _renamed(value: Any, rename: dict[str, str], key: str | None = None) -> Any:
    """A dumped domain part with entity names mapped through ``rename`` wherever a field names an entity."""
    if isinstance(value, dict):
        return {k: _renamed(v, rename, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, rename, key) for v in value]
    if isinstance(value, str) and key in _ENTITY_KEYS:
        return rename.get(value, value)
    if isinstance(value, str) and key in _PATH_KEYS and "." in value:
        head, tail = value.split(".", 1)
        return f"{rename.get(head, head)}.{tail}"
    return value


def _world_parts(first: Domain, second: dict[str, Any], entities: list[dict[str, Any]]) -> dict[str, Any]:
    """Two world domains as one business: the first's people, name and agent; both sets of staff roles,
    one ledger with every method either takes, both pricings, operations and policy rules."""
    data = first.model_dump(by_alias=True)
    ledger = data["ledger"] or second["ledger"]
    if data["ledger"] and second["ledger"]:
        ledger = {
            **data["ledger"],
            "methods": list(dict.fromkeys([*data["ledger"]["methods"], *second["ledger"]["methods"]])),
            "stored_value": list(dict.fromkeys([*data["ledger"]["stored_value"], *second["ledger"]["stored_value"]])),
        }
    for pricing_id in set(data["pricing"]) & set(second["pricing"]):  # the second's formula gets its own id
        renamed = f"{pricing_id}_{second['id']}"[:40]
        second["pricing"][renamed] = second["pricing"].pop(pricing_id)
        for op in second["operations"]:
            if op.get("price") == pricing_id:
                op["price"] = renamed
        for entity in entities:  # the second's own entities, as merged
            for attr in entity["attributes"]:
                if (attr.get("derive") or {}).get("price") == pricing_id:
                    attr["derive"]["price"] = renamed
    ours = {o["name"] for o in data["operations"]}  # one tool per name: the first's (update_contact on the merged
    second["operations"] = [o for o in second["operations"] if o["name"] not in ours]  # principal) wins
    return {
        "legacy": False,
        "org": data["org"],
        "agent": data["agent"],
        "staff_roles": {**second["staff_roles"], **data["staff_roles"]},
        "principals": data["principals"],
        "ledger": ledger,
        "pricing": {**data["pricing"], **second["pricing"]},
        "operations": [*data["operations"], *second["operations"]],
        "policy_rules": [*data["policy_rules"], *second["policy_rules"]],
    }


def _survives(merged: dict[str, Any]) -> bool:
    try:
        Domain.model_validate(merged)
    except ValidationError:
        return False
    return True


@lru_cache(maxsize=4)
def load_catalog(folder: Path = DOMAINS_DIR) -> Catalog:
    """Load and check every sector file; errors name the file and the field."""
    sectors = []
    for path in sorted(folder.glob("*.json")):
        try:
            sectors.append(Sector.model_validate(json.loads(path.read_text(encoding="utf-8"))))
        except (ValidationError, json.JSONDecodeError) as e:
            raise CatalogError(f"{path.name}: {e}") from None
    return Catalog(sectors)
