"""Stage 2 with a model: a topic → a new domain in the catalog's format (data, never code).

The model gets the domain format's JSON Schema, the vocabularies of operation kinds, rules and
policy-only rules, the seed generators and a complete world domain of the catalog as an example, and
answers ``{"sector", "domain"}`` in the world vocabulary (principals, ledger, intent operations). The proposal is
checked like a catalog entry (schema, consistency of relations, lifecycles and rules, generators,
an id no catalog domain has) and then, through ``check_env``, by the rest of the procedural path
— the spec the modeler writes from it, the runtime's validation and the procedural tests — so a
rule the seed cannot satisfy comes back to the model as a located problem too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .. import policies, rules
from ..catalog import Attribute, Catalog, Domain
from ..operations import OPERATIONS
from ..seeding import generator_problem
from ..topics import rank
from . import prompts
from .client import ChatClient
from .repair import Problems, Proposal, propose

__all__ = ["DomainProposal", "propose_domain", "pydantic_problems", "operations_vocabulary"]


@dataclass(frozen=True)
class DomainProposal:
    domain: Domain
    sector: str


def pydantic_problems(error: ValidationError, prefix: str) -> list[str]:
    """One located message per validation error: ``domain.entities[2].lifecycle.initial: ...``."""
    problems = []
    for item in error.errors():
        where = prefix
        for part in item["loc"]:
            where += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = item["msg"].removeprefix("Value error, ")
        problems += (
            [f"{where}: {m.strip()}" for m in message.split("; ")]
            if item["type"] == "value_error"
            else [f"{where}: {message}"]
        )
    return problems


def _example(catalog: Catalog, topic: str) -> dict[str, Any]:
    """The closest world domain of the catalog (the airline when none is close)."""
    worlds = {d: domain for d, domain in catalog.domains.items() if domain.world}
    ranked = [m for m in rank(catalog, topic) if m.domain_id in worlds]
    domain = worlds[ranked[0].domain_id] if ranked else worlds.get("airline_booking") or next(iter(worlds.values()))
    return domain.model_dump(mode="json", by_alias=True, exclude_defaults=True)


def operations_vocabulary() -> str:
    """Each declared operation kind with its fields, from its catalog model (so a new kind is taught as soon as
    it is registered)."""
    lines = []
    for name, kind in OPERATIONS.items():
        if kind.model is None:
            continue
        fields = [
            f"{field.alias or key}" + (f" ({field.description})" if field.description else "")
            for key, field in kind.model.model_fields.items()
            if key not in ("kind", "name", "entity", "by", "expose")
        ]
        lines.append(f'* {name} {{"name", "entity", "by"?, "expose"?{", " if fields else ""}{", ".join(fields)}}}')
    return "\n".join(lines)


def propose_domain(
    client: ChatClient,
    catalog: Catalog,
    topic: str,
    *,
    requests: list[str] | None = None,
    check_env: Callable[[Domain, str], list[str]] | None = None,
    claim: Callable[[str], bool] | None = None,
) -> Proposal[DomainProposal]:
    """Ask for a domain for ``topic``; every problem found goes back to the model, located.
    ``claim`` reserves the domain's id for this environment (False: another one has it)."""
    sectors = sorted({s.sector for s in catalog.sectors})
    schema = Domain.model_json_schema(by_alias=True)
    generators = Attribute.model_fields["generator"].description or ""
    messages = prompts.domain(
        topic,
        schema,
        _example(catalog, topic),
        sectors,
        rules.vocabulary(),
        generators,
        requests,
        operations_help=operations_vocabulary(),
        policies_help=policies.vocabulary(),
    )

    def check(data: dict[str, Any]) -> DomainProposal:
        problems = []
        sector = data.get("sector")
        if sector not in sectors:
            problems.append(f"sector: must be one of {', '.join(sectors)}, not {sector!r}")
        if not isinstance(data.get("domain"), dict):
            raise Problems([*problems, 'domain: missing; answer {"sector": ..., "domain": {...}}'])
        try:
            domain = Domain.model_validate(data["domain"])
        except ValidationError as e:
            raise Problems(problems + pydantic_problems(e, "domain")) from None
        if not domain.world:
            problems.append('domain.legacy: propose a world domain ("legacy": false, with org, agent, principals ...)')
        if domain.id in catalog.domains or domain.id in catalog.composites:
            problems.append(f"domain.id: {domain.id!r} is already a catalog domain; choose an id of its own")
        for i, entity in enumerate(domain.entities):
            for j, attr in enumerate(entity.attributes):
                problem = generator_problem(attr.generator)
                if problem:
                    problems.append(
                        f"domain.entities[{i}].attributes[{j}].generator ({entity.name}.{attr.name}): {problem}"
                    )
        if problems:
            raise Problems(problems)
        if check_env is not None:
            downstream = check_env(domain, str(sector))
            if downstream:
                raise Problems(downstream)
        if claim is not None and not claim(domain.id):
            raise Problems(
                [
                    f"domain.id: an environment named {domain.id!r} exists already (published, or made earlier "
                    "in this run); choose an id of its own"
                ]
            )
        return DomainProposal(domain, str(sector))

    return propose(client, "domain", messages, check)
