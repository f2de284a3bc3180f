"""The fleet catalog, ``registry.json``: every environment, its content hash and how to launch it.

The registry is generated from environment folders (``envfleet registry build``), never edited by
hand. Every entry is a valid MCP Registry ``server.json`` (schema 2025-09-29 and the current draft,
vendored under docs/server-json/): a reverse-DNS ``name``, a ``description`` of at most 100
characters (the full text is in ``_meta``), ``remotes`` for the HTTP endpoint, and no ``packages``
because envfleet is not on a package registry. The other fields are EnvFleet's own, which the
schema allows beside its own.

It also owns the env-root convention for staging folders (:data:`STAGING_PREFIX`): whoever writes
an environment folder in steps stages it under that hidden name, so ``envfleet registry check``
can find and remove what a killed writer left behind without knowing who wrote it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from ..errors import RegistryError, SpecError, SpecIssue
from ..spec.tasks import Task
from .environment import SPEC_FILE, Environment, content_hash
from .pool import ID_RULE, valid_id

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
    "SERVER_JSON_SCHEMA",
    "NAMESPACE",
    "PUBLISHER_META",
    "DESCRIPTION_MAX",
    "short_text",
    "STAGING_PREFIX",
    "STAGING_GRACE_SECONDS",
    "is_staging_name",
    "last_change",
    "Leftover",
    "staging_folders",
    "remove_leftovers",
    "rebuild",
]

REGISTRY_FORMAT = 1
PACKAGE_NAME = "envfleet"
SERVER_JSON_SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-09-29/server.schema.json"
"""The server.json version every entry declares (and validates against; the draft too)."""
NAMESPACE = "io.github.envfleet"
"""server.json names are reverse-DNS: ``io.github.envfleet/<id>``."""
PUBLISHER_META = "io.modelcontextprotocol.registry/publisher-provided"
"""The one ``_meta`` key the official MCP Registry keeps (others are dropped on publish)."""
DESCRIPTION_MAX = 100
"""server.json ``description`` and ``title`` are at most 100 characters."""
STAGING_PREFIX = ".envfleet-staging-"
"""A folder directly under an env root whose name starts with this is a writer's work in progress
(``.envfleet-staging-<id>-<random>[.<suffix>]``): never served, never listed, and removed by
``envfleet registry check --fix`` once it is older than :data:`STAGING_GRACE_SECONDS`."""
STAGING_GRACE_SECONDS = 900.0
"""A staging folder untouched for this long is a leftover of a killed writer, not a live one."""
_LEGACY_STAGING = re.compile(r"^\.(?:[A-Za-z0-9_-]+\.[0-9a-f]{12}\.(?:tmp|old|deleted)|upload-[0-9a-f]{32})$")
"""The names writers used before :data:`STAGING_PREFIX` (``.<id>.<12 hex>.tmp|old|deleted``, ``.upload-<32 hex>``)."""
PACKAGED_ENV_ROOT = Path(__file__).parent.parent / "envs"
DEFAULT_REGISTRY = Path(__file__).parent.parent.parent / "registry.json"
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
    """A server.json package. Builds write none (envfleet is not on PyPI); read for registries
    written by envfleet 0.1, which listed a ``pypi`` package that does not exist."""

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
    path: str = Field(
        description="Shared, read-only endpoint for modern clients; per-session state for handshake-era clients."
    )
    keyed_path: str = Field(
        description="Private writable state per key: replace {state_key} with a key of your choosing."
    )


class Launch(_Model):
    stdio: StdioLaunch
    http: HttpLaunch


class LocalRun(_Model):
    install: str = Field(description="How to get the envfleet command (it is not on a package registry).")
    stdio: StdioLaunch


class PublisherProvided(_Model):
    description: str = Field(
        description="The environment's full description (server.json `description` is a summary "
        "of at most 100 characters)."
    )
    local: LocalRun = Field(
        description="How to run the environment locally: server.json `packages` lists only published packages."
    )


class EntryMeta(_Model):
    publisher_provided: PublisherProvided = Field(alias=PUBLISHER_META)


class TaskPackEntry(_Model):
    name: str = Field(description="The pack's file name without .jsonl.")
    path: str = Field(description="Relative to the environment folder.")
    tasks: int
    splits: dict[str, int] = Field(description="Tasks per split (train, test).")
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")


class RegistryEntry(_Model):
    """One environment: a server.json document (its fields first) plus EnvFleet's own fields."""

    schema_uri: str = Field(
        SERVER_JSON_SCHEMA, alias="$schema", description="The server.json schema the entry follows."
    )
    name: str = Field(
        description=f"server.json name, '{NAMESPACE}/<id>'.",
        json_schema_extra={"pattern": r"^[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+$", "maxLength": 200},
    )
    title: str = Field(json_schema_extra={"maxLength": DESCRIPTION_MAX})
    description: str = Field(
        description="A summary of the spec's description; the full text is in _meta.",
        json_schema_extra={"minLength": 1, "maxLength": DESCRIPTION_MAX},
    )
    version: str
    meta: EntryMeta | None = Field(
        None,
        alias="_meta",
        description="server.json _meta: the full description and how to "
        "run the environment locally, under the key the official MCP Registry keeps.",
    )
    id: str
    domain: str
    tags: list[str] = []
    path: str = Field(description="The environment folder, relative to the registry file.")
    content_hash: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    tool_count: int
    tools: list[str]
    tables: list[str]
    task_packs: list[TaskPackEntry] = []
    provenance: dict[str, Any] | None = Field(
        None, description="How the environment was made (from its provenance.json), carried as given."
    )
    packages: list[Package] = Field(
        [], description="Never written (envfleet is not on a package registry); read from registries of envfleet 0.1."
    )
    remotes: list[Remote]
    launch: Launch

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave out ``packages`` when empty and ``_meta`` when absent, as server.json expects."""
        data: dict[str, Any] = handler(self)
        if not data.get("packages"):
            data.pop("packages", None)
        for key in ("_meta", "meta"):
            if key in data and data[key] is None:
                del data[key]
        return data

    def server_json_problems(self) -> list[str]:
        """Why this entry is not what a build writes today (a registry of an older envfleet)."""
        problems = []
        if self.name != f"{NAMESPACE}/{self.id}":
            problems.append(f"name {self.name!r} is not {NAMESPACE}/{self.id}")
        if not 1 <= len(self.description) <= DESCRIPTION_MAX or len(self.title) > DESCRIPTION_MAX:
            problems.append(f"description or title is longer than {DESCRIPTION_MAX} characters")
        if self.packages:
            problems.append("lists a package that is not published")
        if self.meta is None:
            problems.append("has no _meta")
        return problems


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
    stdio = StdioLaunch(command=PACKAGE_NAME, args=["serve", spec.id])
    return RegistryEntry(
        id=spec.id,
        name=f"{NAMESPACE}/{spec.id}",
        title=short_text(spec.name) or spec.id,
        description=short_text(spec.description) or short_text(spec.name) or spec.id,
        version=spec.version,
        meta=EntryMeta(
            publisher_provided=PublisherProvided(
                description=spec.description,
                local=LocalRun(install="pip install -e . in a checkout of the EnvFleet source", stdio=stdio),
            )
        ),
        domain=spec.domain,
        tags=list(spec.tags),
        path=relative_path,
        content_hash=env.content_hash or "",
        tool_count=len(spec.tools),
        tools=[t.name for t in spec.tools],
        tables=[t.name for t in spec.tables],
        task_packs=[
            TaskPackEntry(
                name=pack.name,
                path=f"tasks/{pack.path.name}" if pack.path else pack.name,
                tasks=len(pack.tasks),
                splits=pack.splits,
                content_hash=pack.content_hash,
            )
            for pack in env.task_packs
        ],
        provenance=provenance,
        remotes=[
            Remote(
                url="{base_url}" + http_path,
                variables={
                    "base_url": Variable(
                        description="Where `envfleet serve --all` listens.", default="http://127.0.0.1:8100"
                    )
                },
            )
        ],
        launch=Launch(
            stdio=stdio,
            http=HttpLaunch(path=http_path, keyed_path=f"/envs/{spec.id}/s/{{state_key}}/mcp"),
        ),
    )


def short_text(text: str, limit: int = DESCRIPTION_MAX) -> str:
    """``text`` in at most ``limit`` characters, for server.json: itself when it fits, else its first
    sentence, else cut after a list item (``"Circulation desk of a library: members, loans…"``), else
    what precedes its first colon, else cut at a word; a cut ends with an ellipsis. Deterministic,
    so builds stay reproducible."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]
    if len(sentence) <= limit:
        return sentence
    head, colon, _ = sentence.partition(": ")
    items = sentence[: limit - 1].rsplit(", ", 1)[0]
    if colon and len(items) > len(head) + len(colon) and ", " in sentence[: limit - 1]:
        return items + "…"
    if 20 <= len(head) <= limit:
        return head
    cut = text[: limit - 1]
    if text[limit - 1] != " " and " " in cut:  # the last word is cut: leave it out
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


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

    def select_tasks(
        self, env_ids: Iterable[str], task_ids: Iterable[str] | None = None, split: str | None = None
    ) -> list[tuple[str, Task]]:
        """(environment id, task) for every task of ``env_ids`` that is among ``task_ids`` (default: all) and in
        ``split`` (default: any), in registry order. A named task none of them has is a :class:`RegistryError`,
        as is an unknown environment or one that does not load."""
        wanted = None if task_ids is None else set(task_ids)
        selected = []
        for env_id in env_ids:
            for task in self.environment(env_id).tasks:
                if (wanted is None or task.id in wanted) and (split is None or task.split == split):
                    selected.append((env_id, task))
        missing = (wanted or set()) - {task.id for _, task in selected}
        if missing:
            raise RegistryError(f"no such task(s): {', '.join(sorted(missing))}")
        return selected

    def mcp_config(
        self,
        env_id: str,
        *,
        url: str | None = None,
        state_key: str | None = None,
        command: str = "envfleet",
        pin: bool = False,
    ) -> dict[str, Any]:
        """The ``mcpServers`` document MCP clients (Claude Desktop, Cursor, Claude Code ...) read for one environment:
        an HTTP entry for the gateway at ``url`` (with ``state_key``: private writable state), else a stdio entry
        that runs ``command serve <id>``. ``pin`` names this registry (its file, or the env root it was built from)
        in the stdio arguments, for clients started without our environment variables."""
        if state_key is not None and not valid_id(state_key):
            raise ValueError(f"{state_key!r} is not a state key: state keys are {ID_RULE}")
        if state_key is not None and not url:
            raise ValueError("a state key is for the HTTP entry: give a url too")
        entry = self.entry(env_id)
        server: dict[str, Any]
        if url:
            path = (
                entry.launch.http.keyed_path.replace("{state_key}", state_key) if state_key else entry.launch.http.path
            )
            server = {"type": "http", "url": url.rstrip("/") + path}
        else:
            args = ["serve", entry.id]
            if pin and self.source is not None:
                args += ["--registry", str(self.source.resolve())]
            elif pin and self.root is not None:
                args += ["--env-root", str(self.root.resolve())]
            server = {"command": command, "args": args}
        return {"mcpServers": {f"envfleet-{entry.id}": server}}

    def stale(self) -> list[str]:
        """Ids whose folder no longer matches the recorded content hash."""
        return [i for i in self.ids() if content_hash(self.folder(i)) != self.entries[i].content_hash]

    def outdated(self) -> dict[str, list[str]]:
        """Entries a build would write differently (an older envfleet's format), with why."""
        return {i: problems for i in self.ids() if (problems := self.entries[i].server_json_problems())}

    def env_roots(self) -> list[Path]:
        """The folders the listed environment folders live in."""
        return sorted({self.folder(i).parent for i in self.ids()})


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


def rebuild(registry_path: Path, env_root: Path) -> Registry:
    """``envfleet registry build`` for ``env_root`` into ``registry_path``, under the registry lock and
    replaced atomically, so a concurrent publisher never loses an entry or sees half a file."""
    with registry_lock(registry_path):
        registry = Registry.build(env_root, relative_to=registry_path.resolve().parent)
        fresh = registry_path.with_name(f".{registry_path.name}.{os.getpid()}.tmp")
        registry.write(fresh)
        os.replace(fresh, registry_path)
    return registry


@dataclass(frozen=True)
class Leftover:
    """A staging folder under an env root, and how long since anything in it changed."""

    path: Path
    age: float


def is_staging_name(name: str) -> bool:
    """Is a folder of this name under an env root a writer's staging folder (see :data:`STAGING_PREFIX`)?"""
    return name.startswith(STAGING_PREFIX) or _LEGACY_STAGING.match(name) is not None


def last_change(folder: Path) -> float:
    """The newest mtime in ``folder`` (itself included): a live writer keeps touching it."""
    newest = folder.lstat().st_mtime
    for directory, folders, files in os.walk(folder):
        for name in (*folders, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(directory, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def staging_folders(env_root: Path, now: float | None = None) -> list[Leftover]:
    """Every staging folder directly under ``env_root`` (see :data:`STAGING_PREFIX`), oldest first."""
    now = time.time() if now is None else now
    found = []
    try:
        children = list(env_root.iterdir())
    except FileNotFoundError:
        return []
    for child in children:
        if not is_staging_name(child.name) or child.is_symlink() or not child.is_dir():
            continue
        try:
            found.append(Leftover(child, max(0.0, now - last_change(child))))
        except FileNotFoundError:  # its writer finished (or cleaned up) meanwhile
            continue
    return sorted(found, key=lambda leftover: (-leftover.age, leftover.path.name))


def remove_leftovers(env_root: Path, grace: float = STAGING_GRACE_SECONDS) -> list[Leftover]:
    """Delete the staging folders untouched for ``grace`` seconds or more; younger ones may belong
    to a live writer and are left alone. Returns what was removed."""
    removed = []
    for leftover in staging_folders(env_root):
        if leftover.age < grace:
            continue
        try:
            if time.time() - last_change(leftover.path) < grace:  # touched since we looked
                continue
        except FileNotFoundError:
            continue
        shutil.rmtree(leftover.path, ignore_errors=True)
        removed.append(leftover)
    return removed
