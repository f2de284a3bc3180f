"""What can go wrong talking to a model, as errors a user can act on (no stack traces). The
synthesizer's LLM branch (:mod:`synthesizer.errors` draws the whole tree).

    SynthesisError
    └── LLMError
        ├── LLMConfigError       a setting (or a stage name) is missing or malformed
        ├── LLMAuthError         the endpoint refused the API key (401/403)
        ├── LLMModelNotFound     the endpoint does not serve that model (404)
        ├── LLMUnreachable       no connection to the endpoint
        ├── LLMUnavailable       429/5xx/timeouts outlasted the retries
        ├── LLMBadResponse       the endpoint answered something that is not a chat completion
        └── LLMCacheMiss         replaying from the cache, and this request was never recorded
"""

from __future__ import annotations

from ..errors import SynthesisError

__all__ = [
    "LLMError",
    "LLMConfigError",
    "LLMAuthError",
    "LLMModelNotFound",
    "LLMUnreachable",
    "LLMUnavailable",
    "LLMBadResponse",
    "LLMCacheMiss",
]


class LLMError(SynthesisError):
    """Root of the LLM backend's errors; the message says what to do."""


class LLMConfigError(LLMError):
    pass


class LLMAuthError(LLMError):
    pass


class LLMModelNotFound(LLMError):
    pass


class LLMUnreachable(LLMError):
    pass


class LLMUnavailable(LLMError):
    pass


class LLMBadResponse(LLMError):
    pass


class LLMCacheMiss(LLMError):
    pass
