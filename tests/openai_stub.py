"""A small OpenAI-compatible chat-completions server serving scripted replies, on a real
127.0.0.1 port (uvicorn in a thread) — the one stand-in the tests allow, for the external LLM.

Replies are scripted per stage: the stage is recognised from the conversation's first user
message, and each stage's replies are served in order (the last one repeats). A reply is text, a
function of the request (for replies that depend on what was asked, tool calls included), or a :class:`Fault`:
an HTTP status with headers, or a delay longer than the client's timeout. Every request is kept.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from servers.serving import serving_in_thread

ROLES = {  # recognised from the system prompt: the harness's agent and simulated user
    "agent": re.compile(r"^You are a customer-service agent"),
    "user": re.compile(r"^You are a customer talking"),
}
STAGES = {
    "judge": re.compile(r"^Label each user request below"),
    "domain": re.compile(r"^Model the business domain of"),
    "spec": re.compile(r"^Write a complete simulated business system"),
    "spec_tasks": re.compile(r"^Below is a simulated business system"),
    "tools": re.compile(r"^An environment for AI agents has the tables"),
    "seed": re.compile(r"^Seed data for a fictional"),
    "paraphrase": re.compile(r"^Customers of a fictional"),
    "review": re.compile(r"^You review the tools"),
}


@dataclass
class Fault:
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (past the client's timeout: a timeout)


Reply = str | Fault | Callable[[dict[str, Any]], "str | dict[str, Any] | Fault"]
"""Text; a failure; or a function of the request giving text, a message ({"content", "tool_calls"}) or a failure."""


def stage_of(body: dict[str, Any]) -> str:
    system = next((m["content"] for m in body["messages"] if m["role"] == "system"), "") or ""
    role = next((name for name, pattern in ROLES.items() if pattern.search(system)), None)
    if role is not None:
        return role
    first = next((m["content"] for m in body["messages"] if m["role"] == "user"), "") or ""
    return next((name for name, pattern in STAGES.items() if pattern.search(first)), "unknown")


class OpenAIStub:
    def __init__(self) -> None:
        self.scripts: dict[str, list[Reply]] = {}
        self.served: dict[str, int] = {}
        self.requests: list[dict[str, Any]] = []
        self.models = {"stub-model"}
        self.key: str | None = None  # when set, other keys get 401
        self._lock = threading.Lock()
        self.url = ""

    def script(self, stage: str, *replies: Reply) -> None:
        self.scripts[stage] = list(replies)
        self.served[stage] = 0

    def requests_for(self, stage: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if stage_of(r) == stage]

    async def _completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return JSONResponse(
                {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}, 401
            )
        if body.get("model") not in self.models:
            return JSONResponse(
                {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": "model_not_found"}},
                404,
            )
        stage = stage_of(body)
        with self._lock:
            self.requests.append(body)
            replies = self.scripts.get(stage) or [Fault(500, {"error": {"message": f"no script for stage {stage}"}})]
            index = min(self.served.get(stage, 0), len(replies) - 1)
            self.served[stage] = self.served.get(stage, 0) + 1
        reply = replies[index]
        if isinstance(reply, Fault):
            if reply.delay:
                await anyio.sleep(reply.delay)
            if reply.status < 400:
                reply = replies[min(index + 1, len(replies) - 1)]
            else:
                return JSONResponse(
                    reply.body or {"error": {"message": f"scripted HTTP {reply.status}"}},
                    reply.status,
                    headers=reply.headers,
                )
        answer = reply(body) if callable(reply) else reply
        if isinstance(answer, Fault):  # a function may fail a request too
            return JSONResponse(answer.body or {"error": {"message": f"scripted HTTP {answer.status}"}}, answer.status)
        message = (
            {"role": "assistant", **answer} if isinstance(answer, dict) else {"role": "assistant", "content": answer}
        )
        prompt_tokens = sum(len(m.get("content") or "") for m in body["messages"]) // 4
        completion_tokens = len(json.dumps(message)) // 4
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    @contextmanager
    def running(self) -> Iterator[OpenAIStub]:
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])
        with serving_in_thread(app, lifespan="off") as base:
            self.url = f"{base}/v1"
            yield self


def fenced(
    value: Any, before: str = "Here is the JSON you asked for:", after: str = "Let me know if you need changes."
) -> str:
    """A reply as models write them: prose, a fenced block, more prose."""
    return f"{before}\n\n```json\n{json.dumps(value, indent=2)}\n```\n\n{after}"
