"""The interface every policy-only rule kind implements, and the registry of kinds.

A policy-only rule is one the business states but its tools do not enforce (τ²-bench's "cancel only
for these reasons", "at most one change", "a voucher only for gold members after a long delay"): no
``require`` step, so an obedient agent *can* break it. A kind is one module knowing every phase of
such a rule: its catalog model and checks (declared kinds) or how the modeler derives it from the
design (derived kinds), its policy sentence, the SQL listing what breaks it in a final state (over the
footprint of what the episode did: rows stamped or created at or after the clock), how it shapes the
seed, the reachability probe (the tool *does* allow the act, and the SQL flags it), the refusal task
drafted on it, and the words that teach it to a language model.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..rules.base import Identifier, KindError, Param

if TYPE_CHECKING:
    from ..catalog import Domain
    from ..modeling import Design
    from ..procedural_tests import Tester
    from ..seeding import Seeder
    from ..tasks.world import Draft, World

__all__ = ["PolicyModel", "PolicyRef", "PolicyKind", "POLICIES", "register", "policy_kind", "Section"]

Section = Literal["who", "operations", "money"]


class PolicyModel(BaseModel):
    """A declared policy-only rule (``Domain.policy_rules``): each kind's model adds ``kind: Literal[...]``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Identifier = Field(description="Stable id: the rule is `policy.<id>` in provenance and task tags.")


@dataclass(frozen=True)
class PolicyRef:
    """One policy-only rule of a design: its stable id, kind, the declared model (None when derived),
    the parameter the variant drew, and the tool (operation name) it governs."""

    id: str
    kind_name: str
    rule: Any = None
    value: float | None = None
    op: str | None = None

    @property
    def kind(self) -> PolicyKind:
        return policy_kind(self.kind_name)


class PolicyKind(ABC):
    """Every phase of one kind of policy-only rule. A phase with nothing to do returns nothing, explicitly."""

    name: ClassVar[str]
    model: ClassVar[type[PolicyModel] | None]  # None: derived by the modeler, never declared
    section: ClassVar[Section]  # where the policy states it
    vocabulary: ClassVar[str]  # how it is explained to a language model ("* ..." lines)

    @abstractmethod
    def problems(self, rule: Any, domain: Domain) -> list[str]:
        """What is inconsistent about a declared rule in its domain (derived kinds: nothing)."""

    @abstractmethod
    def parameter(self, rule: Any) -> Param | None:
        """The parameter a variant draws, if any."""

    @abstractmethod
    def refs(self, design: Design, declared: list[tuple[Any, float | None]]) -> list[PolicyRef]:
        """The design's rules of this kind: the declared ones whose tools the variant kept (with their
        drawn values), or those derived from the design."""

    @abstractmethod
    def sentence(self, design: Design, ref: PolicyRef) -> str:
        """The rule in the domain's words, with its parameter filled in."""

    @abstractmethod
    def violation(self, design: Design, ref: PolicyRef) -> str | None:
        """SQL listing the rows that break the rule in a final state (expect none), or None when only a
        task can say (who the user is, what they declined)."""

    @abstractmethod
    def adjust_seed(self, seeder: Seeder, ref: PolicyRef) -> None:
        """Shape the seed so the rule can be met and broken (records at the limit, qualifying or not)."""

    @abstractmethod
    def probe(self, tester: Tester, ref: PolicyRef) -> str | None:
        """Show the rule is policy-only and its SQL sees a break: the tool accepts the forbidden act and
        ``violation`` lists it. None when probed, else why no probe could be made."""

    @abstractmethod
    def refusal(self, world: World, ref: PolicyRef) -> Draft | None:
        """A task where the user asks for what the rule forbids, or None when the world offers none."""


POLICIES: dict[str, PolicyKind] = {}
"""Every registered policy-only rule kind by name, in registration order."""


def register(cls: type[PolicyKind]) -> type[PolicyKind]:
    """Add a kind (a class decorator); one missing a phase is refused at import."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if not issubclass(cls, PolicyKind) or inspect.isabstract(cls) or missing:
        raise KindError(f"policy kind {cls.__name__} does not implement: {', '.join(missing) or 'it'}")
    for attribute in ("name", "model", "section", "vocabulary"):
        if not hasattr(cls, attribute):
            raise KindError(f"policy kind {cls.__name__} does not set {attribute}")
    if cls.model is not None:
        declared = cls.model.model_fields.get("kind")
        if getattr(declared and declared.annotation, "__args__", None) != (cls.name,):
            raise KindError(f"policy kind {cls.__name__}: its model's kind must be Literal[{cls.name!r}]")
    if cls.name in POLICIES:
        raise KindError(f"policy kind {cls.name!r} is registered twice")
    POLICIES[cls.name] = cls()
    return cls


def policy_kind(name: str) -> PolicyKind:
    try:
        return POLICIES[name]
    except KeyError:
        raise KindError(f"unknown policy kind {name!r} (registered: {', '.join(POLICIES)})") from None
