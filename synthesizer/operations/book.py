"""``book_*``: a new owned record on a resource, priced by the formula, capacity taken, paid from one of
the principal's own methods (world designs, design §4.2). The caller never gives a price, a status, a
copied date or a timestamp: the system computes them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from ..ledger import charge_steps, exists_step, method_steps, owned_steps, price_let
from ..naming import words
from ..oracle import price_of, row
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .parts import effect_steps, id_param, param, params, principal_param, rule_steps, rule_summary, value, view_select

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Book", "BookModel", "Availability", "counter_of"]


class Availability(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["counter", "none"] = "none"
    counter: str | None = None  # the resource's derived counter attribute (seats_left)
    amount: str | None = None  # the booked entity's input holding the quantity (seats)
    holds: list[str] = []  # states of the booked entity that hold capacity


class BookModel(OperationModel):
    kind: Literal["book"]
    resource: str
    price: str
    availability: Availability = Availability()
    payment: Literal["at_booking", "none"] = "at_booking"


def counter_of(design: Design, entity: Entity) -> tuple[Entity, Any, Availability] | None:
    """The resource, counter attribute and availability of the book operation that holds capacity."""
    for op in design.domain.operations:
        if op.kind == "book" and op.entity == entity.name and op.availability.mode == "counter":
            resource = design.entity(op.resource)
            attr = next(a for a in resource.attributes if a.name == op.availability.counter)
            return resource, attr, op.availability
    return None


@register
class Book(OperationKind):
    name = "book"
    phase = "write"
    styles = frozenset({"world"})
    model = BookModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        problems = []
        entity = domain.entity(op.entity)
        if op.price not in domain.pricing:
            problems.append(f"price {op.price!r} is not a pricing id")
        if not any(r.to == op.resource and r.required for r in entity.relations):
            problems.append(f"{op.entity!r} needs a required relation to the resource {op.resource!r}")
        if op.payment == "at_booking" and domain.ledger is None:
            problems.append("payment at booking needs a ledger")
        if op.availability.mode == "counter":
            if op.resource not in {e.name for e in domain.entities} or op.availability.counter not in {
                a.name for a in domain.entity(op.resource).attributes
            }:
                problems.append(f"availability.counter {op.availability.counter!r} is not a resource attribute")
            if op.availability.amount not in {a.name for a in entity.attributes if a.input}:
                problems.append(f"availability.amount {op.availability.amount!r} is not an input attribute")
        priced = [a.name for a in entity.attributes if a.derive and a.derive.price == op.price]
        if not priced:
            problems.append(f"no attribute of {op.entity!r} derives its price from {op.price!r}")
        stamps = {t.stamp for t in entity.lifecycle.transitions if t.stamp} if entity.lifecycle else set()
        for attr in entity.attributes:
            if attr.required and not (attr.input or attr.derive or attr.generator.startswith("code:")):
                if attr.name not in stamps:
                    problems.append(f"{attr.name!r} is required but neither an input nor derived")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        return [self.tool(design, entity, op) for op in design.operations("book", entity)]

    def tool(self, design: Design, entity: Entity, op: Any) -> Tool:
        e, principal = entity.name, design.principal
        p_id = f"{principal.name}_id"
        resource = design.entity(op.resource)
        resource_column = next(r.column for r in entity.relations if r.to == op.resource)
        codes = {a.name: design.codes[(e, a.name)] for a in entity.attributes if (e, a.name) in design.codes}
        inputs = [a for a in entity.attributes if a.input]
        properties: dict[str, Any] = {p_id: principal_param(design), resource_column: id_param(resource)}
        required = [p_id, resource_column]
        others = [r for r in entity.relations if r.to not in (principal.name, op.resource)]  # the pet a stay is for
        for relation in others:
            properties[relation.column] = id_param(design.entity(relation.to))
            if relation.required:
                required.append(relation.column)
        for attr in inputs:
            properties[attr.name] = param(attr)
            if attr.required:
                required.append(attr.name)
        paying = op.payment == "at_booking"
        if paying:
            properties["payment_method_id"] = _method_param(design)
            required.append("payment_method_id")
        steps: list[dict[str, Any]] = [exists_step(principal, p_id, f"Find them with find_{principal.name}.")]
        if design.owned(resource):
            steps += owned_steps(design, resource, resource_column)
        else:
            steps.append(exists_step(resource, resource_column))
        for relation in others:  # the principal's own (their pet), or any existing one (a shared resource)
            target = design.entity(relation.to)
            if not relation.required:
                continue
            if design.owned(target):
                steps += owned_steps(design, target, relation.column)
            else:
                steps.append(exists_step(target, relation.column))
        steps += rule_steps(design, entity, "create")
        if resource.lifecycle and resource.lifecycle.at:
            at = resource.lifecycle.at
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT {at} > now() AS ok, {at} AS at_time FROM {resource.plural} WHERE "
                    f"{resource.name}_id = :{resource_column}",
                    "expect": "true",
                    "error": f"{words(resource.name).capitalize()} {{{resource_column}}} was at {{at_time}}, "
                    "which has passed; only future ones can be booked.",
                    "rule": f"phase.{entity.lifecycle.initial if entity.lifecycle else e}",
                }
            )
        amount = op.availability.amount
        if op.availability.mode == "counter":
            counter = op.availability.counter
            steps.append(
                {
                    "kind": "require",
                    "sql": f"SELECT {counter} >= :{amount} AS ok, {counter} AS available FROM {resource.plural} "
                    f"WHERE {resource.name}_id = :{resource_column}",
                    "expect": "true",
                    "error": f"{words(resource.name).capitalize()} {{{resource_column}}} has {{available}} "
                    f"{words(counter)}; {{{amount}}} needed.",
                    "rule": "avail.capacity",
                }
            )
        steps.append(price_let(design, op.price, entity))
        if paying:
            steps += method_steps(design, ":price_total_cents")
        steps.append({"kind": "let", "name": "new_id", "sql": f"SELECT new_id('{entity.id_prefix}')"})
        columns, values = [f"{e}_id"], [":new_id"]
        for relation in entity.relations:
            columns.append(relation.column)
            values.append(f":{resource_column}" if relation.to == op.resource else f":{relation.column}")
        for attr in inputs:
            columns.append(attr.name)
            values.append(value(attr, attr.name))
        for attr in entity.attributes:
            if attr.derive and attr.derive.copy_:
                target, source = attr.derive.copy_.split(".")
                column = next(r.column for r in entity.relations if r.to == target)
                columns.append(attr.name)
                values.append(f"(SELECT {source} FROM {design.entity(target).plural} WHERE {target}_id = :{column})")
            elif attr.derive and attr.derive.price:
                columns.append(attr.name)
                values.append(":price_total_cents" if attr.derive.price == op.price else "0")
        for name, prefix in codes.items():
            columns.append(name)
            values.append(f"new_id('{prefix}')")
        columns += ["amount_paid_cents", "created_at"]
        values += ["0", "now()"]
        if entity.lifecycle:
            columns.append(entity.lifecycle.field)
            values.append(f"'{entity.lifecycle.initial}'")
        steps.append(
            {"kind": "exec", "sql": f"INSERT INTO {entity.plural} ({', '.join(columns)}) VALUES ({', '.join(values)})"}
        )
        if op.availability.mode == "counter":
            counter = op.availability.counter
            steps.append(
                {
                    "kind": "exec",
                    "sql": f"UPDATE {resource.plural} SET {counter} = {counter} - :{amount} WHERE {resource.name}_id = "
                    f":{resource_column} AND {counter} >= :{amount}",
                    "affects": "one",
                    "error": f"{words(resource.name).capitalize()} {{{resource_column}}} has no room left.",
                }
            )
        steps += effect_steps(design, entity, None)
        if paying:
            steps += charge_steps(design, entity, ":new_id", ":price_total_cents", op.name.replace("_", " "))
        steps.append({"kind": "return", "shape": "row", "sql": view_select(design, entity, f"t.{e}_id = :new_id")})
        what = f"Book a {words(e)} on a {words(resource.name)} for the {words(principal.name)} you are helping. "
        price = "The price is computed by the system (quote it first)"
        tool = {
            "name": op.name,
            "kind": "write",
            "description": what
            + price
            + (" and charged to one of their own payment methods." if paying else "; it is paid later.")
            + rule_summary(design, entity, "create"),
            "parameters": params(properties, required),
            "steps": steps,
        }
        return ToolRole("book", e, op_id=op.name, by=op.by_or_default()), tool

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        entity = design.entity(role.entity)
        op = _op(design, role)
        tables = {entity.plural}
        if op.availability.mode == "counter":
            tables.add(design.entity(op.resource).plural)
        if op.payment == "at_booking":
            tables |= {"payments", "payment_methods"}
        for ref in design.refs:
            if ref.rule.entity == entity.name:
                tables |= ref.kind.writes(design, ref, entity, None)
        return tables

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        design = tester.design
        op = _op(design, role)
        entity = design.entity(role.entity)
        p_id = f"{design.principal.name}_id"
        resource_column = next(r.column for r in entity.relations if r.to == op.resource)
        candidates = [self.arguments(tester, tool, entity, op) for _ in range(tester.attempts)]
        candidates = [c for c in candidates if c is not None]
        if not candidates:
            tester.untested(tool, f"no active {design.principal.name} with a payment method and an open {op.resource}")
            return

        def check(state: Any, result: Any, arguments: dict[str, Any]) -> list[str]:
            return _book_oracle(tester, state, result, arguments, entity, op)

        base = tester.first_oracle(tool, candidates, check)
        if base is None:
            return
        tester.negative(
            tool, "unknown_id", {**base, resource_column: tester.unknown(op.resource)}, f"exists.{op.resource}"
        )
        others = [m for m in tester.table("payment_methods") if m[p_id] != base[p_id]]
        if op.payment == "at_booking" and others:
            tester.negative(
                tool,
                "rule",
                {**base, "payment_method_id": others[0]["method_id"]},
                "pay.method_owned",
                rule="pay.method_owned",
            )
        if op.availability.mode == "counter":
            state = tester.env.new_state()
            with state.mode("internal"):
                state.conn.execute(
                    f"UPDATE {design.entity(op.resource).plural} SET {op.availability.counter} = 0 WHERE "
                    f"{op.resource}_id = ?",
                    (base[resource_column],),
                )
            tester.negative(tool, "rule", base, "avail.capacity", state=state, rule="avail.capacity")
            state.close()
        stored = design.domain.ledger.stored_value if design.domain.ledger else []
        if op.payment == "at_booking" and stored:
            state = tester.env.new_state()
            with state.mode("internal"):
                state.conn.execute(
                    "UPDATE payment_methods SET kind = ?, balance_cents = 1 WHERE method_id = ?",
                    (stored[0], base["payment_method_id"]),
                )
            tester.negative(tool, "rule", base, "pay.stored_value", state=state, rule="pay.stored_value")
            state.close()
        resource = design.entity(op.resource)
        if resource.lifecycle and resource.lifecycle.at and entity.lifecycle:
            state = tester.env.new_state()
            with state.mode("internal"):
                state.conn.execute(
                    f"UPDATE {resource.plural} SET {resource.lifecycle.at} = datetime(?, '-1 hours') WHERE "
                    f"{op.resource}_id = ?",
                    (tester.now, base[resource_column]),
                )
            rule = f"phase.{entity.lifecycle.initial}"
            tester.negative(tool, "rule", base, rule, state=state, rule=rule)
            state.close()
        for ref in design.refs:
            if ref.rule.entity == entity.name and ref.kind.action(ref.rule) == "create":
                tester.waive(ref, ref.kind.create_probes(tester, ref, tool, entity, base))

    def arguments(self, tester: Tester, tool: str, entity: Entity, op: Any) -> dict[str, Any] | None:
        """A booking that should succeed: an eligible principal with a card, a future resource with room."""
        design = tester.design
        p_id = f"{design.principal.name}_id"
        resource_column = next(r.column for r in entity.relations if r.to == op.resource)
        principals = tester.eligible(entity.name, design.principal.name)
        resources = [
            r
            for r in tester.open_resources(op, future=True)
            if r[f"{op.resource}_id"] in {x[f"{op.resource}_id"] for x in tester.eligible(entity.name, op.resource)}
        ]
        if not principals or not resources:
            return None
        principal = tester.rng.choice(principals)
        if design.owned(design.entity(op.resource)):  # an owned resource (their card account): one of their own
            owners = tester.owners(design.entity(op.resource))
            pairs = [(p, r) for r in resources for p in principals if owners[r[f"{op.resource}_id"]] == p[p_id]]
            if not pairs:
                return None
            principal, chosen = tester.rng.choice(pairs)
            resources = [chosen]
        schema = tester.env.tools[tool].input_schema["properties"]
        arguments: dict[str, Any] = {
            p_id: principal[p_id],
            resource_column: tester.rng.choice(resources)[f"{op.resource}_id"],
        }
        for relation in entity.relations:  # another party of the record: one of the principal's own (their pet)
            if relation.to in (design.principal.name, op.resource) or not relation.required:
                continue
            target = design.entity(relation.to)
            owners = tester.owners(target) if design.owned(target) else {}
            rows = [
                r
                for r in tester.eligible(entity.name, relation.to)
                if not owners or owners.get(r[f"{relation.to}_id"]) == principal[p_id]
            ]
            if not rows:
                return None
            arguments[relation.column] = tester.rng.choice(rows)[f"{relation.to}_id"]
        for attr in entity.attributes:
            if attr.input and attr.name in schema:
                arguments[attr.name] = tester.value_for(schema[attr.name], attr.name)
        if op.availability.mode == "counter":
            arguments[op.availability.amount] = 1
        if op.payment == "at_booking":
            cards = [m for m in tester.table("payment_methods") if m[p_id] == principal[p_id] and m["kind"] == "card"]
            if not cards:
                return None
            arguments["payment_method_id"] = cards[0]["method_id"]
        for ref in design.refs:
            if ref.rule.entity == entity.name:
                ref.kind.settle_arguments(tester, ref, entity, arguments)
        if tester.taken(entity, arguments):
            return None
        return arguments


def _op(design: Design, role: ToolRole) -> Any:
    return next(o for o in design.domain.operations if o.name == role.op_id)


def _method_param(design: Design) -> dict[str, Any]:
    ledger = design.domain.ledger
    assert ledger is not None
    return {
        "type": "string",
        "pattern": f"^{ledger.prefix}-[0-9]+$",
        "description": f"One of the {words(design.principal.name)}'s own payment methods (get_{design.principal.name} "
        f"lists them), e.g. {ledger.prefix}-0001.",
    }


def _book_oracle(
    tester: Tester, state: Any, result: Any, arguments: dict[str, Any], entity: Entity, op: Any
) -> list[str]:
    """The new record's total equals the formula on the seeded rows, the charge equals the total, the
    counter fell by the quantity (all recomputed here, not read from the tool's answer)."""
    design = tester.design
    problems: list[str] = []
    new_id = result.structured[f"{entity.name}_id"]
    resource = design.entity(op.resource)
    resource_column = next(r.column for r in entity.relations if r.to == op.resource)
    seed = tester.env.new_state()
    try:
        with seed.mode("internal"):
            expected = price_of(design, seed.conn, op.price, entity, arguments)
            before = row(seed.conn, resource.plural, f"{resource.name}_id", arguments[resource_column])
    finally:
        seed.close()
    with state.mode("internal"):
        made = row(state.conn, entity.plural, f"{entity.name}_id", new_id)
        after = row(state.conn, resource.plural, f"{resource.name}_id", arguments[resource_column])
        charges = state.conn.execute(
            f"SELECT method_id, amount_cents FROM payments WHERE {entity.name}_id = ? AND kind = 'charge'", (new_id,)
        ).fetchall()
    assert made is not None and before is not None and after is not None
    priced = [a.name for a in entity.attributes if a.derive and a.derive.price == op.price]
    for name in priced:
        if made[name] != expected.total_cents:
            problems.append(f"{name} {made[name]} != oracle {expected.total_cents}")
    if op.payment == "at_booking":
        if charges != [(arguments["payment_method_id"], expected.total_cents)]:
            problems.append(f"charges {charges} != one of {expected.total_cents} on {arguments['payment_method_id']}")
        if made["amount_paid_cents"] != expected.total_cents:
            problems.append(f"amount_paid_cents {made['amount_paid_cents']} != {expected.total_cents}")
    if op.availability.mode == "counter":
        counter, amount = op.availability.counter, op.availability.amount
        if after[counter] != before[counter] - arguments[amount]:
            problems.append(f"{counter} {before[counter]} -> {after[counter]}, booked {arguments[amount]}")
    for attr in entity.attributes:
        if attr.derive and attr.derive.copy_:
            target, source = attr.derive.copy_.split(".")
            if target == op.resource and made[attr.name] != before[source]:
                problems.append(f"{attr.name} {made[attr.name]} is not the {target}'s {before[source]}")
    return problems
