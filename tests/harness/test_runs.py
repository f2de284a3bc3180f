"""The harness against a scripted OpenAI-compatible stub whose replies call tools over real MCP:
solved, partly solved and conversational episodes, an endpoint failing mid-run, resume, reports
and training exports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import pytest

from harness.export import chat_format_problems
from harness.report import pass_hat_k, summarize
from servers import Registry
from servers.clients import GatewayClient, ToolCallUncertain, rollout_http
from servers.serving import running_gateway
from tests.conftest import ENVFLEET
from tests.openai_stub import Fault, OpenAIStub


def tool_call(name: str, arguments: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "content": None,
        "tool_calls": [
            {"id": f"call_{index}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}
        ],
    }


def shopper(quantity: int = 2, fail_after: int | None = None):  # noqa: ANN201
    """A scripted model that orders candles for mini-001 (and buckets for mini-002), one step per request."""

    def reply(body: dict[str, Any]) -> Any:
        messages = body["messages"]
        done = sum(1 for m in messages if m["role"] == "tool")
        if fail_after is not None and done >= fail_after:
            return Fault(503)
        if "buckets" in messages[1]["content"]:
            plan = [
                ("restock", {"sku": "B-2", "delta": 5}),
                ("place_order", {"sku": "B-2", "quantity": 1, "gift": True}),
            ]
        else:
            plan = [("search_items", {"query": "Candle"}), ("place_order", {"sku": "C-3", "quantity": quantity})]
        if done < len(plan):
            return tool_call(*plan[done], done)
        return {"content": "Done. Your order number is ORD-0042."}

    return reply


def run(tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    return subprocess.run(
        [
            *ENVFLEET,
            "run",
            "--env",
            "mini",
            "--agent",
            "openai:stub-model",
            "--base-url",
            stub.url,
            "--env-root",
            str(mini_env_dir.parent),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def stub():
    with OpenAIStub().running() as running:
        yield running


def test_a_solved_task_scores_one_and_a_wrong_path_scores_zero(
    tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub
) -> None:
    stub.script("agent", shopper())
    result = run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--out", str(tmp_path / "good"))
    assert result.returncode == 0, result.stderr
    [good] = records(tmp_path / "good" / "trajectories.jsonl")
    assert good["status"] == "ok" and good["reward"] == 1.0 and good["success"] is True
    assert [s["tool"] for s in good["trajectory"]] == ["search_items", "place_order"]  # the calls went over MCP
    system = good["messages"][0]
    assert system["role"] == "system" and "Sell only what is in stock." in system["content"]  # the policy
    assert {t["function"]["name"] for t in good["tools"]} >= {"place_order", "search_items"}
    assert good["usage"]["agent"]["prompt_tokens"] > 0 and good["seed"] == 0
    request = stub.requests_for("agent")[0]
    assert request["tools"][0]["type"] == "function" and request["messages"][1]["content"].startswith(
        "Please order two candles"
    )

    stub.script("agent", shopper(quantity=3))
    result = run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--out", str(tmp_path / "wrong"))
    [wrong] = records(tmp_path / "wrong" / "trajectories.jsonl")
    assert wrong["status"] == "ok" and wrong["success"] is False and wrong["reward"] == 0.0
    assert 0 < wrong["score"]["partial"] < 1  # some checks passed: diagnostics, not reward


def test_conversational_mode_with_the_scripted_user(tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub) -> None:
    def agent(body: dict[str, Any]) -> Any:
        messages = body["messages"]
        users = [m for m in messages if m["role"] == "user"]
        if len(users) == 1:
            return {"content": "Happy to help. What quantity would you like?"}
        if "My quantity is 2." in users[1]["content"] and len(users) == 2:
            return shopper()(body)
        return {"content": "Anything else?"}

    stub.script("agent", agent)
    result = run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--mode", "conv", "--out", str(tmp_path / "conv"))
    assert result.returncode == 0, result.stderr
    [record] = records(tmp_path / "conv" / "trajectories.jsonl")
    said = [m["content"] for m in record["messages"] if m["role"] == "user"]
    assert said[0].startswith("Please order two candles") and said[1] == "My quantity is 2."
    assert said[-1].endswith("###STOP###") and record["success"] is True and record["mode"] == "conv"


def test_conversational_mode_with_a_model_playing_the_user(
    tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub
) -> None:
    def agent(body: dict[str, Any]) -> Any:
        users = [m for m in body["messages"] if m["role"] == "user"]
        if len(users) == 1:
            return {"content": "How many candles would you like?"}
        return shopper()(body)

    def customer(body: dict[str, Any]) -> str:
        system, said = body["messages"][0]["content"], body["messages"][-1]["content"]
        assert "quantity: 2" in system and "Never make up a fact" in system  # the scenario, and the rules of the role
        return "Two, please." if "How many" in said else "Perfect, thank you! ###STOP###"

    stub.script("agent", agent)
    stub.script("user", customer)
    result = run(
        tmp_path,
        mini_env_dir,
        stub,
        "--tasks",
        "mini-001",
        "--mode",
        "conv",
        "--user",
        "openai:stub-model",
        "--out",
        str(tmp_path / "conv"),
    )
    assert result.returncode == 0, result.stderr
    [record] = records(tmp_path / "conv" / "trajectories.jsonl")
    said = [m["content"] for m in record["messages"] if m["role"] == "user"]
    assert said[1] == "Two, please." and said[-1].endswith("###STOP###") and record["success"] is True
    assert record["usage"]["user"]["prompt_tokens"] > 0


def test_an_endpoint_failing_mid_run_is_an_infrastructure_failure_and_resume_redoes_only_that(
    tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub
) -> None:
    def flaky(body: dict[str, Any]) -> Any:
        if "buckets" in body["messages"][1]["content"]:
            return shopper(fail_after=1)(body)  # mini-002 loses its endpoint after one call
        return shopper()(body)

    stub.script("agent", flaky)
    out = tmp_path / "run"
    first = run(tmp_path, mini_env_dir, stub, "--trials", "2", "--out", str(out), "--concurrency", "2")
    assert first.returncode == 0, first.stderr
    assert "2 infrastructure failure(s), not scored" in first.stderr
    by_task = {(r["task_id"], r["trial"]): r for r in records(out / "trajectories.jsonl")}
    failed = by_task[("mini-002", 0)]
    assert failed["status"] == "infra_error" and failed["infra_error"]["stage"] == "model"
    assert failed["reward"] is None and "kept failing" in failed["infra_error"]["message"]
    summary = summarize(list(by_task.values()))
    assert summary["scored"] == 2 and summary["infra_errors"] == 2 and summary["success_rate"] == 1.0
    assert summary["infra_tasks"] == ["mini-002"]

    stub.script("agent", shopper())  # the endpoint is back
    served = len(stub.requests)
    second = run(tmp_path, mini_env_dir, stub, "--trials", "2", "--out", str(out))
    assert second.returncode == 0, second.stderr
    lines = records(out / "trajectories.jsonl")  # one line per trial, in order, once the run completes
    assert [(r["trial"], r["task_id"]) for r in lines] == [
        (0, "mini-001"),
        (0, "mini-002"),
        (1, "mini-001"),
        (1, "mini-002"),
    ]
    assert all(r["status"] == "ok" for r in lines)
    kept = {("mini-001", 0), ("mini-001", 1)}  # finished trials were not run again: same episodes
    assert {(r["task_id"], r["trial"]): r["episode_id"] for r in lines if (r["task_id"], r["trial"]) in kept} == {
        k: by_task[k]["episode_id"] for k in kept
    }
    assert len(stub.requests) - served == 6  # three completions for each of the two re-run trials

    report = subprocess.run([*ENVFLEET, "report", str(out), "--json"], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["scored"] == 4 and data["infra_errors"] == 0 and data["pass^k"] == {"1": 1.0, "2": 1.0}
    table = subprocess.run([*ENVFLEET, "report", str(out)], capture_output=True, text=True, timeout=60)
    assert "mini-002" in table.stdout and "pass^k" in table.stdout


def test_exports_are_valid_openai_chat_examples(tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub) -> None:
    stub.script("agent", shopper(quantity=3))
    run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--out", str(tmp_path / "run"))
    stub.script("agent", shopper())
    other = run(
        tmp_path,
        mini_env_dir,
        stub,
        "--tasks",
        "mini-001",
        "--trials",
        "2",
        "--seed",
        "5",
        "--out",
        str(tmp_path / "run"),
    )
    assert other.returncode == 2 and "holds another run (seed: 0 then 5)" in other.stderr  # two experiments never mix
    more = run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--trials", "2", "--out", str(tmp_path / "run"))
    assert more.returncode == 0, more.stderr  # the same run, one more trial
    gold = subprocess.run(
        [
            *ENVFLEET,
            "run",
            "--env",
            "mini",
            "--agent",
            "gold",
            "--out",
            str(tmp_path / "gold"),
            "--env-root",
            str(mini_env_dir.parent),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert gold.returncode == 0, gold.stderr
    for folder, expected in (("run", 1), ("gold", 2)):
        export = subprocess.run(
            [*ENVFLEET, "export", str(tmp_path / folder), "--format", "sft", "--only-success", "--min-steps", "2"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert export.returncode == 0, export.stderr
        examples = [json.loads(line) for line in export.stdout.splitlines()]
        assert len(examples) == expected, (folder, export.stderr)
        for example in examples:
            assert chat_format_problems(example) == []
            assert example["messages"][0]["role"] == "system" and example["messages"][-1]["role"] == "assistant"
            assert any(m.get("tool_calls") for m in example["messages"]) and example["tools"]
    assert "left out" in export.stderr or expected == 2
    broken = {
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "nope", "arguments": "{bad"}}],
            },
        ],
        "tools": [],
    }
    problems = chat_format_problems(broken)
    assert any("not an offered tool" in p for p in problems) and any("not a JSON object" in p for p in problems)
    assert any("never answered" in p for p in problems)


def test_step_limits_and_a_refusing_model_end_the_episode_scored(
    tmp_path: Path, mini_env_dir: Path, stub: OpenAIStub
) -> None:
    def searcher(body: dict[str, Any]) -> Any:  # never stops searching, two calls a turn
        done = sum(1 for m in body["messages"] if m["role"] == "tool")
        return {
            "content": None,
            "tool_calls": [
                {
                    "id": f"c{done}",
                    "type": "function",
                    "function": {"name": "search_items", "arguments": '{"query": "Candle"}'},
                },
                {"id": f"d{done}", "type": "function", "function": {"name": "count_orders", "arguments": "{}"}},
            ],
        }

    stub.script("agent", searcher)
    run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--max-steps", "3", "--out", str(tmp_path / "steps"))
    [record] = records(tmp_path / "steps" / "trajectories.jsonl")
    assert record["status"] == "ok" and record["stopped"] == "max_steps" and record["success"] is False
    assert len(record["trajectory"]) == 3 and record["messages"][-1]["role"] == "assistant"
    assert chat_format_problems({"messages": record["messages"], "tools": record["tools"]}) == []

    stub.script(
        "agent",
        Fault(
            400,
            {
                "error": {
                    "message": "This model's maximum context length is 8192 tokens.",
                    "code": "context_length_exceeded",
                }
            },
        ),
    )
    run(tmp_path, mini_env_dir, stub, "--tasks", "mini-001", "--out", str(tmp_path / "refused"))
    [record] = records(tmp_path / "refused" / "trajectories.jsonl")
    assert record["status"] == "ok" and record["reward"] is not None and record["success"] is False  # the model failed
    assert record["stopped"].startswith("model_refused") and "maximum context length" in record["stopped"]


def test_pass_hat_k_is_tau_bench_s() -> None:
    assert pass_hat_k(4, 4, 4) == 1.0 and pass_hat_k(4, 2, 1) == 0.5
    assert pass_hat_k(4, 2, 2) == pytest.approx(1 / 6) and pass_hat_k(4, 1, 2) == 0.0


class DropAfterSending(httpx2.AsyncHTTPTransport):
    """The request reaches the server; its answer is lost on the way back (once per tool named)."""

    def __init__(self, tool: str) -> None:
        super().__init__()
        self.tool, self.dropped = tool, 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await super().handle_async_request(request)
        if self.tool.encode() in request.content and b"tools/call" in request.content and not self.dropped:
            self.dropped += 1
            await response.aclose()
            raise httpx2.ReadError("connection reset by peer")
        return response


class OneCall:
    """An agent that makes one call and reports what it got."""

    name = "one-call"

    def __init__(self, tool: str, arguments: dict[str, Any]) -> None:
        self.tool, self.arguments = tool, arguments

    async def run(self, session: Any) -> str | None:
        await session.call(self.tool, self.arguments)
        return "done"


@pytest.mark.anyio
async def test_a_write_lost_in_transit_is_never_resent(mini_env_dir: Path) -> None:
    registry = Registry.build(mini_env_dir.parent)
    with running_gateway(registry) as local:
        for tool, arguments, expected in (
            ("place_order", {"sku": "C-3", "quantity": 1}, ToolCallUncertain),
            ("count_orders", {}, httpx2.ReadError),
        ):
            async with GatewayClient(local.url, local.token) as gateway:
                await gateway.mcp_http.aclose()
                gateway.mcp_http = httpx2.AsyncClient(transport=DropAfterSending(tool))
                with pytest.raises(BaseException) as caught:
                    await rollout_http(
                        gateway, "mini", None, OneCall(tool, arguments), keep=True, episode_id=f"lost-{tool}"
                    )
                error = caught.value
                while isinstance(error, BaseExceptionGroup):
                    error = error.exceptions[0]
                assert isinstance(error, expected), repr(caught.value)
                if expected is ToolCallUncertain:
                    assert "it was not re-sent" in str(error)
                info = (await gateway.control.get(f"/episodes/lost-{tool}")).json()
                assert [s["tool"] for s in info["trajectory"]] == [tool]  # it reached the server exactly once


def test_run_selects_tasks_through_the_registry_and_names_the_missing_ones(mini_env_dir: Path) -> None:
    """`envfleet run` selects with Registry.select_tasks: an unknown task id is a clean error (exit 1), before any
    gateway."""
    result = subprocess.run(
        [*ENVFLEET, "run", "--env", "mini", "--tasks", "mini-001,mini-404", "--env-root", str(mini_env_dir.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 1
        and "error: no such task(s): mini-404" in result.stderr
        and "Traceback" not in result.stderr
    )
    empty = subprocess.run(
        [
            *ENVFLEET,
            "run",
            "--env",
            "mini",
            "--tasks",
            "mini-001",
            "--split",
            "test",
            "--env-root",
            str(mini_env_dir.parent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert empty.returncode == 1 and "no such task(s): mini-001" in empty.stderr
