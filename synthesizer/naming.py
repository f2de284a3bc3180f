"""How catalog names become words and parameter names: shared by the modeler, the rule and operation
kinds, the procedural tests and task synthesis, so every stage spells a name the same way."""

from __future__ import annotations

from sqlglot.dialects.sqlite import SQLite

__all__ = ["words", "p_", "past", "a"]

_KEYWORDS = frozenset(k.lower() for k in SQLite.Tokenizer.KEYWORDS if k.isalpha())


def p_(name: str) -> str:
    """The parameter name for an attribute: the attribute's own name, unless SQL reserves it."""
    return f"{name}_value" if name in _KEYWORDS else name


def words(name: str) -> str:
    return name.replace("_", " ")


_IRREGULAR = {
    "pay": "paid",
    "hold": "held",
    "set": "set",
    "sell": "sold",
    "withdraw": "withdrawn",
    "send": "sent",
    "buy": "bought",
    "lend": "lent",
    "put": "put",
    "take": "taken",
    "give": "given",
    "write": "written",
    "begin": "begun",
    "run": "run",
    "pick": "picked",
    "shut": "shut",
    "cut": "cut",
    "rebook": "rebooked",
    "submit": "submitted",
    "admit": "admitted",
    "permit": "permitted",
    "refer": "referred",
    "transfer": "transferred",
    "cancel": "cancelled",
    "commit": "committed",
    "omit": "omitted",
    "prefer": "preferred",
}


def past(verb: str) -> str:
    """The past participle of a transition's name: 'check_in' -> 'checked in'."""
    parts = verb.split("_")
    head = parts[0]
    if head in _IRREGULAR:
        head = _IRREGULAR[head]
    elif head.endswith("e"):
        head += "d"
    elif head.endswith("y") and head[-2:-1] not in "aeiou":
        head = head[:-1] + "ied"
    elif len(head) <= 4 and head[-1] in "pt" and head[-2] in "aeiou" and head[-3:-2] not in "aeiou":
        head += head[-1] + "ed"
    else:
        head += "ed"
    return " ".join([head, *parts[1:]])


def a(noun: str) -> str:
    """The noun with its indefinite article: 'a booking', 'an appointment'."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
