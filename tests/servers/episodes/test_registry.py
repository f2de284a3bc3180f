"""registry.json: generated from the env folders, valid against its schema and the MCP Registry's
server.json schema, up to date; `registry check` finds and `--fix` repairs staleness and leftovers."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from servers import Registry, RegistryError
from servers.episodes import (
    DEFAULT_REGISTRY,
    PACKAGED_ENV_ROOT,
    STAGING_GRACE_SECONDS,
    STAGING_PREFIX,
    registry_json_schema,
    short_text,
)
from tests.conftest import ENVFLEET, MINI_SPEC, REPO, write_env

SERVER_JSON_SCHEMAS = sorted((REPO / "docs" / "server-json").glob("*/server.schema.json"))
"""The vendored official schemas (docs/server-json/README.md says where each comes from)."""


def server_json_errors(entry: dict[str, Any]) -> list[str]:
    """Every way ``entry`` breaks a vendored server.json schema, offline, formats checked."""
    errors = []
    for path in SERVER_JSON_SCHEMAS:
        schema = json.loads(path.read_text())
        validator_class = jsonschema.validators.validator_for(schema)
        validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
        errors += [f"{path.parent.name}: {e.json_path}: {e.message}" for e in validator.iter_errors(entry)]
    return errors


def test_committed_registry_is_valid_and_up_to_date() -> None:
    data = json.loads(DEFAULT_REGISTRY.read_text())
    jsonschema.Draft202012Validator(json.loads((REPO / "docs" / "registry.schema.json").read_text())).validate(data)
    registry = Registry.load(DEFAULT_REGISTRY)
    assert registry.stale() == []
    rebuilt = Registry.build(PACKAGED_ENV_ROOT, relative_to=DEFAULT_REGISTRY.parent)
    assert rebuilt.to_json() == DEFAULT_REGISTRY.read_text(), "registry.json is stale: run `envfleet registry build`"


def test_entries_describe_each_environment(library) -> None:
    entry = Registry.load(DEFAULT_REGISTRY).entry("library")
    assert entry.name == "io.github.envfleet/library" and entry.title == library.spec.name
    assert len(entry.description) <= 100 and library.spec.description.startswith(entry.description.rstrip("…"))
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
    assert "packages" not in dumped  # envfleet is not on PyPI: no package that does not exist
    meta = dumped["_meta"]["io.modelcontextprotocol.registry/publisher-provided"]
    assert meta["description"] == library.spec.description
    assert meta["local"]["stdio"] == {"command": "envfleet", "args": ["serve", "library"]}
    assert dumped["$schema"] == "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"


def test_vendored_schemas_are_the_official_ones_and_reject_the_old_format() -> None:
    ids = {json.loads(p.read_text())["$id"] for p in SERVER_JSON_SCHEMAS}
    assert ids == {
        "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json",
        "https://raw.githubusercontent.com/modelcontextprotocol/registry/main/docs/reference/server-json/draft/"
        "server.schema.json",
    }
    old = {"name": "envfleet/library", "version": "1.0.0", "description": "x" * 101}
    assert any("is too long" in e for e in server_json_errors(old))


def test_every_committed_entry_is_valid_server_json() -> None:
    entries = json.loads(DEFAULT_REGISTRY.read_text())["environments"]
    assert len(entries) >= 2
    for entry in entries:
        assert server_json_errors(entry) == [], entry["id"]


def test_a_fresh_build_is_valid_server_json(tmp_path: Path) -> None:
    spec = copy.deepcopy(MINI_SPEC)
    spec["name"] = "A mini shop with a name long enough to need shortening for every registry client " * 2
    spec["description"] = (
        "A hardware shop's counter: " + ", ".join(f"item kind {i}" for i in range(40)) + ". Then more."
    )
    write_env(tmp_path / "fleet" / "mini", spec)
    shutil.copytree(PACKAGED_ENV_ROOT / "library", tmp_path / "fleet" / "library")
    built = json.loads(Registry.build(tmp_path / "fleet", relative_to=tmp_path).to_json())["environments"]
    for entry in built:
        assert server_json_errors(entry) == [], entry["id"]
    mini = built[1]
    assert mini["description"].startswith("A hardware shop's counter: item kind 0, ") and mini["description"].endswith(
        "…"
    )
    assert mini["_meta"]["io.modelcontextprotocol.registry/publisher-provided"]["description"] == spec["description"]


@pytest.mark.parametrize(
    ("text", "short"),
    [
        ("Fits as it is.", "Fits as it is."),
        ("First sentence fits. " + "Second one " * 20, "First sentence fits."),
        ("A desk: " + "alpha, " * 30 + "omega.", "A desk: " + "alpha, " * 12 + "alpha…"),
        ("Head of a thing: " + "x" * 200, "Head of a thing…"),
        ("word " * 40, "word " * 19 + "word…"),
    ],
)
def test_short_text_keeps_whole_words_and_list_items(text: str, short: str) -> None:
    assert short_text(text) == short and len(short) <= 100


def test_build_check_and_use_a_fleet_outside_the_package(tmp_path: Path) -> None:
    root = tmp_path / "fleet"
    write_env(root / "mini", MINI_SPEC)
    shutil.copytree(PACKAGED_ENV_ROOT / "library", root / "library")
    registry_file = tmp_path / "registry.json"
    run = subprocess.run(
        [*ENVFLEET, "registry", "build", "--env-root", str(root), "--out", str(registry_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(registry_file.read_text())
    assert [e["id"] for e in data["environments"]] == ["library", "mini"]
    assert data["environments"][1]["path"] == "fleet/mini"
    check = subprocess.run(
        [*ENVFLEET, "registry", "check", "--registry", str(registry_file)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stderr

    listed = subprocess.run(
        [*ENVFLEET, "list", "--registry", str(registry_file), "--json"], capture_output=True, text=True, timeout=60
    )
    assert [e["id"] for e in json.loads(listed.stdout)] == ["library", "mini"]
    assert Registry.load(registry_file).environment("mini").spec.name == "Mini shop"

    (root / "mini" / "env.json").write_text((root / "mini" / "env.json").read_text().replace("Mini shop", "Mini store"))
    stale = subprocess.run(
        [*ENVFLEET, "registry", "check", "--registry", str(registry_file)], capture_output=True, text=True, timeout=60
    )
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


def envfleet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, *args], capture_output=True, text=True, timeout=120)


def age(folder: Path, seconds: float) -> None:
    """Make everything in ``folder`` look untouched for ``seconds``."""
    then = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then))


def test_check_reports_staging_leftovers_and_fix_removes_only_old_ones(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    write_env(root / "mini", MINI_SPEC)
    registry_file = tmp_path / "registry.json"
    assert envfleet("registry", "build", "--env-root", str(root), "--out", str(registry_file)).returncode == 0
    killed = root / f"{STAGING_PREFIX}mini-0123456789ab"  # a publish killed an hour ago
    write_env(killed, MINI_SPEC)
    legacy = root / ".mini.0123456789ab.tmp"  # the name publishers used before STAGING_PREFIX
    write_env(legacy, MINI_SPEC)
    upload = root / f".upload-{'0' * 32}"  # and the synthesis service's uploads
    write_env(upload, MINI_SPEC)
    for folder in (killed, legacy, upload):
        age(folder, STAGING_GRACE_SECONDS + 3600)
    live = root / f"{STAGING_PREFIX}mini-fedcba987654"  # a publish under way right now
    write_env(live, MINI_SPEC)
    other = root / ".cache"  # hidden, old, but not a staging folder: not ours to delete
    other.mkdir()
    age(other, STAGING_GRACE_SECONDS + 3600)

    checked = envfleet("registry", "check", "--registry", str(registry_file))
    assert checked.returncode == 1
    assert "staging folders left by an interrupted publish" in checked.stderr
    assert killed.name in checked.stderr and legacy.name in checked.stderr and upload.name in checked.stderr
    assert live.name not in checked.stderr and ".cache" not in checked.stderr

    fixed = envfleet("registry", "check", "--registry", str(registry_file), "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert f"removed {killed}" in fixed.stderr and "is up to date" in fixed.stdout
    assert not killed.exists() and not legacy.exists() and not upload.exists()
    assert live.is_dir() and other.is_dir() and (root / "mini" / "env.json").exists()
    assert envfleet("registry", "check", "--registry", str(registry_file)).returncode == 0


def test_fix_rebuilds_a_stale_registry_and_one_in_the_old_format(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    write_env(root / "mini", MINI_SPEC)
    registry_file = tmp_path / "registry.json"
    Registry.build(root, relative_to=tmp_path).write(registry_file)
    data = json.loads(registry_file.read_text())  # as envfleet 0.1 wrote it: not valid server.json
    entry = data["environments"][0]
    entry.pop("_meta"), entry.pop("$schema")
    entry.update(
        name="envfleet/mini",
        description="d" * 150,
        packages=[
            {
                "registryType": "pypi",
                "identifier": "envfleet",
                "version": "0.1.0",
                "transport": {"type": "stdio"},
                "packageArguments": [{"type": "positional", "value": "serve"}, {"type": "positional", "value": "mini"}],
            }
        ],
    )
    registry_file.write_text(json.dumps(data))
    assert Registry.load(registry_file).ids() == ["mini"]  # an old registry still serves
    old = envfleet("registry", "check", "--registry", str(registry_file))
    assert old.returncode == 1 and "older format (not valid server.json) for: mini" in old.stderr

    spec = copy.deepcopy(MINI_SPEC)
    spec["name"] = "Mini store"
    write_env(root / "mini", spec)
    both = envfleet("registry", "check", "--registry", str(registry_file))
    assert both.returncode == 1 and "stale for: mini" in both.stderr and "--fix" in both.stderr
    fixed = envfleet("registry", "check", "--registry", str(registry_file), "--fix")
    assert fixed.returncode == 0, fixed.stderr
    assert "rebuilt" in fixed.stderr
    rebuilt = json.loads(registry_file.read_text())["environments"]
    assert [e["title"] for e in rebuilt] == ["Mini store"] and server_json_errors(rebuilt[0]) == []
    assert registry_file.read_text() == Registry.build(root, relative_to=tmp_path).to_json()
