"""An LLM agent on an episode: the policy as the system prompt, the episode's MCP tools as
OpenAI function tools, and a loop of completions and tool calls.

Non-conversational: the instruction is the first user message, and the episode ends when the
agent answers without calling a tool. Conversational: a simulated user opens instead, answers
each text reply, and ends the conversation with its stop marker. The whole exchange is kept in
the OpenAI chat format (``messages``), ready for training exports.
"""

from __future__ import annotations

import json
from typing import Any

from servers.clients import AgentSession, ToolSpec

from .chat import ChatClient, ChatError
from .users import STOP, User

__all__ = ["LLMAgent", "openai_tools", "SYSTEM_PROMPT"]

SYSTEM_PROMPT = (
    "You are a customer-service agent working in a company's systems through the tools you are given. Follow "
    "the policy below exactly. Look records up instead of guessing ids; if the policy or a tool refuses "
    "something, tell the customer why and offer what is allowed.\n\n# Policy\n\n{policy}"
)


def openai_tools(tools: list[ToolSpec]) -> list[dict[str, Any]]:
    """MCP tools as OpenAI function tools."""
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}}
        for t in tools
    ]


class LLMAgent:
    def __init__(self, chat: ChatClient, *, user: User | None = None, max_steps: int = 30, max_turns: int = 20) -> None:
        self.chat = chat
        self.user = user
        self.name = f"openai:{chat.settings.model}"
        self.max_steps = max_steps
        self.max_turns = max_turns
        self.messages: list[dict[str, Any]] = []
        self.tools: list[dict[str, Any]] = []
        self.prompt_tokens = self.completion_tokens = 0
        self.stopped: str | None = None  # why the loop ended early: max_steps or max_turns

    async def run(self, session: AgentSession) -> str | None:
        self.tools = openai_tools(session.tools)
        self.messages = [
            {"role": "system", "content": SYSTEM_PROMPT.format(policy=session.policy or "(none)")},
            {"role": "user", "content": self.user.opening() if self.user else session.instruction or ""},
        ]
        steps = turns = 0
        said: list[str] = []
        while True:
            try:
                turn = await self.chat.complete(self.messages, self.tools)
            except ChatError as e:
                if e.retryable or e.role != "agent":
                    raise
                self.stopped = f"model_refused: {e}"  # the model's own failure: scored as far as it got
                return "\n".join(said) or None
            self.prompt_tokens += turn.prompt_tokens
            self.completion_tokens += turn.completion_tokens
            message: dict[str, Any] = {"role": "assistant", "content": turn.content}
            if turn.tool_calls:
                message["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in turn.tool_calls
                ]
            self.messages.append(message)
            if turn.content:
                said.append(turn.content)
            if turn.tool_calls:
                for position, call in enumerate(turn.tool_calls):
                    steps += 1
                    if steps > self.max_steps:  # the calls not made are dropped, so the history stays well formed
                        if position:
                            message["tool_calls"] = message["tool_calls"][:position]
                        elif message["content"]:
                            del message["tool_calls"]
                        else:
                            self.messages.remove(message)
                        self.stopped = "max_steps"
                        final = "\n".join(said) or "I could not finish this within the steps allowed."
                        self.messages.append({"role": "assistant", "content": final})
                        return final
                    self.messages.append(
                        {
                            "role": "tool",
                            "tool_call_id": call.id,
                            "content": await self._call(session, call.name, call.arguments),
                        }
                    )
                continue
            if self.user is None:
                return turn.content
            turns += 1
            answer = await self.user.reply(turn.content or "")
            self.messages.append({"role": "user", "content": answer})
            if STOP in answer:
                return "\n".join(said)
            if turns >= self.max_turns:
                self.stopped = "max_turns"
                return "\n".join(said)

    async def _call(self, session: AgentSession, name: str, arguments: str) -> str:
        try:
            parsed = json.loads(arguments or "{}")
        except json.JSONDecodeError as e:
            return f"Error: the arguments are not valid JSON ({e.msg}); call the tool again with a JSON object."
        if not isinstance(parsed, dict):
            return "Error: the arguments must be a JSON object."
        if name not in {t["function"]["name"] for t in self.tools}:
            return f"Error: there is no tool named {name!r}."
        outcome = await session.call(name, parsed)
        return outcome.text
