"""The ledger and the step blocks of world designs (design §2.2, §3.2, §3.3, §3.5).

Money moves only through two generated tables, ``payment_methods`` and ``payments``: every charge,
refund and credit is a row. This module writes their table specs, the fragments reads and steps share
(``<e>_owner``: who owns a record; ``<e>_paid``: its net payments per method), the price formula as one
row-``let`` (integer cents, every division ``mul_div``), and the require/exec blocks the operation kinds
compose: OWNED, METHOD, CHARGE, REFUND, DIFF (a price difference either way) and CREDIT (a voucher).
Rule ids of the blocks are stable strings (``authority.owned``, ``pay.method_owned`` ...), the names an
agent sees in a refusal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .naming import words

if TYPE_CHECKING:
    from .catalog import Entity
    from .modeling import Design

__all__ = [
    "Step",
    "METHODS_TABLE",
    "PAYMENTS_TABLE",
    "ledger_tables",
    "ledger_sequences",
    "owner_fragment",
    "paid_fragment",
    "exists_step",
    "owned_steps",
    "method_steps",
    "charge_steps",
    "refund_steps",
    "difference_steps",
    "credit_steps",
    "price_let",
    "payable_entities",
    "ledger_entities",
    "METHOD_LABELS",
]

Step = dict[str, Any]
METHODS_TABLE = "payment_methods"
PAYMENTS_TABLE = "payments"
METHOD_LABELS = {
    "card": "card",
    "gift_card": "gift card",
    "voucher": "voucher",
    "balance": "account balance",
    "bank_account": "bank account",
}


def payable_entities(design: Design) -> list[Entity]:
    """Entities money is paid for: those a book or pay operation prices, in entity order."""
    names = {op.entity for op in design.domain.operations if op.kind in ("book", "pay")}
    return [e for e in design.entities if e.name in names]


def ledger_entities(design: Design) -> list[Entity]:
    """Entities a payment row may name: the payable ones, and those credited by a ``compensate`` operation
    (a voucher issued for a record is a ``credit`` row on it), in entity order."""
    names = {op.entity for op in design.domain.operations if op.kind in ("book", "pay", "compensate")}
    return [e for e in design.entities if e.name in names]


def ledger_tables(design: Design) -> list[dict[str, Any]]:
    """The ``payment_methods`` and ``payments`` table specs (design §3.2)."""
    ledger = design.domain.ledger
    assert ledger is not None
    principal = design.principal
    methods = {
        "name": METHODS_TABLE,
        "description": f"The {words(principal.plural)}' payment methods; stored value carries a balance.",
        "columns": [
            {
                "name": "method_id",
                "type": "text",
                "primary_key": True,
                "description": f"Id, e.g. {ledger.prefix}-0001.",
            },
            {
                "name": f"{principal.name}_id",
                "type": "text",
                "nullable": False,
                "references": f"{principal.plural}.{principal.name}_id",
                "description": f"The {words(principal.name)} the method belongs to.",
            },
            {"name": "kind", "type": "text", "nullable": False, "enum": list(ledger.methods), "description": "Kind."},
            {"name": "label", "type": "text", "nullable": False, "description": "How the method is named to people."},
            {
                "name": "balance_cents",
                "type": "integer",
                "nullable": True,
                "description": "Stored value left, in cents (NULL for cards and bank accounts).",
            },
            {
                "name": "status",
                "type": "text",
                "nullable": False,
                "enum": ["active", "expired"],
                "default": "active",
                "description": "Only active methods can pay.",
            },
        ],
        "checks": [
            {
                "name": "balance_never_negative",
                "expression": "balance_cents IS NULL OR balance_cents >= 0",
                "message": "A stored-value balance never goes below zero.",
            }
        ],
    }
    payable = ledger_entities(design)
    columns: list[dict[str, Any]] = [
        {
            "name": "payment_id",
            "type": "text",
            "primary_key": True,
            "description": f"Id, e.g. {ledger.payment_prefix}-0001.",
        },
        {
            "name": "method_id",
            "type": "text",
            "nullable": False,
            "references": f"{METHODS_TABLE}.method_id",
            "description": "The method charged or credited.",
        },
    ]
    for entity in payable:
        columns.append(
            {
                "name": f"{entity.name}_id",
                "type": "text",
                "nullable": True,
                "references": f"{entity.plural}.{entity.name}_id",
                "description": f"The {words(entity.name)} paid for.",
            }
        )
    columns += [
        {
            "name": "kind",
            "type": "text",
            "nullable": False,
            "enum": ["charge", "refund", "credit"],
            "description": "Kind.",
        },
        {
            "name": "amount_cents",
            "type": "integer",
            "nullable": False,
            "description": "Amount in cents, always positive.",
        },
        {"name": "created_at", "type": "datetime", "nullable": False, "description": "When the money moved."},
        {"name": "note", "type": "text", "nullable": True, "description": "Why."},
    ]
    one_target = " + ".join(f"({e.name}_id IS NOT NULL)" for e in payable)
    checks = [{"name": "amount_positive", "expression": "amount_cents > 0", "message": "Amounts are positive."}]
    if payable:
        checks.append(
            {
                "name": "one_target",
                "expression": f"kind = 'credit' OR {one_target} = 1",
                "message": "A charge or refund is for exactly one record.",
            }
        )
    payments = {
        "name": PAYMENTS_TABLE,
        "description": "Every charge, refund and credit, one row each.",
        "columns": columns,
        "checks": checks,
    }
    return [methods, payments]


def ledger_sequences(design: Design) -> list[dict[str, Any]]:
    ledger = design.domain.ledger
    assert ledger is not None
    return [
        {"prefix": ledger.prefix, "table": METHODS_TABLE, "column": "method_id", "width": 4},
        {"prefix": ledger.payment_prefix, "table": PAYMENTS_TABLE, "column": "payment_id", "width": 4},
    ]


def owner_fragment(design: Design, entity: Entity) -> dict[str, Any] | None:
    """``<e>_owner``: each record's id and its principal's id, joined along the owner chain."""
    chain = design.chain(entity)
    if chain is None or len(chain) < 2:
        return None
    principal = chain[-1]
    joins = []
    for i, (child, parent) in enumerate(zip(chain, chain[1:], strict=False)):
        relation = next(r for r in child.relations if r.to == parent.name)
        if parent is principal:
            break
        joins.append(f"JOIN {parent.plural} t{i + 1} ON t{i + 1}.{parent.name}_id = t{i}.{relation.column}")
    last_child = chain[-2]
    relation = next(r for r in last_child.relations if r.to == principal.name)
    sql = (
        f"SELECT t0.{entity.name}_id AS {entity.name}_id, t{len(chain) - 2}.{relation.column} AS {principal.name}_id "
        f"FROM {entity.plural} t0 {' '.join(joins)}"
    ).strip()
    return {
        "name": f"{entity.name}_owner",
        "description": f"Who owns each {words(entity.name)}: its {words(principal.name)}.",
        "sql": sql,
    }


def paid_fragment(entity: Entity) -> dict[str, Any]:
    """``<e>_paid``: net charges per record and method (refunds subtract; credits are not payments)."""
    e = entity.name
    return {
        "name": f"{e}_paid",
        "description": f"What each {words(e)} has paid, net of refunds, per payment method.",
        "sql": (
            f"SELECT {e}_id, method_id, SUM(CASE kind WHEN 'charge' THEN amount_cents WHEN 'refund' THEN -amount_cents "
            f"ELSE 0 END) AS net_cents FROM {PAYMENTS_TABLE} WHERE {e}_id IS NOT NULL GROUP BY {e}_id, method_id"
        ),
    }


def exists_step(entity: Entity, param: str | None = None, hint: str = "") -> Step:
    param = param or f"{entity.name}_id"
    return {
        "kind": "require",
        "sql": f"SELECT 1 FROM {entity.plural} WHERE {entity.name}_id = :{param}",
        "error": f"No {words(entity.name)} has the id {{{param}}}.{' ' + hint if hint else ''}",
        "rule": f"exists.{entity.name}",
    }


def owned_steps(design: Design, entity: Entity, param: str | None = None) -> list[Step]:
    """EXISTS then ownership by the acting principal (``authority.owned``)."""
    principal = design.principal
    param = param or f"{entity.name}_id"
    p_id = f"{principal.name}_id"
    listing = design.listing_tool(entity)
    where = f"the records of the {words(principal.name)} you are helping"
    return [
        exists_step(entity, param),
        {
            "kind": "require",
            "sql": f"SELECT 1 FROM {entity.name}_owner WHERE {entity.name}_id = :{param} AND {p_id} = :{p_id}",
            "error": f"{words(entity.name).capitalize()} {{{param}}} does not belong to {words(principal.name)} "
            f"{{{p_id}}}. Act only on {where}"
            + (f"; their {words(entity.plural)} are listed by {listing}." if listing else "."),
            "rule": "authority.owned",
        },
    ]


def method_steps(design: Design, amount: str) -> list[Step]:
    """METHOD: the method is the acting principal's and active; stored value covers ``amount`` (SQL)."""
    ledger = design.domain.ledger
    assert ledger is not None
    p_id = f"{design.principal.name}_id"
    stored = ", ".join(f"'{k}'" for k in ledger.stored_value)
    owned: list[Step] = [
        {
            "kind": "require",
            "sql": f"SELECT 1 FROM {METHODS_TABLE} WHERE method_id = :payment_method_id AND {p_id} = :{p_id} "
            "AND status = 'active'",
            "error": f"Payment method {{payment_method_id}} is not an active method of {words(design.principal.name)} "
            f"{{{p_id}}}; get_{design.principal.name} lists their methods.",
            "rule": "pay.method_owned",
        },
    ]
    if not stored:  # no method holds a balance: nothing to cover
        return owned
    return [
        *owned,
        {
            "kind": "require",
            "sql": f"SELECT kind NOT IN ({stored}) OR balance_cents >= {amount} AS ok, money_text(balance_cents) AS "
            f"balance_text, money_text({amount}) AS amount_text FROM {METHODS_TABLE} "
            "WHERE method_id = :payment_method_id",
            "expect": "true",
            "error": "{payment_method_id} holds ${balance_text}; ${amount_text} is needed. Use another method.",
            "rule": "pay.stored_value",
        },
    ]


def charge_steps(design: Design, entity: Entity, id_sql: str, amount: str, note: str) -> list[Step]:
    """CHARGE: a payment row, the stored value reduced, the record's paid sum raised."""
    ledger = design.domain.ledger
    assert ledger is not None
    stored = ", ".join(f"'{k}'" for k in ledger.stored_value) or "''"
    e = entity.name
    return [
        {
            "kind": "exec",
            "sql": f"INSERT INTO {PAYMENTS_TABLE} (payment_id, method_id, {e}_id, kind, amount_cents, created_at, "
            "note) "
            f"VALUES (new_id('{ledger.payment_prefix}'), :payment_method_id, {id_sql}, 'charge', {amount}, now(), "
            f"'{note}')",
        },
        {
            "kind": "exec",
            "sql": f"UPDATE {METHODS_TABLE} SET balance_cents = balance_cents - {amount} WHERE method_id = "
            f":payment_method_id AND kind IN ({stored})",
        },
        {
            "kind": "exec",
            "sql": f"UPDATE {entity.plural} SET amount_paid_cents = amount_paid_cents + {amount} "
            f"WHERE {e}_id = {id_sql}",
            "affects": "one",
            "error": f"The {words(e)} could not be charged.",
        },
    ]


def refund_steps(design: Design, entity: Entity, percent: str, note: str) -> list[Step]:
    """REFUND_PCT: ``percent`` (SQL) of each original method's net payment back to it, in method order;
    binds ``:refund_total``."""
    ledger = design.domain.ledger
    assert ledger is not None
    stored = ", ".join(f"'{k}'" for k in ledger.stored_value) or "''"
    e = entity.name
    share = f"mul_div(net_cents, {percent}, 100)"
    return [
        {
            "kind": "let",
            "name": "refunds",
            "shape": "rows",
            "sql": f"SELECT method_id, {share} AS cents FROM {e}_paid WHERE {e}_id = :{e}_id AND net_cents > 0 "
            f"AND {share} > 0 ORDER BY method_id",
        },
        {
            "kind": "let",
            "name": "refund_total",
            "sql": f"SELECT COALESCE(SUM({share}), 0) FROM {e}_paid WHERE {e}_id = :{e}_id AND net_cents > 0",
        },
        {
            "kind": "for_each",
            "over": "refunds",
            "as": "r",
            "steps": [
                {
                    "kind": "exec",
                    "sql": f"INSERT INTO {PAYMENTS_TABLE} (payment_id, method_id, {e}_id, kind, amount_cents, "
                    f"created_at, note) VALUES (new_id('{ledger.payment_prefix}'), :r_method_id, :{e}_id, 'refund', "
                    f":r_cents, now(), '{note}')",
                },
                {
                    "kind": "exec",
                    "sql": f"UPDATE {METHODS_TABLE} SET balance_cents = balance_cents + :r_cents WHERE method_id = "
                    f":r_method_id AND kind IN ({stored})",
                },
            ],
        },
    ]


def difference_steps(design: Design, entity: Entity, diff: str, note: str) -> list[Step]:
    """DIFF: settle a price difference ``diff`` (SQL, cents; positive: owed by the principal) on the chosen
    ``:payment_method_id``: METHOD for the charge (owned and active whatever the sign; stored value covers a
    positive difference), a refund only to a method that paid at least that much for the record (so no
    method's net payment for it goes below zero, and a later refund by tiers never returns more than was
    paid), then the payment row and the stored value. The record's paid sum is the caller's to update."""
    ledger = design.domain.ledger
    assert ledger is not None
    stored = ", ".join(f"'{k}'" for k in ledger.stored_value) or "''"
    e = entity.name
    columns = f"payment_id, method_id, {e}_id, kind, amount_cents, created_at, note"
    return [
        *method_steps(design, f"max({diff}, 0)"),
        {
            "kind": "require",
            "sql": f"SELECT {diff} >= 0 OR COALESCE((SELECT SUM(net_cents) FROM {e}_paid WHERE {e}_id = :{e}_id AND "
            f"method_id = :payment_method_id), 0) >= -({diff}) AS ok, money_text(-({diff})) AS refund_text",
            "expect": "true",
            "error": f"A refund of ${{refund_text}} goes back to a method that paid at least that much for "
            f"{words(e)} {{{e}_id}}; {{payment_method_id}} did not. Choose one of the methods that paid for it.",
            "rule": "pay.refund_to_payer",
        },
        {
            "kind": "exec",
            "sql": f"INSERT INTO {PAYMENTS_TABLE} ({columns}) SELECT new_id('{ledger.payment_prefix}'), "
            f":payment_method_id, :{e}_id, 'charge', {diff}, now(), '{note}' WHERE {diff} > 0",
        },
        {
            "kind": "exec",
            "sql": f"INSERT INTO {PAYMENTS_TABLE} ({columns}) SELECT new_id('{ledger.payment_prefix}'), "
            f":payment_method_id, :{e}_id, 'refund', -({diff}), now(), '{note}' WHERE {diff} < 0",
        },
        {
            "kind": "exec",
            "sql": f"UPDATE {METHODS_TABLE} SET balance_cents = balance_cents - ({diff}) WHERE method_id = "
            f":payment_method_id AND kind IN ({stored}) AND {diff} <> 0",
        },
    ]


def credit_steps(design: Design, entity: Entity, amount: str, kind: str, note: str) -> list[Step]:
    """CREDIT: a new stored-value method of ``kind`` (a voucher) for the acting principal holding ``amount``
    (SQL, cents), and a ``credit`` payment row tying it to the record; binds ``:voucher_id``. Credits are not
    payments: the record's paid sum does not change."""
    ledger = design.domain.ledger
    assert ledger is not None
    e, p_id = entity.name, f"{design.principal.name}_id"
    label = METHOD_LABELS.get(kind, words(kind)).capitalize()
    return [
        {"kind": "let", "name": "voucher_id", "sql": f"SELECT new_id('{ledger.prefix}')"},
        {
            "kind": "exec",
            "sql": f"INSERT INTO {METHODS_TABLE} (method_id, {p_id}, kind, label, balance_cents, status) VALUES "
            f"(:voucher_id, :{p_id}, '{kind}', '{label} ' || substr(:voucher_id, -4), {amount}, 'active')",
        },
        {
            "kind": "exec",
            "sql": f"INSERT INTO {PAYMENTS_TABLE} (payment_id, method_id, {e}_id, kind, amount_cents, created_at, "
            f"note) VALUES (new_id('{ledger.payment_prefix}'), :voucher_id, :{e}_id, 'credit', {amount}, now(), "
            f"'{note}')",
        },
    ]


def price_let(design: Design, pricing_id: str, entity: Entity, name: str = "price") -> Step:
    """The §3.3 formula as one row-``let`` binding ``:{name}_unit_cents`` … ``:{name}_total_cents``. Paths
    name entities related to ``entity``: they are read through the tool's ``<relation>_id`` parameters,
    inputs through the parameters of the same name."""
    pricing = design.domain.pricing[pricing_id]
    if pricing.unit.column:
        target, column = pricing.unit.column.split(".")
        unit = (
            f"(SELECT {column} FROM {design.entity(target).plural} WHERE {target}_id = :{_column_to(entity, target)})"
        )
    else:
        unit = str(pricing.unit.cents)
    quantity = f":{pricing.quantity.input}" if pricing.quantity.input else str(pricing.quantity.const)
    permille = "1000"
    if pricing.multiplier:
        cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in pricing.multiplier.permille.items())
        permille = f"CASE :{pricing.multiplier.by} {cases} ELSE 1000 END"
    percent = "0"
    if pricing.discount:
        target, column = pricing.discount.by.split(".")
        cases = " ".join(f"WHEN '{k}' THEN {v}" for k, v in pricing.discount.percent.items())
        source = (
            f"(SELECT {column} FROM {design.entity(target).plural} WHERE {target}_id = :{_column_to(entity, target)})"
        )
        percent = f"CASE {source} {cases} ELSE 0 END"
    fee, tax = pricing.fee_cents, pricing.tax_bp
    sql = (
        f"WITH s AS (SELECT {unit} AS unit, {quantity} AS qty, {permille} AS permille, {percent} AS pct), "
        "b AS (SELECT unit, qty, mul_div(unit * qty, permille, 1000) AS base, pct FROM s), "
        f"d AS (SELECT unit, qty, base, mul_div(base, pct, 100) AS discount, base - mul_div(base, pct, 100) + {fee} "
        "AS subtotal FROM b) "
        "SELECT unit AS unit_cents, qty AS quantity, base AS base_cents, discount AS discount_cents, "
        f"{fee} AS fee_cents, mul_div(subtotal, {tax}, 10000) AS tax_cents, "
        f"subtotal + mul_div(subtotal, {tax}, 10000) AS total_cents FROM d"
    )
    return {"kind": "let", "name": name, "shape": "row", "sql": sql}


def _column_to(entity: Entity, target: str) -> str:
    """The parameter holding the id of ``target`` for an operation on ``entity``."""
    for relation in entity.relations:
        if relation.to == target:
            return relation.column
    return f"{target}_id"
