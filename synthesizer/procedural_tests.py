"""Stage 4, procedural testing: every tool is exercised before an environment may be published.

For each tool, positive calls with arguments drawn from the real seeded state must succeed and
change only the tables the design says the tool writes; negative calls (unknown ids, wrong
lifecycle state, broken rules, wrong types, missing arguments) must fail with a message that
names the problem and change nothing; after every call the state's foreign keys still hold.
The result is a score per environment and a report of every failed probe.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from servers import Environment, StateCopy
from servers.clients import schema_value

from .catalog import Consumes, Eligibility, LimitPerOwner, TimeWindow, UniqueActive
from .modeling import Design, ToolRole, p_

__all__ = ["ToolProbes", "probe_tools", "Probe", "TestReport", "run_procedural_tests", "PASS_THRESHOLD"]

PASS_THRESHOLD = 0.95
CRITICAL = {"rule", "wrong_state", "unknown_id"}


@dataclass
class Probe:
    tool: str
    kind: str  # positive, unknown_id, wrong_state, rule, wrong_type, missing_argument
    arguments: Any
    passed: bool
    detail: str = ""


@dataclass
class TestReport:
    env_id: str
    probes: list[Probe] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)  # tools with no positive call found

    @property
    def score(self) -> float:
        return round(sum(p.passed for p in self.probes) / len(self.probes), 4) if self.probes else 0.0

    @property
    def passed(self) -> bool:
        """At or above the threshold, every tool exercised, and no rule or write-set probe failed:
        an unenforced business rule or an undeclared write fails the environment outright."""
        critical = [p for p in self.failures() if p.kind in CRITICAL or "undeclared" in p.detail]
        return self.score >= PASS_THRESHOLD and not self.untested and not critical

    def failures(self) -> list[Probe]:
        return [p for p in self.probes if not p.passed]

    def why(self) -> str:
        """Why the environment fails, in one line: the score, then the probes that decide it."""
        decisive = [
            p for p in self.failures() if p.kind in CRITICAL or "undeclared" in p.detail or p.tool in self.untested
        ]
        shown = "; ".join(f"{p.tool} ({p.kind}): {p.detail}" for p in decisive[:3])
        more = f" (+{len(decisive) - 3} more)" if len(decisive) > 3 else ""
        return (
            f"procedural tests score {self.score} (needs {PASS_THRESHOLD}, every tool exercised, every rule enforced)"
            + (f": {shown}{more}" if shown else "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "env_id": self.env_id,
            "score": self.score,
            "passed": self.passed,
            "probes": len(self.probes),
            "untested": self.untested,
            "failures": [asdict(p) for p in self.failures()],
        }


def declared_writes(design: Design, role: ToolRole) -> set[str]:
    """Tables a tool may change, by its role: its own table, plus counters its rules move."""
    if role.kind not in ("create", "update", "transition"):
        return set()
    tables = {design.entity(role.entity).plural}
    moves_counters = role.kind == "create" or (
        role.kind == "transition"
        and any(
            t.compensates
            for t in design.entity(role.entity).lifecycle.transitions  # type: ignore[union-attr]
            if t.name == role.transition
        )
    )
    if moves_counters:
        tables |= {design.entity(r.resource).plural for _, r in design.rules_for(role.entity, Consumes)}
    return tables


class _Tester:
    def __init__(self, env: Environment, design: Design | None, attempts: int = 12) -> None:
        self.env = env
        self.design = design  # None for an environment no modeler wrote: only given probes run then
        self.clock = design.clock if design is not None else env.spec.clock
        self.rng = random.Random(f"tests:{design.env_id if design is not None else env.id}")
        self.report = TestReport(env.id)
        self.attempts = attempts
        self._seeded: dict[str, list[dict[str, Any]]] = {}
        self._seed_snapshot: Any = None

    # -- running probes ------------------------------------------------------------------------

    def positive(self, tool: str, candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Try candidates on fresh states until one succeeds; check it wrote only declared tables.
        Returns the arguments that succeeded."""
        role = self.design.roles[tool]
        allowed = declared_writes(self.design, role)
        must_change = role.kind in ("create", "update", "transition")
        last = None
        for arguments in candidates[: self.attempts]:
            last = self.succeeds(tool, arguments, allowed, must_change, record_error=False)
            if last is None:
                return arguments
        self.report.untested.append(tool)
        self.report.probes.append(
            Probe(
                tool,
                "positive",
                candidates[:1],
                False,
                "no generated positive call succeeded"
                + (f" (last: {last})" if candidates else " (no candidate arguments)"),
            )
        )
        return None

    def succeeds(
        self, tool: str, arguments: dict[str, Any], allowed: set[str], must_change: bool, record_error: bool = True
    ) -> str | None:
        """One call on a fresh state that must succeed, change only ``allowed`` tables (and something,
        when ``must_change``) and keep every reference whole. Returns the error text when it failed."""
        state = self.env.new_state()
        try:
            tables = sorted(state.template.table_names)
            before = state.snapshot()
            result = self.env.call(state, tool, arguments)
            if result.is_error:
                if record_error:
                    self.report.probes.append(Probe(tool, "positive", arguments, False, f"failed: {result.text}"))
                return result.text
            changed = {t for t, old, new in zip(tables, before, state.snapshot(), strict=True) if old != new}
            problems = []
            if changed - allowed:
                problems.append(f"wrote undeclared table(s) {sorted(changed - allowed)}")
            if must_change and not changed:
                problems.append("changed nothing")
            problems += self._integrity(state)
            self.report.probes.append(Probe(tool, "positive", arguments, not problems, "; ".join(problems)))
            return None
        finally:
            state.close()

    def negative(
        self, tool: str, kind: str, arguments: Any, expect: str | set[str] | None = None, state: StateCopy | None = None
    ) -> None:
        """The call must fail, say something useful, and change nothing."""
        own = state is None
        state = state or self.env.new_state()
        before = self.seed_snapshot() if own else state.snapshot()
        changes = state.conn.total_changes
        result = self.env.call(state, tool, arguments)
        problems = []
        if not result.is_error:
            problems.append("succeeded")
        else:
            error = result.structured["error"]
            wanted = {expect} if isinstance(expect, str) else expect or set()
            if wanted and not wanted & {error.get("rule"), error["type"]}:
                problems.append(f"failed for another reason ({error['type']} {error.get('rule')}): {result.text}")
            if len(result.text) < 12:
                problems.append(f"message too short: {result.text!r}")
        if state.conn.total_changes != changes and state.snapshot() != before:  # no row touched, nothing to compare
            problems.append("changed state")
        self.report.probes.append(Probe(tool, kind, arguments, not problems, "; ".join(problems)))
        if own:
            state.close()

    def seed_snapshot(self) -> Any:
        if self._seed_snapshot is None:
            state = self.env.new_state()
            self._seed_snapshot = state.snapshot()
            state.close()
        return self._seed_snapshot

    def _integrity(self, state: StateCopy) -> list[str]:
        with state.mode("internal"):
            broken = state.conn.execute("PRAGMA foreign_key_check").fetchall()
        return [f"broken reference in {broken[0][0]}"] if broken else []

    # -- argument generation -------------------------------------------------------------------

    def rows(self, entity: str) -> list[dict[str, Any]]:
        """The seeded rows of an entity (copies: callers may change them)."""
        if entity not in self._seeded:
            self._seeded[entity] = self.env.template.read_table(
                self.env.template.conn, self.design.entity(entity).plural
            )
        return [dict(r) for r in self._seeded[entity]]

    def pick(self, entity: str, where: Any = None, count: int = 12) -> list[dict[str, Any]]:
        rows = [r for r in self.rows(entity) if where is None or where(r)]
        self.rng.shuffle(rows)
        return rows[:count]

    def value_for(self, schema: dict[str, Any], name: str) -> Any:
        return schema_value(schema, self.rng, name=name, integers=(1, 5), numbers=(1, 50), text=self._text)

    def _text(self, schema: Mapping[str, Any], name: str, rng: random.Random) -> str:
        """A string argument: a date or date-time near the clock, an email address, or a labelled word."""
        if schema.get("format") == "date":
            return (self.clock.date()).isoformat()
        if "pattern" in schema and "\\d{4}" in schema["pattern"]:
            moment = self.clock.replace(tzinfo=None)
            return (moment.replace(hour=10, minute=0) + _days(rng.randint(3, 9))).strftime("%Y-%m-%d %H:%M")
        if name == "email" or "email" in name:
            return f"probe{rng.randint(1000, 9999)}@example.net"
        return f"Probe {name.replace('_', ' ')} {rng.randint(100, 999)}"

    def fill(self, tool: str, base: dict[str, Any]) -> dict[str, Any]:
        """Complete ``base`` with values for the tool's other required parameters."""
        schema = self.env.tools[tool].input_schema
        arguments = dict(base)
        for name in schema.get("required", []):
            if name not in arguments:
                arguments[name] = self.value_for(schema["properties"][name], name)
        return arguments

    # -- per role ------------------------------------------------------------------------------

    def test(self) -> TestReport:
        for tool, role in self.design.roles.items():
            getattr(self, f"_{role.kind}")(tool, role)
            self._malformed(tool)
        return self.report

    def _malformed(self, tool: str) -> None:
        schema = self.env.tools[tool].input_schema
        required = schema.get("required", [])
        if required:
            self.negative(tool, "missing_argument", {}, "invalid_arguments")
            first = required[0]
            wrong = 12345 if schema["properties"][first].get("type") == "string" else "not a number"
            self.negative(tool, "wrong_type", self.fill(tool, {first: wrong}), "invalid_arguments")
        self.negative(tool, "unknown_argument", {**self.fill(tool, {}), "no_such_argument": 1}, "invalid_arguments")

    def _id(self, entity: str) -> str:
        return f"{entity}_id"

    def _unknown(self, entity: str) -> str:
        return f"{self.design.entity(entity).id_prefix}-9999"

    def _get(self, tool: str, role: ToolRole) -> None:
        key = self._id(role.entity)
        self.positive(tool, [{key: r[key]} for r in self.pick(role.entity)])
        self.negative(tool, "unknown_id", {key: self._unknown(role.entity)}, f"{role.entity}_exists")

    _get_status = _get

    def _search(self, tool: str, role: ToolRole) -> None:
        entity = self.design.entity(role.entity)
        rows = self.pick(role.entity)
        self.positive(tool, [{"query": str(r[entity.label])[:6]} for r in rows if r[entity.label]] + [{}])

    def _find_by_label(self, tool: str, role: ToolRole) -> None:
        label = self.design.entity(role.entity).label
        self.positive(tool, [{label: r[label]} for r in self.pick(role.entity) if r[label]])

    def _list_for(self, tool: str, role: ToolRole) -> None:
        column = next(r.column for r in self.design.entity(role.entity).relations if r.to == role.relation)
        assert role.relation is not None
        owner_key = self._id(role.relation)
        self.positive(tool, [{column: r[owner_key]} for r in self.pick(role.relation)])
        self.negative(tool, "unknown_id", {column: self._unknown(role.relation)}, f"{role.relation}_exists")

    _summarize = _list_for

    def _count_by_status(self, tool: str, role: ToolRole) -> None:
        self.positive(tool, [{}])

    def _update(self, tool: str, role: ToolRole) -> None:
        key = self._id(role.entity)
        schema = self.env.tools[tool].input_schema["properties"]
        editable = [n for n in schema if n != key]
        candidates = []
        for row in self.pick(role.entity):
            name = self.rng.choice(editable)
            value = self.value_for(schema[name], name)
            for _ in range(10):
                if value != row.get(name) and not (isinstance(value, bool) and int(value) == row.get(name)):
                    break
                value = self.value_for(schema[name], name)
            candidates.append({key: row[key], name: value})
        self.positive(tool, candidates)
        some = self.pick(role.entity, count=1)
        if some:
            self.negative(tool, "rule", {key: some[0][key]}, "update_needs_a_value")
        self.negative(
            tool,
            "unknown_id",
            {key: self._unknown(role.entity), editable[0]: self.value_for(schema[editable[0]], editable[0])},
            f"{role.entity}_exists",
        )

    def _transition(self, tool: str, role: ToolRole) -> None:
        entity = self.design.entity(role.entity)
        assert entity.lifecycle is not None
        transition = next(t for t in entity.lifecycle.transitions if t.name == role.transition)
        key, field_name = self._id(role.entity), entity.lifecycle.field
        ready = self.pick(role.entity, lambda r: r[field_name] in transition.from_states, count=40)
        self.positive(tool, [{key: r[key]} for r in ready])
        wrong = self.pick(role.entity, lambda r: r[field_name] not in transition.from_states, count=1)
        if wrong:
            self.negative(tool, "wrong_state", {key: wrong[0][key]}, f"{transition.name}_from_state")
        self.negative(tool, "unknown_id", {key: self._unknown(role.entity)}, f"{role.entity}_exists")
        for index, rule in enumerate(self.design.rules):
            if isinstance(rule, TimeWindow) and rule.entity == role.entity and rule.transition == transition.name:
                hours = self.design.params[index]
                clock = self.clock.replace(tzinfo=None)
                violating = [
                    r for r in ready if r.get(rule.attribute) and _violates(r[rule.attribute], clock, rule.mode, hours)
                ]
                if violating:
                    self.negative(tool, "rule", {key: violating[0][key]}, f"time_window_{index}")

    def _create(self, tool: str, role: ToolRole) -> None:
        entity = self.design.entity(role.entity)
        schema = self.env.tools[tool].input_schema
        for relation in entity.relations:
            if relation.required and self.rows(relation.to) and not self._eligible(entity.name, relation.to):
                rules = [
                    f"{r.kind} ({r.description})"
                    for r in self.design.rules
                    if r.entity == entity.name
                    and relation.to in {getattr(r, k, None) for k in ("subject", "owner", "resource")}
                ]
                self.report.untested.append(tool)
                self.report.probes.append(
                    Probe(
                        tool,
                        "positive",
                        {},
                        False,
                        f"no seeded {relation.to} can take part in a new "
                        f"{entity.name}: none passes {'; '.join(rules) or 'the rules'}",
                    )
                )
                return
        candidates = [self._create_arguments(tool, entity, schema) for _ in range(self.attempts)]
        base = self.positive(tool, candidates)
        if base is None:
            return
        for relation in entity.relations:
            if relation.column in base:
                self.negative(
                    tool, "unknown_id", {**base, relation.column: self._unknown(relation.to)}, f"{relation.to}_exists"
                )
        self._create_rule_probes(tool, entity, base)

    def _create_arguments(self, tool: str, entity: Any, schema: dict[str, Any]) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for _ in range(20):  # draw related rows until no unique_active pair is already taken
            for relation in entity.relations:
                eligible = self._eligible(entity.name, relation.to)
                if eligible:
                    arguments[relation.column] = self.rng.choice(eligible)[self._id(relation.to)]
            if not self._pair_taken(entity, arguments):
                break
        for rule in self.design.rules:
            if isinstance(rule, TimeWindow) and rule.entity == entity.name and rule.transition == "create":
                clock = self.clock.replace(tzinfo=None)
                when = clock + _days(self.rng.randint(3, 20)) if rule.mode == "before" else clock - _days(1)
                name = p_(rule.attribute)
                arguments[name] = when.strftime(
                    "%Y-%m-%d" if len(self.value_for(schema["properties"][name], name)) == 10 else "%Y-%m-%d %H:%M"
                )
        for name in schema.get("required", []):
            if name not in arguments:
                arguments[name] = self.value_for(schema["properties"][name], name)
        for _, rule in self.design.rules_for(entity.name, Consumes):
            if rule.amount and p_(rule.amount) in arguments:
                arguments[p_(rule.amount)] = 1
        return arguments

    def _eligible(self, entity: str, related: str, skip: Any = None) -> list[dict[str, Any]]:
        """Rows of ``related`` that pass the eligibility rules and have room under limits and counters
        (all rules but ``skip``)."""
        rows = self.rows(related)
        children = self.rows(entity)
        owner_entity = self.design.entity(entity)
        for index, rule in enumerate(self.design.rules):
            if rule.entity != entity or rule is skip:
                continue
            if isinstance(rule, Eligibility) and rule.action == "create" and rule.subject == related:
                rows = [r for r in rows if r.get(rule.attribute) == rule.equals]
            if isinstance(rule, LimitPerOwner) and rule.owner == related:
                column = next(r.column for r in owner_entity.relations if r.to == related)
                field_name = owner_entity.lifecycle.field if owner_entity.lifecycle else "status"
                counts: dict[Any, int] = {}
                for child in children:
                    if child.get(field_name) in rule.states:
                        counts[child[column]] = counts.get(child[column], 0) + 1
                rows = [r for r in rows if counts.get(r[self._id(related)], 0) < self.design.params[index]]
            if isinstance(rule, Consumes) and rule.resource == related:
                rows = [r for r in rows if (r.get(rule.counter) or 0) >= 1]
        return rows

    def _pair_taken(self, entity: Any, arguments: dict[str, Any]) -> bool:
        children = self.rows(entity.name)
        field_name = entity.lifecycle.field if entity.lifecycle else "status"
        for rule in self.design.rules:
            if isinstance(rule, UniqueActive) and rule.entity == entity.name:
                owner = next(r.column for r in entity.relations if r.to == rule.owner)
                target = next(r.column for r in entity.relations if r.to == rule.target)
                if any(
                    c[owner] == arguments.get(owner)
                    and c[target] == arguments.get(target)
                    and c.get(field_name) in rule.states
                    for c in children
                ):
                    return True
        return False

    def _create_rule_probes(self, tool: str, entity: Any, base: dict[str, Any]) -> None:
        for index, rule in enumerate(self.design.rules):
            if rule.entity != entity.name:
                continue
            name = f"{rule.kind}_{index}"
            if isinstance(rule, Eligibility) and rule.action == "create" and rule.subject != entity.name:
                column = next(r.column for r in entity.relations if r.to == rule.subject)
                passing_others = {
                    r[self._id(rule.subject)] for r in self._eligible(entity.name, rule.subject, skip=rule)
                }
                bad = [
                    r
                    for r in self.rows(rule.subject)
                    if r.get(rule.attribute) != rule.equals
                    and r[self._id(rule.subject)] in passing_others
                    and not self._pair_taken(entity, {**base, column: r[self._id(rule.subject)]})
                ]
                if bad:
                    self.negative(tool, "rule", {**base, column: bad[0][self._id(rule.subject)]}, name)
            elif isinstance(rule, Consumes):
                column = next(r.column for r in entity.relations if r.to == rule.resource)
                passing_others = {
                    r[self._id(rule.resource)] for r in self._eligible(entity.name, rule.resource, skip=rule)
                }
                empty = [
                    r
                    for r in self.rows(rule.resource)
                    if (r.get(rule.counter) or 0) <= 0
                    and r[self._id(rule.resource)] in passing_others
                    and not self._pair_taken(entity, {**base, column: r[self._id(rule.resource)]})
                ]
                if empty:
                    self.negative(tool, "rule", {**base, column: empty[0][self._id(rule.resource)]}, name)
            elif isinstance(rule, TimeWindow) and rule.transition == "create" and p_(rule.attribute) in base:
                amount = self.design.params[index]
                past = self.clock.replace(tzinfo=None) - _days(2 if rule.mode == "before" else amount + 3)
                value = past.strftime("%Y-%m-%d %H:%M" if len(str(base[p_(rule.attribute)])) > 10 else "%Y-%m-%d")
                self.negative(tool, "rule", {**base, p_(rule.attribute): value}, name)
            elif isinstance(rule, LimitPerOwner | UniqueActive):
                self._exhaust(tool, rule, name, base)

    def _exhaust(self, tool: str, rule: Any, name: str, base: dict[str, Any]) -> None:
        """Bring the owner to the limit directly in the state, then one more create must be refused
        by this rule (and change nothing). For a unique pair, the limit is one with that target."""
        entity = self.design.entity(rule.entity)
        owner = next(r.column for r in entity.relations if r.to == rule.owner)
        field_name = entity.lifecycle.field if entity.lifecycle else "status"
        existing = [
            c for c in self.rows(entity.name) if c[owner] == base.get(owner) and c.get(field_name) in rule.states
        ]
        if isinstance(rule, LimitPerOwner):
            missing = int(self.design.params[self.design.rules.index(rule)]) - len(existing)
            avoid = {r.column: base.get(r.column) for r in entity.relations if r.column != owner}
        else:
            target = next(r.column for r in entity.relations if r.to == rule.target)
            missing, avoid = 1, {}
        template = self.rows(entity.name)
        if missing < 1 or not template:
            return
        state = self.env.new_state()
        with state.mode("internal"):
            for index in range(missing):
                row = dict(template[index % len(template)])
                row[f"{entity.name}_id"] = f"{entity.id_prefix}-{8000 + index}"
                row[owner], row[field_name] = base.get(owner), rule.states[0]
                for attr in entity.attributes:
                    if attr.unique and row.get(attr.name) is not None:
                        row[attr.name] = f"{row[attr.name]}-P{index}"
                if isinstance(rule, UniqueActive):
                    row[target] = base.get(target)
                for column, value in avoid.items():  # keep unique-pair rules out of the way
                    if row.get(column) == value:
                        related = next(r.to for r in entity.relations if r.column == column)
                        alternatives = [
                            r[self._id(related)] for r in self.rows(related) if r[self._id(related)] != value
                        ]
                        if alternatives:
                            row[column] = alternatives[index % len(alternatives)]
                columns = ", ".join(row)
                state.conn.execute(
                    f"INSERT INTO {entity.plural} ({columns}) VALUES ({', '.join(':' + c for c in row)})", row
                )
        expected = {name}
        if isinstance(rule, UniqueActive):  # the extra row may also bring the owner to a per-owner limit
            expected |= {
                f"{r.kind}_{i}"
                for i, r in enumerate(self.design.rules)
                if isinstance(r, LimitPerOwner) and r.entity == entity.name
            }
        self.negative(tool, "rule", base, expected, state=state)
        state.close()


def _days(count: float) -> Any:
    from datetime import timedelta

    return timedelta(days=count)


def _violates(value: str, clock: Any, mode: str, amount: float) -> bool:
    from datetime import datetime, timedelta

    moment = datetime.fromisoformat(value) if len(value) > 10 else datetime.fromisoformat(value + " 00:00:00")
    if mode == "before":
        return moment < clock + timedelta(hours=amount)
    return clock.date() > (moment + timedelta(days=amount)).date()


def run_procedural_tests(env: Environment, design: Design) -> TestReport:
    """Exercise every tool of ``env`` (modeled from ``design``)."""
    return _Tester(env, design).test()


@dataclass
class ToolProbes:
    """Calls a tool the modeler did not write (a proposed extra tool) must pass: each of ``succeeds``
    must succeed and write only the tables its statements declare; each of ``fails`` must be refused
    and change nothing."""

    succeeds: list[dict[str, Any]]
    fails: list[dict[str, Any]]


def probe_tools(env: Environment, design: Design | None, probes: dict[str, ToolProbes]) -> TestReport:
    """Run given probes, plus malformed-argument probes, on tools outside ``design``'s roles (or
    on every tool of an environment with no design)."""
    tester = _Tester(env, design)
    for tool, calls in probes.items():
        compiled = env.tools[tool]
        allowed = set(compiled.analysis.writes)
        for arguments in calls.succeeds:
            tester.succeeds(tool, arguments, allowed, must_change=compiled.tool.kind == "write")
        for arguments in calls.fails:
            tester.negative(tool, "rule", arguments)
        tester._malformed(tool)
    return tester.report
