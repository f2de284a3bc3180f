"""Task synthesis v2: each family's defining property, the batch mix, wording and distractor hygiene, scoring
depth, and determinism — on worlds built in process from the catalog (no published fleet is read)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from servers import Environment, Task
from servers.clients import check_task_in_process, make_agent, rollout_in_process
from servers.episodes.evaluation import score_state
from servers.spec import GoldCall, UpdateRows
from servers.spec.tasks import TaskPack
from synthesizer.catalog import load_catalog
from synthesizer.dependency_graph import build_graph
from synthesizer.modeling import build_spec, design_domain
from synthesizer.seeding import seed_rows
from synthesizer.task_synthesis import synthesize_tasks
from synthesizer.tasks import SynthesisStats

DOMAINS = ("dental_clinic", "car_dealership", "catering_orders")


def build(domain: str, seed: int = 1) -> tuple[Any, Environment]:
    design = design_domain(load_catalog().domain(domain), seed=seed)
    spec = build_spec(design)
    return design, Environment.from_spec(spec, seed_rows(design))


@pytest.fixture(scope="module")
def batch() -> list[tuple[Environment, list[Task], SynthesisStats]]:
    made = []
    for domain in DOMAINS:
        design, env = build(domain)
        tasks, stats = synthesize_tasks(env, design, build_graph(env), count=20, seed=1)
        env.add_task_pack(TaskPack("synthesized", None, tasks))
        made.append((env, tasks, stats))
    return made


def writes(env: Environment, task: Task) -> int:
    return sum(1 for call in task.gold if env.tools[call.tool].tool.kind == "write")


def score(env: Environment, task: Task, calls: list[GoldCall], message: str, extra: list[Any] | None = None) -> bool:
    """Whether an agent making ``calls`` (on the task's world, after ``extra`` changes) and saying ``message``
    succeeds."""
    template = env.task_template(task.id)
    initial = env.task_initial_dump(task.id)
    if extra:
        template = template.derive([(f"test {i}", change) for i, change in enumerate(extra)])
    replay = env.replay_gold(template, calls)
    try:
        result = score_state(task, initial, replay.state, env.gold_diff(task.id), env.primary_keys, message)
    finally:
        replay.close()
    return result.success


def of(batch: Any, family: str) -> list[tuple[Environment, Task, SynthesisStats]]:
    return [(env, t, stats) for env, tasks, stats in batch for t in tasks if t.family == family]


def test_every_published_task_passes_the_gates_and_carries_its_family(batch) -> None:
    for env, tasks, _ in batch:
        assert len(tasks) == 20
        for task in tasks:
            assert task.family in {"action", "refusal", "information", "conditional", "multi_goal"}
            verdict = asyncio.run(check_task_in_process(env, task))
            assert verdict.passed, (task.id, verdict.problems)


def test_the_mix_meets_the_targets_on_a_small_batch(batch) -> None:
    tasks = [(env, t) for env, ts, _ in batch for t in ts]
    share = {
        f: sum(1 for _, t in tasks if t.family == f) / len(tasks) for f in ("refusal", "information", "conditional")
    }
    assert share["refusal"] >= 0.15 and share["information"] >= 0.10 and share["conditional"] >= 0.10, share
    assert sum(1 for env, t in tasks if writes(env, t) >= 2) / len(tasks) >= 0.25
    assert sum(1 for _, t in tasks if t.family == "action") / len(tasks) <= 0.30


def test_refusal_obeying_fails_and_the_answer_must_say_why(batch) -> None:
    refusals = of(batch, "refusal")
    assert refusals
    policy = [(env, task) for env, task, _ in refusals if task.forbidden]  # a rule only the policy states
    for env, task in policy:  # the allowed part is done, the forbidden act is not: doing either way fails
        assert writes(env, task) >= 1 and not [c for c in task.forbidden if c in task.gold]
        message = GoldAgentMessage(task) if task.answer else "Done what I could; the rest the policy does not allow."
        assert score(env, task, list(task.gold), message)
        assert not score(env, task, [*task.gold, *task.forbidden], message)  # obeying the forbidden request
        assert not score(env, task, [c for c in task.gold if env.tools[c.tool].tool.kind == "read"], message)
    for env, task, _ in refusals:
        if task.forbidden:
            continue
        assert task.answer is not None and writes(env, task) == 0
        reads = list(task.gold)
        assert score(env, task, reads, GoldAgentMessage(task))
        assert not score(env, task, reads, "Done, that's sorted for you.")  # claiming success says no reason
        pinned = [c for c in task.checks if "left as it was" in c.description and "asked about" in c.description]
        if pinned:  # the act itself, forced past the tools: the state check catches it
            table, key, value, column = re.search(
                r"FROM (\w+) WHERE (\w+) = '([^']+)' AND (\w+) = ", pinned[0].sql
            ).groups()  # type: ignore[union-attr]
            states = {row[column] for row in env.task_initial_dump(task.id)[table]}
            current = next(row[column] for row in env.task_initial_dump(task.id)[table] if row[key] == value)
            forced = UpdateRows(op="update", table=table, where={key: value}, set={column: min(states - {current})})
            assert not score(env, task, reads, GoldAgentMessage(task), [forced])


def GoldAgentMessage(task: Task) -> str:  # noqa: N802 -- what the gold agent says
    return "Here is what you asked for: " + "; ".join(task.answer.facts if task.answer else []) + "."


def test_information_a_namesakes_or_wrong_figure_fails(batch) -> None:
    questions = of(batch, "information")
    assert questions
    with_wrong = 0
    for env, task, _ in questions:
        assert task.answer is not None and writes(env, task) == 0
        assert score(env, task, list(task.gold), GoldAgentMessage(task))
        assert not score(env, task, list(task.gold), "I couldn't find that.")
        for wrong in task.answer.wrong:
            with_wrong += 1
            assert not score(env, task, list(task.gold), f"It is {wrong}.")
            assert not score(env, task, list(task.gold), f"{GoldAgentMessage(task)} Or maybe {wrong}.")
    assert with_wrong >= len(questions) // 2


def test_conditional_the_other_branch_fails(batch) -> None:
    conditionals = of(batch, "conditional")
    assert conditionals
    for env, task, stats in conditionals:
        other = stats.other_branches[task.id]
        said = GoldAgentMessage(task)  # a branch that answers (the price, the refund) must state it
        assert score(env, task, list(task.gold), said)
        assert not score(env, task, [*task.gold[:-1], other], said), task.id
    branches = {next(x for x in t.tags if x in ("then", "else")) for _, t, _ in conditionals}
    assert branches == {"then", "else"}  # the state decides: both branches occur


def test_multi_goal_tasks_make_two_writes_or_more_and_partial_work_fails(batch) -> None:
    multi = of(batch, "multi_goal")
    assert multi
    for env, task, _ in multi:
        assert writes(env, task) >= 2
        last_write = max(i for i, c in enumerate(task.gold) if env.tools[c.tool].tool.kind == "write")
        assert not score(env, task, task.gold[:last_write], "All done.")


def test_every_write_task_has_two_independent_checks_or_more(batch) -> None:
    for env, tasks, _ in batch:
        for task in tasks:
            if writes(env, task):
                assert len(task.checks) >= 2, task.id


_ID = re.compile(r"\b[A-Z]{2,6}-\d{3,}\b")
_DUMP = re.compile(r"\b[a-z ]+: [^,.]+, [a-z ]+: ")  # "flight: RA-00012, seats: 1, price: 152.21"


def test_instructions_name_no_ids_and_distractors_carry_no_markers(batch) -> None:
    for _, tasks, _ in batch:
        for task in tasks:
            assert not _ID.search(task.instruction), task.instruction
            assert not _DUMP.search(task.instruction), task.instruction
            dumped = json.dumps([c.model_dump() for c in task.initial_state])
            assert "twin." not in dumped and "alt." not in dumped


def test_namesakes_come_first_in_a_search_for_some_tasks(batch) -> None:
    """The first search hit is not always the user: a namesake is listed before them."""
    earlier = 0
    for _, tasks, _ in batch:
        for task in tasks:
            for change in task.initial_state:
                if isinstance(change, UpdateRows) and any(k.endswith("name") for k in change.set):
                    earlier += 1
    assert earlier >= 10


def test_the_heuristic_baseline_solves_few_and_doing_nothing_none(batch) -> None:
    solved = {"noop": 0, "heuristic": 0}
    total = 0
    for env, tasks, _ in batch:
        for task in tasks:
            total += 1
            for agent in solved:
                record = asyncio.run(rollout_in_process(env, task.id, make_agent(agent, task, 0)))
                solved[agent] += bool(record.success)
    assert solved["noop"] == 0
    assert solved["heuristic"] <= 0.15 * total, solved


def test_same_seed_same_bytes() -> None:
    def once() -> str:
        design, env = build("dental_clinic")
        tasks, _ = synthesize_tasks(env, design, build_graph(env), count=12, seed=5)
        return "\n".join(json.dumps(t.model_dump(mode="json"), sort_keys=True) for t in tasks)

    assert once() == once()


def test_a_request_for_someone_else_is_refused_and_an_obedient_agent_fails() -> None:
    """In a world whose policy says who may ask (principals), "and the same for my partner" is refused: the
    tools would take the other person's id, so the task names the call and the obedient gate must fail it."""
    from synthesizer.tasks.synthesis import TaskSynthesizer

    design, env = build("airline_booking")
    ref = next(r for r in design.policy_refs if r.kind_name == "no_third_party")  # the rule that refuses them
    synth = TaskSynthesizer(env, design, build_graph(env), seed=1)
    on_behalf = []
    try:
        for i in range(6):
            draft = ref.kind.refusal(synth.world, ref)
            task = synth.finish(draft, f"on-behalf-{i}", "train") if draft is not None else None
            if task is not None:
                on_behalf.append(task)
    finally:
        synth.state.close()
    env.add_task_pack(TaskPack("synthesized", None, on_behalf))
    assert on_behalf and all("on_behalf" in t.tags for t in on_behalf)
    for task in on_behalf:
        assert task.family == "refusal" and task.forbidden and task.answer is None
        assert not _ID.search(task.instruction)
        verdict = asyncio.run(check_task_in_process(env, task))
        assert verdict.passed, verdict.problems
        assert verdict.obedient_success is False and verdict.forbidden_refused is False
        assert not score(env, task, [*task.gold, *task.forbidden], "All done.")


def test_distractors_keep_the_worlds_rules_in_every_initial_state() -> None:
    """A decoy or a namesake's look-alike never gives anyone two open records with one counterpart where the
    world allows one, nor more open records than their limit: the data agrees with the rules."""
    for domain in DOMAINS:
        design, env = build(domain)
        tasks, _ = synthesize_tasks(env, design, build_graph(env), count=20, seed=1)
        env.add_task_pack(TaskPack("synthesized", None, tasks))
        for task in tasks:
            dump = env.task_initial_dump(task.id)
            for ref in design.refs:
                rule, entity = ref.rule, design.entity(ref.rule.entity)
                if rule.kind not in ("unique_active", "limit_per_owner") or entity.lifecycle is None:
                    continue
                owner = next(r.column for r in entity.relations if r.to == rule.owner)
                open_rows = [r for r in dump[entity.plural] if r[entity.lifecycle.field] in rule.states]
                if rule.kind == "unique_active":
                    target = next(r.column for r in entity.relations if r.to == rule.target)
                    pairs = [(r[owner], r[target]) for r in open_rows]
                    seed_pairs = [
                        (r[owner], r[target])
                        for r in env.seed[entity.plural]
                        if r[entity.lifecycle.field] in rule.states
                    ]
                    assert len(pairs) - len(set(pairs)) <= len(seed_pairs) - len(set(seed_pairs)), task.id
                else:
                    held: dict[Any, int] = {}
                    for r in open_rows:
                        held[r[owner]] = held.get(r[owner], 0) + 1
                    seed_held: dict[Any, int] = {}
                    for r in env.seed[entity.plural]:
                        if r[entity.lifecycle.field] in rule.states:
                            seed_held[r[owner]] = seed_held.get(r[owner], 0) + 1
                    worst = max([ref.value or 0, *seed_held.values()])
                    assert max(held.values(), default=0) <= worst, task.id
