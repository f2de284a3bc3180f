"""How a user says things: greetings, introductions, requests, questions and conditions, dates and money
in the forms people use. Every family draws its sentences from here, with the rng of the draft, so many
phrasings share no fixed skeleton and the same seed gives the same words.

Nothing here names a tool, a column or an id: callers pass what the user knows (a name, a date, a
description of a record) and get prose back.
"""

from __future__ import annotations

import random
from datetime import date, datetime
from typing import Any

from ..naming import past, words

__all__ = [
    "human_date",
    "human_datetime",
    "answer_date",
    "money",
    "state_words",
    "verb_phrase",
    "verb_it",
    "a",
    "introduce",
    "persona",
    "ask",
    "question",
    "join_requests",
    "conditional",
    "refusal_request",
    "place",
    "count",
    "method",
    "cents",
]

_GREETINGS = ["Hi,", "Hello,", "Good morning,", "Hey there,", "Hi there,", "Morning!", "Hello there,", ""]
_INTRODUCTIONS = ["I'm {name}", "this is {name}", "my name is {name}", "{name} here", "it's {name}"]
_MOODS = [
    "polite and brief",
    "in a hurry between two meetings",
    "chatty and tells small stories",
    "a little anxious about getting it right",
    "precise about details",
    "friendly but impatient with repeated questions",
    "a first-time customer who asks what things mean",
    "a long-time customer who expects to be recognised",
    "calm, answers exactly what is asked",
    "writing from a phone, short sentences",
]
_WHY = [
    "",
    "",
    " I'm trying to sort everything out this week.",
    " My sister reminded me about it.",
    " I'd rather deal with it now than forget.",
    " Thanks!",
    " Thanks in advance.",
]
_WHY_UNDO = [" My plans changed.", " Something came up at work.", " I can't make it any more."]
_UNDO = ("cancel", "withdraw", "void", "decline", "stop", "close")


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    text = str(value)
    try:
        return datetime.fromisoformat(text if len(text) > 10 else text[:10] + " 00:00:00")
    except ValueError:
        return None


def human_date(value: Any) -> str:
    """'Friday 12 June': how a person names a day close to now (no year)."""
    moment = _parse(value)
    return f"{moment:%A} {moment.day} {moment:%B}" if moment else str(value)


def human_datetime(value: Any) -> str:
    """'Friday 12 June at 5:45 pm'."""
    moment = _parse(value)
    if moment is None:
        return str(value)
    if len(str(value)) <= 10:
        return human_date(value)
    hour = moment.hour % 12 or 12
    minute = f":{moment.minute:02d}" if moment.minute else ""
    return f"{human_date(value)} at {hour}{minute} {'am' if moment.hour < 12 else 'pm'}"


def answer_date(value: Any) -> str:
    """'12 June 2026': the form an answer fact takes (the scorer reads English dates with a year)."""
    moment = _parse(value)
    if moment is None:
        return str(value)
    return f"{moment.day} {moment:%B %Y}"


def birth_date(value: Any) -> str:
    moment = _parse(value)
    return f"{moment.day} {moment:%B %Y}" if moment else str(value)


def money(value: Any) -> str:
    """'$1,029.50'."""
    return f"${float(value):,.2f}"


def state_words(state: str) -> str:
    return words(state)


_PARTICLES = ("in", "out", "up", "off", "back", "over", "down")


def verb_phrase(transition: str, what: str) -> str:
    """The transition done to ``what``: 'cancel my booking', 'check in my booking', 'report my bag as
    mishandled', 'start translation for my request'."""
    head, *rest = transition.split("_")
    if not rest:
        return f"{head} {what}"
    if head in ("report", "mark"):
        return f"{head} {what} as {' '.join(rest)}"
    if len(rest) == 1 and rest[0] in _PARTICLES:
        return f"{words(transition)} {what}"
    return f"{words(transition)} for {what}"


def verb_it(transition: str) -> str:
    """'cancel' -> 'cancel it'; 'check_in' -> 'check it in'; 'report_mishandled' -> 'report it as mishandled'."""
    head, *rest = transition.split("_")
    if not rest:
        return f"{head} it"
    if head in ("report", "mark"):
        return f"{head} it as {' '.join(rest)}"
    if len(rest) == 1 and rest[0] in _PARTICLES:
        return f"{head} it {rest[0]}"
    return f"{words(transition)} for it"


def a(noun: str) -> str:
    """'a booking', 'an orientation booking'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def introduce(rng: random.Random, name: str, fact: str | None, value: Any) -> str:
    """The opening of a message: a greeting, who is speaking and one more fact (birth date, email, phone)."""
    if any(ch.isdigit() for ch in name):  # an account number, not a name
        text = rng.choice(["my account is {name}", "my account number is {name}", "I'm account {name}"]).format(
            name=name
        )
    else:
        text = rng.choice(_INTRODUCTIONS).format(name=name)
    if fact and value:
        iso = isinstance(value, str) and len(value) >= 10 and value[4:5] == "-" and value[7:8] == "-"
        shown = birth_date(value) if iso or isinstance(value, date) else value
        text += rng.choice(
            [
                f" ({words(fact)} {shown})",
                f", {words(fact)} {shown}",
                f" — my {words(fact)} is {shown}",
                f", {'born' if fact.endswith('birth') else words(fact)} {shown}",
            ]
        )
    greeting = rng.choice(_GREETINGS)
    if not greeting or greeting.endswith("!"):
        text = f"{text[0].upper()}{text[1:]}"
    return f"{greeting} {text}." if greeting else f"{text}."


def persona(rng: random.Random, name: str, role: str, business: str) -> str:
    return f"{name}, a {role} of {business}; {rng.choice(_MOODS)}."


def ask(rng: random.Random, doing: str, *, reason: bool = True) -> str:
    """One request for an action (``doing``: 'cancel my booking on Friday 12 June')."""
    return rng.choice(
        [
            f"Please {doing}.",
            f"Could you {doing} for me?",
            f"I need to {doing}.",
            f"I'd like to {doing}, please.",
            f"Can you {doing}?",
            f"Would you {doing}?",
            f"I want to {doing}.",
        ]
    ) + (rng.choice(_WHY + (_WHY_UNDO if doing.startswith(_UNDO) else [])) if reason else "")


def question(rng: random.Random, body: str) -> str:
    """A question: ``body`` is its core ("how many of my bookings are still open")."""
    text = rng.choice(
        [
            f"Can you tell me {body}?",
            f"Quick question — could you find out {body}?",
            f"I'd like to know {body}.",
            f"Could you check {body}?",
            f"I've lost track of {body}. Can you look?",
            f"Would you look up {body} for me?",
            f"Please let me know {body}.",
        ]
    )
    return text


def join_requests(rng: random.Random, parts: list[str]) -> str:
    """Several requests in one message, in the order given (the order they must be done in)."""
    links = [" Then ", " After that, ", " Also, ", " And once that's done, ", " While you're at it, "]
    text = parts[0]
    for part in parts[1:]:
        link = rng.choice(links)
        text += link + (part if part.startswith(("I ", "I'")) else part[0].lower() + part[1:])
    return text


def conditional(rng: random.Random, what: str, state: str, then: str, otherwise: str) -> str:
    """'If <what> is still <state>, <then>; otherwise <otherwise>.' in one of several forms."""
    return rng.choice(
        [
            f"If {what} is still {state}, please {then}; otherwise {otherwise}.",
            f"I'm not sure where things stand with {what}. If it's {state}, {then}. If not, {otherwise}.",
            f"Could you check {what}? If it's {state}, {then} — otherwise {otherwise}.",
            f"Depending on {what}: if it is {state}, {then}; if it isn't, {otherwise}.",
        ]
    )


def refusal_request(rng: random.Random, want: str) -> str:
    """A plain request that the policy will turn down (nothing hints that it might be)."""
    return rng.choice(
        [
            f"I'd like to {want}.",
            f"Please {want}.",
            f"Can you {want}?",
            f"I need you to {want}.",
            f"Could you {want} for me?",
        ]
    ) + rng.choice(_WHY + (_WHY_UNDO if want.startswith(_UNDO) else []))


def done_word(transition: str) -> str:
    return past(transition)


_PLACES = {
    "ATL": "Atlanta",
    "BOS": "Boston",
    "DEN": "Denver",
    "JFK": "New York",
    "LAX": "Los Angeles",
    "MIA": "Miami",
    "ORD": "Chicago",
    "SEA": "Seattle",
    "SFO": "San Francisco",
}
"""Airport codes as travellers say them (a user names the city, not the code)."""

_NUMBERS = ["no", "one", "two", "three", "four", "five", "six"]


def place(value: Any) -> str:
    """'DEN' -> 'Denver'; any other value as it is."""
    return _PLACES.get(str(value), str(value))


def count(n: int, noun: str) -> str:
    """'two seats', 'one seat'."""
    head = _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)
    return f"{head} {noun if n != 1 else noun.removesuffix('s')}"


def method(label: str) -> str:
    """How a person names one of their payment methods: 'my Visa ending 4417', 'my gift card 8821'."""
    text = str(label)
    return "my " + (text[0].lower() + text[1:] if text.lower().startswith(("gift", "voucher", "balance")) else text)


def cents(amount: int) -> str:
    """Integer cents as an answer states them: 18286 -> '$182.86'."""
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount) // 100:,}.{abs(amount) % 100:02d}"
