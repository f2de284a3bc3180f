"""The task gates: what makes a task trustworthy enough to publish.

Every gate runs through real MCP over HTTP against a running gateway:

1. the gold solution scores 1.0 (success);
2. doing nothing does not succeed;
3. the initial state fails at least one of the task's own checks;
4. two gold replays end in the same final-state hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from .agents import GoldAgent, NoopAgent
from .environment import Environment
from .errors import EnvFleetError
from .rollout import GatewayClient, RolloutRecord, rollout_http, rollout_in_process
from .tasks import Task

__all__ = ["GateResult", "check_task", "check_task_in_process", "check_tasks", "judge"]


@dataclass
class GateResult:
    env_id: str
    task_id: str
    gold_reward: float | None = None
    noop_success: bool | None = None
    initial_fails: bool | None = None
    deterministic: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


async def check_task(gateway: GatewayClient, env_id: str, task: Task) -> GateResult:
    """The gates through real MCP, against a running gateway."""
    try:
        first = await rollout_http(gateway, env_id, task.id, GoldAgent(task))
        second = await rollout_http(gateway, env_id, task.id, GoldAgent(task))
        noop = await rollout_http(gateway, env_id, task.id, NoopAgent())
    except EnvFleetError as e:
        return GateResult(env_id, task.id, problems=[str(e)])
    return judge(env_id, task.id, first, second, noop)


async def check_task_in_process(env: Environment, task: Task) -> GateResult:
    """The same gates on in-process episodes (for publishing: no server needed)."""
    first = await rollout_in_process(env, task.id, GoldAgent(task))
    second = await rollout_in_process(env, task.id, GoldAgent(task))
    noop = await rollout_in_process(env, task.id, NoopAgent())
    return judge(env.id, task.id, first, second, noop)


def judge(env_id: str, task_id: str, first: RolloutRecord, second: RolloutRecord, noop: RolloutRecord) -> GateResult:
    """The gates' verdict on two gold replays and a do-nothing run."""
    result = GateResult(env_id, task_id)
    result.gold_reward = first.reward
    if not first.success:
        failed = [c for c in (first.score or {}).get("checks", []) if not c["passed"]]
        errors = [f"{s['tool']}: {s['text']}" for s in first.trajectory if s["is_error"]]
        detail = "; ".join([f"{c['name']} ({c['description']}) {c['detail']}".strip() for c in failed] + errors)
        result.problems.append(f"gold scores {first.reward}: {detail}")
    result.deterministic = first.final_state_hash == second.final_state_hash and first.reward == second.reward
    if not result.deterministic:
        result.problems.append("two gold replays end in different states")
    result.noop_success = noop.success
    if noop.success:
        result.problems.append("doing nothing already succeeds")
    checks = [c for c in (noop.score or {}).get("checks", []) if c["name"].startswith("check[")]
    result.initial_fails = any(not c["passed"] for c in checks)
    if not result.initial_fails:
        result.problems.append("the initial state already passes every check")
    return result


async def check_tasks(gateway: GatewayClient, tasks: list[tuple[str, Task]], concurrency: int = 8) -> list[GateResult]:
    """Gate every (env_id, task), a few at a time; results in input order."""
    results: list[GateResult | None] = [None] * len(tasks)
    limiter = anyio.Semaphore(concurrency)

    async def one(index: int, env_id: str, task: Task) -> None:
        async with limiter:
            results[index] = await check_task(gateway, env_id, task)

    async with anyio.create_task_group() as tg:
        for index, (env_id, task) in enumerate(tasks):
            tg.start_soon(one, index, env_id, task)
    return [r for r in results if r is not None]
