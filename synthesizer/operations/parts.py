"""Pieces of tool specs every operation kind builds from: parameter schemas, existence checks, row
selects with the names of related records, and the steps the design's rules add to a write tool."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..ledger import exists_step, owned_steps
from ..naming import p_, past, words

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
    "acting_params",
    "acting_steps",
    "state_step",
    "phase_steps",
    "Acting",
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


def acting_params(design: Design, entity: Entity) -> tuple[dict[str, Any], list[str]]:
    """The parameters naming who acts and on what (world designs): the acting principal and the owned record;
    the principal alone when the record is the principal; the record alone when it is a shared resource."""
    p_id, key = f"{design.principal.name}_id", f"{entity.name}_id"
    if entity.name == design.principal.name:
        return {p_id: principal_param(design)}, [p_id]
    if design.owned(entity):
        return {p_id: principal_param(design), key: id_param(entity)}, [p_id, key]
    return {key: id_param(entity)}, [key]


def acting_steps(design: Design, entity: Entity) -> list[dict[str, Any]]:
    """EXISTS the acting principal, then OWNED: the record belongs to them along its owner chain
    (``authority.owned``); a shared resource only has to exist."""
    principal = design.principal
    p_id = f"{principal.name}_id"
    found = exists_step(principal, p_id, f"Find them with find_{principal.name}.")
    if entity.name == principal.name:
        return [found]
    if design.owned(entity):
        return [found, *owned_steps(design, entity)]
    return [exists_step(entity)]


def state_step(entity: Entity, from_states: list[str], rule: str, done: str | None = None) -> dict[str, Any]:
    """STATE: the record is in one of ``from_states``; ``done`` says what happens to it ('checked in'), else the
    message names the rule's tool."""
    assert entity.lifecycle is not None
    e, field_name = entity.name, entity.lifecycle.field
    allowed = ", ".join(f"'{s}'" for s in from_states)
    states = f"{' or '.join(from_states)} {words(entity.plural)}"
    tail = f"only {states} can be {done}." if done else f"{rule.split('.', 1)[-1]} works only on {states}."
    return {
        "kind": "require",
        "sql": f"SELECT {field_name} IN ({allowed}) AS ok, {field_name} AS current FROM {entity.plural} "
        f"WHERE {e}_id = :{e}_id",
        "expect": "true",
        "error": f"{words(e).capitalize()} {{{e}_id}} is {{current}}; {tail}",
        "rule": rule,
    }


def phase_steps(entity: Entity, from_states: list[str], verb: str) -> list[dict[str, Any]]:
    """PHASE: a record whose every source state lies before its moment is acted on only while it does
    (``phase.<first source state>``, the rule id cancel uses too)."""
    life = entity.lifecycle
    if life is None or life.at is None or not life.phases:
        return []
    if not all(life.phases.get(s) == "before" for s in from_states):
        return []
    e = entity.name
    return [
        {
            "kind": "require",
            "sql": f"SELECT {life.at} > now() AS ok, {life.at} AS at_time FROM {entity.plural} WHERE {e}_id = :{e}_id",
            "expect": "true",
            "error": f"{words(e).capitalize()} {{{e}_id}} was at {{at_time}}, which has passed; it can no longer be "
            f"{past(verb)}.",
            "rule": f"phase.{from_states[0]}",
        }
    ]


class Acting:
    """A tester as the rule kinds see it when they probe a tool acting for a principal: every call they make
    with a record's id is completed with the record's owner (and any other argument the tool needs), so a
    rule kind written for ``<e>_id``-only tools probes these too. Everything else is the tester's."""

    def __init__(self, tester: Any, complete: Any) -> None:
        self._tester = tester
        self._complete = complete

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tester, name)

    def negative(
        self, tool: str, kind: str, arguments: Any, expect: Any = None, state: Any = None, rule: str | None = None
    ) -> None:
        self._tester.negative(tool, kind, self._complete(arguments), expect, state, rule)
