"""The offline synthesizer, stage by stage and end to end."""

from __future__ import annotations

import copy
import gc
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servers import Environment, Registry, StateCopy
from servers.episodes import staging_folders
from servers.spec import GoldCall, UserScenario
from synthesizer.catalog import load_catalog
from synthesizer.dependency_graph import build_graph
from synthesizer.modeling import build_spec, design_domain
from synthesizer.pipeline import Job, plan_batch, publish_result, synthesize
from synthesizer.procedural_tests import run_procedural_tests
from synthesizer.publish import STALE_AFTER, TEMP_PREFIX, clean_stale, temp_folder
from synthesizer.seeding import seed_rows
from synthesizer.task_synthesis import _Draft, _Synthesizer, synthesize_tasks
from synthesizer.topics import NoMatchingDomain, is_stateful, match_topic, mine_corpus, read_corpus
from tests.conftest import ENVFLEET, REPO

CORPUS = (
    Path(__file__).parent / "fixtures" / "user_requests.jsonl"
)  # 30 stateful requests, then 10 look-ups and chit-chat


@pytest.fixture(scope="module")
def dental():
    design = design_domain(load_catalog().domain("dental_clinic"), seed=3)
    spec = build_spec(design)
    env = Environment.from_spec(spec, seed_rows(design))
    return design, spec, env


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, *args], capture_output=True, text=True, timeout=timeout)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_environments(tmp_path: Path) -> None:
    for name in ("a", "b"):
        result = run(
            "synth",
            "--topic",
            "dental clinic",
            "--seed",
            "7",
            "--tasks-per-env",
            "8",
            "--env-root",
            str(tmp_path / name / "envs"),
            "--registry",
            str(tmp_path / name / "registry.json"),
        )
        assert result.returncode == 0, result.stderr
    first, second = folder_bytes(tmp_path / "a" / "envs"), folder_bytes(tmp_path / "b" / "envs")
    assert first == second and "dental_clinic/env.json" in first and "dental_clinic/tasks/synthesized.jsonl" in first
    other = synthesize(Job("dental_clinic", seed=8, tasks=8))
    assert json.dumps(other.stages["seed"]) != json.loads(first["dental_clinic/seed.json"])


def test_a_small_batch_passes_the_gates_through_mcp(tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    for job in plan_batch(2, seed=5, tasks=6, domains=["dental_clinic"]):
        result = synthesize(job)
        assert result.ok, result.reason
        publish_result(result, tmp_path / "envs", registry)
    assert Registry.load(registry).ids() == ["dental_clinic", "dental_clinic_v1"]
    check = run("check", "--all", "--registry", str(registry))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "12/12 tasks pass every gate" in check.stdout


def test_a_batch_is_planned_over_the_migrated_domains_across_sectors() -> None:
    catalog = load_catalog()
    jobs = plan_batch(len(catalog.world_ids()) + 1, seed=1, tasks=4)
    planned = [job.domain_id for job in jobs]
    assert set(planned) == set(catalog.world_ids()) and all(catalog.domain(d).world for d in planned)
    assert [job.variant for job in jobs][-1] == 1  # the pass over every domain done, variants follow
    sectors = [catalog.sector_of[d] for d in planned[: len({catalog.sector_of[d] for d in planned})]]
    assert len(set(sectors)) == len(sectors)  # round robin: one domain per sector before any sector repeats
    held = {job.domain_id for job in jobs if job.held_out}
    assert held == {planned[len(catalog.world_ids()) - 1]}  # the last of the first pass, in every variant


def test_a_held_out_environment_has_only_test_tasks() -> None:
    result = synthesize(Job("airline_booking", seed=1, tasks=6, held_out=True))
    assert result.ok, result.reason
    tasks = result.stages["tasks"]
    assert tasks and {t["split"] for t in tasks} == {"test"}
    assert result.provenance()["held_out"] is True
    assert "held_out" not in synthesize(Job("airline_booking", seed=1, tasks=2)).provenance()


def test_procedural_tests_pass_a_good_spec_and_catch_broken_ones(dental) -> None:
    design, spec, env = dental
    report = run_procedural_tests(env, design)
    assert report.passed and report.score == 1.0 and len(report.probes) > 60

    broken = copy.deepcopy(spec)  # book_appointment loses its upcoming-appointments limit
    tool = next(t for t in broken["tools"] if t["name"] == "book_appointment")
    tool["steps"] = [s for s in tool["steps"] if not s.get("rule", "").startswith("limit_per_owner")]
    report = run_procedural_tests(Environment.from_spec(broken, seed_rows(design)), design)
    assert not report.passed
    assert any(p.tool == "book_appointment" and p.kind == "rule" and "succeeded" in p.detail for p in report.failures())

    broken = copy.deepcopy(spec)  # update_contact_details also writes a table it does not declare
    tool = next(t for t in broken["tools"] if t["name"] == "update_contact_details")
    tool["steps"].insert(
        -1, {"kind": "exec", "sql": "UPDATE sessions SET slots_left = slots_left + 1 WHERE :patient_id IS NOT NULL"}
    )
    report = run_procedural_tests(Environment.from_spec(broken, seed_rows(design)), design)
    assert any(
        p.tool == "update_contact_details" and "wrote undeclared table(s) ['sessions']" in p.detail
        for p in report.failures()
    )


def test_dependency_graph_edges(dental) -> None:
    _, _, env = dental
    graph = build_graph(env)
    assert "field:patient_id" in graph.edges["find_patient", "book_appointment"]["via"]
    assert "field:appointment_id" in graph.edges["list_appointments_for_patient", "cancel_appointment"]["via"]
    assert "state:appointments" in graph.edges["cancel_appointment", "book_appointment"]["via"]
    assert not graph.has_edge("search_dentists", "find_patient")  # nothing a search of dentists gives it
    assert ("book_appointment", "book_appointment") not in graph.edges


def open_state_copies() -> set[int]:
    """Every state copy whose SQLite connection is still open, reachable or not (the caller holds the collector off)."""
    found = set()
    for thing in gc.get_objects():
        if isinstance(thing, StateCopy):
            try:
                thing.conn.total_changes  # noqa: B018 -- raises on a closed connection
            except sqlite3.ProgrammingError:
                continue
            found.add(id(thing))
    return found


def test_task_synthesis_closes_every_state_copy_it_opens_whatever_the_verdict(dental) -> None:
    design, _, env = dental
    user = UserScenario(persona="someone")
    failing = _Draft(
        "x", "x", "Hi.", "Do it.", user, [GoldCall(tool="get_patient", arguments={"patient_id": "PAT-9999"})]
    )
    idle = _Draft("x", "x", "Hi.", "Look them up.", user, [GoldCall(tool="search_dentists", arguments={})])
    gc.collect()
    # a leaked copy sits in a reference cycle (its connection calls back into it): the collector would hide it
    gc.disable()
    try:
        before = open_state_copies()
        synth = _Synthesizer(env, design, build_graph(env), seed=1)
        assert synth.finish(failing, "t-1", "train") is None and synth.finish(idle, "t-2", "train") is None
        assert synth.stats.failures == {"gold_error": 1, "no_change": 1}
        synth.state.close()
        assert open_state_copies() == before
        tasks, stats = synthesize_tasks(env, design, build_graph(env), count=4, seed=2)
        assert tasks
        assert open_state_copies() == before
    finally:
        gc.enable()


def test_tasks_have_distractors_the_gold_chain_leaves_alone() -> None:
    result = synthesize(Job("auto_insurance_claims", seed=1, tasks=20))
    assert result.ok
    tasks = result.stages["tasks"]
    prefixes = tuple(f"{s['prefix']}-" for s in result.stages["spec"]["sequences"])
    with_twins = [t for t in tasks if any(c["op"] == "insert" for c in t.get("initial_state", []))]
    assert len(with_twins) >= 3
    env = Environment.from_spec(result.stages["spec"], result.stages["seed"])
    for task in with_twins:
        inserted = {
            (c["table"], next(k for k in c["rows"][0] if k.endswith("_id") and c["rows"][0][k].split("-")[1] >= "0900"))
            for c in task["initial_state"]
            if c["op"] == "insert"
        }
        touched = " ".join(json.dumps(call["arguments"]) for call in task["gold"])
        for table, key_column in inserted:
            row = next(c["rows"][0] for c in task["initial_state"] if c["table"] == table)
            assert row[key_column] not in touched, (task["id"], row[key_column])
        assert not any(prefix in task["instruction"] for prefix in prefixes)  # no id in the user's words
    assert env.id == "auto_insurance_claims"


@pytest.mark.parametrize(
    "where", ["_entry", "_write_registry"]
)  # while staging; inside the lock, after the folder swap
def test_publish_killed_midway_leaves_a_valid_complete_registry(tmp_path: Path, where: str) -> None:
    registry, root = tmp_path / "registry.json", tmp_path / "envs"
    first = synthesize(Job("dental_clinic", seed=2, tasks=3))
    publish_result(first, root, registry)
    before = registry.read_text()
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from synthesizer import publish\n"
        "from synthesizer.pipeline import Job, synthesize\n"
        "result = synthesize(Job('dental_clinic', seed=2, variant=1, tasks=3, env_id='dental_clinic'))\n"
        f"original = publish.{where}\n"
        "def slow(*args):\n"
        "    print('stopping here', flush=True); time.sleep(30); return original(*args)\n"
        f"publish.{where} = slow\n"
        f"publish.publish_folder(Path({str(root)!r}), result.env_id, result.files, Path({str(registry)!r}), {{}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "stopping here"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert registry.read_text() == before  # the old registry, whole
    listed = Registry.load(registry)
    assert listed.ids() == ["dental_clinic"]
    Environment.load(listed.folder("dental_clinic"))  # what it lists is complete
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["dental_clinic"]  # leftovers stay hidden
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers and all(name.startswith(TEMP_PREFIX) for name in leftovers)  # recognisable by their prefix
    again = synthesize(Job("dental_clinic", seed=2, variant=2, tasks=3))
    publish_result(again, root, registry)  # the dead publisher's lock is gone with it
    assert Registry.load(registry).ids() == ["dental_clinic", "dental_clinic_v2"]
    assert sorted(p.name for p in root.iterdir()) == ["dental_clinic", "dental_clinic_v2"]  # and its leftovers too


def test_publishing_cleans_leftovers_but_never_a_live_publishers_folder(tmp_path: Path) -> None:
    registry, root = tmp_path / "registry.json", tmp_path / "envs"
    root.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(gone.stdout)  # a process that has exited: its staging folder is a leftover
    live = temp_folder(root, "staging", "other_env")  # this process's: a publisher that is still writing
    dead = live.with_name(live.name.replace(f".{os.getpid()}.", f".{dead_pid}.", 1))
    elsewhere = (
        root / f"{TEMP_PREFIX}other_env-0123456789ab.staging.{dead_pid}.another-host"
    )  # another machine's, recent
    old_elsewhere = (
        root / f"{TEMP_PREFIX}other_env-0123456789ac.old.{dead_pid}.another-host"
    )  # ... and untouched for long
    foreign = root / f"{TEMP_PREFIX}other_env-5e1f"  # another writer's staging (no owner in its name), recent
    legacy = root / ".other_env.0123456789ab.tmp"  # an earlier version's name, untouched for long
    unrelated = root / ".git"  # not a staging folder: never touched
    for folder in (live, dead, elsewhere, old_elsewhere, foreign, legacy, unrelated):
        (folder / "tasks").mkdir(parents=True)
        (folder / "env.json").write_text("{}")
    for folder in (old_elsewhere, legacy, unrelated):
        for path in (*folder.rglob("*"), folder):
            os.utime(path, (time.time() - 2 * STALE_AFTER,) * 2)
    runtime_sees = {
        leftover.path.name for leftover in staging_folders(root)
    }  # the runtime's `registry check` convention
    assert runtime_sees == {p.name for p in root.iterdir()} - {unrelated.name}
    publish_result(synthesize(Job("dental_clinic", seed=2, tasks=2)), root, registry)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["dental_clinic", live.name, elsewhere.name, foreign.name, unrelated.name]
    )
    assert clean_stale(root, registry) == []  # and the live ones stay live
    assert clean_stale(root, registry, stale_after=-1) == sorted(
        [live.name, elsewhere.name, foreign.name]
    )  # once old enough


def test_corpus_mining_finds_stateful_requests_and_sectors() -> None:
    texts = read_corpus(CORPUS)
    assert len(texts) == 40
    assert [is_stateful(t) for t in texts] == [True] * 30 + [False] * 10  # bookings, payments ... then look-ups
    report = mine_corpus(load_catalog(), CORPUS)
    assert report.total == 40 and report.stateful == 30
    assert report.duplicates == 1  # the dentist booking asked twice
    assert {"health", "hospitality", "travel", "finance", "retail", "government"} <= set(report.by_sector)
    assert report.by_domain["dental_clinic"] == 2 and report.by_domain["hotel_front_desk"] == 2
    assert "Book a hot air balloon ride over the canyon for my anniversary." in report.unmatched  # no catalog domain
    assert sum(report.by_domain.values()) + len(report.unmatched) + report.duplicates == report.stateful
    assert is_stateful("Book a table for two at an Italian restaurant tonight.")
    assert not is_stateful("What are the symptoms of the flu?")


def test_tests_read_nothing_outside_the_repository() -> None:
    """A plain clone passes the suite: no test names a path beside the checkout (a sibling corpora folder and the
    like)."""
    outside = re.compile(r"REPO\.parent|\.\./shared|shared[/]corpora|/work[/]")  # (written so it does not match itself)
    offenders = [
        f"{p.relative_to(REPO)}:{n}"
        for p in sorted((REPO / "tests").rglob("*.py"))
        if "node_modules" not in p.parts
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if outside.search(line)
    ]
    assert offenders == []


def test_topic_matching() -> None:
    catalog = load_catalog()
    assert match_topic(catalog, "dental clinic").domain_id == "dental_clinic"
    assert match_topic(catalog, "I need to see a dentist about my teeth").domain_id == "dental_clinic"
    with pytest.raises(NoMatchingDomain, match="no catalog domain fits 'underwater basket weaving'"):
        match_topic(catalog, "underwater basket weaving")


def test_dry_run_keeps_every_stage(tmp_path: Path) -> None:
    result = run(
        "synth",
        "--topic",
        "dental_clinic",
        "--tasks-per-env",
        "4",
        "--dry-run",
        "--out",
        str(tmp_path),
        "--registry",
        str(tmp_path / "unused.json"),
    )
    assert result.returncode == 0, result.stderr
    stages = sorted(p.name for p in (tmp_path / "dental_clinic" / "stages").iterdir())
    assert stages == [  # a world domain keeps its design record too
        "1_topic.json",
        "2_design.json",
        "3_spec.json",
        "4_seed.json",
        "5_procedural_tests.json",
        "6_graph.json",
        "7_tasks.json",
        "8_task_stats.json",
        "result.json",
    ]
    assert not (tmp_path / "unused.json").exists()


def test_concurrent_publishers_never_lose_an_entry(tmp_path: Path) -> None:
    registry, root = tmp_path / "registry.json", tmp_path / "envs"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from synthesizer import publish\n"
        "from synthesizer.pipeline import Job, publish_result, synthesize\n"
        "read = publish._read_entries\n"
        "publish._read_entries = lambda path: (read(path), time.sleep(0.3))[0]\n"  # widen read-modify-write
        "result = synthesize(Job(sys.argv[1], seed=4, tasks=2))\n"
        "assert result.ok, result.reason\n"
        "print('ready', flush=True)\n"
        "while not Path(sys.argv[4]).exists(): time.sleep(0.001)\n"  # every publisher starts at once
        "publish_result(result, Path(sys.argv[2]), Path(sys.argv[3]))\n"
    )
    go = tmp_path / "go"
    domains = ["dental_clinic", "car_dealership", "cinema_bookings", "coworking_space"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, d, str(root), str(registry), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in domains
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    assert Registry.load(registry).ids() == sorted(domains)
    assert not list(tmp_path.glob(".registry.json.*.tmp"))


def test_every_catalog_generator_is_usable_and_clock_free() -> None:
    from synthesizer.seeding import generator_problem

    catalog = load_catalog()
    problems = [
        (d, e.name, a.name, generator_problem(a.generator))
        for d, domain in catalog.domains.items()
        for e in domain.entities
        for a in e.attributes
        if generator_problem(a.generator)
    ]
    assert problems == []
    assert "machine's clock" in (generator_problem("month_name") or "")  # Faker's dates read datetime.now()


def test_threads_publishing_one_id_leave_it_listed_and_whole(tmp_path: Path) -> None:
    import threading

    registry, root = tmp_path / "registry.json", tmp_path / "envs"
    results = [synthesize(Job("dental_clinic", seed=s, tasks=2, env_id="dental_clinic")) for s in (3, 4)]
    errors: list[BaseException] = []

    def publish(result: object) -> None:
        try:
            publish_result(result, root, registry)  # type: ignore[arg-type]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=publish, args=(r,)) for r in results]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    listed = Registry.load(registry)
    env = Environment.load(listed.folder("dental_clinic"))
    assert listed.ids() == ["dental_clinic"] and listed.stale() == [] and env.id == "dental_clinic"
    assert [p.name for p in root.iterdir()] == ["dental_clinic"]
