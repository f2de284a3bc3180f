"""The synthesizer service's guards: reads never show uploaded tasks' gold calls, checks or answers
without the token; every route checks Host and Origin as the gateway does; /docs works offline;
killed publishers' leftovers are cleaned at start."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from synthesizer.publish import TEMP_PREFIX, temp_folder
from tests.conftest import ENVFLEET, MINI_SEED, MINI_SPEC, MINI_TASKS, free_port, stop_process, wait_healthy

TOKEN = "s3cret-token"
FAILING_TASK = {
    **copy.deepcopy(MINI_TASKS[0]),
    "id": "mini-003",
    "checks": [
        {
            "description": "Candle stock is exactly 987654321 (it never is)",
            "sql": "SELECT stock FROM items WHERE sku = 'C-3'",
            "expect": {"op": "==", "value": 987654321},
        }
    ],
}
UPLOAD = {"spec": MINI_SPEC, "seed_data": MINI_SEED, "tasks": [*MINI_TASKS, FAILING_TASK]}
# What an agent must never read: gold arguments, check SQL and descriptions, expected answers (the expected
# number is one no job id, time or count contains by chance: "999" once turned up in a job's id).
SECRETS = [
    "SELECT stock FROM items WHERE sku = 'C-3'",
    "Candle stock went down to 38",
    "ORD-0042",
    '"gold"',
    "987654321",
]


class Service:
    def __init__(self, root: Path, *args: str, token: str = "") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                *ENVFLEET,
                "synthesizer",
                "serve",
                "--port",
                str(self.port),
                "--env-root",
                str(root / "envs"),
                "--registry",
                str(root / "registry.json"),
                "--log-level",
                "warning",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "ENVFLEET_SYNTH_TOKEN": token, "ENVFLEET_ALLOWED_HOSTS": ""},
        )
        try:
            wait_healthy(self.proc, self.base, 30)
        except RuntimeError:
            stop_process(self.proc)
            raise

    def finished(self, job_id: str, headers: dict[str, str] | None = None) -> dict:
        deadline = time.monotonic() + 120
        while (job := httpx.get(f"{self.base}/v1/jobs/{job_id}", headers=headers).json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        return job


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    server = Service(tmp_path, "--allowed-host", "synth")
    yield server
    stop_process(server.proc)


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Service]:
    server = Service(tmp_path, token=TOKEN)
    yield server
    stop_process(server.proc)


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def test_reads_never_show_uploaded_gold_without_the_token(guarded: Service) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    job_id = httpx.post(f"{guarded.base}/v1/environments", json=UPLOAD, headers=auth).json()["job_id"]
    job = guarded.finished(job_id)
    assert job["status"] == "failed"  # mini-003's check never passes
    for response in (httpx.get(f"{guarded.base}/v1/jobs"), httpx.get(f"{guarded.base}/v1/jobs/{job_id}")):
        assert response.status_code == 200 and leaks(response.text) == []
    assert job["request"]["tasks"]["count"] == 3 and "token" in job["request"]["tasks"]["withheld"]
    assert set(job["withheld"]) == {"request.tasks", "progress.environments[].reason", "errors"}
    reason = job["progress"]["environments"][0]["reason"]
    assert reason.startswith("tasks fail the gates: mini-003 (details withheld")  # which task, not what it checks
    assert job["request"]["spec"]["id"] == "mini"  # the rest of the job is there

    full = httpx.get(f"{guarded.base}/v1/jobs/{job_id}", headers=auth)
    assert full.status_code == 200 and full.json()["withheld"] == []
    assert set(leaks(full.text)) == set(SECRETS)  # with the token, everything (this is the uploader)
    wrong = httpx.get(f"{guarded.base}/v1/jobs", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401  # a wrong token is refused, not quietly downgraded


def test_without_a_token_reads_still_withhold_gold(service: Service) -> None:
    job_id = httpx.post(f"{service.base}/v1/environments", json=UPLOAD).json()["job_id"]
    job = service.finished(job_id)
    assert job["request"]["tasks"]["count"] == 3 and leaks(str(job)) == []
    listed = httpx.get(f"{service.base}/v1/jobs")
    assert listed.status_code == 200 and leaks(listed.text) == []  # nobody can show a token: nobody reads gold
    assert httpx.get(f"{service.base}/v1/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).json()[0]["withheld"]


def test_cross_site_and_foreign_host_requests_are_refused(service: Service) -> None:
    queued = httpx.post(
        f"{service.base}/v1/environments", json={"topic": "pet grooming salon", "tasks_per_env": 2}
    ).json()["job_id"]
    evil = {"Origin": "http://evil.example"}
    refused = httpx.post(f"{service.base}/v1/jobs/{queued}/cancel", headers=evil)
    assert refused.status_code == 403
    assert httpx.get(f"{service.base}/v1/jobs/{queued}").json()["cancel_requested"] is False
    before = len(httpx.get(f"{service.base}/v1/jobs").json())
    assert httpx.post(f"{service.base}/v1/environments", json={"topic": "pharmacy"}, headers=evil).status_code == 403
    assert len(httpx.get(f"{service.base}/v1/jobs").json()) == before
    assert httpx.get(f"{service.base}/v1/jobs", headers=evil).status_code == 403  # reads too: no cross-site scraping

    assert httpx.get(f"{service.base}/healthz", headers={"Host": "evil.example"}).status_code == 421  # DNS rebinding
    assert httpx.get(f"{service.base}/healthz", headers={"Host": f"evil.example:{service.port}"}).status_code == 421
    assert (
        httpx.get(f"{service.base}/healthz", headers={"Host": f"synth:{service.port}"}).status_code == 200
    )  # --allowed-host
    local = {"Origin": f"http://localhost:{service.port}"}
    assert httpx.get(f"{service.base}/healthz", headers=local).status_code == 200
    made = service.finished(queued)
    assert made["status"] == "succeeded" and made["published"] == ["pet_supplies_store"]
    assert [(t["domain"], t["matched"]) for t in made["report"]["topics"]] == [("pet_supplies_store", ["pet grooming"])]


def test_docs_work_offline(service: Service) -> None:
    page = httpx.get(f"{service.base}/docs")
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text) + re.findall(
        r"""url:\s*'([^']+)'""", page.text
    )
    assert len(assets) >= 4 and "cdn" not in page.text.lower()
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        assert httpx.get(f"{service.base}{asset}").status_code == 200, asset


def test_start_removes_killed_publishers_leftovers_only(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    root.mkdir()
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    live = temp_folder(root, "staging", "dental_clinic")  # this test's process is alive: a live publisher's
    dead = live.with_name(live.name.replace(f".{os.getpid()}.", f".{gone.stdout.strip()}.", 1))
    for folder in (live, dead):
        (folder / "tasks").mkdir(parents=True)
    server = Service(tmp_path)
    try:
        assert sorted(p.name for p in root.iterdir() if p.name.startswith(TEMP_PREFIX)) == [live.name]
    finally:
        stop_process(server.proc)
