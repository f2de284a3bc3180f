"""Policy-only rules, one module per kind (see ``base.PolicyKind`` for the phases each implements).

Declared kinds (``reason_allowed``, ``max_changes``, ``only_if``) come from a domain's ``policy_rules``;
derived kinds (``staff_only``, ``no_third_party``, ``confirm_amount``) are made by the modeler from the
design's operations. Adding a kind: write ``synthesizer/policies/<kind>.py`` with a ``@register``-ed
``PolicyKind`` and import it below (the import order is the registry's and the policy's).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field

# isort: off
from . import reason_allowed, max_changes, only_if  # noqa: F401
from . import staff_only, no_third_party, confirm_amount  # noqa: F401

# isort: on
from .base import POLICIES, PolicyKind, PolicyModel, PolicyRef, policy_kind, register

if TYPE_CHECKING:
    from ..modeling import Design
    from ..rules import Param

__all__ = [
    "POLICIES",
    "PolicyKind",
    "PolicyModel",
    "PolicyRef",
    "PolicyRule",
    "policy_kind",
    "policy_refs",
    "allowed_values",
    "policy_problems",
    "register",
    "vocabulary",
]

PolicyRule: Any = Annotated[
    Union[tuple(k.model for k in POLICIES.values() if k.model is not None)],  # noqa: UP007
    Field(discriminator="kind"),
]
"""A declared policy-only rule of any kind (``Domain.policy_rules``)."""


def policy_problems(rule: Any, domain: Any) -> list[str]:
    return policy_kind(rule.kind).problems(rule, domain)


def policy_refs(
    design: Design, rng: random.Random, draw: Callable[[random.Random, Param, int], float]
) -> list[PolicyRef]:
    """Every policy-only rule of a world design, declared then derived, in registry order."""
    refs: list[PolicyRef] = []
    for name, kind in POLICIES.items():
        declared = []
        for rule in design.domain.policy_rules:
            if rule.kind == name:
                param = kind.parameter(rule)
                declared.append((rule, None if param is None else draw(rng, param, design.variant)))
        refs += kind.refs(design, declared)
    return refs


def allowed_values(design: Design, tool: str, parameter: str) -> list[Any] | None:
    """The values of a tool's parameter the design's policy allows (a cancel's reasons), or None when the
    policy says nothing about it: every act a gold chain makes must keep the policy."""
    for ref in design.policy_refs:
        if ref.kind_name == "reason_allowed" and parameter == "reason" and design.op_tool(ref.op) == tool:
            return list(ref.rule.allowed)
    return None


def vocabulary() -> str:
    """The policy-rule vocabulary as a language model is taught it."""
    return "\n".join(kind.vocabulary for kind in POLICIES.values())
