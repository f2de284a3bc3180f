"""Stage 3 with a model: realistic values for the free-text attributes Faker can only fill with
lorem ipsum (service names, item descriptions, notes).

Keys, lifecycles, dates, amounts and every rule-bearing value stay procedural: the model only
names things. Its lists become ``Design.vocabulary``, which the seeder draws from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..modeling import Design
from . import prompts
from .client import ChatClient
from .repair import Problems, Proposal, propose

__all__ = ["SeedValuesOutcome", "propose_seed_values", "GENERIC"]

GENERIC = {"sentence", "sentences", "paragraph", "text", "words", "word", "catch_phrase", "bs", "job", "color_name"}
"""Generators whose values read as placeholders; the model replaces them with real-sounding ones."""

MAX_LENGTH = 200


@dataclass
class SeedValuesOutcome:
    vocabulary: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    proposal: Proposal[dict[tuple[str, str], list[str]]] | None = None

    def report(self) -> dict[str, Any]:
        return {
            "attributes": sorted(f"{e}.{a}" for e, a in self.vocabulary),
            **(self.proposal.report() if self.proposal else {}),
        }


def wanted(design: Design) -> dict[str, dict[str, Any]]:
    """``entity.attribute`` -> what the model is told about it, for every placeholder-valued text attribute."""
    asks = {}
    for entity in design.entities:
        for attr in entity.attributes:
            if attr.type == "text" and not attr.enum and attr.generator.split(":")[0] in GENERIC:
                needed = entity.seed_count if attr.unique else min(12, entity.seed_count)
                asks[f"{entity.name}.{attr.name}"] = {
                    "attribute": f"{entity.name}.{attr.name}",
                    "entity": entity.description,
                    "meaning": attr.description,
                    "count": needed,
                    "unique": attr.unique,
                }
    return asks


def propose_seed_values(client: ChatClient, design: Design) -> SeedValuesOutcome:
    asks = wanted(design)
    outcome = SeedValuesOutcome()
    if not asks:
        return outcome

    def check(data: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
        values = data.get("values")
        if not isinstance(values, dict):
            raise Problems(['values: missing; answer {"values": {"<entity>.<attribute>": [...]}}'])
        problems, vocabulary = [], {}
        for key, ask in asks.items():
            items = values.get(key)
            if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
                problems.append(f"values.{key}: a list of non-empty strings is needed")
                continue
            distinct = list(dict.fromkeys(v.strip() for v in items if len(v.strip()) <= MAX_LENGTH))
            if len(distinct) < ask["count"]:
                problems.append(
                    f"values.{key}: {ask['count']} distinct values of at most {MAX_LENGTH} characters are "
                    f"needed, {len(distinct)} given"
                )
                continue
            entity, attribute = key.split(".", 1)
            vocabulary[(entity, attribute)] = distinct
        if problems:  # values nobody asked for are ignored
            raise Problems(problems)
        return vocabulary

    outcome.proposal = propose(client, "seed", prompts.seed_values(list(asks.values()), design.name), check)
    outcome.vocabulary = outcome.proposal.value or {}
    return outcome
