"""``find_<principal>``: who the agent is talking to, by one full set of identifying facts (world designs).

A name alone identifies nobody (namesakes exist); the tool takes the union of the principal's
``identify_by`` key sets and requires one set given in full, matched exactly and case-insensitively.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import OperationKind, Tool, ToolRole, register
from .parts import param, params, words

if TYPE_CHECKING:
    from ..catalog import Entity
    from ..modeling import Design
    from ..procedural_tests import Tester

__all__ = ["Identify"]


@register
class Identify(OperationKind):
    name = "identify"
    phase = "read"
    styles = frozenset({"world"})

    def tools(self, design: Design, entity: Entity) -> list[Tool]:
        principal = next((p for p in design.domain.principals if p.entity == entity.name), None)
        if principal is None:
            return []
        attrs = {a.name: a for a in entity.attributes}
        names = list(dict.fromkeys(n for key_set in principal.identify_by for n in key_set))
        properties: dict[str, Any] = {n: param(attrs[n], f"The {words(n)}, exactly as on file.") for n in names}
        one_set = " OR ".join(
            "(" + " AND ".join(f":{n} IS NOT NULL" for n in key_set) + ")" for key_set in principal.identify_by
        )
        sets = " or ".join(" and ".join(words(n) for n in key_set) for key_set in principal.identify_by)
        matches = " OR ".join(
            "(" + " AND ".join(f"lower(t.{n}) = lower(:{n})" for n in key_set) + ")"
            for key_set in principal.identify_by
        )
        tool = {
            "name": f"find_{entity.name}",
            "kind": "read",
            "description": f"Find the {words(entity.name)} you are talking to by {sets}. A name alone is not enough: "
            "several people may share it. Returns every match.",
            "parameters": params(properties, []),
            "steps": [
                {
                    "kind": "require",
                    "sql": f"SELECT 1 WHERE {one_set}",
                    "error": f"Give {sets} to identify the {words(entity.name)}.",
                    "rule": "args.identify",
                },
                {
                    "kind": "return",
                    "shape": "rows",
                    "sql": f"SELECT t.* FROM {entity.plural} t WHERE {matches} ORDER BY t.{entity.name}_id",
                },
            ],
        }
        return [(ToolRole("identify", entity.name), tool)]

    def writes(self, design: Design, role: ToolRole) -> set[str]:
        return set()

    def probe(self, tester: Tester, tool: str, role: ToolRole) -> None:
        principal = next(p for p in tester.design.domain.principals if p.entity == role.entity)
        key = f"{role.entity}_id"
        rows = tester.pick(role.entity, count=6)
        for row in rows:
            key_set = principal.identify_by[len(tester.report.probes) % len(principal.identify_by)]
            arguments = {n: row[n] for n in key_set}
            tester.oracle(tool, arguments, lambda state, result, row=row: _found(result, row[key], key))
        if rows and len(principal.identify_by[0]) > 1:
            first = principal.identify_by[0][0]
            tester.negative(tool, "rule", {first: rows[0][first]}, "args.identify", rule="args.identify")


def _found(result: Any, wanted: str, key: str) -> list[str]:
    ids = [r[key] for r in result.structured.get("rows", [])]
    return [] if wanted in ids else [f"{wanted} not among the matches {ids}"]
