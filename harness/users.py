"""Simulated users for conversational episodes (τ-bench's and EnvScaler's user side).

A user plays a task's ``user`` scenario: it opens with its request, reveals a fact it knows
only when the agent asks for it, never invents one, and ends the conversation with
:data:`STOP` once the agent has answered without asking anything more. ``ScriptedUser`` does
this deterministically (for tests and smoke runs); ``LLMUser`` has a model play the persona.
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


class ScriptedUser:
    """Deterministic: answers exactly the facts asked for, by the words of their names."""

    prompt_tokens = completion_tokens = 0

    def __init__(self, task: Task) -> None:
        self.task = task
        self.told: set[str] = set()

    def opening(self) -> str:
        return self.task.instruction

    async def reply(self, agent_message: str) -> str:
        asked = _words(agent_message)
        facts = [
            (name, value)
            for name, value in self.task.user.known.items()
            if _words(name) and _words(name) <= asked | {"my"} and name not in self.told
        ]
        if facts:
            self.told.update(name for name, _ in facts)
            return " ".join(f"My {name} is {value}." for name, value in facts)
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
        self.messages = [
            {
                "role": "system",
                "content": (
                    f"You are a customer talking to a company's assistant. {task.user.persona}\n"
                    f"What you want: {task.instruction}\n"
                    f"Facts you know, to give only when the assistant asks for them:\n{known}\n"
                    f"You do not know: {unknown}. Never make up a fact, an id or a number you were not given. Speak "
                    "as the "
                    "customer, in one or two sentences. When the assistant has done what you asked (or says it "
                    "cannot), reply "
                    f"with a short thanks followed by {STOP}."
                ),
            }
        ]

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
