"""Project-level contracts: public API, layering, exported schemas."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import servers
from servers.spec import spec_json_schema
from tests.conftest import REPO


def test_public_api_is_pinned() -> None:
    assert sorted(servers.__all__) == sorted([
        "__version__", "EnvSpec", "Environment", "Episode", "Task", "TaskPack", "Score", "Executor", "ToolResult", "Registry", "RegistryEntry", "StateCopy",
        "StateTemplate", "StatePool", "ValidationReport", "parse_spec", "validate_spec", "EnvFleetError", "SpecError",
        "SpecIssue", "TaskPackError", "RegistryError", "StateError", "StateCapacityError", "EpisodeNotFound", "ToolError", "UnknownToolError",
        "ToolArgumentError", "RuleViolation", "ReadOnlyStateError", "ToolExecutionError",
    ])
    for name in servers.__all__:
        assert hasattr(servers, name), name


def test_errors_share_one_root() -> None:
    for name in servers.__all__:
        obj = getattr(servers, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, servers.EnvFleetError), name


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


@pytest.mark.parametrize(("package", "forbidden"), [
    ("servers", {"synthesizer", "harness"}),  # the runtime knows nothing of how specs are made or agents run
    ("synthesizer", {"harness"}),
    ("harness", {"synthesizer"}),  # agents reach environments only through a gateway
])
def test_dependencies_point_one_way(package: str, forbidden: set[str]) -> None:
    for path, names in _imported_packages(package).items():
        assert not names & forbidden, f"{path} imports {sorted(names & forbidden)}"


def test_schemas_in_docs_are_current() -> None:
    from servers.tasks import task_json_schema

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
    result = subprocess.run([ruff, "check", "servers", "synthesizer", "harness", "bench", "tests"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout
