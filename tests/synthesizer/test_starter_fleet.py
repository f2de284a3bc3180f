"""The starter fleet committed under servers/envs: what the documented command makes, byte for byte."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from servers.episodes import DEFAULT_REGISTRY, PACKAGED_ENV_ROOT
from tests.conftest import ENVFLEET

REGENERATE = ["synth", "--count", "24", "--seed", "1", "--tasks-per-env", "20"]
"""The command docs/synthesizer.md gives for the starter fleet."""

STARTER = sorted(p.parent.name for p in PACKAGED_ENV_ROOT.glob("*/provenance.json"))


def envfleet(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, *args], capture_output=True, text=True, timeout=timeout)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_starter_fleet_is_listed_across_sectors() -> None:
    assert len(STARTER) == 24
    listed = {e["id"]: e for e in json.loads(DEFAULT_REGISTRY.read_text())["environments"]}
    assert set(STARTER) <= set(listed) and {"library", "clinic"} <= set(listed)
    sectors = {listed[env_id]["provenance"]["sector"] for env_id in STARTER}
    assert len(sectors) >= 12
    assert all(listed[env_id]["task_packs"][0]["tasks"] == 20 for env_id in STARTER)


@pytest.mark.timeout(600)  # 24 environments with their procedural tests and 480 gated tasks, on two cores
def test_the_documented_command_regenerates_the_starter_fleet_byte_for_byte(tmp_path: Path) -> None:
    result = envfleet(*REGENERATE, "--env-root", str(tmp_path / "envs"), "--registry", str(tmp_path / "registry.json"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == STARTER
    for env_id in STARTER:
        assert folder_bytes(tmp_path / "envs" / env_id) == folder_bytes(PACKAGED_ENV_ROOT / env_id), env_id


def test_starter_tasks_pass_the_gates_through_mcp() -> None:
    sample = STARTER[::8]  # three environments from across the alphabet; --all runs under -m slow
    result = envfleet("check", *sample)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{20 * len(sample)}/{20 * len(sample)} tasks pass every gate" in result.stdout


@pytest.mark.slow
def test_every_published_task_passes_the_gates_through_mcp() -> None:
    result = envfleet("check", "--all")
    assert result.returncode == 0, result.stdout + result.stderr
