"""``envfleet synth`` as a user runs it: it never silently replaces an environment, says when a
topic is made as a differently named catalog domain, and exits non-zero on a shortfall."""

from __future__ import annotations

import subprocess
from pathlib import Path

from servers import Registry
from synthesizer.pipeline import Job, synthesize
from tests.conftest import ENVFLEET


def synth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENVFLEET, "synth", *args], capture_output=True, text=True, timeout=600)


def fleet_bytes(root: Path, registry: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {**files, "registry.json": registry.read_bytes()}


def test_synth_refuses_to_replace_a_published_environment_unless_asked(tmp_path: Path) -> None:
    root, registry = tmp_path / "envs", tmp_path / "registry.json"
    where = ["--env-root", str(root), "--registry", str(registry), "--tasks-per-env", "3"]
    first = synth("--topic", "dental clinic", "--seed", "7", *where)
    assert first.returncode == 0, first.stderr
    before = fleet_bytes(root, registry)

    again = synth("--topic", "dental clinic", "--seed", "8", *where)  # the README's command, run a second time
    assert again.returncode != 0
    assert "dental_clinic is published already" in again.stderr and "nothing was written" in again.stderr
    assert "--replace" in again.stderr
    assert fleet_bytes(root, registry) == before  # nothing written, not even a staging folder
    assert sorted(p.name for p in root.iterdir()) == ["dental_clinic"]

    batch = synth(
        "--topic", "car rental", "--topic", "dental_clinic", *where
    )  # a batch with a published id is refused whole
    assert batch.returncode != 0 and "dental_clinic is published already" in batch.stderr
    assert fleet_bytes(root, registry) == before

    replaced = synth("--topic", "dental clinic", "--seed", "8", "--replace", *where)
    assert replaced.returncode == 0, replaced.stderr
    assert fleet_bytes(root, registry)["dental_clinic/seed.json"] != before["dental_clinic/seed.json"]
    assert Registry.load(registry).ids() == ["dental_clinic"]


def test_a_topic_made_as_another_domain_says_which_and_why(tmp_path: Path) -> None:
    result = synth("--topic", "pet grooming salon", "--tasks-per-env", "2", "--dry-run", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    note = " ".join(result.stderr.split())
    assert "topic 'pet grooming salon' is made as catalog domain pet_supplies_store" in note
    assert "matched 'pet grooming' (score 3)" in note and "--backend llm models a new domain" in note

    exact = synth("--topic", "dental clinic", "--tasks-per-env", "2", "--dry-run", "--out", str(tmp_path / "out2"))
    assert exact.returncode == 0, exact.stderr
    assert "note:" not in exact.stderr  # the domain is what was asked for

    nothing = synth("--topic", "underwater basket weaving", "--dry-run", "--out", str(tmp_path / "out3"))
    assert nothing.returncode == 1
    message = " ".join(nothing.stderr.split())
    assert "no catalog domain fits 'underwater basket weaving'" in message and "--backend llm" in message
    assert not (tmp_path / "out3").exists()


def test_a_batch_with_a_failure_reports_the_shortfall_and_exits_non_zero(tmp_path: Path) -> None:
    # apartment_rental gets no task through the gates with seed 103 and three tasks asked for
    assert not synthesize(Job("apartment_rental", seed=103, tasks=3)).ok, (
        "pick another failing (domain, seed) for this test"
    )
    args = ["--topic", "apartment_rental", "--topic", "dental_clinic", "--seed", "103", "--tasks-per-env", "3"]
    strict = synth(*args, "--env-root", str(tmp_path / "a"), "--registry", str(tmp_path / "a.json"))
    assert strict.returncode == 1
    message = " ".join(strict.stderr.split())
    assert "shortfall: 1 of 2 planned environment(s) not published" in message
    assert "apartment_rental (topic apartment_rental): only 0 task(s) passed the gates" in message
    assert "1/2 is fewer than asked (--allow-partial accepts a partial batch)" in message
    assert Registry.load(tmp_path / "a.json").ids() == ["dental_clinic"]  # what passed is published all the same
    assert "apartment_rental" in strict.stdout and "…" not in strict.stdout  # ids whole in an 80-column pipe

    partial = synth(*args, "--allow-partial", "--env-root", str(tmp_path / "b"), "--registry", str(tmp_path / "b.json"))
    assert partial.returncode == 0, partial.stderr
    assert "shortfall: 1 of 2" in " ".join(partial.stderr.split())
    assert Registry.load(tmp_path / "b.json").ids() == ["dental_clinic"]
