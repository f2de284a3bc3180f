"""The envfleet command as users run it."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from tests.conftest import ENVFLEET, MINI_SPEC, REPO, ServerProcess, write_env

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
    assert (
        subprocess.run([server["command"], "list"], capture_output=True, env={"PATH": "/nonexistent"}).returncode == 0
    )
    http = json.loads(run("mcp-config", "library", "--url", "http://127.0.0.1:8100/", "--state-key", "alice").stdout)
    assert http == {
        "mcpServers": {"envfleet-library": {"type": "http", "url": "http://127.0.0.1:8100/envs/library/s/alice/mcp"}}
    }


@pytest.mark.parametrize("key", ["..", "a/b", "a b", "x" * 129, "[red]x"])
def test_mcp_config_refuses_a_state_key_the_gateway_would_refuse(key: str) -> None:
    result = run("mcp-config", "library", "--url", "http://127.0.0.1:8100", "--state-key", key)
    assert result.returncode == 2 and "is not a state key" in result.stderr and "not only dots" in result.stderr
    assert result.stdout == ""


def test_mcp_config_state_key_needs_a_url() -> None:
    result = run("mcp-config", "library", "--state-key", "alice")
    assert result.returncode == 2 and "give --url" in result.stderr


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
    assert (
        "broken" in subprocess.run([*ENVFLEET, "--help"], capture_output=True, text=True, env=env, timeout=120).stdout
    )
    broken = subprocess.run([*ENVFLEET, "broken"], capture_output=True, text=True, env=env, timeout=120)
    assert broken.returncode == 1 and "command group 'broken'" in broken.stderr and "SyntaxError" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_list_through_a_pipe_never_cuts_ids(tmp_path: Path) -> None:
    spec = copy.deepcopy(MINI_SPEC)
    spec.update(id=LONG_ID, name="A mini shop whose display name is long enough to wrap in any table")
    write_env(tmp_path / LONG_ID, spec)
    for columns in ("40", "200"):  # CI pipes stdout; whatever width the environment claims
        result = subprocess.run(
            [*ENVFLEET, "list", "--env-root", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": columns},
        )
        assert result.returncode == 0, result.stderr
        header, row = result.stdout.splitlines()
        assert header.split("\t") == ["id", "title", "version", "domain", "tools", "tables"]
        assert row.split("\t") == [
            LONG_ID,
            spec["name"],
            spec["version"],
            spec["domain"],
            str(len(spec["tools"])),
            str(len(spec["tables"])),
        ]


SERVE_LIMITS = [
    "--max-states-per-client",
    "2",
    "--max-states-per-prefix",
    "7",
    "--new-states-per-second",
    "3.5",
    "--new-state-burst",
    "9",
    "--state-min-idle",
    "0",
    "--max-episodes-per-client",
    "1",
    "--call-threads",
    "3",
]


def _tool_call(tool: str, arguments: dict[str, object]) -> dict[str, object]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta},
    }


def _call_headers(tool: str, **extra: str) -> dict[str, str]:
    return {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
        **extra,
    }


@pytest.mark.anyio
async def test_serve_flags_set_the_quotas_healthz_reports_them_and_a_client_cap_refuses_with_a_retry_time(
    tmp_path: Path,
) -> None:
    root = tmp_path / "fleet"
    write_env(root / "mini", copy.deepcopy(MINI_SPEC))
    server = ServerProcess(["--all", "--env-root", str(root), *SERVE_LIMITS])
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            health = (await http.get("/healthz")).json()
            assert health["states"] | {"live": 0} == {
                "live": 0,
                "max": 4096,
                "ttl_seconds": 1800.0,
                "max_per_client": 2,
                "max_per_prefix": 7,
                "new_per_second": 3.5,
                "new_burst": 9,
                "min_idle_seconds": None,
                "evicted": 0,
                "refused": 0,
            }
            assert health["calls"]["threads"] == 3
            assert health["episodes"]["max_per_client"] == 1
            for key in ("first", "second"):
                async with Client(f"{server.base}/envs/mini/s/{key}/mcp") as client:
                    assert not (await client.call_tool("get_item", {"sku": "A-1"})).is_error
            async with Client(f"{server.base}/envs/mini/s/third/mcp") as client:
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("get_item", {"sku": "A-1"})
                # --state-min-idle 0: nothing is evicted, so room appears when a state expires after --state-ttl
                assert "the cap per client" in str(refused.value) and "idle states expire after 1800 s" in str(
                    refused.value
                )
                assert "Retry in 1800 s" in str(refused.value)
                async with Client(f"{server.base}/envs/mini/s/first/mcp") as again:  # existing keys still work
                    assert not (await again.call_tool("get_item", {"sku": "A-1"})).is_error
            # without --forwarded-allow-ips nobody is trusted to name the client: a forged X-Forwarded-For is no way out
            forged = await http.post(
                "/envs/mini/s/fourth/mcp",
                json=_tool_call("get_item", {"sku": "A-1"}),
                headers=_call_headers("get_item", **{"X-Forwarded-For": "203.0.113.9"}),
            )
            assert "the cap per client" in forged.json()["error"]["message"]
            health = (await http.get("/healthz")).json()
            assert (
                health["states"]["live"] == 2 and health["states"]["refused"] == 2 and health["states"]["evicted"] == 0
            )
            assert (await http.post("/episodes", json={"env_id": "mini"})).status_code == 201
            second = await http.post("/episodes", json={"env_id": "mini"})
            assert second.status_code == 429 and "the cap per client" in second.json()["detail"]
            assert int(second.headers["Retry-After"]) >= 1
    finally:
        server.stop()


@pytest.mark.anyio
async def test_forwarded_for_counts_only_from_the_trusted_proxy(tmp_path: Path) -> None:
    """Behind the router every request comes from the proxy; with --forwarded-allow-ips naming it (the compose
    file sets FORWARDED_ALLOW_IPS), each client's own address is what the per-client caps count."""
    root = tmp_path / "fleet"
    write_env(root / "mini", copy.deepcopy(MINI_SPEC))
    server = ServerProcess(
        ["--all", "--env-root", str(root), "--max-states-per-client", "1"], env={"FORWARDED_ALLOW_IPS": "127.0.0.1"}
    )
    try:
        async with httpx.AsyncClient(base_url=server.base) as http:
            for index, client in enumerate(("203.0.113.1", "203.0.113.2", "203.0.113.1")):
                reply = (
                    await http.post(
                        f"/envs/mini/s/key-{index}/mcp",
                        json=_tool_call("get_item", {"sku": "A-1"}),
                        headers=_call_headers("get_item", **{"X-Forwarded-For": client}),
                    )
                ).json()
                if index < 2:
                    assert reply["result"]["structuredContent"]["name"] == "Anvil", reply
                else:  # the first client's second key: its cap, though the proxy's address is the same for all three
                    assert "for client '203.0.113.1', the cap per client" in reply["error"]["message"], reply
    finally:
        server.stop()


def test_the_compose_replicas_trust_forwarded_for_from_the_router_only() -> None:
    import yaml

    docker = Path(__file__).resolve().parents[2] / "docker"
    services = yaml.safe_load((docker / "compose.yaml").read_text())["services"]
    router = services["router"]["networks"]["edge"]["ipv4_address"]
    for name in ("fleet-a", "fleet-b"):
        assert services[name]["environment"]["FORWARDED_ALLOW_IPS"] == router
    assert "FORWARDED_ALLOW_IPS" not in services["fleet"].get(
        "environment", {}
    )  # no proxy in front of it: trust nobody
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in (docker / "nginx.conf").read_text()


def test_select_tasks_filters_by_id_and_split_and_names_what_is_missing(mini_env_dir: Path) -> None:
    from servers import Registry, RegistryError

    registry = Registry.build(mini_env_dir.parent)
    assert [(e, t.id) for e, t in registry.select_tasks(["mini"])] == [("mini", "mini-001"), ("mini", "mini-002")]
    assert [t.id for _, t in registry.select_tasks(["mini"], split="test")] == ["mini-002"]
    assert [t.id for _, t in registry.select_tasks(["mini"], ["mini-002", "mini-001"])] == ["mini-001", "mini-002"]
    with pytest.raises(RegistryError, match=r"no such task\(s\): mini-404, nope"):
        registry.select_tasks(["mini"], ["nope", "mini-001", "mini-404"])
    with pytest.raises(RegistryError, match="no such task"):  # there, but not in that split
        registry.select_tasks(["mini"], ["mini-001"], split="test")
    with pytest.raises(RegistryError, match="unknown environment 'atlantis'"):
        registry.select_tasks(["atlantis"])


def test_mcp_config_names_the_registry_only_when_pinned(mini_env_dir: Path, tmp_path: Path) -> None:
    from servers import Registry

    built = Registry.build(mini_env_dir.parent)
    assert built.mcp_config("mini") == {
        "mcpServers": {"envfleet-mini": {"command": "envfleet", "args": ["serve", "mini"]}}
    }
    pinned = built.mcp_config("mini", command="/bin/envfleet", pin=True)["mcpServers"]["envfleet-mini"]
    assert pinned == {
        "command": "/bin/envfleet",
        "args": ["serve", "mini", "--env-root", str(mini_env_dir.parent.resolve())],
    }
    built.write(tmp_path / "registry.json")
    loaded = Registry.load(tmp_path / "registry.json").mcp_config("mini", pin=True)["mcpServers"]["envfleet-mini"]
    assert loaded["args"] == ["serve", "mini", "--registry", str((tmp_path / "registry.json").resolve())]
    with pytest.raises(ValueError, match="is not a state key"):
        built.mcp_config("mini", url="http://127.0.0.1:8100", state_key="a/b")
    with pytest.raises(ValueError, match="give a url"):
        built.mcp_config("mini", state_key="alice")
    cli = json.loads(run("mcp-config", "mini", "--env-root", str(mini_env_dir.parent)).stdout)["mcpServers"][
        "envfleet-mini"
    ]
    assert cli["args"] == ["serve", "mini", "--env-root", str(mini_env_dir.parent.resolve())]


def test_plugin_commands_report_errors_from_the_one_root_without_a_traceback(tmp_path: Path) -> None:
    """`envfleet synth` catches EnvFleetError (not a list of classes): a corpus it cannot read, an unknown LLM stage,
    a topic nothing fits are each one `error:` line and exit 1."""
    missing = tmp_path / "nope.jsonl"
    for args, message in [
        (
            ["synth", "--from-corpus", str(missing), "--dry-run", "--out", str(tmp_path / "o")],
            "No such file or directory",
        ),
        (["synth", "topics", "--corpus", str(missing)], "No such file or directory"),
        (
            [
                "synth",
                "--topic",
                "library",
                "--backend",
                "llm",
                "--stages",
                "bogus",
                "--dry-run",
                "--out",
                str(tmp_path / "o"),
            ],
            "unknown LLM stage(s): bogus",
        ),
        (
            ["synth", "--topic", "underwater basket weaving", "--dry-run", "--out", str(tmp_path / "o")],
            "no catalog domain fits",
        ),
    ]:
        result = run(*args)
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.stderr, (
            args
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "book a room"}\nnot json\n')
    result = run("synth", "--from-corpus", str(bad), "--dry-run", "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and f"error: {bad}:2: not JSON" in result.stderr


def test_the_cli_reference_is_current() -> None:
    """docs/cli.md is every command's --help, regenerated here; it names no path of this checkout (defaults
    are shown as the same words wherever EnvFleet is installed), so it is the same from any clone."""
    from servers.cli import CLI_REFERENCE_INTRO
    from servers.cli_support import cli_reference

    committed = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
    assert str(REPO) not in committed
    for command in (
        "envfleet serve",
        "envfleet registry check",
        "envfleet synth topics",
        "envfleet synthesizer serve",
        "envfleet run",
        "envfleet report",
        "envfleet export",
    ):
        assert f"## `{command}`" in committed, command
    assert committed == cli_reference(CLI_REFERENCE_INTRO), "run `envfleet cli-reference --out docs/cli.md`"
