"""Chat completions against any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, llama.cpp ...).

Every reply is kept in a **content-addressed cache**: the key is the sha256 of the request that
decides the answer — model, messages, temperature, seed, token limit, response format — and not
of the endpoint or the key, so a run recorded against one server replays byte for byte with no
server at all (``replay=True``). Retries back off exponentially on 429, 5xx, timeouts and dropped
connections (a ``Retry-After`` header wins); expected failures become :mod:`.errors` with a
message a user can act on. Tokens, calls and cost are counted per stage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from .config import LLMConfig
from .errors import (
    LLMAuthError,
    LLMBadResponse,
    LLMCacheMiss,
    LLMConfigError,
    LLMModelNotFound,
    LLMUnavailable,
    LLMUnreachable,
)

__all__ = ["Reply", "StageUsage", "Usage", "ResponseCache", "ChatClient", "LLMClient", "ScopedClient", "request_key"]

logger = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass(frozen=True)
class Reply:
    text: str
    cache_key: str
    cached: bool
    model: str
    finish_reason: str | None = None


@dataclass
class StageUsage:
    calls: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Usage:
    """Calls, tokens and cost per stage (thread-safe)."""

    stages: dict[str, StageUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, stage: str, **amounts: float) -> None:
        with self._lock:
            usage = self.stages.setdefault(stage, StageUsage())
            for name, amount in amounts.items():
                setattr(usage, name, getattr(usage, name) + amount)

    def total(self) -> StageUsage:
        total = StageUsage()
        for usage in self.stages.values():
            for name, value in asdict(usage).items():
                setattr(total, name, getattr(total, name) + value)
        return total

    def to_dict(self) -> dict[str, Any]:
        stages = {name: asdict(u) | {"cost_usd": round(u.cost_usd, 6)} for name, u in sorted(self.stages.items())}
        total = asdict(self.total())
        return {"stages": stages, "total": total | {"cost_usd": round(total["cost_usd"], 6)}}


def request_key(body: dict[str, Any]) -> str:
    """The cache key of a request: what decides the answer, canonically encoded."""
    decisive = {k: body.get(k) for k in ("model", "messages", "temperature", "seed", "max_tokens", "response_format")}
    return hashlib.sha256(
        json.dumps(decisive, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    ).hexdigest()


class ChatClient(Protocol):
    """What the stages need of a client: its settings, and one chat completion."""

    config: LLMConfig

    def chat(self, stage: str, messages: list[dict[str, str]], *, json_reply: bool = True) -> Reply: ...


class ResponseCache:
    """``<dir>/<key[:2]>/<key>.json`` holding the request and the endpoint's whole response."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            record = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        response = record.get("response") if isinstance(record, dict) else None
        return response if isinstance(response, dict) else None

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        """Store a reply; a cache that cannot be written only costs the replay, never the run."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump({"request": request, "response": response}, file, ensure_ascii=False, indent=1)
            os.replace(temporary, path)
        except OSError as e:
            logger.warning("cannot write the LLM response cache at %s: %s", self.folder, e)


class LLMClient:
    """One endpoint, one connection pool, a cap on requests in flight, and the usage so far."""

    def __init__(self, config: LLMConfig, http: httpx.Client | None = None) -> None:
        self.config = config
        self.cache = ResponseCache(config.cache_dir)
        self.usage = Usage()
        self.keys: list[str] = []  # cache keys of every reply, in order: the run's provenance
        self._keys_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._inflight: dict[str, threading.Lock] = {}  # one request per cache key at a time
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        try:
            self._http = http or httpx.Client(
                base_url=config.base_url.rstrip("/") + "/",
                headers=headers,
                timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
            )
        except (httpx.InvalidURL, ValueError) as e:
            raise LLMConfigError(f"base_url {config.base_url!r} is not a usable URL ({e})") from None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def scoped(self) -> ScopedClient:
        """A view of this client that also counts usage and cache keys for one piece of work."""
        return ScopedClient(self)

    def chat(
        self, stage: str, messages: list[dict[str, str]], *, json_reply: bool = True, usage: Usage | None = None
    ) -> Reply:
        """One completion for ``stage``: from the cache when recorded, else from the endpoint."""
        model = self.config.model_for(stage)
        body: dict[str, Any] = {"model": model, "messages": messages, "temperature": self.config.temperature}
        if self.config.seed is not None:
            body["seed"] = self.config.seed
        if self.config.max_tokens:
            body["max_tokens"] = self.config.max_tokens
        if json_reply and self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        key = request_key(body)
        with self._keys_lock:
            self.keys.append(key)
            inflight = self._inflight.setdefault(key, threading.Lock())
        with inflight:  # the same request from two threads is asked once: both get the reply the cache keeps
            response = self.cache.get(key)
            cached = response is not None
            if response is None:
                if self.config.replay:
                    raise LLMCacheMiss(
                        f"replaying from {self.config.cache_dir}, but the {stage!r} request {key[:12]} was "
                        "never recorded: run once without --replay against a reachable endpoint"
                    )
                with self._slot():
                    response = self._post(stage, body)
            text, finish = _message(response, self.config.base_url)  # raises before a malformed reply is kept
            if not cached:
                self.cache.put(key, body, response)
        prompt, completion = _tokens(response.get("usage"))
        price = self.config.prices.get(model)
        cost = (prompt * price.input + completion * price.output) / 1e6 if price and not cached else 0.0
        for counter in (self.usage, usage) if usage is not None else (self.usage,):  # the run's, and the caller's
            counter.add(
                stage, calls=1, cached=int(cached), prompt_tokens=prompt, completion_tokens=completion, cost_usd=cost
            )
        return Reply(text, key, cached, model, finish)

    @contextmanager
    def _slot(self) -> Iterator[None]:
        with self._slots:
            yield

    def _post(self, stage: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        attempt = 0
        while True:
            problem: str
            wait: float | None = None
            try:
                response = self._http.post("chat/completions", json=body)
            except httpx.TimeoutException:
                problem = f"no answer within {self.config.timeout:g} s"
            except httpx.ConnectError as e:
                if attempt >= min(self.config.max_retries, 2):
                    raise LLMUnreachable(
                        f"cannot reach the LLM endpoint {url} ({type(e).__name__}: {e}); check "
                        "OPENAI_BASE_URL or `base_url`, and that the server is running"
                    ) from None
                problem = f"connection failed ({type(e).__name__})"
            except httpx.TransportError as e:  # the connection broke mid-request
                problem = f"the connection dropped ({type(e).__name__}: {e})"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise LLMBadResponse(
                            f"{url} answered HTTP {response.status_code} with something that is not JSON: "
                            f"{response.text[:200]!r}"
                        ) from None
                detail = _error_detail(response)
                if response.status_code in (401, 403):
                    raise LLMAuthError(
                        f"the LLM endpoint {url} refused the API key (HTTP {response.status_code}: {detail}); "
                        "set OPENAI_API_KEY or `api_key` in the config file"
                    )
                if response.status_code == 404:
                    raise LLMModelNotFound(
                        f"the LLM endpoint {url} does not serve model {body['model']!r}, or is not an "
                        f"OpenAI-compatible endpoint at that path (HTTP 404: {detail}); check "
                        "ENVFLEET_MODEL, the endpoint's model list (GET /models), and that the base "
                        "URL ends with /v1"
                    )
                if response.status_code == 429 and "quota" in detail.lower():
                    raise LLMUnavailable(
                        f"the LLM endpoint {url} says the account is out of quota (HTTP 429: {detail})"
                    )
                if response.status_code not in _RETRY_STATUS:
                    raise LLMBadResponse(
                        f"the LLM endpoint {url} rejected the {stage!r} request (HTTP {response.status_code}: {detail})"
                    )
                problem = f"HTTP {response.status_code}: {detail}"
                wait = _retry_after(response)
            if attempt >= self.config.max_retries:
                raise LLMUnavailable(
                    f"the LLM endpoint {url} kept failing for the {stage!r} stage after "
                    f"{attempt + 1} attempt(s); last: {problem}"
                )
            self.usage.add(stage, retries=1)
            time.sleep(wait if wait is not None else self.config.backoff * 2**attempt)
            attempt += 1


class ScopedClient:
    """One environment's share of an :class:`LLMClient`: the same endpoint, cache and limits, with
    its own usage and cache keys (its provenance)."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client
        self.config = client.config
        self.usage = Usage()
        self.keys: list[str] = []

    def chat(self, stage: str, messages: list[dict[str, str]], *, json_reply: bool = True) -> Reply:
        reply = self.client.chat(stage, messages, json_reply=json_reply, usage=self.usage)
        self.keys.append(reply.cache_key)
        return reply


def _message(response: dict[str, Any], base_url: str) -> tuple[str, str | None]:
    try:
        choice = response["choices"][0]
        content = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMBadResponse(
            f"the LLM endpoint {base_url} answered without choices[0].message: {json.dumps(response)[:200]}"
        ) from None
    if not isinstance(content, str):  # some servers send a list of content parts
        parts = content if isinstance(content, list) else []
        content = "".join(str(part.get("text") or "") for part in parts if isinstance(part, dict))
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return content, finish if isinstance(finish, str) else None


def _tokens(usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens of a reply, 0 where the server reports none or nonsense."""

    def count(name: str) -> int:
        value = usage.get(name) if isinstance(usage, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    return count("prompt_tokens"), count("completion_tokens")


def _error_detail(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error or response.text)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return None
