"""Stage 7, publish: write an environment folder and list it in registry.json, atomically.

The folder is written under a hidden temporary name and renamed into place; the registry is
rewritten to a temporary file and renamed over the old one, under an exclusive lock so
concurrent publishers never lose each other's entries. A process killed at any point leaves
either the old registry or the new one, and never lists a folder that is not complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from servers import Environment, Registry
from servers.registry import PROVENANCE_FILE, RegistryEntry, RegistryFile, entry_for, registry_lock

__all__ = ["write_env_folder", "publish_folder", "add_files", "unpublish", "registry_lock", "update_registry", "remove_from_registry"]


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
    temporary = registry_path.with_name(f".{registry_path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document.model_dump(mode="json", by_alias=True), indent=2, ensure_ascii=False) + "\n",
                         encoding="utf-8")
    with open(temporary, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, registry_path)


def update_registry(registry_path: Path, folder: Path) -> RegistryEntry:
    """Load the environment in ``folder`` (every runtime check runs) and list it, replacing any entry with its id."""
    env = Environment.load(folder)
    relative = os.path.relpath(folder.resolve(), registry_path.resolve().parent).replace(os.sep, "/")
    entry = entry_for(env, relative)
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


def publish_folder(env_root: Path, env_id: str, files: dict[str, Any], registry_path: Path,
                   provenance: dict[str, Any]) -> RegistryEntry:
    """Write the environment's files and provenance under ``env_root/env_id``, then list it."""
    env_root.mkdir(parents=True, exist_ok=True)
    staging = env_root / f".{env_id}.{os.getpid()}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    write_env_folder(staging, {**files, PROVENANCE_FILE: provenance})
    Environment.load(staging)  # refuse to publish anything the runtime would not serve
    target = env_root / env_id
    retired = env_root / f".{env_id}.{os.getpid()}.old"
    if target.exists():
        os.replace(target, retired)
    os.replace(staging, target)
    if retired.exists():
        shutil.rmtree(retired)
    return update_registry(registry_path, target)


def add_files(env_root: Path, env_id: str, files: dict[str, Any], registry_path: Path) -> RegistryEntry:
    """Add (or replace) files of a published environment — a new task pack — by the same route as a
    publish: a full copy is staged, loaded, and swapped in; then the registry entry is rewritten."""
    target = env_root / env_id
    staging = env_root / f".{env_id}.{os.getpid()}.tmp"
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(target, staging)
    write_env_folder(staging, files)
    Environment.load(staging)
    retired = env_root / f".{env_id}.{os.getpid()}.old"
    os.replace(target, retired)
    os.replace(staging, target)
    shutil.rmtree(retired)
    return update_registry(registry_path, target)


def unpublish(env_root: Path, env_id: str, registry_path: Path) -> bool:
    """Take an environment out of the registry first (so nobody is offered it), then delete its folder."""
    listed = remove_from_registry(registry_path, env_id)
    folder = env_root / env_id
    if folder.is_dir():
        retired = env_root / f".{env_id}.{os.getpid()}.deleted"
        os.replace(folder, retired)
        shutil.rmtree(retired)
        return True
    return listed
