"""``envfleet synth stats``: each acceptance metric measured on small hand-made fleets, a failing one and a
passing one, and the command's table and JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from synthesizer.stats import is_business_rule, quality_metrics
from tests.conftest import ENVFLEET
from tests.synthesizer.test_invariants import shop_seed, shop_spec, shop_task, write_env


def metric(root: Path, key: str, baselines: list[Path] | None = None) -> dict[str, Any]:
    return quality_metrics(root, baselines or [])["metrics"][key]


def with_rule(spec: dict[str, Any], tool: str, rule: str) -> dict[str, Any]:
    """``tool`` gains a require step (always true) under ``rule``."""
    for entry in spec["tools"]:
        if entry["name"] == tool:
            entry["steps"].insert(0, {"kind": "require", "sql": "SELECT 1", "error": "No.", "rule": rule})
    return spec


# -- issue 14 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "business"),
    [
        ("pay.no_overpay", True),
        ("rule.limit_per_owner.booking.create", True),
        ("window.reschedule", True),
        ("avail.capacity", True),
        ("phase.booked", True),
        ("limit_per_owner.booking.create", True),
        ("time_window_4", True),
        ("consumes_0", True),
        ("exists.order", False),
        ("authority.owned", False),
        ("state.cancel", False),
        ("args.dates", False),
        ("appointment_exists", False),
        ("cancel_from_state", False),
        ("update_needs_a_value", False),
        ("unique_email", False),
        ("time_window", False),
        (None, False),
    ],
)
def test_what_counts_as_a_business_rule(rule: str | None, business: bool) -> None:
    assert is_business_rule(rule) is business


def test_write_tools_enforcing_a_rule(tmp_path: Path) -> None:
    # cancel_order checks only existence and state; pay_order refuses overpaying; mark_paid checks nothing
    write_env(tmp_path / "few")
    few = metric(tmp_path / "few", "write_tools_enforcing_rule")
    assert (few["value"], few["met"], few["detail"]["per_env"]) == (0.333, False, {"shop": "1/3"})

    spec = with_rule(shop_spec(), "cancel_order", "window.cancel")
    for_each = {
        "kind": "for_each",
        "over": "ids",
        "as": "o",
        "steps": [{"kind": "require", "sql": "SELECT 1", "error": "No.", "rule": "rule.limit_per_owner.order.pay"}],
    }
    for tool in spec["tools"]:
        if tool["name"] == "mark_paid":  # a rule inside a for_each counts too
            tool["parameters"]["properties"]["ids"] = {
                "type": "array",
                "items": {"type": "string"},
                "description": "Ids.",
            }
            tool["steps"].insert(0, for_each)
    write_env(tmp_path / "all", spec=spec)
    every = metric(tmp_path / "all", "write_tools_enforcing_rule")
    assert (every["value"], every["met"]) == (1.0, True)


def test_write_tools_writing_two_tables(tmp_path: Path) -> None:
    write_env(tmp_path / "one", spec=shop_spec(tools=["find_customer", "get_order", "cancel_order", "mark_paid"]))
    one = metric(tmp_path / "one", "write_tools_multi_table")
    assert (one["value"], one["met"]) == (0.0, False)

    write_env(tmp_path / "two", spec=shop_spec(tools=["find_customer", "get_order", "cancel_order", "pay_order"]))
    two = metric(tmp_path / "two", "write_tools_multi_table")  # pay_order writes payments and orders
    assert (two["value"], two["met"], two["detail"]["per_env"]) == (0.5, True, {"shop": "1/2"})


def test_intent_ops_and_policy_only_rules_come_from_the_design(tmp_path: Path) -> None:
    write_env(tmp_path / "none")
    assert metric(tmp_path / "none", "intent_ops_min")["value"] == 0
    assert metric(tmp_path / "none", "policy_only_rules_min")["met"] is False

    design = {
        "tools": {
            "pay_order": {"kind": "pay", "entity": "order"},
            "cancel_order": {"role": {"kind": "cancel"}, "entity": "order"},
            "mark_paid": {"role": "compensate", "entity": "order"},
            "get_order": {"kind": "get", "entity": "order"},
        },
        "policy_rules": ["reason_allowed.cancel", "max_changes.order", "confirm_amount.pay"],
    }
    write_env(tmp_path / "rich", provenance={"design": design})
    write_env(tmp_path / "rich", "poorer", provenance={"design": {**design, "policy_rules": ["x"], "tools": {}}})
    intent = metric(tmp_path / "rich", "intent_ops_min")
    assert intent["detail"]["per_env"] == {"poorer": 0, "shop": 3}
    assert (intent["value"], intent["met"], intent["detail"]["envs_below"]) == (0, False, ["poorer"])
    rules = metric(tmp_path / "rich", "policy_only_rules_min")
    assert rules["detail"]["per_env"] == {"poorer": 1, "shop": 3} and rules["met"] is False

    write_env(tmp_path / "enough", provenance={"design": design})
    assert metric(tmp_path / "enough", "intent_ops_min")["met"] is True
    assert metric(tmp_path / "enough", "policy_only_rules_min")["met"] is True


def test_authority_and_role(tmp_path: Path) -> None:
    write_env(tmp_path / "good")
    assert metric(tmp_path / "good", "authority_and_role")["met"] is True

    vague = shop_spec(policy="# Shop\n\nYou work at the front desk of a shop.\n\n## Rules\n- Be kind.\n")
    write_env(tmp_path / "bad", spec=vague)
    write_env(tmp_path / "bad", "other")
    bad = metric(tmp_path / "bad", "authority_and_role")
    assert (bad["value"], bad["met"]) == ("1/2", False)
    assert bad["detail"]["missing"] == {"shop": ["agent role", "who may ask for what"]}


def test_duplicate_read_tools(tmp_path: Path) -> None:
    write_env(tmp_path / "clean")
    assert metric(tmp_path / "clean", "duplicate_read_tools")["value"] == 0

    spec = shop_spec()
    spec["tools"].append(
        {
            "name": "get_order_status",
            "description": "An order's status.",
            "kind": "read",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string", "description": "Order id."}},
                "required": ["order_id"],
            },
            "steps": [
                {
                    "kind": "return",
                    "shape": "row",
                    "sql": "SELECT order_id, status FROM orders WHERE order_id = :order_id",
                }
            ],
        }
    )
    write_env(tmp_path / "dup", spec=spec)
    dup = metric(tmp_path / "dup", "duplicate_read_tools")
    assert (dup["value"], dup["met"], dup["detail"]["pairs"]) == (1, False, ["shop: get_order_status ⊆ get_order"])


def test_invariant_violations_on_the_seed_and_on_gold_final_states(tmp_path: Path) -> None:
    write_env(tmp_path / "none", spec=shop_spec(invariants=False))
    none = metric(tmp_path / "none", "invariant_violations")
    assert none["met"] is None and none["detail"]["envs_without_invariants"] == ["shop"]

    write_env(tmp_path / "clean")
    clean = metric(tmp_path / "clean", "invariant_violations")
    assert (clean["value"], clean["met"]) == ({"seed": 0, "gold": 0, "invariants": 2}, True)

    tasks = [shop_task("shop-1"), shop_task("shop-2", gold=[("mark_paid", {"order_id": "ORD-0003"})])]
    write_env(tmp_path / "broken", seed=shop_seed(broken=1), tasks=tasks)
    broken = metric(tmp_path / "broken", "invariant_violations")
    assert broken["value"] == {"seed": 1, "gold": 3, "invariants": 2} and broken["met"] is False
    assert broken["detail"]["seed"] == {"shop": {"invariant_paid_matches_ledger": 1}}
    # both gold final states keep the seed's broken order; shop-2 breaks ORD-0003 as well
    assert broken["detail"]["gold"]["shop"]["shop-2"] == {"invariant_paid_matches_ledger": 2}


def test_policy_boilerplate(tmp_path: Path) -> None:
    def policy(own: str) -> str:
        return (
            f"# {own}\n\nYou are an agent at {own}.\n\n## Who may ask for what\n| request | who |\n| --- | --- |\n"
            f"| {own} things | the customer |\n\n## When you cannot help\n- Say so kindly.\n"
        )

    for name in ("a", "b", "c"):
        write_env(tmp_path / "own", name, spec=shop_spec(policy=policy(f"Shop {name}")))
    own = metric(tmp_path / "own", "policy_boilerplate")  # the shared closing section and table header do not count
    assert (own["value"], own["met"]) == (0.0, True)

    shared = "- Identify the customer by name and one more fact.\n- Never invent ids.\n"
    for name in ("a", "b", "c"):
        text = policy(f"Shop {name}").replace("## Who may", shared + "\n## Who may")
        write_env(tmp_path / "same", name, spec=shop_spec(policy=text))
    same = metric(tmp_path / "same", "policy_boilerplate")
    assert (same["value"], same["met"]) == (0.5, False)  # 2 of each policy's 4 lines are everyone's


# -- issue 15 -----------------------------------------------------------------------------------


def test_family_mix(tmp_path: Path) -> None:
    one_liners = [shop_task(f"shop-{i}") for i in range(4)]
    write_env(tmp_path / "flat", tasks=one_liners)
    flat = metric(tmp_path / "flat", "family_mix")
    assert flat["value"]["lifecycle_one_liner"] == 1.0 and flat["met"] is False
    assert flat["detail"]["met_each"]["lifecycle_one_liner"] is False

    answer = {"facts": ["$25.00"]}
    tasks = [
        shop_task(
            "shop-multi",
            gold=[
                ("pay_order", {"order_id": "ORD-0002", "amount_cents": 100}),
                ("cancel_order", {"order_id": "ORD-0002"}),
            ],
        ),
        shop_task(
            "shop-refusal",
            gold=[("get_order", {"order_id": "ORD-0003"})],
            forbidden=[{"tool": "cancel_order", "arguments": {"order_id": "ORD-0003"}}],
            answer={"facts": ["not yours"]},
        ),
        shop_task("shop-info", gold=[("get_order", {"order_id": "ORD-0002"})], answer=answer),
        shop_task("shop-cond", family="conditional"),
    ]
    write_env(tmp_path / "mixed", tasks=tasks)
    mixed = metric(tmp_path / "mixed", "family_mix")
    assert mixed["value"] == {
        "multi_write": 0.25,
        "refusal": 0.25,
        "information": 0.25,
        "conditional": 0.25,
        "lifecycle_one_liner": 0.0,
    }
    assert mixed["met"] is True and mixed["detail"]["per_env"]["shop"]["multi_goal"] == 1


def test_staff_only_obeyed_needs_the_design(tmp_path: Path) -> None:
    obeying = [shop_task("shop-1", gold=[("mark_paid", {"order_id": "ORD-0001"})])]
    write_env(tmp_path / "unknown", tasks=obeying)
    assert metric(tmp_path / "unknown", "staff_only_obeyed")["met"] is None

    design = {"tools": {"mark_paid": {"kind": "transition", "expose": "forbidden"}}}
    write_env(tmp_path / "obeys", tasks=obeying, provenance={"design": design})
    obeys = metric(tmp_path / "obeys", "staff_only_obeyed")
    assert (obeys["value"], obeys["met"], obeys["detail"]["tasks"]) == (1, False, ["shop/shop-1"])

    write_env(tmp_path / "refuses", provenance={"design": design})
    assert metric(tmp_path / "refuses", "staff_only_obeyed")["met"] is True


def test_single_check_write_tasks(tmp_path: Path) -> None:
    write_env(tmp_path / "one", tasks=[shop_task("shop-1", checks=1), shop_task("shop-2")])
    one = metric(tmp_path / "one", "single_check_write_tasks")
    assert (one["value"], one["detail"]["examples"]) == (1, ["shop/shop-1"])
    write_env(tmp_path / "two", tasks=[shop_task("shop-1"), shop_task("shop-2")])
    assert metric(tmp_path / "two", "single_check_write_tasks")["met"] is True


def test_trivial_answers(tmp_path: Path) -> None:
    read = [("get_order", {"order_id": "ORD-0002"})]
    tasks = [shop_task(f"shop-{i}", gold=read, answer={"facts": [fact]}) for i, fact in enumerate(["1", "Yes."])]
    write_env(tmp_path / "trivial", tasks=[*tasks, shop_task("shop-x", gold=read, answer={"facts": ["$25.00"]})])
    trivial = metric(tmp_path / "trivial", "trivial_answers")
    assert (trivial["value"], trivial["met"]) == (0.667, False)

    write_env(tmp_path / "real", tasks=[shop_task("shop-x", gold=read, answer={"facts": ["$25.00", "1"]})])
    assert metric(tmp_path / "real", "trivial_answers")["value"] == 0.0


def test_marker_leaks(tmp_path: Path) -> None:
    twin = {"customer_id": "CUS-0901", "full_name": "Ada Moss", "email": "twin.ada@example.net"}
    marked = shop_task("shop-1", initial_state=[{"op": "insert", "table": "customers", "rows": [twin]}])
    write_env(tmp_path / "marked", tasks=[marked])
    assert metric(tmp_path / "marked", "marker_leaks")["value"] == 1

    twin["email"] = "ada.moss@example.org"  # walt.x or salt.y would not be markers either
    write_env(
        tmp_path / "clean",
        tasks=[shop_task("shop-1", initial_state=[{"op": "insert", "table": "customers", "rows": [twin]}])],
    )
    assert metric(tmp_path / "clean", "marker_leaks")["met"] is True


@pytest.mark.parametrize(
    ("instruction", "reasons"),
    [
        ("Please cancel ORD-0002.", {"id_code": 1, "primary_key": 1}),
        ("Cancel the order, status: open, from my account.", {"field_dump": 1}),
        ("Cancel the order I placed at 2026-01-02 10:15.", {"machine_datetime": 1}),
        ("Cancel my order from last Tuesday — the blue lamp one.", {}),
    ],
)
def test_code_leaks(tmp_path: Path, instruction: str, reasons: dict[str, int]) -> None:
    write_env(tmp_path, tasks=[shop_task("shop-1", instruction=instruction)])
    leaks = metric(tmp_path, "code_leaks")
    assert leaks["detail"]["by_reason"] == reasons
    assert leaks["met"] is (not reasons)


def test_split_hygiene(tmp_path: Path) -> None:
    tasks = [
        shop_task("shop-1", split="train", instruction="Please cancel my second order, I do not need it any more."),
        shop_task("shop-2", split="test", instruction="Please cancel my second order, I do not need it anymore!"),
        shop_task(
            "shop-3",
            split="test",
            name="Ben Ortiz",
            instruction="Ben here. Pay one dollar on my order.",
            gold=[("pay_order", {"order_id": "ORD-0003", "amount_cents": 100})],
        ),
    ]
    write_env(tmp_path / "leaky", tasks=tasks)
    leaky = metric(tmp_path / "leaky", "split_hygiene")
    assert leaky["value"] == {
        "same_effect_pairs": 1,
        "similar_wording_pairs": 1,
        "test_principal_in_train": 1,
        "held_out_envs": 0,
    }
    assert leaky["detail"]["same_effect"] == ["shop: shop-1 ~ shop-2"] and leaky["met"] is False

    write_env(tmp_path / "clean", tasks=[shop_task("shop-1", split="train")])
    write_env(tmp_path / "clean", "held", tasks=[shop_task("held-1", split="test")])
    clean = metric(tmp_path / "clean", "split_hygiene")
    assert clean["value"]["held_out_envs"] == 1 and clean["met"] is True


def run_file(folder: Path, agent: str, successes: list[bool], env_id: str = "shop") -> Path:
    folder.mkdir(parents=True)
    records = [
        {"env_id": env_id, "task_id": f"t{i}", "agent": agent, "status": "ok", "reward": float(s), "success": s}
        for i, s in enumerate(successes)
    ]
    records.append({"env_id": env_id, "task_id": "tx", "agent": agent, "status": "infra_error", "reward": None})
    (folder / "trajectories.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return folder


def test_baselines(tmp_path: Path) -> None:
    write_env(tmp_path / "envs")
    assert metric(tmp_path / "envs", "baselines")["met"] is None  # none given

    noop = run_file(tmp_path / "noop", "noop", [False] * 10)
    rand = run_file(tmp_path / "random", "random", [False] * 10)
    good = run_file(tmp_path / "heuristic", "heuristic", [True] + [False] * 9)
    met = metric(tmp_path / "envs", "baselines", [noop, rand, good / "trajectories.jsonl"])
    assert (met["value"], met["met"]) == ({"heuristic": 0.1, "noop": 0.0, "random": 0.0}, True)

    strong = run_file(tmp_path / "strong", "heuristic", [True, True, False, False])
    other_env = run_file(tmp_path / "elsewhere", "noop", [True], env_id="library")  # not a synthesized env here
    unmet = metric(tmp_path / "envs", "baselines", [noop, rand, strong, other_env])
    assert unmet["value"] == {"heuristic": 0.5, "noop": 0.0, "random": 0.0} and unmet["met"] is False
    assert unmet["detail"]["agents"]["noop"]["all_success_rate"] == round(1 / 11, 3)

    partial = metric(tmp_path / "envs", "baselines", [noop])
    assert partial["met"] is False and partial["detail"]["missing_agents"] == ["heuristic", "random"]


def test_nothing_is_met_on_an_empty_fleet(tmp_path: Path) -> None:
    report = quality_metrics(tmp_path)
    assert {m["met"] for m in report["metrics"].values()} == {None}
    assert report["metrics_summary"]["measured_envs"] == 0


def test_a_folder_that_does_not_load_is_reported_not_measured(tmp_path: Path) -> None:
    write_env(tmp_path, "shop")
    write_env(tmp_path, "broken", spec=shop_spec(tables=[]))
    report = quality_metrics(tmp_path)
    assert report["metrics_summary"]["measured_envs"] == 1 and list(report["load_errors"]) == ["broken"]


# -- the command --------------------------------------------------------------------------------


def stats(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, "synth", "stats", *args], capture_output=True, text=True, timeout=300)


def test_the_command_prints_metrics_with_targets_and_json_carries_everything(tmp_path: Path) -> None:
    write_env(tmp_path / "envs")
    noop = run_file(tmp_path / "noop", "noop", [False, False])

    shown = stats("--env-root", str(tmp_path / "envs"), "--baselines", str(noop))
    assert shown.returncode == 0, shown.stderr
    lines = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.count("│") >= 4}
    assert "unmet" in lines["write_tools_enforcing_rule"] and "≥ 0.60" in lines["write_tools_enforcing_rule"]
    assert "met" in lines["invariant_violations"] and "unmet" not in lines["invariant_violations"]
    assert "n/a" in lines["staff_only_obeyed"]

    as_json = stats("--env-root", str(tmp_path / "envs"), "--baselines", str(noop), "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["environments"] == 1 and report["metrics_summary"]["measured_envs"] == 1
    assert report["metrics"]["baselines"]["value"] == {"noop": 0.0}
    assert report["metrics"]["write_tools_multi_table"] == {
        "value": 0.333,
        "target": "≥ 0.40",
        "met": False,
        "detail": {"multi_table": 1, "write_tools": 3, "per_env": {"shop": "1/3"}},
    }

    missing = stats("--env-root", str(tmp_path / "envs"), "--baselines", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "notes.txt").write_text("not json\n", encoding="utf-8")
    garbled = stats("--env-root", str(tmp_path / "envs"), "--baselines", str(tmp_path / "notes.txt"))
    assert garbled.returncode == 2 and "is not the results of an envfleet run" in garbled.stderr
    assert "Traceback" not in garbled.stderr
