"""Stage 1, topics: match a topic to the catalog, and mine topics from a corpus of user requests.

Matching scores each domain by how many of its keywords (and name words) the topic contains.
Mining keeps the requests that need persistent state someone reads *and* writes (booking,
cancelling, paying, registering — the EnvScaler stateful filter) rather than pure look-ups or
advice, maps each to a domain, drops near-duplicates, and reports what matched and what did not.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .errors import SynthesisError

__all__ = [
    "TopicMatch",
    "match_topic",
    "MiningReport",
    "read_corpus",
    "read_corpus_text",
    "mine_corpus",
    "mine_requests",
    "is_stateful",
    "NoMatchingDomain",
    "CorpusError",
]

_WORD = re.compile(r"[a-z][a-z\-']+")
# Verbs of requests that change something a system keeps (and will be read back later).
_WRITE_VERBS = {
    "book",
    "schedule",
    "reschedule",
    "cancel",
    "reserve",
    "order",
    "buy",
    "purchase",
    "pay",
    "transfer",
    "deposit",
    "withdraw",
    "register",
    "enroll",
    "enrol",
    "sign",
    "apply",
    "submit",
    "file",
    "renew",
    "return",
    "refund",
    "update",
    "change",
    "modify",
    "add",
    "remove",
    "delete",
    "set",
    "create",
    "open",
    "close",
    "activate",
    "deactivate",
    "join",
    "subscribe",
    "unsubscribe",
    "upgrade",
    "downgrade",
    "rent",
    "hire",
    "request",
    "claim",
    "report",
    "track",
    "check-in",
    "checkin",
    "confirm",
    "redeem",
    "top",
    "send",
    "ship",
    "deliver",
    "list",
    "record",
    "log",
    "save",
    "store",
    "manage",
    "assign",
    "lease",
    "adopt",
}
_READ_ONLY_OPENERS = (
    "what",
    "how",
    "why",
    "explain",
    "tell me about",
    "describe",
    "calculate",
    "estimate",
    "give me",
    "provide",
    "recommend",
    "suggest",
    "translate",
    "summarize",
    "define",
    "compare",
    "show me",
)


class NoMatchingDomain(SynthesisError, ValueError):
    """No catalog domain fits the topic; the message lists the closest ones."""


class CorpusError(SynthesisError, ValueError):
    """A corpus of user requests cannot be read, or a line of it is not ``{"text": ...}``; the message says where."""


@dataclass(frozen=True)
class TopicMatch:
    domain_id: str
    sector: str
    score: float
    keywords: tuple[str, ...]


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def stem(word: str) -> str:
    for suffix in ("ing", "ies", "es", "s", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _score(text: str, keywords: list[str], name: str) -> tuple[float, list[str]]:
    words = {stem(w) for w in tokens(text)}
    lowered = " " + " ".join(tokens(text)) + " "
    hits = []
    for keyword in keywords:
        parts = [stem(w) for w in tokens(keyword)]
        if len(parts) > 1 and f" {' '.join(tokens(keyword))} " in lowered:
            hits.append(keyword)
        elif len(parts) == 1 and parts[0] in words:
            hits.append(keyword)
    name_hits = [w for w in (stem(w) for w in tokens(name)) if w in words and len(w) > 3]
    return len(hits) * 2 + sum(len(h.split()) - 1 for h in hits) + len(name_hits), hits + name_hits


def rank(catalog: Catalog, text: str) -> list[TopicMatch]:
    matches = []
    for domain_id, domain in catalog.domains.items():
        score, hits = _score(text, domain.keywords, domain.name)
        if score > 0:
            matches.append(TopicMatch(domain_id, catalog.sector_of[domain_id], score, tuple(hits)))
    return sorted(matches, key=lambda m: (-m.score, m.domain_id))


def match_topic(catalog: Catalog, topic: str) -> TopicMatch:
    """The best domain for a topic; raises :class:`NoMatchingDomain` when nothing fits."""
    if topic in catalog.domains or topic in catalog.composites:
        return TopicMatch(topic, catalog.sector_of[topic], 100.0, ())
    ranked = rank(catalog, topic)
    if not ranked or ranked[0].score < 2:
        sample = ", ".join(sorted(catalog.domains)[:12])
        near = ", ".join(m.domain_id for m in ranked[:3]) or "none"
        raise NoMatchingDomain(
            f"no catalog domain fits {topic!r} (closest: {near}). Known domains include: {sample}, "
            f"... ({len(catalog.domains)} in all; `envfleet synth topics` lists them). The llm backend "
            "(--backend llm) models a new domain for a topic the catalog lacks."
        )
    return ranked[0]


def is_stateful(text: str) -> bool:
    """Does the request need state that is written and later read (not just information)?"""
    lowered = text.lower().strip()
    words = set(tokens(lowered))
    writes = words & _WRITE_VERBS
    if not writes:
        return False
    if lowered.startswith(_READ_ONLY_OPENERS) and not writes - {"set", "list", "track", "manage"}:
        return False
    return True


@dataclass
class MiningReport:
    total: int = 0
    stateful: int = 0
    duplicates: int = 0
    by_domain: Counter[str] = field(default_factory=Counter)
    by_sector: Counter[str] = field(default_factory=Counter)
    unmatched: list[str] = field(default_factory=list)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "stateful": self.stateful,
            "duplicates": self.duplicates,
            "matched": sum(self.by_domain.values()),
            "by_sector": dict(self.by_sector.most_common()),
            "by_domain": dict(self.by_domain.most_common()),
            "unmatched": self.unmatched,
            "examples": self.examples,
        }

    def domains(self, minimum: int = 1) -> list[str]:
        return [d for d, n in self.by_domain.most_common() if n >= minimum]


def similar(a: set[str], b: set[str]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= 0.8


class NearDuplicates:
    """Requests seen so far, by their word stems: one sharing 80% of them with an earlier one repeats it."""

    def __init__(self) -> None:
        self._seen: list[set[str]] = []

    def repeats(self, text: str) -> bool:
        signature = {stem(w) for w in tokens(text)}
        if any(similar(signature, other) for other in self._seen):
            return True
        self._seen.append(signature)
        return False


def read_corpus(path: Path) -> list[str]:
    """The ``text`` of each line of a JSONL corpus file. Raises :class:`CorpusError`."""
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(str(e)) from None
    return read_corpus_text(content, str(path))


def read_corpus_text(content: str, source: str = "corpus") -> list[str]:
    """The ``text`` of each line of JSONL; a line that is not JSON, or has no text, says where."""
    texts = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{source}:{number}: not JSON ({e.msg})") from None
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise CorpusError(f'{source}:{number}: each line needs a "text" string')
        texts.append(text.strip())
    return texts


def mine_corpus(catalog: Catalog, path: Path) -> MiningReport:
    """Read a JSONL corpus (one ``{"text": ...}`` a line) and map its stateful requests to domains."""
    return mine_requests(catalog, read_corpus(path))


def mine_requests(catalog: Catalog, texts: list[str]) -> MiningReport:
    """Map the stateful requests among ``texts`` to domains (near-duplicates dropped)."""
    report = MiningReport()
    seen = NearDuplicates()
    for text in texts:
        report.total += 1
        if not is_stateful(text):
            continue
        report.stateful += 1
        if seen.repeats(text):
            report.duplicates += 1
            continue
        ranked = rank(catalog, text)
        if not ranked or ranked[0].score < 2:
            report.unmatched.append(text)
            continue
        best = ranked[0]
        report.by_domain[best.domain_id] += 1
        report.by_sector[best.sector] += 1
        report.examples.setdefault(best.domain_id, [])
        if len(report.examples[best.domain_id]) < 3:
            report.examples[best.domain_id].append(text)
    return report
