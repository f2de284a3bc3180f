"""Training data from runs: one OpenAI chat example per trajectory (``{"messages", "tools"}``, the
fine-tuning format), with EnvScaler-style filters — success only, a step-count window, and
tool calls whose arguments are valid JSON objects naming offered tools. Every example is checked
against the chat format before it is written; what fails is counted, not written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ExportFilter", "sft_examples", "chat_format_problems"]

_ROLES = {"system", "user", "assistant", "tool"}


@dataclass
class ExportFilter:
    only_success: bool = False
    min_steps: int = 0
    max_steps: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


def chat_format_problems(example: dict[str, Any]) -> list[str]:
    """Why ``example`` is not a valid OpenAI chat fine-tuning example with tools (empty when it is)."""
    problems = []
    messages, tools = example.get("messages"), example.get("tools", [])
    if not isinstance(messages, list) or not messages:
        return ["messages: a non-empty list is needed"]
    if not isinstance(tools, list):
        problems.append("tools: must be a list")
        tools = []
    offered = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict) and t.get("type") == "function"}
    pending: set[str] = set()
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role") if isinstance(message, dict) else None
        if role not in _ROLES:
            problems.append(f"{where}.role: {role!r} is not one of {sorted(_ROLES)}")
            continue
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in pending:
                problems.append(f"{where}.tool_call_id: {call_id!r} answers no earlier tool call")
            pending.discard(call_id)
            if not isinstance(message.get("content"), str):
                problems.append(f"{where}.content: a tool result is text")
            continue
        if pending:
            problems.append(f"{where}: tool call(s) {sorted(pending)} were never answered")
            pending.clear()
        calls = message.get("tool_calls") or []
        if role != "assistant" and calls:
            problems.append(f"{where}: only assistant messages call tools")
        if not calls and not isinstance(message.get("content"), str):
            problems.append(f"{where}.content: text is needed")
        for j, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or call.get("type") != "function" or not call.get("id"):
                problems.append(f"{where}.tool_calls[{j}]: needs id, type 'function' and function")
                continue
            if function.get("name") not in offered:
                problems.append(
                    f"{where}.tool_calls[{j}].function.name: {function.get('name')!r} is not an offered tool"
                )
            try:
                arguments = json.loads(function.get("arguments") or "")
            except (TypeError, json.JSONDecodeError):
                arguments = None
            if not isinstance(arguments, dict):
                problems.append(f"{where}.tool_calls[{j}].function.arguments: not a JSON object")
            pending.add(call["id"])
    if pending:
        problems.append(f"tool call(s) {sorted(pending)} were never answered")
    if messages[-1].get("role") != "assistant":
        problems.append("the last message must be the assistant's")
    return problems


def sft_examples(records: list[dict[str, Any]], rules: ExportFilter) -> Iterator[dict[str, Any]]:
    for record in records:
        if record.get("status") != "ok":
            rules.drop("infra_error")
            continue
        if rules.only_success and not record.get("success"):
            rules.drop("not_successful")
            continue
        steps = sum(len(m.get("tool_calls") or []) for m in record.get("messages", []))
        if steps < rules.min_steps or (rules.max_steps is not None and steps > rules.max_steps):
            rules.drop("steps_out_of_bounds")
            continue
        messages = [{k: v for k, v in m.items() if v is not None or k == "content"} for m in record.get("messages", [])]
        for message in messages:
            if message.get("role") == "assistant" and message.get("tool_calls") and message.get("content") is None:
                message.pop("content")
        example = {"messages": messages, "tools": record.get("tools", [])}
        if chat_format_problems(example):
            rules.drop("invalid_chat_format")
            continue
        yield example
