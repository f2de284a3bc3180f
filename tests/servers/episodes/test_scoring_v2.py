"""Scoring without holes: column-level collateral, binary reward, strict answers, and the task-family fields."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest

from servers import Environment, Episode
from servers.episodes.evaluation import normalise_answer
from servers.spec.tasks import Task, family_of, task_problems
from tests.conftest import ENV_ROOT, write_tasks
from tests.servers.episodes.families import FAMILY_TASKS, REFUSAL, USER, family_env

NEW_EMAIL = "ron.gonzales@example.com"

CONTACT_TASK: dict[str, Any] = {
    "id": "new-email",
    "split": "train",
    "instruction": "Hi, Ronald Gonzales here. Please change my email to ron.gonzales@example.com.",
    "user": {"persona": "A library member.", "known": {"phone": "555-833-5358"}},
    "gold": [
        {"tool": "find_member", "arguments": {"name": "Ronald Gonzales"}},
        {"tool": "update_member_contact", "arguments": {"member_id": "M-1001", "email": NEW_EMAIL}},
    ],
    "checks": [
        {
            "description": "Ronald's email is the new one",
            "sql": f"SELECT 1 FROM members WHERE member_id = 'M-1001' AND email = '{NEW_EMAIL}'",
        }
    ],
}


@pytest.fixture
def library_contact(tmp_path: Path) -> Environment:
    """The library environment with one task: change a member's email (and nothing else)."""
    folder = tmp_path / "library"
    folder.mkdir()
    for name in ("env.json", "seed.json"):
        shutil.copy(ENV_ROOT / "library" / name, folder / name)
    write_tasks(folder, [CONTACT_TASK])
    return Environment.load(folder)


def test_overwriting_another_column_of_the_row_the_task_changes_fails_collateral(library_contact: Environment) -> None:
    """The issue's example: the email as asked, and the phone overwritten too. Row-level collateral let it pass."""
    episode = Episode(library_contact, "new-email")
    arguments = {"member_id": "M-1001", "email": NEW_EMAIL, "phone": "555-000-0000"}
    assert not episode.call("update_member_contact", arguments).is_error
    score = episode.evaluate("Done.")
    collateral = {c.name: c for c in score.checks}["collateral"]
    assert score.checks[0].passed and not collateral.passed
    assert collateral.detail == "unexpected changes: members M-1001 updated (phone), which the task leaves alone"
    assert (score.success, score.reward, score.partial) == (False, 0.0, 0.5)

    episode.reset()
    assert not episode.call("update_member_contact", {"member_id": "M-1001", "email": NEW_EMAIL}).is_error
    score = episode.evaluate("Done.")
    assert (score.success, score.reward, score.partial) == (True, 1.0, 1.0)
    episode.close()


def test_deleting_a_row_the_task_updates_fails_collateral(tmp_path: Path) -> None:
    cancel = {
        "id": "cancel",
        "split": "train",
        "instruction": "Please cancel my anvil order.",
        "user": USER,
        "gold": [{"tool": "cancel_order", "arguments": {"order_id": "ORD-0041"}}],
        "checks": [
            {
                "description": "The anvil order is no longer placed",
                "sql": "SELECT 1 FROM orders WHERE order_id = 'ORD-0041' AND status = 'placed'",
                "expect": "none",
            }
        ],
    }
    env = family_env(tmp_path / "mini", [cancel])
    episode = Episode(env, "cancel")
    assert not episode.call("delete_order", {"order_id": "ORD-0041"}).is_error
    score = episode.evaluate("Cancelled.")
    assert score.checks[0].passed  # the state check alone cannot tell a deletion from a cancellation
    assert score.checks[1].detail == "unexpected changes: orders ORD-0041 deleted, where the task updates it"
    assert not score.success and score.reward == 0.0
    episode.close()


@pytest.fixture
def families(tmp_path: Path) -> Environment:
    return family_env(tmp_path / "mini", copy.deepcopy(FAMILY_TASKS))


def test_every_family_is_inferred_or_declared(families: Environment) -> None:
    assert {t.id: family_of(t, families.spec) for t in families.tasks} == {
        "action": "action",
        "multi-goal": "multi_goal",
        "information": "information",
        "refuse-restock": "refusal",
        "conditional": "conditional",
    }
    undeclared = families.task("refuse-restock").model_copy(update={"family": None})
    assert family_of(undeclared, families.spec) == "refusal"  # forbidden calls make a refusal


def test_doing_nothing_earns_zero_on_every_family_and_gold_earns_one(families: Environment) -> None:
    for task in families.tasks:
        episode = Episode(families, task.id)
        noop = episode.evaluate("")
        assert (noop.success, noop.reward) == (False, 0.0), task.id
        assert 0.0 <= noop.partial < 1.0
        for call in task.gold:
            assert not episode.call(call.tool, call.arguments).is_error, (task.id, call.tool)
        gold = episode.evaluate("; ".join(task.answer.facts) if task.answer else "Done.")
        assert (gold.success, gold.reward, gold.partial) == (True, 1.0, 1.0), (task.id, gold.checks)
        episode.close()
    # information and refusal tasks change nothing: doing nothing passes their state checks and fails on the answer
    for task_id in ("information", "refuse-restock"):
        noop = Episode(families, task_id).evaluate("")
        assert [c.name for c in noop.checks if not c.passed] == ["answer"]


@pytest.mark.parametrize(
    ("message", "fact", "found"),
    [
        ("That comes to $1,029.50.", "1029.50 USD", True),
        ("That comes to 1029.50 USD.", "$1,029.50", True),
        ("That comes to 1,029.5 dollars", "$1,029.50", True),
        ("That comes to €45.00 in all", "45 EUR", True),
        ("It is due on March 28, 2026.", "2026-03-28", True),
        ("It is due on 28 March 2026.", "March 28, 2026", True),
        ("It is due Mar 28 2026", "28th of March, 2026", True),
        ("It is due on Saturday, March 28th, 2026.", "2026-03-28", True),
        ("It is due on 2026/3/28", "Mar 28, 2026", True),
        ("It is due on March 27, 2026.", "2026-03-28", False),
        ("It is due on 2026-03-28.", "March 29, 2026", False),
        ("Come at 9:30 am.", "09:30", True),
        ("Come at 09:30.", "9:30 a.m.", True),
        ("Come at 2:15 PM", "14:15", True),
        ("Come at 2 pm", "14:00", True),
        ("Come at 12:00 am", "00:00", True),
        ("Come at 9:30 pm", "09:30", False),
        ("You have 10 loans.", "1", False),
        ("You owe 1.5 dollars.", "1", False),
        ("You owe $1.50.", "1.5", True),
        ("You have 1 loan.", "1", True),
        ("Your appointment is June 3 2026 at 3 pm.", "June 3, 2026 at 15:00", True),
    ],
)
def test_answers_match_in_canonical_forms_and_only_whole(message: str, fact: str, found: bool) -> None:
    said, wanted = normalise_answer(message), normalise_answer(fact)
    assert any(said[i : i + len(wanted)] == wanted for i in range(len(said) - len(wanted) + 1)) is found


def test_a_wrong_statement_fails_the_answer_even_beside_the_right_one(families: Environment) -> None:
    episode = Episode(families, "information")
    right = episode.evaluate("Two anvils would cost $199.00.")
    assert right.success and right.reward == 1.0
    shotgun = episode.evaluate("Two anvils cost $99.50 each, so $199 in all.")
    answer = {c.name: c for c in shotgun.checks}["answer"]
    assert not answer.passed and answer.detail == "wrong: $99.50" and shotgun.reward == 0.0
    assert answer.description == "The final message states: $199.00 — and none of: $99.50"
    missing = {c.name: c for c in episode.evaluate("About 200 dollars.").checks}["answer"]
    assert missing.detail == "missing: $199.00"
    episode.close()


def problems(env: Environment, change: dict[str, Any], base: dict[str, Any] = REFUSAL) -> list[tuple[str, str]]:
    task = Task.model_validate({**copy.deepcopy(base), **change})
    return task_problems(task, env.spec, {n: t.validator for n, t in env.tools.items()})


def test_task_problems_check_the_family_fields(families: Environment) -> None:
    assert problems(families, {}) == []
    assert problems(families, {"forbidden": [{"tool": "restock", "arguments": {"sku": "B-2"}}]}) == [
        ("forbidden.0.arguments", '"delta" is a required property')
    ]
    assert problems(families, {"forbidden": [{"tool": "steal", "arguments": {}}]}) == [
        ("forbidden.0.tool", "unknown tool 'steal'")
    ]
    assert problems(families, {"forbidden": [{"tool": "get_item", "arguments": {"sku": "B-2"}}]}) == [
        ("forbidden.0.tool", "get_item only reads; a forbidden call is one that changes state")
    ]
    assert problems(families, {"forbidden": [], "answer": None}) == [
        ("forbidden", "a refusal needs the forbidden calls an obedient agent would make, or an answer saying why"),
        ("answer", "the gold changes nothing, so only an answer can tell doing the task from not"),
    ]
    assert problems(families, {"family": "action"}) == [
        ("gold", "an action task changes something; its gold calls only read"),
        ("forbidden", "only a refusal names forbidden calls; this task is action"),
    ]
    assert problems(families, {"family": "information", "forbidden": []}) == []
    assert problems(families, {"family": "information", "forbidden": [], "answer": None}) == [
        ("answer", "an information task is judged on its answer: give the facts it must state")
    ]
    information_that_writes = {"family": "information", "gold": FAMILY_TASKS[0]["gold"], "forbidden": []}
    assert problems(families, information_that_writes) == [
        ("gold", "an information task changes nothing, but its gold calls place_order")
    ]
    assert problems(families, {"family": "multi_goal", "forbidden": [], "gold": FAMILY_TASKS[0]["gold"]}) == [
        ("gold", "a multi_goal task makes two writes or more; its gold makes 1")
    ]
    assert problems(families, {"user": {"persona": "A shopper.", "confirm": False}}) == [
        ("user.refuses", "a user who declines (confirm: false) says what they will not accept")
    ]


def test_a_pack_line_with_a_bad_forbidden_call_is_reported_with_its_line(tmp_path: Path) -> None:
    from servers import TaskPackError

    bad = {**copy.deepcopy(REFUSAL), "forbidden": [{"tool": "restock", "arguments": {"sku": 5, "delta": 1}}]}
    with pytest.raises(TaskPackError) as caught:
        family_env(tmp_path / "mini", [FAMILY_TASKS[0], bad])
    assert [str(i) for i in caught.value.issues] == [
        'core.jsonl:2 forbidden.0.arguments: sku: 5 is not of type "string"'
    ]


def test_the_new_fields_are_left_out_of_a_dump_while_unused_and_round_trip_when_used() -> None:
    """Packs written before the family fields (and the synthesizer's output) dump byte for byte as before."""
    plain = Task.model_validate(copy.deepcopy(FAMILY_TASKS[0]) | {"family": None})
    dumped = plain.model_dump(mode="json")
    assert not {"family", "forbidden"} & set(dumped)
    assert set(dumped["user"]) == {"persona", "known", "unknown"} and set(dumped["answer"]) == {"facts"}
    refusal = Task.model_validate(copy.deepcopy(REFUSAL))
    dumped = refusal.model_dump(mode="json", exclude_none=True)
    assert dumped["forbidden"] and dumped["family"] == "refusal" and dumped["user"]["confirm"] is False
    assert Task.model_validate(dumped) == refusal
