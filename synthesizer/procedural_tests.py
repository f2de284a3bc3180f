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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

from servers import Environment, StateCopy
from servers.clients import schema_value

from .catalog import Entity
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
    "PASS_THRESHOLD",
]

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
    return tester.test()


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
