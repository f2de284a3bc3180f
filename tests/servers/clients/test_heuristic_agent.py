"""The heuristic baseline over real MCP: it solves what one name lookup and one write solve, and fails a namesake
(it takes the first hit). Tasks live in a task pack written here over the library environment, so the tests do
not depend on the synthesized fleet."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from servers import Registry
from servers.clients import GatewayClient, GoldAgent, make_agent, rollout_http
from servers.clients.heuristic import HeuristicAgent, parse_instruction
from servers.serving import running_gateway
from tests.conftest import ENV_ROOT, ENVFLEET, write_tasks

NEW_EMAIL = "k.prince@example.com"
CHECK = {
    "description": "Kendra Prince (M-1003) has the new email",
    "sql": f"SELECT 1 FROM members WHERE member_id = 'M-1003' AND email = '{NEW_EMAIL}'",
}
NAMESAKE = {
    "member_id": "M-0999",
    "first_name": "Kendra",
    "last_name": "Prince",
    "email": "kendra.prince99@example.org",
    "phone": "555-100-2000",
    "date_of_birth": "1990-01-01",
    "tier": "standard",
    "status": "active",
    "home_branch_id": "BR-CEN",
    "joined_on": "2025-01-10",
    "expires_on": "2026-12-01",
}


def task(task_id: str, initial_state: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": task_id,
        "split": "test",
        "instruction": f"Hi, I'm Kendra Prince, born 22 May 1976. Please update my contact email to {NEW_EMAIL}.",
        "user": {"persona": "A member.", "known": {"name": "Kendra Prince", "date_of_birth": "1976-05-22"}},
        "initial_state": initial_state,
        "gold": [
            {"tool": "find_member", "arguments": {"name": "Kendra Prince"}},
            {"tool": "update_member_contact", "arguments": {"member_id": "M-1003", "email": NEW_EMAIL}},
        ],
        "checks": [CHECK],
    }


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    """The library environment with two tasks: a plain email change, and the same with a namesake listed first."""
    folder = tmp_path / "fleet" / "library"
    folder.mkdir(parents=True)
    for name in ("env.json", "seed.json"):
        shutil.copy(ENV_ROOT / "library" / name, folder / name)
    write_tasks(
        folder,
        [
            task("email-plain", []),
            task("email-namesake", [{"op": "insert", "table": "members", "rows": [NAMESAKE]}]),
        ],
    )
    return folder.parent


async def rollouts(fleet: Path, agent_for: Any) -> dict[str, Any]:
    registry = Registry.build(fleet)
    with running_gateway(registry) as local:
        async with GatewayClient(local.url, local.token) as gateway:
            return {
                task_id: await rollout_http(gateway, "library", task_id, agent_for(task_id))
                for task_id in ("email-plain", "email-namesake")
            }


@pytest.mark.anyio
async def test_it_solves_a_name_lookup_and_one_write_and_fails_a_namesake(fleet_dir: Path) -> None:
    tasks = {t.id: t for t in Registry.build(fleet_dir).environment("library").tasks}
    gold = await rollouts(fleet_dir, lambda task_id: GoldAgent(tasks[task_id]))
    assert all(r.success for r in gold.values())  # both tasks are solvable: the namesake one is not broken

    done = await rollouts(fleet_dir, lambda task_id: HeuristicAgent())
    plain, namesake = done["email-plain"], done["email-namesake"]
    assert plain.success is True and plain.reward == 1.0
    writes = [(s["tool"], s["arguments"]) for s in plain.trajectory if not s["tool"].startswith(("find_", "list_"))]
    assert ("update_member_contact", {"member_id": "M-1003", "email": NEW_EMAIL}) in writes
    assert plain.trajectory[0]["tool"] == "find_member"  # over MCP, as any agent: the name lookup first
    assert namesake.success is False  # it took the first hit, the namesake M-0999 ...
    assert ("update_member_contact", {"member_id": "M-0999", "email": NEW_EMAIL}) in [
        (s["tool"], s["arguments"]) for s in namesake.trajectory
    ]


@pytest.mark.anyio
async def test_the_same_task_gives_the_same_calls(fleet_dir: Path) -> None:
    first = await rollouts(fleet_dir, lambda task_id: make_agent("heuristic", None, seed=0))
    again = await rollouts(fleet_dir, lambda task_id: make_agent("heuristic", None, seed=0))
    for task_id, record in first.items():
        calls = [(s["tool"], s["arguments"]) for s in record.trajectory]
        assert calls == [(s["tool"], s["arguments"]) for s in again[task_id].trajectory]
        assert record.final_message == again[task_id].final_message


def test_the_instruction_is_parsed_as_a_template() -> None:
    parsed = parse_instruction(
        "Hi, I'm Grace Liu, date of birth May 21, 1995 (or 21 May 1995). Please change my email to "
        'grace@example.com and my phone to 555-201-7788, pay $4.50 on TU-00036 and rename it to "Blue Lamp". '
        "Details: ticket name: Lisa Stokes, seats: 2."
    )
    assert parsed.person == "Grace Liu"
    assert parsed.emails == ["grace@example.com"] and parsed.phones == ["555-201-7788"]
    assert parsed.dates == ["1995-05-21"] and parsed.codes == ["TU-00036"] and parsed.quoted == ["Blue Lamp"]
    assert parsed.amounts[0] == 4.5
    assert parsed.fields["ticket_name"] == "Lisa Stokes" and parsed.fields["seats"] == "2"


def test_envfleet_run_takes_the_heuristic_agent(fleet_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = subprocess.run(
        [*ENVFLEET, "run", "--env", "library", "--agent", "heuristic", "--env-root", str(fleet_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    records = {r["task_id"]: r for r in map(json.loads, (out / "trajectories.jsonl").read_text().splitlines())}
    assert records["email-plain"]["success"] is True and records["email-namesake"]["success"] is False
    assert {r["agent"] for r in records.values()} == {"heuristic"}
    assert "heuristic: 1/2 episodes succeeded" in result.stderr
    unknown = subprocess.run(
        [*ENVFLEET, "run", "--env", "library", "--agent", "clever", "--env-root", str(fleet_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 2 and "heuristic" in unknown.stderr
