"""``pay_*``: pay what a record still owes, from one of the principal's own methods; partial payments
allowed (unless ``partial`` is false), over-payment refused, fully paid records move to ``paid_state``
(world designs, design §4.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..ledger import charge_steps, method_steps, owned_steps
from ..naming import words
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .book import _method_param
from .parts import params, principal_param, view_select

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Pay", "PayModel", "amount_attribute"]


class PayModel(OperationModel):
    kind: Literal["pay"]
    payable_states: list[str]
    paid_state: str
    partial: bool = True


def amount_attribute(entity: Entity) -> str:
    """The money attribute a record owes: the one its price derives."""
    return next(a.name for a in entity.attributes if a.derive and a.derive.price)


@register
class Pay(OperationKind):
    name = "pay"
    phase = "write"
    styles = frozenset({"world"})
    model = PayModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        entity = domain.entity(op.entity)
        problems = []
        if domain.ledger is None:
            problems.append("pay needs a ledger")
        if not any(a.derive and a.derive.price for a in entity.attributes):
            problems.append(f"{op.entity!r} has no priced attribute to pay")
        states = entity.lifecycle.states if entity.lifecycle else []
        for state in [*op.payable_states, op.paid_state]:
            if state not in states:
                problems.append(f"{state!r} is not a state of {op.entity!r}")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        tools: list[Tool] = []
        for op in design.operations("pay", entity):
            e, p_id = entity.name, f"{design.principal.name}_id"
            assert entity.lifecycle is not None
            field_name, total = entity.lifecycle.field, amount_attribute(entity)
            states = ", ".join(f"'{s}'" for s in op.payable_states)
            steps: list[dict[str, Any]] = [
                *owned_steps(design, entity),
                {
                    "kind": "require",
                    "sql": f"SELECT {field_name} IN ({states}) AS ok, {field_name} AS current FROM {entity.plural} "
                    f"WHERE {e}_id = :{e}_id",
                    "expect": "true",
                    "error": f"{words(e).capitalize()} {{{e}_id}} is {{current}}; only "
                    f"{' or '.join(op.payable_states)} {words(entity.plural)} can be paid.",
                    "rule": f"state.{op.name}",
                },
                {
                    "kind": "let",
                    "name": "due",
                    "sql": f"SELECT {total} - amount_paid_cents FROM {entity.plural} WHERE {e}_id = :{e}_id",
                },
                {
                    "kind": "require",
                    "sql": "SELECT :due > 0 AS ok",
                    "expect": "true",
                    "error": f"{words(e).capitalize()} {{{e}_id}} has nothing left to pay.",
                    "rule": "pay.nothing_due",
                },
                {
                    "kind": "require",
                    "sql": "SELECT :amount_cents <= :due AS ok, money_text(:due) AS due_text, "
                    "money_text(:amount_cents) "
                    "AS amount_text",
                    "expect": "true",
                    "error": f"{{{e}_id}} has ${{due_text}} left to pay; ${{amount_text}} is more than that.",
                    "rule": "pay.no_overpay",
                },
            ]
            if not op.partial:
                steps.append(
                    {
                        "kind": "require",
                        "sql": "SELECT :amount_cents = :due AS ok, money_text(:due) AS due_text",
                        "expect": "true",
                        "error": f"{{{e}_id}} is paid in full only: ${{due_text}}.",
                        "rule": "pay.in_full",
                    }
                )
            steps += method_steps(design, ":amount_cents")
            steps += charge_steps(design, entity, f":{e}_id", ":amount_cents", op.name.replace("_", " "))
            steps.append(
                {
                    "kind": "exec",
                    "sql": f"UPDATE {entity.plural} SET {field_name} = '{op.paid_state}' WHERE {e}_id = :{e}_id AND "
                    f"amount_paid_cents = {total}",
                }
            )
            steps.append({"kind": "return", "shape": "row", "sql": view_select(design, entity, f"t.{e}_id = :{e}_id")})
            properties = {
                p_id: principal_param(design),
                f"{e}_id": {"type": "string", **_id(entity)},
                "amount_cents": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The amount to pay, in cents.",
                    "errorMessage": "Give the amount in cents, e.g. 15040 for $150.40.",
                },
                "payment_method_id": _method_param(design),
            }
            tool = {
                "name": op.name,
                "kind": "write",
                "description": f"Pay towards a {' or '.join(op.payable_states)} {words(e)} of the "
                f"{words(design.principal.name)} you are helping, from one of their own payment methods; "
                + ("partial payments are fine, " if op.partial else "in full only, ")
                + f"never more than is still due. Fully paid, it becomes {op.paid_state}.",
                "parameters": params(properties, list(properties)),
                "steps": steps,
            }
            tools.append((ToolRole("pay", e, op_id=op.name, by=op.by_or_default()), tool))
        return tools

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return {design.entity(role.entity).plural, "payments", "payment_methods"}

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        design = tester.design
        op = next(o for o in design.domain.operations if o.name == role.op_id)
        entity = design.entity(role.entity)
        assert entity.lifecycle is not None
        e, p_id, total = entity.name, f"{design.principal.name}_id", amount_attribute(entity)
        owners = tester.owners(entity)
        cards = {m[p_id]: m["method_id"] for m in tester.table("payment_methods") if m["kind"] == "card"}
        due = [
            r
            for r in tester.pick(e, count=200)
            if r[entity.lifecycle.field] in op.payable_states
            and r[total] - r["amount_paid_cents"] > 1
            and owners[r[f"{e}_id"]] in cards
        ]
        if not due:
            tester.untested(tool, f"no seeded {e} owes anything")
            return
        record = due[0]
        left = record[total] - record["amount_paid_cents"]
        base = {
            p_id: owners[record[f"{e}_id"]],
            f"{e}_id": record[f"{e}_id"],
            "payment_method_id": cards[owners[record[f"{e}_id"]]],
        }

        def paid(amount: int, state_after: str) -> Any:
            def check(state: Any, result: Any) -> list[str]:
                with state.mode("internal"):
                    status, paid_cents = state.conn.execute(
                        f"SELECT {entity.lifecycle.field}, amount_paid_cents FROM {entity.plural} WHERE {e}_id = ?",
                        (record[f"{e}_id"],),
                    ).fetchone()
                    ledger = state.conn.execute(
                        "SELECT COALESCE(SUM(CASE kind WHEN 'charge' THEN amount_cents "
                        "WHEN 'refund' THEN -amount_cents "
                        f"END), 0) FROM payments WHERE {e}_id = ?",
                        (record[f"{e}_id"],),
                    ).fetchone()[0]
                problems = []
                if paid_cents != record["amount_paid_cents"] + amount or ledger != paid_cents:
                    problems.append(
                        f"paid {paid_cents}, ledger {ledger}, expected {record['amount_paid_cents'] + amount}"
                    )
                if status != state_after:
                    problems.append(f"status {status}, expected {state_after}")
                return problems

            return check

        if op.partial:
            tester.oracle(tool, {**base, "amount_cents": left - 1}, paid(left - 1, record[entity.lifecycle.field]))
        tester.oracle(tool, {**base, "amount_cents": left}, paid(left, op.paid_state))
        tester.negative(tool, "rule", {**base, "amount_cents": left + 1}, "pay.no_overpay", rule="pay.no_overpay")
        settled = tester.env.new_state()  # nothing left to pay: the guard, not the over-payment check, refuses
        with settled.mode("internal"):
            settled.conn.execute(
                f"UPDATE {entity.plural} SET amount_paid_cents = {total} WHERE {e}_id = ?", (record[f"{e}_id"],)
            )
        tester.negative(
            tool, "rule", {**base, "amount_cents": 1}, "pay.nothing_due", state=settled, rule="pay.nothing_due"
        )
        settled.close()
        stored = design.domain.ledger.stored_value if design.domain.ledger else []
        if stored:
            short = tester.env.new_state()
            with short.mode("internal"):
                short.conn.execute(
                    "UPDATE payment_methods SET kind = ?, balance_cents = 1 WHERE method_id = ?",
                    (stored[0], base["payment_method_id"]),
                )
            tester.negative(
                tool, "rule", {**base, "amount_cents": 2}, "pay.stored_value", state=short, rule="pay.stored_value"
            )
            short.close()
        stranger = next((p for p in cards if p != base[p_id]), None)
        if stranger:
            tester.negative(
                tool,
                "rule",
                {**base, p_id: stranger, "payment_method_id": cards[stranger], "amount_cents": 1},
                "authority.owned",
                rule="authority.owned",
            )
            tester.negative(
                tool,
                "rule",
                {**base, "payment_method_id": cards[stranger], "amount_cents": 1},
                "pay.method_owned",
                rule="pay.method_owned",
            )
        wrong = tester.pick(e, lambda r: r[entity.lifecycle.field] not in op.payable_states, count=1)
        if wrong:
            tester.negative(
                tool,
                "wrong_state",
                {**base, p_id: owners[wrong[0][f"{e}_id"]], f"{e}_id": wrong[0][f"{e}_id"], "amount_cents": 1},
                {f"state.{op.name}", "pay.method_owned"},
            )


def _id(entity: Entity) -> dict[str, Any]:
    return {
        "pattern": f"^{entity.id_prefix}-[0-9]+$",
        "description": f"The {words(entity.name)}'s id, e.g. {entity.id_prefix}-0001.",
    }
