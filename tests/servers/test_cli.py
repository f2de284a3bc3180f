"""The envfleet command as users run it."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import ENVFLEET


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
    assert server["command"].endswith("envfleet") and server["args"] == ["serve", "library"]
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
