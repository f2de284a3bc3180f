"""Extra tools from a model: richer business operations than the modeler writes, as SQL steps.

The model sees the tables (with sample rows), the tools there are and the policy, and proposes
tools in the runtime's own format with ``probes``: calls that must succeed and calls a rule must
refuse. A proposal is checked by the runtime (every statement parsed, named tables and columns,
declared parameters, statement kinds) and then by running its probes on fresh states (the call
succeeds and writes only what its statements declare; the refusal changes nothing; malformed
arguments are refused). Problems go back to the model located at ``tools.<name>...``; a tool
that still fails after the last round is dropped, and the rest are kept.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from servers import Environment, SpecError
from servers.spec import Tool

from ..modeling import Design
from ..procedural_tests import ToolProbes, probe_tools
from . import prompts
from .client import ChatClient
from .repair import Problems, Proposal, propose

__all__ = ["ToolsOutcome", "propose_tools", "spec_summary"]

HELPERS = (
    "one statement per step; values only as :name parameters (the tool's own, or earlier `let` names; a `let` "
    "with shape row binds :<name>_<column>, with shape rows binds :<name> to a JSON array of row objects); now() "
    "and today() give the environment clock; new_id('PREFIX') draws the next id of a declared sequence (write tools "
    "only); no DDL, PRAGMA, ATTACH, random(), CURRENT_TIMESTAMP, OR REPLACE, ON CONFLICT, RETURNING, total(); list "
    "the columns of an INSERT. To act on each element of a list argument (several items of an order), use a "
    '`for_each` step {"kind": "for_each", "over": "<array parameter or rows let>", "as": "item", "steps": [require, '
    "let or exec steps using :item_<key> or, for a list of plain values, :item]}. A query several tools share is "
    "declared once in the spec's `fragments` ({name, description, sql}) and read like a table. Money is integer "
    "cents (`*_cents` integer columns and parameters): compute with mul_div(a, b, c) (exact a*b/c, halves to even) "
    "and round_half_even(x), show with money_text(cents); never put a real number inside json_object(). Every "
    "parameter needs a description and a type (an `errorMessage` may word what is wrong with it); write tools need "
    "an exec step."
)


@dataclass
class ToolsOutcome:
    tools: list[dict[str, Any]] = field(default_factory=list)  # accepted, without their probes
    dropped: dict[str, list[str]] = field(default_factory=dict)  # tool -> its last problems
    probes: dict[str, ToolProbes] = field(default_factory=dict)  # the accepted tools' probes
    proposal: Proposal[list[dict[str, Any]]] | None = None

    def report(self) -> dict[str, Any]:
        return {
            "accepted": [t["name"] for t in self.tools],
            "dropped": self.dropped,
            **(self.proposal.report() if self.proposal else {}),
        }


def spec_summary(spec: dict[str, Any], seed: dict[str, list[dict[str, Any]]], samples: int = 3) -> str:
    lines = ["Tables:"]
    for table in spec["tables"]:
        columns = []
        for c in table["columns"]:
            notes = (
                [c["type"]]
                + (["primary key"] if c.get("primary_key") else [])
                + ([f"one of {c['enum']}"] if c.get("enum") else [])
                + ([f"-> {c['references']}"] if c.get("references") else [])
            )
            columns.append(f"{c['name']} ({', '.join(notes)})")
        lines.append(f"- {table['name']}: {'; '.join(columns)}")
        for row in seed.get(table["name"], [])[:samples]:
            lines.append(f"    sample: {json.dumps(row, ensure_ascii=False)}")
    lines.append(
        "Sequences: "
        + ", ".join(f"new_id('{s['prefix']}') for {s['table']}.{s['column']}" for s in spec.get("sequences", []))
    )
    lines.append("Tools already there: " + ", ".join(t["name"] for t in spec["tools"]))
    lines.append(f"Policy:\n{spec['policy']}")
    return "\n".join(lines)


def propose_tools(
    client: ChatClient, spec: dict[str, Any], seed: dict[str, list[dict[str, Any]]], design: Design, count: int = 3
) -> ToolsOutcome:
    """Ask for ``count`` extra tools and keep the ones that pass the runtime and their probes."""
    existing = {t["name"] for t in spec["tools"]}
    schema = Tool.model_json_schema()
    messages = prompts.tools(spec_summary(spec, seed), schema, HELPERS, count)
    outcome = ToolsOutcome()
    best: dict[str, Any] = {"passing": [], "failing": {}, "probes": {}}

    def check(data: dict[str, Any]) -> list[dict[str, Any]]:
        proposed = data.get("tools")
        if not isinstance(proposed, list) or not proposed:
            raise Problems(['tools: missing; answer {"tools": [...]}'])
        if len(proposed) > count:
            raise Problems([f"tools: {len(proposed)} tools proposed; propose at most {count}"])
        problems: dict[str, list[str]] = {}
        tools: dict[str, dict[str, Any]] = {}
        probes: dict[str, ToolProbes] = {}
        for index, item in enumerate(proposed):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise Problems([f"tools[{index}]: each tool is an object with a name"])
            name, item = item["name"], copy.deepcopy(item)
            raw = item.pop("probes", None)
            where = f"tools.{name}"
            if name in existing:
                problems.setdefault(name, []).append(
                    f"{where}.name: the environment already has a tool named {name!r}; choose another name"
                )
                continue
            if name in tools:
                problems.setdefault(name, []).append(f"{where}.name: two proposed tools are named {name!r}")
                continue
            raw = raw if isinstance(raw, dict) else {}
            succeeds = raw.get("succeeds") if isinstance(raw.get("succeeds"), list) else []
            fails_raw = raw.get("fails") if isinstance(raw.get("fails"), list) else []
            fails = [f.get("arguments") if isinstance(f, dict) else None for f in fails_raw]
            if not succeeds or not all(isinstance(a, dict) for a in succeeds):
                problems.setdefault(name, []).append(
                    f"{where}.probes.succeeds: give 1 to 3 argument objects the tool succeeds on"
                )
            if not all(isinstance(a, dict) for a in fails):
                problems.setdefault(name, []).append(
                    f'{where}.probes.fails: each is {{"arguments": {{...}}, "because": "..."}}'
                )
            elif item.get("kind") == "write" and not fails:
                problems.setdefault(name, []).append(
                    f"{where}.probes.fails: a write tool needs 1 to 3 calls its rules refuse"
                )
            tools[name] = item
            probes[name] = ToolProbes(
                [a for a in succeeds if isinstance(a, dict)], [a for a in fails if isinstance(a, dict)]
            )
        _static_problems(spec, seed, tools, problems)
        passing = {n: t for n, t in tools.items() if n not in problems}
        if passing:
            env = Environment.from_spec({**spec, "tools": [*spec["tools"], *passing.values()]}, seed)
            report = probe_tools(env, design, {n: probes[n] for n in passing})
            for probe in report.failures():
                problems.setdefault(probe.tool, []).append(
                    f"tools.{probe.tool}.probes ({probe.kind} "
                    f"{json.dumps(probe.arguments, ensure_ascii=False)[:200]}): {probe.detail}"
                )
        good = [t for n, t in tools.items() if n not in problems]
        if len(good) >= len(best["passing"]):
            best.update(passing=good, failing=problems, probes={n: probes[n] for n in tools if n not in problems})
        if problems:
            raise Problems([p for name in sorted(problems) for p in problems[name]])
        return good

    outcome.proposal = propose(client, "tools", messages, check)
    outcome.tools = outcome.proposal.value if outcome.proposal.ok else best["passing"]
    outcome.dropped = {} if outcome.proposal.ok else best["failing"]
    outcome.probes = best.get("probes", {}) if outcome.tools else {}
    return outcome


def _static_problems(
    spec: dict[str, Any],
    seed: dict[str, list[dict[str, Any]]],
    tools: dict[str, dict[str, Any]],
    problems: dict[str, list[str]],
) -> None:
    """The runtime's validation of each proposed tool, its issues filed under the tool's name."""
    candidates = {n: t for n, t in tools.items() if n not in problems}
    while candidates:
        try:
            Environment.from_spec({**spec, "tools": [*spec["tools"], *candidates.values()]}, seed)
            return
        except SpecError as e:
            blamed = False
            for issue in e.issues:
                name = next(
                    (
                        n
                        for n in candidates
                        if issue.location == f"tools.{n}" or issue.location.startswith(f"tools.{n}.")
                    ),
                    None,
                )
                if name is not None:
                    problems.setdefault(name, []).append(str(issue))
                    blamed = True
            if not blamed:  # a problem no single tool owns: blame them all
                for name in candidates:
                    problems.setdefault(name, []).extend(str(i) for i in e.issues)
            candidates = {n: t for n, t in candidates.items() if n not in problems}
