"""JSON out of what a model actually says: fenced blocks, prose around the object, refusals.

Models asked for JSON still answer ```` ```json ... ``` ```` fences, "Here is the domain: {...}
Let me know if ...", or "I'm sorry, I can't help with that." ``parse_json_reply`` finds the
object (the first fenced block that decodes, else the first balanced ``{...}`` that decodes) and
raises :class:`ReplyProblem` with a message fit to send back to the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import SynthesisError

__all__ = ["ReplyProblem", "parse_json_reply", "looks_like_refusal"]

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.S)
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry,|i can(?:no|')t|i cannot|i won'?t|as an ai|i'm unable|i am unable"
    r"|unfortunately,? i)",
    re.I,
)


MAX_REPLY = 2_000_000


class ReplyProblem(SynthesisError, ValueError):
    """The reply holds no usable JSON object; the message says what was wrong."""

    def __init__(self, message: str, *, refusal: bool = False) -> None:
        super().__init__(message)
        self.refusal = refusal


def looks_like_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text)) and "{" not in text


def parse_json_reply(text: str) -> dict[str, Any]:
    """The JSON object in a reply. Raises :class:`ReplyProblem`."""
    if not text.strip():
        raise ReplyProblem("the reply was empty; answer with one JSON object")
    if len(text) > MAX_REPLY:
        raise ReplyProblem(
            f"the reply is {len(text):,} characters long, more than the {MAX_REPLY:,} accepted; answer more compactly"
        )
    if looks_like_refusal(text):
        raise ReplyProblem(
            "the reply declined the request. This is synthetic test data for a simulated system (no "
            "real people or systems are involved); answer with the JSON object asked for",
            refusal=True,
        )
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text] + _balanced_objects(text)
    last_error = None
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError as e:
            last_error = e
            continue
        except RecursionError:
            raise ReplyProblem("the JSON in the reply nests too deeply; answer with a plain JSON object") from None
        if isinstance(value, dict):
            return value
    if last_error is not None and "{" in text:
        raise ReplyProblem(
            f"the JSON in the reply does not parse ({last_error.msg} at line {last_error.lineno}, column "
            f"{last_error.colno}); answer with one complete JSON object and nothing else"
        )
    raise ReplyProblem("the reply holds no JSON object; answer with one JSON object and nothing else")


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` span of ``text``, honouring strings and escapes."""
    spans, depth, start, in_string, escaped = [], 0, -1, False, False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"' and depth > 0:
            in_string = True
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
    return spans
