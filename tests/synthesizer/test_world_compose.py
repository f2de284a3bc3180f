"""Composing two world domains into one business (docs/design/worlds.md §11.1): the first domain's people,
name and agent; the second's principal merged into the first's through ``shared`` (keeping what the
second knows of them); one ledger taking every method; both domains' pricing, operations and policy
rules with entity names mapped throughout. The domains are the fixture ferry line and a shuttle service
made from it by renaming."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from servers import Environment
from synthesizer.catalog import Catalog, CatalogError, Composite, Domain, Sector, compose, load_catalog
from synthesizer.modeling import build_spec, design_domain
from synthesizer.procedural_tests import run_procedural_tests
from synthesizer.seeding import seed_rows
from tests.synthesizer.test_worlds import FERRY

RENAMES = [("passenger", "traveller"), ("sailing", "shuttle"), ("booking", "ride"), ("crossing", "ride_fare")]


def _shuttle() -> dict[str, Any]:
    text = json.dumps(FERRY)
    for old, new in RENAMES:
        text = text.replace(old, new)
    data = json.loads(text)
    data.update(id="airport_shuttle", name="Airport shuttle")
    data["ledger"] = {**data["ledger"], "methods": ["card", "voucher"], "stored_value": ["voucher"]}
    traveller = next(e for e in data["entities"] if e["name"] == "traveller")
    traveller["attributes"].append(
        {
            "name": "home_airport",
            "type": "text",
            "description": "Nearest airport.",
            "generator": "choice",
            "enum": ["BOS", "JFK"],
        }
    )
    data["policy_rules"] = [
        {"kind": "reason_allowed", "id": "ride_reasons", "op": "cancel_ride", "allowed": ["illness"]}
    ]
    return data


def _composite() -> Composite:
    return Composite(
        id="ferry_and_shuttle",
        name="Ferry and shuttle",
        domains=[FERRY["id"], "airport_shuttle"],
        shared={"traveller": "passenger"},
        description="A ferry line that also runs the airport shuttle.",
    )


@pytest.fixture(scope="module")
def merged() -> Domain:
    return compose(_composite(), [Domain.model_validate(copy.deepcopy(FERRY)), Domain.model_validate(_shuttle())])


def test_the_second_principal_becomes_the_first_and_keeps_what_it_knew(merged: Domain) -> None:
    assert [p.entity for p in merged.principals] == ["passenger"]
    names = [e.name for e in merged.entities]
    assert "traveller" not in names and {"shuttle", "ride"} <= set(names)
    ride = merged.entity("ride")
    assert {r.to for r in ride.relations} == {"passenger", "shuttle"}
    assert "home_airport" in {a.name for a in merged.entity("passenger").attributes}
    assert merged.org == Domain.model_validate(FERRY).org and merged.agent == Domain.model_validate(FERRY).agent


def test_one_ledger_and_both_domains_operations_pricing_and_policy(merged: Domain) -> None:
    assert merged.ledger is not None
    assert merged.ledger.methods == ["card", "gift_card", "voucher"]
    assert {"crossing", "ride_fare"} <= set(merged.pricing)
    ops = {op.name: op for op in merged.operations}
    assert {"reserve_crossing", "reserve_ride_fare", "cancel_booking", "cancel_ride"} <= set(ops)
    assert ops["reserve_ride_fare"].entity == "ride" and ops["reserve_ride_fare"].resource == "shuttle"
    assert [r.id for r in merged.policy_rules] == ["ride_reasons"]
    assert merged.pricing["ride_fare"].discount.by == "passenger.loyalty_tier"


def test_the_composite_synthesizes_with_every_tool_probed(merged: Domain) -> None:
    design = design_domain(merged, seed=1)
    env = Environment.from_spec(build_spec(design), seed_rows(design))
    report = run_procedural_tests(env, design)
    assert report.passed, report.why()
    assert {"reserve_crossing", "reserve_ride_fare", "cancel_ride"} <= set(env.tool_names)
    assert "policy.ride_reasons" in report.probed


def test_a_composite_of_a_world_and_a_legacy_domain_waits_and_clashes_are_refused() -> None:
    shuttle = Domain.model_validate(_shuttle())
    ferry = Domain.model_validate(copy.deepcopy(FERRY))
    legacy = next(d for d in load_catalog().domains.values() if d.legacy)
    mixed = Composite(id="mixed", name="Mixed", domains=[FERRY["id"], legacy.id], description="Not yet.")
    sector = Sector(sector="travel", name="Travel", domains=[ferry, shuttle, legacy], composites=[_composite(), mixed])
    catalog = Catalog([sector])
    assert catalog.domain("ferry_and_shuttle").world
    with pytest.raises(CatalogError, match="not offered until its members share one vocabulary"):
        catalog.domain("mixed")
    with pytest.raises(CatalogError, match="clash"):
        compose(_composite(), [ferry, ferry.model_copy(update={"id": "again"})])


def test_a_clashing_formula_gets_its_own_id_and_a_clashing_tool_name_keeps_the_first_domains() -> None:
    shuttle = _shuttle()
    shuttle["pricing"]["crossing"] = shuttle["pricing"].pop("ride_fare")  # the same pricing id as the ferry's
    for op in shuttle["operations"]:
        if op.get("price") == "ride_fare":
            op["price"] = "crossing"
    ride = next(e for e in shuttle["entities"] if e["name"] == "ride")
    next(a for a in ride["attributes"] if (a.get("derive") or {}).get("price"))["derive"]["price"] = "crossing"
    next(op for op in shuttle["operations"] if op["kind"] == "pay")["name"] = "pay_booking"  # the ferry's tool name
    merged = compose(_composite(), [Domain.model_validate(copy.deepcopy(FERRY)), Domain.model_validate(shuttle)])
    assert set(merged.pricing) == {"crossing", "crossing_airport_shuttle"}
    ops = {op.name: op for op in merged.operations}
    assert ops["reserve_ride_fare"].price == "crossing_airport_shuttle" and ops["reserve_crossing"].price == "crossing"
    assert ops["pay_booking"].entity == "booking"  # one tool per name: the first domain's
    total = next(a for a in merged.entity("ride").attributes if a.derive and a.derive.price)
    assert total.derive.price == "crossing_airport_shuttle"


def test_what_the_second_domains_agent_did_the_merged_agent_does() -> None:
    shuttle = _shuttle()
    shuttle["agent"] = {"title": "dispatcher", "role": "dispatcher"}
    shuttle["staff_roles"] = {**shuttle["staff_roles"], "dispatcher": "runs the shuttle desk"}
    next(op for op in shuttle["operations"] if op["name"] == "cancel_ride")["by"] = "staff:dispatcher"
    merged = compose(_composite(), [Domain.model_validate(copy.deepcopy(FERRY)), Domain.model_validate(shuttle)])
    assert next(op for op in merged.operations if op.name == "cancel_ride").by == "staff:reservations_agent"
    assert merged.agent is not None and merged.agent.role == "reservations_agent"
