"""registry.json: generated from the env folders, valid against its schema, up to date."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest

from servers.errors import RegistryError
from servers.registry import DEFAULT_REGISTRY, PACKAGED_ENV_ROOT, Registry, registry_json_schema
from tests.conftest import ENVFLEET, MINI_SPEC, REPO, write_env


def test_committed_registry_is_valid_and_up_to_date() -> None:
    data = json.loads(DEFAULT_REGISTRY.read_text())
    jsonschema.Draft202012Validator(json.loads((REPO / "docs" / "registry.schema.json").read_text())).validate(data)
    registry = Registry.load(DEFAULT_REGISTRY)
    assert registry.stale() == []
    rebuilt = Registry.build(PACKAGED_ENV_ROOT, relative_to=DEFAULT_REGISTRY.parent)
    assert rebuilt.to_json() == DEFAULT_REGISTRY.read_text(), "registry.json is stale: run `envfleet registry build`"


def test_entries_describe_each_environment(library) -> None:
    entry = Registry.load(DEFAULT_REGISTRY).entry("library")
    assert entry.name == "envfleet/library" and entry.title == library.spec.name
    assert entry.tools == library.tool_names and entry.tool_count == len(library.tool_names)
    assert entry.tables == [t.name for t in library.spec.tables]
    assert entry.content_hash == library.content_hash
    assert entry.path == "servers/envs/library"
    pack = entry.task_packs[0]
    assert (pack.name, pack.path, pack.tasks) == ("core", "tasks/core.jsonl", len(library.tasks))
    assert pack.splits == {s: sum(1 for t in library.tasks if t.split == s) for s in ("train", "test")}
    assert entry.launch.stdio.args == ["serve", "library"]
    assert entry.remotes[0].url == "{base_url}/envs/library/mcp"
    dumped = entry.model_dump(mode="json", by_alias=True)
    assert dumped["packages"][0]["registryType"] == "pypi"
    assert dumped["packages"][0]["transport"] == {"type": "stdio"}


def test_build_check_and_use_a_fleet_outside_the_package(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    write_env(root / "mini", MINI_SPEC)
    shutil.copytree(PACKAGED_ENV_ROOT / "library", root / "library")
    registry_file = tmp_path / "registry.json"
    run = subprocess.run([*ENVFLEET, "registry", "build", "--env-root", str(root), "--out", str(registry_file)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    data = json.loads(registry_file.read_text())
    assert [e["id"] for e in data["environments"]] == ["library", "mini"]
    assert data["environments"][1]["path"] == "fleet/mini"
    check = subprocess.run([*ENVFLEET, "registry", "check", "--registry", str(registry_file)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr

    listed = subprocess.run([*ENVFLEET, "list", "--registry", str(registry_file), "--json"], capture_output=True, text=True, timeout=60)
    assert [e["id"] for e in json.loads(listed.stdout)] == ["library", "mini"]
    assert Registry.load(registry_file).environment("mini").spec.name == "Mini shop"

    (root / "mini" / "env.json").write_text((root / "mini" / "env.json").read_text().replace("Mini shop", "Mini store"))
    stale = subprocess.run([*ENVFLEET, "registry", "check", "--registry", str(registry_file)], capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and "stale for: mini" in stale.stderr


def test_build_refuses_a_broken_environment(tmp_path: Path) -> None:
    spec = json.loads(json.dumps(MINI_SPEC))
    spec["tools"][0]["steps"][1]["sql"] = "SELECT * FROM nowhere"
    write_env(tmp_path / "broken", spec)
    with pytest.raises(RegistryError, match="unknown table 'nowhere'"):
        Registry.build(tmp_path)


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_env(tmp_path / "mini", MINI_SPEC)
    monkeypatch.setenv("ENVFLEET_ENV_ROOT", str(tmp_path))
    assert Registry.resolve().ids() == ["mini"]
    monkeypatch.delenv("ENVFLEET_ENV_ROOT")
    assert "library" in Registry.resolve().ids()
    with pytest.raises(RegistryError, match="unknown environment 'atlantis'"):
        Registry.resolve().entry("atlantis")
    with pytest.raises(RegistryError, match="registry not found"):
        Registry.load(tmp_path / "nope.json")


def test_registry_schema_in_docs_is_current() -> None:
    assert json.loads((REPO / "docs" / "registry.schema.json").read_text()) == registry_json_schema()
