"""The interface every operation kind implements, and the registry of kinds.

An operation kind is one module that makes one kind of tool for an entity (``get_<e>``,
``create_<e>``, one per lifecycle transition ...): the tool's spec, the tables it may write, and the
procedural probes that exercise it. ``build_spec`` asks every kind for its tools, reads of every
entity before writes, in registration order; the procedural tests ask a tool's kind to probe it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..rules.base import KindError

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["ToolRole", "Tool", "OperationKind", "OPERATIONS", "register", "operation"]


@dataclass(frozen=True)
class ToolRole:
    """What a generated tool does, for the later stages (tests, graph, tasks)."""

    kind: str  # the operation kind's name: get, search, list_for, create, update, transition ...
    entity: str
    relation: str | None = None  # list_for / summarize: the owner entity
    transition: str | None = None


Tool = tuple[ToolRole, dict[str, Any]]


class OperationKind(ABC):
    name: ClassVar[str]  # the ToolRole kind
    phase: ClassVar[Literal["read", "write"]]  # every entity's reads are made before any write

    @abstractmethod
    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        """The tools of this kind for ``entity`` (none when it has nothing to offer)."""

    @abstractmethod
    def writes(self, design: Design, role: ToolRole) -> set[str]:
        """The tables such a tool may change: its own, and what its rules' effects write."""

    @abstractmethod
    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        """Positive and negative calls proving the tool does what it says (malformed calls are generic)."""


OPERATIONS: dict[str, OperationKind] = {}
"""Every registered operation kind by name, in registration order (the order tools are listed)."""


def register(cls: type[OperationKind]) -> type[OperationKind]:
    """Add an operation kind (a class decorator); one missing a phase is refused at import."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if not issubclass(cls, OperationKind) or inspect.isabstract(cls) or missing:
        raise KindError(f"operation kind {cls.__name__} does not implement: {', '.join(missing) or 'it'}")
    if getattr(cls, "phase", None) not in ("read", "write") or not getattr(cls, "name", None):
        raise KindError(f"operation kind {cls.__name__} needs a name and a phase ('read' or 'write')")
    if cls.name in OPERATIONS:
        raise KindError(f"operation kind {cls.name!r} is registered twice")
    OPERATIONS[cls.name] = cls()
    return cls


def operation(name: str) -> OperationKind:
    """The operation kind registered under ``name``; an unknown kind is an error."""
    try:
        return OPERATIONS[name]
    except KeyError:
        raise KindError(f"unknown operation kind {name!r} (registered: {', '.join(OPERATIONS)})") from None
