"""Stage 6, tasks: chains of tool calls along the dependency graph, turned into verified tasks.

Each task starts from a seed chain — identify the person (a lookup by name), look up what the
request concerns, act — drawn from one of a few families (a lifecycle step on one of their
records, a new record, a change of details, two actions, an action then a question, and policy
traps where the obvious target breaks a rule and an acceptable alternative must be found). The
task's world adds **distractors**: a namesake with a different date of birth or email and a
look-alike record, records of the same person in other states. The instruction is written from
the user's side (names, dates, titles — never ids). The gold chain is executed; checks are
derived from what it changed; an answer is taken from a final read; and the four gates are
applied in process. Drafts that fail are discarded and counted.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from servers import Environment, Task
from servers.clients import GateTrial, schema_value
from servers.spec import Answer, Check, GoldCall, InsertRows, UserScenario

from .catalog import Entity
from .errors import SynthesisError
from .modeling import Design, p_
from .seeding import ValueMaker

__all__ = ["SynthesisStats", "synthesize_tasks", "checks_from_diff"]

GREETINGS = ["Hi,", "Hello,", "Good morning,", "Hey there,", "Hi there,", ""]
REQUESTABLE = {
    "cancel",
    "pay",
    "check",
    "confirm",
    "return",
    "renew",
    "withdraw",
    "close",
    "submit",
    "reactivate",
    "pause",
    "resume",
    "upgrade",
    "downgrade",
    "accept",
    "decline",
    "extend",
    "dispute",
    "redeem",
    "activate",
    "suspend",
    "reschedule",
    "refund",
    "approve",
    "settle",
    "release",
    "unlock",
    "archive",
    "freeze",
    "unfreeze",
    "collect",
    "claim",
    "void",
    "complete",
    "finalize",
    "report",
    "hold",
    "request",
    "book",
    "reserve",
    "start",
    "stop",
}
"""First words of transitions a customer would ask for themselves (not 'mark_no_show', 'ship', 'assign')."""
_GATE_FAILURES = {
    "gold": "gold_below_one",
    "deterministic": "nondeterministic",
    "noop": "initial_passes",
    "initial": "initial_passes",
    "obedient": "obedient_passes",
}
"""The synthesis statistics' name for each gate a finished draft can fail (servers.clients.GateResult.failed_gates)."""
IDENTIFY = ["I'm {name}", "this is {name}", "my name is {name}", "{name} here"]


@dataclass
class SynthesisStats:
    attempted: int = 0
    published: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    templates: Counter[str] = field(default_factory=Counter)
    chain_lengths: Counter[int] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "published": self.published,
            "failures": dict(self.failures),
            "families": dict(self.families),
            "templates": dict(self.templates),
            "chain_lengths": {str(k): v for k, v in sorted(self.chain_lengths.items())},
        }


@dataclass
class _Draft:
    family: str
    template: str
    who: str
    request: str
    user: UserScenario
    gold: list[GoldCall]
    changes: list[Any] = field(default_factory=list)
    answer_from_last: str | None = None  # a field of the last call's result to state in the answer
    alternatives: dict[str, Any] = field(default_factory=dict)  # column -> acceptable values (traps)
    forbidden: list[Check] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    @property
    def instruction(self) -> str:
        return f"{self.who} {self.request}"


def _words(name: str) -> str:
    return name.replace("_", " ")


def _continue(sentence: str) -> str:
    """A sentence carried on after "Also, ": lower-cased, but never the pronoun I."""
    return sentence if sentence.startswith(("I ", "I'")) else sentence[0].lower() + sentence[1:]


def _note(schema: Any, name: str, rng: random.Random) -> str:
    """Text for a free-text parameter with no seed generator: a note a customer might leave."""
    return rng.choice(["Please call ahead", "Second floor entrance", "Prefers mornings", "Bring documents"])


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class _Synthesizer:
    def __init__(self, env: Environment, design: Design, graph: nx.DiGraph, seed: int) -> None:
        self.env = env
        self.design = design
        self.graph = graph
        self.rng = random.Random(f"tasks:{design.env_id}:{seed}")
        self.state = env.new_state()
        self.rows = {e.name: self.state.rows(e.plural) for e in design.entities}
        self.tools = set(env.tool_names)
        self.fresh_ids: Counter[str] = Counter()
        self.values = ValueMaker(design)  # the seed generators, for realistic argument values
        self.stats = SynthesisStats()

    # -- tools ---------------------------------------------------------------------------------

    def tool(self, kind: str, entity: str, *, relation: str | None = None, transition: str | None = None) -> str | None:
        """The environment's tool with this role (from the design's roles), or None."""
        name = self.design.tool(kind, entity, relation=relation, transition=transition)
        return name if name in self.tools else None

    def need(self, kind: str, entity: str, *, relation: str | None = None, transition: str | None = None) -> str:
        """The tool with this role, which the modeler always makes for such an entity."""
        name = self.tool(kind, entity, relation=relation, transition=transition)
        if name is None:
            raise SynthesisError(f"{self.design.env_id} has no {kind} tool for {entity} ({relation or transition})")
        return name

    # -- people and records --------------------------------------------------------------------

    def owners(self) -> list[tuple[Entity, Entity]]:
        """(customer, child) pairs: the entity the user is, and each entity that requires one."""
        names = {e.name for e in self.design.entities}
        customer = self.design.domain.customer_entity()
        if customer.name not in names:
            return []
        return [
            (self.design.entity(customer.name), child)
            for child in self.design.entities
            for relation in child.relations
            if relation.required and relation.to == customer.name
        ]

    def second_fact(self, owner: Entity) -> str | None:
        attrs = {a.name: a for a in owner.attributes}
        for name in ("date_of_birth", "email", "phone", "phone_number", "postcode", "member_number"):
            if name in attrs:
                return name
        for attr in owner.attributes:
            if attr.name != owner.label and attr.type in ("date", "text") and not attr.enum:
                return attr.name
        return None

    def fresh_id(self, entity: Entity) -> str:
        self.fresh_ids[entity.name] += 1
        return f"{entity.id_prefix}-{900 + self.fresh_ids[entity.name]:04d}"

    def lookup(self, owner: Entity, row: dict[str, Any]) -> GoldCall:
        label = row[owner.label]
        find = self.tool("find_by_label", owner.name)
        if find is not None and self.rng.random() < 0.5:
            return GoldCall(tool=find, arguments={owner.label: label})
        return GoldCall(tool=self.need("search", owner.name), arguments={"query": label})

    def identity(self, owner: Entity, row: dict[str, Any]) -> tuple[str, dict[str, str]]:
        fact = self.second_fact(owner)
        name = str(row[owner.label])
        known = {"name": name}
        text = self.rng.choice(IDENTIFY).format(name=name)
        if fact and row.get(fact):
            known[_words(fact)] = str(row[fact])
            text += self.rng.choice(
                [
                    f" ({_words(fact)} {row[fact]})",
                    f", {_words(fact)} {row[fact]}",
                    f" — my {_words(fact)} is {row[fact]}",
                ]
            )
        greeting = self.rng.choice(GREETINGS)
        return (f"{greeting} {text}." if greeting else f"{text[0].upper()}{text[1:]}."), known

    def twin(self, owner: Entity, row: dict[str, Any]) -> tuple[dict[str, Any], InsertRows] | None:
        """A namesake: same label, different second fact (the agent must check it)."""
        fact = self.second_fact(owner)
        if fact is None:
            return None
        twin = dict(row)
        twin[f"{owner.name}_id"] = self.fresh_id(owner)
        attr = next(a for a in owner.attributes if a.name == fact)
        if attr.type == "date":
            year = int(str(row[fact])[:4]) + self.rng.choice([-7, -3, 4, 9])
            twin[fact] = f"{year:04d}{str(row[fact])[4:]}"
            if twin[fact][5:] == "02-29":
                twin[fact] = twin[fact][:5] + "02-28"
        else:
            twin[fact] = f"alt.{row[fact]}" if attr.unique or "@" in str(row[fact]) else f"{row[fact]}9"
        for other in owner.attributes:
            if other.unique and other.name != fact and twin.get(other.name) is not None:
                twin[other.name] = f"twin.{twin[other.name]}"
        return twin, InsertRows(op="insert", table=owner.plural, rows=[twin])

    def describe(self, entity: Entity, row: dict[str, Any]) -> str:
        parts = [
            f"the {row[entity.label]} {_words(entity.name)}"
            if entity.label != entity.name
            else f"the {_words(entity.name)}"
        ]
        for attr in entity.attributes:
            if attr.type in ("date", "datetime") and row.get(attr.name) and attr.required:
                value = str(row[attr.name])
                parts.append(f"on {value[:10]}" + (f" at {value[11:16]}" if attr.type == "datetime" else ""))
                break
        for relation in entity.relations:
            target = self.design.entity(relation.to)
            if row.get(relation.column) and target.name not in {r.to for r in entity.relations[:1]}:
                target_row = self.row(target, row[relation.column])
                if target_row:
                    parts.append(f"with {target_row[target.label]}")
                break
        return " ".join(parts)

    def row(self, entity: Entity, key: Any) -> dict[str, Any] | None:
        return next((r for r in self.rows[entity.name] if r[f"{entity.name}_id"] == key), None)

    # -- families ------------------------------------------------------------------------------

    def grandchildren(self) -> list[tuple[Entity, Entity, Entity]]:
        """(customer, middle, child): records one level further down (a claim under the customer's policy)."""
        triples = []
        for customer, middle in self.owners():
            for child in self.design.entities:
                for relation in child.relations:
                    if relation.required and relation.to == middle.name and child.name != customer.name:
                        triples.append((customer, middle, child))
        return triples

    def transition_draft(self, owner_key: tuple[str, Any] | None = None) -> _Draft | None:
        """A lifecycle step on one of the user's records; ``owner_key`` (entity, id) keeps it to one person."""
        options = []
        for owner, child in self.owners():
            if child.lifecycle and self.tool("list_for", child.name, relation=owner.name):
                options += [
                    (owner, None, child, t) for t in child.lifecycle.transitions if t.name.split("_")[0] in REQUESTABLE
                ]
        for owner, middle, child in self.grandchildren():
            if (
                child.lifecycle
                and self.tool("list_for", middle.name, relation=owner.name)
                and self.tool("list_for", child.name, relation=middle.name)
            ):
                options += [
                    (owner, middle, child, t)
                    for t in child.lifecycle.transitions
                    if t.name.split("_")[0] in REQUESTABLE
                ]
        if owner_key is not None:
            options = [o for o in options if o[0].name == owner_key[0]]
        if not options:
            return None
        owner, middle, child, transition = self.rng.choice(options)
        parent = middle or owner
        column = next(r.column for r in child.relations if r.to == parent.name)
        up = next(r.column for r in middle.relations if r.to == owner.name) if middle else None
        ready = [r for r in self.rows[child.name] if r[child.lifecycle.field] in transition.from_states and r[column]]  # type: ignore[union-attr]
        self.rng.shuffle(ready)
        for target in ready if owner_key is not None else ready[:5]:
            parent_row = self.row(parent, target[column])
            owner_row = (
                self.row(owner, parent_row[up]) if (middle and parent_row and parent_row.get(up)) else parent_row
            )
            if owner_row is None or parent_row is None:
                continue
            if owner_key is not None and owner_row[f"{owner.name}_id"] != owner_key[1]:
                continue
            who, known = self.identity(owner, owner_row)
            what = self.describe(child, target)
            if middle:
                what += f" on my {_words(middle.name)} {parent_row[middle.label]}"
            verb = _words(transition.name)
            template = self.rng.randrange(4)
            request = [
                f"Please {verb} {what}.",
                f"Could you {verb} {what} for me?",
                f"I need you to {verb} {what}.",
                f"I'd like to {verb} {what}, please.",
            ][template]
            gold = [self.lookup(owner, owner_row)]
            if middle:
                gold.append(
                    GoldCall(
                        tool=self.need("list_for", middle.name, relation=owner.name),
                        arguments={up: owner_row[f"{owner.name}_id"]},
                    )
                )
            gold += [
                GoldCall(
                    tool=self.need("list_for", child.name, relation=parent.name),
                    arguments={column: parent_row[f"{parent.name}_id"]},
                ),
                GoldCall(
                    tool=self.need("transition", child.name, transition=transition.name),
                    arguments={f"{child.name}_id": target[f"{child.name}_id"]},
                ),
            ]
            draft = _Draft(
                "lifecycle",
                f"lifecycle-{template}",
                who,
                request,
                UserScenario(
                    persona=self.persona(owner_row, owner),
                    known={**known, "request": f"{verb} {what}"},
                    unknown=[f"{_words(owner.name)} id", f"{_words(child.name)} id"],
                ),
                gold,
                tags=[transition.name, child.name],
            )
            if middle is None:
                self.add_distractors(draft, owner, owner_row, child, target, column)
            else:
                pair = self.twin(owner, owner_row)
                if pair:
                    draft.changes.append(pair[1])
            return draft
        return None

    def create_draft(self) -> _Draft | None:
        options = [(o, c) for o, c in self.owners() if c.creatable and self.tool("create", c.name)]
        if not options:
            return None
        owner, child = self.rng.choice(options)
        column = next(r.column for r in child.relations if r.to == owner.name)
        create = self.need("create", child.name)
        schema = self.env.tools[create].input_schema
        for _ in range(8):
            owner_row = self.rng.choice(self.rows[owner.name])
            arguments: dict[str, Any] = {column: owner_row[f"{owner.name}_id"]}
            gold = [self.lookup(owner, owner_row)]
            facts = []
            for relation in child.relations:
                if relation.column == column or relation.column not in schema.get("required", []):
                    continue
                target_entity = self.design.entity(relation.to)
                target_row = self.rng.choice(self.rows[target_entity.name])
                arguments[relation.column] = target_row[f"{relation.to}_id"]
                gold.append(
                    GoldCall(
                        tool=self.need("search", target_entity.name),
                        arguments={"query": target_row[target_entity.label]},
                    )
                )
                facts.append(f"{_words(target_entity.name)}: {target_row[target_entity.label]}")
            for name in schema.get("required", []):
                if name in arguments:
                    continue
                arguments[name] = self.value(child, name, schema["properties"][name])
                facts.append(self.fact_text(name, arguments[name]))
            gold.append(GoldCall(tool=create, arguments=arguments))
            if not self.trial(gold):
                continue
            who, known = self.identity(owner, owner_row)
            template = self.rng.randrange(3)
            what = f"a new {_words(child.name)}"
            details = ", ".join(facts)
            request = [
                f"Please set up {what}: {details}.",
                f"I'd like {what} ({details}).",
                f"Can you add {what} for me? Details: {details}.",
            ][template]
            return _Draft(
                "create",
                f"create-{template}",
                who,
                request,
                UserScenario(
                    persona=self.persona(owner_row, owner), known={**known, "details": details}, unknown=["ids"]
                ),
                gold,
                tags=["create", child.name],
            )
        return None

    def update_draft(self) -> _Draft | None:
        customer = self.design.domain.customer_entity().name
        options = [e for e in self.design.entities if self.tool("update", e.name) and e.name == customer]
        if not options:
            return None
        entity = self.rng.choice(options)
        update = self.need("update", entity.name)
        schema = self.env.tools[update].input_schema
        editable = [n for n in schema["properties"] if n != f"{entity.name}_id"]
        row = self.rng.choice(self.rows[entity.name])
        name = self.rng.choice(editable)
        value = self.value(entity, name, schema["properties"][name])
        if row.get(name) == value:
            return None
        gold = [
            self.lookup(entity, row),
            GoldCall(tool=self.need("get", entity.name), arguments={f"{entity.name}_id": row[f"{entity.name}_id"]}),
            GoldCall(tool=update, arguments={f"{entity.name}_id": row[f"{entity.name}_id"], name: value}),
        ]
        who, known = self.identity(entity, row)
        template = self.rng.randrange(3)
        request = [
            f"Please change my {_words(name)} to {value}.",
            f"My {_words(name)} is now {value}; can you update it?",
            f"Update my {_words(name)} to {value}, please.",
        ][template]
        draft = _Draft(
            "update",
            f"update-{template}",
            who,
            request,
            UserScenario(persona=self.persona(row, entity), known={**known, _words(name): str(value)}, unknown=["ids"]),
            gold,
            tags=["update", entity.name],
        )
        pair = self.twin(entity, row)
        if pair:
            draft.changes.append(pair[1])
        return draft

    def multi_action_draft(self) -> _Draft | None:
        """Two or three lifecycle steps for one person, on different records (and perhaps kinds of
        record): one lookup, then each record found and acted on — chains of 5 to 8 calls."""
        first = self.transition_draft()
        if first is None:
            return None
        owner_call = first.gold[0]
        owner_tool = self.design.roles.get(owner_call.tool)
        owner_entity = self.design.entity(owner_tool.entity) if owner_tool else None
        owner_id = next(iter(first.gold[1].arguments.values()))
        if owner_entity is None:
            return None
        wanted = self.rng.choice([2, 2, 3])
        acted = {(c.tool, tuple(sorted(c.arguments.items()))) for c in first.gold[-1:]}
        for _ in range(4 * wanted):
            if len(acted) >= wanted:
                break
            more = self.transition_draft((owner_entity.name, owner_id))
            if more is None:
                return None
            action = more.gold[-1]
            key = (action.tool, tuple(sorted(action.arguments.items())))
            if key in acted or any(c.arguments == action.arguments for c in first.gold[-1:]):
                continue
            acted.add(key)
            first.gold += [c for c in more.gold[1:] if c not in first.gold]
            first.request += " Also, " + _continue(more.request)
            first.tags += more.tags
        if len(acted) < wanted:
            return None
        first.family, first.template = "multi_action", f"multi{wanted}-" + first.template
        return first

    def answer_draft(self) -> _Draft | None:
        draft = self.transition_draft()
        if draft is None:
            return None
        list_call = draft.gold[-2]
        owner_column, owner_id = next(iter(list_call.arguments.items()))
        child_tool = draft.gold[-1].tool
        role = self.design.roles[child_tool]
        child = self.design.entity(role.entity)
        field_name = child.lifecycle.field  # type: ignore[union-attr]
        transition = next(t for t in child.lifecycle.transitions if t.name == role.transition)  # type: ignore[union-attr]
        draft.gold.append(GoldCall(tool=list_call.tool, arguments={owner_column: owner_id, field_name: transition.to}))
        draft.answer_from_last = "count"
        draft.request += f" Afterwards, how many of my {_words(child.plural)} are {_words(transition.to)}?"
        draft.family, draft.template = "act_then_ask", "ask-" + draft.template
        return draft

    def trap_draft(self) -> _Draft | None:
        """The target the user names breaks a rule a kind offers traps on (an ineligible or exhausted
        related record); another one like it is fine."""
        candidates = [(ref, trap) for ref in self.design.refs if (trap := ref.kind.trap(ref)) is not None]
        self.rng.shuffle(candidates)
        for ref, trap in candidates:
            child = self.design.entity(ref.rule.entity)
            subject = self.design.entity(trap.subject)
            ok = trap.ok
            owners = [owner for owner, kid in self.owners() if kid.name == child.name and owner.name != trap.subject]
            if not owners or self.tool("create", child.name) is None:
                continue
            owner = owners[0]
            enum = next((a for a in subject.attributes if a.enum and a.searchable), None)
            bad = [r for r in self.rows[subject.name] if not ok(r)]
            if not bad or enum is None:
                continue
            blocked = self.rng.choice(bad)
            good = [r for r in self.rows[subject.name] if ok(r) and r[enum.name] == blocked[enum.name]]
            if not good:
                continue
            draft = self.create_draft_for(owner, child, subject, blocked, good, enum.name)
            if draft:
                return draft
        return None

    def create_draft_for(
        self,
        owner: Entity,
        child: Entity,
        subject: Entity,
        blocked: dict[str, Any],
        good: list[dict[str, Any]],
        enum: str,
    ) -> _Draft | None:
        column = next(r.column for r in child.relations if r.to == owner.name)
        subject_column = next(r.column for r in child.relations if r.to == subject.name)
        create = self.need("create", child.name)
        schema = self.env.tools[create].input_schema
        for _ in range(6):
            owner_row = self.rng.choice(self.rows[owner.name])
            choice = good[0]
            arguments: dict[str, Any] = {
                column: owner_row[f"{owner.name}_id"],
                subject_column: choice[f"{subject.name}_id"],
            }
            facts = []
            for name in schema.get("required", []):
                if name not in arguments:
                    if name.endswith("_id"):
                        break
                    arguments[name] = self.value(child, name, schema["properties"][name])
                    facts.append(self.fact_text(name, arguments[name]))
            else:
                gold = [
                    self.lookup(owner, owner_row),
                    GoldCall(tool=self.need("search", subject.name), arguments={"query": blocked[subject.label]}),
                    GoldCall(tool=self.need("search", subject.name), arguments={enum: blocked[enum]}),
                    GoldCall(tool=create, arguments=arguments),
                ]
                if not self.trial(gold):
                    continue
                who, known = self.identity(owner, owner_row)
                details = ", ".join(facts)
                request = (
                    f"I'd like a new {_words(child.name)} with {_words(subject.name)} {blocked[subject.label]} "
                    f"({details}). "
                    f"If that isn't possible, any other {_words(subject.name)} whose {_words(enum)} is "
                    f"{blocked[enum]} is fine."
                )
                draft = _Draft(
                    "policy_trap",
                    "trap-0",
                    who,
                    request,
                    UserScenario(
                        persona=self.persona(owner_row, owner),
                        known={**known, "details": details, "preferred": str(blocked[subject.label])},
                        unknown=["ids", "the rules"],
                    ),
                    gold,
                    tags=["policy-trap", child.name],
                )
                draft.alternatives[subject_column] = [r[f"{subject.name}_id"] for r in good]
                draft.forbidden.append(
                    Check(
                        description=f"Nothing was created with {blocked[subject.label]}",
                        sql=f"SELECT 1 FROM {child.plural} WHERE {subject_column} = "
                        f"{_literal(blocked[f'{subject.name}_id'])} "
                        f"AND {column} = {_literal(owner_row[f'{owner.name}_id'])} AND {child.name}_id NOT IN "
                        f"(SELECT {child.name}_id FROM {child.plural} WHERE {child.name}_id <= "
                        f"{_literal(self.max_id(child))})",
                        expect="none",
                    )
                )
                return draft
        return None

    def max_id(self, entity: Entity) -> str:
        return max((r[f"{entity.name}_id"] for r in self.rows[entity.name]), default="")

    # -- pieces --------------------------------------------------------------------------------

    def persona(self, row: dict[str, Any], entity: Entity) -> str:
        mood = self.rng.choice(
            ["polite and brief", "in a hurry", "chatty", "a little anxious", "precise about details"]
        )
        return f"{row[entity.label]}, a {_words(entity.name)} of {self.design.name}; {mood}."

    def value(self, entity: Entity, name: str, schema: dict[str, Any]) -> Any:
        """A realistic value for a parameter: from the attribute's own seed generator when there is one."""
        attr = next((a for a in entity.attributes if p_(a.name) == name), None)
        if attr is not None and attr.generator != "none":
            value = self.values.value(attr, True if attr.type in ("date", "datetime") else None, entity.name)
            if attr.type == "datetime" and isinstance(value, str):
                value = value[:16]
            return value
        return schema_value(schema, self.rng, name=name, integers=(1, 4), numbers=(10, 200), text=_note)

    def fact_text(self, name: str, value: Any) -> str:
        if isinstance(value, bool):
            value = "yes" if value else "no"
        return f"{_words(name.removesuffix('_value'))}: {value}"

    def add_distractors(
        self,
        draft: _Draft,
        owner: Entity,
        owner_row: dict[str, Any],
        child: Entity,
        target: dict[str, Any],
        column: str,
    ) -> None:
        pair = self.twin(owner, owner_row)
        if pair is None:
            return
        twin_row, insert_owner = pair
        draft.changes.append(insert_owner)
        look_alike = dict(target)
        look_alike[f"{child.name}_id"] = self.fresh_id(child)
        look_alike[column] = twin_row[f"{owner.name}_id"]
        for attr in child.attributes:
            if attr.unique and look_alike.get(attr.name) is not None:
                look_alike[attr.name] = f"twin.{look_alike[attr.name]}"
        draft.changes.append(InsertRows(op="insert", table=child.plural, rows=[look_alike]))

    def trial(self, gold: list[GoldCall]) -> bool:
        """Every call of ``gold`` succeeds on the seed state."""
        replay = self.env.replay_gold(self.env.template, gold)
        replay.close()
        return replay.first_error() is None

    # -- verification --------------------------------------------------------------------------

    def signature(self, gold: list[GoldCall], asks: bool) -> Any:
        """What a task does: its write calls, and what it asks (two wordings of one job are one task)."""
        writes = tuple(
            (c.tool, tuple(sorted(c.arguments.items())))
            for c in gold
            if c.tool in self.env.tools and self.env.tools[c.tool].tool.kind == "write"
        )
        return writes, gold[-1].tool if asks else None

    @staticmethod
    def difficulty(draft: _Draft) -> str:
        """By length and branching: a trap (the obvious path fails) or a long chain is hard."""
        if draft.family == "policy_trap" or len(draft.gold) >= 6:
            return "hard"
        return "easy" if len(draft.gold) <= 3 else "medium"

    def finish(self, draft: _Draft, task_id: str, split: str) -> Task | None:
        """The draft as a task, if it passes the gates (servers.clients.GateTrial: the runtime's own); else
        None, with the first reason counted. Every state copy it makes is closed, whatever the outcome."""
        env = self.env
        changes = [(f"draft {task_id} initial_state.{i}", c) for i, c in enumerate(draft.changes)]
        try:
            template = env.template.derive(changes) if changes else env.template
        except Exception:
            self.stats.failures["initial_state"] += 1
            return None
        with GateTrial.run(env, template, draft.gold) as trial:
            if trial.first.first_error() is not None:
                self.stats.failures["gold_error"] += 1
                return None
            if not trial.deterministic:
                self.stats.failures["nondeterministic"] += 1
                return None
            diff = trial.gold_diff
            checks = self.checks_from(diff, draft) + draft.forbidden
            if not diff.tables or not checks:
                self.stats.failures["no_change"] += 1
                return None
            answer = None
            if draft.answer_from_last:
                value = trial.first.results[-1].structured.get(draft.answer_from_last)
                if value is None:
                    self.stats.failures["no_answer"] += 1
                    return None
                answer = Answer(facts=[str(value)])
            task = Task(
                id=task_id,
                split=split,
                difficulty=self.difficulty(draft),
                tags=sorted(set(draft.tags)),
                instruction=draft.instruction,
                user=draft.user,
                initial_state=draft.changes,
                gold=draft.gold,
                checks=checks,
                answer=answer,
            )
            verdict = trial.judge(task, "; ".join(answer.facts) if answer else None)
        if not verdict.passed:
            self.stats.failures[_GATE_FAILURES[verdict.failed_gates[0]]] += 1
            return None
        return task

    def checks_from(self, diff: Any, draft: _Draft) -> list[Check]:
        names = {e.plural: _words(e.name) for e in self.design.entities}
        return checks_from_diff(diff, self.env.primary_keys, names=names, alternatives=draft.alternatives)


def checks_from_diff(
    diff: Any,
    primary_keys: dict[str, list[str]],
    *,
    names: dict[str, str] | None = None,
    alternatives: dict[str, list[Any]] | None = None,
) -> list[Check]:
    """A check per change a gold run made: each new row by its values (``alternatives`` lists the
    values a column may take instead), each changed field by its row's key, each deleted row gone."""
    checks = []
    for table, changes in sorted(diff.tables.items()):
        noun = (names or {}).get(table) or _words(table.removesuffix("s"))
        key_columns = primary_keys[table]
        for _, row in sorted(changes.inserted.items()):
            conditions = []
            for column, value in row.items():
                if column in key_columns and len(key_columns) == 1:
                    continue  # a generated id: any id will do
                if column in (alternatives or {}):
                    conditions.append(f"{column} IN ({', '.join(_literal(v) for v in alternatives[column])})")  # type: ignore[index]
                else:
                    conditions.append(f"{column} IS NULL" if value is None else f"{column} = {_literal(value)}")
            checks.append(
                Check(
                    description=f"A new {noun} exists with the requested details",
                    sql=f"SELECT 1 FROM {table} WHERE {' AND '.join(conditions) or '1'}",
                )
            )
        for key, columns in sorted(changes.updated.items()):
            conditions = _key_conditions(key_columns, key) + [
                f"{c} IS NULL" if new is None else f"{c} = {_literal(new)}" for c, (_, new) in sorted(columns.items())
            ]
            changed = ", ".join(_words(c) for c in sorted(columns))
            checks.append(
                Check(
                    description=f"{noun.capitalize()} {key}: {changed} updated",
                    sql=f"SELECT 1 FROM {table} WHERE {' AND '.join(conditions)}",
                )
            )
        for key in sorted(changes.deleted):
            checks.append(
                Check(
                    description=f"{noun.capitalize()} {key} removed",
                    sql=f"SELECT 1 FROM {table} WHERE {' AND '.join(_key_conditions(key_columns, key))}",
                    expect="none",
                )
            )
    return checks


def _key_conditions(key_columns: list[str], key: str) -> list[str]:
    """Conditions naming one row by the diff's key text (a JSON array for a composite key)."""
    values = json.loads(key) if len(key_columns) > 1 else [key]
    return [f"{column} = {_literal(value)}" for column, value in zip(key_columns, values, strict=True)]


def synthesize_tasks(
    env: Environment,
    design: Design,
    graph: nx.DiGraph,
    *,
    count: int,
    seed: int,
    test_share: float = 0.3,
    max_attempts: int | None = None,
    id_prefix: str | None = None,
    avoid: list[Task] | None = None,
) -> tuple[list[Task], SynthesisStats]:
    """Up to ``count`` verified tasks for ``env``, with the statistics of what was tried; none does
    what a task of ``avoid`` (the environment's existing packs) already does."""
    synth = _Synthesizer(env, design, graph, seed)
    families = [
        (synth.transition_draft, 3),
        (synth.create_draft, 2),
        (synth.update_draft, 1),
        (synth.multi_action_draft, 2),
        (synth.answer_draft, 2),
        (synth.trap_draft, 2),
    ]
    makers, weights = zip(*families, strict=True)
    tasks: list[Task] = []
    seen: set[Any] = {synth.signature(t.gold, t.answer is not None) for t in avoid or []}
    attempts = max_attempts or count * 6
    while len(tasks) < count and synth.stats.attempted < attempts:
        synth.stats.attempted += 1
        draft = synth.rng.choices(makers, weights)[0]()
        if draft is None:
            synth.stats.failures["no_draft"] += 1
            continue
        signature = synth.signature(draft.gold, draft.answer_from_last is not None)
        if signature in seen:  # the same world changed the same way: one task, however it is worded
            synth.stats.failures["duplicate"] += 1
            continue
        split = "test" if synth.rng.random() < test_share else "train"
        task = synth.finish(draft, f"{id_prefix or env.id}-{len(tasks) + 1:03d}", split)
        if task is None:
            continue
        seen.add(signature)
        tasks.append(task)
        synth.stats.published += 1
        synth.stats.families[draft.family] += 1
        synth.stats.templates[draft.template] += 1
        synth.stats.chain_lengths[len(task.gold)] += 1
    synth.state.close()
    return tasks, synth.stats
