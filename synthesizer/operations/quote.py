"""``quote_*``: what a sale would cost, computed from the tables by the domain's pricing formula (world)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..ledger import exists_step, price_let
from ..oracle import price_of
from .base import OperationKind, OperationModel, Tool, ToolRole, register
from .parts import id_param, param, params, principal_param, words

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Quote", "QuoteModel", "pricing_inputs"]


class QuoteModel(OperationModel):
    kind: Literal["quote"]
    resource: str
    price: str


def pricing_inputs(design: Design, pricing_id: str, entity: Entity) -> list[Any]:
    """The entity's input attributes the formula reads (quantity, class), in attribute order."""
    pricing = design.domain.pricing[pricing_id]
    used = {pricing.quantity.input, pricing.multiplier.by if pricing.multiplier else None} - {None}
    return [a for a in entity.attributes if a.name in used]


@register
class Quote(OperationKind):
    name = "quote"
    phase = "read"
    styles = frozenset({"world"})
    model = QuoteModel

    def problems(self, op: Any, domain: Domain) -> list[str]:
        problems = []
        if op.price not in domain.pricing:
            problems.append(f"price {op.price!r} is not a pricing id")
        if not any(r.to == op.resource for r in domain.entity(op.entity).relations):
            problems.append(f"{op.entity!r} has no relation to the resource {op.resource!r}")
        return problems

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        tools: list[Tool] = []
        principal = design.principal
        p_id = f"{principal.name}_id"
        for op in design.operations("quote", entity):
            resource = design.entity(op.resource)
            column = next(r.column for r in entity.relations if r.to == op.resource)
            properties: dict[str, Any] = {p_id: principal_param(design), column: id_param(resource)}
            for attr in pricing_inputs(design, op.price, entity):
                properties[attr.name] = param(attr)
            tool = {
                "name": op.name,
                "kind": "read",
                "description": f"What a {words(entity.name)} on a {words(resource.name)} would cost this "
                f"{words(principal.name)}, tax included, in cents (with the amounts it is made of). Nothing is booked.",
                "parameters": params(properties, list(properties)),
                "steps": [
                    exists_step(principal, p_id, f"Find them with find_{principal.name}."),
                    exists_step(resource, column),
                    price_let(design, op.price, entity),
                    {
                        "kind": "return",
                        "shape": "row",
                        "sql": "SELECT :price_unit_cents AS unit_cents, :price_quantity AS quantity, :price_base_cents "
                        "AS base_cents, :price_discount_cents AS discount_cents, :price_fee_cents AS fee_cents, "
                        ":price_tax_cents AS tax_cents, :price_total_cents AS total_cents, "
                        "money_text(:price_total_cents) AS total_text",
                    },
                ],
            }
            tools.append((ToolRole("quote", entity.name, op_id=op.name, by=op.by_or_default()), tool))
        return tools

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        design = tester.design
        op = next(o for o in design.domain.operations if o.name == role.op_id)
        entity = design.entity(role.entity)
        schema = tester.env.tools[tool].input_schema
        p_id = f"{design.principal.name}_id"
        column = next(r.column for r in entity.relations if r.to == op.resource)
        principals, resources = tester.pick(design.principal.name), tester.pick(op.resource)
        for i in range(min(8, len(principals), len(resources))):
            arguments = {p_id: principals[i][p_id], column: resources[i][f"{op.resource}_id"]}
            for attr in pricing_inputs(design, op.price, entity):
                arguments[attr.name] = tester.value_for(schema["properties"][attr.name], attr.name)

            def check(state: Any, result: Any, arguments: dict[str, Any] = arguments) -> list[str]:
                with state.mode("internal"):
                    expected = price_of(design, state.conn, op.price, entity, arguments)
                got = result.structured.get("total_cents")
                return [] if got == expected.total_cents else [f"total {got} != oracle {expected}"]

            tester.oracle(tool, arguments, check)
        if resources:
            arguments = tester.fill(tool, {p_id: principals[0][p_id], column: tester.unknown(op.resource)})
            tester.negative(tool, "unknown_id", arguments, f"exists.{op.resource}")
