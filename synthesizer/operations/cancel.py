"""``cancel_*``: cancel an owned record for a reason; what it paid comes back to the methods that paid,
by the domain's refund tiers (hours before its moment), and the capacity it held is released (world
designs, design §4.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..ledger import owned_steps, refund_steps
from ..money import money_text
from ..naming import past, words
from ..oracle import net_by_method, refund_of, row
from ..world import Refund
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .book import counter_of
from .parts import effect_steps, params, principal_param, rule_steps, rule_summary, view_select

if TYPE_CHECKING:
    from ..catalog import Domain, Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Cancel", "CancelModel", "refund_sentence"]


class CancelModel(OperationModel):
    kind: Literal["cancel"]
    transition: str
    reasons: list[str]
    refund: Refund | None = None
    release: bool = True


def _transition(entity: Entity, name: str) -> Transition:
    assert entity.lifecycle is not None
    return next(t for t in entity.lifecycle.transitions if t.name == name)


def tier_hours(design: Design, op: Any) -> dict[int, int]:
    return {i: design.tier_hours.get((op.name, i), t.hours_default) for i, t in enumerate(op.refund.tiers)}


def refund_sentence(design: Design, op: Any) -> str:
    """The tiers in words: 'all of it 72 hours or more before departure, half from 24 hours, nothing after that.'"""
    hours = tier_hours(design, op)
    share = {100: "all of it", 50: "half", 0: "nothing"}
    parts = []
    for i, tier in enumerate(op.refund.tiers):
        amount = share.get(tier.percent, f"{tier.percent}%")
        if hours[i] == 0:
            parts.append(f"{amount} after that" if i else f"{amount}")
        elif i == 0:
            parts.append(f"{amount} {span(hours[i])} or more before {op.refund.moment or words(op.refund.at)}")
        else:
            parts.append(f"{amount} from {span(hours[i])}")
    return ", ".join(parts)


def span(hours: int) -> str:
    """A notice period as people say it: '72 hours', '14 days' (whole days from 96 hours on), '1 hour'."""
    if hours >= 96 and hours % 24 == 0:
        return f"{hours // 24} days"
    return "1 hour" if hours == 1 else f"{hours} hours"


def _phase_steps(entity: Entity, transition: Transition) -> list[dict[str, Any]]:
    """PHASE: a record whose every source state lies before its moment is cancelled only while it does."""
    life = entity.lifecycle
    if life is None or life.at is None or not life.phases:
        return []
    if not all(life.phases.get(s) == "before" for s in transition.from_states):
        return []
    return [
        {
            "kind": "require",
            "sql": f"SELECT {life.at} > now() AS ok, {life.at} AS at_time FROM {entity.plural} "
            f"WHERE {entity.name}_id = "
            f":{entity.name}_id",
            "expect": "true",
            "error": f"{words(entity.name).capitalize()} {{{entity.name}_id}} was at {{at_time}}, which has passed; it "
            f"can no longer be {past(transition.name)}.",
            "rule": f"phase.{transition.from_states[0]}",
        }
    ]


@register
class Cancel(OperationKind):
    name = "cancel"
    phase = "write"
    styles = frozenset({"world"})
    model = CancelModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        entity = domain.entity(op.entity)
        problems = []
        if not entity.lifecycle or op.transition not in {t.name for t in entity.lifecycle.transitions}:
            problems.append(f"{op.transition!r} is not a transition of {op.entity!r}")
        if op.refund:
            if domain.ledger is None:
                problems.append("a refund needs a ledger")
            at = next((a for a in entity.attributes if a.name == op.refund.at), None)
            if at is None or at.type != "datetime":
                problems.append(f"refund.at {op.refund.at!r} is not a datetime attribute")
        if not op.reasons:
            problems.append("reasons: at least one")
        holding = [
            b
            for b in domain.operations
            if b.kind == "book" and b.entity == op.entity and b.availability.mode == "counter"
        ]
        if (
            op.release
            and holding
            and entity.lifecycle
            and op.transition in {t.name for t in entity.lifecycle.transitions}
        ):
            sources = next(t for t in entity.lifecycle.transitions if t.name == op.transition).from_states
            if not set(sources) <= set(holding[0].availability.holds):
                problems.append("release: every state it cancels from must hold capacity (availability.holds)")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        tools: list[Tool] = []
        for op in design.operations("cancel", entity):
            assert entity.lifecycle is not None
            e, p_id = entity.name, f"{design.principal.name}_id"
            transition = _transition(entity, op.transition)
            field_name = entity.lifecycle.field
            allowed = ", ".join(f"'{s}'" for s in transition.from_states)
            steps: list[dict[str, Any]] = [
                *owned_steps(design, entity),
                {
                    "kind": "require",
                    "sql": f"SELECT {field_name} IN ({allowed}) AS ok, {field_name} AS current FROM {entity.plural} "
                    f"WHERE {e}_id = :{e}_id",
                    "expect": "true",
                    "error": f"{words(e).capitalize()} {{{e}_id}} is {{current}}; only "
                    f"{' or '.join(transition.from_states)} {words(entity.plural)} can be {past(transition.name)}.",
                    "rule": f"state.{op.name}",
                },
                *rule_steps(design, entity, transition.name),
                *_phase_steps(entity, transition),
            ]
            sets = [f"{field_name} = '{transition.to}'", "cancel_reason = :reason"]
            if transition.stamp:
                sets.append(f"{transition.stamp} = now()")
            result = view_select(design, entity, f"t.{e}_id = :{e}_id")
            if op.refund:
                at = op.refund.at
                hours = tier_hours(design, op)
                cases = " ".join(
                    f"WHEN :secs_left >= {hours[i] * 3600} THEN {t.percent}" for i, t in enumerate(op.refund.tiers)
                )
                steps += [
                    {
                        "kind": "let",
                        "name": "secs_left",
                        "sql": f"SELECT CAST(strftime('%s', {at}) AS INTEGER) - CAST(strftime('%s', now()) AS INTEGER) "
                        f"FROM {entity.plural} WHERE {e}_id = :{e}_id",
                    },
                    {"kind": "let", "name": "pct", "sql": f"SELECT CASE {cases} ELSE 0 END"},
                    *refund_steps(design, entity, ":pct", op.name.replace("_", " ")),
                ]
                sets += ["amount_paid_cents = amount_paid_cents - :refund_total", "refund_cents = :refund_total"]
                result = (
                    f"SELECT v.*, :pct AS refund_percent, :refund_total AS refunded_cents, money_text(:refund_total) "
                    f"AS refunded_text FROM ({result}) v"
                )
            steps.append(
                {
                    "kind": "exec",
                    "sql": f"UPDATE {entity.plural} SET {', '.join(sets)} WHERE {e}_id = :{e}_id",
                    "affects": "one",
                    "error": f"{words(e).capitalize()} {{{e}_id}} could not be {past(transition.name)}.",
                }
            )
            held = counter_of(design, entity)
            if held and op.release:
                resource, counter, availability = held
                column = next(r.column for r in entity.relations if r.to == resource.name)
                steps.append(
                    {
                        "kind": "exec",
                        "sql": f"UPDATE {resource.plural} SET {counter.name} = {counter.name} + (SELECT "
                        f"{availability.amount} FROM {entity.plural} WHERE {e}_id = :{e}_id) "
                        f"WHERE {resource.name}_id = "
                        f"(SELECT {column} FROM {entity.plural} WHERE {e}_id = :{e}_id)",
                    }
                )
            steps += effect_steps(design, entity, transition)
            steps.append({"kind": "return", "shape": "row", "sql": result})
            refund = f" Refund: {refund_sentence(design, op)}, to the methods that paid." if op.refund else ""
            tool = {
                "name": op.name,
                "kind": "write",
                "description": f"Cancel a {' or '.join(transition.from_states)} {words(e)} of the "
                f"{words(design.principal.name)} you are helping, for a reason.{refund}"
                + rule_summary(design, entity, transition.name),
                "parameters": params(
                    {
                        p_id: principal_param(design),
                        f"{e}_id": {
                            "type": "string",
                            "pattern": f"^{entity.id_prefix}-[0-9]+$",
                            "description": f"The {words(e)}'s id, e.g. {entity.id_prefix}-0001.",
                        },
                        "reason": {"type": "string", "enum": list(op.reasons), "description": "Why it is cancelled."},
                    },
                    [p_id, f"{e}_id", "reason"],
                ),
                "steps": steps,
            }
            tools.append(
                (ToolRole("cancel", e, transition=transition.name, op_id=op.name, by=op.by_or_default()), tool)
            )
        return tools

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        entity = design.entity(role.entity)
        op = next(o for o in design.domain.operations if o.name == role.op_id)
        tables = {entity.plural}
        if op.refund:
            tables |= {"payments", "payment_methods"}
        held = counter_of(design, entity)
        if held and op.release:
            tables.add(held[0].plural)
        transition = _transition(entity, op.transition)
        for ref in design.refs:
            if ref.rule.entity == entity.name:
                tables |= ref.kind.writes(design, ref, entity, transition)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        design = tester.design
        op = next(o for o in design.domain.operations if o.name == role.op_id)
        entity = design.entity(role.entity)
        assert entity.lifecycle is not None
        e, p_id = entity.name, f"{design.principal.name}_id"
        transition = _transition(entity, op.transition)
        owners = tester.owners(entity)
        ready = [
            r
            for r in tester.pick(e, lambda r: r[entity.lifecycle.field] in transition.from_states, count=40)
            if r.get("amount_paid_cents", 0) > 0 or not op.refund
        ]
        if not ready:
            tester.untested(tool, f"no seeded {e} is {' or '.join(transition.from_states)} with payments")
            return
        record = ready[0]
        base = {p_id: owners[record[f"{e}_id"]], f"{e}_id": record[f"{e}_id"], "reason": op.reasons[0]}
        tester.oracle(tool, base, lambda state, result: self._oracle(tester, state, result, op, entity, record, None))
        if op.refund:  # each tier boundary, exactly on it and a minute inside the next tier
            hours = tier_hours(design, op)
            for i in range(len(op.refund.tiers) - 1):
                for shift in (0, -60):
                    moment = tester.at_offset(hours[i] * 3600 + shift)
                    state = tester.env.new_state()
                    with state.mode("internal"):
                        _move_moment(design, state, entity, op.refund.at, record, moment)
                        _odd_net(state, entity, record[f"{e}_id"])
                    tester.oracle(
                        tool,
                        base,
                        lambda st, result, moment=moment: self._oracle(tester, st, result, op, entity, record, moment),
                        state=state,
                    )
        stranger = next((r[p_id] for r in tester.rows(design.principal.name) if r[p_id] != base[p_id]), None)
        if stranger:
            tester.negative(tool, "rule", {**base, p_id: stranger}, "authority.owned", rule="authority.owned")
        phase = _phase_steps(entity, transition)
        if phase and entity.lifecycle.at:
            state = tester.env.new_state()
            with state.mode("internal"):
                state.conn.execute(
                    f"UPDATE {entity.plural} SET {entity.lifecycle.at} = ? WHERE {e}_id = ?",
                    (tester.at_offset(-3600), record[f"{e}_id"]),
                )
            tester.negative(tool, "rule", base, phase[0]["rule"], state=state, rule=phase[0]["rule"])
            state.close()
        wrong = tester.pick(e, lambda r: r[entity.lifecycle.field] not in transition.from_states, count=1)
        if wrong:
            tester.negative(
                tool,
                "wrong_state",
                {**base, p_id: owners[wrong[0][f"{e}_id"]], f"{e}_id": wrong[0][f"{e}_id"]},
                f"state.{op.name}",
            )
        for ref in design.refs:
            if ref.rule.entity == entity.name and ref.kind.action(ref.rule) == transition.name:
                tester.waive(ref, ref.kind.transition_probes(tester, ref, tool, entity, ready))

    def _oracle(
        self, tester: Tester, state: Any, result: Any, op: Any, entity: Entity, record: dict[str, Any], at: str | None
    ) -> list[str]:
        """Refund rows per method == the tiers' percent of each method's net, recomputed from the rows."""
        e = entity.name
        problems: list[str] = []
        with state.mode("internal"):
            net = net_by_method(state.conn, entity, record[f"{e}_id"], tester.now)  # what was paid before the call
            after = row(state.conn, entity.plural, f"{e}_id", record[f"{e}_id"])
            refunds = dict(
                state.conn.execute(
                    f"SELECT method_id, amount_cents FROM payments WHERE {e}_id = ? AND kind = 'refund' AND created_at "
                    f">= ?",
                    (record[f"{e}_id"], tester.now),
                ).fetchall()
            )
        assert after is not None
        if after[entity.lifecycle.field] != _transition(entity, op.transition).to:
            problems.append(f"status {after[entity.lifecycle.field]}")
        if op.refund:
            percent, split = refund_of(
                op.refund, tier_hours(tester.design, op), at or record[op.refund.at], tester.now, net
            )
            if refunds != split:
                problems.append(f"refunds {refunds} != oracle {split} ({percent}% of {net})")
            if after["refund_cents"] != sum(split.values()):
                problems.append(f"refund_cents {after['refund_cents']} != {money_text(sum(split.values()))}")
            if result.structured.get("refund_percent") != percent:
                problems.append(f"refund_percent {result.structured.get('refund_percent')} != {percent}")
        return problems


def _odd_net(state: Any, entity: Entity, record_id: str) -> None:
    """Make the record's largest charge leave a net of 3 modulo 4 (ledger and paid sum kept in step), so a
    50 % refund is an exact half whose rounding (to even) a truncating tool gets wrong."""
    e = entity.name
    found = state.conn.execute(
        f"SELECT payment_id, amount_cents FROM payments WHERE {e}_id = ? AND kind = 'charge' "
        "ORDER BY amount_cents DESC, "
        "payment_id LIMIT 1",
        (record_id,),
    ).fetchone()
    if found is None:
        return
    net = sum(net_by_method(state.conn, entity, record_id, "9999").values())
    delta = (3 - net) % 4
    if delta:
        state.conn.execute(
            "UPDATE payments SET amount_cents = amount_cents + ? WHERE payment_id = ?", (delta, found[0])
        )
        state.conn.execute(
            f"UPDATE {entity.plural} SET amount_paid_cents = amount_paid_cents + ? WHERE {e}_id = ?", (delta, record_id)
        )


def _move_moment(design: Design, state: Any, entity: Entity, at: str, record: dict[str, Any], moment: str) -> None:
    """Set the record's moment; a moment copied from a parent moves on the parent and all its children,
    so the state still agrees with itself."""
    key = f"{entity.name}_id"
    attr = next(a for a in entity.attributes if a.name == at)
    if attr.derive is None or attr.derive.copy_ is None:
        state.conn.execute(f"UPDATE {entity.plural} SET {at} = ? WHERE {key} = ?", (moment, record[key]))
        return
    target, source = attr.derive.copy_.split(".")
    column = next(r.column for r in entity.relations if r.to == target)
    parent = design.entity(target)
    state.conn.execute(f"UPDATE {parent.plural} SET {source} = ? WHERE {target}_id = ?", (moment, record[column]))
    state.conn.execute(f"UPDATE {entity.plural} SET {at} = ? WHERE {column} = ?", (moment, record[column]))
