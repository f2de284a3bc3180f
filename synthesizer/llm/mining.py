"""Stage 1 with a model: a judge reads a corpus of user requests — which need state someone keeps
and changes, and what kind of system would serve them — and the topics it names are grouped by
similarity into the environments worth making.

Near-duplicate requests are dropped before they are sent (as on the procedural path), requests
go in batches, and a topic the judge maps to a catalog domain is made from the catalog; the
others become new topics for the model to model, each with example requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import Catalog
from ..topics import MiningReport, NearDuplicates, read_corpus, stem, tokens
from . import prompts
from .client import ChatClient
from .repair import Problems, propose

__all__ = ["LLMMiningReport", "mine_corpus_with_llm", "mine_requests_with_llm"]

BATCH = 20
TOPIC_SIMILARITY = 0.5


@dataclass
class LLMMiningReport(MiningReport):
    new_topics: dict[str, list[str]] = field(default_factory=dict)  # topic -> example requests
    unjudged: int = 0  # requests in batches the judge never answered usably
    batches: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "new_topics": self.new_topics, "unjudged": self.unjudged}


def _topic_key(topic: str) -> set[str]:
    return {stem(w) for w in tokens(topic) if len(w) > 2}


def mine_corpus_with_llm(client: ChatClient, catalog: Catalog, path: Path) -> LLMMiningReport:
    return mine_requests_with_llm(client, catalog, read_corpus(path))


def mine_requests_with_llm(client: ChatClient, catalog: Catalog, texts: list[str]) -> LLMMiningReport:
    report = LLMMiningReport()
    seen = NearDuplicates()
    requests: list[str] = []
    for text in texts:
        report.total += 1
        if seen.repeats(text):
            report.duplicates += 1
            continue
        requests.append(text)
    names = {domain_id: domain.name for domain_id, domain in catalog.domains.items()}
    groups: list[tuple[set[str], str, list[str]]] = []  # (topic words, topic, requests)
    for start in range(0, len(requests), BATCH):
        batch = requests[start : start + BATCH]

        def check(data: dict[str, Any], batch: list[str] = batch) -> list[dict[str, Any]]:
            items = data.get("items")
            if not isinstance(items, list):
                raise Problems(['items: missing; answer {"items": [...]}'])
            by_index: dict[int, dict[str, Any]] = {}
            problems = []
            for position, item in enumerate(items):
                index = item.get("index") if isinstance(item, dict) else None
                if type(index) is not int:
                    problems.append(f"items[{position}].index: a whole number is needed, not {index!r}")
                elif index in by_index:
                    problems.append(f"items[{position}].index: request {index} is labelled twice")
                else:
                    by_index[index] = item
            for index in range(len(batch)):
                item = by_index.get(index)
                if item is None or not isinstance(item.get("stateful"), bool):
                    problems.append(f"items[{index}]: missing, or `stateful` is not true/false")
                elif item["stateful"] and not (isinstance(item.get("topic"), str) and _topic_key(item["topic"])):
                    problems.append(f"items[{index}]: a stateful request needs a `topic` of a few words")
                elif not isinstance(item.get("domain"), str | None) or item.get("domain") not in (None, *names):
                    problems.append(f"items[{index}].domain: {item['domain']!r} is not a catalog domain id (or null)")
            if problems:
                raise Problems(problems)
            return [by_index[i] for i in range(len(batch))]

        proposal = propose(client, "judge", prompts.judge(batch, names), check)
        report.batches.append(proposal.report())
        if proposal.value is None:
            report.unjudged += len(batch)
            continue
        for text, item in zip(batch, proposal.value, strict=True):
            if not item["stateful"]:
                continue
            report.stateful += 1
            if item.get("domain"):
                domain_id = item["domain"]
                report.by_domain[domain_id] += 1
                report.by_sector[catalog.sector_of[domain_id]] += 1
                examples = report.examples.setdefault(domain_id, [])
                if len(examples) < 3:
                    examples.append(text)
                continue
            key = _topic_key(item["topic"])
            group = next((g for g in groups if len(key & g[0]) / max(1, len(key | g[0])) >= TOPIC_SIMILARITY), None)
            if group is None:
                groups.append((key, " ".join(item["topic"].split()), [text]))
            else:
                group[2].append(text)
    for _, topic, examples in sorted(groups, key=lambda g: (-len(g[2]), g[1])):
        report.new_topics[topic] = examples
    report.unmatched = [text for _, _, examples in groups for text in examples]
    return report
