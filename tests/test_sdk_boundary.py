"""The MCP SDK behind one adapter layer: only the adapter modules import ``mcp`` (or its ``mcp_types``), nothing
imports a private SDK name, and the one private SDK attribute the runtime reads is read in one function, for the
SDK versions it was checked against."""

from __future__ import annotations

import ast
from importlib.metadata import version

import httpx2
import pytest

from servers.clients.mcp_client import HTTP_READ_TIMEOUT, HTTP_TIMEOUT, mcp_http_client
from servers.serving.sdk import SDK_CHECKED, open_sessions, session_manager
from tests.conftest import REPO

SDK = {"mcp", "mcp_types"}
ADAPTERS = {"servers/serving/mcp.py", "servers/serving/sdk.py", "servers/clients/mcp_client.py"}
"""The server side (the protocol handlers; the transports) and the client side: the only modules that import the SDK."""
PRIVATE_READS = {("servers/serving/sdk.py", "open_sessions", "_server_instances")}
"""(module, function, attribute): private SDK attributes the runtime reads, each in one function of an adapter."""


def _modules(*packages: str) -> dict[str, ast.Module]:
    found = {}
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            if "envs" not in path.relative_to(REPO).parts:
                found[path.relative_to(REPO).as_posix()] = ast.parse(path.read_text(), str(path))
    return found


def _sdk_imports(tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every SDK import in ``tree``: at module level, in a function, under
    ``TYPE_CHECKING``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] in SDK]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in SDK:
            found.append((node.lineno, node.module or "", [a.name for a in node.names]))
    return found


def test_only_the_adapters_import_the_sdk() -> None:
    importers = {
        path: imports
        for path, tree in _modules("servers", "synthesizer", "harness").items()
        if (imports := _sdk_imports(tree))
    }
    strays = [
        f"{path}:{line} imports {module}"
        for path, imports in importers.items()
        if path not in ADAPTERS
        for line, module, _ in imports
    ]
    assert not strays, (
        "the MCP SDK is imported outside its adapters (servers/serving/{mcp,sdk}.py, "
        "servers/clients/mcp_client.py):\n" + "\n".join(strays)
    )
    assert set(importers) == ADAPTERS, (
        f"an adapter that no longer imports the SDK is not one: {sorted(ADAPTERS - set(importers))}"
    )


def test_no_private_sdk_names_are_imported() -> None:
    """Anywhere, the benchmarks included: no ``mcp.shared._httpx_utils``, no ``from mcp... import _name``."""
    private = []
    for path, tree in _modules("servers", "synthesizer", "harness", "bench").items():
        for line, module, names in _sdk_imports(tree):
            hidden = [part for part in module.split(".") if part.startswith("_")] + [
                n for n in names if n.startswith("_")
            ]
            if hidden:
                private.append(f"{path}:{line} imports {hidden} from {module}")
    assert not private, "\n".join(private)


def _private_reads(tree: ast.Module) -> set[tuple[str, str]]:
    """(function, attribute) of every ``x._name`` in ``tree`` where ``x`` is not ``self``/``cls``, and of every
    ``getattr``/``hasattr``/``setattr`` with a literal ``"_name"``."""
    found = set()

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            name = None
            if isinstance(child, ast.Attribute) and not (
                isinstance(child.value, ast.Name) and child.value.id in ("self", "cls")
            ):
                name = child.attr
            elif (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Name)
                and child.func.id in ("getattr", "hasattr", "setattr")
                and len(child.args) > 1
                and isinstance(child.args[1], ast.Constant)
                and isinstance(child.args[1].value, str)
            ):
                name = child.args[1].value
            if name and name.startswith("_") and not name.startswith("__"):
                found.add((inner, name))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def test_private_sdk_attributes_are_read_only_in_their_one_function() -> None:
    """In the adapters (where SDK objects live), every private attribute read off another object is a listed one,
    in its listed function; and no module anywhere else names those attributes."""
    modules = _modules("servers", "synthesizer", "harness")
    reads = {(path, function, attribute) for path in ADAPTERS for function, attribute in _private_reads(modules[path])}
    assert reads == PRIVATE_READS, f"unlisted private reads in the adapters: {sorted(reads - PRIVATE_READS)}"
    listed = {attribute for _, _, attribute in PRIVATE_READS}
    elsewhere = [
        f"{path} reads {attribute}"
        for path, tree in modules.items()
        if path not in ADAPTERS
        for _, attribute in _private_reads(tree)
        if attribute in listed
    ]
    assert not elsewhere, "\n".join(elsewhere)


def _minor(distribution: str) -> tuple[int, int]:
    major, minor = version(distribution).split(".")[:2]
    return int(major), int(minor)


@pytest.mark.parametrize("distribution", sorted(SDK))
def test_the_sdk_is_a_version_the_adapter_was_checked_against(distribution: str) -> None:
    """Fails when ``mcp`` moves past the versions servers/serving/sdk.py was written for: re-read the private
    session table :func:`open_sessions` uses (and the client's HTTP defaults), then widen ``SDK_CHECKED``."""
    low, high = SDK_CHECKED
    assert low <= _minor(distribution) <= high, (
        f"{distribution} {version(distribution)} is outside {low}..{high}, the versions servers/serving/sdk.py was "
        "checked against: re-check open_sessions() (StreamableHTTPSessionManager._server_instances) and "
        "servers/clients/mcp_client.py mcp_http_client(), then update SDK_CHECKED"
    )


def test_the_private_session_table_exists_in_this_sdk() -> None:
    """The attribute :func:`open_sessions` reads is there, a dict, empty before any session (its lifecycle over
    real HTTP: tests/servers/serving/test_sdk.py)."""
    from mcp.server import Server  # the SDK itself, to build a manager for the check; tests may import it

    manager = session_manager(
        Server("probe"), json_response=True, allowed_hosts=None, session_idle_timeout=60, max_sessions=10
    )
    assert isinstance(vars(manager).get("_server_instances"), dict)
    assert dict(open_sessions(manager)) == {}


def test_the_mcp_http_pool_has_the_sdk_transport_defaults() -> None:
    """What the SDK's private ``create_mcp_http_client`` gave the rollouts, the public construction still gives:
    the same timeouts, no redirect following by httpx2, the same headers. Fails if the SDK changes its defaults."""
    from mcp.shared._httpx_utils import create_mcp_http_client  # the private helper, only as the reference here

    ours, theirs = mcp_http_client(), create_mcp_http_client()
    assert ours.timeout == theirs.timeout == httpx2.Timeout(HTTP_TIMEOUT, read=HTTP_READ_TIMEOUT)
    assert ours.follow_redirects is theirs.follow_redirects is False
    assert ours.max_redirects == theirs.max_redirects
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.auth is theirs.auth is None
    assert ours.trust_env == theirs.trust_env
