"""The repair loop: propose, check, and send the problems back — with their exact location — for a
bounded number of rounds.

A stage gives a conversation and a ``check`` that turns the reply's JSON into its value or
raises :class:`Problems` (``"entities[2].lifecycle.initial: 'open' is not a state"``,
``"tools.transfer_booking.steps[1].sql: unknown column 'seat'"``). Each failed round appends the
model's reply and a message listing the problems, and asks again. What comes back is a
:class:`Proposal`: the value, or the last problems, and every round's cache key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import SynthesisError
from .client import ChatClient
from .replies import ReplyProblem, parse_json_reply

__all__ = ["Problems", "Attempt", "Proposal", "propose"]

T = TypeVar("T")


class Problems(SynthesisError):
    """What is wrong with a proposal, one located message each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass
class Attempt:
    round: int
    cache_key: str
    problems: list[str] = field(default_factory=list)


@dataclass
class Proposal(Generic[T]):
    stage: str
    value: T | None = None
    attempts: list[Attempt] = field(default_factory=list)
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def problems(self) -> list[str]:
        return self.attempts[-1].problems if self.attempts and not self.ok else []

    def report(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "ok": self.ok,
            "rounds": len(self.attempts),
            "refused": self.refused,
            "attempts": [{"round": a.round, "cache_key": a.cache_key, "problems": a.problems} for a in self.attempts],
        }


FEEDBACK = (
    "Your reply has {count} problem(s):\n{problems}\n\nFix every one of them and answer again with the whole "
    "corrected JSON object (not a diff), and nothing else."
)
MAX_LISTED = 25


def propose(
    client: ChatClient,
    stage: str,
    messages: list[dict[str, str]],
    check: Callable[[dict[str, Any]], T],
    max_rounds: int | None = None,
) -> Proposal[T]:
    """Ask, check, feed back; at most ``max_rounds`` (default: the config's) rounds."""
    conversation = list(messages)
    proposal: Proposal[T] = Proposal(stage)
    for round_number in range(1, (max_rounds or client.config.max_rounds) + 1):
        reply = client.chat(stage, conversation)
        attempt = Attempt(round_number, reply.cache_key)
        proposal.attempts.append(attempt)
        try:
            proposal.value = check(parse_json_reply(reply.text))
            proposal.refused = False
            return proposal
        except ReplyProblem as e:
            attempt.problems = [str(e)]
            proposal.refused = e.refusal  # what the last round did
        except Problems as e:
            attempt.problems = e.problems or ["the proposal was rejected"]
            proposal.refused = False
        except Exception as e:  # noqa: BLE001 - a reply shaped in a way no check foresaw is a problem of the reply
            attempt.problems = [
                f"the reply could not be checked ({type(e).__name__}: {e}); follow the requested format exactly"
            ]
        if reply.finish_reason == "length":
            attempt.problems.append("the reply was cut off at the token limit; answer more compactly")
        listed = "\n".join(f"- {p}" for p in attempt.problems[:MAX_LISTED])
        if len(attempt.problems) > MAX_LISTED:
            listed += f"\n- ... and {len(attempt.problems) - MAX_LISTED} more"
        conversation += [
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": FEEDBACK.format(count=len(attempt.problems), problems=listed)},
        ]
    return proposal
