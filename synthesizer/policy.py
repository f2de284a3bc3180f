"""The policy of a world design, written from its actors, operations and rules (design §2.2, §9.3).

The agent's role sentence opens it; "Who may ask for what" is generated from each operation's ``by``
and the lifecycle transitions left to staff or the system; each operation kind contributes its own
sentences (prices in words, refund tiers in words); the tool-enforced rules follow their kinds'
policy text. Only the short closing section is shared between domains.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .money import money_text
from .naming import a, words
from .operations import default_by
from .operations.cancel import refund_sentence
from .operations.compensate import compensate_sentence
from .operations.transfer import transfer_sentence
from .operations.transition import world_transitions

if TYPE_CHECKING:
    from .modeling import Design

__all__ = ["world_policy", "price_sentence", "who_may_ask"]

CLOSING = [
    "## When you cannot help",
    "- Explain a refusal with the rule that applies and what is possible instead; do not promise exceptions.",
]


def _now(design: Design) -> str:
    """The environment's clock as people read it: 'Wednesday 10 June 2026, 09:00'."""
    clock = design.clock
    return f"{clock:%A} {clock.day} {clock:%B %Y, %H:%M}"


def _join(items: list[str], last: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def _number(permille: int) -> str:
    return f"{permille / 1000:g}"


def price_sentence(design: Design, pricing_id: str) -> str:
    """The formula in words: 'the fare per seat × seats × 1.6 for premium economy …, plus 7.5 % tax'."""
    pricing = design.domain.pricing[pricing_id]
    unit = (
        f"the {words(pricing.unit.column.split('.')[1].removesuffix('_cents'))}"
        if pricing.unit.column
        else money_text(pricing.unit.cents or 0)
    )
    parts = [unit]
    if pricing.quantity.input:
        parts[0] += f" per {words(pricing.quantity.input).removesuffix('s')} × {words(pricing.quantity.input)}"
    if pricing.multiplier:
        factors = [f"{_number(v)} for {words(k)}" for k, v in pricing.multiplier.permille.items() if v != 1000]
        if factors:
            parts.append(f"× {_join(factors, 'or')}")
    text = " ".join(parts)
    if pricing.discount:
        offs = [f"{v} % off for {words(k)}" for k, v in pricing.discount.percent.items() if v]
        holder = words(pricing.discount.by.split(".")[0])
        text += f", {_join(offs)} {holder}s" if offs else ""
    if pricing.fee_cents:
        text += f", plus a {money_text(pricing.fee_cents)} fee"
    if pricing.tax_bp:
        text += f", plus {pricing.tax_bp / 100:g} % tax"
    return text


def who_may_ask(design: Design) -> list[str]:
    """The authority table: one row per group of requests with the same ``by``."""
    domain, p = design.domain, design.principal
    assert domain.agent is not None
    agent_role = domain.agent.role
    groups: dict[tuple[str, str], list[str]] = {}
    for op in domain.operations:
        if op.kind == "quote" or op.expose == "hidden" and op.by_or_default(agent_role) == "principal":
            continue
        by = op.by_or_default(agent_role)
        key = ("forbidden" if op.expose == "forbidden" else by, by)
        groups.setdefault(key, []).append(words(op.name))
    handled = {(op.entity, op.transition) for op in domain.operations if getattr(op, "transition", None)}
    for entity in design.entities:
        made = {t.name: (name, by) for name, t, by, _ in world_transitions(design, entity)}
        for t in entity.lifecycle.transitions if entity.lifecycle else []:
            if (entity.name, t.name) in handled:
                continue
            by = t.by or default_by(t.name, agent_role)
            if t.name in made:  # a lifecycle step made a tool (check_in_booking): who may ask for it
                group = "forbidden" if t.expose == "forbidden" else by
                groups.setdefault((group, by), []).append(words(made[t.name][0]))
            elif by != "principal":
                groups.setdefault(("hidden", by), []).append(f"{words(t.name)} ({words(entity.plural)})")
    rows = ["| request | who may ask | check first |", "| --- | --- | --- |"]
    for (group, by), requests in groups.items():
        what = _join(requests)
        role = by.split(":", 1)[1] if by.startswith("staff:") else "system"
        if group == "principal":
            rows.append(
                f"| {what} | the {words(p.name)}, for their own records | they are theirs (the get and list tools) |"
            )
        elif group == f"staff:{agent_role}":
            rows.append(f"| {what} | the {words(p.name)}; you decide under this policy | the conditions below |")
        elif group == "forbidden":
            rows.append(f"| {what} | only {words(role)} staff | refuse; {words(role)} staff handle it |")
        else:
            who = "the system" if role == "system" else f"{words(role)} staff"
            rows.append(f"| {what} | {who} | nothing for you to do; explain |")
    return rows


def world_policy(design: Design) -> str:
    domain, p = design.domain, design.principal
    assert domain.agent is not None and domain.org is not None
    org, plural = design.org_name, words(p.plural)
    owners = f"{org}'" if org.endswith("s") else f"{org}'s"
    verbs = [words(op.name) for op in domain.operations if op.expose == "tool" and op.kind != "quote"]
    verbs += [
        words(name)
        for entity in design.entities
        for name, _, by, op in world_transitions(design, entity)
        if op is None and by == "principal"
    ]
    lines = [
        f"# {org} — {domain.agent.title} policy",
        "",
        f"You are a {domain.agent.title} at {org}, a {domain.org.kind}. You help {plural} with their requests "
        f"({_join(verbs)}). Times are {owners} clock (it is now {_now(design)}); amounts in the tools are in cents "
        "(total_cents 18286 is "
        f"$182.86) — tell {plural} dollars and cents.",
        "",
        f"## Identify the {words(p.name)} first",
    ]
    principal = next(x for x in domain.principals if x.entity == p.name)
    sets = " or by ".join(" and ".join(words(n) for n in key_set) for key_set in principal.identify_by)
    lines += [
        f"- Find the {words(p.name)} with find_{p.name} by {sets}. A name alone identifies nobody: several {plural} "
        "may share one. Never guess or invent an id.",
        "",
        "## Who may ask for what",
        *who_may_ask(design),
        *_policy_lines(design, "who"),
    ]
    lines += ["", "## Operations"]
    lines += [f"- {sentence}" for op in domain.operations if (sentence := _op_sentence(design, op))]
    lines += _policy_lines(design, "operations")
    if design.refs:
        lines += ["", "## Rules the tools enforce"]
        lines += [f"- {ref.policy}" for ref in design.refs]
    if domain.ledger:
        stored = (
            _join([words(k) + "s" for k in domain.ledger.stored_value], "and") if domain.ledger.stored_value else ""
        )
        lines += [
            "",
            "## Money",
            f"- Charge only the {words(p.name)}'s own active payment methods"
            + (f"; {stored} pay only up to their balance." if stored else "."),
            *_policy_lines(design, "money"),
        ]
    lines += ["", *CLOSING]
    return "\n".join(lines) + "\n"


def _policy_lines(design: Design, section: str) -> list[str]:
    """The policy-only rules stated in a section (``synthesizer/policies``): the tools do not enforce them."""
    return [f"- {ref.kind.sentence(design, ref)}" for ref in design.policy_refs if ref.kind.section == section]


def _op_sentence(design: Design, op: Any) -> str | None:
    entity = design.entity(op.entity)
    if op.kind == "quote":
        return (
            f"The price of {a(words(entity.name))} is computed: {price_sentence(design, op.price)}. Quote it with "
            f"{op.name} before booking; never state a price you have not quoted."
        )
    if op.kind == "book":
        resource = design.entity(op.resource)
        future = " in the future" if resource.lifecycle and resource.lifecycle.at else ""
        paid = f" and charges it to one of the {words(design.principal.name)}'s own payment methods"
        room = f" that still have {words(op.availability.counter)}" if op.availability.mode == "counter" else ""
        return (
            f"{op.name} makes {a(words(entity.name))} on one of the {words(resource.plural)}{future}{room}; the "
            "system prices it" + (paid if op.payment == "at_booking" else "; it is paid later") + "."
        )
    if op.kind == "pay":
        partial = (
            "may be partial but never more than what is still due" if op.partial else "are for the full amount due"
        )
        states = " or ".join(op.payable_states)
        return (
            f"Payments with {op.name} go against one {states} {words(entity.name)} at a time and {partial}; "
            f"fully paid, it becomes {op.paid_state}."
        )
    if op.kind == "cancel":
        refund = f" The refund goes back to the methods that paid: {refund_sentence(design, op)}." if op.refund else ""
        reasons = _join([words(r) for r in op.reasons], "or")
        return f"{op.name} cancels {a(words(entity.name))} for one of these reasons: {reasons}.{refund}"
    if op.kind == "transfer":
        return transfer_sentence(design, op)
    if op.kind == "compensate":
        return compensate_sentence(design, op)
    return None
