"""The heuristic baseline: what a short script with no model and no domain knowledge solves.

It reads the instruction as a template (who is speaking, names, emails, phones, dates, codes, quoted strings,
amounts, ``label: value`` pairs), looks the person up and keeps the first hit, looks codes and named things up
through the search tools, follows ids into the read tools that take them, picks the one write tool whose verb
and nouns best match the instruction, fills it from what it parsed and saw, and makes that one write. A task it
solves is too shallow to tell agents apart: namesakes, several writes, refusals, conditions and computed
answers are what defeat it. Deterministic: the same tools and results give the same calls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from ..episodes.evaluation import MONTHS
from .agents import AgentSession, CallOutcome, ToolSpec, schema_value

__all__ = ["HeuristicAgent", "Parsed", "parse_instruction", "stem"]

_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_STOP = set(
    "a an and the of to in on at for by with from my me i i'm i'd i've it's is are was be this that there here "
    "hi hello hey good morning afternoon evening please could can would will you your we our dr mr mrs ms "
    "thanks thank yes no also and or but if so just now today tomorrow yesterday".split()
)
_DAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}
_READ_PREFIXES = ("find_", "search_", "list_", "get_", "count_", "summarize_", "lookup_")
_LOOKUP_PREFIXES = ("find_", "search_", "list_", "lookup_")
_NAME_PARAMS = {"name", "full_name", "customer_name", "patient_name", "member_name", "passenger_name", "person_name"}
_QUERY_PARAMS = {"query", "q", "search", "term", "keyword", "keywords", "text"}
_MAX_READS = 12

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(r"(?<![\w-])\+?(?:(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}|\d{10})(?![\w-])")
FIELD = re.compile(r"\b([a-z][a-z ]{0,28}[a-z]):\s+", re.I)
CODE = re.compile(r"\b[A-Z][A-Z0-9]{0,7}-(?=[A-Z0-9]*\d)[A-Z0-9]{2,}\b")
ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
DAY_MONTH = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH})\.?,?\s+(\d{{4}})\b", re.I)
MONTH_DAY = re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
INTRODUCED = re.compile(
    r"(?:\bmy name is|\bthis is|\bit's|\bI'm|\bI am)\s+(?P<a>(?-i:[A-Z]).+?)"
    r"(?=\s+[—(-]|,\s+(?:my|email|work|phone|born|date|dob|the)\b|[.;!?]|\s+here\b|$)"
    r"|^(?:(?:hi|hello|hey|good \w+)(?:\s+there)?[,!]?\s+)?(?P<b>(?-i:[A-Z])[^.;!?]*?)\s+here\b",
    re.I,
)
TITLE = re.compile(r"\b(Dr|Mr|Mrs|Ms|Mx|Prof)\.(?=\s)")
QUOTED = re.compile(r"[\"“]([^\"”]{2,80})[\"”]")
MONEY = re.compile(r"\$\s?(\d[\d,]*(?:\.\d+)?)|\b(\d[\d,]*(?:\.\d+)?)\s?(?:dollars|usd|eur|euros?)\b", re.I)
NUMBER = re.compile(r"(?<![\w.-])\d+(?:\.\d+)?(?![\w-])")
CAPITALISED = re.compile(r"\b[A-Z][\w'’.]*(?:\s+(?:(?:of|and|the|in|de|du|van|von|a)\s+)*[A-Z][\w'’]*)*")
WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


_SYNONYMS = [
    {"change", "update", "edit", "modify", "correct"},
    {"add", "create", "new"},
    {"cancel", "delete", "remove", "drop", "withdraw"},
    {"pay", "settle"},
]
"""Plain English verbs that name the same act (no environment's vocabulary): the script's one thesaurus."""


def stem(word: str) -> str:
    """A crude stem: lower case, no plural or -ing/-ed ending, at most five letters (holds/hold, renewal/renewing,
    cancelled/cancel); a token with a digit (a code, a date) stays whole."""
    word = word.lower()
    if any(c.isdigit() for c in word):
        return word
    for suffix in ("ies", "s"):
        if word.endswith(suffix) and len(word) > len(suffix) + 3 and not word.endswith("ss"):
            word = word[: -len(suffix)] + ("y" if suffix == "ies" else "")
            break
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 3:
            word = word[: -len(suffix)]
            break
    return word[:5]


_SYNONYM_STEMS = [{stem(w) for w in group} for group in _SYNONYMS]


def _stems(text: str) -> set[str]:
    return {stem(w) for w in WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def _with_synonyms(stems: set[str]) -> set[str]:
    return stems.union(*(group for group in _SYNONYM_STEMS if group & stems))


@dataclass
class Parsed:
    """What the instruction says, as a template parser sees it."""

    names: list[str] = field(default_factory=list)  # capitalised word runs, person first
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)  # ISO
    codes: list[str] = field(default_factory=list)
    quoted: list[str] = field(default_factory=list)
    amounts: list[float] = field(default_factory=list)  # money first, then other numbers
    fields: dict[str, str] = field(default_factory=dict)  # "ticket name: Lisa Stokes" -> {"ticket_name": ...}
    words: set[str] = field(default_factory=set)  # stems of the content words, and the ISO dates

    introduced: str | None = None  # "my name is ...", "this is ...", "... here"

    @property
    def person(self) -> str | None:
        if self.introduced:
            return self.introduced
        several = [n for n in self.names if len(n.split()) >= 2]
        return several[0] if several else (self.names[0] if self.names else None)


def _fields(text: str) -> dict[str, str]:
    """``label: value`` pairs, each value running to the next label or the end of its sentence."""
    found = list(FIELD.finditer(text))
    pairs = {}
    for here, after in zip(found, [*found[1:], None], strict=False):
        value = text[here.end() : after.start() if after else len(text)]
        value = re.split(r"[.!?](?:\s+[A-Z]|\s*$)|\)", value)[0].strip(" ,;.(") if after is None else value
        label = "_".join(here.group(1).lower().split()[-3:])
        pairs[label] = value.strip(" ,;(")
    return pairs


def parse_instruction(text: str) -> Parsed:
    p = Parsed(fields=_fields(text))
    rest = text
    for pattern, target in ((EMAIL, p.emails), (PHONE, p.phones), (CODE, p.codes)):
        target.extend(dict.fromkeys(pattern.findall(rest)))
        rest = pattern.sub(" ", rest)
    for m in ISO_DATE.finditer(rest):
        p.dates.append(m.group(0))
    for m in DAY_MONTH.finditer(rest):
        p.dates.append(f"{m.group(3)}-{MONTHS[m.group(2).lower()]:02d}-{int(m.group(1)):02d}")
    for m in MONTH_DAY.finditer(rest):
        p.dates.append(f"{m.group(3)}-{MONTHS[m.group(1).lower()]:02d}-{int(m.group(2)):02d}")
    p.dates = list(dict.fromkeys(p.dates))
    rest = MONTH_DAY.sub(" ", DAY_MONTH.sub(" ", ISO_DATE.sub(" ", rest)))
    p.quoted = QUOTED.findall(rest)
    for m in MONEY.finditer(rest):
        p.amounts.append(float((m.group(1) or m.group(2)).replace(",", "")))
    p.amounts += [float(n) for n in NUMBER.findall(MONEY.sub(" ", rest)) if float(n) not in p.amounts]
    for match in CAPITALISED.finditer(rest):
        words = match.group(0).replace("’", "'").split()
        opens = not rest[: match.start()].strip() or rest[: match.start()].rstrip()[-1] in ".?!:;—-"
        if len(words) == 1 and (opens or words[0].isupper()):  # "When ...", "DOB": a sentence's first word
            continue
        while words and (words[0].lower().strip(".,") in _STOP or "'" in words[0]):
            words = words[1:]
        while words and (words[-1].lower() in _STOP or words[-1].lower() in {*MONTHS, *_DAYS}):
            words = words[:-1]
        if words and not (len(words) == 1 and words[0].lower() in {*_DAYS, *MONTHS}):
            p.names.append(" ".join(w.strip(".,") for w in words))
    p.names = list(dict.fromkeys(p.names))
    said = INTRODUCED.search(TITLE.sub(r"\1", text))  # "Dr. Lewis": not the end of a sentence
    if said is not None:
        name = (said.group("a") or said.group("b") or "").strip(" ,")
        name = re.sub(
            r"\b(Dr|Mr|Mrs|Ms|Mx|Prof) ", lambda m: m.group(0) if m.group(1) + " " in text else m.group(1) + ". ", name
        )
        if name and not any(c.isdigit() for c in name) and len(name.split()) <= 6:
            p.introduced = name
    person = p.person
    if person:  # the person first: the rest are things (titles, places, providers)
        p.names = [person] + [n for n in p.names if n not in person and person not in n]
    p.words = _stems(text) | set(p.dates) | {c.lower() for c in p.codes}
    return p


def _is_read(tool: ToolSpec) -> bool:
    return tool.read_only or tool.name.startswith(_READ_PREFIXES)


def _rows(value: Any) -> Iterator[dict[str, Any]]:
    """Every record in a result, outermost first."""
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _rows(item)
    elif isinstance(value, list):
        for item in value:
            yield from _rows(item)


def _first_hit(value: Any) -> dict[str, Any] | None:
    """The first record of the first list in a result (or the result itself when it is one record)."""
    if isinstance(value, dict):
        for item in value.values():
            if isinstance(item, list):
                return next((r for r in item if isinstance(r, dict)), None)
        return value if any(k.endswith("id") for k in value) else None
    if isinstance(value, list):
        return next((r for r in value if isinstance(r, dict)), None)
    return None


def _typed(text: str, prop: dict[str, Any]) -> Any:
    """A stated value as the parameter's type ("yes" for a boolean, "$1,000" for a number), or None if it is not."""
    kind = prop.get("type")
    if kind == "boolean":
        return {"yes": True, "true": True, "no": False, "false": False}.get(text.lower().strip(" ."))
    if kind in ("number", "integer"):
        number = NUMBER.search(text.replace(",", "").replace("$", " "))
        if number is None:
            return None
        value = float(number.group(0))
        return int(value) if kind == "integer" and value.is_integer() else value if kind == "number" else None
    if "enum" in prop:
        return text if text in prop["enum"] else None
    return text


def _entity(param: str) -> str:
    """``new_slot_id`` -> ``slot``: the thing an id parameter names."""
    return param.removesuffix("_id").split("_")[-1]


class HeuristicAgent:
    """No model: one name lookup (first hit), id-following reads, the best verb-matching write, one retry."""

    name = "heuristic"

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    async def run(self, session: AgentSession) -> str | None:
        parsed = parse_instruction(session.instruction or "")
        self.session, self.parsed = session, parsed
        self.values: list[tuple[str, Any, int]] = []  # (key, value, how well its record matches the instruction)
        self.pinned: dict[str, Any] = {}  # ids of the looked-up person's first hit, then of each thing's
        self.person_ids: set[str] = set()
        self.called: set[str] = set()
        self.texts: list[str] = []
        self.reads = 0
        await self._look_up_person()
        await self._look_up_things()
        writes = self._rank_writes()
        for tool in writes[:2]:  # the best match, and one other if it is refused
            await self._follow_ids(tool)
            arguments = self._arguments(tool)
            if arguments is None:
                continue
            outcome = await self._call(tool.name, arguments)
            if not outcome.is_error:
                if "?" in (session.instruction or ""):
                    await self._recount(tool)
                break
        return self._final_message()

    async def _recount(self, write: ToolSpec) -> None:
        """After the write, list what it touched again — the person's own, if a list takes the person's id —
        filtered by any value the instruction names ("how many of my bookings are cancelled?"), so the final
        message carries the fresh figures."""
        entity = stem(write.name.split("_")[-1])
        ranked = []
        for index, tool in enumerate(self.session.tools):
            words = [stem(w) for w in tool.name.split("_")]
            needs = tool.input_schema.get("required", [])
            if words[0] != "list" or entity not in words or not needs:
                continue
            if all(k.endswith("_id") and k in self.pinned for k in needs):
                ranked.append((words[1] != entity, not set(needs) <= self.person_ids, index, tool))
        if not ranked:
            return
        tool = min(ranked)[-1]
        arguments = {k: self.pinned[k] for k in tool.input_schema["required"]}
        for name, prop in tool.input_schema.get("properties", {}).items():
            named = [v for v in prop.get("enum", []) if isinstance(v, str) and _stems(v) <= self.parsed.words]
            if named and name not in arguments:
                arguments[name] = named[0]
        await self._read(tool.name, arguments, spare=True)

    async def _call(self, tool: str, arguments: dict[str, Any]) -> CallOutcome:
        self.called.add(tool + repr(sorted(arguments.items())))
        outcome = await self.session.call(tool, arguments)
        self.texts.append(outcome.text)
        return outcome

    def _collect(self, result: Any) -> None:
        for row in _rows(result):
            score = len(_stems(" ".join(str(v) for v in row.values() if isinstance(v, str))) & self.parsed.words)
            for key, value in row.items():
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    self.values.append((key, value, score))

    async def _look_up_person(self) -> None:
        p = self.parsed
        if not (p.person or p.emails or p.phones):
            return
        for tool in self._lookups(self._person_value)[:2]:
            arguments = {k: v for k in tool.input_schema.get("properties", {}) if (v := self._person_value(k))}
            outcome = await self._read(tool.name, arguments)
            hit = None if outcome is None or outcome.is_error else _first_hit(outcome.structured)
            if hit is not None:
                self.pinned.update({k: v for k, v in hit.items() if k.endswith("id") and isinstance(v, str | int)})
                self.person_ids = set(self.pinned)
                self._collect(hit)
                return

    def _person_value(self, param: str) -> Any:
        p, person = self.parsed, self.parsed.person
        if "email" in param:  # by email or phone only when no name is given: those may be new ones
            return p.emails[0] if p.emails and not person else None
        if "phone" in param:
            return p.phones[0] if p.phones and not person else None
        if "birth" in param or param == "dob":
            return p.dates[0] if p.dates and person else None
        if person is None:
            return (p.emails or p.phones or [None])[0] if param in _QUERY_PARAMS else None
        if param in ("first_name", "given_name"):
            return person.split()[0]
        if param in ("last_name", "surname", "family_name"):
            return person.split()[-1]
        if param in _NAME_PARAMS or param in _QUERY_PARAMS or param.endswith("_name"):  # company_name too
            return person
        return None

    def _lookups(self, value_of: Any) -> list[ToolSpec]:
        """Lookup tools whose required parameters the values fill, most parameters filled first."""
        ranked = []
        for index, tool in enumerate(self.session.tools):
            if not (_is_read(tool) and tool.name.startswith(_LOOKUP_PREFIXES)):
                continue
            props = tool.input_schema.get("properties", {})
            filled = [k for k in props if value_of(k) is not None]
            if filled and all(value_of(k) is not None for k in tool.input_schema.get("required", [])):
                named = sum(1 for k in filled if k not in _QUERY_PARAMS)
                ranked.append((-named, -len(filled), -self._overlap(tool.name), index, tool))
        return [r[-1] for r in sorted(ranked, key=lambda r: r[:4])]

    async def _look_up_things(self) -> None:
        """Codes, labelled values, quoted strings and other capitalised phrases, each through the search tools
        that take a query (the one whose name the label or the instruction names first), until one answers with
        a hit that holds it; that first hit's own id is kept."""
        p = self.parsed
        person = {w for w in (p.person or "").split()}
        parameters = {k for t in self.session.tools if not _is_read(t) for k in t.input_schema.get("properties", {})}
        references = {k: v for k, v in p.fields.items() if v and k not in parameters}
        subjects = [(c, "") for c in p.codes] + [(v, k) for k, v in references.items() if v not in p.codes]
        subjects += [(q, "") for q in p.quoted] + [(n, "") for n in p.names[1:] if not set(n.split()) <= person]
        for subject, label in list(dict.fromkeys(subjects))[:4]:
            phrase = re.sub(r"^(?:The|A|An)\s+", "", subject)
            before = re.search(rf"([A-Za-z]+)\s+{re.escape(subject)}", self.session.instruction or "")
            label = label or (before.group(1) if before and before.group(1).lower() not in _STOP else "")
            if self._known(phrase):
                continue
            tools = [t for t in self._lookups(lambda k, s=phrase: s if k in _QUERY_PARAMS else None)]
            tools.sort(key=lambda t: -len(_stems(label.replace("_", " ")) & _stems(t.name.replace("_", " "))))
            for tool in tools[:3]:
                query = next(k for k in tool.input_schema["properties"] if k in _QUERY_PARAMS)
                outcome = await self._read(tool.name, {query: phrase})
                hit = None if outcome is None or outcome.is_error else _first_hit(outcome.structured)
                if hit is not None and phrase.lower() in " ".join(str(v) for v in hit.values()).lower():
                    own = next((k for k in hit if k.endswith("_id")), None)
                    if own is not None:
                        self.pinned.setdefault(own, hit[own])
                    break

    def _known(self, phrase: str) -> bool:
        """A value already seen in a result (a code the person's record holds)."""
        return any(isinstance(v, str) and v.lower() == phrase.lower() for _, v, _ in self.values)

    async def _read(self, tool: str, arguments: dict[str, Any], spare: bool = False) -> CallOutcome | None:
        """A read within the budget (``spare``: the one read kept for after the write), never the same twice."""
        if (self.reads >= _MAX_READS and not spare) or tool + repr(sorted(arguments.items())) in self.called:
            return None
        self.reads += 1
        outcome = await self._call(tool, arguments)
        if not outcome.is_error:
            self._collect(outcome.structured)
        return outcome

    def _overlap(self, text: str) -> int:
        return len(_stems(text.replace("_", " ")) & self.parsed.words)

    def _rank_writes(self) -> list[ToolSpec]:
        """Write tools by their best verb match: the tool's verb (its name's first word) said in the instruction
        (2), or a plain synonym of it (1), plus its other words among the next three the instruction says; then
        by all the word stems the name shares with the instruction, then its description's, then the order
        offered. A tool sharing no word at all is no candidate."""
        tokens = [stem(w) for w in WORD.findall((self.session.instruction or "").lower()) if w not in _STOP]
        words = _with_synonyms(self.parsed.words)
        ranked = []
        for index, tool in enumerate(self.session.tools):
            verb, *nouns = [stem(w) for w in tool.name.split("_") if w]
            shared = len(_stems(tool.name.replace("_", " ")) & words)
            if _is_read(tool) or not shared:
                continue
            synonyms = _with_synonyms({verb}) - {verb}
            local = 0
            for at, token in enumerate(tokens):
                if token == verb or token in synonyms:
                    local = max(local, (2 if token == verb else 1) + len(set(nouns) & set(tokens[at + 1 : at + 4])))
            ranked.append((-local, -shared, -self._overlap(tool.description), index, tool))
        return [r[-1] for r in sorted(ranked, key=lambda r: r[:4])]

    def _id_for(self, param: str) -> Any:
        keys = (param, _entity(param) + "_id")
        for key in keys:
            if key in self.pinned:
                return self.pinned[key]
        found = [(score, -n, value) for n, (key, value, score) in enumerate(self.values) if key in keys]
        return max(found)[2] if found else None

    async def _follow_ids(self, write: ToolSpec) -> None:
        """Read tools that take the ids in hand, until every id the write needs is known."""
        required = write.input_schema.get("required", [])
        for _ in range(4):
            missing = [k for k in required if k.endswith("_id") and self._id_for(k) is None]
            if not missing:
                return
            entities = {_entity(k) for k in missing}
            ranked = []
            for index, tool in enumerate(self.session.tools):
                needs = tool.input_schema.get("required", [])
                if not _is_read(tool) or not needs or not all(k.endswith("_id") and self._id_for(k) for k in needs):
                    continue
                arguments = {k: self._id_for(k) for k in needs}
                if tool.name + repr(sorted(arguments.items())) in self.called:
                    continue
                named = sum(1 for e in entities if stem(e) in _stems(tool.name.replace("_", " ")))
                ranked.append((-named, -self._overlap(tool.name), index, tool.name, arguments))
            if not ranked:
                return
            _, _, _, name, arguments = min(ranked)
            if await self._read(name, arguments) is None:
                return

    def _arguments(self, tool: ToolSpec) -> dict[str, Any] | None:
        schema = tool.input_schema
        required = set(schema.get("required", []))
        arguments: dict[str, Any] = {}
        for name, prop in schema.get("properties", {}).items():
            value = self._value(name, prop, name in required)
            if value is not None:
                arguments[name] = value
        validator = jsonschema_rs.validator_for(schema, validate_formats=True)
        if validator.is_valid(arguments):
            return arguments
        props = schema.get("properties", {})
        seen = [value for _, value, _ in self.values]
        for name in [n for n in props if n in required or n in arguments]:  # keep what validates; draw the rest
            if not (name in arguments and jsonschema_rs.validator_for(props[name]).is_valid(arguments[name])):
                arguments.pop(name, None)
                if name in required:
                    arguments[name] = schema_value(props[name], self.rng, name=name, pool=seen, text=self._text)
        return arguments if validator.is_valid(arguments) else None

    def _value(self, name: str, prop: dict[str, Any], required: bool) -> Any:
        """A parameter's value: what the instruction states for it by name (``label: value``, "my X is now Y"),
        else — for a required one — what its name or format suggests among the parsed values and the results."""
        p, kind = self.parsed, prop.get("type")
        stated = self._field(name) or self._said(name)
        if stated is not None:
            typed = _typed(stated, prop)
            if typed is not None:
                return typed
        if name.endswith("_id"):
            return self._id_for(name) if required or name in self.pinned else None
        if not required:
            return None
        if "enum" in prop:
            named = [v for v in prop["enum"] if isinstance(v, str) and _stems(v) and _stems(v) <= p.words]
            return named[0] if named else schema_value(prop, self.rng, name=name)
        if "email" in name or prop.get("format") == "email":
            return p.emails[-1] if p.emails else self._seen(name)
        if "phone" in name:
            return p.phones[-1] if p.phones else self._seen(name)
        if prop.get("format") == "date" or "date" in name or name.endswith(("_on", "_at")):
            later = [d for d in p.dates if "birth" in name or d != p.dates[0]] if p.person else p.dates
            return later[0] if later else self._seen(name)
        if kind in ("number", "integer"):
            if p.amounts:
                return int(p.amounts[0]) if kind == "integer" and p.amounts[0].is_integer() else p.amounts[0]
            return self._seen(name)
        if kind == "boolean":
            return self._seen(name)
        if kind == "string" or kind is None:
            return (p.quoted[0] if p.quoted else None) or self._seen(name) or self._text(prop, name, self.rng)
        return schema_value(prop, self.rng, name=name)

    def _said(self, name: str) -> str | None:
        """ "my mailing address is now 165 Joseph Path", "change my company to Snyder, White and Reed": the words
        after the parameter's name (a few words may come between)."""
        words = r"[\s_-]+".join(re.escape(w) for w in name.split("_"))
        found = re.search(
            rf"\b{words}\b(?:[\s,]+[\w']+){{0,3}}?[\s,]+(?:is now|it's now|to|should be|:)\s+"
            r"(.+?)(?:,\s*please|[;!?]|\.(?:\s|$)|$)",
            self.session.instruction or "",
            re.I,
        )
        return found.group(1).strip() if found else None

    def _field(self, name: str) -> str | None:
        """The instruction's ``label: value`` whose label is this parameter's name, word for word."""
        if name in self.parsed.fields:
            return self.parsed.fields[name]
        wanted = _stems(name.replace("_", " "))
        return next((v for k, v in self.parsed.fields.items() if _stems(k.replace("_", " ")) == wanted), None)

    def _seen(self, key: str) -> Any:
        found = [(score, -n, value) for n, (k, value, score) in enumerate(self.values) if k == key]
        return max(found)[2] if found else None

    def _text(self, prop: Any, name: str, rng: random.Random) -> str:
        """Free text (a reason, a note): the instruction itself, cut to fit."""
        text = (self.session.instruction or "x").strip()
        return text[: int(prop.get("maxLength", 200))]

    def _final_message(self) -> str:
        last = self.texts[-1] if self.texts else "I could not find anything to do."
        seen = [str(v) for _, v, _ in self.values if isinstance(v, int | float)]
        seen += [v for _, v, _ in self.values if isinstance(v, str) and ISO_DATE.search(v)]
        extra = list(dict.fromkeys(seen))
        return last + (("\nFigures I saw: " + ", ".join(extra) + ".") if extra else "")
