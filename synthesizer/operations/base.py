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

from pydantic import BaseModel, ConfigDict, Field

from ..rules.base import Identifier, KindError

if TYPE_CHECKING:
    from ..catalog import Domain, Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = [
    "ToolRole",
    "Tool",
    "OperationKind",
    "OperationModel",
    "OPERATIONS",
    "register",
    "operation",
    "default_by",
    "Style",
]

Style = Literal["legacy", "world"]

STAFF_VERBS = frozenset(
    "approve deny reject issue grant waive complete close resolve assign inspect verify activate suspend reinstate "
    "refund adjust set".split()
)
SYSTEM_VERBS = frozenset("depart delay ship deliver load expire bill accrue start finish mark".split())


def default_by(name: str, agent_role: str) -> str:
    """Who may request an operation when the catalog does not say, from its verb (design §2.3)."""
    verb = name.split("_")[0]
    if verb in SYSTEM_VERBS:
        return "system"
    if verb in STAFF_VERBS:
        return f"staff:{agent_role}"
    return "principal"


class OperationModel(BaseModel):
    """A declared operation of a world domain (``Domain.operations``): each kind's model adds its fields
    and declares ``kind: Literal[...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Identifier = Field(description="The tool name, in the domain's verbs: book_flight, cancel_booking.")
    entity: Identifier
    by: str | None = Field(None, pattern=r"^(principal|system|staff:[a-z][a-z0-9_]*)$")
    expose: Literal["tool", "hidden", "forbidden"] = "tool"

    def by_or_default(self, agent_role: str = "agent") -> str:
        return self.by or default_by(self.name, agent_role)


@dataclass(frozen=True)
class ToolRole:
    """What a generated tool does, for the later stages (tests, graph, tasks)."""

    kind: str  # the operation kind's name: get, search, list_for, create, update, transition ...
    entity: str
    relation: str | None = None  # list_for / summarize: the owner entity
    transition: str | None = None
    op_id: str | None = None  # world designs: the declared operation's name
    by: str | None = None  # world designs: principal, staff:<role> or system


Tool = tuple[ToolRole, dict[str, Any]]


class OperationKind(ABC):
    name: ClassVar[str]  # the ToolRole kind
    phase: ClassVar[Literal["read", "write"]]  # every entity's reads are made before any write
    styles: ClassVar[frozenset[Style]] = frozenset({"legacy"})  # the designs it makes tools for
    model: ClassVar[type[OperationModel] | None] = None  # declared kinds: the catalog item's model

    def problems(self, op: Any, domain: Domain) -> list[str]:
        """What is inconsistent about a declared operation in its domain (declared kinds override)."""
        return []

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
