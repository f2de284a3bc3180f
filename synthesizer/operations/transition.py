"""``<transition>_<e>``: one lifecycle step (cancel, pay, check in ...), from allowed states only,
with the rules guarding it and the effects of the rules it compensates.

World designs (design §4.10) make a tool of each transition a principal may ask for (``by``, declared or
from its verb), acting for them on their own record: ownership, state, the rules naming it, the phase of
the record's moment, its stamp, and the capacity a compensating step gives back. A transition an intent
operation already performs (a ``cancel`` op) is not made twice; one left to staff or the system becomes a
tool only when the domain declares it as an operation (``{"kind": "transition", "name", "entity",
"transition", "expose": "forbidden"}``), whose name, ``by`` and ``expose`` then win.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..naming import past
from ..oracle import row
from ..rules.base import Identifier
from .base import OperationKind, OperationModel, Tool, ToolRole, default_by, register
from .parts import (
    Acting,
    acting_params,
    acting_steps,
    effect_steps,
    exists,
    id_param,
    params,
    phase_steps,
    row_select,
    rule_steps,
    rule_summary,
    state_step,
    view_select,
    words,
)

if TYPE_CHECKING:
    from ..catalog import Domain, Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["TransitionOperation", "TransitionModel", "world_transitions"]


class TransitionModel(OperationModel):
    """A lifecycle transition declared as an operation: its tool name, and who may ask for it."""

    kind: Literal["transition"]
    transition: Identifier = Field(description="The lifecycle transition of the entity it performs.")


def _agent_role(domain: Any) -> str:
    return domain.agent.role if domain.agent else "agent"


def world_transitions(design: Design, entity: Entity) -> list[tuple[str, Transition, str, Any]]:
    """The transitions of ``entity`` that are tools in a world design: (tool name, transition, by, declared op or
    None). A principal's transitions by default; others when declared as an operation that is not hidden; none
    that another operation (a ``cancel``) performs."""
    if entity.lifecycle is None:
        return []
    ops = [op for op in design.domain.operations if op.entity == entity.name and getattr(op, "transition", None)]
    performed = {op.transition for op in ops if op.kind != "transition"}
    declared = {op.transition: op for op in ops if op.kind == "transition"}
    role = _agent_role(design.domain)
    found = []
    for transition in entity.lifecycle.transitions:
        by = transition.by or default_by(transition.name, role)
        op = declared.get(transition.name)
        if op is not None:
            if op.expose != "hidden":
                found.append((op.name, transition, op.by_or_default(role), op))
        elif (
            transition.name not in performed
            and (transition.expose or ("tool" if by == "principal" else "hidden")) != "hidden"
        ):
            found.append((f"{transition.name}_{entity.name}", transition, by, None))
    return found


@register
class TransitionOperation(OperationKind):
    name = "transition"
    phase = "write"
    styles = frozenset({"legacy", "world"})
    model = TransitionModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        entity = domain.entity(op.entity)
        names = {t.name for t in entity.lifecycle.transitions} if entity.lifecycle else set()
        if op.transition not in names:
            return [f"{op.transition!r} is not a transition of {op.entity!r}"]
        assert entity.lifecycle is not None
        problems = []
        others = [
            o.name
            for o in domain.operations
            if o is not op and o.entity == op.entity and getattr(o, "transition", None) == op.transition
        ]
        if others:
            problems.append(f"{op.transition!r} is performed by {others[0]} already")
        transition = next(t for t in entity.lifecycle.transitions if t.name == op.transition)
        role = _agent_role(domain)
        by = transition.by or default_by(transition.name, role)
        if op.by is None and op.by_or_default(role) != by:  # the op's name alone would say someone else
            problems.append(f"by: say who does it ({by!r}, as the transition says)")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        if design.world:
            return [self.world_tool(design, entity, *found) for found in world_transitions(design, entity)]
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

    def world_tool(self, design: Design, entity: Entity, name: str, transition: Transition, by: str, op: Any) -> Tool:
        e, table = entity.name, entity.plural
        assert entity.lifecycle is not None
        properties, required = acting_params(design, entity)
        steps: list[dict[str, Any]] = [
            *acting_steps(design, entity),
            state_step(entity, transition.from_states, f"state.{name}", past(transition.name)),
            *phase_steps(entity, transition.from_states, transition.name),
            *rule_steps(design, entity, transition.name),
        ]
        sets = [f"{entity.lifecycle.field} = '{transition.to}'"]
        if transition.stamp:
            sets.append(f"{transition.stamp} = now()")
        steps.append(
            {
                "kind": "exec",
                "sql": f"UPDATE {table} SET {', '.join(sets)} WHERE {e}_id = :{e}_id",
                "affects": "one",
                "error": f"{words(e).capitalize()} {{{e}_id}} could not be {past(transition.name)}.",
            }
        )
        released = _released(design, entity, transition)
        if released:
            resource, counter, availability = released
            column = next(r.column for r in entity.relations if r.to == resource.name)
            steps.append(
                {
                    "kind": "exec",
                    "sql": f"UPDATE {resource.plural} SET {counter.name} = {counter.name} + (SELECT "
                    f"{availability.amount} FROM {table} WHERE {e}_id = :{e}_id) WHERE {resource.name}_id = "
                    f"(SELECT {column} FROM {table} WHERE {e}_id = :{e}_id)",
                }
            )
        steps += effect_steps(design, entity, transition)
        steps.append({"kind": "return", "shape": "row", "sql": view_select(design, entity, f"t.{e}_id = :{e}_id")})
        whose = (
            f" of the {words(design.principal.name)} you are helping"
            if design.owned(entity) or e == design.principal.name
            else ""
        )
        tool = {
            "name": name,
            "kind": "write",
            "description": f"{transition.description} Moves {_a(transition.from_states[0])} "
            f"{' or '.join(words(s) for s in transition.from_states)} {words(e)}{whose} "
            f"to {transition.to}."
            + (f" Gives back its {words(released[1].name)}." if released else "")
            + rule_summary(design, entity, transition.name),
            "parameters": params(properties, required),
            "steps": steps,
        }
        return ToolRole("transition", e, transition=transition.name, op_id=name, by=by), tool

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
        if role.op_id is not None:
            released = _released(design, entity, transition)
            if released:
                tables.add(released[0].plural)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        if role.op_id is not None:
            self.world_probe(tester, tool, role)
            return
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

    def world_probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        """The step on an owned record in a from-state, checked on the rows it leaves (state, stamp, capacity
        given back); then refusals: another principal's record, an unknown one, a wrong state, a moment that
        has passed, and each rule guarding the transition."""
        design = tester.design
        entity, transition = self._transition(design, role)
        assert entity.lifecycle is not None
        life = entity.lifecycle
        e, key, p_id = entity.name, f"{entity.name}_id", f"{design.principal.name}_id"
        properties = tester.env.tools[tool].input_schema["properties"]
        acting = p_id in properties
        is_principal = e == design.principal.name
        owners = tester.owners(entity) if acting and not is_principal else {r[key]: r[key] for r in tester.rows(e)}

        def who(record: dict[str, Any]) -> dict[str, Any]:
            if is_principal:
                return {p_id: record[key]}
            return {p_id: owners[record[key]], key: record[key]} if acting else {key: record[key]}

        phase = phase_steps(entity, transition.from_states, transition.name)
        ready = tester.pick(
            e,
            lambda r: r[life.field] in transition.from_states and (not phase or str(r[life.at]) > tester.now),
            count=40,
        )
        if not ready:
            tester.untested(tool, f"no seeded {e} is {' or '.join(transition.from_states)} (with its moment ahead)")
            return
        released = _released(design, entity, transition)

        def check(state: Any, result: Any, arguments: dict[str, Any]) -> list[str]:
            record_id = arguments.get(key, arguments.get(p_id))
            before = next(r for r in tester.rows(e) if r[key] == record_id)
            with state.mode("internal"):
                after = row(state.conn, entity.plural, key, record_id)
                held = None
                if released:
                    resource, counter, availability = released
                    column = next(r.column for r in entity.relations if r.to == resource.name)
                    held = row(state.conn, resource.plural, f"{resource.name}_id", before[column])
            assert after is not None
            problems = []
            if after[life.field] != transition.to:
                problems.append(f"{life.field} is {after[life.field]}, not {transition.to}")
            if transition.stamp and str(after[transition.stamp])[:19] != tester.now:
                problems.append(f"{transition.stamp} is {after[transition.stamp]}, not the clock {tester.now}")
            if released and held is not None:
                resource, counter, availability = released
                old = next(
                    r for r in tester.rows(resource.name) if r[f"{resource.name}_id"] == held[f"{resource.name}_id"]
                )
                if held[counter.name] != old[counter.name] + before[availability.amount]:
                    problems.append(
                        f"{counter.name} {old[counter.name]} -> {held[counter.name]}, gave back "
                        f"{before[availability.amount]}"
                    )
            return problems

        base = tester.first_oracle(tool, [who(r) for r in ready], check, want=2)
        if base is None:
            return
        record = next(r for r in ready if who(r) == base)
        if acting and not is_principal:
            stranger = next((r[p_id] for r in tester.rows(design.principal.name) if r[p_id] != base[p_id]), None)
            if stranger:
                tester.negative(tool, "rule", {**base, p_id: stranger}, "authority.owned", rule="authority.owned")
        unknown = p_id if is_principal else key
        tester.negative(tool, "unknown_id", {**base, unknown: tester.unknown(e)}, f"exists.{e}")
        wrong = tester.pick(e, lambda r: r[life.field] not in transition.from_states, count=1)
        if wrong:
            tester.negative(tool, "wrong_state", who(wrong[0]), f"state.{role.op_id}")
        if phase and life.at:
            state = tester.env.new_state()
            with state.mode("internal"):
                state.conn.execute(
                    f"UPDATE {entity.plural} SET {life.at} = ? WHERE {key} = ?",
                    (_moment(entity, life.at, tester.at_offset(-3600)), record[key]),
                )
            rule = phase[0]["rule"]
            tester.negative(tool, "rule", base, rule, state=state, rule=rule)
            state.close()

        def complete(arguments: dict[str, Any]) -> dict[str, Any]:
            found = next((r for r in tester.rows(e) if r[key] == arguments.get(key)), None)
            return {**(who(found) if found else {}), **arguments}

        proxy = Acting(tester, complete)
        for ref in design.refs:
            if ref.rule.entity == e and ref.kind.action(ref.rule) == transition.name:
                tester.waive(ref, ref.kind.transition_probes(proxy, ref, tool, entity, ready))  # type: ignore[arg-type]


def _moment(entity: Entity, name: str, value: str) -> str:
    """A moment written into a date column is a date (the table's CHECK refuses a datetime there)."""
    attr = next((a for a in entity.attributes if a.name == name), None)
    return value[:10] if attr is not None and attr.type == "date" else value


def _released(design: Design, entity: Entity, transition: Transition) -> Any:
    """What a compensating transition gives back: the booked resource's counter, when every state it leaves
    holds capacity and the state it enters does not (else None)."""
    if not transition.compensates:
        return None
    from .book import counter_of  # noqa: PLC0415 (imported here, book registers after transition: __init__'s order)

    held = counter_of(design, entity)
    if held is None:
        return None
    holds = set(held[2].holds)
    if not set(transition.from_states) <= holds or transition.to in holds:
        return None
    return held


def _a(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
