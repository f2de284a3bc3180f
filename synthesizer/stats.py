"""The quality report over synthesized environments (``envfleet synth stats``).

Reads environment folders and their ``provenance.json``: domains and sectors covered, tools
(and write tools) per environment, tables and tasks per environment, the chain-length
histogram, procedural-test and gate pass rates, and how varied the instructions are.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["fleet_stats", "render"]


def fleet_stats(env_root: Path) -> dict[str, Any]:
    tools, writes, tables, task_counts = [], [], [], []
    domains, sectors = set(), set()
    chains: Counter[int] = Counter()
    test_scores, attempted, published = [], 0, 0
    instructions: list[str] = []
    families: Counter[str] = Counter()
    templates: Counter[str] = Counter()
    for provenance_file in sorted(env_root.glob("*/provenance.json")):
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
    }


def render(report: dict[str, Any], console: Console) -> None:
    table = Table("measure", "value")
    for key, value in report.items():
        table.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)
