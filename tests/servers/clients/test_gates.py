"""`envfleet check` and `envfleet run`: the gates and the built-in agents, through real MCP."""

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
from tests.conftest import ENVFLEET, MINI_SEED, MINI_SPEC, MINI_TASKS, write_env, write_tasks


def envfleet(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, *args], capture_output=True, text=True, timeout=timeout)


def test_reference_task_packs_pass_every_gate() -> None:
    result = envfleet("check", "library", "clinic", "online_store")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    passed, total = summary.split()[0].split("/")
    assert passed == total and int(total) >= 60, summary


def test_mini_pack_passes(mini_env_dir: Path) -> None:
    result = envfleet("check", "--all", "--env-root", str(mini_env_dir.parent))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2/2 tasks pass every gate" in result.stdout


def test_gates_catch_bad_tasks(mini_env_dir: Path) -> None:
    good = copy.deepcopy(MINI_TASKS[0])
    failing_gold = {
        **good,
        "id": "bad-gold",
        "gold": [{"tool": "place_order", "arguments": {"sku": "B-2", "quantity": 1}}],
    }
    passes_initially = {
        **good,
        "id": "bad-initial",
        "answer": None,
        "checks": [{"description": "Anvils exist", "sql": "SELECT 1 FROM items WHERE sku = 'A-1'"}],
    }
    unreachable = {
        **good,
        "id": "bad-check",
        "checks": [*good["checks"], {"description": "Impossible", "sql": "SELECT 1 FROM items WHERE stock > 1000"}],
    }
    write_tasks(mini_env_dir, [good, failing_gold, passes_initially, unreachable])
    result = envfleet("check", "--all", "--env-root", str(mini_env_dir.parent))
    assert result.returncode == 1
    assert "1/4 tasks pass every gate" in result.stdout
    problems = result.stderr
    assert "mini/bad-gold" in problems and "gold.0: place_order fails: Only 0 of B-2 in stock." in problems
    assert "mini/bad-initial" in problems and "doing nothing already succeeds" in problems
    assert "the initial state already passes every check" in problems
    assert "mini/bad-check" in problems and "Impossible" in problems


LONG_ENV = "mini_hardware_counter_with_a_long_environment_identifier"
LONG_TASK = "mini-001-place-an-order-for-an-anvil-with-a-task-id-long-enough-to-be-cut"


def bad_tasks() -> list[dict[str, Any]]:
    """One good task and three that fail a gate each, for the mini environment."""
    good = copy.deepcopy(MINI_TASKS[0])
    return [
        {**good, "id": LONG_TASK},
        {**good, "id": "bad-gold", "gold": [{"tool": "place_order", "arguments": {"sku": "B-2", "quantity": 1}}]},
        {
            **good,
            "id": "bad-initial",
            "answer": None,
            "checks": [{"description": "Anvils exist", "sql": "SELECT 1 FROM items WHERE sku = 'A-1'"}],
        },
        copy.deepcopy(MINI_TASKS[1]),
    ]


def test_parallel_check_gives_the_serial_verdicts_as_json(tmp_path: Path) -> None:
    spec = copy.deepcopy(MINI_SPEC)
    spec["id"] = LONG_ENV
    folder = write_env(tmp_path / "fleet" / LONG_ENV, spec, copy.deepcopy(MINI_SEED))
    write_tasks(folder, bad_tasks())
    root = str(tmp_path / "fleet")
    serial = envfleet("check", "--all", "--env-root", root, "--jobs", "1", "--json")
    parallel = envfleet("check", "--all", "--env-root", root, "--jobs", "2", "--json")
    assert serial.returncode == parallel.returncode == 1, serial.stderr + parallel.stderr
    assert parallel.stdout == serial.stdout  # the same document, byte for byte
    document = json.loads(serial.stdout)
    assert document["ok"] is False
    assert document["totals"] == {"tasks": 4, "passed": 2, "failed": 2}
    assert document["environments"] == {LONG_ENV: {"tasks": 4, "passed": 2, "failed": 2}}
    results = document["results"]
    assert [r["task_id"] for r in results] == [LONG_TASK, "bad-gold", "bad-initial", MINI_TASKS[1]["id"]]
    assert [r["passed"] for r in results] == [True, False, False, True]
    assert results[0] == {
        "env_id": LONG_ENV,
        "task_id": LONG_TASK,
        "gold_reward": 1.0,
        "noop_success": False,
        "initial_fails": True,
        "deterministic": True,
        "problems": [],
        "passed": True,
    }
    assert any("Only 0 of B-2 in stock" in p for p in results[1]["problems"])
    assert "doing nothing already succeeds" in results[2]["problems"]
    # progress on a stderr that is not a terminal: one line at the end at least, naming the jobs
    assert "check: 4/4 tasks gated, 2 failed" in serial.stderr and "(1 job)" in serial.stderr
    assert "check: 4/4 tasks gated, 2 failed" in parallel.stderr and "(2 jobs)" in parallel.stderr


def test_check_table_through_a_pipe_keeps_whole_ids(tmp_path: Path) -> None:
    spec = copy.deepcopy(MINI_SPEC)
    spec["id"] = LONG_ENV
    folder = write_env(tmp_path / "fleet" / LONG_ENV, spec, copy.deepcopy(MINI_SEED))
    write_tasks(folder, [bad_tasks()[0]])
    result = envfleet("check", LONG_ENV, "--env-root", str(tmp_path / "fleet"))
    assert result.returncode == 0, result.stdout + result.stderr
    header, row, summary = result.stdout.splitlines()
    assert header.split("\t") == ["env", "task", "gold", "noop", "initial fails", "deterministic", "result"]
    assert row.split("\t") == [LONG_ENV, LONG_TASK, "1.0", "False", "True", "True", "pass"]
    assert summary == "1/1 tasks pass every gate"


def test_parallel_check_refuses_a_registry_whose_task_counts_are_stale(mini_env_dir: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    assert envfleet("registry", "build", "--env-root", str(mini_env_dir.parent), "--out", str(registry)).returncode == 0
    write_tasks(mini_env_dir, [*copy.deepcopy(MINI_TASKS), {**copy.deepcopy(MINI_TASKS[0]), "id": "mini-003"}])
    result = envfleet("check", "--all", "--registry", str(registry), "--jobs", "2")
    assert result.returncode == 1
    assert "mini has 3 tasks but" in result.stderr and "the registry is stale" in result.stderr
    assert "Traceback" not in result.stderr


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_trajectories(mini_env_dir: Path, tmp_path: Path) -> None:
    root = str(mini_env_dir.parent)
    gold = tmp_path / "gold.jsonl"
    result = envfleet("run", "--env", "mini", "--agent", "gold", "--out", str(gold), "--env-root", root)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(gold)
    assert [r["task_id"] for r in records] == ["mini-001", "mini-002"]
    assert all(r["success"] and r["reward"] == 1.0 for r in records)
    assert [s["tool"] for s in records[0]["trajectory"]] == ["search_items", "place_order"]
    assert records[0]["final_message"] and records[0]["final_state_hash"]
    assert "gold: 2/2 episodes succeeded" in result.stderr

    noop = tmp_path / "noop.jsonl"
    envfleet("run", "--env", "mini", "--agent", "noop", "--split", "train", "--out", str(noop), "--env-root", root)
    records = read_jsonl(noop)
    assert len(records) == 1 and records[0]["success"] is False and records[0]["trajectory"] == []

    rand = tmp_path / "random.jsonl"
    result = envfleet(
        "run",
        "--env",
        "mini",
        "--agent",
        "random",
        "--trials",
        "3",
        "--seed",
        "4",
        "--out",
        str(rand),
        "--env-root",
        root,
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(rand)
    assert len(records) == 6 and all(r["trajectory"] for r in records)
    assert all(0.0 <= r["reward"] <= 1.0 for r in records)


def test_run_rejects_unknown_agent_and_tasks(mini_env_dir: Path) -> None:
    root = str(mini_env_dir.parent)
    unknown = envfleet("run", "--env", "mini", "--agent", "genius", "--env-root", root)
    assert unknown.returncode == 2 and "unknown agent 'genius'" in unknown.stderr
    missing = envfleet("run", "--env", "mini", "--tasks", "mini-404", "--env-root", root)
    assert missing.returncode == 1 and "no such task(s): mini-404" in missing.stderr


@pytest.mark.parametrize("env_id", ["library", "clinic"])
def test_reference_packs_have_enough_varied_tasks(env_id: str, request: pytest.FixtureRequest) -> None:
    env = request.getfixturevalue(env_id)
    tasks = env.tasks
    assert len(tasks) >= 15
    assert {t.split for t in tasks} == {"train", "test"}
    assert all(3 <= len(t.gold) <= 8 for t in tasks)
    assert sum(1 for t in tasks if t.answer) >= 3
    assert sum(1 for t in tasks if t.initial_state) >= 3
    for task in tasks:
        for token in ("M-1", "C-0", "LOAN-", "FINE-", "PAT-", "APT-", "INV-", "SLOT-"):
            assert token not in task.instruction, (task.id, token)


def test_in_process_gates_give_the_verdicts_of_the_gates_over_mcp(tmp_path: Path) -> None:
    """One verdict (servers.clients.gates.judge) whether the runs went over MCP or in process; a gold call that
    fails is a failing verdict in process too, not an exception."""
    folder = write_env(tmp_path / "fleet" / "mini", copy.deepcopy(MINI_SPEC), copy.deepcopy(MINI_SEED))
    write_tasks(folder, bad_tasks())
    over_mcp = json.loads(envfleet("check", "--all", "--env-root", str(folder.parent), "--json").stdout)["results"]
    env = Environment.load(folder)
    in_process = [anyio.run(check_task_in_process, env, task) for task in env.tasks]
    assert [r.passed for r in in_process] == [r["passed"] for r in over_mcp] == [True, False, False, True]
    for verdict, served in zip(in_process, over_mcp, strict=True):
        if verdict.task_id != "bad-gold":  # over MCP its scoring is refused (HTTP 422): the verdict has no gate fields
            assert verdict.to_dict() == served
    gold = in_process[1]
    assert gold.failed_gates == ["gold"] and gold.gold_reward is not None and gold.gold_reward < 1
    assert "place_order: Only 0 of B-2 in stock." in gold.problems[0]
    assert in_process[2].failed_gates == ["noop", "initial"] and in_process[0].failed_gates == []


def test_a_gate_trial_scores_a_task_no_environment_holds_and_closes_its_copies(mini_tasks: Environment) -> None:
    task = mini_tasks.tasks[0]
    with GateTrial.run(mini_tasks, mini_tasks.task_template(task.id), task.gold) as trial:
        assert trial.first.first_error() is None and trial.deterministic
        assert trial.gold_diff.tables == mini_tasks.gold_diff(task.id).tables
        verdict = trial.judge(task, GoldAgent.final_message(task))
    assert verdict.passed and verdict.to_dict() == anyio.run(check_task_in_process, mini_tasks, task).to_dict()
    for state in (trial.first.state, trial.second.state, trial.noop):
        with pytest.raises(sqlite3.ProgrammingError):
            state.conn.execute("SELECT 1")
