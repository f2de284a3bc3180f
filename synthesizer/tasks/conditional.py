"""Conditional: "if my X is still Y, do A; otherwise do B", where the user does not know X's state and the
state decides. Half the drafts take the first branch, half the other, so "always do A" is no policy.
Each branch is a write the tools would allow; the checks pin the record the branch must leave alone, so
the wrong branch fails."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from servers.spec import Check, GoldCall, UpdateRows

from ..money import compensation_cents
from ..naming import words
from . import wording
from .action import detail_change
from .checks import unchanged
from .family import Family, Target, act, allowed, because, distract, phrase, register, settle, state_field, targets
from .intents import (
    cancellable,
    dues,
    known_dates_of,
    nothing_charged,
    on,
    pay_call,
    pay_checks,
    paying_method,
    resource_words,
    sale,
    sale_calls,
    sale_checks,
    sale_extras,
    sale_words,
)
from .world import Draft, World, literal

__all__ = ["Conditional"]


def _step_states(target: Target) -> set[str]:
    """The states of the target's kind some step starts from."""
    life = target.own.child.lifecycle
    return {s for t in life.transitions for s in t.from_states} if life else set()


@register
class Conditional(Family):
    name = "conditional"
    task_family = "conditional"
    share = 0.16

    def draft(self, world: World) -> Draft | None:
        if world.design.world and world.rng.random() < 0.85:  # a legacy world draws nothing here
            kinds = [self.on_price, self.on_refund, self.on_due, self.on_delay]
            world.rng.shuffle(kinds)
            for kind in kinds:
                made = kind(world)
                if made is not None:
                    return made
        options = [t for t in targets(world) if t.own.child.lifecycle is not None]
        if not options:
            return None
        want_else = world.rng.random() < 0.5
        if want_else:  # half the drafts are built where the other state exists, so both branches occur
            options = [t for t in options if len(_step_states(t)) > 1] or options
        target = world.rng.choice(options)
        life = target.own.child.lifecycle
        assert life is not None
        actual = target.record[life.field]
        now_possible = [
            t
            for t in life.transitions
            if actual in t.from_states
            and t.name != target.transition.name
            and allowed(world, target.own.child.name, t.name)
        ]
        other_states = [s for s in life.states if s != actual and any(s in t.from_states for t in life.transitions)]
        what = phrase(world, target)
        if what is None:
            return None
        first_branch = not want_else or not other_states
        detail = detail_change(world, target.person)
        if first_branch:
            # the record is in the named state: do A; B (the other branch) would change something else
            state, then_target = actual, target
            if detail is not None and world.rng.random() < 0.6:
                name, b_call, value = detail
                otherwise = f"just update my {words(name)} to {value}"
                other = b_call
            elif now_possible:
                alt = world.rng.choice(now_possible)
                otherwise = f"{wording.verb_it(alt.name)} instead"
                other = act(world, Target(target.own, target.person, target.record, alt))
            else:
                return None
            gold_action = act(world, then_target)
            then = wording.verb_it(target.transition.name)
        else:
            # the record is not in the named state: B is what applies now
            state = world.rng.choice(other_states)
            named = next(
                (
                    t
                    for t in life.transitions
                    if state in t.from_states
                    and allowed(world, target.own.child.name, t.name)
                    and t.name != target.transition.name
                ),
                None,
            )
            if named is not None:
                then = wording.verb_it(named.name)
                other = act(world, Target(target.own, target.person, target.record, named))
            elif detail is not None:  # "if it's already done, just update my details; otherwise cancel it"
                then = f"just update my {words(detail[0])} to {detail[2]}"
                other = detail[1]
                detail = None
            else:
                return None
            if named is not None and detail is not None and world.rng.random() < 0.4:
                name, b_call, value = detail
                otherwise = f"update my {words(name)} to {value} instead"
                gold_action = b_call
            else:
                otherwise = wording.verb_it(target.transition.name)
                gold_action = act(world, target)
        gold: list[GoldCall] = [*world.reach(target.own, target.person, target.record), gold_action]
        results = world.trial(gold)
        if results is None or any(r.is_error for r in results):
            return None
        who, known = world.identity(target.person)
        request = wording.conditional(world.rng, what, wording.state_words(state), then, otherwise) + because(
            gold_action
        )
        user = world.scenario(
            target.person,
            {**known, "which one": what},
            f"Have {what} handled: {then} if it is {wording.state_words(state)}, otherwise {otherwise}.",
            accepts=["Whichever branch the record's state calls for"],
            refuses=["Both branches at once"],
        )
        branch = "then" if first_branch else "else"
        draft = Draft("conditional", f"conditional-{branch}", who, request, user, gold, tags=["discovery", branch])
        draft.person = str(target.person[f"{target.own.customer.name}_id"])
        draft.other = other
        distract(world, draft, target.own, target.person, target.record)
        key = f"{target.own.child.name}_id"
        if gold_action.tool == act(world, target).tool and gold_action.arguments == act(world, target).arguments:
            settle(world, draft, target, target.transition.to)
            if detail is not None:  # the other branch's change of details did not happen
                c = target.own.customer
                draft.checks.append(
                    unchanged(
                        c.plural,
                        f"{c.name}_id",
                        target.person[f"{c.name}_id"],
                        detail[0],
                        target.person.get(detail[0]),
                        f"The {words(detail[0])} on file",
                    )
                )
        else:  # the record stays as it is; the details change
            draft.checks.append(
                unchanged(
                    target.own.child.plural,
                    key,
                    target.key,
                    state_field(target),
                    actual,
                    f"The {words(target.own.child.name)} the user asked about",
                )
            )
        return draft

    # -- branches on a computed amount the user does not know (world designs) --------------------------

    def on_price(self, world: World) -> Draft | None:
        """ "If two economy seats on the Friday 3 pm to Atlanta come to under $500, book them on my Visa;
        otherwise just tell me the price." The oracle's total decides; half the drafts fall on each side."""
        made = sale(world)
        if made is None or made.quote is None:
            return None
        rng, total = world.rng, made.price.total_cents
        then = rng.random() < 0.5
        limit = (total // 10000 + 1) * 10000 if then else (total // 10000) * 10000
        if limit <= 0 or limit == total:
            return None
        booking = sale_calls(world, made)
        asking = sale_calls(world, made, book=False)
        gold = booking if then else asking
        results = world.trial(booking)  # either way the booking is possible: only the price decides
        if results is None or any(r.is_error for r in results):
            return None
        short, extras = sale_words(world, made, everything=False), sale_extras(world, made)
        where = resource_words(made.resource, made.row)
        paid = wording.method(made.method["label"]) if made.method else "my usual card"
        booked = f"book it{f' ({extras})' if extras else ''} on {paid}"
        request = rng.choice(
            [
                f"I'm looking at {where}. If {short} would cost me less than {wording.cents(limit)}, please {booked}; "
                "if not, just tell me the price.",
                f"How much would {short} {on(made.resource)} {where} be for me? If it's under {wording.cents(limit)}, "
                "go ahead and "
                f"{booked}. Otherwise don't book anything, just tell me the price.",
            ]
        )
        who, known = world.identity(made.person)
        user = world.scenario(
            made.person,
            {**known, **({"payment method": str(made.method["label"])} if made.method else {})},
            f"Book only if the price is under {wording.cents(limit)}; otherwise learn the price.",
            accepts=["Whichever the price calls for"],
            refuses=["A booking at or over the limit"],
        )
        branch = "then" if then else "else"
        draft = Draft(
            "conditional", f"conditional-price-{branch}", who, request, user, gold, tags=["computed", "quote", branch]
        )
        draft.person = str(made.person[f"{world.design.principal.name}_id"])
        if then:
            draft.checks += sale_checks(world, made)
            draft.other = asking[-1]  # the price told, nothing booked
        else:
            draft.facts = [wording.cents(total)]
            draft.checks += nothing_charged(world, made.person, made.entity)
            draft.other = booking[-1]
        pair = world.namesake(made.person, first=True)
        if pair is not None and world.keeps(pair[1]):
            draft.changes += pair[1]
        return draft

    def on_refund(self, world: World) -> Draft | None:
        """ "If I'd get all of it back, cancel my Seattle booking; otherwise leave it and tell me what I would
        get." The tier the record falls in today decides; the answer (else) is the oracle's refund."""
        options = cancellable(world)
        if not options:
            return None
        rng = world.rng
        top = max(t.percent for t in options[0].op.refund.tiers)
        then = rng.random() < 0.5
        chosen = [c for c in options if (c.refund.percent == top) == then and c.refund.percent > 0]
        if not chosen:
            return None
        pick = rng.choice(chosen)
        target, refund = pick.target, pick.refund
        what = phrase(world, target)
        if what is None:
            return None
        cancel = act(world, target)
        reads = world.reach(target.own, target.person, target.record)
        rebook = sale(world, target.person)  # "... and put me on X instead" (one write alone is a shallow branch)
        if rebook is not None and rebook.key == target.record.get(rebook.column):
            rebook = None
        acting = [*reads, cancel, *(sale_calls(world, rebook, lookup=False) if rebook else [])]
        gold = acting if then else reads
        results = world.trial(acting)  # either way the acts are possible: only the refund decides
        if results is None or any(r.is_error for r in results):
            return None
        share = "all of it" if top == 100 else f"{top}% of it"
        today = f" (Today is {wording.human_date(world.now)}.)"
        if rebook is not None:
            short, extras = sale_words(world, rebook, everything=False), sale_extras(world, rebook)
            where = resource_words(rebook.resource, rebook.row)
            paid = wording.method(rebook.method["label"]) if rebook.method else "my usual card"
            instead = (
                f"book me {short} {on(rebook.resource)} {where} instead{f' ({extras})' if extras else ''}, on {paid}"
            )
            request = rng.choice(
                [
                    f"If I'd get {share} back by cancelling {what} today, please cancel it and {instead}. If not, "
                    "leave everything as it is and just tell me how much I would get back.",
                    f"I'm thinking of swapping {what} for another trip. If cancelling it today gives me {share} back, "
                    f"cancel it and {instead}; otherwise change nothing and tell me what the refund would be.",
                ]
            )
        else:
            request = rng.choice(
                [
                    f"If I'd get {share} back by cancelling {what} today, please cancel it; if not, leave it as it is "
                    "and just tell me how much I would get back.",
                    f"I might cancel {what}. If cancelling today gives me {share} back, do it. Otherwise keep it and "
                    "tell me what the refund would be.",
                ]
            )
        request += because(cancel) + today
        who, known = world.identity(target.person)
        user = world.scenario(
            target.person,
            {**known, "which one": what},
            f"Cancel {what} only if the refund is {share}; otherwise learn the refund.",
            accepts=["Whichever the refund calls for"],
            refuses=["Cancelling for less than " + share],
        )
        branch = "then" if then else "else"
        draft = Draft(
            "conditional", f"conditional-refund-{branch}", who, request, user, gold, tags=["computed", "refund", branch]
        )
        draft.person = str(target.person[f"{target.own.customer.name}_id"])
        entity = target.own.child
        if then:
            draft.other = reads[-1]
            settle(world, draft, target, target.transition.to)
            if rebook is not None:
                draft.checks += sale_checks(world, rebook)
            for method, cents in sorted(refund.split.items()):
                draft.checks.append(
                    Check(
                        description=f"{wording.cents(cents)} refunded to a method that paid",
                        sql=f"SELECT 1 FROM payments WHERE {entity.name}_id = {literal(target.key)} AND kind = "
                        f"'refund' AND method_id = {literal(method)} AND amount_cents = {cents}",
                    )
                )
        else:
            draft.other = cancel
            draft.facts = [wording.cents(refund.total)]
            draft.wrong = [wording.cents(refund.paid)] if refund.paid != refund.total else []
            draft.checks.append(
                unchanged(
                    entity.plural,
                    f"{entity.name}_id",
                    target.key,
                    state_field(target),
                    target.record[state_field(target)],
                    f"The {words(entity.name)} the user asked about",
                )
            )
            draft.checks += nothing_charged(world, target.person, entity)
        distract(world, draft, target.own, target.person, target.record)
        return draft

    def on_due(self, world: World) -> Draft | None:
        """ "If what I still owe on my March bill is under $100, pay it all with my Visa; otherwise pay $100 for
        now." Both branches pay; the oracle's due decides how much (a partial payment must be allowed)."""
        options = [d for d in dues(world) if d.op.partial]
        if not options:
            return None
        rng = world.rng
        owed = rng.choice(options)
        then = rng.random() < 0.5
        step = 5000 if owed.due < 50000 else 10000
        limit = (owed.due // step + 1) * step if then else (owed.due // step) * step
        if limit <= 0 or limit == owed.due:
            return None
        method = paying_method(world, owed.person, max(limit, owed.due))
        what = world.describe(owed.own, owed.record, world.records(owed.own, owed.person))
        if method is None or what is None:
            return None
        c = world.customer
        assert c is not None
        get = world.tool("get", c.name)
        reads = [*world.reach(owed.own, owed.person, owed.record)]
        if get is not None:
            reads.append(GoldCall(tool=get, arguments={f"{c.name}_id": owed.person[f"{c.name}_id"]}))
        full, part = pay_call(world, owed, owed.due, method), pay_call(world, owed, limit, method)
        amount = owed.due if then else limit
        gold = [*reads, full if then else part]
        for branch in ([*reads, full], [*reads, part]) if limit < owed.due else ([*reads, full],):
            results = world.trial(branch)  # the branch not taken is possible too: only the amount decides
            if results is None or any(r.is_error for r in results):
                return None
        paid, cap = wording.method(method["label"]), wording.cents(limit)
        request = rng.choice(
            [
                f"If what I still owe on {what} is under {cap}, please pay it all with {paid}; otherwise just pay "
                f"{cap} of it for now.",
                f"I want to pay down {what} with {paid}. If the balance is less than {cap}, clear it; if not, pay "
                f"{cap} and I'll do the rest later.",
            ]
        )
        who, known = world.identity(owed.person)
        user = world.scenario(
            owed.person,
            {**known, "which one": what, "payment method": str(method["label"])},
            f"Pay {what}: all of it if under {cap}, else {cap}.",
            accepts=["Whichever amount the balance calls for"],
            refuses=["Paying more than asked"],
        )
        branch = "then" if then else "else"
        draft = Draft(
            "conditional", f"conditional-due-{branch}", who, request, user, gold, tags=["computed", "pay", branch]
        )
        draft.person = str(owed.person[f"{owed.own.customer.name}_id"])
        draft.other = part if then else full
        draft.checks += pay_checks(world, owed, amount, method)
        distract(world, draft, owed.own, owed.person, owed.record)
        return draft

    def on_delay(self, world: World) -> Draft | None:
        """ "My flight to Boston has been pushed back. If it's more than 3 hours late I'd like whatever
        compensation I'm due; if not, just tell me when it's leaving now." The record's delay (which the user
        does not know) decides; the threshold is the policy's own (``only_if``), and the user meets the rule's
        other conditions (a gold member), so only the delay does. Then: the voucher the oracle computes; else:
        the new departure time."""
        c = world.customer
        agent = world.design.domain.agent.role if world.design.domain.agent else "agent"
        if c is None:
            return None
        for op in world.design.domain.operations:
            tool = world.design.op_tool(op.name)
            if op.kind != "compensate" or tool not in world.tools or op.expose != "tool":
                continue
            if op.by_or_default(agent) not in ("principal", f"staff:{agent}"):
                continue
            ref = next((r for r in world.design.policy_refs if r.kind_name == "only_if" and r.op == op.name), None)
            measure = next((k for k in ref.rule.conditions if k.op == ">"), None) if ref else None
            if ref is None or measure is None or not measure.path.endswith("_minutes"):
                continue
            limit = int(ref.value if ref.value is not None else float(measure.value))  # type: ignore[arg-type]
            entity = world.design.entity(op.entity)
            where, attr = measure.path.split(".")
            column = next((r.column for r in entity.relations if r.to == where), None)
            owns = [o for o in world.ownerships() if o.child.name == entity.name and o.middle is None]
            dates = known_dates_of(world.design.entity(where)) if column else []
            if column is None or not owns or not dates:
                continue
            own, then = owns[0], world.rng.random() < 0.5
            life = entity.lifecycle
            options = []
            for record in world.rows[entity.name]:
                person, parent = world.owner_of(own, record), world.row(where, record[column])
                if person is None or parent is None or not parent.get(attr):
                    continue
                if op.from_ and life is not None and record.get(life.field) not in op.from_:
                    continue
                if then or int(parent[attr]) <= limit:
                    options.append((record, person, parent))
            if not options:
                continue
            record, person, parent = world.rng.choice(options)
            changes: list[Any] = []
            if then:  # the task's world: this delay is over the policy's line, and the user meets its other terms
                context = {c.name: person, entity.name: record, where: parent}
                if int(parent[attr]) <= limit:
                    longer = limit + world.rng.choice([15, 30, 45, 60, 90])
                    changes.append(_set(world, where, parent, {attr: longer}))
                    parent = {**parent, attr: longer}
                for k in ref.rule.conditions:
                    owner = k.path.split(".")[0]
                    if k.in_ is not None and not _holds(k, context) and owner in context:
                        value = k.in_[0]
                        changes.append(_set(world, owner, context[owner], {k.path.split(".")[1]: value}))
                        context[owner] = {**context[owner], k.path.split(".")[1]: value}
                if changes and not world.keeps(changes):
                    continue
            target = Target(own, person, record, life.transitions[0]) if life else None
            what = phrase(world, target) if target else None
            if what is None:
                continue
            reads = world.reach(own, person, record)
            properties = world.env.tools[tool].input_schema.get("properties", {})
            p_id, e_id = f"{c.name}_id", f"{entity.name}_id"
            call = GoldCall(
                tool=tool,
                arguments={k: v for k, v in {p_id: person[p_id], e_id: record[e_id]}.items() if k in properties},
            )
            results = world.trial([*reads, call], changes)  # possible either way: only the delay decides
            if results is None or any(r.is_error for r in results):
                continue
            scheduled = datetime.fromisoformat(str(parent[dates[0]]))
            leaving = scheduled + timedelta(minutes=int(parent[attr]))
            if leaving.date() != scheduled.date():
                continue
            span = f"{limit // 60} hours" if limit % 60 == 0 else f"{limit} minutes"
            request = world.rng.choice(
                [
                    f"{what[0].upper()}{what[1:]} has been pushed back. If it's more than {span} late I'd like "
                    "whatever compensation I'm due; if not, just tell me when it's leaving now.",
                    f"I hear there's a delay on {what}. If it's over {span}, please give me the compensation I'm "
                    "entitled to; otherwise just tell me the new departure time.",
                ]
            )
            who, known = world.identity(person)
            user = world.scenario(
                person,
                {**known, "which one": what},
                f"Compensation if {what} is more than {span} late; otherwise the new departure time.",
                accepts=["Whichever the delay calls for"],
                refuses=["Compensation for a shorter delay"],
            )
            branch = "then" if then else "else"
            gold = [*reads, call] if then else reads
            draft = Draft(
                "conditional",
                f"conditional-delay-{branch}",
                who,
                request,
                user,
                gold,
                tags=["computed", "delay", branch],
            )
            draft.person = str(person[p_id])
            draft.changes += changes
            amount = compensation_cents(op.amount, record)
            if then:
                draft.other = reads[-1]
                draft.facts = [wording.cents(amount)]
                draft.checks.append(
                    Check(
                        description=f"A voucher worth {wording.cents(amount)} for the user, credited for this "
                        f"{words(entity.name)}",
                        sql=f"SELECT 1 FROM payment_methods m JOIN payments p ON p.method_id = m.method_id WHERE "
                        f"p.{e_id} = {literal(record[e_id])} AND p.kind = 'credit' AND p.amount_cents = {amount} AND "
                        f"m.{p_id} = {literal(person[p_id])} AND m.balance_cents = {amount}",
                    )
                )
            else:
                draft.other = call
                draft.facts = [_clock(leaving)]
                draft.wrong = [_clock(scheduled)]
                draft.checks += nothing_charged(world, person)
            return draft
        return None


def _clock(moment: datetime) -> str:
    """'4:45 pm': a time of day as a person says it (the answer scorer reads it as 16:45)."""
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'am' if moment.hour < 12 else 'pm'}"


def _set(world: World, entity_name: str, row: dict[str, Any], values: dict[str, Any]) -> UpdateRows:
    entity = world.design.entity(entity_name)
    key = f"{entity.name}_id"
    return UpdateRows(op="update", table=entity.plural, where={key: row[key]}, set=values)


def _holds(condition: Any, context: dict[str, dict[str, Any]]) -> bool:
    """Whether an ``in`` condition of an ``only_if`` rule holds for the rows named by its path's entity."""
    where, attr = condition.path.split(".")
    row = context.get(where)
    return row is not None and row.get(attr) in condition.in_
