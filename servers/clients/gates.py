"""The task gates: what makes a task trustworthy enough to publish.

1. the gold solution scores 1.0 (success);
2. doing nothing does not succeed — for every family: a task whose gold changes nothing (information,
   most refusals) fails a do-nothing agent on its answer;
3. the initial state fails at least one of the task's own checks, when the gold changes state (a
   task whose gold changes nothing is judged on its answer, so the gate does not apply);
4. two gold replays end in the same final-state hash;
5. obedient (tasks with ``forbidden`` calls): an agent that does what the gold does and then the
   forbidden act, and says what the gold says, must fail — and at least one forbidden call must go
   through, or the tools already refuse the act and the task tests no policy.

One verdict, :func:`judge`, over two gold runs, a do-nothing run and an obedient run, wherever they ran:
through real MCP against a running gateway (:func:`check_task_over_mcp`, for ``envfleet
check``), or in process on copies of the task's initial state (:class:`GateTrial`, for
publishing and for the synthesizer, which gates a task before any environment holds it). Gold
calls run through :meth:`Environment.replay_gold`, the same replay that makes the gold diff the
control plane scores collateral changes against.

A large check fans out over worker processes (:func:`check_in_processes`): the gateway and its
clients share one GIL, so threads would not help. Each worker loads its environments itself and
runs its own gateway (or talks to the one given); the verdicts do not depend on how tasks are split.
"""

from __future__ import annotations

import multiprocessing
import queue
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio

from ..episodes.environment import Environment, GoldReplay
from ..episodes.evaluation import Score, score_state
from ..errors import EnvFleetError, RegistryError
from ..spec.tasks import GoldCall, Task
from ..state.diff import StateDiff, diff_states
from ..state.store import StateCopy, StateTemplate
from .agents import AgentSession, GoldAgent, NoopAgent
from .rollout import GatewayClient, RolloutRecord, rollout_http

__all__ = [
    "GateResult",
    "GateTrial",
    "RegistrySource",
    "check_task_over_mcp",
    "check_task_in_process",
    "check_tasks",
    "check_in_processes",
    "judge",
]


@dataclass
class GateResult:
    env_id: str
    task_id: str
    gold_reward: float | None = None
    noop_success: bool | None = None
    initial_fails: bool | None = None  # None: the gold changes nothing, so the gate does not apply
    deterministic: bool | None = None
    obedient_success: bool | None = None  # None: the task names no forbidden calls
    forbidden_refused: bool | None = None  # every forbidden call was refused by the tools themselves
    problems: list[str] = field(default_factory=list)
    gold_success: bool | None = None

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def failed_gates(self) -> list[str]:
        """The gates failed, in the order above: ``gold``, ``deterministic``, ``noop``, ``initial``, ``obedient``."""
        gates = {
            "gold": self.gold_success is False,
            "deterministic": self.deterministic is False,
            "noop": bool(self.noop_success),
            "initial": self.initial_fails is False,
            "obedient": bool(self.obedient_success or self.forbidden_refused),
        }
        return [gate for gate, failed in gates.items() if failed]

    def to_dict(self) -> dict[str, Any]:
        data = {**asdict(self), "passed": self.passed}
        data.pop("gold_success")  # the report says it as gold_reward and problems
        if self.obedient_success is None and self.forbidden_refused is None:  # the gate did not apply
            data.pop("obedient_success")
            data.pop("forbidden_refused")
        return data


class ObedientAgent:
    """Does what the gold does, then the forbidden act, and tells the user what the gold tells them: the agent a
    refusal task must fail."""

    name = "obedient"

    def __init__(self, task: Task) -> None:
        self.task = task

    async def run(self, session: AgentSession) -> str | None:
        for call in [*self.task.gold, *self.task.forbidden]:
            await session.call(call.tool, dict(call.arguments))
        return GoldAgent.final_message(self.task)


async def check_task_over_mcp(gateway: GatewayClient, env_id: str, task: Task) -> GateResult:
    """The gates through real MCP, against a running gateway."""
    try:
        first = await rollout_http(gateway, env_id, task.id, GoldAgent(task))
        second = await rollout_http(gateway, env_id, task.id, GoldAgent(task))
        noop = await rollout_http(gateway, env_id, task.id, NoopAgent())
        obedient = await rollout_http(gateway, env_id, task.id, ObedientAgent(task)) if task.forbidden else None
    except EnvFleetError as e:
        return GateResult(env_id, task.id, problems=[_EPISODE_URL.sub("/episodes/…/", str(e))])
    return judge(env_id, task.id, first, second, noop, obedient=obedient, forbidden=len(task.forbidden))


_EPISODE_URL = re.compile(r"/episodes/[0-9a-f]{32}/")
"""Episode ids are fresh per run; a verdict names none, so the same task gets the same verdict."""


async def check_task_in_process(env: Environment, task: Task) -> GateResult:
    """The same gates in process, on a task ``env`` holds (for publishing: no server needed); a gold call
    that fails is a failing verdict, as over MCP."""
    with GateTrial.run(env, env.task_template(task.id), task.gold, env.task_initial_dump(task.id)) as trial:
        return trial.judge(task, GoldAgent.final_message(task))


@dataclass
class GateTrial:
    """The gates' runs in process, on fresh copies of one initial state: two gold replays, a copy
    nothing touches and, for a task with forbidden calls, the obedient replay (made when judging). The
    synthesizer opens one for a draft's gold calls, reads the first replay to write the task's checks,
    then asks for the verdict on the finished task. It owns its state copies: close it (``with``
    does), whatever the verdict."""

    env: Environment
    initial: dict[str, list[dict[str, Any]]]
    first: GoldReplay
    second: GoldReplay
    noop: StateCopy
    template: StateTemplate | None = None
    obedient: GoldReplay | None = None

    @classmethod
    def run(
        cls,
        env: Environment,
        template: StateTemplate,
        gold: Sequence[GoldCall],
        initial: dict[str, list[dict[str, Any]]] | None = None,
    ) -> GateTrial:
        """Replay ``gold`` twice on copies of ``template`` (``initial``: its dump, when known)."""
        dump = template.dump() if initial is None else initial
        replays: list[GoldReplay] = []
        try:
            for _ in range(2):
                replays.append(env.replay_gold(template, gold))
            noop = template.copy()
        except BaseException:
            for replay in replays:
                replay.close()
            raise
        return cls(env, dump, replays[0], replays[1], noop, template)

    @property
    def gold_diff(self) -> StateDiff:
        """What the first gold replay changed."""
        return diff_states(self.initial, self.first.state.dump(), self.env.primary_keys)

    @property
    def deterministic(self) -> bool:
        return self.first.state.digest() == self.second.state.digest()

    def judge(self, task: Task, final_message: str | None) -> GateResult:
        """The verdict on ``task``: each gold replay scored with ``final_message``, the untouched copy with none,
        and for a task with forbidden calls, the gold and forbidden calls replayed and scored with
        ``final_message``."""
        gold_diff = self.gold_diff

        def record(agent: str, state: StateCopy, replay: GoldReplay | None, message: str | None) -> RolloutRecord:
            score = score_state(task, self.initial, state, gold_diff, self.env.primary_keys, message)
            steps = (
                [
                    {"tool": call.tool, "text": result.text, "is_error": result.is_error}
                    for call, result in zip(replay.calls, replay.results, strict=True)
                ]
                if replay
                else []
            )
            return _record(self.env.id, task.id, agent, message, score, steps)

        obedient = None
        if task.forbidden:
            if self.obedient is None or list(self.obedient.calls) != [*task.gold, *task.forbidden]:
                if self.obedient is not None:
                    self.obedient.close()
                self.obedient = None
                self.obedient = self.env.replay_gold(self._template(), [*task.gold, *task.forbidden])
            obedient = record("obedient", self.obedient.state, self.obedient, final_message)
        return judge(
            self.env.id,
            task.id,
            record("gold", self.first.state, self.first, final_message),
            record("gold", self.second.state, self.second, final_message),
            record("noop", self.noop, None, ""),
            obedient=obedient,
            forbidden=len(task.forbidden),
        )

    def _template(self) -> StateTemplate:
        if self.template is None:
            raise EnvFleetError("this trial was made without its state template (use GateTrial.run)")
        return self.template

    def close(self) -> None:
        for state in (self.first.state, self.second.state, self.noop):
            state.close()
        if self.obedient is not None:
            self.obedient.close()

    def __enter__(self) -> GateTrial:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _record(
    env_id: str, task_id: str, agent: str, message: str | None, score: Score, steps: list[dict[str, Any]]
) -> RolloutRecord:
    return RolloutRecord(
        env_id=env_id,
        task_id=task_id,
        agent=agent,
        episode_id="",
        final_message=message,
        reward=score.reward,
        success=score.success,
        score=score.to_dict(),
        trajectory=steps,
        final_state_hash=score.final_state_hash,
    )


def judge(
    env_id: str,
    task_id: str,
    first: RolloutRecord,
    second: RolloutRecord,
    noop: RolloutRecord,
    *,
    obedient: RolloutRecord | None = None,
    forbidden: int = 0,
) -> GateResult:
    """The gates' verdict on two gold runs, a do-nothing run and, for a task with ``forbidden`` calls (how
    many: the last steps of ``obedient``'s trajectory), an obedient run: the one place a task is judged,
    whether the runs went over MCP (:func:`check_task_over_mcp`) or in process (:meth:`GateTrial.judge`)."""
    result = GateResult(env_id, task_id)
    result.gold_reward, result.gold_success = first.reward, bool(first.success)
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
    if (first.score or {}).get("diff"):  # the gold changes state: so must an agent, to pass the state checks
        checks = [c for c in (noop.score or {}).get("checks", []) if c["name"].startswith("check[")]
        result.initial_fails = any(not c["passed"] for c in checks)
        if not result.initial_fails:
            result.problems.append("the initial state already passes every check")
    if obedient is not None:
        steps = obedient.trajectory[len(obedient.trajectory) - forbidden :] if forbidden else []
        result.forbidden_refused = bool(steps) and all(step["is_error"] for step in steps)
        result.obedient_success = bool(obedient.success)
        if result.forbidden_refused:
            refusals = "; ".join(f"{step['tool']}: {step['text']}" for step in steps)
            result.problems.append(
                f"the tools already refuse every forbidden call ({refusals}); not a policy refusal: name a call "
                "the tools allow but the policy forbids"
            )
        elif obedient.success:
            done = ", ".join(dict.fromkeys(step["tool"] for step in steps if not step["is_error"]))
            result.problems.append(
                f"an obedient agent that makes the forbidden calls ({done}) still succeeds: add a check that "
                "their effect did not happen"
            )
    return result


async def check_tasks(
    gateway: GatewayClient,
    tasks: list[tuple[str, Task]],
    concurrency: int = 8,
    on_result: Callable[[GateResult], None] | None = None,
) -> list[GateResult]:
    """Gate every (env_id, task), a few at a time; results in input order. ``on_result`` hears of each
    verdict as it comes (for progress)."""
    results: list[GateResult | None] = [None] * len(tasks)
    limiter = anyio.Semaphore(concurrency)

    async def one(index: int, env_id: str, task: Task) -> None:
        async with limiter:
            results[index] = result = await check_task_over_mcp(gateway, env_id, task)
        if on_result is not None:
            on_result(result)

    async with anyio.create_task_group() as tg:
        for index, (env_id, task) in enumerate(tasks):
            tg.start_soon(one, index, env_id, task)
    return [r for r in results if r is not None]


@dataclass(frozen=True)
class RegistrySource:
    """How a worker process finds the registry again: the registry.json read, or the env root scanned."""

    kind: Literal["file", "root"]
    path: Path


TaskRef = tuple[str, int]
"""(env_id, index in the environment's task list): unambiguous, and cheap to send to a worker."""

_progress: Any = None  # the worker's end of the parent's progress queue


def _worker_init(progress: Any) -> None:
    global _progress
    _progress = progress


def _gate_chunk(
    source: RegistrySource,
    url: str | None,
    token: str | None,
    refs: list[TaskRef],
    concurrency: int,
    expected: dict[str, int],
) -> list[GateResult]:
    """In a worker process: load the registry and the environments, then gate ``refs`` through real
    MCP against ``url`` or a gateway of the worker's own."""
    from ..episodes.registry import Registry
    from ..serving.runners import running_gateway
    from .rollout import GatewayClient

    try:
        registry = Registry.load(source.path) if source.kind == "file" else Registry.build(source.path)
        for env_id in dict.fromkeys(env_id for env_id, _ in refs):
            found = len(registry.environment(env_id).tasks)
            if found != expected.get(env_id, found):
                raise RegistryError(
                    f"{env_id} has {found} tasks but {source.path} lists {expected[env_id]}: the registry is "
                    "stale; run `envfleet registry build` (or check with --jobs 1)"
                )
    except EnvFleetError as e:  # as a plain RegistryError: every error crosses back to the parent process intact
        raise RegistryError(str(e)) from None
    tasks = [(env_id, registry.environment(env_id).tasks[index]) for env_id, index in refs]

    def report(result: GateResult) -> None:
        if _progress is not None:
            _progress.put(result)

    async def run(base: str, key: str | None) -> list[GateResult]:
        async with GatewayClient(base, key) as gateway:
            return await check_tasks(gateway, tasks, concurrency, report)

    if url:
        return anyio.run(run, url, token)
    with running_gateway(registry) as local:
        return anyio.run(run, local.url, local.token)


def check_in_processes(
    source: RegistrySource,
    refs: list[TaskRef],
    jobs: int,
    *,
    url: str | None = None,
    token: str | None = None,
    concurrency: int = 8,
    on_result: Callable[[GateResult], None] | None = None,
    expected: dict[str, int] | None = None,
) -> list[GateResult]:
    """Gate ``refs`` across ``jobs`` worker processes (contiguous slices, so each loads few
    environments); results in input order, the same as one process would give. ``expected``: the
    task count of each environment the refs were made from (a worker refuses a mismatch)."""
    jobs = max(1, min(jobs, len(refs)))
    size, extra = divmod(len(refs), jobs)
    chunks, start = [], 0
    for worker in range(jobs):
        end = start + size + (1 if worker < extra else 0)
        chunks.append(refs[start:end])
        start = end
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold threads
    progress = context.Queue()
    heard = 0

    def hear(timeout: float) -> bool:
        nonlocal heard
        try:
            result = progress.get(timeout=timeout)
        except queue.Empty:
            return False
        heard += 1
        if on_result is not None:
            on_result(result)
        return True

    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_worker_init, initargs=(progress,)
    ) as pool:
        futures: list[Future[list[GateResult]]] = [
            pool.submit(_gate_chunk, source, url, token, chunk, concurrency, expected or {}) for chunk in chunks
        ]
        while not all(f.done() for f in futures):
            hear(0.2)
        results = [r for f in futures for r in f.result()]
    while heard < len(results) and hear(1.0):  # the workers have exited: the rest is in the pipe
        pass
    progress.close()
    return results
