"""The interface every rule kind implements, the registry of kinds, and the stable reference to a
rule of a design.

A rule kind is one module that knows everything about one kind of business rule, phase by phase:
its catalog model and validation, whether it survives a variant's entities, its parameter, the
``require`` and effect steps it adds to a write tool, its policy text, how it shapes the seed, how
the procedural tests prove it is enforced (with their own oracle, never the tool's answer), what task
synthesis may build on it, and the words that teach it to a language model. The phase modules loop
over the registry; none of them asks which kind a rule is.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import SynthesisError

if TYPE_CHECKING:
    from ..catalog import Entity, Transition
    from ..modeling import Design
    from ..procedural_tests import Tester
    from ..seeding import Seeder

__all__ = [
    "Identifier",
    "RuleModel",
    "Param",
    "RuleKind",
    "KindError",
    "RuleRef",
    "Step",
    "Trap",
    "KINDS",
    "register",
    "rule_kind",
    "fill",
    "column_to",
    "state_field",
]

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]
Step = dict[str, Any]


class RuleModel(BaseModel):
    """A rule's catalog model: every kind declares ``kind: Literal[...]``, ``entity`` and ``description``
    (declared by each model, so the exported schema lists fields in the kind's own order)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: Identifier | None = Field(
        None, description="A stable id: the rule is `rule.<id>` in the tools' errors, the probes and task tags."
    )


class Param(BaseModel):
    """A rule parameter: the default, and the range variants are drawn from."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    default: float
    low: float
    high: float
    step: float = 1


class KindError(SynthesisError, TypeError):
    """A rule or operation kind is unknown, or a kind module does not implement every phase."""


@dataclass(frozen=True)
class RuleRef:
    """One rule of a design: its stable id (the ``rule`` name of its require steps and probes, and of
    the error an agent sees), its position, and the parameter value the variant drew."""

    id: str
    index: int
    rule: Any  # the kind's catalog model
    value: float | None = None

    @classmethod
    def of(cls, index: int, rule: Any, value: float | None = None) -> RuleRef:
        return cls(f"rule.{rule.id}" if rule.id else f"{rule.kind}_{index}", index, rule, value)

    @property
    def kind(self) -> RuleKind:
        return rule_kind(self.rule.kind)

    @property
    def policy(self) -> str:
        return self.kind.policy(self)


@dataclass(frozen=True)
class Trap:
    """What task synthesis may build a policy trap on: the related entity the user names, and which
    of its rows the rule lets through."""

    subject: str
    ok: Callable[[dict[str, Any]], bool]


class RuleKind(ABC):
    """Every phase of one kind of rule. Phases a kind has nothing to do in return nothing, explicitly."""

    name: ClassVar[str]  # the catalog's ``kind`` value
    model: ClassVar[type[RuleModel]]  # the catalog model (a pydantic class with ``kind: Literal[name]``)
    vocabulary: ClassVar[str]  # how the rule is explained to a language model (lines of "* ..." text)
    seed_pass: ClassVar[int]  # when ``adjust_seed`` runs: 0 states and owners, 1 dates, 2 counters
    limits_rows: ClassVar[bool] = False  # one more row of the entity can trip it (a per-owner count)

    # -- catalog and variant -------------------------------------------------------------------

    @abstractmethod
    def problems(self, rule: Any, entity: Entity, entities: dict[str, Entity]) -> list[str]:
        """What is inconsistent about the rule in its domain (each message without the location)."""

    @abstractmethod
    def applies(self, rule: Any, entities: dict[str, Entity]) -> bool:
        """Whether the rule survives a variant's entities (its entity is there already)."""

    @abstractmethod
    def parameter(self, rule: Any) -> Param | None:
        """The parameter a variant draws, if the rule has one."""

    @abstractmethod
    def references(self, rule: Any) -> dict[str, str]:
        """The fields naming other entities (field -> entity), renamed when domains are composed."""

    # -- modeling ------------------------------------------------------------------------------

    @abstractmethod
    def action(self, rule: Any) -> str:
        """The action the rule guards: 'create' or a transition's name."""

    @abstractmethod
    def policy(self, ref: RuleRef) -> str:
        """The rule in policy words, with its parameter filled in."""

    @abstractmethod
    def require_steps(self, design: Design, ref: RuleRef, entity: Entity) -> list[Step]:
        """The ``require`` steps enforcing the rule in the tool performing its action."""

    @abstractmethod
    def effect_steps(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> list[Step]:
        """Steps the rule adds after a create (``transition`` None; the new id is ``:new_id``) or a
        transition (the record is ``:<entity>_id``) has written its own row."""

    @abstractmethod
    def writes(self, design: Design, ref: RuleRef, entity: Entity, transition: Transition | None) -> set[str]:
        """Tables its effect steps write in that tool, besides the entity's own."""

    @abstractmethod
    def table_checks(self, design: Design, ref: RuleRef) -> list[tuple[str, dict[str, Any]]]:
        """CHECK constraints the rule adds: (table, check) pairs."""

    # -- seeding -------------------------------------------------------------------------------

    @abstractmethod
    def adjust_seed(self, seeder: Seeder, ref: RuleRef) -> None:
        """Change the seed rows so the rule holds in them and can be tested (run in ``seed_pass`` order)."""

    # -- procedural tests ----------------------------------------------------------------------

    @abstractmethod
    def parties(self, rule: Any) -> set[str]:
        """The related entities a new record's choice must pass the rule for (named when none does)."""

    @abstractmethod
    def eligible(
        self, tester: Tester, ref: RuleRef, entity: Entity, related: str, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The rows of ``related`` a new ``entity`` may refer to under this rule (the test's own oracle)."""

    @abstractmethod
    def taken(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> bool:
        """Whether create ``arguments`` would break the rule in the seed (the test's own oracle)."""

    @abstractmethod
    def choose_arguments(
        self, tester: Tester, ref: RuleRef, entity: Entity, schema: dict[str, Any], arguments: dict[str, Any]
    ) -> None:
        """Set create arguments the rule constrains, before the others are drawn."""

    @abstractmethod
    def settle_arguments(self, tester: Tester, ref: RuleRef, entity: Entity, arguments: dict[str, Any]) -> None:
        """Adjust create arguments after the others are drawn."""

    @abstractmethod
    def create_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, base: dict[str, Any]
    ) -> str | None:
        """Probe that the create tool refuses what the rule forbids (``base`` succeeded); None when a
        probe ran, else why none could (recorded in the report)."""

    @abstractmethod
    def transition_probes(
        self, tester: Tester, ref: RuleRef, tool: str, entity: Entity, ready: list[dict[str, Any]]
    ) -> str | None:
        """Probe that the transition tool refuses what the rule forbids (``ready``: rows in a from-state);
        None when a probe ran, else why none could."""

    # -- tasks ---------------------------------------------------------------------------------

    @abstractmethod
    def trap(self, ref: RuleRef) -> Trap | None:
        """What a policy-trap task may be built on (a related record the rule refuses), if anything."""


KINDS: dict[str, RuleKind] = {}
"""Every registered rule kind by its catalog name, in registration order."""

_ATTRIBUTES = ("name", "model", "vocabulary", "seed_pass")


def register(cls: type[RuleKind]) -> type[RuleKind]:
    """Add a kind to the registry (a class decorator). A kind missing a phase is refused here, at
    import, never discovered later as a rule that is silently not enforced or not tested."""
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if not issubclass(cls, RuleKind) or inspect.isabstract(cls) or missing:
        raise KindError(f"rule kind {cls.__name__} does not implement: {', '.join(missing) or 'RuleKind'}")
    unset = [a for a in _ATTRIBUTES if not hasattr(cls, a)]
    if unset:
        raise KindError(f"rule kind {cls.__name__} does not set: {', '.join(unset)}")
    declared = cls.model.model_fields.get("kind")
    if getattr(declared and declared.annotation, "__args__", None) != (cls.name,):
        raise KindError(f"rule kind {cls.__name__}: its model's kind must be Literal[{cls.name!r}]")
    if cls.name in KINDS:
        raise KindError(f"rule kind {cls.name!r} is registered twice")
    KINDS[cls.name] = cls()
    return cls


def rule_kind(name: str) -> RuleKind:
    """The kind registered under ``name``; an unknown kind is an error, never a rule quietly skipped."""
    try:
        return KINDS[name]
    except KeyError:
        raise KindError(f"unknown rule kind {name!r} (registered: {', '.join(KINDS)})") from None


def fill(description: str, value: float | None) -> str:
    """Policy words with the drawn parameter in place of ``{max}`` / ``{amount}``."""
    if value is None:
        return description
    return description.replace("{max}", f"{value:g}").replace("{amount}", f"{value:g}")


def column_to(entity: Entity, target: str) -> str:
    """The foreign-key column of ``entity`` referring to ``target``."""
    return next(r.column for r in entity.relations if r.to == target)


def state_field(entity: Entity) -> str:
    return entity.lifecycle.field if entity.lifecycle else "status"
