"""Stage 2, logic modeling: a catalog domain becomes an environment spec in the runtime's format.

Entities become tables; each gets query tools (get by id, search, list by relation, counts,
summaries) and state-change tools (create, update, one per lifecycle transition) whose business
rules are ``require`` steps compiled from the domain's rules. A seeded variant draws a subset of
the optional entities and rules and the rules' parameters, so one domain yields several distinct
environments. The result is plain data: the runtime validates it like any other spec.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlglot.dialects.sqlite import SQLite

from .catalog import (
    Attribute,
    Consumes,
    Domain,
    Eligibility,
    Entity,
    LimitPerOwner,
    Param,
    Rule,
    TimeWindow,
    Transition,
    UniqueActive,
)

__all__ = ["Design", "ToolRole", "design_domain", "build_spec", "MODELER_VERSION"]

MODELER_VERSION = "1"
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$"
_JSON = {
    "text": "string",
    "date": "string",
    "datetime": "string",
    "integer": "integer",
    "real": "number",
    "boolean": "boolean",
}


@dataclass(frozen=True)
class ToolRole:
    """What a generated tool does, for the later stages (tests, graph, tasks)."""

    kind: (
        str  # get, search, list_for, count_by_status, summarize, find_by_label, get_status, create, update, transition
    )
    entity: str
    relation: str | None = None  # list_for / summarize: the owner entity
    transition: str | None = None


@dataclass
class Design:
    """A domain variant: the entities and rules kept, rule parameters, clock and names."""

    domain: Domain
    env_id: str
    name: str
    seed: int
    variant: int
    clock: datetime
    entities: list[Entity]
    rules: list[Rule]
    params: dict[int, float] = field(default_factory=dict)  # index in rules -> value
    roles: dict[str, ToolRole] = field(default_factory=dict)
    codes: dict[tuple[str, str], str] = field(default_factory=dict)  # (entity, attribute) -> sequence prefix
    vocabulary: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (entity, attribute) -> seed values

    def entity(self, name: str) -> Entity:
        return next(e for e in self.entities if e.name == name)

    def table(self, entity: Entity | str) -> str:
        return (entity if isinstance(entity, Entity) else self.entity(entity)).plural

    def rules_for(self, entity: str, kind: type) -> list[tuple[int, Any]]:
        return [(i, r) for i, r in enumerate(self.rules) if isinstance(r, kind) and r.entity == entity]


def _draw(rng: random.Random, param: Param, variant: int) -> float:
    if variant == 0:
        return param.default
    steps = int(round((param.high - param.low) / param.step))
    return param.low + param.step * rng.randint(0, max(steps, 0))


def design_domain(domain: Domain, *, seed: int, variant: int = 0, env_id: str | None = None) -> Design:
    """Pick the variant: core entities always, others mostly; rules whose entities survive; parameters."""
    rng = random.Random(f"{domain.id}:{seed}:{variant}")
    kept = {e.name for e in domain.entities if e.core or variant == 0 or rng.random() < 0.8}
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
    rules = [r for r in domain.rules if _rule_applies(r, {e.name: e for e in entities})]
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
        param = rule.max if isinstance(rule, LimitPerOwner) else rule.amount if isinstance(rule, TimeWindow) else None
        if param is not None:
            design.params[index] = _draw(rng, param, variant)
    taken = {e.id_prefix for e in entities}
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


def _rule_applies(rule: Rule, entities: dict[str, Entity]) -> bool:
    entity = entities.get(rule.entity)
    if entity is None:
        return False
    related = {r.to for r in entity.relations}
    if isinstance(rule, LimitPerOwner):
        return rule.owner in related
    if isinstance(rule, UniqueActive):
        return rule.owner in related and rule.target in related
    if isinstance(rule, Consumes):
        return rule.resource in related
    if isinstance(rule, Eligibility):
        return rule.subject == rule.entity or rule.subject in related
    return True


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


def _param(attr: Attribute, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _JSON[attr.type], "description": description or attr.description}
    if attr.enum:
        schema["enum"] = sorted(set(attr.enum), key=attr.enum.index)
    if attr.type == "date":
        schema["format"] = "date"
    if attr.type == "datetime":
        schema["pattern"] = DATETIME_PATTERN
        schema["description"] += " Format: YYYY-MM-DD HH:MM."
    if attr.type == "text" and not attr.enum:
        schema["minLength"] = 1
        schema["maxLength"] = 200
    return schema


def _id_param(entity: Entity) -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"The {_words(entity.name)}'s id, e.g. {entity.id_prefix}-0001.",
        "pattern": f"^{entity.id_prefix}-[0-9]+$",
    }


_KEYWORDS = frozenset(k.lower() for k in SQLite.Tokenizer.KEYWORDS if k.isalpha())


def p_(name: str) -> str:
    """The parameter name for an attribute: the attribute's own name, unless SQL reserves it."""
    return f"{name}_value" if name in _KEYWORDS else name


def _words(name: str) -> str:
    return name.replace("_", " ")


def _params(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _value(attr: Attribute, name: str) -> str:
    """SQL for a bound parameter written into an attribute (datetimes normalised by SQLite)."""
    return f"datetime(:{name})" if attr.type == "datetime" else f":{name}"


def _exists(design: Design, entity: Entity, param: str | None = None) -> dict[str, Any]:
    param = param or f"{entity.name}_id"
    return {
        "kind": "require",
        "sql": f"SELECT 1 FROM {entity.plural} WHERE {entity.name}_id = :{param}",
        "error": f"No {_words(entity.name)} has the id {{{param}}}.",
        "rule": f"{entity.name}_exists",
    }


def _labels(design: Design, entity: Entity, alias: str = "t") -> list[str]:
    """Computed columns naming each related record, e.g. patient_full_name."""
    columns = []
    for relation in entity.relations:
        target = design.entity(relation.to)
        columns.append(
            f"(SELECT r.{target.label} FROM {target.plural} r WHERE r.{target.name}_id = {alias}.{relation.column}) "
            f"AS {relation.to}_{target.label}"
        )
    return columns


def _row_select(design: Design, entity: Entity, where: str) -> str:
    return f"SELECT {', '.join(['t.*', *_labels(design, entity)])} FROM {entity.plural} t WHERE {where}"


class _ToolWriter:
    def __init__(self, design: Design) -> None:
        self.design = design
        self.tools: list[dict[str, Any]] = []

    def add(self, role: ToolRole, tool: dict[str, Any]) -> None:
        self.design.roles[tool["name"]] = role
        self.tools.append(tool)

    # -- reads ---------------------------------------------------------------------------------

    def reads(self, entity: Entity) -> None:
        design, e, table = self.design, entity.name, entity.plural
        words = _words(e)
        self.add(
            ToolRole("get", e),
            {
                "name": f"get_{e}",
                "kind": "read",
                "description": f"One {words} by id, with the names of related records.",
                "parameters": _params({f"{e}_id": _id_param(entity)}, [f"{e}_id"]),
                "steps": [
                    _exists(design, entity),
                    {"kind": "return", "shape": "row", "sql": _row_select(design, entity, f"t.{e}_id = :{e}_id")},
                ],
            },
        )
        properties: dict[str, Any] = {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100,
                "description": f"Part of the {_words(entity.label)} (any case).",
            }
        }
        conditions = [f"(:query IS NULL OR t.{entity.label} LIKE :pattern ESCAPE '\\')"]
        for attr in entity.attributes:
            if attr.searchable and attr.enum and attr.name != entity.label:
                properties[p_(attr.name)] = _param(attr, f"Only {_words(entity.plural)} with this {_words(attr.name)}.")
                conditions.append(f"(:{p_(attr.name)} IS NULL OR t.{attr.name} = :{p_(attr.name)})")
        if entity.lifecycle:
            field_name = entity.lifecycle.field
            properties[p_(field_name)] = {
                "type": "string",
                "enum": entity.lifecycle.states,
                "description": f"Only {_words(table)} in this state.",
            }
            conditions.append(f"(:{p_(field_name)} IS NULL OR t.{field_name} = :{p_(field_name)})")
        for relation in entity.relations:
            target = design.entity(relation.to)
            properties[relation.column] = {
                **_id_param(target),
                "description": f"Only {_words(table)} of this {_words(target.name)}.",
            }
            conditions.append(f"(:{relation.column} IS NULL OR t.{relation.column} = :{relation.column})")
        self.add(
            ToolRole("search", e),
            {
                "name": f"search_{table}",
                "kind": "read",
                "description": (
                    f"Find {_words(table)} by part of their {_words(entity.label)} and by filters; all "
                    "filters are optional."
                ),
                "parameters": _params(properties, []),
                "steps": [
                    {
                        "kind": "let",
                        "name": "pattern",
                        "sql": (
                            "SELECT '%' || replace(replace(replace(:query, '\\', '\\\\'), '%', '\\%'), '_', "
                            "'\\_') || '%'"
                        ),
                    },
                    {
                        "kind": "return",
                        "shape": "rows",
                        "sql": f"SELECT {', '.join(['t.*', *_labels(design, entity)])} FROM {table} t WHERE "
                        f"{' AND '.join(conditions)} "
                        f"ORDER BY t.{entity.label}, t.{e}_id",
                    },
                ],
            },
        )
        if (
            entity.label
            and any(a.name == entity.label and a.type == "text" and not a.enum for a in entity.attributes)
            and entity.core
        ):
            self.add(
                ToolRole("find_by_label", e),
                {
                    "name": f"find_{e}_by_{entity.label}",
                    "kind": "read",
                    "description": (
                        f"{words.capitalize()}s whose {_words(entity.label)} is exactly the given one (any case)."
                    ),
                    "parameters": _params(
                        {
                            p_(entity.label): {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": 200,
                                "description": f"The exact {_words(entity.label)}.",
                            }
                        },
                        [p_(entity.label)],
                    ),
                    "steps": [
                        {
                            "kind": "return",
                            "shape": "rows",
                            "sql": (
                                f"SELECT * FROM {table} WHERE lower({entity.label}) = lower(:{p_(entity.label)}) "
                                f"ORDER BY {e}_id"
                            ),
                        }
                    ],
                },
            )
        for relation in entity.relations:
            target = design.entity(relation.to)
            properties = {relation.column: _id_param(target)}
            condition = f"t.{relation.column} = :{relation.column}"
            if entity.lifecycle:
                field_name = entity.lifecycle.field
                properties[p_(field_name)] = {
                    "type": "string",
                    "enum": entity.lifecycle.states,
                    "description": f"Only {_words(table)} in this state.",
                }
                condition += f" AND (:{p_(field_name)} IS NULL OR t.{field_name} = :{p_(field_name)})"
            self.add(
                ToolRole("list_for", e, relation=relation.to),
                {
                    "name": f"list_{table}_for_{relation.to}",
                    "kind": "read",
                    "description": f"The {_words(table)} of one {_words(target.name)}.",
                    "parameters": _params(properties, [relation.column]),
                    "steps": [
                        _exists(design, target, relation.column),
                        {
                            "kind": "return",
                            "shape": "rows",
                            "sql": (
                                f"SELECT {', '.join(['t.*', *_labels(design, entity)])} FROM {table} t WHERE "
                                f"{condition} ORDER BY t.{e}_id"
                            ),
                        },
                    ],
                },
            )
        if entity.lifecycle:
            field_name = entity.lifecycle.field
            self.add(
                ToolRole("count_by_status", e),
                {
                    "name": f"count_{table}_by_{field_name}",
                    "kind": "read",
                    "description": f"How many {_words(table)} there are in each {_words(field_name)}.",
                    "steps": [
                        {
                            "kind": "return",
                            "shape": "rows",
                            "sql": (
                                f"SELECT {field_name}, COUNT(*) AS count FROM {table} GROUP BY {field_name} "
                                f"ORDER BY {field_name}"
                            ),
                        }
                    ],
                },
            )
            self.add(
                ToolRole("get_status", e),
                {
                    "name": f"get_{e}_{field_name}",
                    "kind": "read",
                    "description": f"Just the {_words(field_name)} of one {words}.",
                    "parameters": _params({f"{e}_id": _id_param(entity)}, [f"{e}_id"]),
                    "steps": [
                        _exists(design, entity),
                        {
                            "kind": "return",
                            "shape": "row",
                            "sql": f"SELECT {e}_id, {field_name} FROM {table} WHERE {e}_id = :{e}_id",
                        },
                    ],
                },
            )
        money = [
            a
            for a in entity.attributes
            if a.type in ("real", "integer") and a.name in ("amount", "price", "total", "cost", "fee")
        ]
        for relation in entity.relations:
            if money and entity.lifecycle:
                target = design.entity(relation.to)
                field_name = entity.lifecycle.field
                sums = ", ".join(f"ROUND(SUM({a.name}), 2) AS total_{a.name}" for a in money)
                self.add(
                    ToolRole("summarize", e, relation=relation.to),
                    {
                        "name": f"summarize_{table}_for_{relation.to}",
                        "kind": "read",
                        "description": (
                            f"Totals of one {_words(target.name)}'s {_words(table)}, by {_words(field_name)}."
                        ),
                        "parameters": _params({relation.column: _id_param(target)}, [relation.column]),
                        "steps": [
                            _exists(design, target, relation.column),
                            {
                                "kind": "return",
                                "shape": "rows",
                                "sql": f"SELECT {field_name}, COUNT(*) AS count, {sums} FROM {table} "
                                f"WHERE {relation.column} = :{relation.column} GROUP BY {field_name} ORDER BY "
                                f"{field_name}",
                            },
                        ],
                    },
                )

    # -- writes --------------------------------------------------------------------------------

    def create(self, entity: Entity) -> None:
        design, e, table = self.design, entity.name, entity.plural
        stamps = {t.stamp for t in entity.lifecycle.transitions if t.stamp} if entity.lifecycle else set()
        codes = {a.name: design.codes[(e, a.name)] for a in entity.attributes if (e, a.name) in design.codes}
        attrs = [a for a in entity.attributes if a.name not in stamps and a.generator != "none" and a.name not in codes]
        properties: dict[str, Any] = {}
        required: list[str] = []
        steps: list[dict[str, Any]] = []
        for relation in entity.relations:
            target = design.entity(relation.to)
            properties[relation.column] = {**_id_param(target), "description": relation.description}
            if relation.required:
                required.append(relation.column)
                steps.append(_exists(design, target, relation.column))
            else:
                steps.append(
                    {
                        **_exists(design, target, relation.column),
                        "sql": f"SELECT 1 WHERE :{relation.column} IS NULL OR EXISTS (SELECT 1 FROM {target.plural} "
                        f"WHERE {target.name}_id = :{relation.column})",
                    }
                )
        for attr in attrs:
            properties[p_(attr.name)] = _param(attr)
            if attr.required:
                required.append(p_(attr.name))
            if attr.unique:
                steps.append(
                    {
                        "kind": "require",
                        "sql": f"SELECT 1 FROM {table} WHERE {attr.name} = :{p_(attr.name)}",
                        "expect": "none",
                        "error": f"Another {_words(e)} already has the {_words(attr.name)} {{{p_(attr.name)}}}.",
                        "rule": f"unique_{attr.name}",
                    }
                )
        steps += self._rule_steps(entity, "create")
        steps.append({"kind": "let", "name": "new_id", "sql": f"SELECT new_id('{entity.id_prefix}')"})
        columns = [f"{e}_id", *[r.column for r in entity.relations], *[a.name for a in attrs], *codes]
        values = [
            ":new_id",
            *[f":{r.column}" for r in entity.relations],
            *[_value(a, p_(a.name)) for a in attrs],
            *[f"new_id('{prefix}')" for prefix in codes.values()],
        ]
        if entity.lifecycle:
            columns.append(entity.lifecycle.field)
            values.append(f"'{entity.lifecycle.initial}'")
        steps.append(
            {"kind": "exec", "sql": f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(values)})"}
        )
        steps += self._consume_steps(entity, ":new_id", sign="-")
        steps.append({"kind": "return", "shape": "row", "sql": _row_select(design, entity, f"t.{e}_id = :new_id")})
        self.add(
            ToolRole("create", e),
            {
                "name": f"create_{e}",
                "kind": "write",
                "description": f"Create a {_words(e)}."
                + (f" Its {', '.join(_words(c) for c in codes)} is assigned automatically." if codes else "")
                + self._rule_summary(entity, "create"),
                "parameters": _params(properties, required),
                "steps": steps,
            },
        )

    def update(self, entity: Entity) -> None:
        design, e, table = self.design, entity.name, entity.plural
        mutable = [a for a in entity.attributes if a.mutable]
        if not mutable:
            return
        properties = {f"{e}_id": _id_param(entity)} | {p_(a.name): _param(a, f"New {_words(a.name)}.") for a in mutable}
        any_given = " OR ".join(f":{p_(a.name)} IS NOT NULL" for a in mutable)
        steps = [
            _exists(design, entity),
            {
                "kind": "require",
                "sql": f"SELECT 1 WHERE {any_given}",
                "error": "Give at least one of: " + ", ".join(p_(a.name) for a in mutable) + ".",
                "rule": "update_needs_a_value",
            },
        ]
        for attr in mutable:
            if attr.unique:
                steps.append(
                    {
                        "kind": "require",
                        "expect": "none",
                        "sql": f"SELECT 1 FROM {table} WHERE {attr.name} = :{p_(attr.name)} AND {e}_id <> :{e}_id",
                        "error": f"Another {_words(e)} already has the {_words(attr.name)} {{{p_(attr.name)}}}.",
                        "rule": f"unique_{attr.name}",
                    }
                )
        sets = ", ".join(f"{a.name} = COALESCE({_value(a, p_(a.name))}, {a.name})" for a in mutable)
        steps += [
            {"kind": "exec", "sql": f"UPDATE {table} SET {sets} WHERE {e}_id = :{e}_id"},
            {"kind": "return", "shape": "row", "sql": _row_select(design, entity, f"t.{e}_id = :{e}_id")},
        ]
        self.add(
            ToolRole("update", e),
            {
                "name": f"update_{e}",
                "kind": "write",
                "description": f"Change a {_words(e)}'s "
                + ", ".join(_words(a.name) for a in mutable)
                + "; omitted fields stay as they are.",
                "parameters": _params(properties, [f"{e}_id"]),
                "steps": steps,
            },
        )

    def transition(self, entity: Entity, transition: Transition) -> None:
        design, e, table = self.design, entity.name, entity.plural
        assert entity.lifecycle is not None
        field_name = entity.lifecycle.field
        allowed = ", ".join(f"'{s}'" for s in transition.from_states)
        steps = [
            _exists(design, entity),
            {
                "kind": "require",
                "sql": (
                    f"SELECT {field_name} IN ({allowed}) AS ok, {field_name} AS current FROM {table} WHERE "
                    f"{e}_id = :{e}_id"
                ),
                "expect": "true",
                "rule": f"{transition.name}_from_state",
                "error": f"{_words(e).capitalize()} {{{e}_id}} is {{current}}; only "
                f"{' or '.join(transition.from_states)} "
                f"{_words(table)} can be {_past(transition.name)}.",
            },
        ]
        steps += self._rule_steps(entity, transition.name)
        sets = [f"{field_name} = '{transition.to}'"] + ([f"{transition.stamp} = now()"] if transition.stamp else [])
        steps.append({"kind": "exec", "sql": f"UPDATE {table} SET {', '.join(sets)} WHERE {e}_id = :{e}_id"})
        if transition.compensates:
            steps += self._consume_steps(entity, f":{e}_id", sign="+")
        steps.append({"kind": "return", "shape": "row", "sql": _row_select(design, entity, f"t.{e}_id = :{e}_id")})
        self.add(
            ToolRole("transition", e, transition=transition.name),
            {
                "name": f"{transition.name}_{e}",
                "kind": "write",
                "description": (
                    f"{transition.description} Moves a {' or '.join(transition.from_states)} {_words(e)} "
                    f"to {transition.to}."
                )
                + self._rule_summary(entity, transition.name),
                "parameters": _params({f"{e}_id": _id_param(entity)}, [f"{e}_id"]),
                "steps": steps,
            },
        )

    # -- rules ---------------------------------------------------------------------------------

    def _rule_summary(self, entity: Entity, action: str) -> str:
        texts = [
            policy_line(self.design, i, r)
            for i, r in enumerate(self.design.rules)
            if r.entity == entity.name and _rule_action(r) == action
        ]
        return (" Rules: " + " ".join(texts)) if texts else ""

    def _rule_steps(self, entity: Entity, action: str) -> list[dict[str, Any]]:
        design, e, table = self.design, entity.name, entity.plural
        steps: list[dict[str, Any]] = []
        creating = action == "create"
        for index, rule in enumerate(design.rules):
            if rule.entity != e or _rule_action(rule) != action:
                continue
            rule_name = f"{rule.kind}_{index}"
            if isinstance(rule, Eligibility):
                subject = design.entity(rule.subject)
                expected = (1 if rule.equals else 0) if isinstance(rule.equals, bool) else f"'{rule.equals}'"
                if rule.subject == e:
                    source = (
                        f"SELECT {rule.attribute} = {expected} AS ok, {rule.attribute} AS current FROM {table} "
                        f"WHERE {e}_id = :{e}_id"
                    )
                else:
                    column = next(r.column for r in entity.relations if r.to == rule.subject)
                    key = f":{column}" if creating else f"(SELECT {column} FROM {table} WHERE {e}_id = :{e}_id)"
                    source = (
                        f"SELECT {rule.attribute} = {expected} AS ok, {rule.attribute} AS current FROM "
                        f"{subject.plural} "
                        f"WHERE {subject.name}_id = {key}"
                    )
                steps.append(
                    {
                        "kind": "require",
                        "sql": source,
                        "expect": "true",
                        "rule": rule_name,
                        "error": (
                            f"{rule.description} (The {_words(rule.subject)}'s {_words(rule.attribute)} is "
                            "{current}.)"
                        ),
                    }
                )
            elif isinstance(rule, LimitPerOwner):
                column = next(r.column for r in entity.relations if r.to == rule.owner)
                limit = int(design.params[index])
                states = ", ".join(f"'{s}'" for s in rule.states)
                steps.append(
                    {
                        "kind": "require",
                        "expect": "true",
                        "rule": rule_name,
                        "sql": f"SELECT COUNT(*) < {limit} AS ok, COUNT(*) AS current FROM {table} "
                        f"WHERE {column} = :{column} AND {entity.lifecycle.field if entity.lifecycle else 'status'} "
                        f"IN ({states})",
                        "error": (
                            f"{policy_line(design, index, rule)} This {_words(rule.owner)} already has {{current}}."
                        ),
                    }
                )
            elif isinstance(rule, UniqueActive):
                owner = next(r.column for r in entity.relations if r.to == rule.owner)
                target = next(r.column for r in entity.relations if r.to == rule.target)
                states = ", ".join(f"'{s}'" for s in rule.states)
                steps.append(
                    {
                        "kind": "require",
                        "expect": "none",
                        "rule": rule_name,
                        "sql": f"SELECT {e}_id AS existing FROM {table} WHERE {owner} = :{owner} AND {target} = "
                        f":{target} "
                        f"AND {entity.lifecycle.field if entity.lifecycle else 'status'} IN ({states})",
                        "error": f"{rule.description} ({_words(e).capitalize()} {{existing}} already exists.)",
                    }
                )
            elif isinstance(rule, TimeWindow):
                amount = int(design.params[index])
                value = (
                    f"datetime(:{p_(rule.attribute)})"
                    if creating
                    else f"(SELECT {rule.attribute} FROM {table} WHERE {e}_id = :{e}_id)"
                )
                if rule.mode == "before":
                    condition = f"datetime({value}) >= datetime(now(), '+{amount} hours')"
                else:
                    condition = f"date(now()) <= date({value}, '+{amount} days')"
                steps.append(
                    {
                        "kind": "require",
                        "expect": "true",
                        "rule": rule_name,
                        "sql": f"SELECT {condition} AS ok, {value} AS at_time",
                        "error": f"{policy_line(design, index, rule)} (It is set for {{at_time}}.)",
                    }
                )
            elif isinstance(rule, Consumes) and creating:
                resource = design.entity(rule.resource)
                column = next(r.column for r in entity.relations if r.to == rule.resource)
                amount = f":{p_(rule.amount)}" if rule.amount else "1"
                steps.append(
                    {
                        "kind": "require",
                        "expect": "true",
                        "rule": rule_name,
                        "sql": f"SELECT {rule.counter} >= {amount} AS ok, {rule.counter} AS available FROM "
                        f"{resource.plural} "
                        f"WHERE {resource.name}_id = :{column}",
                        "error": f"{rule.description} (Only {{available}} left.)",
                    }
                )
        return steps

    def _consume_steps(self, entity: Entity, key: str, sign: str) -> list[dict[str, Any]]:
        steps = []
        for _, rule in self.design.rules_for(entity.name, Consumes):
            resource = self.design.entity(rule.resource)
            column = next(r.column for r in entity.relations if r.to == rule.resource)
            amount = (
                f"(SELECT {rule.amount} FROM {entity.plural} WHERE {entity.name}_id = {key})" if rule.amount else "1"
            )
            steps.append(
                {
                    "kind": "exec",
                    "sql": f"UPDATE {resource.plural} SET {rule.counter} = {rule.counter} {sign} {amount} "
                    f"WHERE {resource.name}_id = (SELECT {column} FROM {entity.plural} WHERE {entity.name}_id = {key})",
                }
            )
        return steps


def _rule_action(rule: Rule) -> str:
    if isinstance(rule, TimeWindow):
        return rule.transition
    if isinstance(rule, Eligibility):
        return rule.action
    return "create"


_IRREGULAR = {
    "pay": "paid",
    "hold": "held",
    "set": "set",
    "sell": "sold",
    "withdraw": "withdrawn",
    "send": "sent",
    "buy": "bought",
    "lend": "lent",
    "put": "put",
    "take": "taken",
    "give": "given",
    "write": "written",
    "begin": "begun",
    "run": "run",
    "pick": "picked",
    "shut": "shut",
    "cut": "cut",
    "rebook": "rebooked",
    "submit": "submitted",
    "admit": "admitted",
    "permit": "permitted",
    "refer": "referred",
    "transfer": "transferred",
    "cancel": "cancelled",
    "commit": "committed",
    "omit": "omitted",
    "prefer": "preferred",
}


def _past(verb: str) -> str:
    words = verb.split("_")
    head = words[0]
    if head in _IRREGULAR:
        head = _IRREGULAR[head]
    elif head.endswith("e"):
        head += "d"
    elif head.endswith("y") and head[-2:-1] not in "aeiou":
        head = head[:-1] + "ied"
    elif len(head) <= 4 and head[-1] in "pt" and head[-2] in "aeiou" and head[-3:-2] not in "aeiou":
        head += head[-1] + "ed"
    else:
        head += "ed"
    return " ".join([head, *words[1:]])


def policy_line(design: Design, index: int, rule: Rule) -> str:
    value = design.params.get(index)
    text = rule.description
    if value is not None:
        text = text.replace("{max}", f"{value:g}").replace("{amount}", f"{value:g}")
    return text


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
    lines += [f"- {policy_line(design, i, r)}" for i, r in enumerate(design.rules)]
    for entity in design.entities:
        if entity.lifecycle:
            flows = "; ".join(
                f"{t.name.replace('_', ' ')}: {' or '.join(t.from_states)} → {t.to}"
                for t in entity.lifecycle.transitions
            )
            lines.append(f"- {_words(entity.plural).capitalize()} move through their states as follows: {flows}.")
    lines += [
        "",
        "## Conduct",
        "- Explain a refusal with the rule that applies, and offer what is allowed instead.",
        "- Do not promise exceptions the rules do not allow.",
    ]
    return "\n".join(lines) + "\n"


def build_spec(design: Design) -> dict[str, Any]:
    """The env.json content for a design."""
    writer = _ToolWriter(design)
    design.roles.clear()
    for entity in design.entities:
        writer.reads(entity)
    for entity in design.entities:
        if entity.creatable:
            writer.create(entity)
        writer.update(entity)
        if entity.lifecycle:
            for transition in entity.lifecycle.transitions:
                writer.transition(entity, transition)
    tables = []
    for entity in design.entities:
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
        columns += [_column(a) for a in entity.attributes]
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
        checks: list[dict[str, Any]] = []
        tables.append({"name": entity.plural, "description": entity.description, "columns": columns, "checks": checks})
    for index, rule in enumerate(design.rules):
        if isinstance(rule, Consumes):
            resource = design.entity(rule.resource)
            table = next(t for t in tables if t["name"] == resource.plural)
            table["checks"].append(
                {
                    "name": f"{resource.plural}_{rule.counter}_not_negative_{index}",
                    "expression": f"{rule.counter} >= 0",
                    "message": rule.description,
                }
            )
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
        "tools": writer.tools,
        "limits": {"max_rows": 50},
    }
