"""The catalog's business rules, one module per kind (see ``base.RuleKind`` for the phases each implements).

Adding a kind: write ``synthesizer/rules/<kind>.py`` with its catalog model and a ``@register``-ed
``RuleKind`` implementing every phase, and import it below (the import order is the registry's, and
the order of the catalog schema's rule union). A kind missing a phase is refused at import; a rule of
an unregistered kind is refused by the catalog.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

# isort: off
# Registration order: the order of the catalog schema's rule union and of the vocabulary.
from . import limit_per_owner, consumes, time_window, eligibility, unique_active  # noqa: F401

# isort: on
from .base import KINDS, KindError, Param, RuleKind, RuleRef, Trap, register, rule_kind
from .consumes import Consumes
from .eligibility import Eligibility
from .limit_per_owner import LimitPerOwner
from .time_window import TimeWindow
from .unique_active import UniqueActive

__all__ = [
    "KINDS",
    "Param",
    "Rule",
    "RuleKind",
    "KindError",
    "RuleRef",
    "Trap",
    "register",
    "rule_kind",
    "vocabulary",
    "LimitPerOwner",
    "Consumes",
    "TimeWindow",
    "Eligibility",
    "UniqueActive",
]

Rule: Any = Annotated[Union[tuple(kind.model for kind in KINDS.values())], Field(discriminator="kind")]  # noqa: UP007
"""A rule of any registered kind, told apart by its ``kind`` (the catalog's ``Domain.rules``)."""


def vocabulary() -> str:
    """The rule vocabulary as a language model is taught it: each kind's own words, in registry order."""
    return "\n".join(kind.vocabulary for kind in KINDS.values())
