"""Tasks drawn from a world's intent operations (issue 15 on world designs): quotes, refunds, bookings and the
branches and mixes built on them, with every amount the independent oracle's — recomputed here from the task's
own initial rows, never read from the tool's answer."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import pytest

from servers import Environment, Task
from servers.clients import check_task_in_process, make_agent, rollout_in_process
from servers.episodes.evaluation import score_state
from servers.spec import GoldCall
from servers.spec.tasks import TaskPack
from synthesizer.catalog import load_catalog
from synthesizer.dependency_graph import build_graph
from synthesizer.modeling import build_spec, design_domain
from synthesizer.money import money_text
from synthesizer.operations.cancel import tier_hours
from synthesizer.oracle import net_by_method, price_of, refund_of, repriced
from synthesizer.seeding import seed_rows
from synthesizer.task_synthesis import synthesize_tasks
from synthesizer.tasks import SynthesisStats
from synthesizer.tasks.world import World

_ID = re.compile(r"\b[A-Z]{2,6}-\d{3,}\b")
_CODE = re.compile(r"\b(BOS|JFK|ORD|ATL|DEN|SEA|SFO|MIA)\b")


@pytest.fixture(scope="module")
def airline() -> tuple[Any, Environment, list[Task], SynthesisStats]:
    design = design_domain(load_catalog().domain("airline_booking"), seed=1)
    env = Environment.from_spec(build_spec(design), seed_rows(design))
    tasks, stats = synthesize_tasks(env, design, build_graph(env), count=30, seed=3)
    env.add_task_pack(TaskPack("synthesized", None, tasks))
    return design, env, tasks, stats


def _tools(task: Task) -> list[str]:
    return [c.tool for c in task.gold]


def _score(env: Environment, task: Task, calls: list[GoldCall], message: str) -> bool:
    replay = env.replay_gold(env.task_template(task.id), calls)
    try:
        result = score_state(
            task, env.task_initial_dump(task.id), replay.state, env.gold_diff(task.id), env.primary_keys, message
        )
    finally:
        replay.close()
    return result.success


def _said(task: Task) -> str:
    return "Here is what you asked for: " + "; ".join(task.answer.facts if task.answer else []) + "."


def _initial(env: Environment, task: Task) -> Any:
    return env.task_template(task.id).copy()


def test_the_families_draw_on_every_intent_operation_not_only_cancellations(airline: Any) -> None:
    _, env, tasks, _ = airline
    used = {tool for t in tasks for tool in _tools(t)}
    assert {"quote_fare", "book_flight", "cancel_booking", "change_flight"} <= used
    writes = {name for name in env.tool_names if env.tools[name].tool.kind == "write"}
    kinds = [{c.tool for c in t.gold if c.tool in writes} for t in tasks if t.family == "multi_goal"]
    mixed = [k for k in kinds if len(k) >= 2]  # a cancellation and a booking, a move and a booking
    assert mixed and len(mixed) > len(kinds) - len(mixed), kinds
    assert {t.family for t in tasks} == {"action", "refusal", "information", "conditional", "multi_goal"}
    for task in tasks:  # the user names cities and days, never a code or an id
        assert not _ID.search(task.instruction) and not _CODE.search(task.instruction), task.instruction


def test_every_intent_task_passes_the_gates(airline: Any) -> None:
    _, env, tasks, _ = airline
    for task in tasks:
        if {"computed"} & set(task.tags):
            verdict = asyncio.run(check_task_in_process(env, task))
            assert verdict.passed, (task.id, verdict.problems)
            if any(env.tools[c.tool].tool.kind == "write" for c in task.gold):
                assert len(task.checks) >= 2, task.id


def test_a_quote_answer_is_the_oracles_total_for_this_passenger(airline: Any) -> None:
    design, env, tasks, _ = airline
    quotes = [t for t in tasks if t.family == "information" and "quote" in t.tags]
    assert quotes
    booking = design.entity("booking")
    for task in quotes:
        call = next(c for c in task.gold if c.tool == "quote_fare")
        state = _initial(env, task)
        try:
            with state.mode("internal"):
                expected = price_of(design, state.conn, "fare", booking, call.arguments)
        finally:
            state.close()
        assert task.answer is not None and task.answer.facts == [money_text(expected.total_cents)]
        assert _score(env, task, list(task.gold), _said(task))
        assert task.answer.wrong  # the price before tax at least
        for wrong in task.answer.wrong:
            assert not _score(env, task, list(task.gold), f"It would be {wrong}.")


def test_a_refund_answer_is_the_oracles_tier_of_what_was_paid_and_nothing_is_cancelled(airline: Any) -> None:
    design, env, tasks, _ = airline
    asked = [t for t in tasks if "refund" in t.tags and t.answer is not None]
    assert asked
    op = next(o for o in design.domain.operations if o.kind == "cancel")
    booking = design.entity("booking")
    now = design.clock.strftime("%Y-%m-%d %H:%M:%S")
    for task in asked:
        assert not any(env.tools[c.tool].tool.kind == "write" for c in task.gold)
        pinned = next(c for c in task.checks if "asked about" in c.description)
        key = re.search(r"booking_id = '([^']+)'", pinned.sql).group(1)  # type: ignore[union-attr]
        state = _initial(env, task)
        try:
            with state.mode("internal"):
                at = state.conn.execute("SELECT departs_at FROM bookings WHERE booking_id = ?", (key,)).fetchone()[0]
                net = net_by_method(state.conn, booking, key, now)
        finally:
            state.close()
        _, split = refund_of(op.refund, tier_hours(design, op), at, now, net)
        assert task.answer is not None and task.answer.facts == [money_text(sum(split.values()))]
        assert _score(env, task, list(task.gold), _said(task))
        for wrong in task.answer.wrong:  # what was paid (or the next tier's share)
            assert not _score(env, task, list(task.gold), f"You would get {wrong} back.")
        passenger = task.gold[1].arguments["passenger_id"]
        cancel = GoldCall(
            tool="cancel_booking", arguments={"passenger_id": passenger, "booking_id": key, "reason": op.reasons[0]}
        )
        assert not _score(env, task, [*task.gold, cancel], _said(task))  # asking is not cancelling


def test_a_booking_replays_to_the_oracles_total_charge_and_seat_count(airline: Any) -> None:
    design, env, tasks, _ = airline
    booked = [t for t in tasks if "book_flight" in _tools(t)]
    assert booked
    booking = design.entity("booking")
    for task in booked:
        call = next(c for c in task.gold if c.tool == "book_flight")
        args = call.arguments
        before = _initial(env, task)
        try:
            with before.mode("internal"):
                expected = price_of(design, before.conn, "fare", booking, args).total_cents
                seats = before.conn.execute(
                    "SELECT seats_left FROM flights WHERE flight_id = ?", (args["flight_id"],)
                ).fetchone()[0]
        finally:
            before.close()
        replay = env.replay_gold(env.task_template(task.id), list(task.gold))
        try:
            conn = replay.state.conn
            with replay.state.mode("internal"):
                made = conn.execute(
                    "SELECT booking_id, total_cents FROM bookings WHERE passenger_id = ? AND flight_id = ? AND "
                    "status = 'booked' AND created_at >= ?",
                    (args["passenger_id"], args["flight_id"], design.clock.strftime("%Y-%m-%d %H:%M:%S")),
                ).fetchall()
                assert len(made) == 1 and made[0][1] == expected, (task.id, made, expected)
                charged = conn.execute(
                    "SELECT method_id, amount_cents FROM payments WHERE booking_id = ? AND kind = 'charge'",
                    (made[0][0],),
                ).fetchall()
                assert charged == [(args["payment_method_id"], expected)]
                left = conn.execute("SELECT seats_left FROM flights WHERE flight_id = ?", (args["flight_id"],))
                assert left.fetchone()[0] == seats - args["seats"]
        finally:
            replay.close()
        # the checks are the oracle's: booking another flight, or nothing, fails
        assert not _score(env, task, [c for c in task.gold if c.tool != "book_flight"], "All done.")


def test_a_move_replays_to_the_oracles_new_price_and_settles_the_difference_on_the_chosen_method(
    airline: Any,
) -> None:
    design, env, tasks, _ = airline
    moved = [t for t in tasks if "change_flight" in _tools(t)]
    assert moved
    booking = design.entity("booking")
    for task in moved:
        args = next(c for c in task.gold if c.tool == "change_flight").arguments
        before = _initial(env, task)
        try:
            with before.mode("internal"):
                record = dict(
                    zip(
                        [d[0] for d in before.conn.execute("SELECT * FROM bookings LIMIT 0").description],
                        before.conn.execute(
                            "SELECT * FROM bookings WHERE booking_id = ?", (args["booking_id"],)
                        ).fetchone(),
                        strict=True,
                    )
                )
                price, diff = repriced(design, before.conn, "fare", booking, record, "flight_id", args["new_flight_id"])
        finally:
            before.close()
        replay = env.replay_gold(env.task_template(task.id), list(task.gold))
        try:
            with replay.state.mode("internal"):
                conn = replay.state.conn
                after = conn.execute(
                    "SELECT flight_id, total_cents FROM bookings WHERE booking_id = ?", (args["booking_id"],)
                ).fetchone()
                assert after == (args["new_flight_id"], price.total_cents)
                settled = conn.execute(
                    "SELECT method_id, kind, amount_cents FROM payments WHERE booking_id = ? AND created_at >= ?",
                    (args["booking_id"], design.clock.strftime("%Y-%m-%d %H:%M:%S")),
                ).fetchall()
                expected = (
                    [] if diff == 0 else [(args["payment_method_id"], "charge" if diff > 0 else "refund", abs(diff))]
                )
                assert settled == expected
        finally:
            replay.close()
        assert not _score(env, task, [c for c in task.gold if c.tool != "change_flight"], "All done.")


def test_a_conditional_on_a_computed_amount_takes_the_branch_the_oracle_calls_for(airline: Any) -> None:
    _, env, tasks, stats = airline
    computed = [t for t in tasks if t.family == "conditional" and "computed" in t.tags]
    assert computed
    for task in computed:
        other = stats.other_branches[task.id]
        assert _score(env, task, list(task.gold), _said(task))
        assert not _score(env, task, [*task.gold[:-1], other], _said(task)), task.id


def test_the_heuristic_baseline_solves_few_intent_tasks(airline: Any) -> None:
    """A script that looks the person up and makes the best-matching write cannot find a flight by city and
    day, state a computed price or refund, or take the branch an amount calls for."""
    _, env, tasks, _ = airline
    computed = [t for t in tasks if "computed" in t.tags]
    assert len(computed) >= len(tasks) // 2
    solved = [
        t.id for t in computed if asyncio.run(rollout_in_process(env, t.id, make_agent("heuristic", t, 0))).success
    ]
    noop = [t.id for t in tasks if asyncio.run(rollout_in_process(env, t.id, make_agent("noop", t, 0))).success]
    assert noop == []
    assert len(solved) <= 0.1 * len(computed), solved


@pytest.fixture(scope="module")
def dealership() -> tuple[Any, Environment, list[Task], SynthesisStats]:
    """A world whose records are paid over time (a pay op with partial payments)."""
    design = design_domain(load_catalog().domain("car_dealership"), seed=1)
    assert any(op.kind == "pay" for op in design.domain.operations)
    env = Environment.from_spec(build_spec(design), seed_rows(design))
    tasks, stats = synthesize_tasks(env, design, build_graph(env), count=30, seed=2)
    env.add_task_pack(TaskPack("synthesized", None, tasks))
    return design, env, tasks, stats


def _due(design: Any, env: Environment, task: Task, entity_name: str, key: str) -> tuple[int, int]:
    """(total, the total less the ledger's net payments) of one record on the task's initial state."""
    entity = design.entity(entity_name)
    total_column = next(a.name for a in entity.attributes if a.derive and a.derive.price)
    state = _initial(env, task)
    try:
        with state.mode("internal"):
            total = state.conn.execute(
                f"SELECT {total_column} FROM {entity.plural} WHERE {entity_name}_id = ?", (key,)
            ).fetchone()[0]
            net = net_by_method(state.conn, entity, key, design.clock.strftime("%Y-%m-%d %H:%M:%S"))
    finally:
        state.close()
    return total, total - sum(net.values())


def test_what_is_still_owed_is_the_total_less_the_ledger_and_paying_it_settles_the_record(dealership: Any) -> None:
    design, env, tasks, stats = dealership
    op = next(o for o in design.domain.operations if o.kind == "pay")
    paying = [t for t in tasks if op.name in _tools(t)]
    asked = [t for t in tasks if "owe" in t.tags]
    assert paying and asked
    for task in paying:
        call = next(c for c in task.gold if c.tool == op.name)
        key = call.arguments[f"{op.entity}_id"]
        total, due = _due(design, env, task, op.entity, key)
        verdict = asyncio.run(check_task_in_process(env, task))
        assert verdict.passed, (task.id, verdict.problems)
        if "then" in task.tags or task.family == "action":  # paid in full: the oracle's due, and the record is paid
            assert call.arguments["amount_cents"] == due
        else:  # the balance was at or over the cap: the cap is paid and the rest stays due
            assert call.arguments["amount_cents"] < due
        if task.family == "conditional":
            assert not _score(env, task, [*task.gold[:-1], stats.other_branches[task.id]], "All done.")
        wrong = GoldCall(tool=op.name, arguments={**call.arguments, "amount_cents": call.arguments["amount_cents"] - 1})
        assert not _score(env, task, [*task.gold[:-1], wrong], "All done.")
    for task in asked:
        listing = task.gold[-1]
        assert task.answer is not None and task.answer.facts
        owners = [k for k in listing.arguments if k.endswith("_id")]
        assert owners  # the person's own listing is read
        # the answer is one of this person's records' dues, by the ledger
        entity = design.entity(op.entity)
        state = _initial(env, task)
        try:
            with state.mode("internal"):
                keys = [
                    r[0]
                    for r in state.conn.execute(
                        f"SELECT {op.entity}_id FROM {entity.plural} WHERE {owners[0]} = ?",
                        (listing.arguments[owners[0]],),
                    ).fetchall()
                ]
        finally:
            state.close()
        dues = {money_text(_due(design, env, task, op.entity, k)[1]) for k in keys}
        assert task.answer.facts[0] in dues
        assert _score(env, task, list(task.gold), _said(task))
        for wrong_fact in task.answer.wrong:
            assert not _score(env, task, list(task.gold), f"You owe {wrong_fact}.")


def test_the_world_finds_the_principals_own_lifecycle_steps_and_updates_but_not_staff_ones(airline: Any) -> None:
    """A world-style transition or update op the principal asks for (check in, change the meal, update contact
    details) is a role the families use; a staff-only update (set the loyalty tier) is not. (Before, the
    check-in step was not found and synthesis stopped with "no transition tool for booking (check_in)".)"""
    design, env, _, _ = airline
    world = World(env, design, random.Random(0))
    assert world.tool("transition", "booking", transition="check_in") == "check_in_booking"
    assert world.tool("update", "passenger") == "update_contact"
    assert sorted(name for _, name in world.ops("update")) == ["change_meal", "update_contact"]


def test_a_change_on_a_record_sets_only_the_value_asked_for(airline: Any) -> None:
    _, env, tasks, _ = airline
    changed = [t for t in tasks if "change" in t.tags]
    assert changed
    for task in changed:
        call = next(c for c in task.gold if c.tool == "change_meal")
        assert any("meal_request" in c.sql and "left as it was" not in c.description for c in task.checks)
        other = [v for v in ("standard", "vegan", "kosher") if v != call.arguments["meal_request"]][0]
        wrong = GoldCall(tool="change_meal", arguments={**call.arguments, "meal_request": other})
        assert not _score(env, task, [wrong if c is call else c for c in task.gold], "All done.")


def test_a_delay_conditional_pays_the_policys_voucher_over_the_line_and_tells_the_new_time_under_it(
    airline: Any,
) -> None:
    """The user does not know the delay; the policy's only_if line (and its other terms, met by the user in the
    task's world) decides: over it, the voucher the oracle computes; under it, the departure plus the delay."""
    from datetime import datetime, timedelta

    from synthesizer.money import compensation_cents
    from synthesizer.tasks.conditional import Conditional
    from synthesizer.tasks.synthesis import TaskSynthesizer

    design, env, _, _ = airline
    synth = TaskSynthesizer(env, design, build_graph(env), seed=4)
    op = next(o for o in design.domain.operations if o.kind == "compensate")
    limit = next(r.value for r in design.policy_refs if r.kind_name == "only_if" and r.op == op.name)
    made: dict[str, Task] = {}
    try:
        for i in range(40):
            draft = Conditional().on_delay(synth.world)
            if draft is None or draft.template in made:
                continue
            task = synth.finish(draft, f"delay-{i}", "train")
            assert task is not None, (draft.template, synth.stats.failures)
            made[draft.template] = task
            if len(made) == 2:
                break
    finally:
        synth.state.close()
    assert set(made) == {"conditional-delay-then", "conditional-delay-else"}
    env.add_task_pack(TaskPack("delays", None, list(made.values())))
    for template, task in made.items():
        key = (
            next(a for c in task.gold for k, a in c.arguments.items() if k == "booking_id")
            if "then" in template
            else None
        )
        state = _initial(env, task)
        try:
            with state.mode("internal"):
                rows = state.conn.execute(
                    "SELECT b.booking_id, b.seats, f.departs_at, f.delay_minutes FROM bookings b JOIN flights f ON "
                    "f.flight_id = b.flight_id WHERE b.passenger_id = ? AND f.delay_minutes > 0",
                    (task.gold[1].arguments["passenger_id"],),
                ).fetchall()
        finally:
            state.close()
        assert task.answer is not None
        if key is not None:  # over the line: the voucher, per seat as the operation says
            booking = next(r for r in rows if r[0] == key)
            assert booking[3] > limit
            assert task.answer.facts == [money_text(compensation_cents(op.amount, {"seats": booking[1]}))]
        else:  # under it: the new departure time, and the old one is wrong
            times = {
                (datetime.fromisoformat(r[2]) + timedelta(minutes=r[3])).strftime("%-I:%M %p").lower() for r in rows
            }
            assert task.answer.facts[0] in times and task.answer.wrong
        assert _score(env, task, list(task.gold), _said(task))
        other = [c for c in task.gold if c.tool != "issue_delay_voucher"]
        if key is not None:
            assert not _score(env, task, other, _said(task))  # no voucher: fails
        else:
            voucher = GoldCall(
                tool="issue_delay_voucher",
                arguments={"passenger_id": task.gold[1].arguments["passenger_id"], "booking_id": rows[0][0]},
            )
            assert not _score(env, task, [*task.gold, voucher], _said(task))  # a voucher under the line: fails
