"""The fleet catalog, ``registry.json``: every environment, its content hash and how to launch it.

The registry is generated from environment folders (``envfleet registry build``), never edited by
hand. Fields shared with the MCP Registry's ``server.json`` use its names: ``name``, ``title``,
``description``, ``version``, ``packages`` (with ``transport``) and ``remotes``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .environment import SPEC_FILE, Environment, content_hash
from .errors import RegistryError, SpecError, SpecIssue

__all__ = [
    "REGISTRY_FORMAT",
    "RegistryEntry",
    "RegistryFile",
    "Registry",
    "PACKAGED_ENV_ROOT",
    "DEFAULT_REGISTRY",
    "registry_json_schema",
    "entry_for",
    "PROVENANCE_FILE",
    "registry_lock",
    "init_fleet",
]

REGISTRY_FORMAT = 1
PACKAGE_NAME = "envfleet"
PACKAGED_ENV_ROOT = Path(__file__).parent / "envs"
DEFAULT_REGISTRY = Path(__file__).parent.parent / "registry.json"
PROVENANCE_FILE = "provenance.json"
"""registry.json at the root of a source checkout (absent from an installed wheel)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Argument(_Model):
    type: Literal["positional"] = "positional"
    value: str


class Transport(_Model):
    type: Literal["stdio", "streamable-http"]


class Package(_Model):
    """How to run the environment from the published Python package, as in server.json."""

    registry_type: Literal["pypi"] = Field("pypi", alias="registryType")
    identifier: str = PACKAGE_NAME
    version: str
    transport: Transport = Transport(type="stdio")
    package_arguments: list[Argument] = Field(alias="packageArguments")


class Variable(_Model):
    description: str
    default: str


class Remote(_Model):
    """The environment's endpoint under ``envfleet serve --all``, as in server.json ``remotes``."""

    type: Literal["streamable-http"] = "streamable-http"
    url: str
    variables: dict[str, Variable] = {}


class StdioLaunch(_Model):
    command: str
    args: list[str]


class HttpLaunch(_Model):
    path: str = Field(description="Shared, read-only endpoint for modern clients; per-session state for handshake-era clients.")
    keyed_path: str = Field(description="Private writable state per key: replace {state_key} with a key of your choosing.")


class Launch(_Model):
    stdio: StdioLaunch
    http: HttpLaunch


class TaskPackEntry(_Model):
    name: str = Field(description="The pack's file name without .jsonl.")
    path: str = Field(description="Relative to the environment folder.")
    tasks: int
    splits: dict[str, int] = Field(description="Tasks per split (train, test).")
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class RegistryEntry(_Model):
    id: str
    name: str = Field(description="server.json-style name, 'envfleet/<id>'.")
    title: str
    description: str
    version: str
    domain: str
    tags: list[str] = []
    path: str = Field(description="The environment folder, relative to the registry file.")
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    tool_count: int
    tools: list[str]
    tables: list[str]
    task_packs: list[TaskPackEntry] = []
    provenance: dict[str, Any] | None = Field(None, description="How the environment was made (from its provenance.json), "
                                              "carried as given.")
    packages: list[Package]
    remotes: list[Remote]
    launch: Launch


class RegistryFile(_Model):
    format: Literal[1] = REGISTRY_FORMAT
    environments: list[RegistryEntry]


def registry_json_schema() -> dict[str, Any]:
    schema = RegistryFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "urn:envfleet:registry:1"
    return schema


def entry_for(env: Environment, relative_path: str) -> RegistryEntry:
    spec = env.spec
    provenance_file = env.path / PROVENANCE_FILE if env.path else None
    provenance = None
    if provenance_file is not None and provenance_file.exists():
        try:
            provenance = json.loads(provenance_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise SpecError([SpecIssue(PROVENANCE_FILE, f"not readable JSON ({e})")], str(env.path)) from None
    http_path = f"/envs/{spec.id}/mcp"
    return RegistryEntry(
        id=spec.id,
        name=f"{PACKAGE_NAME}/{spec.id}",
        title=spec.name,
        description=spec.description,
        version=spec.version,
        domain=spec.domain,
        tags=list(spec.tags),
        path=relative_path,
        content_hash=env.content_hash or "",
        tool_count=len(spec.tools),
        tools=[t.name for t in spec.tools],
        tables=[t.name for t in spec.tables],
        task_packs=[
            TaskPackEntry(name=pack.name, path=f"tasks/{pack.path.name}" if pack.path else pack.name,
                          tasks=len(pack.tasks), splits=pack.splits, content_hash=pack.content_hash)
            for pack in env.task_packs
        ],
        provenance=provenance,
        packages=[Package(version=_package_version(), package_arguments=[Argument(value="serve"), Argument(value=spec.id)])],
        remotes=[Remote(
            url="{base_url}" + http_path,
            variables={"base_url": Variable(description="Where `envfleet serve --all` listens.", default="http://127.0.0.1:8100")},
        )],
        launch=Launch(
            stdio=StdioLaunch(command=PACKAGE_NAME, args=["serve", spec.id]),
            http=HttpLaunch(path=http_path, keyed_path=f"/envs/{spec.id}/s/{{state_key}}/mcp"),
        ),
    )


def _package_version() -> str:
    from . import __version__

    return __version__


class Registry:
    """Entries by id, with their folders resolved; loads environments on demand and keeps them."""

    def __init__(self, entries: list[RegistryEntry], base: Path, source: Path | None = None) -> None:
        self.entries = {e.id: e for e in entries}
        self.base = base
        self.source = source  # the registry.json it was read from
        self.root: Path | None = None  # or the folder it was built from
        self._loaded: dict[str, Environment] = {}

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"registry not found: {path}") from None
        except OSError as e:
            raise RegistryError(f"cannot read the registry {path}: {e.strerror}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RegistryError(f"{path} is not valid JSON: {e}") from None
        try:
            parsed = RegistryFile.model_validate(data)
        except ValueError as e:
            raise RegistryError(f"{path} is not a valid registry: {e}") from None
        return cls(parsed.environments, path.parent.resolve(), path)

    @classmethod
    def build(cls, env_root: str | Path, relative_to: str | Path | None = None) -> Registry:
        """Scan every folder with an env.json under ``env_root``; each must load cleanly."""
        env_root = Path(env_root).resolve()
        base = Path(relative_to).resolve() if relative_to else env_root
        if not env_root.is_dir():
            raise RegistryError(f"environment root not found: {env_root}")
        entries: list[RegistryEntry] = []
        loaded: dict[str, Environment] = {}
        errors: list[str] = []
        for folder in sorted(p.parent for p in env_root.glob(f"*/{SPEC_FILE}") if not p.parent.name.startswith(".")):
            try:
                env = Environment.load(folder)
            except SpecError as e:
                errors.append(str(e))
                continue
            if env.id in loaded:
                errors.append(f"{folder}: id {env.id!r} is already used by {loaded[env.id].path}")
                continue
            loaded[env.id] = env
            entries.append(entry_for(env, os.path.relpath(folder, base).replace(os.sep, "/")))
        if errors:
            raise RegistryError("some environments do not load:\n" + "\n".join(errors))
        registry = cls(entries, base)
        registry.root = env_root
        registry._loaded.update(loaded)
        return registry

    @classmethod
    def resolve(cls, registry: str | Path | None = None, env_root: str | Path | None = None) -> Registry:
        """The registry to use: an explicit file, else an env root to scan, else the defaults.

        Also read from ``ENVFLEET_REGISTRY`` / ``ENVFLEET_ENV_ROOT``. The default is the
        checkout's registry.json, or the packaged environments when that file is absent.
        """
        registry = registry or os.environ.get("ENVFLEET_REGISTRY") or None
        env_root = env_root or os.environ.get("ENVFLEET_ENV_ROOT") or None
        if registry:
            return cls.load(registry)
        if env_root:
            return cls.build(env_root)
        if DEFAULT_REGISTRY.exists():
            return cls.load(DEFAULT_REGISTRY)
        return cls.build(PACKAGED_ENV_ROOT)

    # -- use -----------------------------------------------------------------------------------

    def to_file(self) -> RegistryFile:
        return RegistryFile(environments=[self.entries[k] for k in sorted(self.entries)])

    def to_json(self) -> str:
        return json.dumps(self.to_file().model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False) + "\n"

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    def ids(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, env_id: str) -> RegistryEntry:
        try:
            return self.entries[env_id]
        except KeyError:
            known = ", ".join(self.ids()) or "none"
            raise RegistryError(f"unknown environment {env_id!r}; the registry has: {known}") from None

    def folder(self, env_id: str) -> Path:
        return (self.base / self.entry(env_id).path).resolve()

    def environment(self, env_id: str) -> Environment:
        """Load (once) and return an environment of the registry."""
        if env_id not in self._loaded:
            self._loaded[env_id] = Environment.load(self.folder(env_id))
        return self._loaded[env_id]

    def stale(self) -> list[str]:
        """Ids whose folder no longer matches the recorded content hash."""
        return [i for i in self.ids() if content_hash(self.folder(i)) != self.entries[i].content_hash]


@contextmanager
def registry_lock(registry_path: Path) -> Iterator[None]:
    """An exclusive lock on ``<registry>.lock``, held by every process that rewrites the registry."""
    registry_path.parent.mkdir(parents=True, exist_ok=True)
    with open(registry_path.with_name(registry_path.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def init_fleet(env_root: Path, registry_path: Path) -> list[str]:
    """Make ``env_root`` a fleet on first use: copy the packaged environments into it when it has
    none, and build ``registry_path`` when it is missing. Safe to run from several processes at
    once (a container's entrypoint); returns the environments it copied."""
    with registry_lock(registry_path):
        copied = []
        env_root.mkdir(parents=True, exist_ok=True)
        if not any(env_root.glob(f"*/{SPEC_FILE}")):
            for folder in sorted(p.parent for p in PACKAGED_ENV_ROOT.glob(f"*/{SPEC_FILE}")):
                shutil.copytree(folder, env_root / folder.name)
                copied.append(folder.name)
        if copied or not registry_path.exists():
            fresh = registry_path.with_name(f".{registry_path.name}.{os.getpid()}.tmp")
            Registry.build(env_root, relative_to=registry_path.parent).write(fresh)
            os.replace(fresh, registry_path)
        return copied
