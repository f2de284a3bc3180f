"""``transfer``: move an owned record to another resource of the same kind (a booking to another flight on
the same route), re-priced with the record's own inputs, the difference charged to or refunded to a
method the principal chooses, capacity moved, ``changes`` counted (world designs, design §4.7).

The caller names only the record, the new resource and the method: the new price, the difference, the
copied moment and the counters are computed by the system.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ..ledger import difference_steps, exists_step, owned_steps, price_let
from ..money import money_text
from ..naming import words
from ..oracle import repriced, row
from ..rules.base import Identifier
from ..world import owner_chain
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .book import _method_param, counter_of
from .parts import id_param, params, principal_param, view_select

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Transfer", "TransferModel", "transfer_sentence", "from_states"]

MOVING_RULES = ("eligibility", "unique_active")
"""Create rules that judge the new resource (on sale, one open record per pair); a per-owner count does not
change when a record moves, so ``limit_per_owner`` stays out."""


class TransferModel(OperationModel):
    kind: Literal["transfer"]
    relation: Identifier = Field(description="The related resource the record moves between (flight).")
    same: list[Identifier] = Field([], description="Attributes the new resource shares with the old (route).")
    price: Identifier = Field(description="The pricing id the record is re-priced with.")
    from_: list[str] | None = Field(None, alias="from", description="States it acts on (default: 'before' ones).")


def from_states(entity: Entity, op: Any) -> list[str]:
    """The states a record may be moved from: the op's ``from``, else the lifecycle's 'before' states, else
    its initial state."""
    life = entity.lifecycle
    if life is None:
        return []
    if op.from_:
        return list(op.from_)
    before = [s for s in life.states if (life.phases or {}).get(s) == "before"]
    return before or [life.initial]


def transfer_sentence(design: Design, op: Any) -> str:
    """The policy sentence (for ``synthesizer.policy``): what may move where and how the money settles."""
    entity, resource = design.entity(op.entity), design.entity(op.relation)
    e, p = words(entity.name), words(design.principal.name)
    same = f" with the same {' and '.join(words(a) for a in op.same)}" if op.same else ""
    states = from_states(entity, op)
    which = f"A {' or '.join(states)} {e}" if states else f"A {e}"
    future = " in the future" if resource.lifecycle and resource.lifecycle.at else ""
    inputs = " and ".join(words(n) for n in _bound_inputs(design, entity, op))
    return (
        f"{which} can move with {op.name} to another {words(resource.name)}{same} that is on sale{future} and has "
        f"room. The system re-prices it with the {e}'s own {inputs}; the difference is charged to, or refunded "
        f"to, a payment method the {p} chooses — a refund only to a method that paid for the {e}."
    )


def _relation(entity: Entity, op: Any) -> Any:
    return next(r for r in entity.relations if r.to == op.relation)


def _relation_column(entity: Entity, target: str) -> str:
    return next((r.column for r in entity.relations if r.to == target), f"{target}_id")


def _total(entity: Entity, op: Any) -> str:
    return next(a.name for a in entity.attributes if a.derive and a.derive.price == op.price)


def _bound_inputs(design: Design, entity: Entity, op: Any) -> list[str]:
    """The record's own inputs the price formula and the capacity counter read, in attribute order."""
    pricing = design.domain.pricing[op.price]
    used = {pricing.quantity.input, pricing.multiplier.by if pricing.multiplier else None}
    held = counter_of(design, entity)
    if held:
        used.add(held[2].amount)
    return [a.name for a in entity.attributes if a.name in used]


@register
class Transfer(OperationKind):
    name = "transfer"
    phase = "write"
    styles = frozenset({"world"})
    model = TransferModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        problems: list[str] = []
        entity = domain.entity(op.entity)
        relation = next((r for r in entity.relations if r.to == op.relation), None)
        if relation is None or not relation.required:
            return [f"{op.entity!r} needs a required relation to {op.relation!r}"]
        resource = domain.entity(op.relation)
        if owner_chain(domain, resource) is not None:
            problems.append(f"{op.relation!r} is owned; a record moves between shared resources")
        attrs = {a.name for a in resource.attributes}
        problems += [f"same: {a!r} is not an attribute of {op.relation!r}" for a in op.same if a not in attrs]
        if op.price not in domain.pricing:
            problems.append(f"price {op.price!r} is not a pricing id")
        elif not any(a.derive and a.derive.price == op.price for a in entity.attributes):
            problems.append(f"no attribute of {op.entity!r} derives its price from {op.price!r}")
        if domain.ledger is None:
            problems.append("transfer needs a ledger")
        if not any(o.entity == op.entity and o.kind in ("book", "pay") for o in domain.operations):
            problems.append(f"{op.entity!r} is not paid for (no book or pay operation): nothing to settle")
        life = entity.lifecycle
        if op.from_ and (life is None or any(s not in life.states for s in op.from_)):
            problems.append(f"from: {op.from_} are not all states of {op.entity!r}")
        holding = [
            b
            for b in domain.operations
            if b.kind == "book" and b.entity == op.entity and b.availability.mode == "counter"
        ]
        if holding and life is not None and not set(from_states(entity, op)) <= set(holding[0].availability.holds):
            problems.append("every state it moves from must hold capacity (availability.holds)")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        return [self.tool(design, entity, op) for op in design.operations("transfer", entity)]

    def tool(self, design: Design, entity: Entity, op: Any) -> Tool:
        e, p_id = entity.name, f"{design.principal.name}_id"
        resource = design.entity(op.relation)
        column = _relation(entity, op).column
        new = f"new_{column}"
        total = _total(entity, op)
        properties: dict[str, Any] = {
            p_id: principal_param(design),
            f"{e}_id": {**id_param(entity), "description": f"The {words(e)} to move, e.g. {entity.id_prefix}-0001."},
            new: {
                **id_param(resource),
                "description": f"The {words(resource.name)} to move it to, e.g. {resource.id_prefix}-0001"
                + (f" ({search} lists them)." if (search := design.tool("search", resource.name)) else "."),
            },
            "payment_method_id": {
                **_method_param(design),
                "description": f"The {words(design.principal.name)}'s own method that pays a higher price or gets "
                f"a lower one back (get_{design.principal.name} lists them), e.g. "
                f"{design.domain.ledger.prefix if design.domain.ledger else 'PM'}-0001.",
            },
        }
        steps: list[dict[str, Any]] = [*owned_steps(design, entity)]
        states = from_states(entity, op)
        if entity.lifecycle and states:
            field_name = entity.lifecycle.field
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT {field_name} IN ({', '.join(repr(s) for s in states)}) AS ok, {field_name} AS "
                    f"current FROM {entity.plural} WHERE {e}_id = :{e}_id",
                    "expect": "true",
                    "error": f"{words(e).capitalize()} {{{e}_id}} is {{current}}; only {' or '.join(states)} "
                    f"{words(entity.plural)} can be moved.",
                    "rule": f"state.{op.name}",
                }
            )
        steps += [
            {
                "kind": "let",
                "name": "cur",
                "shape": "row",
                "sql": f"SELECT {column} AS target, {total} AS total_cents FROM {entity.plural} WHERE {e}_id = :{e}_id",
            },
            exists_step(resource, new),
            {
                "kind": "require",
                "sql": f"SELECT :{new} <> :cur_target AS ok",
                "expect": "true",
                "error": f"{words(e).capitalize()} {{{e}_id}} is already on {words(resource.name)} {{{new}}}; "
                f"choose another {words(resource.name)}.",
                "rule": "args.same_target",
            },
        ]
        # the create rules and the price formula read the resource as :<column> and the inputs by name: bind
        # them to the new resource and to the record's own values
        steps.append({"kind": "let", "name": column, "sql": f"SELECT :{new}"})
        for relation in entity.relations:
            if relation.column != column and relation.column not in properties:
                steps.append(
                    {
                        "kind": "let",
                        "name": relation.column,
                        "sql": f"SELECT {relation.column} FROM {entity.plural} WHERE {e}_id = :{e}_id",
                    }
                )
        for name in _bound_inputs(design, entity, op):
            steps.append(
                {"kind": "let", "name": name, "sql": f"SELECT {name} FROM {entity.plural} WHERE {e}_id = :{e}_id"}
            )
        for ref in design.refs:
            if ref.rule.entity == e and ref.kind.action(ref.rule) == "create" and ref.kind.name in MOVING_RULES:
                if ref.kind.name == "unique_active" and ref.rule.target != op.relation:
                    continue  # one open record per (owner, other thing): a move to another flight keeps it
                steps += ref.kind.require_steps(design, ref, entity)
        life = resource.lifecycle
        if life and life.at:
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT {life.at} > now() AS ok, {life.at} AS at_time FROM {resource.plural} WHERE "
                    f"{resource.name}_id = :{new}",
                    "expect": "true",
                    "error": f"{words(resource.name).capitalize()} {{{new}}} was at {{at_time}}, which has passed; "
                    f"only future ones can be booked.",
                    "rule": f"phase.{entity.lifecycle.initial if entity.lifecycle else e}",
                }
            )
        if op.same:
            checks = " AND ".join(f"n.{a} IS c.{a}" for a in op.same)
            shown = ", ".join(f"c.{a} AS cur_{a}, n.{a} AS new_{a}" for a in op.same)
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT {checks} AS ok, {shown} FROM {resource.plural} n, {resource.plural} c WHERE "
                    f"n.{resource.name}_id = :{new} AND c.{resource.name}_id = :cur_target",
                    "expect": "true",
                    "error": f"{words(resource.name).capitalize()} {{{new}}} has "
                    + ", ".join(f"{words(a)} {{new_{a}}}" for a in op.same)
                    + f"; {words(e)} {{{e}_id}} is for "
                    + ", ".join(f"{words(a)} {{cur_{a}}}" for a in op.same)
                    + f". A {words(e)} moves only to a {words(resource.name)} with the same "
                    + " and ".join(words(a) for a in op.same)
                    + ".",
                    "rule": f"rule.same_{'_'.join(op.same)}",
                }
            )
        held = counter_of(design, entity)
        if held:
            counter, amount = held[1].name, held[2].amount
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT {counter} >= :{amount} AS ok, {counter} AS available FROM {resource.plural} "
                    f"WHERE {resource.name}_id = :{new}",
                    "expect": "true",
                    "error": f"{words(resource.name).capitalize()} {{{new}}} has {{available}} {words(counter)}; "
                    f"{{{amount}}} needed.",
                    "rule": "avail.capacity",
                }
            )
        if any(o.kind == "pay" and o.entity == entity.name for o in design.domain.operations):  # paid later
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT amount_paid_cents >= {total} AS ok, money_text({total} - amount_paid_cents) "
                    f"AS due_text FROM {entity.plural} WHERE {e}_id = :{e}_id",
                    "expect": "true",
                    "error": f"{words(e).capitalize()} {{{e}_id}} still has ${{due_text}} to pay; it moves only once "
                    "it is paid in full.",
                    "rule": "pay.settled_first",
                }
            )
        steps.append(price_let(design, op.price, entity))
        steps.append({"kind": "let", "name": "diff", "sql": "SELECT :price_total_cents - :cur_total_cents"})
        steps += difference_steps(design, entity, ":diff", op.name.replace("_", " "))
        sets = [f"{column} = :{new}"]
        for attr in entity.attributes:
            if attr.derive and attr.derive.copy_:
                target, source = attr.derive.copy_.split(".")
                if target == op.relation:
                    sets.append(f"{attr.name} = (SELECT {source} FROM {resource.plural} WHERE {target}_id = :{new})")
        sets += [
            f"{total} = :price_total_cents",
            "amount_paid_cents = amount_paid_cents + :diff",
            "changes = changes + 1",
        ]
        steps.append(
            {
                "kind": "exec",
                "sql": f"UPDATE {entity.plural} SET {', '.join(sets)} WHERE {e}_id = :{e}_id",
                "affects": "one",
                "error": f"{words(e).capitalize()} {{{e}_id}} could not be moved.",
            }
        )
        if held:
            counter, amount = held[1].name, held[2].amount
            steps += [
                {
                    "kind": "exec",
                    "sql": f"UPDATE {resource.plural} SET {counter} = {counter} + :{amount} WHERE {resource.name}_id = "
                    ":cur_target",
                },
                {
                    "kind": "exec",
                    "sql": f"UPDATE {resource.plural} SET {counter} = {counter} - :{amount} WHERE {resource.name}_id = "
                    f":{new} AND {counter} >= :{amount}",
                    "affects": "one",
                    "error": f"{words(resource.name).capitalize()} {{{new}}} has no room left.",
                },
            ]
        view = view_select(design, entity, f"t.{e}_id = :{e}_id")
        steps.append(
            {
                "kind": "return",
                "shape": "row",
                "sql": f"SELECT v.*, :cur_target AS previous_{column}, :diff AS difference_cents, "
                "'$' || money_text(abs(:diff)) || CASE WHEN :diff > 0 THEN ' charged' WHEN :diff < 0 THEN ' refunded' "
                f"ELSE ' (same price)' END AS difference_text FROM ({view}) v",
            }
        )
        same = f" with the same {' and '.join(words(a) for a in op.same)}" if op.same else ""
        tool = {
            "name": op.name,
            "kind": "write",
            "description": f"Move a {words(e)} of the {words(design.principal.name)} you are helping"
            + (f" (only {' or '.join(states)} ones)" if states else "")
            + f" to another {words(resource.name)}{same}. The system re-prices it with its own "
            + " and ".join(words(n) for n in _bound_inputs(design, entity, op))
            + "; a higher price is charged to the payment method given, a lower one refunded to it (it must be a "
            f"method that paid for the {words(e)}). Quote the new price first.",
            "parameters": params(properties, list(properties)),
            "steps": steps,
        }
        return ToolRole("transfer", e, op_id=op.name, by=op.by_or_default()), tool

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        entity = design.entity(role.entity)
        tables = {entity.plural, "payments", "payment_methods"}
        held = counter_of(design, entity)
        if held:
            tables.add(held[0].plural)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        _Probe(tester, tool, role).run()


class _Probe:
    """The transfer tool's probes: a pricier, a cheaper and a stored-value move judged by the oracle, then
    each refusal (other route, full, same target, past, not on sale, other principal's method, a refund to a
    method that did not pay, stored value short, not owned, wrong state, unknown target)."""

    def __init__(self, tester: Tester, tool: str, role: ToolRole) -> None:
        self.tester, self.tool = tester, tool
        self.design = design = tester.design
        self.op = next(o for o in design.domain.operations if o.name == role.op_id)
        self.entity = design.entity(role.entity)
        self.resource = design.entity(self.op.relation)
        self.column = _relation(self.entity, self.op).column
        self.new = f"new_{self.column}"
        self.p_id = f"{design.principal.name}_id"
        self.held = counter_of(design, self.entity)
        self.stored = design.domain.ledger.stored_value if design.domain.ledger else []
        paid_later = any(o.kind == "pay" and o.entity == self.entity.name for o in design.domain.operations)
        priced = next((a.name for a in self.entity.attributes if a.derive and a.derive.price), None)
        self.total = priced if paid_later else None  # a record paid later moves once paid in full

    # -- choosing a record and a target ------------------------------------------------------------

    def _future(self, r: dict[str, Any]) -> bool:
        life = self.resource.lifecycle
        return not (life and life.at) or str(r[life.at]) > self.tester.now

    def _targets(self) -> list[dict[str, Any]]:
        """Resources a record may move to under the create rules (the rules' own oracles), in the future."""
        ok = {r[f"{self.resource.name}_id"] for r in self.tester.eligible(self.entity.name, self.resource.name)}
        return [
            r for r in self.tester.rows(self.resource.name) if r[f"{self.resource.name}_id"] in ok and self._future(r)
        ]

    def _unique_taken(self, owner: str, target: str) -> bool:
        arguments = {self.p_id: owner, self.column: target}
        return any(
            ref.kind.taken(self.tester, ref, self.entity, arguments)
            for ref in self.design.refs
            if ref.rule.entity == self.entity.name
            and ref.kind.name == "unique_active"
            and ref.rule.target == self.op.relation
        )

    def _choose(self) -> tuple[dict[str, Any], dict[str, Any], bool] | None:
        """A movable record with payments, its owner's card, and a target: (record, target, natural) where
        natural says the seed has the target on the same ``same`` attributes already (else the probe's state
        copies make it so)."""
        tester, e = self.tester, self.entity.name
        owners = tester.owners(self.entity)
        cards = {m[self.p_id] for m in tester.table("payment_methods") if m["kind"] not in self.stored}
        principals = {r[self.p_id] for r in tester.eligible(e, self.design.principal.name)}
        resources = {r[f"{self.resource.name}_id"]: r for r in tester.rows(self.resource.name)}
        states = from_states(self.entity, self.op)
        life = self.entity.lifecycle
        records = [
            r
            for r in tester.rows(e)
            if (life is None or r[life.field] in states)
            and r.get("amount_paid_cents", 0) > 0
            and (self.total is None or r["amount_paid_cents"] >= r[self.total])
            and owners[r[f"{e}_id"]] in cards
            and owners[r[f"{e}_id"]] in principals
            and self._future(resources[r[self.column]])
        ]
        pricing = self.design.domain.pricing[self.op.price]
        if pricing.discount:  # owners with a discount first, so a tool that drops it is caught
            target_name, column = pricing.discount.by.split(".")
            key = _relation_column(self.entity, target_name)
            related = {r[f"{target_name}_id"]: r for r in tester.rows(target_name)}
            records.sort(key=lambda r: not pricing.discount.percent.get(str(related[r[key]][column]), 0))
        targets = self._targets()
        amount = self.held[2].amount if self.held else None
        fallback = None
        for record in records:
            for target in targets:
                if target[f"{self.resource.name}_id"] == record[self.column]:
                    continue
                if amount and target[self.held[1].name] < record[amount]:
                    continue
                if self._unique_taken(owners[record[f"{e}_id"]], target[f"{self.resource.name}_id"]):
                    continue
                current = resources[record[self.column]]
                if all(target[a] == current[a] for a in self.op.same):
                    return record, target, True
                fallback = fallback or (record, target, False)
        return fallback

    def _state(self, record: dict[str, Any], target: dict[str, Any], natural: bool, fare: str | None = None) -> Any:
        """A state copy where ``target`` shares the record's ``same`` attributes and, for ``fare`` 'up' or
        'down', its unit price is well above or below the record's current resource's."""
        state = self.tester.env.new_state()
        resources = {r[f"{self.resource.name}_id"]: r for r in self.tester.rows(self.resource.name)}
        current = resources[record[self.column]]
        table, key = self.resource.plural, f"{self.resource.name}_id"
        with state.mode("internal"):
            if not natural:
                for attr in self.op.same:
                    state.conn.execute(f"UPDATE {table} SET {attr} = ? WHERE {key} = ?", (current[attr], target[key]))
            unit = self.design.domain.pricing[self.op.price].unit.column
            if fare and unit and unit.split(".")[0] == self.resource.name:
                column = unit.split(".")[1]
                cents = current[column] * 2 + 137 if fare == "up" else max(1, current[column] // 2 - 61)
                state.conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (cents, target[key]))
        return state

    # -- the probes ------------------------------------------------------------------------------

    def run(self) -> None:
        tester, e = self.tester, self.entity.name
        chosen = self._choose()
        if chosen is None:
            tester.untested(self.tool, f"no movable {e} with a payment and a {self.resource.name} to move it to")
            return
        record, target, natural = chosen
        owners = tester.owners(self.entity)
        owner = owners[record[f"{e}_id"]]
        methods = [m for m in tester.table("payment_methods") if m[self.p_id] == owner]
        card = next(m for m in methods if m["kind"] not in self.stored)
        base = {
            self.p_id: owner,
            f"{e}_id": record[f"{e}_id"],
            self.new: target[f"{self.resource.name}_id"],
            "payment_method_id": card["method_id"],
        }
        # pricier, on a card: a charge of the difference
        self._judge(base, record, self._state(record, target, natural, "up"))
        # pricier, on stored value holding just a little more than needed: its balance falls by the difference
        if self.stored:
            state = self._state(record, target, natural, "up")
            diff = self._difference(state, record, base[self.new])
            with state.mode("internal"):
                state.conn.execute(
                    "UPDATE payment_methods SET kind = ?, balance_cents = ? WHERE method_id = ?",
                    (self.stored[0], max(diff, 0) + 1234, card["method_id"]),
                )
            self._judge(base, record, state)
            short = self._state(record, target, natural, "up")
            with short.mode("internal"):
                short.conn.execute(
                    "UPDATE payment_methods SET kind = ?, balance_cents = 1 WHERE method_id = ?",
                    (self.stored[0], card["method_id"]),
                )
            tester.negative(self.tool, "rule", base, "pay.stored_value", state=short, rule="pay.stored_value")
            short.close()
        # cheaper: a refund to the method that paid most for the record
        net: dict[str, int] = {}
        for payment in tester.table("payments"):
            if payment.get(f"{e}_id") == record[f"{e}_id"]:
                sign = {"charge": 1, "refund": -1}.get(payment["kind"], 0)
                net[payment["method_id"]] = net.get(payment["method_id"], 0) + sign * payment["amount_cents"]
        payer = max(sorted(net), key=lambda m: net[m])
        self._judge({**base, "payment_method_id": payer}, record, self._state(record, target, natural, "down"))
        # ... and to an own method that paid nothing for it: refused
        stranger_method = self._state(record, target, natural, "down")
        ledger = self.design.domain.ledger
        assert ledger is not None
        with stranger_method.mode("internal"):
            stranger_method.conn.execute(
                f"INSERT INTO payment_methods (method_id, {self.p_id}, kind, label, balance_cents, status) "
                "VALUES (?, ?, 'card', 'Visa ending 0000', NULL, 'active')",
                (f"{ledger.prefix}-9998", owner),
            )
        tester.negative(
            self.tool,
            "rule",
            {**base, "payment_method_id": f"{ledger.prefix}-9998"},
            "pay.refund_to_payer",
            state=stranger_method,
            rule="pay.refund_to_payer",
        )
        stranger_method.close()
        self._refusals(base, record, target, natural)

    def _refusals(self, base: dict[str, Any], record: dict[str, Any], target: dict[str, Any], natural: bool) -> None:
        tester, e = self.tester, self.entity.name
        key = f"{self.resource.name}_id"
        table = self.resource.plural

        def refused(arguments: dict[str, Any], rule: str, change: str | None = None, values: tuple = ()) -> None:
            state = self._state(record, target, natural)
            if change:
                with state.mode("internal"):
                    state.conn.execute(change, values)
            kind = "unknown_id" if rule.startswith("exists.") else "rule"
            tracked = rule if rule in tester.report.rules else None  # counted where the report tracks it
            tester.negative(self.tool, kind, arguments, rule, state=state, rule=tracked)
            state.close()

        refused({**base, self.new: record[self.column]}, "args.same_target")
        if self.total is not None:  # paid later and not yet in full: it moves once paid
            refused(
                base,
                "pay.settled_first",
                f"UPDATE {self.entity.plural} SET {self.total} = amount_paid_cents + 100 WHERE {e}_id = ?",
                (record[f"{e}_id"],),
            )
        if self.op.same:
            attr = self.op.same[0]
            spec = next(a for a in self.resource.attributes if a.name == attr)
            others = [v for v in (spec.enum or spec.values or []) if v != target[attr]]
            rule = f"rule.same_{'_'.join(self.op.same)}"
            if others:
                refused(base, rule, f"UPDATE {table} SET {attr} = ? WHERE {key} = ?", (others[0], target[key]))
        if self.held:
            counter = self.held[1].name
            refused(base, "avail.capacity", f"UPDATE {table} SET {counter} = 0 WHERE {key} = ?", (target[key],))
        life = self.resource.lifecycle
        if life and life.at and self.entity.lifecycle:
            rule = f"phase.{self.entity.lifecycle.initial}"
            refused(
                base, rule, f"UPDATE {table} SET {life.at} = ? WHERE {key} = ?", (tester.at_offset(-3600), target[key])
            )
        for ref in self.design.refs:  # the resource must be on sale
            rule = ref.rule
            if ref.rule.entity == e and ref.kind.name == "eligibility" and rule.action == "create":
                if rule.subject != self.resource.name or not isinstance(rule.equals, str):
                    continue
                field = next((a for a in self.resource.attributes if a.name == rule.attribute), None)
                values = life.states if life and rule.attribute == life.field else (field.enum or []) if field else []
                other = next((v for v in values if v != rule.equals), None)
                if other is not None:
                    refused(
                        base, ref.id, f"UPDATE {table} SET {rule.attribute} = ? WHERE {key} = ?", (other, target[key])
                    )
        others = [m for m in tester.table("payment_methods") if m[self.p_id] != base[self.p_id]]
        if others:
            refused({**base, "payment_method_id": others[0]["method_id"]}, "pay.method_owned")
        strangers = [r for r in tester.rows(self.design.principal.name) if r[self.p_id] != base[self.p_id]]
        if strangers:
            refused({**base, self.p_id: strangers[0][self.p_id]}, "authority.owned")
        refused({**base, self.new: tester.unknown(self.resource.name)}, f"exists.{self.resource.name}")
        life_e = self.entity.lifecycle
        if life_e:
            states = from_states(self.entity, self.op)
            owners = tester.owners(self.entity)
            wrong = tester.pick(e, lambda r: r[life_e.field] not in states, count=1)
            if wrong:
                arguments = {**base, self.p_id: owners[wrong[0][f"{e}_id"]], f"{e}_id": wrong[0][f"{e}_id"]}
                tester.negative(self.tool, "wrong_state", arguments, f"state.{self.op.name}")

    # -- the oracle ------------------------------------------------------------------------------

    def _difference(self, state: Any, record: dict[str, Any], target_id: str) -> int:
        with state.mode("internal"):
            return repriced(self.design, state.conn, self.op.price, self.entity, record, self.column, target_id)[1]

    def _judge(self, arguments: dict[str, Any], record: dict[str, Any], state: Any) -> None:
        """Run the move on ``state`` and check it against a recomputation from the rows before the call."""
        key = f"{self.resource.name}_id"
        target_id = arguments[self.new]
        with state.mode("internal"):
            breakdown, diff = repriced(
                self.design, state.conn, self.op.price, self.entity, record, self.column, target_id
            )
            before_method = row(state.conn, "payment_methods", "method_id", arguments["payment_method_id"])
            old = row(state.conn, self.resource.plural, key, record[self.column])
            new = row(state.conn, self.resource.plural, key, target_id)
        assert before_method is not None and old is not None and new is not None

        def check(after_state: Any, result: Any) -> list[str]:
            return self._check(
                after_state, result, arguments, record, breakdown.total_cents, diff, before_method, old, new
            )

        self.tester.oracle(self.tool, arguments, check, state=state)

    def _check(
        self,
        state: Any,
        result: Any,
        arguments: dict[str, Any],
        record: dict[str, Any],
        total: int,
        diff: int,
        method: dict[str, Any],
        old: dict[str, Any],
        new: dict[str, Any],
    ) -> list[str]:
        e, key = self.entity.name, f"{self.resource.name}_id"
        problems: list[str] = []
        with state.mode("internal"):
            moved = row(state.conn, self.entity.plural, f"{e}_id", record[f"{e}_id"])
            method_after = row(state.conn, "payment_methods", "method_id", arguments["payment_method_id"])
            old_after = row(state.conn, self.resource.plural, key, record[self.column])
            new_after = row(state.conn, self.resource.plural, key, arguments[self.new])
            rows = state.conn.execute(
                f"SELECT method_id, kind, amount_cents FROM payments WHERE {e}_id = ? AND created_at >= ?",
                (record[f"{e}_id"], self.tester.now),
            ).fetchall()
        assert moved is not None and method_after is not None and old_after is not None and new_after is not None
        expected_rows = []
        if diff > 0:
            expected_rows = [(arguments["payment_method_id"], "charge", diff)]
        elif diff < 0:
            expected_rows = [(arguments["payment_method_id"], "refund", -diff)]
        if sorted(rows) != expected_rows:
            problems.append(f"ledger rows {rows} != oracle {expected_rows} (difference {money_text(diff)})")
        if method["balance_cents"] is not None and method_after["balance_cents"] != method["balance_cents"] - diff:
            problems.append(f"balance {method['balance_cents']} -> {method_after['balance_cents']}, difference {diff}")
        if method["balance_cents"] is None and method_after["balance_cents"] is not None:
            problems.append("a card got a balance")
        total_attr = _total(self.entity, self.op)
        if moved[self.column] != arguments[self.new]:
            problems.append(f"{self.column} {moved[self.column]} != {arguments[self.new]}")
        if moved[total_attr] != total:
            problems.append(f"{total_attr} {moved[total_attr]} != oracle {total}")
        if moved["amount_paid_cents"] != record["amount_paid_cents"] + diff:
            problems.append(f"amount_paid_cents {moved['amount_paid_cents']} != {record['amount_paid_cents'] + diff}")
        if moved.get("changes") != (record.get("changes") or 0) + 1:
            problems.append(f"changes {record.get('changes')} -> {moved.get('changes')}")
        for attr in self.entity.attributes:
            if attr.derive and attr.derive.copy_ and attr.derive.copy_.split(".")[0] == self.resource.name:
                source = attr.derive.copy_.split(".")[1]
                if moved[attr.name] != new[source]:
                    problems.append(
                        f"{attr.name} {moved[attr.name]} is not the new {self.resource.name}'s {new[source]}"
                    )
        if self.held:
            counter, amount = self.held[1].name, int(record[self.held[2].amount])
            if old_after[counter] != old[counter] + amount or new_after[counter] != new[counter] - amount:
                problems.append(
                    f"{counter}: old {old[counter]} -> {old_after[counter]}, new {new[counter]} -> {new_after[counter]}"
                    f" ({amount} moved)"
                )
        if result.structured.get("difference_cents") != diff:
            problems.append(f"difference_cents {result.structured.get('difference_cents')} != oracle {diff}")
        return problems
