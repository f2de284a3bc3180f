"""The Gymnasium-style wrapper and the stdio episode, without any server."""

from __future__ import annotations

import pytest
from mcp import Client, StdioServerParameters

from servers import EnvFleetError, Environment
from servers.clients import ToolUseEnv
from tests.conftest import ENVFLEET


def test_reset_step_and_final_reward(mini_tasks: Environment) -> None:
    env = ToolUseEnv(mini_tasks, max_steps=5)
    observation, info = env.reset(seed=3, options={"task_id": "mini-001"})
    assert observation.startswith("Please order two candles") and info["task_id"] == "mini-001"
    assert {t["name"] for t in info["tools"]} >= {"place_order"} and info["policy"]
    observation, reward, terminated, truncated, info = env.step(
        {"tool": "place_order", "arguments": {"sku": "C-3", "quantity": 2}}
    )
    assert '"order_id":"ORD-0042"' in observation and reward == 0.0 and not terminated and not truncated
    observation, reward, terminated, truncated, info = env.step({"answer": "Your order is ORD-0042."})
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
    env.close()


def test_tool_errors_are_observations_and_steps_are_bounded(mini_tasks: Environment) -> None:
    env = ToolUseEnv(mini_tasks, max_steps=2)
    env.reset(options={"task_id": "mini-001"})
    observation, reward, terminated, truncated, info = env.step({"tool": "place_order", "arguments": {"sku": "C-3"}})
    assert info["is_error"] and "required property" in observation and not terminated
    observation, reward, terminated, truncated, info = env.step({"tool": "count_orders"})
    assert truncated and not terminated and reward == 0.0 and info["success"] is False


def test_seeded_resets_pick_tasks_reproducibly(mini_tasks: Environment) -> None:
    picks = []
    for _ in range(2):
        env = ToolUseEnv(mini_tasks)
        picks.append([env.reset(seed=11)[1]["task_id"]] + [env.reset()[1]["task_id"] for _ in range(5)])
    assert picks[0] == picks[1]
    assert ToolUseEnv(mini_tasks, split="test").task_ids == ["mini-002"]
    with pytest.raises(EnvFleetError, match="call reset"):
        ToolUseEnv(mini_tasks).step({"answer": "x"})


@pytest.mark.anyio
async def test_stdio_serves_a_task(mini_env_dir) -> None:
    params = StdioServerParameters(
        command=ENVFLEET[0], args=[*ENVFLEET[1:], "serve", str(mini_env_dir), "--task", "mini-002"]
    )
    async with Client(params) as client:
        prompt = await client.get_prompt("task")
        assert prompt.messages[0].content.text.startswith("The buckets are back")
        item = await client.call_tool("get_item", {"sku": "B-2"})
        assert item.structured_content["name"] == "Blue bucket"
