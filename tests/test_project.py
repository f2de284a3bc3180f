"""Project-level contracts: public API, layering, exported schemas."""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

import servers
from servers.spec import spec_json_schema
from tests.conftest import REPO

_PUBLIC_API = {
    "servers": [
        "__version__",
        "EnvSpec",
        "Environment",
        "Episode",
        "Task",
        "TaskPack",
        "Score",
        "Executor",
        "ToolResult",
        "Registry",
        "RegistryEntry",
        "StateCopy",
        "StateTemplate",
        "StatePool",
        "ValidationReport",
        "parse_spec",
        "validate_spec",
        "EnvFleetError",
        "SpecError",
        "SpecIssue",
        "TaskPackError",
        "RegistryError",
        "StateError",
        "StateCapacityError",
        "EpisodeNotFound",
        "ToolError",
        "UnknownToolError",
        "ToolArgumentError",
        "RuleViolation",
        "ReadOnlyStateError",
        "ToolExecutionError",
    ],
    "servers.spec": [
        "SPEC_FORMAT",
        "EnvSpec",
        "Table",
        "Column",
        "TableCheck",
        "Tool",
        "Step",
        "RequireStep",
        "LetStep",
        "ExecStep",
        "ReturnStep",
        "ForEachStep",
        "NestedStep",
        "Fragment",
        "FragmentSet",
        "expand_fragments",
        "Comparison",
        "Limits",
        "spec_json_schema",
        "ValidationReport",
        "ToolAnalysis",
        "parse_spec",
        "validate_spec",
        "Task",
        "TaskPack",
        "UserScenario",
        "StateChange",
        "InsertRows",
        "UpdateRows",
        "DeleteRows",
        "GoldCall",
        "Check",
        "Collateral",
        "Answer",
        "task_problems",
        "load_task_pack",
        "task_json_schema",
        "TaskFamily",
        "TASK_FAMILIES",
        "family_of",
    ],
    "servers.state": [
        "StateTemplate",
        "StateCopy",
        "CompiledTool",
        "compile_tools",
        "Executor",
        "ToolResult",
        "CallPreempted",
        "preemptible",
        "StateDiff",
        "TableDiff",
        "diff_states",
    ],
    "servers.episodes": [
        "Environment",
        "ToolDescriptor",
        "Episode",
        "TrajectoryLimits",
        "TrajectoryStep",
        "Score",
        "CheckResult",
        "score_state",
        "normalise_answer",
        "StatePool",
        "EpisodePool",
        "PoolStats",
        "Quotas",
        "DEFAULT_STATE_QUOTAS",
        "ID_RULE",
        "valid_id",
        "key_prefix",
        "Registry",
        "RegistryEntry",
        "RegistryFile",
        "DEFAULT_REGISTRY",
        "PACKAGED_ENV_ROOT",
        "PROVENANCE_FILE",
        "STAGING_PREFIX",
        "STAGING_GRACE_SECONDS",
        "entry_for",
        "is_staging_name",
        "last_change",
        "registry_json_schema",
        "registry_lock",
        "short_text",
        "staging_folders",
    ],
    "servers.serving": [
        "build_server",
        "CallRunner",
        "CallTarget",
        "error_details",
        "Gateway",
        "GatewaySettings",
        "EpisodeHost",
        "create_app",
        "transport_security",
        "serve_stdio",
        "serve_http",
        "running_gateway",
        "serving_in_thread",
        "CONTROL_TOKEN_ENV",
        "DOCS_KWARGS",
        "mount_offline_docs",
        "HostGuard",
    ],
    "servers.clients": [
        "Agent",
        "AgentSession",
        "CallOutcome",
        "ToolSpec",
        "GoldAgent",
        "NoopAgent",
        "RandomAgent",
        "HeuristicAgent",
        "make_agent",
        "schema_value",
        "GatewayClient",
        "RolloutRecord",
        "ControlPlaneError",
        "ToolCallUncertain",
        "rollout_http",
        "rollout_in_process",
        "GateResult",
        "GateTrial",
        "RegistrySource",
        "check_tasks",
        "check_task_in_process",
        "check_in_processes",
        "ToolUseEnv",
        "MCP_CLIENT_ERRORS",
        "connect_http",
    ],
    "servers.cli_support": ["err", "fail", "gateway", "help_text", "cli_reference", "HELP_ENV"],
}
"""The facade and each layer's ``__init__``: what other packages may import from the runtime; and the CLI helpers
the synthesizer's and harness's commands share."""


@pytest.mark.parametrize("module", sorted(_PUBLIC_API))
def test_public_api_is_pinned(module: str) -> None:
    package = importlib.import_module(module)
    assert sorted(package.__all__) == sorted(_PUBLIC_API[module])
    for name in package.__all__:
        assert hasattr(package, name), name
    assert package.__doc__, f"{module} says what the layer is and what it may import"


@pytest.mark.parametrize("package", ["synthesizer", "harness", "bench"])
def test_other_packages_use_only_the_public_api(package: str) -> None:
    """synthesizer/, harness/ and bench/ import runtime names from the facade or a layer's ``__init__``, never a
    deep module."""
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deep = [a.name for a in node.names if a.name.startswith("servers.")]
                assert not deep, f"{path}:{node.lineno} imports {deep}"
            elif (
                isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "servers"
            ):
                assert node.module in _PUBLIC_API, f"{path}:{node.lineno} imports from {node.module}"
                private = [a.name for a in node.names if a.name not in _PUBLIC_API[node.module]]
                assert not private, (
                    f"{path}:{node.lineno} imports {private} from {node.module}, which does not export them"
                )


def test_errors_share_one_root() -> None:
    for name in servers.__all__:
        obj = getattr(servers, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, servers.EnvFleetError), name


def _modules(package: str) -> list[str]:
    """Every module of ``package`` (``servers/envs`` holds data, ``__main__`` runs the CLI)."""
    names = []
    for path in sorted((REPO / package).rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "envs" in parts or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_exception_class_is_under_the_one_root() -> None:
    """Every exception class defined in servers/, synthesizer/ and harness/, public or private, derives from
    ``EnvFleetError``, so a command that catches the root catches every error the project raises on purpose."""
    strays = []
    for module in [m for package in ("servers", "synthesizer", "harness") for m in _modules(package)]:
        for name, obj in vars(importlib.import_module(module)).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__ == module
                and not issubclass(obj, servers.EnvFleetError)
            ):
                strays.append(f"{module}.{name}({', '.join(b.__name__ for b in obj.__bases__)})")
    assert not strays, "exception classes outside the EnvFleetError tree (servers/errors.py draws it):\n" + "\n".join(
        strays
    )


def _imported_packages(package: str) -> dict[Path, set[str]]:
    found = {}
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.add((node.module or "").split(".")[0])
        found[path] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("servers", {"synthesizer", "harness"}),  # the runtime knows nothing of how specs are made or agents run
        ("synthesizer", {"harness"}),
        ("harness", {"synthesizer"}),  # agents reach environments only through a gateway
    ],
)
def test_dependencies_point_one_way(package: str, forbidden: set[str]) -> None:
    for path, names in _imported_packages(package).items():
        assert not names & forbidden, f"{path} imports {sorted(names & forbidden)}"


_LAYERS = {
    "errors": 0,
    "version": 0,
    "spec": 1,
    "state": 2,
    "episodes": 3,
    "serving": 4,
    "clients": 5,
    "cli": 6,
    "cli_support": 6,
    "__main__": 6,
    "__init__": 6,
}
"""servers/ in layers, bottom up; a module may import its own layer and those below. ``__init__`` is the facade."""


def _layer_of(module: str) -> str:
    """The layer of a dotted module name under ``servers`` ("servers" alone is the facade)."""
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _servers_imports(path: Path) -> list[tuple[int, str]]:
    """Every ``servers`` module ``path`` imports, resolved: relative or absolute, at module level, in a function, or
    under ``if TYPE_CHECKING:`` (a type-level edge is an edge)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "servers"]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            target = ".".join(p for p in (base, node.module) if p)
            if target.split(".")[0] != "servers":
                continue
            if node.module is None:  # from . import errors: the names are modules (or names of the package itself)
                for alias in node.names:
                    sub = REPO.joinpath(*target.split("."), alias.name)
                    found.append(
                        (
                            node.lineno,
                            f"{target}.{alias.name}" if sub.is_dir() or sub.with_suffix(".py").exists() else target,
                        )
                    )
            else:
                found.append((node.lineno, target))
    return found


def test_layers_point_down() -> None:
    """errors/version < spec < state < episodes < serving < clients < cli: no module imports a layer above its own,
    and no module inside the runtime imports the facade."""
    modules = [p for p in (REPO / "servers").rglob("*.py") if "envs" not in p.relative_to(REPO / "servers").parts]
    assert {_layer_of(".".join(p.relative_to(REPO).with_suffix("").parts)) for p in modules} == set(_LAYERS)
    upward = []
    for path in modules:
        own = _layer_of(".".join(path.relative_to(REPO).with_suffix("").parts))
        for line, target in _servers_imports(path):
            layer = _layer_of(target)
            if (layer == "__init__" and own != "__init__") or _LAYERS[layer] > _LAYERS[own]:
                upward.append(f"{path.relative_to(REPO)}:{line} ({own}) imports {target} ({layer})")
    assert not upward, "imports pointing up the layers:\n" + "\n".join(upward)


def test_schemas_in_docs_are_current() -> None:
    from servers.spec import task_json_schema

    for name, schema in (("env-spec.schema.json", spec_json_schema()), ("task.schema.json", task_json_schema())):
        assert json.loads((REPO / "docs" / name).read_text()) == schema, f"run `envfleet schema --out docs` ({name})"


def test_reference_specs_validate_against_the_published_schema() -> None:
    import jsonschema

    schema = json.loads((REPO / "docs" / "env-spec.schema.json").read_text())
    for env_json in Path(servers.__file__).parent.glob("envs/*/env.json"):
        jsonschema.Draft202012Validator(schema).validate(json.loads(env_json.read_text()))


def test_lint_is_clean() -> None:
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run(
        [ruff, "check", "servers", "synthesizer", "harness", "bench", "tests"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_code_is_formatted() -> None:
    """`ruff format` is the layout, so line length (E501) only flags what it cannot wrap: long strings and comments."""
    import shutil
    import subprocess
    import sys

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = subprocess.run(
        [ruff, "format", "--check", "servers", "synthesizer", "harness", "bench", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
