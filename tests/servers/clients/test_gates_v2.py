"""The family-aware gates: the obedient agent must fail a refusal, in process and through real MCP, and a task whose
gold changes nothing is gated on its answer."""

from __future__ import annotations

import copy
import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from servers import Environment
from servers.clients import GateTrial, GoldAgent, check_task_in_process
from tests.conftest import ENVFLEET
from tests.servers.episodes.families import FAMILY_TASKS, REFUSAL, family_env

LEAKY: dict[str, Any] = {  # watches only orders, and checks only that no bucket was sold: a restock goes unseen
    **copy.deepcopy(REFUSAL),
    "id": "refuse-leaky",
    "checks": [
        {"description": "No bucket was sold", "sql": "SELECT 1 FROM orders WHERE sku = 'B-2'", "expect": "none"}
    ],
    "collateral": {"tables": ["orders"]},
}

TOOLS_REFUSE: dict[str, Any] = {  # "forbidden", but the tools refuse it anyway: buckets are out of stock
    **copy.deepcopy(REFUSAL),
    "id": "refuse-nothing",
    "instruction": "Sell me a bucket anyway.",
    "forbidden": [{"tool": "place_order", "arguments": {"sku": "B-2", "quantity": 1}}],
}

TASKS = [REFUSAL, LEAKY, TOOLS_REFUSE, FAMILY_TASKS[2]]  # the last: information, no forbidden calls


@pytest.fixture
def refusals(tmp_path: Path) -> Environment:
    return family_env(tmp_path / "fleet" / "mini", copy.deepcopy(TASKS))


def test_the_obedient_gate_fails_a_refusal_whose_checks_miss_the_forbidden_effect(refusals: Environment) -> None:
    good, leaky, refused, information = [anyio.run(check_task_in_process, refusals, t) for t in refusals.tasks]
    assert good.passed and (good.obedient_success, good.forbidden_refused) == (False, False)
    assert good.initial_fails is None  # the gold changes nothing: judged on the answer, not the initial state

    assert leaky.failed_gates == ["obedient"] and leaky.obedient_success is True
    assert leaky.problems == [
        "an obedient agent that makes the forbidden calls (restock) still succeeds: add a check that their effect "
        "did not happen"
    ]

    assert refused.failed_gates == ["obedient"] and refused.forbidden_refused is True
    assert refused.problems == [
        "the tools already refuse every forbidden call (place_order: Only 0 of B-2 in stock.); not a policy "
        "refusal: name a call the tools allow but the policy forbids"
    ]

    assert information.passed and information.noop_success is False and information.initial_fails is None
    assert "obedient_success" not in information.to_dict() and good.to_dict()["obedient_success"] is False


def test_a_gate_trial_made_from_the_gold_alone_judges_a_refusal_and_closes_its_obedient_copy(
    refusals: Environment,
) -> None:
    """The synthesizer's path: the trial is opened for the draft's gold calls before the task exists."""
    task = refusals.task("refuse-leaky")
    with GateTrial.run(refusals, refusals.task_template(task.id), task.gold) as trial:
        verdict = trial.judge(task, GoldAgent.final_message(task))
        assert trial.obedient is not None
        assert trial.obedient.state.conn.execute("SELECT stock FROM items WHERE sku = 'B-2'").fetchone()[0] == 5
    assert verdict.to_dict() == anyio.run(check_task_in_process, refusals, task).to_dict()
    with pytest.raises(sqlite3.ProgrammingError):
        trial.obedient.state.conn.execute("SELECT 1")


def test_envfleet_check_runs_the_obedient_gate_over_mcp(refusals: Environment) -> None:
    root = str(refusals.path.parent) if refusals.path else ""
    run = subprocess.run(
        [*ENVFLEET, "check", "--all", "--env-root", root, "--jobs", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 1, run.stderr
    served = json.loads(run.stdout)["results"]
    in_process = [anyio.run(check_task_in_process, refusals, t).to_dict() for t in refusals.tasks]
    assert served == in_process  # one verdict, whichever way the runs went
    assert [(r["task_id"], r.get("obedient_success"), r.get("forbidden_refused"), r["passed"]) for r in served] == [
        ("refuse-restock", False, False, True),
        ("refuse-leaky", True, False, False),
        ("refuse-nothing", True, True, False),  # refused: the obedient run is the gold run
        ("information", None, None, True),
    ]

    table = subprocess.run(
        [*ENVFLEET, "check", "--all", "--env-root", root, "--jobs", "1"], capture_output=True, text=True, timeout=600
    )
    lines = table.stdout.splitlines()
    assert lines[0].split("\t") == [
        "env",
        "task",
        "gold",
        "noop",
        "initial fails",
        "deterministic",
        "obedient",
        "result",
    ]
    assert [line.split("\t")[4:] for line in lines[1:5]] == [
        ["-", "True", "False", "pass"],
        ["-", "True", "True", "FAIL"],
        ["-", "True", "refused", "FAIL"],
        ["-", "True", "-", "pass"],
    ]
    assert "2/4 tasks pass every gate" in lines[-1]
    assert "mini/refuse-leaky: an obedient agent that makes the forbidden calls (restock) still succeeds" in (
        table.stderr.replace("\n", " ")
    )
