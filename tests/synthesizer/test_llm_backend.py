"""The LLM backend against a local OpenAI-compatible stub (real HTTP on 127.0.0.1) serving scripted,
realistic replies: fenced JSON with prose, schema violations, SQL that does not parse, a tool that
fails its probes, refusals, 429s, timeouts. The repair loop fixes what it can, reports what it
cannot, never publishes an environment that fails a gate, and a replay from the cache with the
stub stopped gives the same bytes."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from servers import Registry
from synthesizer import policies, rules
from synthesizer.catalog import Domain, load_catalog
from synthesizer.llm import LLMClient, LLMConfig, prompts
from synthesizer.llm import domains as domains_module
from synthesizer.llm.config import LLMConfigError
from synthesizer.llm.mining import mine_corpus_with_llm
from synthesizer.llm.replies import ReplyProblem, parse_json_reply
from synthesizer.pipeline import Job, _build
from tests.conftest import ENVFLEET
from tests.openai_stub import Fault, OpenAIStub, fenced

HERE = Path(__file__).parent
DOMAIN = json.loads((HERE / "llm_replies" / "pet_boarding_domain.json").read_text())
TOPIC = "veterinary clinic with boarding"


@pytest.fixture
def stub():
    with OpenAIStub().running() as running:
        yield running


def config_file(tmp_path: Path, **settings: Any) -> Path:
    values = {
        "model": "stub-model",
        "timeout": 1.5,
        "backoff": 0.01,
        "max_retries": 3,
        "max_rounds": 3,
        "concurrency": 2,
        "temperature": 0.0,
        "seed": 11,
        **settings,
    }
    lines = ["[llm]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += ["[llm.prices]", '"stub-model" = { input = 1.0, output = 2.0 }']
    path = tmp_path / "llm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def synth(
    tmp_path: Path, base_url: str, *args: str, root: str = "out", api_key: str = "sk-test"
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": api_key,
        "ENVFLEET_LLM_CACHE": str(tmp_path / "cache"),
    }
    env.pop("ENVFLEET_MODEL", None)
    return subprocess.run(
        [
            *ENVFLEET,
            "synth",
            "--backend",
            "llm",
            "--llm-config",
            str(tmp_path / "llm.toml"),
            "--env-root",
            str(tmp_path / root / "envs"),
            "--registry",
            str(tmp_path / root / "registry.json"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- scripted replies ------------------------------------------------------------------------------


def broken_domain() -> dict[str, Any]:
    data = copy.deepcopy(DOMAIN)
    stay = data["domain"]["entities"][3]
    stay["lifecycle"]["initial"] = "reserved"  # not one of its states
    stay["relations"][2]["to"] = "kennel"  # no such entity (the suite's relation: the suite rule loses it too)
    return data


def seed_values(body: dict[str, Any]) -> str:
    names = [
        "Maple Suite",
        "Birch Suite",
        "Cedar Suite",
        "Willow Loft",
        "Oak Den",
        "Aspen Room",
        "Juniper Suite",
        "Pine Nook",
        "Elm Studio",
        "Hazel Corner",
        "Rowan Suite",
        "Linden Loft",
        "Alder Den",
        "Spruce Room",
    ]
    return json.dumps(
        {
            "values": {
                "suite.suite_name": names,
                "pet.care_notes": [
                    "Grain-free kibble twice a day",
                    "Gets anxious at night; leave the radio on",
                    "Half a pill of carprofen with breakfast",
                    "Friendly with other dogs",
                    "Prefers wet food, no chicken",
                    "Needs eye drops at 8pm",
                    "Pulls on the lead",
                    "Sleeps in his own blanket",
                    "Senior cat, soft food only",
                    "Loves fetch, no rawhide",
                    "Allergic to beef",
                    "Shy with strangers at first",
                ],
                "stay.special_requests": [
                    "Extra evening walk",
                    "Bath before pick-up",
                    "Send a photo each day",
                    "Nail trim on day two",
                    "Keep away from cats",
                    "Medication at 7am and 7pm",
                    "Quiet suite please",
                    "Brush her coat daily",
                    "Two short walks instead of one long",
                    "Use the owner's food only",
                    "Call if she stops eating",
                    "Playtime with other small dogs",
                ],
            }
        }
    )


def seeded() -> dict[str, list[dict[str, Any]]]:
    """The world the CLI run will seed (proposed words never move ids or states)."""
    domain = Domain.model_validate(DOMAIN["domain"])
    return _build(domain, DOMAIN["sector"], Job(None, 1, topic=TOPIC)).seed


MOVE = {
    "name": "move_stay_to_suite",
    "kind": "write",
    "description": "Move a booked stay to another suite that has places left; the old suite gets its place back.",
    "parameters": {
        "type": "object",
        "required": ["stay_id", "suite_id"],
        "properties": {
            "stay_id": {"type": "string", "description": "The stay to move."},
            "suite_id": {"type": "string", "description": "The suite to move it to."},
        },
    },
    "steps": [
        {
            "kind": "require",
            "sql": "SELEC 1 FROM stays WHERE stay_id = :stay_id",
            "error": "No stay has the id {stay_id}.",
        },
        {
            "kind": "require",
            "sql": "SELECT 1 FROM stays WHERE stay_id = :stay_id AND status = 'booked'",
            "error": "Only booked stays can be moved; stay {stay_id} is not booked.",
            "rule": "move_only_booked",
        },
        {
            "kind": "require",
            "sql": "SELECT spaces_left >= 1 AS ok, spaces_left FROM suites WHERE suite_id = :suite_id",
            "expect": "true",
            "error": "Suite {suite_id} has no places left.",
            "rule": "suite_capacity",
        },
        {
            "kind": "exec",
            "sql": "UPDATE suites SET spaces_left = spaces_left + 1 WHERE suite_id = "
            "(SELECT suite_id FROM stays WHERE stay_id = :stay_id)",
        },
        {"kind": "exec", "sql": "UPDATE suites SET spaces_left = spaces_left - 1 WHERE suite_id = :suite_id"},
        {
            "kind": "exec",
            "sql": "UPDATE stays SET suite_id = :suite_id WHERE stay_id = :stay_id",
            "affects": "one",
            "error": "Stay {stay_id} could not be moved.",
        },
        {
            "kind": "return",
            "sql": "SELECT stay_id, suite_id, status FROM stays WHERE stay_id = :stay_id",
            "shape": "row",
        },
    ],
}
NOTE = {  # its rule is missing: the refusal it promises never comes
    "name": "add_special_request",
    "kind": "write",
    "description": "Add a special request to a stay that is still booked.",
    "parameters": {
        "type": "object",
        "required": ["stay_id", "request"],
        "properties": {
            "stay_id": {"type": "string", "description": "The stay."},
            "request": {"type": "string", "description": "What the owner asks for."},
        },
    },
    "steps": [
        {
            "kind": "require",
            "sql": "SELECT 1 FROM stays WHERE stay_id = :stay_id",
            "error": "No stay has the id {stay_id}.",
        },
        {"kind": "exec", "sql": "UPDATE stays SET special_requests = :request WHERE stay_id = :stay_id"},
        {"kind": "return", "message": "Noted for stay {stay_id}."},
    ],
}


def tool_replies() -> tuple[str, str]:
    seed = seeded()
    suites = {s["suite_id"]: s for s in seed["suites"]}
    booked = next(
        s
        for s in seed["stays"]
        if s["status"] == "booked" and any(v["spaces_left"] >= 1 and k != s["suite_id"] for k, v in suites.items())
    )
    free = next(k for k, v in suites.items() if v["spaces_left"] >= 1 and k != booked["suite_id"])
    full = next(k for k, v in suites.items() if v["spaces_left"] == 0 and k != booked["suite_id"])
    done = next(s for s in seed["stays"] if s["status"] == "checked_out")
    move_probes = {
        "succeeds": [{"stay_id": booked["stay_id"], "suite_id": free}],
        "fails": [
            {"arguments": {"stay_id": booked["stay_id"], "suite_id": full}, "because": "that suite is full"},
            {"arguments": {"stay_id": done["stay_id"], "suite_id": free}, "because": "the stay is over"},
        ],
    }
    note_probes = {
        "succeeds": [{"stay_id": booked["stay_id"], "request": "Extra walk"}],
        "fails": [{"arguments": {"stay_id": done["stay_id"], "request": "Extra walk"}, "because": "the stay is over"}],
    }
    first = {"tools": [{**MOVE, "probes": move_probes}, {**NOTE, "probes": note_probes}]}
    fixed = copy.deepcopy(first)
    fixed["tools"][0]["steps"][0]["sql"] = "SELECT 1 FROM stays WHERE stay_id = :stay_id"
    return fenced(first, "Sure! Two tools that staff would need:"), json.dumps(fixed)


def tasks_in(body: dict[str, Any]) -> list[dict[str, Any]]:
    text = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return json.loads(next(line for line in text.splitlines() if line.startswith("[{")))


def paraphrased(body: dict[str, Any], lose: bool = False) -> str:
    items = []
    for index, task in enumerate(tasks_in(body)):
        text = f"Hi! Quick request from a regular. {task['instruction']} Many thanks."
        if lose and index == 0 and len(task["must_keep"]) > 1:
            text = text.replace(task["must_keep"][-1], "the usual one")
        items.append(
            {"id": task["id"], "instruction": text, "persona": "A regular customer who writes short, friendly notes."}
        )
    return json.dumps({"tasks": items})


def script_happy_path(stub: OpenAIStub) -> None:
    stub.script("domain", fenced(broken_domain(), "Here is the domain model."), fenced(DOMAIN))
    stub.script("seed", Fault(429, headers={"Retry-After": "0"}), seed_values)
    stub.script("tools", *tool_replies())
    stub.script(
        "paraphrase",
        Fault(504, delay=3.0),
        "I'm sorry, but I can't help with that request.",
        lambda body: paraphrased(body, lose=True),
        paraphrased,
    )


# -- end to end ------------------------------------------------------------------------------------


def test_a_topic_becomes_a_served_environment_repaired_and_replayable(tmp_path: Path) -> None:
    config_file(tmp_path)
    with OpenAIStub().running() as stub:
        script_happy_path(stub)
        result = synth(tmp_path, stub.url, "--topic", TOPIC, "--tasks-per-env", "6")
        url = stub.url
    # the stub is stopped from here on
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    folder = tmp_path / "out" / "envs" / "pet_boarding_clinic"
    assert Registry.load(tmp_path / "out" / "registry.json").ids() == ["pet_boarding_clinic"]

    # the schema violations went back to the model, located
    feedback = stub.requests_for("domain")[1]["messages"][-1]["content"]
    assert "initial state 'reserved' is not a state" in feedback and "relation to unknown entity 'kennel'" in feedback
    assert (
        "domain: entities[3] (stay).lifecycle.initial:" in feedback
        and "domain: rules[1] (consumes on stay):" in feedback
    )
    # the SQL that did not parse, and the tool whose refusal never comes
    tool_feedback = stub.requests_for("tools")[1]["messages"][-1]["content"]
    assert "tools.move_stay_to_suite.steps[0](require).sql: does not parse" in tool_feedback
    assert "tools.add_special_request.probes (rule" in tool_feedback and "succeeded" in tool_feedback
    spec = json.loads((folder / "env.json").read_text())
    names = {t["name"] for t in spec["tools"]}
    assert "move_stay_to_suite" in names and "add_special_request" not in names  # fixed one kept, unfixable one dropped

    seed = json.loads((folder / "seed.json").read_text())
    assert {s["suite_name"] for s in seed["suites"]} <= set(json.loads(seed_values({}))["values"]["suite.suite_name"])
    tasks = [json.loads(line) for line in (folder / "tasks" / "synthesized.jsonl").read_text().splitlines()]
    assert len(tasks) == 6 and all(t["instruction"].startswith("Hi! Quick request from a regular.") for t in tasks)
    assert stub.requests_for("paraphrase")[-1]["messages"][-1]["content"].count("lost ") >= 1

    provenance = json.loads((folder / "provenance.json").read_text())["llm"]
    assert (
        provenance["backend"] == "llm"
        and provenance["prompt_version"]
        and provenance["models"]["domain"] == "stub-model"
    )
    assert provenance["rounds"]["domain"] == 2 and provenance["rounds"]["tools"] == 3
    assert (
        len(provenance["cache_keys"]) == len(stub.requests) - 2
    )  # every answered request, minus the 429 and the timeout
    entry = json.loads((tmp_path / "out" / "registry.json").read_text())["environments"][0]
    assert entry["provenance"]["llm"]["cache_keys"] == provenance["cache_keys"]
    assert re.search(r"total\s+│\s+\d+\s+│\s+0\s+│\s+[1-9]", result.stdout), result.stdout  # retries counted

    check = subprocess.run(
        [*ENVFLEET, "check", "--all", "--registry", str(tmp_path / "out" / "registry.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and "6/6 tasks pass every gate" in check.stdout, check.stdout + check.stderr

    replay = synth(tmp_path, url, "--topic", TOPIC, "--tasks-per-env", "6", "--replay", root="replay")
    assert replay.returncode == 0, replay.stderr
    assert folder_bytes(tmp_path / "replay" / "envs") == folder_bytes(tmp_path / "out" / "envs")
    again = synth(
        tmp_path, url, "--topic", TOPIC, "--tasks-per-env", "6", root="again"
    )  # no --replay: the cache answers
    assert again.returncode == 0, again.stderr
    assert folder_bytes(tmp_path / "again" / "envs") == folder_bytes(tmp_path / "out" / "envs")


def test_a_domain_that_cannot_be_repaired_is_reported_and_not_published(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path, max_rounds=2)
    stub.script("domain", fenced(broken_domain()))
    result = synth(tmp_path, stub.url, "--topic", TOPIC, "--stages", "domain")
    assert result.returncode == 1
    assert "still fails after 2 round(s)" in result.stderr and "'reserved' is not a state" in result.stderr
    assert not (tmp_path / "out" / "registry.json").exists() and not (tmp_path / "out" / "envs").exists()
    assert len(stub.requests_for("domain")) == 2


def test_a_domain_whose_rules_the_seed_cannot_meet_goes_back_with_the_failing_probes(
    stub: OpenAIStub, tmp_path: Path
) -> None:
    config_file(tmp_path, max_rounds=2)
    impossible = copy.deepcopy(DOMAIN)  # every pet unvaccinated: no stay can ever be created
    impossible["domain"]["entities"][1]["attributes"][2]["generator"] = "bool:0"
    stub.script("domain", json.dumps(impossible), json.dumps(DOMAIN))
    result = synth(tmp_path, stub.url, "--topic", TOPIC, "--stages", "domain", "--tasks-per-env", "3")
    assert result.returncode == 0, result.stderr
    feedback = stub.requests_for("domain")[1]["messages"][-1]["content"]
    assert "book_stay (positive" in feedback and "no active owner" in feedback


def test_review_gate_keeps_a_rejected_environment_out(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path)

    def verdicts(body: dict[str, Any]) -> str:
        text = body["messages"][1]["content"]
        tools = json.loads(text[text.index("Calls:\n") + 7 : text.index("\n\nAnswer")])
        return json.dumps(
            {
                "verdicts": [
                    {
                        "tool": t["tool"],
                        "ok": t["tool"] != "cancel_appointment",
                        "reason": "It cancels appointments that already started.",
                    }
                    for t in tools
                ]
            }
        )

    stub.script("review", "Sure, here you go: not JSON", verdicts)
    result = synth(tmp_path, stub.url, "--topic", "dental_clinic", "--stages", "review", "--tasks-per-env", "3")
    assert result.returncode == 1
    assert (
        "the reviewing model rejects tools: cancel_appointment: It cancels appointments that already started."
        in result.stderr
    )
    assert not (tmp_path / "out" / "registry.json").exists()


# -- the endpoint's failures are clear errors ------------------------------------------------------


def test_bad_key_unknown_model_and_unreachable_endpoint_are_clean_errors(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path)
    stub.key = "sk-right"
    refused = synth(tmp_path, stub.url, "--topic", TOPIC, "--stages", "domain", api_key="sk-wrong")
    assert refused.returncode == 1 and "refused the API key (HTTP 401: Incorrect API key provided.)" in refused.stderr
    config_file(tmp_path, model="no-such-model")
    unknown = synth(tmp_path, stub.url, "--topic", TOPIC, "--stages", "domain", api_key="sk-right")
    assert unknown.returncode == 1 and "does not serve model 'no-such-model'" in unknown.stderr
    config_file(tmp_path)
    unreachable = synth(tmp_path, "http://127.0.0.1:9/v1", "--topic", TOPIC, "--stages", "domain")
    assert (
        unreachable.returncode == 1
        and "cannot reach the LLM endpoint http://127.0.0.1:9/v1/chat/completions" in unreachable.stderr
    )
    missing = synth(tmp_path, stub.url, "--topic", TOPIC, "--replay", root="replay")
    assert missing.returncode == 1 and "was never recorded" in missing.stderr
    for result in (refused, unknown, unreachable, missing):
        assert "Traceback" not in result.stderr


def test_missing_model_and_bad_config_are_reported_before_any_call(tmp_path: Path) -> None:
    (tmp_path / "llm.toml").write_text("[llm]\ntemperature = 'hot'\n")
    result = synth(tmp_path, "http://127.0.0.1:9/v1", "--topic", TOPIC)
    assert result.returncode == 1 and "llm.temperature must be a float" in result.stderr
    (tmp_path / "llm.toml").write_text("[llm]\ntemperature = 0.1\n")
    result = synth(tmp_path, "http://127.0.0.1:9/v1", "--topic", TOPIC)
    assert result.returncode == 1 and "no model for the" in result.stderr and "ENVFLEET_MODEL" in result.stderr


# -- corpus mining with the judge ------------------------------------------------------------------


def test_the_judge_maps_requests_to_catalog_domains_and_new_topics(stub: OpenAIStub, tmp_path: Path) -> None:
    corpus = tmp_path / "requests.jsonl"
    texts = [
        "Cancel my dentist appointment on Friday.",
        "Cancel my dentist appointment on Friday!",
        "What is the capital of Peru?",
        "Book a boarding stay for my dog Rex next week.",
        "Reserve a kennel suite for my two cats in July.",
        "Renew the registration of my boat.",
    ]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))

    def judged(body: dict[str, Any]) -> str:
        labels = {
            "dentist": (True, "dental appointments", "dental_clinic"),
            "capital": (False, None, None),
            "boarding": (True, "pet boarding kennel", None),
            "kennel": (True, "kennel suite boarding", None),
            "boat": (True, "boat registration office", None),
        }
        lines = [line for line in body["messages"][1]["content"].splitlines() if re.match(r"^\d+\. ", line)]
        items = []
        for line in lines:
            index, text = line.split(". ", 1)
            stateful, topic, domain = next(v for k, v in labels.items() if k in text.lower())
            items.append({"index": int(index), "stateful": stateful, "topic": topic, "domain": domain})
        return fenced({"items": items})

    stub.script("judge", '{"items": [{"index": 0}]}', judged)
    config = LLMConfig.load(
        None, environ={}, base_url=stub.url, model="stub-model", cache_dir=tmp_path / "cache", backoff=0.01
    )
    with LLMClient(config) as client:
        report = mine_corpus_with_llm(client, load_catalog(), corpus)
    assert report.total == 6 and report.duplicates == 1 and report.stateful == 4
    assert dict(report.by_domain) == {"dental_clinic": 1}
    assert report.new_topics == {
        "pet boarding kennel": [
            "Book a boarding stay for my dog Rex next week.",
            "Reserve a kennel suite for my two cats in July.",
        ],
        "boat registration office": ["Renew the registration of my boat."],
    }
    assert "items[1]: missing" in stub.requests_for("judge")[1]["messages"][-1]["content"]


# -- pieces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('Here you go:\n```json\n{"a": {"b": [1, 2]}}\n```\nAnything else?', {"a": {"b": [1, 2]}}),
        ('Sure! {"a": "curly } in a string"} Hope that helps.', {"a": "curly } in a string"}),
        ('```\n{"a": 2}\n```', {"a": 2}),
    ],
)
def test_json_is_found_in_what_models_say(reply: str, expected: dict[str, Any]) -> None:
    assert parse_json_reply(reply) == expected


@pytest.mark.parametrize(
    ("reply", "message", "refusal"),
    [
        ("I'm sorry, but I can't help with that.", "declined", True),
        ('{"a": 1,, }', "does not parse", False),
        ("Nothing structured here.", "holds no JSON object", False),
        ("", "empty", False),
    ],
)
def test_unusable_replies_say_why(reply: str, message: str, refusal: bool) -> None:
    with pytest.raises(ReplyProblem, match=message) as caught:
        parse_json_reply(reply)
    assert caught.value.refusal is refusal


def test_config_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "llm.toml"
    path.write_text(
        '[llm]\nmodel = "file-model"\nbase_url = "http://file/v1"\ntemperature = 0.7\napi_key_env = "MY_KEY"\n'
        '[llm.models]\nparaphrase = "small-model"\n'
    )
    config = LLMConfig.load(
        path,
        environ={"OPENAI_BASE_URL": "http://env/v1", "MY_KEY": "k1", "ENVFLEET_MODEL_REVIEW": "judge-model"},
        temperature=0.0,
    )
    assert (config.base_url, config.model, config.api_key, config.temperature) == (
        "http://env/v1",
        "file-model",
        "k1",
        0.0,
    )
    assert config.model_for("paraphrase") == "small-model" and config.model_for("review") == "judge-model"
    assert config.model_for("domain") == "file-model"
    path.write_text('[llm]\nmodels = { writer = "x" }\n')
    with pytest.raises(LLMConfigError, match="unknown stage 'writer'"):
        LLMConfig.load(path, environ={})


def test_paraphrase_only_rewords_a_procedural_environment(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path)
    stub.script("paraphrase", paraphrased)
    result = synth(tmp_path, stub.url, "--topic", "dental clinic", "--paraphrase", "--tasks-per-env", "4")
    assert result.returncode == 0, result.stderr
    assert {stage for stage in map(lambda r: r["messages"][1]["content"][:20], stub.requests)} == {
        "Customers of a ficti"
    }
    folder = tmp_path / "out" / "envs" / "dental_clinic"
    procedural = json.loads((Path(__file__).parents[2] / "servers" / "envs" / "dental_clinic" / "env.json").read_text())
    assert json.loads((folder / "env.json").read_text())["tools"] == procedural["tools"]
    tasks = [json.loads(line) for line in (folder / "tasks" / "synthesized.jsonl").read_text().splitlines()]
    assert all(t["instruction"].startswith("Hi! Quick request") for t in tasks)
    assert all(t["user"]["persona"] == "A regular customer who writes short, friendly notes." for t in tasks)


def test_one_environment_failing_does_not_cost_the_batch(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path, max_rounds=1)
    unseedable = copy.deepcopy(DOMAIN)  # an integer attribute generated from people's names
    unseedable["domain"]["entities"][2]["attributes"][3]["generator"] = "name"
    stub.script("domain", json.dumps(unseedable))
    result = synth(
        tmp_path, stub.url, "--topic", TOPIC, "--topic", "dental_clinic", "--stages", "domain", "--tasks-per-env", "3"
    )
    assert result.returncode == 1, (
        result.stderr
    )  # fewer than asked (--allow-partial accepts that), but the batch went on
    assert "shortfall: 1 of 2 planned environment(s) not published" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    assert Registry.load(tmp_path / "out" / "registry.json").ids() == [
        "dental_clinic"
    ]  # a catalog id stays the catalog's
    assert "suite.spaces_left: generator 'name' cannot make integer values" in result.stderr


def test_endpoint_that_keeps_failing_or_is_out_of_quota(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path, max_retries=2)
    stub.script("domain", Fault(503))
    result = synth(tmp_path, stub.url, "--topic", TOPIC, "--stages", "domain")
    assert (
        result.returncode == 1
        and "kept failing for the 'domain' stage after 3 attempt(s); last: HTTP 503" in result.stderr
    )
    stub.script(
        "domain", Fault(429, {"error": {"message": "You exceeded your current quota.", "code": "insufficient_quota"}})
    )
    result = synth(tmp_path, stub.url, "--topic", TOPIC, "--stages", "domain")
    assert result.returncode == 1 and "out of quota" in result.stderr
    assert len(stub.requests_for("domain")) == 4  # three tries, then one: quota is not retried
    assert "Traceback" not in result.stderr


class ScriptedClient:
    """A stand-in for the model inside one stage: replies in order, and the conversations it got."""

    def __init__(self, *replies: str) -> None:
        self.config = LLMConfig(model="m", max_rounds=len(replies))
        self.replies = list(replies)
        self.conversations: list[list[dict[str, str]]] = []

    def chat(self, stage: str, messages: list[dict[str, str]], *, json_reply: bool = True) -> Any:
        from synthesizer.llm.client import Reply

        self.conversations.append(list(messages))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return Reply(reply, f"key{len(self.conversations)}", False, "m", "stop")


@pytest.mark.parametrize(
    ("stage", "bad", "problem"),
    [
        ("judge", '{"items": [{"index": [0], "stateful": true, "topic": "x y"}]}', "index: a whole number is needed"),
        ("judge", '{"items": ' + "[" * 5000 + "]" * 5000 + "}", "nests too deeply"),
        ("paraphrase", '{"tasks": 5}', "tasks: a list of"),
        ("paraphrase", '{"tasks": [{"id": ["t"], "instruction": "x", "persona": "y"}]}', "no instruction and persona"),
        ("review", '{"verdicts": 3}', "verdicts: a list of"),
        (
            "tools",
            '{"tools": [{"name": "x", "kind": "write", "probes": {"succeeds": 5, "fails": 5}}]}',
            "probes.succeeds: give",
        ),
    ],
)
def test_replies_of_the_wrong_shape_go_back_as_problems(stage: str, bad: str, problem: str) -> None:
    from servers import Environment
    from synthesizer.llm.mining import mine_requests_with_llm
    from synthesizer.llm.paraphrase import paraphrase_tasks
    from synthesizer.llm.review import review_tools
    from synthesizer.llm.tools import propose_tools
    from synthesizer.modeling import build_spec, design_domain
    from synthesizer.procedural_tests import run_procedural_tests

    client = ScriptedClient(bad, "{}")
    catalog = load_catalog()
    if stage == "judge":
        mine_requests_with_llm(client, catalog, ["Cancel my dentist appointment."])
    else:
        design = design_domain(catalog.domain("dental_clinic"), seed=1)
        spec = build_spec(design)
        env = Environment.load(Path(__file__).parents[2] / "servers" / "envs" / "dental_clinic")
        if stage == "paraphrase":
            paraphrase_tasks(client, env.tasks[:1], "dental clinic")
        elif stage == "review":
            review_tools(client, env, run_procedural_tests(env, design))
        else:
            propose_tools(client, spec, json.loads((env.path / "seed.json").read_text()), design)
    assert len(client.conversations) >= 2
    assert problem in client.conversations[1][-1]["content"]


ENVIRONMENT = json.loads((HERE / "llm_replies" / "bike_rental_env.json").read_text())


def test_a_model_written_environment_with_its_tasks(stub: OpenAIStub, tmp_path: Path) -> None:
    config_file(tmp_path)
    fixed = copy.deepcopy(ENVIRONMENT)
    fixed["spec"]["tools"][5]["steps"][0]["sql"] = (
        "SELECT 1 FROM rentals WHERE rental_id = :rental_id AND status = 'active'"
    )
    stub.script("spec", fenced(ENVIRONMENT, "Here is the environment:"), json.dumps(fixed))
    rent = {
        "instruction": "Hi, Marta Oliveira here (555-0101). I'd like a mountain bike for 2 days, please.",
        "user": {
            "persona": "A visitor on holiday.",
            "known": {"name": "Marta Oliveira", "phone": "555-0101"},
            "unknown": ["ids"],
        },
        "gold": [
            {"tool": "find_customer", "arguments": {"name": "Marta"}},
            {"tool": "search_bikes", "arguments": {"kind": "mountain"}},
            {"tool": "rent_bike", "arguments": {"customer_id": "CUS-001", "bike_id": "BK-02", "days": 2}},
        ],
    }
    returned = {
        "instruction": "This is Tom Becker. I'm bringing back the electric bike I rented yesterday.",
        "user": {"persona": "A local commuter.", "known": {"name": "Tom Becker"}, "unknown": []},
        "gold": [
            {"tool": "find_customer", "arguments": {"name": "Tom Becker"}},
            {"tool": "list_rentals", "arguments": {"customer_id": "CUS-002"}},
            {"tool": "return_bike", "arguments": {"rental_id": "RNT-0002"}},
        ],
    }
    leaky = {
        "instruction": "Aiko Tanaka: please rent me bike BK-05 for 3 days.",
        "user": {"persona": "A student."},
        "gold": [
            {"tool": "find_customer", "arguments": {"name": "Aiko"}},
            {"tool": "rent_bike", "arguments": {"customer_id": "CUS-003", "bike_id": "BK-05", "days": 3}},
        ],
    }
    looking = {
        "instruction": "Which electric bikes do you have?",
        "user": {"persona": "Curious."},
        "gold": [{"tool": "search_bikes", "arguments": {"kind": "electric"}}],
    }
    first = {"tasks": [rent, returned, leaky, looking]}
    second = copy.deepcopy(first)
    second["tasks"][1]["gold"][2]["arguments"]["rental_id"] = "RNT-0001"
    second["tasks"][2]["instruction"] = "Aiko Tanaka: please rent me the Specialized Turbo Vado for 3 days."
    second["tasks"][3] = {
        "instruction": "Tom Brennan here; an electric bike for one day, and what does it cost per day?",
        "user": {"persona": "In a hurry.", "known": {"name": "Tom Brennan"}},
        "gold": [
            {"tool": "find_customer", "arguments": {"name": "Tom Brennan"}},
            {"tool": "search_bikes", "arguments": {"kind": "electric"}},
            {"tool": "rent_bike", "arguments": {"customer_id": "CUS-004", "bike_id": "BK-05", "days": 1}},
        ],
        "answer": {"facts": ["42"]},
    }
    stub.script("spec_tasks", json.dumps(first), json.dumps(second))
    result = synth(tmp_path, stub.url, "--topic", "seaside bike rental", "--stages", "spec", "--tasks-per-env", "4")
    assert result.returncode == 0, result.stdout + result.stderr
    spec_feedback = stub.requests_for("spec")[1]["messages"][-1]["content"]
    assert "spec.tools.return_bike.steps[0](require).sql: does not parse" in spec_feedback
    task_feedback = stub.requests_for("spec_tasks")[1]["messages"][-1]["content"]
    assert "tasks[1].gold[2] (return_bike): failed: Rental RNT-0002 is not active." in task_feedback
    assert "tasks[2].instruction: states internal id(s) BK-05" in task_feedback
    assert "tasks[3]: the gold calls change nothing" in task_feedback
    folder = tmp_path / "out" / "envs" / "bike_rental"
    tasks = [json.loads(line) for line in (folder / "tasks" / "synthesized.jsonl").read_text().splitlines()]
    assert len(tasks) == 4 and tasks[3]["answer"] == {"facts": ["42"]}
    check = subprocess.run(
        [*ENVFLEET, "check", "--all", "--registry", str(tmp_path / "out" / "registry.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert check.returncode == 0 and "4/4 tasks pass every gate" in check.stdout, check.stdout + check.stderr
    provenance = json.loads((folder / "provenance.json").read_text())["llm"]
    assert provenance["stages"] == ["spec"] and provenance["rounds"] == {"spec": 2, "spec_tasks": 2}


def test_the_domain_prompt_teaches_the_world_vocabulary_from_the_registries() -> None:
    catalog = load_catalog()
    text = prompts.domain(
        TOPIC,
        {},
        domains_module._example(catalog, TOPIC),
        ["health"],
        rules.vocabulary(),
        "",
        operations_help=domains_module.operations_vocabulary(),
        policies_help=policies.vocabulary(),
    )[1]["content"]
    for kind in ("quote", "book", "pay", "cancel", "transfer", "compensate", "update", "create"):
        assert f"* {kind} {{" in text, kind
    for kind in policies.POLICIES:
        assert f"* {kind}" in text, kind
    assert '"legacy": false' in text and '"principals"' in text  # the example is a world domain
