"""The envfleet command as users run it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

from tests.conftest import ENVFLEET, MINI_SPEC, write_env

LONG_ID = "a_remarkably_long_environment_identifier_for_table_widths"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, *args], capture_output=True, text=True, timeout=120)


def test_list_shows_the_reference_environments() -> None:
    result = run("list")
    assert result.returncode == 0, result.stderr
    assert "library" in result.stdout and "clinic" in result.stdout
    entries = json.loads(run("list", "--json").stdout)
    assert {e["id"] for e in entries} >= {"library", "clinic"}


def test_mcp_config_stdio_and_http() -> None:
    stdio = json.loads(run("mcp-config", "library").stdout)
    server = stdio["mcpServers"]["envfleet-library"]
    assert server["args"] == ["serve", "library"]
    assert Path(server["command"]).is_absolute() and Path(server["command"]).name == "envfleet"
    assert subprocess.run([server["command"], "list"], capture_output=True, env={"PATH": "/nonexistent"}).returncode == 0
    http = json.loads(run("mcp-config", "library", "--url", "http://127.0.0.1:8100/", "--state-key", "alice").stdout)
    assert http == {"mcpServers": {"envfleet-library": {"type": "http", "url": "http://127.0.0.1:8100/envs/library/s/alice/mcp"}}}


def test_unknown_environment_is_a_clean_error() -> None:
    result = run("mcp-config", "atlantis")
    assert result.returncode == 1
    assert "unknown environment 'atlantis'" in result.stderr and "Traceback" not in result.stderr
    served = run("serve", "atlantis")
    assert served.returncode == 1 and "unknown environment 'atlantis'" in served.stderr


def test_serve_needs_an_env_or_all() -> None:
    result = run("serve")
    assert result.returncode == 2 and "--all" in result.stderr


def test_help_lists_every_command() -> None:
    result = run("--help")
    for command in ("list", "serve", "validate", "mcp-config", "registry", "schema"):
        assert command in result.stdout


def test_a_broken_plugin_breaks_only_its_own_command(tmp_path: Path) -> None:
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[envfleet.commands]\nbroken = broken_plugin:app\n")
    (tmp_path / "broken_plugin.py").write_text("def oops(:\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    listed = subprocess.run([*ENVFLEET, "list"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and "library" in listed.stdout
    assert "broken" in subprocess.run([*ENVFLEET, "--help"], capture_output=True, text=True, env=env, timeout=120).stdout
    broken = subprocess.run([*ENVFLEET, "broken"], capture_output=True, text=True, env=env, timeout=120)
    assert broken.returncode == 1 and "command group 'broken'" in broken.stderr and "SyntaxError" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_list_through_a_pipe_never_cuts_ids(tmp_path: Path) -> None:
    spec = copy.deepcopy(MINI_SPEC)
    spec.update(id=LONG_ID, name="A mini shop whose display name is long enough to wrap in any table")
    write_env(tmp_path / LONG_ID, spec)
    for columns in ("40", "200"):  # CI pipes stdout; whatever width the environment claims
        result = subprocess.run([*ENVFLEET, "list", "--env-root", str(tmp_path)], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "COLUMNS": columns})
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.splitlines()
        assert header.split("\t") == ["id", "title", "version", "domain", "tools", "tables"]
        assert row.split("\t") == [LONG_ID, spec["name"], spec["version"], spec["domain"], str(len(spec["tools"])),
                                   str(len(spec["tables"]))]
