"""The REST service with the LLM backend (against the scripted stub), and its OpenAPI document."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import ENVFLEET, free_port, wait_healthy
from tests.openai_stub import OpenAIStub
from tests.synthesizer.test_llm_backend import paraphrased


def start_service(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    """``envfleet synthesizer serve`` with exactly the environment ``env``."""
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
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(proc, base, 30)
    return proc, base


def test_an_llm_job_through_the_service(tmp_path: Path) -> None:
    with OpenAIStub().running() as stub:
        stub.script("paraphrase", paraphrased)
        proc, base = start_service(
            tmp_path,
            {
                **os.environ,
                "OPENAI_BASE_URL": stub.url,
                "OPENAI_API_KEY": "k",
                "ENVFLEET_MODEL": "stub-model",
                "ENVFLEET_LLM_CACHE": str(tmp_path / "cache"),
                "ENVFLEET_SYNTH_TOKEN": "",
            },
        )
        try:
            job_id = httpx.post(
                f"{base}/v1/environments",
                json={"topic": "dental clinic", "backend": "llm", "paraphrase": True, "tasks_per_env": 3},
            ).json()["job_id"]
            deadline = time.monotonic() + 120
            while (job := httpx.get(f"{base}/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert job["status"] == "succeeded", job
            assert job["report"]["llm_usage"]["stages"]["paraphrase"]["calls"] == 1
            detail = httpx.get(f"{base}/v1/environments/dental_clinic").json()
            assert detail["quality"]["backend"] == "llm" and detail["quality"]["llm"]["stages"] == ["paraphrase"]
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_llm_backend_without_a_model_is_a_422_naming_the_field(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVFLEET_MODEL", "OPENAI_"))}
    proc, base = start_service(tmp_path, {**env, "ENVFLEET_SYNTH_TOKEN": ""})
    try:
        refused = httpx.post(f"{base}/v1/environments", json={"topic": "dental clinic", "backend": "llm"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith(
            "backend: the llm backend is not usable"
        )
        openapi = httpx.get(f"{base}/openapi.json").json()
        assert {
            "/v1/environments",
            "/v1/jobs/{job_id}",
            "/v1/jobs/{job_id}/cancel",
            "/v1/environments/{env_id}/task-packs",
            "/registry.json",
            "/healthz",
        } <= set(openapi["paths"])
        examples = openapi["components"]["schemas"]["EnvironmentsRequest"]["examples"]
        assert {"topic": "dental clinic", "seed": 7, "tasks_per_env": 20} in examples
    finally:
        proc.terminate()
        proc.wait(timeout=15)
