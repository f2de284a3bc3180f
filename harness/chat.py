"""An OpenAI-compatible chat-completions client for agents and simulated users (async, one shared
connection pool). Retrying a completion is always safe — it changes nothing — so 429s, 5xx and
timeouts are retried with backoff; what still fails is a :class:`ChatError`, an infrastructure
failure the runner records as such.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from .errors import HarnessError

__all__ = ["ChatError", "ChatSettings", "ToolCall", "ChatTurn", "ChatClient", "parse_agent_spec"]

_RETRY = {408, 409, 425, 429, 500, 502, 503, 504}


class ChatError(HarnessError):
    """The model endpoint failed (after retries), or answered something that is not a completion.
    ``retryable`` is False when the endpoint refused this very request (a 4xx: too long a context,
    a malformed tool schema): asking again would not help, and the model, not the machinery, failed."""

    def __init__(self, message: str, *, retryable: bool = True, role: str = "agent") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.role = role


@dataclass(frozen=True)
class ChatSettings:
    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.0
    max_tokens: int | None = None
    timeout: float = 120.0
    max_retries: int = 3
    backoff: float = 1.0
    seed: int | None = None


def parse_agent_spec(spec: str, base_url: str | None, api_key: str | None = None, **settings: Any) -> ChatSettings:
    """``openai:MODEL`` (the only provider form) with its endpoint: flag, else ``OPENAI_BASE_URL``."""
    provider, _, model = spec.partition(":")
    if provider != "openai" or not model:
        raise ValueError(
            f"{spec!r}: an LLM agent or user is openai:MODEL (any OpenAI-compatible endpoint, via --base-url)"
        )
    return ChatSettings(
        model=model,
        base_url=base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
        api_key=api_key or os.environ.get("OPENAI_API_KEY"),
        **settings,
    )


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass
class ChatTurn:
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None


class ChatClient:
    def __init__(self, settings: ChatSettings, http: httpx.AsyncClient, role: str = "agent") -> None:
        self.settings = settings
        self.http = http
        self.role = role  # who is talking (agent or user), for the failures it reports

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> ChatTurn:
        s = self.settings
        body: dict[str, Any] = {"model": s.model, "messages": messages, "temperature": s.temperature}
        if tools:
            body["tools"] = tools
        if s.max_tokens:
            body["max_tokens"] = s.max_tokens
        if s.seed is not None:
            body["seed"] = s.seed
        headers = {"Authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        url = s.base_url.rstrip("/") + "/chat/completions"
        for attempt in range(s.max_retries + 1):
            try:
                response = await self.http.post(url, json=body, headers=headers, timeout=s.timeout)
            except httpx.TimeoutException:
                problem = f"no answer within {s.timeout:g} s"
            except httpx.TransportError as e:
                problem = f"{type(e).__name__}: {e}"
            else:
                if response.status_code < 400:
                    return _turn(response, url)
                problem = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in _RETRY:
                    raise ChatError(
                        f"the model endpoint {url} refused the request ({problem})",
                        retryable=response.status_code not in (400, 413, 422),
                        role=self.role,
                    )
            if attempt < s.max_retries:
                await anyio.sleep(s.backoff * 2**attempt)
        raise ChatError(
            f"the model endpoint {url} kept failing after {s.max_retries + 1} attempt(s); last: {problem}",
            role=self.role,
        )


def _turn(response: httpx.Response, url: str) -> ChatTurn:
    try:
        data = response.json()
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ChatError(
            f"the model endpoint {url} answered something that is not a chat completion: {response.text[:200]!r}"
        ) from None
    calls = []
    for index, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") or {}
        arguments = function.get("arguments")
        calls.append(
            ToolCall(
                id=str(call.get("id") or f"call_{index}"),
                name=str(function.get("name") or ""),
                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
            )
        )
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ChatTurn(
        content=message.get("content") if isinstance(message.get("content"), str) else None,
        tool_calls=calls,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        finish_reason=choice.get("finish_reason"),
    )
