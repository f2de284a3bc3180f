"""``confirm_amount`` (derived): before anything that charges or refunds money the agent states the
amount and the method and waits for a clear yes. Broken only relative to a conversation (the user
declined), so it has no state-wide violation SQL; tasks with a user who declines test it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..naming import words
from .base import PolicyKind, PolicyRef, register

if TYPE_CHECKING:
    from ..catalog import Domain
    from ..modeling import Design

__all__ = ["ConfirmAmountKind"]

MONEY_KINDS = frozenset({"book", "pay", "transfer", "exchange", "compensate", "cancel"})


@register
class ConfirmAmountKind(PolicyKind):
    name = "confirm_amount"
    model = None
    section = "money"
    vocabulary = "* confirm_amount (derived, every domain that moves money): amounts are confirmed before charging."

    def problems(self, rule: Any, domain: Domain) -> list[str]:
        return []

    def parameter(self, rule: Any) -> None:
        return None

    def refs(self, design: Design, declared: list[tuple[Any, float | None]]) -> list[PolicyRef]:
        moves = any(
            op.kind in MONEY_KINDS and (op.kind != "cancel" or op.refund) and op.expose == "tool"
            for op in design.domain.operations
        )
        return [PolicyRef("policy.confirm_amount", self.name)] if moves and design.domain.ledger else []

    def sentence(self, design: Design, ref: PolicyRef) -> str:
        return (
            f"Before anything that charges or refunds money, tell the {words(design.principal.name)} the amount and "
            "the method and wait for a clear yes."
        )

    def violation(self, design: Design, ref: PolicyRef) -> None:
        return None

    def adjust_seed(self, seeder: Any, ref: PolicyRef) -> None:
        return None

    def probe(self, tester: Any, ref: PolicyRef) -> str:
        return "broken only against a conversation (the user declined); judged per task"

    def refusal(self, world: Any, ref: PolicyRef) -> None:
        """None yet: a task whose user declines once told the amount needs the simulated user's side."""
        return None
