"""Project-level contracts: public API, layering, exported schemas."""

from __future__ import annotations

import ast
import json
from pathlib import Path

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


def test_servers_never_imports_synthesizer() -> None:
    for path in (REPO / "servers").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "synthesizer" for n in names), f"{path} imports synthesizer"


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
    result = subprocess.run([ruff, "check", "servers", "synthesizer", "bench", "tests"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
