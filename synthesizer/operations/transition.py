"""``<transition>_<e>``: one lifecycle step (cancel, pay, check in ...), from allowed states only,
with the rules guarding it and the effects of the rules it compensates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..naming import past
from .base import OperationKind, Tool, ToolRole, register
from .parts import effect_steps, exists, id_param, params, row_select, rule_steps, rule_summary, words

if TYPE_CHECKING:
    from ..catalog import Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["TransitionOperation"]


@register
class TransitionOperation(OperationKind):
    name = "transition"
    phase = "write"

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if not entity.lifecycle:
            return []
        return [self.tool(design, entity, transition) for transition in entity.lifecycle.transitions]

    def tool(self, design: Design, entity: Entity, transition: Transition) -> Tool:
        e, table = entity.name, entity.plural
        assert entity.lifecycle is not None
        field_name = entity.lifecycle.field
        allowed = ", ".join(f"'{s}'" for s in transition.from_states)
        steps: list[dict[str, Any]] = [
            exists(design, entity),
            {
                "kind": "require",
                "sql": (
                    f"SELECT {field_name} IN ({allowed}) AS ok, {field_name} AS current FROM {table} WHERE "
                    f"{e}_id = :{e}_id"
                ),
                "expect": "true",
                "rule": f"{transition.name}_from_state",
                "error": f"{words(e).capitalize()} {{{e}_id}} is {{current}}; only "
                f"{' or '.join(transition.from_states)} "
                f"{words(table)} can be {past(transition.name)}.",
            },
        ]
        steps += rule_steps(design, entity, transition.name)
        sets = [f"{field_name} = '{transition.to}'"] + ([f"{transition.stamp} = now()"] if transition.stamp else [])
        steps.append({"kind": "exec", "sql": f"UPDATE {table} SET {', '.join(sets)} WHERE {e}_id = :{e}_id"})
        steps += effect_steps(design, entity, transition)
        steps.append({"kind": "return", "shape": "row", "sql": row_select(design, entity, f"t.{e}_id = :{e}_id")})
        tool = {
            "name": f"{transition.name}_{e}",
            "kind": "write",
            "description": (
                f"{transition.description} Moves a {' or '.join(transition.from_states)} {words(e)} to {transition.to}."
            )
            + rule_summary(design, entity, transition.name),
            "parameters": params({f"{e}_id": id_param(entity)}, [f"{e}_id"]),
            "steps": steps,
        }
        return ToolRole("transition", e, transition=transition.name), tool

    def _transition(self, design: Design, role: ToolRole) -> tuple[Entity, Transition]:
        entity = design.entity(role.entity)
        assert entity.lifecycle is not None
        return entity, next(t for t in entity.lifecycle.transitions if t.name == role.transition)

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        entity, transition = self._transition(design, role)
        tables = {entity.plural}
        for ref in design.refs:
            if ref.rule.entity == entity.name:
                tables |= ref.kind.writes(design, ref, entity, transition)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        entity, transition = self._transition(tester.design, role)
        assert entity.lifecycle is not None
        key, field_name = f"{role.entity}_id", entity.lifecycle.field
        ready = tester.pick(role.entity, lambda r: r[field_name] in transition.from_states, count=40)
        tester.positive(tool, [{key: r[key]} for r in ready])
        wrong = tester.pick(role.entity, lambda r: r[field_name] not in transition.from_states, count=1)
        if wrong:
            tester.negative(tool, "wrong_state", {key: wrong[0][key]}, f"{transition.name}_from_state")
        tester.negative(tool, "unknown_id", {key: tester.unknown(role.entity)}, f"{role.entity}_exists")
        for ref in tester.design.refs:
            if ref.rule.entity == entity.name and ref.kind.action(ref.rule) == transition.name:
                tester.waive(ref, ref.kind.transition_probes(tester, ref, tool, entity, ready))
