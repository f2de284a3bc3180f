"""Stage 7, publish: write an environment folder and list it in registry.json, atomically.

The folder is written under a hidden temporary name and renamed into place; the registry is
rewritten to a temporary file and renamed over the old one, under an exclusive lock so
concurrent publishers never lose each other's entries. A process killed at any point leaves
either the old registry or the new one, and never lists a folder that is not complete.

Before anything is listed the staged folder is loaded by the runtime (every check runs) and its invariants
(``invariant_*`` fragments, :mod:`synthesizer.invariants`) are evaluated on the seed and on each task's gold
final state: a world that contradicts itself is refused with :class:`InvariantViolation`, naming the
invariant and its row count, and nothing is published.

Every temporary folder under an env root follows the runtime's staging convention
(``servers.episodes.STAGING_PREFIX``: ``.envfleet-staging-<id>-<random>[.<suffix>]``, removed by
``envfleet registry check --fix`` once untouched for 15 minutes); the suffix here names its kind
and owner: ``.envfleet-staging-<env_id>-<12 hex>.<kind>.<pid>.<host>`` (:func:`temp_folder`). One
is stale when its owner process is gone (same host, pid not running) or when nothing in it changed
for :data:`STALE_AFTER` seconds. :func:`clean_stale` removes them, under the registry lock, at the
start of every publish and when the service starts; a live publisher's folder is kept.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from servers import Environment, Registry, RegistryEntry
from servers.episodes import (
    PROVENANCE_FILE,
    STAGING_GRACE_SECONDS,
    STAGING_PREFIX,
    RegistryFile,
    entry_for,
    is_staging_name,
    last_change,
    registry_lock,
)

from .errors import SynthesisError
from .invariants import describe, gold_violations, seed_violations

__all__ = [
    "write_env_folder",
    "publish_folder",
    "add_files",
    "unpublish",
    "is_published",
    "PublishConflict",
    "InvariantViolation",
    "registry_lock",
    "update_registry",
    "remove_from_registry",
    "TEMP_PREFIX",
    "STALE_AFTER",
    "check_invariants",
    "temp_folder",
    "is_stale",
    "clean_stale",
]

TEMP_PREFIX = STAGING_PREFIX
"""Every temporary folder a publisher makes under an env root starts with this (never served, never listed),
so ``envfleet registry check --fix`` knows them too."""
STALE_AFTER = STAGING_GRACE_SECONDS
"""Seconds untouched after which a temporary folder is a leftover whoever made it (the runtime's grace too)."""
_TEMP_NAME = re.compile(
    r"^\.envfleet-staging-(?P<env_id>[a-z0-9_-]+)-(?P<nonce>[0-9a-f]{12})\.(?P<kind>[a-z]+)\.(?P<pid>\d+)\."
    r"(?P<host>[A-Za-z0-9-]+)$"
)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def temp_folder(env_root: Path, kind: str, env_id: str) -> Path:
    """A fresh temporary folder name under ``env_root``: ``kind`` is staging, old, deleted or upload."""
    return env_root / f"{TEMP_PREFIX}{env_id}-{uuid.uuid4().hex[:12]}.{kind}.{os.getpid()}.{_host()}"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM  # somebody else's process: running
    return True


def is_stale(folder: Path, now: float | None = None, stale_after: float = STALE_AFTER) -> bool:
    """Is this temporary folder a leftover: its owner gone (on this host), or untouched for ``stale_after``?
    A name with the prefix but no owner in it (another writer's) is judged by its age alone."""
    match = _TEMP_NAME.match(folder.name)
    if not is_staging_name(folder.name):
        return False  # not a staging folder: never touched
    try:
        age = (now if now is not None else time.time()) - last_change(folder)
    except FileNotFoundError:
        return False
    if age > stale_after:
        return True
    return match is not None and match["host"] == _host() and not _running(int(match["pid"]))


def clean_stale(env_root: Path, registry_path: Path, stale_after: float = STALE_AFTER) -> list[str]:
    """Remove the temporary folders killed publishers left under ``env_root``; returns their names.
    Runs under the registry lock, so no folder is being swapped in or out meanwhile."""
    if not env_root.is_dir():
        return []
    removed = []
    with registry_lock(registry_path):
        now = time.time()
        for folder in sorted(env_root.iterdir()):
            if (
                folder.name.startswith(".")
                and folder.is_dir()
                and not folder.is_symlink()
                and is_stale(folder, now, stale_after)
            ):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
    return removed


def _dump(value: Any) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def write_env_folder(folder: Path, files: dict[str, Any]) -> None:
    """Write ``files`` (relative path -> JSON value, or list of JSON lines for .jsonl) into ``folder``."""
    for relative, value in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.endswith(".jsonl"):
            path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in value), encoding="utf-8")
        else:
            path.write_text(_dump(value), encoding="utf-8")


def _read_entries(registry_path: Path) -> list[RegistryEntry]:
    if not registry_path.exists():
        return []
    return list(Registry.load(registry_path).entries.values())


def _write_registry(registry_path: Path, entries: list[RegistryEntry]) -> None:
    document = RegistryFile(environments=sorted(entries, key=lambda e: e.id))
    temporary = registry_path.with_name(f".{registry_path.name}.{uuid.uuid4().hex[:12]}.tmp")
    temporary.write_text(
        json.dumps(document.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, registry_path)


class PublishConflict(SynthesisError):
    """The environment id is published already and replacing it was not asked for."""


class InvariantViolation(SynthesisError):
    """The environment's seed, or a task's gold final state, breaks one of its invariants (``invariant_*``
    fragments, synthesizer/invariants.py): a world that contradicts itself is not published."""


def check_invariants(env: Environment) -> None:
    """Raise :class:`InvariantViolation` naming each invariant the seed or a gold final state violates, with
    its row count. Nothing to check for an environment without invariants."""
    seed = seed_violations(env)
    if any(seed.values()):
        raise InvariantViolation(f"{env.id}: the seed violates {describe(seed)}; not published")
    gold = gold_violations(env)
    if gold:
        task_id, counts = next(iter(gold.items()))
        more = f" (and {len(gold) - 1} more task(s))" if len(gold) > 1 else ""
        raise InvariantViolation(
            f"{env.id}: the gold final state of task {task_id} violates {describe(counts)}{more}; not published"
        )


def _entry(registry_path: Path, folder: Path, at: Path) -> RegistryEntry:
    """Load ``folder`` (every runtime check runs, and its invariants are checked) and describe it as it will be
    listed, at ``at``."""
    env = Environment.load(folder)
    check_invariants(env)
    relative = os.path.relpath(at.resolve(), registry_path.resolve().parent).replace(os.sep, "/")
    return entry_for(env, relative)


def update_registry(registry_path: Path, folder: Path) -> RegistryEntry:
    """Load the environment in ``folder`` (refused if it breaks its invariants) and list it, replacing any entry
    with its id."""
    entry = _entry(registry_path, folder, folder)
    with registry_lock(registry_path):
        entries = [e for e in _read_entries(registry_path) if e.id != entry.id]
        _write_registry(registry_path, [*entries, entry])
    return entry


def remove_from_registry(registry_path: Path, env_id: str) -> bool:
    with registry_lock(registry_path):
        entries = _read_entries(registry_path)
        kept = [e for e in entries if e.id != env_id]
        if len(kept) == len(entries):
            return False
        _write_registry(registry_path, kept)
        return True


def _swap(env_root: Path, env_id: str, staging: Path, registry_path: Path, entry: RegistryEntry) -> None:
    """Under the registry lock: the staged folder replaces the published one, and the registry lists it.
    Every publisher (threads and processes alike) goes through here one at a time."""
    target = env_root / env_id
    retired = temp_folder(env_root, "old", env_id)
    with registry_lock(registry_path):
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        entries = [e for e in _read_entries(registry_path) if e.id != entry.id]
        _write_registry(registry_path, [*entries, entry])
    shutil.rmtree(retired, ignore_errors=True)


def _staging(env_root: Path, env_id: str, registry_path: Path) -> Path:
    env_root.mkdir(parents=True, exist_ok=True)
    clean_stale(env_root, registry_path)
    return temp_folder(env_root, "staging", env_id)


def is_published(env_root: Path, env_id: str, registry_path: Path) -> bool:
    return (env_root / env_id).exists() or env_id in {e.id for e in _read_entries(registry_path)}


def publish_folder(
    env_root: Path,
    env_id: str,
    files: dict[str, Any],
    registry_path: Path,
    provenance: dict[str, Any],
    *,
    replace: bool = True,
) -> RegistryEntry:
    """Write the environment's files and provenance under ``env_root/env_id``, then list it.
    With ``replace=False`` an id that is published already is a :class:`PublishConflict`."""
    staging = _staging(env_root, env_id, registry_path)
    try:
        write_env_folder(staging, {**files, PROVENANCE_FILE: provenance})
        # refuse anything the runtime would not serve, and a world that breaks its own invariants
        entry = _entry(registry_path, staging, env_root / env_id)
        if not replace:
            with registry_lock(registry_path):
                if is_published(env_root, env_id, registry_path):
                    raise PublishConflict(f"{env_id!r} is published already; delete it first, or ask to replace it")
                os.replace(staging, env_root / env_id)
                _write_registry(registry_path, [*(e for e in _read_entries(registry_path) if e.id != env_id), entry])
            return entry
        _swap(env_root, env_id, staging, registry_path, entry)
        return entry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def add_files(env_root: Path, env_id: str, files: dict[str, Any], registry_path: Path) -> RegistryEntry:
    """Add (or replace) files of a published environment — a new task pack — by the same route as a
    publish: a full copy is staged, loaded, and swapped in with its registry entry."""
    staging = _staging(env_root, env_id, registry_path)
    try:
        with registry_lock(registry_path):  # nobody replaces or deletes it while it is copied
            if not (env_root / env_id).is_dir():
                raise PublishConflict(f"{env_id!r} is not published (any more)")
            shutil.copytree(env_root / env_id, staging)
        write_env_folder(staging, files)
        entry = _entry(registry_path, staging, env_root / env_id)
        _swap(env_root, env_id, staging, registry_path, entry)
        return entry
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpublish(env_root: Path, env_id: str, registry_path: Path) -> bool:
    """Take an environment out of the registry and its folder out of the env root, together;
    the folder is deleted after."""
    folder, retired = env_root / env_id, temp_folder(env_root, "deleted", env_id)
    with registry_lock(registry_path):
        entries = _read_entries(registry_path)
        kept = [e for e in entries if e.id != env_id]
        if len(kept) != len(entries):
            _write_registry(registry_path, kept)
        moved = folder.is_dir()
        if moved:
            os.replace(folder, retired)
    shutil.rmtree(retired, ignore_errors=True)
    return moved or len(kept) != len(entries)
