"""Pieces of tool specs every operation kind builds from: parameter schemas, existence checks, row
selects with the names of related records, and the steps the design's rules add to a write tool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..naming import p_, words

if TYPE_CHECKING:
    from ..catalog import Attribute, Entity, Transition
    from ..modeling import Design

__all__ = [
    "DATETIME_PATTERN",
    "JSON_TYPES",
    "param",
    "id_param",
    "params",
    "value",
    "exists",
    "labels",
    "record_fragment",
    "record_source",
    "row_select",
    "rule_steps",
    "rule_summary",
    "effect_steps",
    "p_",
    "words",
    "principal_param",
    "view_select",
]

DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$"
JSON_TYPES = {
    "text": "string",
    "date": "string",
    "datetime": "string",
    "integer": "integer",
    "money": "integer",
    "real": "number",
    "boolean": "boolean",
}


def param(attr: Attribute, description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": JSON_TYPES[attr.type], "description": description or attr.description}
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


def id_param(entity: Entity) -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"The {words(entity.name)}'s id, e.g. {entity.id_prefix}-0001.",
        "pattern": f"^{entity.id_prefix}-[0-9]+$",
    }


def params(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def value(attr: Attribute, name: str) -> str:
    """SQL for a bound parameter written into an attribute (datetimes normalised by SQLite)."""
    return f"datetime(:{name})" if attr.type == "datetime" else f":{name}"


def exists(design: Design, entity: Entity, param: str | None = None) -> dict[str, Any]:
    param = param or f"{entity.name}_id"
    return {
        "kind": "require",
        "sql": f"SELECT 1 FROM {entity.plural} WHERE {entity.name}_id = :{param}",
        "error": f"No {words(entity.name)} has the id {{{param}}}.",
        "rule": f"{entity.name}_exists",
    }


def labels(design: Design, entity: Entity, alias: str = "t") -> list[str]:
    """Computed columns naming each related record, e.g. patient_full_name."""
    columns = []
    for relation in entity.relations:
        target = design.entity(relation.to)
        columns.append(
            f"(SELECT r.{target.label} FROM {target.plural} r WHERE r.{target.name}_id = {alias}.{relation.column}) "
            f"AS {relation.to}_{target.label}"
        )
    return columns


def record_fragment(design: Design, entity: Entity) -> dict[str, Any] | None:
    """The shared query every read of ``entity`` returns: its row with the names of its related records (a
    spec fragment, written once instead of in every tool); None when it relates to nothing."""
    if not entity.relations:
        return None
    return {
        "name": f"{entity.name}_record",
        "description": f"A {words(entity.name)} with the names of its related records.",
        "sql": f"SELECT {', '.join(['t.*', *labels(design, entity)])} FROM {entity.plural} t",
    }


def record_source(entity: Entity) -> str:
    """What reads of ``entity`` select from: its record fragment, or its table when it has no relations."""
    return f"{entity.name}_record" if entity.relations else entity.plural


def row_select(design: Design, entity: Entity, where: str) -> str:
    return f"SELECT * FROM {record_source(entity)} t WHERE {where}"


def _guarding(design: Design, entity: Entity, action: str) -> list[Any]:
    return [r for r in design.refs if r.rule.entity == entity.name and r.kind.action(r.rule) == action]


def rule_steps(design: Design, entity: Entity, action: str) -> list[dict[str, Any]]:
    """The ``require`` steps of every rule guarding ``action`` ('create' or a transition) on ``entity``."""
    return [step for ref in _guarding(design, entity, action) for step in ref.kind.require_steps(design, ref, entity)]


def rule_summary(design: Design, entity: Entity, action: str) -> str:
    """The rules guarding an action, for its tool's description."""
    texts = [ref.policy for ref in _guarding(design, entity, action)]
    return (" Rules: " + " ".join(texts)) if texts else ""


def effect_steps(design: Design, entity: Entity, transition: Transition | None) -> list[dict[str, Any]]:
    """What the rules of ``entity`` do besides its own row after a create (``transition`` None) or a transition."""
    return [
        step
        for ref in design.refs
        if ref.rule.entity == entity.name
        for step in ref.kind.effect_steps(design, ref, entity, transition)
    ]


def principal_param(design: Design) -> dict[str, Any]:
    """The acting principal's id, first parameter of every tool that acts for one (world designs)."""
    principal = design.principal
    return {
        **id_param(principal),
        "description": f"The id of the {words(principal.name)} you are helping (from find_{principal.name}).",
    }


def view_select(design: Design, entity: Entity, where: str) -> str:
    """A record with its related records' names and ``money_text`` of its money columns (world reads)."""
    money = [a.name for a in entity.attributes if a.type == "money"]
    if any(op.entity == entity.name and op.kind in ("book", "pay") for op in design.domain.operations):
        money.append("amount_paid_cents")
    texts = [f"money_text(t.{m}) AS {m[: -len('_cents')]}_text" for m in money]
    return f"SELECT {', '.join(['t.*', *texts])} FROM {record_source(entity)} t WHERE {where}"
