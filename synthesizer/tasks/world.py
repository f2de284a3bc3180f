"""What task families read of an environment: its people and their records, the tools by role, how a
record is described in words the user knows, and the distractors a task's world adds.

A family never reads the catalog or the spec directly: it asks the :class:`World` (the design's roles
through :meth:`World.tool`, the customer's records through :meth:`World.records`). Worlds of the new
vocabulary (principals, intent operations, policy-only rules) plug in here: a principal replaces
``customer``, an intent operation is one more role :meth:`World.tool` finds.
"""

from __future__ import annotations

import importlib
import random
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from servers import Environment
from servers.clients import schema_value
from servers.spec import Check, GoldCall, InsertRows, StateChange, UpdateRows, UserScenario

from ..catalog import Entity
from ..errors import SynthesisError
from ..modeling import Design, p_
from ..money import PriceBreakdown, mul_div
from ..naming import words
from ..oracle import net_by_method, price_of, refund_of
from ..seeding import ValueMaker
from . import wording

__all__ = ["World", "Draft", "Ownership", "Refund", "literal", "invariant_checker"]


def invariant_checker() -> Any:
    """``synthesizer.invariants.violations(env, state) -> dict[str, int]`` when that module exists, else None."""
    try:
        module = importlib.import_module("synthesizer.invariants")
    except ImportError:
        return None
    return getattr(module, "violations", None)


_SECOND_FACTS = ("date_of_birth", "email", "phone", "phone_number", "postcode", "zip_code", "member_number")


_NAMES = ("name", "person_name", "company")


def known_dates(entity: Entity) -> list[str]:
    """The entity's dates a user knows (a departure, an appointment's start), not the system's stamps."""
    stamps = {t.stamp for t in entity.lifecycle.transitions} if entity.lifecycle else set()
    return [
        a.name
        for a in entity.attributes
        if a.type in ("date", "datetime")
        and a.name not in stamps
        and a.name not in ("created_at", "updated_at")
        and (
            a.generator != "none"
            or (a.name.endswith(("_at", "_on", "_date")) and not a.name.endswith(("ed_at", "ed_on")))
        )
    ]


def literal(value: Any) -> str:
    """A value as an SQL literal for a check."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass
class Draft:
    """A task before the gates: the words, the world changes, the gold, and what the answer must say."""

    family: str
    template: str
    who: str
    request: str
    user: UserScenario
    gold: list[GoldCall]
    changes: list[StateChange] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)  # what the final message must state
    wrong: list[str] = field(default_factory=list)  # what it must not state (a namesake's value)
    forbidden: list[GoldCall] = field(default_factory=list)  # a refusal's forbidden act (the tools allow it)
    checks: list[Check] = field(default_factory=list)  # checks besides those the gold diff gives
    counts: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # (table, where, field, state, what)
    tags: list[str] = field(default_factory=list)
    person: str = ""  # the customer's id: a person's tasks stay in one split
    other: GoldCall | None = None  # a conditional's other branch (the act the state does not call for)

    @property
    def instruction(self) -> str:
        return f"{self.who} {self.request}".strip()


@dataclass(frozen=True)
class Refund:
    """What cancelling a record now would give back, by the oracle: the tier's percent, the amount per
    method, what was paid, and the seconds left before the record's moment."""

    percent: int
    split: dict[str, int]
    paid: int
    secs_left: int

    @property
    def total(self) -> int:
        return sum(self.split.values())


@dataclass(frozen=True)
class Ownership:
    """How a kind of record belongs to the customer: directly (``middle`` None) or through a parent."""

    customer: Entity
    child: Entity
    middle: Entity | None
    column: str  # the child's column naming its parent (the customer, or the middle record)
    up: str | None  # the middle's column naming the customer


class World:
    """The environment as task families see it, over one seed state read once."""

    def __init__(self, env: Environment, design: Design, rng: random.Random) -> None:
        self.env = env
        self.design = design
        self.rng = rng
        state = env.new_state()
        try:
            self.rows = {e.name: state.rows(e.plural) for e in design.entities}
        finally:
            state.close()
        self.tools = set(env.tool_names)
        self.values = ValueMaker(design)
        self.fresh: Counter[str] = Counter()
        names = {e.name for e in design.entities}
        customer = design.domain.customer_entity()
        self.customer: Entity | None = design.entity(customer.name) if customer.name in names else None
        self._refunds: dict[tuple[str, Any], Refund] = {}
        self.ledger: dict[str, list[dict[str, Any]]] = {}  # world designs: payment methods and payments
        if design.world:
            state = env.new_state()
            try:
                self.ledger = {t: state.rows(t) for t in ("payment_methods", "payments") if t in env.primary_keys}
            finally:
                state.close()
        self.invariants = invariant_checker()
        self.baseline: dict[str, int] = {}
        if self.invariants is not None:
            seed_state = env.new_state()
            try:
                self.baseline = self.invariants(env, seed_state)
            finally:
                seed_state.close()

    def keeps(self, changes: list[StateChange]) -> bool:
        """Whether the seed with ``changes`` applied loads and breaks no invariant the seed keeps: distractors
        are real records, as coherent as the rest of the world."""
        try:
            template = self.env.template.derive([(f"distractor {i}", c) for i, c in enumerate(changes)])
        except Exception:
            return False
        if self.invariants is None:
            return True
        state = template.copy()
        try:
            found = self.invariants(self.env, state)
        finally:
            state.close()
        return all(count <= self.baseline.get(name, 0) for name, count in found.items())

    # -- tools -----------------------------------------------------------------------------------

    def tool(self, kind: str, entity: str, *, relation: str | None = None, transition: str | None = None) -> str | None:
        """The tool with this role. Worlds of the new vocabulary name roles by intent: a listing of the
        principal's own records (``list_owned``) stands for ``list_for`` the customer, and an intent
        operation carrying a transition (``cancel``) for the ``transition`` role."""
        name = self.design.tool(kind, entity, relation=relation, transition=transition)
        if name in self.tools:
            return name
        for tool, role in sorted(self.design.roles.items()):
            if tool not in self.tools or role.entity != entity:
                continue
            if kind == "list_for" and role.kind == "list_owned" and self.customer and relation == self.customer.name:
                return tool
            if kind == "transition" and transition and role.transition == transition and role.kind != "transition":
                return tool
            if (
                kind == "transition"
                and transition
                and self.design.world
                and role.kind == "transition"
                and role.transition == transition
                and role.by == "principal"
            ):
                return tool  # a lifecycle step the principal asks for (check in), ownership-checked
            if kind == "update" and self.design.world and role.kind == "update" and role.by == "principal":
                return tool  # a declared update op the principal may ask for (update_contact, not set_loyalty_tier)
        return None

    def requestable(self, entity: str, transition: str) -> bool | None:
        """Whether the customer may ask for this step: the world's word when it has principals (an intent
        operation ``by`` the principal), else None (the synthesizer judges by the verb)."""
        roles = [r for t, r in self.design.roles.items() if t in self.tools and r.entity == entity]
        if not any(getattr(r, "by", None) for r in roles):
            return None
        return any(r.transition == transition and getattr(r, "by", None) == "principal" for r in roles)

    def principal_arguments(self, tool: str, person: dict[str, Any]) -> dict[str, Any]:
        """The customer's id, for a tool that acts for the person being helped (new-vocabulary worlds)."""
        if self.customer is None:
            return {}
        key = f"{self.customer.name}_id"
        return {key: person[key]} if key in self.env.tools[tool].input_schema.get("properties", {}) else {}

    def need(self, kind: str, entity: str, *, relation: str | None = None, transition: str | None = None) -> str:
        name = self.tool(kind, entity, relation=relation, transition=transition)
        if name is None:
            raise SynthesisError(f"{self.design.env_id} has no {kind} tool for {entity} ({relation or transition})")
        return name

    def is_write(self, tool: str) -> bool:
        return tool in self.env.tools and self.env.tools[tool].tool.kind == "write"

    def trial(self, calls: list[GoldCall], changes: list[StateChange] | None = None) -> list[Any] | None:
        """Each call's result on the seed (plus ``changes``), or None when the world cannot take the changes."""
        try:
            template = self.env.template.derive([(f"trial {i}", c) for i, c in enumerate(changes or [])])
        except Exception:
            return None
        replay = self.env.replay_gold(template, calls)
        try:
            return list(replay.results)
        finally:
            replay.close()

    # -- intent operations (world designs) -------------------------------------------------------

    def ops(self, kind: str) -> list[tuple[Any, str]]:
        """The declared operations of ``kind`` a customer may ask for, each with its tool (world designs only:
        a legacy design has none, and asking draws nothing from the rng)."""
        if not self.design.world:
            return []
        role = self.design.domain.agent.role if self.design.domain.agent else "agent"
        found = []
        for op in self.design.domain.operations:
            tool = self.design.op_tool(op.name)
            if op.kind == kind and tool in self.tools and op.expose == "tool" and op.by_or_default(role) == "principal":
                found.append((op, tool))
        return found

    @property
    def now(self) -> str:
        return self.design.clock.strftime("%Y-%m-%d %H:%M:%S")

    def methods(self, person: dict[str, Any]) -> list[dict[str, Any]]:
        """The person's active payment methods (world designs with a ledger)."""
        c = self.customer
        if c is None:
            return []
        key = person[f"{c.name}_id"]
        return [
            m
            for m in self.ledger.get("payment_methods", [])
            if m.get(f"{c.name}_id") == key and m["status"] == "active"
        ]

    def oracle_state(self, changes: list[StateChange] | None = None) -> Any:
        """A copy of the seed (plus ``changes``) for the oracle to read; the caller closes it."""
        template = self.env.template.derive([(f"oracle {i}", c) for i, c in enumerate(changes or [])])
        return template.copy()

    def price(
        self, pricing: str, entity: Entity, arguments: dict[str, Any], changes: list[StateChange] | None = None
    ) -> PriceBreakdown:
        """The formula's amounts for a sale, recomputed by the independent oracle on the seed's rows (never by
        calling the tool)."""
        state = self.oracle_state(changes)
        try:
            with state.mode("internal"):
                return price_of(self.design, state.conn, pricing, entity, arguments)
        finally:
            state.close()

    def refund(self, op: Any, record: dict[str, Any]) -> Refund | None:
        """What cancelling ``record`` now would give back, by the oracle (None when ``op`` refunds nothing)."""
        if op.refund is None:
            return None
        from ..operations.cancel import tier_hours
        from ..oracle import seconds_between

        entity = self.design.entity(op.entity)
        key = (op.name, record[f"{entity.name}_id"])
        if key not in self._refunds:
            state = self.oracle_state()
            try:
                with state.mode("internal"):
                    net = net_by_method(state.conn, entity, record[f"{entity.name}_id"], self.now)
            finally:
                state.close()
            at = str(record[op.refund.at])
            percent, split = refund_of(op.refund, tier_hours(self.design, op), at, self.now, net)
            self._refunds[key] = Refund(percent, split, sum(net.values()), seconds_between(at, self.now))
        return self._refunds[key]

    def tier_edges(self, op: Any) -> list[int]:
        """The refund tiers' boundaries, in seconds before the moment."""
        from ..operations.cancel import tier_hours

        return [h * 3600 for h in tier_hours(self.design, op).values()]

    @staticmethod
    def share(cents: int, percent: int) -> int:
        return mul_div(cents, percent, 100)

    # -- people and their records ----------------------------------------------------------------

    def ownerships(self) -> list[Ownership]:
        """Every kind of record the customer owns, directly or one level down, that the tools can list."""
        if self.customer is None:
            return []
        c = self.customer
        found = []
        for child in self.design.entities:
            for rel in child.relations:
                if rel.required and rel.to == c.name and self.tool("list_for", child.name, relation=c.name):
                    found.append(Ownership(c, child, None, rel.column, None))
        for direct in list(found):
            middle = direct.child
            for child in self.design.entities:
                for rel in child.relations:
                    if rel.required and rel.to == middle.name and child.name != c.name:
                        if self.tool("list_for", child.name, relation=middle.name):
                            found.append(Ownership(c, child, middle, rel.column, direct.column))
        return found

    def row(self, entity: Entity | str, key: Any) -> dict[str, Any] | None:
        name = entity if isinstance(entity, str) else entity.name
        return next((r for r in self.rows[name] if r[f"{name}_id"] == key), None)

    def owner_of(self, own: Ownership, record: dict[str, Any]) -> dict[str, Any] | None:
        parent = record.get(own.column)
        if own.middle is None:
            return self.row(own.customer, parent)
        middle = self.row(own.middle, parent)
        return self.row(own.customer, middle.get(own.up)) if middle and own.up else None

    def records(self, own: Ownership, person: dict[str, Any]) -> list[dict[str, Any]]:
        """All of ``person``'s records of this kind (every state)."""
        key = person[f"{own.customer.name}_id"]
        if own.middle is None:
            return [r for r in self.rows[own.child.name] if r.get(own.column) == key]
        parents = {m[f"{own.middle.name}_id"] for m in self.rows[own.middle.name] if m.get(own.up) == key}
        return [r for r in self.rows[own.child.name] if r.get(own.column) in parents]

    def reach(self, own: Ownership, person: dict[str, Any], record: dict[str, Any] | None = None) -> list[GoldCall]:
        """The reads that bring ``person``'s records of this kind into view: the person's lookup, then the
        listings down to the record's parent (every parent, when no record is named)."""
        c = own.customer
        key = person[f"{c.name}_id"]
        calls = [self.lookup(person)]
        if own.middle is None:
            listing = self.need("list_for", own.child.name, relation=c.name)
            calls.append(GoldCall(tool=listing, arguments={own.column: key}))
            return calls
        calls.append(GoldCall(tool=self.need("list_for", own.middle.name, relation=c.name), arguments={own.up: key}))
        parents = [record[own.column]] if record else sorted({r[own.column] for r in self.records(own, person)})
        listing = self.need("list_for", own.child.name, relation=own.middle.name)
        calls += [GoldCall(tool=listing, arguments={own.column: p}) for p in parents]
        return calls

    def lookup(self, person: dict[str, Any]) -> GoldCall:
        c = self.customer
        assert c is not None
        label = person[c.label]
        identify = next(
            (
                t
                for t, r in sorted(self.design.roles.items())
                if t in self.tools and r.kind == "identify" and r.entity == c.name
            ),
            None,
        )
        if identify is not None:
            fact = self.second_fact()
            params = self.env.tools[identify].input_schema.get("properties", {})
            arguments = {p_(c.label): label} if p_(c.label) in params else {}
            if fact and fact in params and person.get(fact):
                arguments[fact] = person[fact]
            return GoldCall(tool=identify, arguments=arguments)
        find = self.tool("find_by_label", c.name)
        if find is not None and self.rng.random() < 0.5:
            return GoldCall(tool=find, arguments={p_(c.label): label})
        return GoldCall(tool=self.need("search", c.name), arguments={"query": label})

    def second_fact(self) -> str | None:
        c = self.customer
        if c is None:
            return None
        principal = next((p for p in self.design.domain.principals if p.entity == c.name), None)
        for key_set in principal.identify_by if principal else []:  # what find_<p> takes with the name
            if c.label in key_set and len(key_set) == 2:
                return next(name for name in key_set if name != c.label)
        attrs = {a.name for a in c.attributes}
        found = next((name for name in _SECOND_FACTS if name in attrs), None)
        if found is None:  # any fact of their own a person would know: a start date, an address
            found = next(
                (
                    a.name
                    for a in c.attributes
                    if a.name != c.label
                    and a.type in ("date", "text")
                    and not a.enum
                    and a.generator not in ("none", "choice", "sentence", "words", "catch_phrase")
                ),
                None,
            )
        return found

    def identity(self, person: dict[str, Any]) -> tuple[str, dict[str, str]]:
        """How the user introduces themselves, and what they would tell an agent who asks."""
        c = self.customer
        assert c is not None
        fact = self.second_fact()
        name = str(person[c.label])
        known = {"name": name}
        value = person.get(fact) if fact else None
        if fact and value:
            known[words(fact)] = str(value)
        return wording.introduce(self.rng, name, fact, value), known

    def scenario(self, person: dict[str, Any], known: dict[str, str], goal: str, **more: Any) -> UserScenario:
        c = self.customer
        assert c is not None
        role = words(c.name)
        return UserScenario(
            persona=wording.persona(self.rng, str(person[c.label]), role, self.design.name),
            known=known,
            unknown=["internal ids and codes", "the business rules"],
            goal=goal,
            **more,
        )

    # -- describing a record in the user's words -------------------------------------------------

    def descriptors(self, own: Ownership, record: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """(kind, phrase, key) facts a user knows about a record: its day, what it is, who or what it is
        with, its amount. ``key`` is compared across records to see whether the phrase picks one out."""
        entity = own.child
        found: list[tuple[str, str, Any]] = []
        dates = known_dates(entity)
        for attr in entity.attributes:
            value = record.get(attr.name)
            if value in (None, "") or attr.name not in dates:
                continue
            if attr.type == "datetime":
                found.append(("when", f"on {wording.human_datetime(value)}", str(value)[:16]))
                found.append(("day", f"on {wording.human_date(value)}", str(value)[:10]))
            elif attr.type == "date":
                found.append(("day", f"from {wording.human_date(value)}", str(value)[:10]))
        label = entity.label
        value = record.get(label)
        attr = next((a for a in entity.attributes if a.name == label), None)
        if attr and value and not attr.generator.startswith("code") and not attr.unique:
            if attr.generator in _NAMES:
                found.append(("label", f"for {value}", value))
            elif (attr.generator == "choice" or attr.enum) and not any(ch.isdigit() for ch in str(value)):
                found.append(("kind", f"{value}", value))
        for rel in entity.relations:
            if rel.column == own.column or not record.get(rel.column):
                continue
            target = self.design.entity(rel.to)
            other = self.row(target, record[rel.column])
            if other is None:
                continue
            tattr = next((a for a in target.attributes if a.name == target.label), None)
            if tattr and tattr.generator in _NAMES and other.get(target.label):
                found.append(("with", f"with {other[target.label]}", other[target.label]))
                continue
            route = [other.get("origin"), other.get("destination")]
            if self.design.world and all(route):  # "on the flight from Denver to Atlanta", not "the DEN flight"
                trip = f"from {wording.place(route[0])} to {wording.place(route[1])}"
                found.append(("with", f"on the {words(target.name)} {trip}", tuple(route)))
                continue
            choice = next((a for a in target.attributes if a.enum and a.name != "status" and other.get(a.name)), None)
            if choice is not None:
                found.append(("with", f"on the {other[choice.name]} {words(target.name)}", other[choice.name]))
        money_attr = next(
            (a for a in entity.attributes if a.generator.startswith("money") and record.get(a.name)), None
        )
        if money_attr is not None and "price" not in money_attr.name and "weight" not in money_attr.name:
            amount = record[money_attr.name]
            shown = amount / 100 if money_attr.type == "money" else amount  # money columns hold cents
            found.append(("amount", f"for {wording.money(shown)}", amount))
        return found

    def describe(self, own: Ownership, record: dict[str, Any], among: list[dict[str, Any]]) -> str | None:
        """A phrase naming ``record`` among ``among`` (the user's other records of the kind) by what the
        user knows, or None when nothing they know tells it apart."""
        facts = self.descriptors(own, record)
        others = [r for r in among if r is not record and r[f"{own.child.name}_id"] != record[f"{own.child.name}_id"]]
        others_facts = [{(k, key) for k, _, key in self.descriptors(own, r)} for r in others]
        noun = words(own.child.name)
        self.rng.shuffle(facts)
        for size in (1, 2, 3):
            for combo in combinations(facts, size):
                kinds = [k for k, _, _ in combo]
                if len(set(kinds)) < size or ("when" in kinds and "day" in kinds):
                    continue
                mine = {(k, key) for k, _, key in combo}
                if any(mine <= theirs for theirs in others_facts):
                    continue
                kind = next((p for k, p, _ in combo if k == "kind"), None)
                rest = " ".join(p for k, p, _ in combo if k != "kind")
                head = f"my {kind} {noun}" if kind else f"my {noun}"
                return f"{head} {rest}".strip()
        return None

    # -- distractors -----------------------------------------------------------------------------

    def fresh_id(self, entity: Entity) -> str:
        self.fresh[entity.name] += 1
        return f"{entity.id_prefix}-{900 + self.fresh[entity.name]:04d}"

    def namesake(
        self, person: dict[str, Any], *, first: bool = False
    ) -> tuple[dict[str, Any], list[StateChange]] | None:
        """Another customer with the same name and a different second fact. Mostly (always with ``first``) an
        existing customer listed before the real one takes the name, so the first search hit is the wrong
        person; otherwise a new one is added. No marker in any value: they differ as two real people would."""
        c = self.customer
        fact = self.second_fact()
        if c is None or fact is None or any(a.name == c.label and a.unique for a in c.attributes):
            return None  # a unique label (a card number) has no namesake
        key = f"{c.name}_id"
        earlier = [r for r in self.rows[c.name] if r[key] < person[key] and r[c.label] != person[c.label]]
        if earlier and (first or self.rng.random() < 0.6):
            other = dict(self.rng.choice(earlier))
            changes: dict[str, Any] = {c.label: person[c.label]}
            if other.get(fact) == person.get(fact):
                return None
            for attr in c.attributes:
                if attr.name == "email" and other.get("email"):
                    changes["email"] = self._email(str(person[c.label]), other["email"])
            other.update(changes)
            return other, [UpdateRows(op="update", table=c.plural, where={key: other[key]}, set=changes)]
        twin = dict(person)
        twin[key] = self.fresh_id(c)
        for attr in c.attributes:
            value = person.get(attr.name)
            if value is None:
                continue
            if attr.name == fact and attr.type == "date":
                year = int(str(value)[:4]) + self.rng.choice([-11, -6, -3, 4, 8])
                day = str(value)[5:]
                twin[attr.name] = f"{year:04d}-{'02-28' if day == '02-29' else day}"
            elif attr.name == "email":
                twin[attr.name] = self._email(str(person[c.label]), str(value))
            elif attr.name == fact or attr.unique:
                twin[attr.name] = self._variant(str(value))
        return twin, [InsertRows(op="insert", table=c.plural, rows=[twin])]

    def _email(self, name: str, current: str) -> str:
        first, *rest = name.lower().replace("'", "").split()
        last = rest[-1] if rest else "mail"
        domain = current.split("@")[-1] if "@" in current else "example.com"
        return f"{first[0]}{last}{self.rng.randint(10, 98)}@{domain}"

    def _variant(self, value: str) -> str:
        digits = [i for i, ch in enumerate(value) if ch.isdigit()]
        if not digits:
            return value + str(self.rng.randint(2, 9))
        chars = list(value)
        for i in digits[-3:]:
            chars[i] = str((int(chars[i]) + self.rng.randint(1, 8)) % 10)
        return "".join(chars)

    def look_alike(self, own: Ownership, record: dict[str, Any], twin: dict[str, Any]) -> list[StateChange]:
        """A record of the namesake's like the target (same kind, same day or same counterpart), so the
        description fits both people and only the person check tells them apart."""
        if own.middle is not None:
            return []
        copy = dict(record)
        entity = own.child
        copy[f"{entity.name}_id"] = self.fresh_id(entity)
        copy[own.column] = twin[f"{own.customer.name}_id"]
        for attr in entity.attributes:
            if attr.unique and copy.get(attr.name) is not None:
                copy[attr.name] = self._variant(str(copy[attr.name]))
        if self._breaks_uniqueness(own, copy) or self._over_limit(own, copy):
            return []
        return [InsertRows(op="insert", table=entity.plural, rows=[copy])]

    def _over_limit(self, own: Ownership, new: dict[str, Any]) -> bool:
        """Whether one more record like ``new`` takes its owner past a ``limit_per_owner`` rule."""
        entity = own.child
        for ref in self.design.refs:
            rule = ref.rule
            if rule.kind != "limit_per_owner" or rule.entity != entity.name or entity.lifecycle is None:
                continue
            column = next((r.column for r in entity.relations if r.to == rule.owner), None)
            if column is None or new.get(entity.lifecycle.field) not in rule.states:
                continue
            held = sum(
                1
                for r in self.rows[entity.name]
                if r.get(column) == new.get(column) and r.get(entity.lifecycle.field) in rule.states
            )
            if held + 1 > (ref.value or 0):
                return True
        return False

    def decoy(self, own: Ownership, record: dict[str, Any]) -> tuple[dict[str, Any], UpdateRows] | None:
        """Another person's record, listed before the target, made to share what the user says about the
        target (its name, its counterpart, its day) and in the same state: a search by any of those facts
        finds it first, and acting on it is possible, and wrong."""
        entity = own.child
        key = f"{entity.name}_id"
        life = entity.lifecycle
        owner = self.owner_of(own, record)
        if owner is None or own.middle is not None:
            return None
        mine = owner[f"{own.customer.name}_id"]
        earlier = [
            r
            for r in self.rows[entity.name]
            if r[key] < record[key]
            and r.get(own.column) != mine
            and (life is None or r.get(life.field) == record.get(life.field))
        ]
        if not earlier:
            return None
        decoy = dict(self.rng.choice(earlier))
        shared: dict[str, Any] = {}
        for attr in entity.attributes:
            if attr.unique or attr.generator == "none":
                continue
            if attr.name == entity.label or attr.type in ("date", "datetime"):
                shared[attr.name] = record.get(attr.name)
        for rel in entity.relations:
            if rel.column != own.column and record.get(rel.column) is not None:
                shared[rel.column] = record[rel.column]
        shared = {k: v for k, v in shared.items() if decoy.get(k) != v}
        if not shared:
            return None
        decoy.update(shared)
        if self._breaks_uniqueness(own, decoy):
            return None
        return decoy, UpdateRows(op="update", table=entity.plural, where={key: decoy[key]}, set=shared)

    def _breaks_uniqueness(self, own: Ownership, changed: dict[str, Any]) -> bool:
        """Whether ``changed`` would give its owner two open records with one counterpart where a
        ``unique_active`` rule allows one (the seed keeps the rules; so must a decoy)."""
        entity = own.child
        key = f"{entity.name}_id"
        for ref in self.design.refs:
            rule = ref.rule
            if rule.kind != "unique_active" or rule.entity != entity.name or entity.lifecycle is None:
                continue
            owner_col = next((r.column for r in entity.relations if r.to == rule.owner), None)
            target_col = next((r.column for r in entity.relations if r.to == rule.target), None)
            if owner_col is None or target_col is None or changed.get(entity.lifecycle.field) not in rule.states:
                continue
            if any(
                r[key] != changed[key]
                and r.get(owner_col) == changed.get(owner_col)
                and r.get(target_col) == changed.get(target_col)
                and r.get(entity.lifecycle.field) in rule.states
                for r in self.rows[entity.name]
            ):
                return True
        return False

    def value(self, entity: Entity, name: str, schema: dict[str, Any]) -> Any:
        attr = next((a for a in entity.attributes if p_(a.name) == name), None)
        if attr is not None and attr.generator != "none":
            value = self.values.value(attr, True if attr.type in ("date", "datetime") else None, entity.name)
            return value[:16] if attr.type == "datetime" and isinstance(value, str) else value
        return schema_value(schema, self.rng, name=name, integers=(1, 4), numbers=(10, 200))
