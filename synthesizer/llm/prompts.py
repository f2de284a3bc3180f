"""What each stage sends to the model. Bump ``PROMPT_VERSION`` when a prompt changes: it is part of
every environment's provenance (and, through the messages, of every cache key)."""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "PROMPT_VERSION",
    "SYSTEM",
    "judge",
    "domain",
    "tools",
    "seed_values",
    "paraphrase",
    "review",
    "environment",
    "environment_tasks",
]

PROMPT_VERSION = "3"

SYSTEM = (
    "You design synthetic, fully fictional business systems that AI agents are trained and tested in. "
    "You answer with exactly one JSON object that follows the requested format, and nothing else."
)


def _messages(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def judge(requests: list[str], domains: dict[str, str]) -> list[dict[str, str]]:
    numbered = "\n".join(f"{i}. {text}" for i, text in enumerate(requests))
    catalog = "\n".join(f"- {domain_id}: {name}" for domain_id, name in sorted(domains.items()))
    return _messages(
        "Label each user request below.\n"
        "- stateful: true when serving it needs records a system keeps and changes (booking, cancelling, paying, "
        "registering, updating an account), false for questions, advice, calculations or one-off look-ups.\n"
        "- topic: for a stateful request, the kind of business system that would serve it, in 2 to 6 words "
        '("veterinary clinic appointments"); null otherwise.\n'
        "- domain: the id of the catalog domain below that fits the topic, or null when none does.\n\n"
        f"Catalog domains:\n{catalog}\n\nRequests:\n{numbered}\n\n"
        'Answer {"items": [{"index": 0, "stateful": true, "topic": "...", "domain": "..." or null}, ...]} with one '
        "item per request, in order."
    )


def domain(
    topic: str,
    schema: dict[str, Any],
    example: dict[str, Any],
    sectors: list[str],
    rules_help: str,
    generators: str,
    requests: list[str] | None = None,
    operations_help: str = "",
    policies_help: str = "",
) -> list[dict[str, str]]:
    seen = "".join(f"\n- {r}" for r in (requests or [])[:8])
    return _messages(
        f"Model the business domain of: {topic!r}.{' Users of it asked, for example:' + seen if seen else ''}\n\n"
        'Describe it as data in the domain format below, as a world (`"legacy": false`): the business (`org`: three '
        "fictional names and what it is), the agent's job (`agent`) among the `staff_roles` (who does what the agent "
        "must not), the `principals` (the people or organisations the agent serves, who own records, with "
        "`identify_by` key sets such as full name + date of birth, or email), 3 to 7 entities with typed attributes "
        "(money as `type: money` named `*_cents`; what the system computes has `derive` and is never an input; what "
        "a customer supplies has `input: true`), relations, lifecycles whose transitions say `by` whom "
        "(principal, system or staff:<role>) and carry `stamp`s, a `ledger` of payment methods where money moves, "
        "`pricing` formulas computed from the tables, 5 to 9 `operations` in the business's own verbs (at least 3 "
        "with computed effects: quote, book, pay, cancel with refund tiers, transfer, compensate), 2 to 6 business "
        "`rules` the tools enforce, and at least 3 `policy_rules` the policy states but the tools do not enforce. "
        "Make it realistic: the people, prices, states and rules a real such business has; no placeholder text.\n\n"
        f"Operation kinds:\n{operations_help}\n\nRule vocabulary (enforced by the tools):\n{rules_help}\n\n"
        f"Policy-only rule vocabulary:\n{policies_help}\n\n"
        f"Seed value generators (the `generator` of an attribute):\n{generators}\n\n"
        f"The domain format (JSON Schema):\n{json.dumps(schema, separators=(',', ':'))}\n\n"
        f"A complete example of a different domain:\n{json.dumps(example, separators=(',', ':'))}\n\n"
        f'Answer {{"sector": one of {json.dumps(sectors)}, "domain": {{...the domain...}}}}.'
    )


def tools(spec_summary: str, tool_schema: dict[str, Any], helpers: str, count: int) -> list[dict[str, str]]:
    return _messages(
        f"An environment for AI agents has the tables, sample rows, tools and policy below.\n\n{spec_summary}\n\n"
        f"Propose {count} additional tools that real staff of this business would need and that the existing tools "
        "do not "
        "cover: richer business operations (a transfer, a partial refund, a change that must respect a rule), each "
        "enforcing its rules with `require` steps whose error messages tell the agent what is wrong.\n"
        f"Tools are data in this format (JSON Schema):\n{json.dumps(tool_schema, separators=(',', ':'))}\n\n"
        f"SQL rules: {helpers}\n\n"
        "For each tool add `probes`: `succeeds`, a list of 1 to 3 argument objects (using ids from the sample rows) "
        'on which the tool must succeed, and `fails`, a list of 1 to 3 {"arguments": {...}, "because": "..."} '
        "on which a business rule must refuse it.\n"
        'Answer {"tools": [{...tool..., "probes": {"succeeds": [...], "fails": [...]}}, ...]}.'
    )


def seed_values(attributes: list[dict[str, Any]], business: str) -> list[dict[str, str]]:
    return _messages(
        f"Seed data for a fictional {business}. For each attribute below give realistic, varied values a real such "
        "business would store (names of things, descriptions, notes), no placeholders, never real people's data.\n"
        f"{json.dumps(attributes, separators=(',', ':'))}\n\n"
        'Answer {"values": {"<entity>.<attribute>": ["value", ...], ...}} with at least `count` distinct values each.'
    )


def paraphrase(tasks: list[dict[str, Any]], business: str) -> list[dict[str, str]]:
    return _messages(
        f"Customers of a fictional {business} write to its assistant. Rewrite each request below so it reads like a "
        "real person wrote it (varied tone and order, natural phrasing), and write a one-sentence persona for the "
        "customer. Keep every string in `must_keep` exactly as written (names, emails, dates, times, codes, amounts); "
        "add no new facts, ids, numbers or requests, and drop nothing that was asked.\n"
        f"{json.dumps(tasks, ensure_ascii=False, separators=(',', ':'))}\n\n"
        'Answer {"tasks": [{"id": "...", "instruction": "...", "persona": "..."}, ...]} with one item per request.'
    )


def review(calls: list[dict[str, Any]], policy: str) -> list[dict[str, str]]:
    return _messages(
        "You review the tools of a simulated business system. Below are the policy and recorded calls: each tool's "
        "description, the arguments, and what it answered. For each tool, judge whether its behaviour matches its "
        "description and the policy (right records, sensible results, rules enforced with clear messages).\n\n"
        f"Policy:\n{policy}\n\nCalls:\n{json.dumps(calls, ensure_ascii=False, separators=(',', ':'))}\n\n"
        'Answer {"verdicts": [{"tool": "...", "ok": true or false, "reason": "..."}, ...]} with one verdict per tool.'
    )


def environment(
    topic: str,
    schema: dict[str, Any],
    helpers: str,
    example: dict[str, Any],
    requests: list[str] | None,
    min_tools: int,
) -> list[dict[str, str]]:
    seen = "".join(f"\n- {r}" for r in (requests or [])[:8])
    return _messages(
        "Write a complete simulated business system for: "
        f"{topic!r}.{' Users of it asked, for example:' + seen if seen else ''}\n\n"
        f"It is data in the environment format below: tables with typed columns and keys, a policy (markdown rules the "
        f"agent must follow), a fixed clock, id sequences, and at least {min_tools} tools — look-ups and searches, and "
        "state changes whose business rules are `require` steps with error messages that tell the agent what is wrong. "
        "Add seed rows for every table (consistent keys and references, realistic values, some records in every "
        "state), and for every tool `probes`: `succeeds` (1 to 3 argument objects it succeeds on, with ids from the "
        'seed) and, for write tools, `fails` (1 to 3 {"arguments": {...}, "because": "..."} a rule refuses).\n'
        f"SQL rules: {helpers}\n\n"
        f"The environment format (JSON Schema):\n{json.dumps(schema, separators=(',', ':'))}\n\n"
        f"A small example of the format:\n{json.dumps(example, separators=(',', ':'))}\n\n"
        'Answer {"spec": {...}, "seed": {"<table>": [rows]}, "probes": {"<tool>": {"succeeds": [...], "fails": '
        "[...]}}}."
    )


def environment_tasks(summary: str, count: int) -> list[dict[str, str]]:
    return _messages(
        f"Below is a simulated business system: its tables with sample rows, its tools and its policy.\n\n{summary}\n\n"
        f"Write {count} tasks a customer could bring to its agent. Each changes something (and may also ask a "
        "question). "
        "`instruction`: the customer's request in their own words, with what they would know (their name, a date, a "
        'title) but no internal ids; `user`: {"persona", "known": {fact: value}, "unknown": [...]} for a simulated '
        "customer; `gold`: the tool calls, in order, that an agent following the policy makes (look-ups first, with "
        "ids "
        'from the rows); `answer` (optional): {"facts": [...]} the agent\'s reply must state. Include tasks where the '
        "obvious action breaks a rule and the right one is another path.\n"
        'Answer {"tasks": [{"instruction": "...", "user": {...}, "gold": [{"tool": "...", "arguments": {...}}], '
        '"answer": {"facts": ["..."]}}, ...]}.'
    )
