"""Stage 4, procedural testing: every tool is exercised before an environment may be published.

For each tool, positive calls with arguments drawn from the real seeded state must succeed and
change only the tables the design says the tool writes; negative calls (unknown ids, wrong
lifecycle state, broken rules, wrong types, missing arguments) must fail with a message that
names the problem and change nothing; after every call the state's foreign keys still hold.
Each tool's operation kind makes its probes, and each rule's kind its refusal probes with the
test's own oracle (``synthesizer/rules/``). The result is a score per environment and a report of
every failed probe, and of every rule no probe was made for with its kind's reason; a rule with
neither fails the environment.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from servers import Environment, StateCopy
from servers.clients import schema_value

from .catalog import Entity
from .invariants import violations
from .modeling import Design, ToolRole
from .operations import operation
from .rules import RuleRef

__all__ = [
    "ToolProbes",
    "probe_tools",
    "Probe",
    "TestReport",
    "Tester",
    "declared_writes",
    "run_procedural_tests",
    "block_rules",
    "PASS_THRESHOLD",
]

PASS_THRESHOLD = 0.95
CRITICAL = {"rule", "wrong_state", "unknown_id", "oracle"}


@dataclass
class Probe:
    tool: str
    kind: str  # positive, oracle, unknown_id, wrong_state, rule, wrong_type, missing_argument
    arguments: Any
    passed: bool
    detail: str = ""


@dataclass
class TestReport:
    env_id: str
    probes: list[Probe] = field(default_factory=list)
    untested: list[str] = field(default_factory=list)  # tools with no positive call found
    rules: list[str] = field(default_factory=list)  # the id of every rule the design enforces
    probed: set[str] = field(default_factory=set)  # rules a negative call was made for
    waived: dict[str, str] = field(default_factory=dict)  # rule -> why its kind could make no probe

    @property
    def score(self) -> float:
        return round(sum(p.passed for p in self.probes) / len(self.probes), 4) if self.probes else 0.0

    @property
    def passed(self) -> bool:
        """At or above the threshold, every tool exercised, no rule or write-set probe failed (an
        unenforced business rule or an undeclared write fails the environment outright), and every
        rule probed or its kind's reason why not stated: a rule no phase looked at fails too."""
        critical = [p for p in self.failures() if p.kind in CRITICAL or "undeclared" in p.detail]
        return self.score >= PASS_THRESHOLD and not self.untested and not critical and not self.unaccounted()

    def unaccounted(self) -> list[str]:
        """Rules neither probed nor waived with a reason: a phase forgot them."""
        return [rule for rule in self.rules if rule not in self.probed and rule not in self.waived]

    def unprobed(self) -> dict[str, str]:
        """Rules no probe was made for, with the reason (or that none was given)."""
        return {
            rule: self.waived.get(rule, "no probe and no reason: a phase of its kind did not run")
            for rule in self.rules
            if rule not in self.probed
        }

    def failures(self) -> list[Probe]:
        return [p for p in self.probes if not p.passed]

    def why(self) -> str:
        """Why the environment fails, in one line: the score, then the probes that decide it."""
        decisive = [
            p for p in self.failures() if p.kind in CRITICAL or "undeclared" in p.detail or p.tool in self.untested
        ]
        shown = "; ".join(
            [f"{p.tool} ({p.kind}): {p.detail}" for p in decisive[:3]]
            + [f"rule {rule} was never probed" for rule in self.unaccounted()[:3]]
        )
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
            "unprobed": self.unprobed(),
            "failures": [asdict(p) for p in self.failures()],
        }


def declared_writes(design: Design, role: ToolRole) -> set[str]:
    """Tables a tool may change, by its role: its own table, plus what its rules' effects write."""
    return operation(role.kind).writes(design, role)


class Tester:
    """Runs probes on fresh copies of the seeded state; operation and rule kinds drive it."""

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
        must_change = operation(role.kind).phase == "write"
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

    def oracle(
        self,
        tool: str,
        arguments: dict[str, Any],
        check: Callable[[StateCopy, Any], list[str]],
        state: StateCopy | None = None,
        record: bool = True,
    ) -> bool:
        """A call that must succeed and whose effect ``check`` (the test's own recomputation) accepts; it
        also writes only declared tables, keeps every reference whole and leaves every invariant of the
        environment holding. Recorded as an ``oracle`` probe."""
        role = self.design.roles[tool]
        allowed = declared_writes(self.design, role)
        state = state or self.env.new_state()  # a given state is the probe's own: closed here too
        try:
            tables = sorted(state.template.table_names)
            before = state.snapshot()
            result = self.env.call(state, tool, arguments)
            if result.is_error:
                problems = [f"failed: {result.text}"]
            else:
                changed = {t for t, old, new in zip(tables, before, state.snapshot(), strict=True) if old != new}
                problems = [f"wrote undeclared table(s) {sorted(changed - allowed)}"] if changed - allowed else []
                problems += self._integrity(state) + check(state, result)
                broken = {name: n for name, n in violations(self.env, state).items() if n}
                problems += [f"breaks {name} ({n} row(s))" for name, n in broken.items()]
            if record or not problems:
                self.report.probes.append(Probe(tool, "oracle", arguments, not problems, "; ".join(problems)))
            return not problems
        finally:
            state.close()

    def first_oracle(
        self,
        tool: str,
        candidates: list[dict[str, Any]],
        check: Callable[[StateCopy, Any, dict[str, Any]], list[str]],
        want: int = 4,
    ) -> dict[str, Any] | None:
        """Judge up to ``want`` candidates the tool accepts with ``check`` (a refused candidate is skipped: the
        rules may refuse a drawn one; an accepted one is always judged). The first accepted arguments, or
        None (recorded as untested)."""
        first = None
        judged = 0
        last = ""
        for arguments in candidates[: self.attempts]:
            probe = self.env.new_state()
            result = self.env.call(probe, tool, arguments)
            probe.close()
            if result.is_error:
                last = result.text
                continue
            self.oracle(tool, arguments, lambda state, result, a=arguments: check(state, result, a))
            first = first or arguments
            judged += 1
            if judged >= want:
                break
        if first is None:
            self.untested(tool, f"no generated call succeeded (last: {last[:300]})")
        return first

    @property
    def now(self) -> str:
        """The environment clock as SQLite text."""
        return self.clock.strftime("%Y-%m-%d %H:%M:%S")

    def at_offset(self, seconds: int) -> str:
        return (self.clock + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")

    def table(self, name: str) -> list[dict[str, Any]]:
        """The seeded rows of any table (the ledger's included)."""
        return [dict(r) for r in self.env.template.read_table(self.env.template.conn, name)]

    def owners(self, entity: Entity) -> dict[str, str]:
        """Each record's principal, read from the seeded rows along the owner chain (not the tool's fragment)."""
        chain = self.design.chain(entity)
        assert chain is not None
        owners = {r[f"{entity.name}_id"]: r[f"{entity.name}_id"] for r in self.rows(entity.name)}
        for child, parent in zip(chain, chain[1:], strict=False):
            column = next(r.column for r in child.relations if r.to == parent.name)
            parents = {r[f"{child.name}_id"]: r[column] for r in self.rows(child.name)}
            owners = {record: parents[current] for record, current in owners.items()}
        return owners

    def open_resources(self, op: Any, future: bool) -> list[dict[str, Any]]:
        """Seeded resources of a book operation whose moment lies ahead (``future``) or behind the clock,
        with room for one more when they count capacity."""
        resource = self.design.entity(op.resource)
        at = resource.lifecycle.at if resource.lifecycle else None
        rows = self.rows(resource.name)
        if at:
            rows = [r for r in rows if (str(r[at]) > self.now) == future]
        if op.availability.mode == "counter":
            rows = [r for r in rows if r[op.availability.counter] >= 1]
        self.rng.shuffle(rows)
        return rows

    def negative(
        self,
        tool: str,
        kind: str,
        arguments: Any,
        expect: str | set[str] | None = None,
        state: StateCopy | None = None,
        rule: str | None = None,
    ) -> None:
        """The call must fail, say something useful, and change nothing; ``rule``: the id of the rule
        this call probes (counted as probed whatever the outcome: a failure is reported as one)."""
        if rule is not None:
            self.report.probed.add(rule)
        if not str(rule or expect or "").startswith("authority."):
            arguments = self.as_owner(arguments, rule or (expect if isinstance(expect, str) else None))
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

    def as_owner(self, arguments: Any, rule: str | None = None) -> Any:
        """A refusal probe of a world tool names records of one person: a rule kind that picks another pet at
        its limit means that pet's owner asking (with one of their own payment methods); a rule about the
        principal themselves (a blocked account) keeps them and takes their own pet instead. So the call is
        refused by the rule, not by ownership."""
        if self.design is None or not self.design.world or not isinstance(arguments, dict):
            return arguments
        p_id = f"{self.design.principal.name}_id"
        names = {e.name for e in self.design.entities}
        if arguments.get(p_id) not in {r[p_id] for r in self.rows(self.design.principal.name)}:
            return arguments  # a probe of an unknown principal stays one
        ref = next((r for r in self.design.refs if r.id == rule), None)
        about_principal = ref is not None and getattr(ref.rule, "subject", None) == self.design.principal.name
        for name, value in arguments.items():
            entity = name.removesuffix("_id")
            if name == p_id or not name.endswith("_id") or entity not in names or p_id not in arguments:
                continue
            target = self.design.entity(entity)
            owners = self.owners(target) if self.design.owned(target) else {}
            owner = owners.get(value)
            if owner is None or owner == arguments[p_id]:
                continue
            if about_principal:  # the same person, with a record of their own
                own = next((key for key, who in owners.items() if who == arguments[p_id]), None)
                return {**arguments, name: own} if own is not None else arguments
            changed = {**arguments, p_id: owner}
            if "payment_method_id" in changed:
                methods = [m for m in self.table("payment_methods") if m[p_id] == owner]
                cards = [m["method_id"] for m in sorted(methods, key=lambda m: m["kind"] != "card")]
                if not cards:
                    return arguments
                changed["payment_method_id"] = cards[0]
            return changed
        return arguments

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
            return (moment.replace(hour=10, minute=0) + timedelta(days=rng.randint(3, 9))).strftime("%Y-%m-%d %H:%M")
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
            operation(role.kind).probe(self, tool, role)
            self.malformed(tool)
        for ref in self.design.policy_refs:  # policy-only rules: the tool allows the act, the check sees it
            reason = ref.kind.probe(self, ref)
            if reason is None:
                self.report.probed.add(ref.id)
            else:
                self.report.waived.setdefault(ref.id, reason)
        return self.report

    def malformed(self, tool: str) -> None:
        schema = self.env.tools[tool].input_schema
        required = schema.get("required", [])
        if required:
            self.negative(tool, "missing_argument", {}, "invalid_arguments")
            first = required[0]
            wrong = 12345 if schema["properties"][first].get("type") == "string" else "not a number"
            self.negative(tool, "wrong_type", self.fill(tool, {first: wrong}), "invalid_arguments")
        self.negative(tool, "unknown_argument", {**self.fill(tool, {}), "no_such_argument": 1}, "invalid_arguments")

    def unknown(self, entity: str) -> str:
        """An id of the entity's format that no seeded row has."""
        return f"{self.design.entity(entity).id_prefix}-9999"

    def untested(self, tool: str, detail: str) -> None:
        """The tool could not be exercised: no positive call can be made, for ``detail``."""
        self.report.untested.append(tool)
        self.report.probes.append(Probe(tool, "positive", {}, False, detail))

    def waive(self, ref: RuleRef, reason: str | None) -> None:
        """Record why a rule's kind made no probe for it (None: it made one)."""
        if reason is not None:
            self.report.waived.setdefault(ref.id, reason)

    # -- the rules' oracles --------------------------------------------------------------------

    def eligible(self, entity: str, related: str, skip: RuleRef | None = None) -> list[dict[str, Any]]:
        """Rows of ``related`` a new ``entity`` may refer to under every rule of ``entity`` (but ``skip``),
        judged from the seeded rows by each rule's kind, not by the tool."""
        rows = self.rows(related)
        target = self.design.entity(entity)
        for ref in self.design.refs:
            if ref.rule.entity == entity and ref is not skip:
                rows = ref.kind.eligible(self, ref, target, related, rows)
        return rows

    def taken(self, entity: Entity, arguments: dict[str, Any]) -> bool:
        """Whether a create with ``arguments`` would break a rule of ``entity`` in the seeded state."""
        refs = [ref for ref in self.design.refs if ref.rule.entity == entity.name]
        return any(ref.kind.taken(self, ref, entity, arguments) for ref in refs)


def run_procedural_tests(env: Environment, design: Design) -> TestReport:
    """Exercise every tool of ``env`` (modeled from ``design``), and account for every rule."""
    tester = Tester(env, design)
    tester.report.rules = [ref.id for ref in design.refs]
    if design.world:  # the step blocks' rules (ownership, payment, capacity, phase) must be probed too
        tester.report.rules += block_rules(env)
        tester.report.rules += [ref.id for ref in design.policy_refs]
    return tester.test()


BLOCK_RULES = ("authority.", "pay.", "avail.", "phase.", "args.", "rule.")
"""Rule-id families of the world step blocks (``synthesizer.ledger`` and the operation kinds)."""


def block_rules(env: Environment) -> list[str]:
    """Every block rule id a tool's ``require`` steps name (nested loop steps included), sorted."""
    found: set[str] = set()
    for tool in env.spec.model_dump()["tools"]:
        for step in tool["steps"]:
            for inner in [step, *(step.get("steps") or [])]:
                rule = inner.get("rule") or ""
                if rule.startswith(BLOCK_RULES):
                    found.add(rule)
    return sorted(found)


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
    tester = Tester(env, design)
    for tool, calls in probes.items():
        compiled = env.tools[tool]
        allowed = set(compiled.analysis.writes)
        for arguments in calls.succeeds:
            tester.succeeds(tool, arguments, allowed, must_change=compiled.tool.kind == "write")
        for arguments in calls.fails:
            tester.negative(tool, "rule", arguments)
        tester.malformed(tool)
    return tester.report
