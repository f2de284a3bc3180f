"""Simulated users for conversational episodes (τ-bench's and EnvScaler's user side).

A user plays a task's ``user`` scenario: it opens with its request, reveals a fact it knows
only when the agent asks for it, never invents one, answers "shall I go ahead?" as the scenario's
``confirm`` says (declining with a ``refuses`` line), states its ``goal`` when asked what it wants,
and ends the conversation with :data:`STOP` once the agent has answered without asking anything more.
``ScriptedUser`` does this deterministically (for tests and smoke runs); ``LLMUser`` has a model play the persona.
"""

from __future__ import annotations

import re
from typing import Protocol

from servers import Task

from .chat import ChatClient

__all__ = ["STOP", "User", "ScriptedUser", "LLMUser"]

STOP = "###STOP###"


class User(Protocol):
    prompt_tokens: int
    completion_tokens: int

    def opening(self) -> str: ...

    async def reply(self, agent_message: str) -> str: ...


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


CONFIRMATION = re.compile(
    r"\b(shall i|should i|do you want me to|would you like me to|want me to|go ahead|proceed|confirm(?!\s+your\b)|"
    r"(?:is that|is this|are you) (?:ok|okay|alright|all right|fine|sure))\b",
    re.I,
)
"""An agent asking leave to act ("Shall I go ahead?", "Do you want me to cancel it?", "Please confirm"), in a
question or with "confirm"; "confirm your date of birth" asks for a fact instead, "I went ahead" asks nothing."""

GOAL_QUESTION = re.compile(
    r"\b(what can i (?:do|help)|how (?:can|may) i help|what would you like|what do you (?:want|need)|"
    r"what (?:is it|are you) (?:you )?(?:want|need|looking for)|what brings you|what can we do)",
    re.I,
)
"""An agent asking what the user wants."""


class ScriptedUser:
    """Deterministic: answers exactly the facts asked for, by the words of their names; answers a request for
    leave to act per the scenario's ``confirm`` (declining with its first ``refuses`` line); states its ``goal``
    when asked what it wants; otherwise says it does not know, or ends the talk once the agent stops asking."""

    prompt_tokens = completion_tokens = 0

    def __init__(self, task: Task) -> None:
        self.task = task
        self.told: set[str] = set()

    def opening(self) -> str:
        return self.task.instruction

    async def reply(self, agent_message: str) -> str:
        user = self.task.user
        asked = _words(agent_message)
        named = [(name, value) for name, value in user.known.items() if _words(name) and _words(name) <= asked | {"my"}]
        facts = [(name, value) for name, value in named if name not in self.told]
        said = []
        if facts:
            self.told.update(name for name, _ in facts)
            said.append(" ".join(f"My {name} is {value}." for name, value in facts))
        elif named and "?" in agent_message:  # asked again: the same facts, never new ones
            said.append("As I said: " + " ".join(f"my {name} is {value}." for name, value in named))
        if CONFIRMATION.search(agent_message) and ("?" in agent_message or "confirm" in asked):  # a request
            if user.confirm:
                said.append("Yes, please go ahead.")
            else:
                said.append("No, please don't." + (f" {user.refuses[0]}" if user.refuses else ""))
        if said:
            return " ".join(said)
        if GOAL_QUESTION.search(agent_message):
            return user.goal or self.task.instruction
        if "?" in agent_message:
            return "I don't know that, sorry; I've told you what I know."
        return f"Thank you, that's everything. {STOP}"


class LLMUser:
    """A model plays the customer, from the scenario only."""

    def __init__(self, task: Task, chat: ChatClient) -> None:
        self.task = task
        self.chat = chat
        self.prompt_tokens = self.completion_tokens = 0
        known = (
            "\n".join(f"- {name}: {value}" for name, value in task.user.known.items())
            or "- (nothing beyond your request)"
        )
        unknown = ", ".join(task.user.unknown) or "nothing in particular"
        scenario = task.user
        lines = [
            f"You are a customer talking to a company's assistant. {scenario.persona}",
            f"What you want: {task.instruction}",
            *([f"Your goal: {scenario.goal}"] if scenario.goal else []),
            f"Facts you know, to give only when the assistant asks for them:\n{known}",
            *(["You agree to:", *(f"- {line}" for line in scenario.accepts)] if scenario.accepts else []),
            *(["You will not accept:", *(f"- {line}" for line in scenario.refuses)] if scenario.refuses else []),
            'If the assistant asks whether to go ahead, say yes ("yes, go ahead").'
            if scenario.confirm
            else 'If the assistant asks whether to go ahead, say no ("no, don\'t") and what you will not accept.',
            f"You do not know: {unknown}. Never make up a fact, an id or a number you were not given. Speak as the "
            "customer, in one or two sentences. When the assistant has done what you asked (or says it cannot), "
            f"reply with a short thanks followed by {STOP}.",
        ]
        self.messages = [{"role": "system", "content": "\n".join(lines)}]

    def opening(self) -> str:
        self.messages.append({"role": "assistant", "content": self.task.instruction})
        return self.task.instruction

    async def reply(self, agent_message: str) -> str:
        self.messages.append({"role": "user", "content": agent_message})  # roles are the customer's view
        turn = await self.chat.complete(self.messages)
        self.prompt_tokens += turn.prompt_tokens
        self.completion_tokens += turn.completion_tokens
        text = (turn.content or "").strip() or STOP
        self.messages.append({"role": "assistant", "content": text})
        return text
