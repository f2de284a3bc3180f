"""``compensate``: give the principal who owns a record a voucher worth an amount computed from the record
(so much per seat, or a percent of what it cost), once per record (world designs, design §4.9).

The tool enforces only "once per record" (and, when the op says ``from``, the record's state); whether a
record deserves compensation at all is a policy-only rule (``only_if``, design §5.3) the agent applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..ledger import credit_steps, owned_steps
from ..money import compensation_cents, money_text
from ..naming import words
from ..oracle import row
from ..rules.base import Identifier
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .parts import id_param, params, principal_param

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Compensate", "CompensateModel", "PerUnit", "PercentOf", "compensate_sentence", "once_rule"]


class PerUnit(BaseModel):
    """``cents`` for each unit of an integer attribute of the record (5 000 per seat)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    per: Identifier
    cents: int = Field(ge=1)


class PercentOf(BaseModel):
    """``percent`` of a money attribute of the record, rounded half to even (20 % of the fare)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    percent_of: Identifier
    percent: int = Field(ge=1, le=100)


class CompensateModel(OperationModel):
    kind: Literal["compensate"]
    amount: PerUnit | PercentOf
    to: Literal["voucher"] = "voucher"
    from_: list[str] | None = Field(None, alias="from", description="States it acts on (default: any).")


def once_rule(entity: Entity) -> str:
    return f"rule.once_per_{entity.name}"


def _amount_sql(entity: Entity, op: Any) -> str:
    e = entity.name
    if isinstance(op.amount, PerUnit):
        value = f"{op.amount.cents} * {op.amount.per}"
    else:
        value = f"mul_div({op.amount.percent_of}, {op.amount.percent}, 100)"
    return f"SELECT {value} FROM {entity.plural} WHERE {e}_id = :{e}_id"


def _amount_words(op: Any) -> str:
    if isinstance(op.amount, PerUnit):
        return f"{money_text(op.amount.cents)} per {words(op.amount.per).removesuffix('s')}"
    return f"{op.amount.percent} % of the {words(op.amount.percent_of.removesuffix('_cents'))}"


def compensate_sentence(design: Design, op: Any) -> str:
    """The policy sentence (for ``synthesizer.policy``): what is given and how often."""
    entity = design.entity(op.entity)
    return (
        f"{op.name} issues the {words(design.principal.name)} a voucher worth {_amount_words(op)}, at most once per "
        f"{words(entity.name)}; the voucher pays like a gift card, up to its balance."
    )


@register
class Compensate(OperationKind):
    name = "compensate"
    phase = "write"
    styles = frozenset({"world"})
    model = CompensateModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        problems: list[str] = []
        entity = domain.entity(op.entity)
        ledger = domain.ledger
        if ledger is None or op.to not in ledger.methods or op.to not in ledger.stored_value:
            problems.append(f"to {op.to!r} needs a ledger with {op.to!r} among its methods and stored_value")
        attrs = {a.name: a for a in entity.attributes}
        name = op.amount.per if isinstance(op.amount, PerUnit) else op.amount.percent_of
        wanted = ("integer",) if isinstance(op.amount, PerUnit) else ("money", "integer")
        if name not in attrs or attrs[name].type not in wanted:
            problems.append(f"amount: {name!r} is not a {' or '.join(wanted)} attribute of {op.entity!r}")
        life = entity.lifecycle
        if op.from_ and (life is None or any(s not in life.states for s in op.from_)):
            problems.append(f"from: {op.from_} are not all states of {op.entity!r}")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        tools: list[Tool] = []
        for op in design.operations("compensate", entity):
            e, p_id = entity.name, f"{design.principal.name}_id"
            steps: list[dict[str, Any]] = [*owned_steps(design, entity)]
            if op.from_ and entity.lifecycle:
                field_name = entity.lifecycle.field
                steps.append(
                    {
                        "kind": "require",
                        "sql": f"SELECT {field_name} IN ({', '.join(repr(s) for s in op.from_)}) AS ok, {field_name} "
                        f"AS current FROM {entity.plural} WHERE {e}_id = :{e}_id",
                        "expect": "true",
                        "error": f"{words(e).capitalize()} {{{e}_id}} is {{current}}; only {' or '.join(op.from_)} "
                        f"{words(entity.plural)} can be compensated.",
                        "rule": f"state.{op.name}",
                    }
                )
            steps += [
                {
                    "kind": "require",
                    "sql": f"SELECT payment_id, method_id AS given FROM payments WHERE {e}_id = :{e}_id AND kind = "
                    "'credit'",
                    "expect": "none",
                    "error": f"{words(e).capitalize()} {{{e}_id}} was compensated already (voucher {{given}}); "
                    f"compensation is given once per {words(e)}.",
                    "rule": once_rule(entity),
                },
                {"kind": "let", "name": "amount", "sql": _amount_sql(entity, op)},
                {
                    "kind": "require",
                    "sql": "SELECT :amount > 0 AS ok",
                    "expect": "true",
                    "error": f"{words(e).capitalize()} {{{e}_id}} comes to no compensation.",
                },
                *credit_steps(design, entity, ":amount", op.to, op.name.replace("_", " ")),
                {
                    "kind": "return",
                    "shape": "row",
                    "sql": f"SELECT :voucher_id AS voucher_id, :{e}_id AS {e}_id, :amount AS amount_cents, "
                    "money_text(:amount) AS amount_text, 'Issued voucher ' || :voucher_id || ' worth $' || "
                    "money_text(:amount) || '.' AS message",
                },
            ]
            tool = {
                "name": op.name,
                "kind": "write",
                "description": f"Issue the {words(design.principal.name)} you are helping a voucher for one of their "
                f"{words(entity.plural)}, worth {_amount_words(op)} (computed by the system); once per "
                f"{words(e)}. Only where the policy allows it.",
                "parameters": params(
                    {
                        p_id: principal_param(design),
                        f"{e}_id": {**id_param(entity), "description": f"The {words(e)} the voucher is for."},
                    },
                    [p_id, f"{e}_id"],
                ),
                "steps": steps,
            }
            tools.append((ToolRole("compensate", e, op_id=op.name, by=op.by_or_default()), tool))
        return tools

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return {"payments", "payment_methods"}

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        design = tester.design
        op = next(o for o in design.domain.operations if o.name == role.op_id)
        entity = design.entity(role.entity)
        e, p_id = entity.name, f"{design.principal.name}_id"
        owners = tester.owners(entity)
        credited = {p[f"{e}_id"] for p in tester.table("payments") if p["kind"] == "credit"}
        life = entity.lifecycle
        ready = [
            r
            for r in tester.pick(e, count=200)
            if r[f"{e}_id"] not in credited
            and (not op.from_ or life is None or r[life.field] in op.from_)
            and compensation_cents(op.amount, r) > 0
        ]
        if not ready:
            tester.untested(tool, f"no seeded {e} to compensate")
            return
        record = ready[0]
        base = {p_id: owners[record[f"{e}_id"]], f"{e}_id": record[f"{e}_id"]}
        expected = compensation_cents(op.amount, record)  # from the seeded row, in Python

        def check(state: Any, result: Any) -> list[str]:
            problems: list[str] = []
            with state.mode("internal"):
                credits = state.conn.execute(
                    f"SELECT method_id, amount_cents FROM payments WHERE {e}_id = ? AND kind = 'credit'",
                    (record[f"{e}_id"],),
                ).fetchall()
                voucher = row(state.conn, "payment_methods", "method_id", credits[0][0]) if credits else None
                others = state.conn.execute(
                    "SELECT COUNT(*) FROM payments WHERE created_at >= ? AND kind <> 'credit'", (tester.now,)
                ).fetchone()[0]
            if len(credits) != 1 or credits[0][1] != expected:
                problems.append(f"credits {credits} != one of {expected}")
            if voucher is None:
                return [*problems, "no voucher method"]
            if (voucher[p_id], voucher["kind"], voucher["balance_cents"], voucher["status"]) != (
                base[p_id],
                op.to,
                expected,
                "active",
            ):
                problems.append(f"voucher {voucher} is not an active {op.to} of {base[p_id]} holding {expected}")
            if result.structured.get("voucher_id") != voucher["method_id"]:
                problems.append(f"answered voucher {result.structured.get('voucher_id')}, made {voucher['method_id']}")
            if result.structured.get("amount_cents") != expected:
                problems.append(f"amount_cents {result.structured.get('amount_cents')} != oracle {expected}")
            if others:
                problems.append(f"{others} charge or refund row(s) besides the credit")
            return problems

        tester.oracle(tool, base, check)
        twice = tester.env.new_state()  # a second voucher for the same record is refused
        first = tester.env.call(twice, tool, base)
        once = once_rule(entity)
        if first.is_error:
            tester.untested(tool, f"the first call failed: {first.text}")
        else:  # counted as probed where the report tracks the rule
            tester.negative(tool, "rule", base, once, state=twice, rule=once if once in tester.report.rules else None)
        twice.close()
        stranger = next((r[p_id] for r in tester.rows(design.principal.name) if r[p_id] != base[p_id]), None)
        if stranger:
            tester.negative(tool, "rule", {**base, p_id: stranger}, "authority.owned", rule="authority.owned")
        tester.negative(tool, "unknown_id", {**base, f"{e}_id": tester.unknown(e)}, f"exists.{e}")
        if op.from_ and life is not None:
            wrong = tester.pick(e, lambda r: r[life.field] not in op.from_, count=1)
            if wrong:
                arguments = {p_id: owners[wrong[0][f"{e}_id"]], f"{e}_id": wrong[0][f"{e}_id"]}
                tester.negative(tool, "wrong_state", arguments, f"state.{op.name}")
