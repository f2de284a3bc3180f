"""The quality report over synthesized environments (``envfleet synth stats``).

Reads environment folders and their ``provenance.json``: domains and sectors covered, tools
(and write tools) per environment, tables and tasks per environment, the chain-length
histogram, procedural-test and gate pass rates, and how varied the instructions are.

Then the acceptance metrics of issues 14 and 15 (docs/design/worlds.md §12), each with its target and
whether it is met (``metrics``). They are computed from the published folders, never read from what the
synthesizer said about itself: every synthesized environment (a folder with ``provenance.json``) is
loaded by the runtime for its validated write sets and output schemas, its invariants are run on the seed
and on each task's gold final state, and its tasks are read as the runtime reads them. Metrics that need
the design record in the provenance (``design``) count 0, or say n/a, for environments without one.
"""

from __future__ import annotations

import difflib
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from sqlglot import exp
from sqlglot.errors import SqlglotError

from servers import EnvFleetError, Environment, Task
from servers.episodes import PROVENANCE_FILE, normalise_answer
from servers.spec import ForEachStep, RequireStep, ReturnStep, Tool, family_of

from .errors import SynthesisError
from .invariants import INVARIANT_PREFIX, InvariantError, gold_violations, invariant_names, seed_violations

__all__ = [
    "fleet_stats",
    "quality_metrics",
    "render",
    "is_business_rule",
    "BUSINESS_RULE_FAMILIES",
    "STRUCTURAL_RULE_FAMILIES",
    "TOOL_RULE_KINDS",
    "INTENT_KINDS",
    "BASELINE_TARGETS",
    "BaselineError",
]

BUSINESS_RULE_FAMILIES = ("rule", "avail", "pay", "phase", "window")
"""Rule-id families (the text before the first ``.``) that are business rules (design §12)."""
STRUCTURAL_RULE_FAMILIES = ("exists", "authority", "state", "args")
"""Rule-id families that only check the call makes sense: the record exists, is the caller's, is in a state
the act starts from, the arguments agree. They never count as enforcing a business rule."""
TOOL_RULE_KINDS = ("limit_per_owner", "consumes", "time_window", "eligibility", "unique_active")
"""The catalog's tool-enforced rule kinds. Their ids are business rules, whether written ``<kind>_<n>`` (the
ids of the fleet before the worlds regeneration) or ``<kind>.<entity>.<action>`` (design §1)."""
INTENT_KINDS = frozenset({"quote", "book", "pay", "cancel", "reschedule", "transfer", "exchange", "compensate"})
"""Operation kinds with computed effects (design §4; ``cancel`` is the refunding op, not a plain transition)."""
BASELINE_TARGETS = {"noop": 0.0, "random": 0.0, "heuristic": 0.10}
"""Highest success rate each baseline agent may reach on synthesized tasks (issue 15)."""
TRAIT_TAGS = frozenset({"computed", "discovery"})
TRIVIAL_FACTS = frozenset({"0", "1", "yes", "no"})
SIMILAR_WORDING = 0.9
BOILERPLATE_SHARE = 0.25

_ID_CODE = re.compile(r"\b[A-Z][A-Z0-9]{1,5}-\d{2,}\b")
_MACHINE_DATETIME = re.compile(r"\b\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")
_MARKER = re.compile(r"(?i)(?<![a-z0-9])(?:twin|alt)\.")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_ROLE_LINE = re.compile(r"^You are an? .+ at .+", re.IGNORECASE)
_TABLE_RULE = re.compile(r"^\|[\s\-:|]+\|?$")


# -- the report ------------------------------------------------------------------------------


def fleet_stats(env_root: Path, baselines: Sequence[Path] = ()) -> dict[str, Any]:
    """The whole report: the descriptive figures, then ``metrics`` (each with value, target and met)."""
    tools, writes, tables, task_counts = [], [], [], []
    domains, sectors = set(), set()
    chains: Counter[int] = Counter()
    test_scores, attempted, published = [], 0, 0
    instructions: list[str] = []
    families: Counter[str] = Counter()
    templates: Counter[str] = Counter()
    for provenance_file in sorted(env_root.glob(f"*/{PROVENANCE_FILE}")):
        folder = provenance_file.parent
        provenance = json.loads(provenance_file.read_text(encoding="utf-8"))
        spec = json.loads((folder / "env.json").read_text(encoding="utf-8"))
        tasks = [
            json.loads(line)
            for pack in sorted((folder / "tasks").glob("*.jsonl"))
            for line in pack.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        domains.add(provenance.get("domain"))
        sectors.add(provenance.get("sector"))
        tools.append(len(spec["tools"]))
        writes.append(sum(1 for t in spec["tools"] if t["kind"] == "write"))
        tables.append(len(spec["tables"]))
        task_counts.append(len(tasks))
        for task in tasks:
            chains[len(task["gold"])] += 1
            instructions.append(task["instruction"])
        test_scores.append(provenance.get("procedural_tests", {}).get("score") or 0)
        attempted += provenance.get("tasks", {}).get("attempted") or 0
        published += provenance.get("tasks", {}).get("published") or 0
        families.update(provenance.get("tasks", {}).get("families") or {})
        templates.update(provenance.get("tasks", {}).get("templates") or {})
    count = len(tools)

    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 2) if values else 0.0

    return {
        "environments": count,
        "domains": len(domains),
        "sectors": len(sectors),
        "sector_names": sorted(s for s in sectors if s),
        "tools_per_env": {"mean": mean(tools), "min": min(tools, default=0), "max": max(tools, default=0)},
        "write_tools_per_env": {"mean": mean(writes), "min": min(writes, default=0)},
        "tables_per_env": mean(tables),
        "tasks_per_env": mean(task_counts),
        "tasks": sum(task_counts),
        "chain_lengths": {str(k): v for k, v in sorted(chains.items())},
        "procedural_test_score": mean(test_scores),
        "gate_pass_rate": round(published / attempted, 3) if attempted else 0.0,
        "task_families": dict(families.most_common()),
        "distinct_instruction_share": round(len(set(instructions)) / len(instructions), 3) if instructions else 0.0,
        "instruction_templates": {
            "distinct": len(templates),
            "most_used_share": round(max(templates.values()) / sum(templates.values()), 3) if templates else 0.0,
        },
        **quality_metrics(env_root, baselines),
    }


@dataclass
class _Env:
    """One synthesized environment as loaded, with what the metrics read of it."""

    env: Environment
    provenance: dict[str, Any]
    design_tools: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.env.id

    @property
    def design(self) -> dict[str, Any] | None:
        design = self.provenance.get("design")
        return design if isinstance(design, dict) else None

    @property
    def writes(self) -> set[str]:
        return {t.name for t in self.env.spec.tools if t.kind == "write"}

    def role_kind(self, tool: str) -> str | None:
        """The tool's role kind from the design (``kind``, or ``role`` as a string or ``{"kind": …}``)."""
        entry = self.design_tools.get(tool) or {}
        role = entry.get("role")
        if isinstance(role, dict):
            role = role.get("kind")
        kind = role or entry.get("kind")
        return kind if isinstance(kind, str) else None


def _load(env_root: Path) -> tuple[list[_Env], dict[str, str]]:
    loaded, errors = [], {}
    for provenance_file in sorted(env_root.glob(f"*/{PROVENANCE_FILE}")):
        folder = provenance_file.parent
        try:
            provenance = json.loads(provenance_file.read_text(encoding="utf-8"))
            env = Environment.load(folder)
        except (EnvFleetError, ValueError, OSError) as e:
            errors[folder.name] = str(e).splitlines()[0][:300]
            continue
        design = provenance.get("design") if isinstance(provenance.get("design"), dict) else {}
        tools = design.get("tools") if isinstance(design.get("tools"), dict) else {}
        loaded.append(_Env(env, provenance, {k: v for k, v in tools.items() if isinstance(v, dict)}))
    return loaded, errors


def _metric(value: Any, target: str, met: bool | None, **detail: Any) -> dict[str, Any]:
    return {"value": value, "target": target, "met": met, "detail": detail}


def _share(part: int, whole: int) -> float:
    return round(part / whole, 3) if whole else 0.0


def quality_metrics(env_root: Path, baselines: Sequence[Path] = ()) -> dict[str, Any]:
    """The §12 acceptance metrics over the synthesized environments under ``env_root``; ``baselines`` are
    ``envfleet run`` folders (or their ``trajectories.jsonl``) of the noop, random and heuristic agents."""
    envs, errors = _load(env_root)
    metrics = {
        "write_tools_enforcing_rule": write_tools_enforcing_rule(envs),
        "write_tools_multi_table": write_tools_multi_table(envs),
        "intent_ops_min": intent_ops_min(envs),
        "policy_only_rules_min": policy_only_rules_min(envs),
        "authority_and_role": authority_and_role(envs),
        "duplicate_read_tools": duplicate_read_tools(envs),
        **invariant_metrics(envs),
        "policy_boilerplate": policy_boilerplate(envs),
        "family_mix": family_mix(envs),
        "staff_only_obeyed": staff_only_obeyed(envs),
        "single_check_write_tasks": single_check_write_tasks(envs),
        "trivial_answers": trivial_answers(envs),
        "marker_leaks": marker_leaks(envs),
        "code_leaks": code_leaks(envs),
        "split_hygiene": split_hygiene(envs),
        "baselines": baseline_rates(baselines, {e.id for e in envs}),
    }
    if not envs:  # nothing measured: no metric is met
        for key in metrics:
            metrics[key]["met"] = None
    met = [m["met"] for m in metrics.values()]
    return {
        "metrics": metrics,
        "metrics_summary": {
            "measured_envs": len(envs),
            "met": met.count(True),
            "unmet": met.count(False),
            "not_applicable": met.count(None),
        },
        "load_errors": errors,
    }


# -- issue 14: tools ---------------------------------------------------------------------------


def is_business_rule(rule: str | None) -> bool:
    """Does a ``require`` step's ``rule`` id name a business rule, not a mere check that the call makes sense?

    Business: a dotted id whose family (text before the first ``.``) is one of :data:`BUSINESS_RULE_FAMILIES`
    (``rule.``, ``avail.``, ``pay.``, ``phase.``, ``window.``) or a tool-enforced rule kind
    (:data:`TOOL_RULE_KINDS`), or an undotted ``<kind>_<n>`` id of such a kind (the current fleet's ids).
    Everything else is not: no id, the structural families (``exists.``, ``authority.``, ``state.``,
    ``args.``), and any other name (``appointment_exists``, ``cancel_from_state``, ``update_needs_a_value``,
    ``unique_email``) — a name the criterion does not know is not credited."""
    if not rule:
        return False
    family, dot, _ = rule.partition(".")
    if dot:
        return family in BUSINESS_RULE_FAMILIES or family in TOOL_RULE_KINDS
    return re.fullmatch(rf"(?:{'|'.join(TOOL_RULE_KINDS)})_\d+", rule) is not None


def _requires(steps: Iterable[Any]) -> Iterable[RequireStep]:
    for step in steps:
        if isinstance(step, RequireStep):
            yield step
        elif isinstance(step, ForEachStep):
            yield from _requires(step.steps)


def write_tools_enforcing_rule(envs: list[_Env]) -> dict[str, Any]:
    total, enforcing, per_env = 0, 0, {}
    for e in envs:
        tools = [t for t in e.env.spec.tools if t.kind == "write"]
        hits = sum(1 for t in tools if any(is_business_rule(r.rule) for r in _requires(t.steps)))
        total, enforcing = total + len(tools), enforcing + hits
        per_env[e.id] = f"{hits}/{len(tools)}"
    share = _share(enforcing, total)
    return _metric(share, "≥ 0.60", share >= 0.60, enforcing=enforcing, write_tools=total, per_env=per_env)


def write_tools_multi_table(envs: list[_Env]) -> dict[str, Any]:
    total, multi, per_env = 0, 0, {}
    for e in envs:
        tools = sorted(e.writes)
        hits = sum(1 for name in tools if len(e.env.report.tools[name].writes) >= 2)
        total, multi = total + len(tools), multi + hits
        per_env[e.id] = f"{hits}/{len(tools)}"
    share = _share(multi, total)
    return _metric(share, "≥ 0.40", share >= 0.40, multi_table=multi, write_tools=total, per_env=per_env)


def _minimum(per_env: dict[str, int], least: int, source: str) -> dict[str, Any]:
    low = min(per_env.values(), default=0)
    below = sorted(env for env, n in per_env.items() if n < least)
    return _metric(low, f"min ≥ {least}", bool(per_env) and not below, envs_below=below, per_env=per_env, source=source)


def intent_ops_min(envs: list[_Env]) -> dict[str, Any]:
    per_env = {
        e.id: sum(1 for name in e.env.tool_names if e.role_kind(name) in INTENT_KINDS) if e.design else 0 for e in envs
    }
    return _minimum(per_env, 3, "provenance design.tools role kinds; 0 without a design")


def policy_only_rules_min(envs: list[_Env]) -> dict[str, Any]:
    per_env = {e.id: len((e.design or {}).get("policy_rules") or []) for e in envs}
    return _minimum(per_env, 3, "provenance design.policy_rules; 0 without a design")


def _has_role_and_authority(policy: str) -> tuple[bool, bool]:
    lines = [line.strip() for line in policy.splitlines() if line.strip()]
    first = next((line for line in lines if not line.startswith("#")), "")
    return bool(_ROLE_LINE.match(first)), any(line.lower() == "## who may ask for what" for line in lines)


def authority_and_role(envs: list[_Env]) -> dict[str, Any]:
    missing: dict[str, list[str]] = {}
    for e in envs:
        role, authority = _has_role_and_authority(e.env.spec.policy)
        lacks = [name for name, has in (("agent role", role), ("who may ask for what", authority)) if not has]
        if lacks:
            missing[e.id] = lacks
    good = len(envs) - len(missing)
    return _metric(f"{good}/{len(envs)}", "all", bool(envs) and not missing, missing=missing)


def _output_properties(schema: dict[str, Any] | None) -> set[str]:
    """The fields of a read tool's result: a row's properties, or a row list's item properties."""
    properties = (schema or {}).get("properties") or {}
    rows = properties.get("rows")
    if isinstance(rows, dict) and rows.get("type") == "array" and "truncated" in properties:
        properties = (rows.get("items") or {}).get("properties") or {}
    return set(properties)


def _from_table(sql: str, fragments: dict[str, str], depth: int = 0) -> str | None:
    """The table in the outermost FROM of a SELECT, a fragment followed to its own (a few levels deep)."""
    try:
        tree = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError:
        return None
    source = tree.args.get("from_") or tree.args.get("from") if isinstance(tree, exp.Select) else None
    table = source.find(exp.Table) if source is not None else None
    if table is None:
        return None
    if table.name in fragments and depth < 5:
        return _from_table(fragments[table.name], fragments, depth + 1) or table.name
    return table.name


def _entity(e: _Env, tool: Tool, fragments: dict[str, str]) -> str | None:
    """What a read tool is about: the design's ``entity``, else the table its result is selected from."""
    declared = (e.design_tools.get(tool.name) or {}).get("entity")
    if isinstance(declared, str):
        return declared
    returned = next((s for s in reversed(tool.steps) if isinstance(s, ReturnStep) and s.sql), None)
    return _from_table(returned.sql, fragments) if returned is not None and returned.sql else None


def duplicate_read_tools(envs: list[_Env]) -> dict[str, Any]:
    """Pairs of read tools on one entity (the design's, else the table their results are selected from) where
    A's parameter names ⊆ B's and A's output properties ⊆ B's. A tool returning no named fields (a scalar, a
    text) is never A; two tools with the same parameters and outputs are one pair."""
    pairs: list[str] = []
    for e in envs:
        fragments = {f.name: f.sql for f in e.env.spec.fragments}
        reads = []
        for tool in e.env.spec.tools:
            if tool.kind != "read":
                continue
            descriptor = e.env.tool_descriptors[tool.name]
            params = set((descriptor.input_schema.get("properties") or {}).keys())
            outputs = _output_properties(descriptor.output_schema)
            reads.append((tool.name, params, outputs, _entity(e, tool, fragments)))
        for a, b in ((x, y) for x in reads for y in reads if x[0] != y[0]):
            if not a[2] or a[3] is None or a[3] != b[3] or not (a[1] <= b[1] and a[2] <= b[2]):
                continue
            if a[1] == b[1] and a[2] == b[2] and a[0] > b[0]:
                continue  # the same tool twice: one pair, not two
            pairs.append(f"{e.id}: {a[0]} ⊆ {b[0]}")
    return _metric(len(pairs), "0", not pairs, pairs=pairs)


def invariant_metrics(envs: list[_Env]) -> dict[str, dict[str, Any]]:
    """Every ``invariant_*`` fragment recomputed on the seed and on each task's gold final state."""
    seed_rows, gold_rows, principal_rows = 0, 0, 0
    seed_detail: dict[str, dict[str, int]] = {}
    gold_detail: dict[str, dict[str, dict[str, int]]] = {}
    failures: dict[str, str] = {}
    declared = {e.id: len(invariant_names(e.env)) for e in envs}
    for e in envs:
        try:
            seed = {name: rows for name, rows in seed_violations(e.env).items() if rows}
            gold = gold_violations(e.env)
        except InvariantError as error:
            failures[e.id] = str(error)
            continue
        if seed:
            seed_detail[e.id] = seed
        if gold:
            gold_detail[e.id] = gold
        seed_rows += sum(seed.values())
        principal_rows += sum(n for name, n in seed.items() if name.startswith(f"{INVARIANT_PREFIX}principal"))
        gold_rows += sum(n for counts in gold.values() for n in counts.values())
    without = sorted(env for env, n in declared.items() if not n)
    principals = sum(
        1 for e in envs for name in invariant_names(e.env) if name.startswith(f"{INVARIANT_PREFIX}principal")
    )
    checked = sum(declared.values())
    return {
        "invariant_violations": _metric(
            {"seed": seed_rows, "gold": gold_rows, "invariants": checked},
            "0 / 0",
            None if not checked else not (seed_rows or gold_rows or failures),
            seed=seed_detail,
            gold=gold_detail,
            not_evaluable=failures,
            envs_without_invariants=without,
        ),
        "principal_violations": _metric(
            principal_rows, "0", None if not principals else not principal_rows and not failures, invariants=principals
        ),
    }


def _policy_lines(policy: str) -> set[str]:
    """The lines a policy's boilerplate is measured on: not blank, not a heading, not a table's header or rule,
    and not in the closing section (the last ``## `` section, when there are two or more)."""
    lines = [" ".join(line.split()) for line in policy.splitlines()]
    sections = [i for i, line in enumerate(lines) if line.startswith("## ")]
    if len(sections) >= 2:
        lines = lines[: sections[-1]]
    kept = set()
    for index, line in enumerate(lines):
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not line or line.startswith("#") or _TABLE_RULE.match(line):
            continue
        if line.startswith("|") and _TABLE_RULE.match(following):
            continue
        kept.add(line)
    return kept


def policy_boilerplate(envs: list[_Env]) -> dict[str, Any]:
    """Share of policy lines (outside the closing section) that appear in more than a quarter of the
    environments, and in two at least."""
    per_env = {e.id: _policy_lines(e.env.spec.policy) for e in envs}
    seen = Counter(line for lines in per_env.values() for line in lines)
    common = {line for line, n in seen.items() if n >= 2 and n > BOILERPLATE_SHARE * len(envs)}
    total = sum(len(lines) for lines in per_env.values())
    shared = sum(len(lines & common) for lines in per_env.values())
    share = _share(shared, total)
    return _metric(share, "≤ 0.05", share <= 0.05, lines=total, shared_lines=shared, most_shared=sorted(common)[:10])


# -- issue 15: tasks ---------------------------------------------------------------------------


def _tasks(envs: list[_Env]) -> Iterable[tuple[_Env, Task]]:
    for e in envs:
        for task in e.env.tasks:
            yield e, task


def _gold_writes(e: _Env, task: Task) -> list[str]:
    writes = e.writes
    return [call.tool for call in task.gold if call.tool in writes]


def _plain_transition(e: _Env, tool: str) -> bool:
    """A lifecycle step: the design's ``transition`` role, or (without a design) a write tool taking ids only."""
    if e.design_tools:
        return e.role_kind(tool) == "transition"
    params = (e.env.tool_descriptors[tool].input_schema.get("properties") or {}).keys()
    return all(name.endswith("_id") for name in params)


FAMILY_TARGETS = {
    "multi_write": (">=", 0.25),
    "refusal": (">=", 0.15),
    "information": (">=", 0.10),
    "conditional": (">=", 0.10),
    "lifecycle_one_liner": ("<=", 0.30),
}


def family_mix(envs: list[_Env]) -> dict[str, Any]:
    """Shares of tasks per kind: ``multi_write`` (gold makes ≥ 2 write calls), ``refusal``, ``information`` and
    ``conditional`` (``servers.spec.family_of``), ``lifecycle_one_liner`` (an action whose one write is a plain
    transition, with no trait tag)."""
    counts: Counter[str] = Counter()
    per_env: dict[str, Counter[str]] = defaultdict(Counter)
    total = 0
    for e, task in _tasks(envs):
        total += 1
        writes = _gold_writes(e, task)
        family = family_of(task, e.env.spec)
        kinds = [family]
        if len(writes) >= 2:
            kinds.append("multi_write")
        if (
            family == "action"
            and len(writes) == 1
            and _plain_transition(e, writes[0])
            and not TRAIT_TAGS & set(task.tags)
        ):
            kinds.append("lifecycle_one_liner")
        counts.update(kinds)
        per_env[e.id].update(kinds)
    shares = {kind: _share(counts[kind], total) for kind in FAMILY_TARGETS}
    met_each = {
        kind: (shares[kind] >= bound if op == ">=" else shares[kind] <= bound)
        for kind, (op, bound) in FAMILY_TARGETS.items()
    }
    return _metric(
        shares,
        ", ".join(f"{kind} {'≥' if op == '>=' else '≤'} {bound:.2f}" for kind, (op, bound) in FAMILY_TARGETS.items()),
        bool(total) and all(met_each.values()),
        tasks=total,
        met_each=met_each,
        families=dict(counts.most_common()),
        per_env={env: dict(c.most_common()) for env, c in sorted(per_env.items())},
    )


def staff_only_obeyed(envs: list[_Env]) -> dict[str, Any]:
    """Tasks whose gold calls a tool the design marks ``expose: forbidden`` (or ``hidden``): the agent was
    rewarded for doing what the customer may not ask. n/a unless some provenance says which tools those are."""
    judged = [e for e in envs if e.design_tools]
    if not judged:
        return _metric("n/a", "0", None, reason="no provenance design says which tools are staff-only")
    obeyed = []
    for e in judged:
        forbidden = {name for name, t in e.design_tools.items() if t.get("expose") in ("forbidden", "hidden")}
        obeyed += [f"{e.id}/{task.id}" for task in e.env.tasks if any(c.tool in forbidden for c in task.gold)]
    return _metric(len(obeyed), "0", not obeyed, tasks=obeyed[:50], judged_envs=len(judged))


def single_check_write_tasks(envs: list[_Env]) -> dict[str, Any]:
    """Tasks whose gold writes but that have fewer than two state checks (the collateral check not counted)."""
    found = [f"{e.id}/{task.id}" for e, task in _tasks(envs) if _gold_writes(e, task) and len(task.checks) < 2]
    writing = sum(1 for e, task in _tasks(envs) if _gold_writes(e, task))
    return _metric(len(found), "0", not found, write_tasks=writing, examples=found[:20])


def trivial_answers(envs: list[_Env]) -> dict[str, Any]:
    """Answered tasks whose every fact is one token among 0, 1, yes, no (after the scorer's normalisation)."""
    answered = trivial = 0
    for _, task in _tasks(envs):
        if task.answer is None:
            continue
        answered += 1
        tokens = [normalise_answer(fact) for fact in task.answer.facts]
        if all(len(t) == 1 and t[0] in TRIVIAL_FACTS for t in tokens):
            trivial += 1
    share = _share(trivial, answered)
    return _metric(share, "≤ 0.10", share <= 0.10, trivial=trivial, answered=answered)


def _strings(task: Task) -> Iterable[tuple[str, list[str]]]:
    """(table, string values) of each row a task's initial state inserts or updates."""
    for change in task.initial_state:
        if change.op == "insert":
            for row in change.rows:
                yield change.table, [v for v in row.values() if isinstance(v, str)]
        elif change.op == "update":
            yield change.table, [v for v in change.set.values() if isinstance(v, str)]


def marker_leaks(envs: list[_Env]) -> dict[str, Any]:
    """Rows a task's initial state adds or changes (its distractors) carrying a ``twin.`` / ``alt.`` marker."""
    rows, examples = 0, []
    for e, task in _tasks(envs):
        for table, values in _strings(task):
            if any(_MARKER.search(v) for v in values):
                rows += 1
                if len(examples) < 10:
                    examples.append(f"{e.id}/{task.id} {table}")
    return _metric(rows, "0", not rows, examples=examples)


def code_leaks(envs: list[_Env]) -> dict[str, Any]:
    """Instructions with what a user would not say or know: an id-like code (``ABC-0001``), a primary-key value
    of the task's world, a ``column: value`` dump of a column of the environment, or a machine date-time."""
    reasons: Counter[str] = Counter()
    leaking, examples = 0, []
    for e in envs:
        keys = {
            str(row[column])
            for table in e.env.spec.tables
            for row in e.env.seed.get(table.name, [])
            for column in table.primary_key
            if isinstance(row.get(column), str) and len(str(row[column])) >= 4
        }
        columns = sorted({c.name for t in e.env.spec.tables for c in t.columns}, key=len, reverse=True)
        names = "|".join(re.escape(c) for c in {*columns, *(c.replace("_", " ") for c in columns)})
        dump = re.compile(rf"(?i)\b(?:{names}):\s*\S") if names else None
        for task in e.env.tasks:
            text = task.instruction
            own = keys | {
                str(row.get(c))
                for change in task.initial_state
                if change.op == "insert"
                for row in change.rows
                for c in e.env.primary_keys.get(change.table, [])
                if isinstance(row.get(c), str) and len(str(row.get(c))) >= 4
            }
            found = [
                reason
                for reason, hit in (
                    ("id_code", _ID_CODE.search(text) is not None),
                    ("primary_key", bool(own & set(_TOKEN.findall(text)))),
                    ("field_dump", dump is not None and dump.search(text) is not None),
                    ("machine_datetime", _MACHINE_DATETIME.search(text) is not None),
                )
                if hit
            ]
            if found:
                leaking += 1
                reasons.update(found)
                if len(examples) < 10:
                    examples.append(f"{e.id}/{task.id}: {', '.join(found)}")
    return _metric(leaking, "0", not leaking, by_reason=dict(reasons.most_common()), examples=examples)


def _principal(task: Task) -> str | None:
    known = task.user.known
    for key in ("name", "full name", "full_name"):
        if known.get(key):
            return known[key].strip().casefold()
    named = next((v for k, v in known.items() if "name" in k.lower() and v), None)
    if named:
        return named.strip().casefold()
    head = task.user.persona.split(",")[0].strip()
    return head.casefold() or None


def _effect(e: _Env, task: Task) -> str:
    """What the task does, whatever its wording: its gold write calls with their arguments (an answer on top
    changes nothing in the world), or, for a task that writes nothing, its calls and the facts it asks for."""
    writes = [[c.tool, c.arguments] for c in task.gold if c.tool in e.writes]
    if writes:
        return json.dumps(writes, sort_keys=True)
    facts = sorted(task.answer.facts) if task.answer else []
    return json.dumps([[c.tool, c.arguments] for c in task.gold] + [facts], sort_keys=True)


def split_hygiene(envs: list[_Env]) -> dict[str, Any]:
    """Across train and test (per environment): pairs with the same effect, pairs worded alike (difflib ratio
    ≥ 0.9), test tasks whose principal (the user's name) also appears in train; and held-out environments
    (all their tasks in test)."""
    same_effect, similar, reused, held_out = [], [], [], []
    for e in envs:
        train = [t for t in e.env.tasks if t.split == "train"]
        test = [t for t in e.env.tasks if t.split == "test"]
        if test and not train:
            held_out.append(e.id)
        effects = defaultdict(list)
        for task in train:
            effects[_effect(e, task)].append(task.id)
        for task in test:
            same_effect += [f"{e.id}: {other} ~ {task.id}" for other in effects.get(_effect(e, task), [])]
        for a, b in ((a, b) for a in train for b in test):
            matcher = difflib.SequenceMatcher(None, a.instruction.casefold(), b.instruction.casefold())
            if matcher.real_quick_ratio() >= SIMILAR_WORDING and matcher.quick_ratio() >= SIMILAR_WORDING:
                if matcher.ratio() >= SIMILAR_WORDING:
                    similar.append(f"{e.id}: {a.id} ~ {b.id}")
        people = {_principal(t) for t in train} - {None}
        reused += [f"{e.id}/{t.id}" for t in test if _principal(t) in people]
    value = {
        "same_effect_pairs": len(same_effect),
        "similar_wording_pairs": len(similar),
        "test_principal_in_train": len(reused),
        "held_out_envs": len(held_out),
    }
    met = not same_effect and not similar and not reused and bool(held_out)
    return _metric(
        value,
        "0 / 0 / 0 / ≥ 1",
        met,
        same_effect=same_effect[:20],
        similar_wording=similar[:20],
        test_principal_in_train=reused[:20],
        held_out=held_out,
    )


# -- baselines ---------------------------------------------------------------------------------


class BaselineError(SynthesisError):
    """A ``--baselines`` file cannot be read as ``envfleet run`` results."""


def _records(path: Path) -> list[dict[str, Any]]:
    file = path / "trajectories.jsonl" if path.is_dir() else path
    try:
        records = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as e:
        raise BaselineError(f"{file} is not the results of an envfleet run: {e}") from None
    if not all(isinstance(r, dict) for r in records):
        raise BaselineError(f"{file} is not the results of an envfleet run: a line is not a JSON object")
    return records


def baseline_rates(paths: Sequence[Path], synthesized: set[str]) -> dict[str, Any]:
    """Success rates per agent from ``envfleet run`` results (a run folder or its ``trajectories.jsonl``): on
    the synthesized environments' tasks (the targets: noop 0, random 0, heuristic ≤ 0.10) and on all."""
    if not paths:
        return _metric("n/a", "noop 0, random 0, heuristic ≤ 0.10", None, reason="no --baselines given")
    by_agent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in paths:
        for record in _records(path):
            if record.get("status") == "ok" and record.get("reward") is not None:
                by_agent[str(record.get("agent"))].append(record)
    value, detail, met = {}, {}, True
    for agent, records in sorted(by_agent.items()):
        mine = [r for r in records if r.get("env_id") in synthesized]
        rate = _share(sum(bool(r.get("success")) for r in mine), len(mine)) if mine else None
        value[agent] = rate
        detail[agent] = {
            "synthesized_trials": len(mine),
            "all_trials": len(records),
            "all_success_rate": _share(sum(bool(r.get("success")) for r in records), len(records)),
        }
        bound = BASELINE_TARGETS.get(agent)
        if bound is not None and rate is not None and rate > bound:
            met = False
    missing = sorted(a for a in BASELINE_TARGETS if value.get(a) is None)
    return _metric(
        value, "noop 0, random 0, heuristic ≤ 0.10", met and not missing, agents=detail, missing_agents=missing
    )


# -- rendering ---------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def render(report: dict[str, Any], console: Console) -> None:
    table = Table("measure", "value")
    for key, value in report.items():
        if key in ("metrics", "metrics_summary", "load_errors"):
            continue
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)
    metrics = report.get("metrics") or {}
    if not metrics:
        return
    summary = report.get("metrics_summary", {})
    quality = Table(
        "metric",
        "value",
        "target",
        "met",
        title=f"acceptance metrics over {summary.get('measured_envs', 0)} synthesized environments "
        f"(met {summary.get('met', 0)}, unmet {summary.get('unmet', 0)}, n/a {summary.get('not_applicable', 0)})",
    )
    for key, metric in metrics.items():
        met = metric["met"]
        mark = "[green]met[/green]" if met else "n/a" if met is None else "[red]unmet[/red]"
        quality.add_row(key, _show(metric["value"]), metric["target"], mark)
    if not console.is_terminal:  # a pipe or a file is not 80 columns wide: rows unwrapped, one line per metric
        console.width = max(
            console.width, Measurement.get(console, console.options.update_width(1000), quality).maximum
        )
    console.print(quality)
    for folder, problem in (report.get("load_errors") or {}).items():
        console.print(f"[red]not measured:[/red] {folder}: {problem}", highlight=False)
