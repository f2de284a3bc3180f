"""``envfleet run``, ``envfleet report`` and ``envfleet export``: the harness's commands, registered
as ``envfleet`` plugins (the runtime's CLI never imports this package). Each is a plain function
with typer annotations, added as one command."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import anyio
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from servers import EnvFleetError, Registry
from servers.cli_support import err, fail, gateway
from servers.clients import GatewayClient

from .chat import parse_agent_spec
from .export import ExportFilter, sft_examples
from .report import summarize
from .runner import RunConfig, RunMismatch, read_records, run_trials

out = Console()


def run(
    env: Annotated[str, typer.Option("--env", help="Environment id.")],
    agent: Annotated[
        str, typer.Option(help="gold, noop, random, heuristic, or openai:MODEL (any OpenAI-compatible endpoint).")
    ] = "gold",
    tasks: Annotated[Optional[str], typer.Option(help="Comma-separated task ids (default: all).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Only tasks of this split: train or test.")] = None,
    mode: Annotated[
        str, typer.Option(help="non-conv (the instruction is the first message) or conv (a simulated user).")
    ] = "non-conv",
    user: Annotated[
        str, typer.Option(help="conv mode: scripted (offline, deterministic) or openai:MODEL.")
    ] = "scripted",
    base_url: Annotated[Optional[str], typer.Option(help="The agent model's endpoint (or OPENAI_BASE_URL).")] = None,
    user_base_url: Annotated[
        Optional[str], typer.Option(help="The user model's endpoint (default: --base-url).")
    ] = None,
    trials: Annotated[int, typer.Option(min=1, help="Runs per task (for pass^k).")] = 1,
    concurrency: Annotated[int, typer.Option(min=1, help="Episodes at once.")] = 4,
    seed: Annotated[
        int, typer.Option(help="Seed of trial 0 (trial i uses seed + i), for the models and the random agent.")
    ] = 0,
    temperature: Annotated[float, typer.Option(help="Sampling temperature of the models.")] = 0.0,
    max_steps: Annotated[int, typer.Option(help="Tool calls per episode before it is stopped.")] = 30,
    max_turns: Annotated[int, typer.Option(help="conv mode: user turns before it is stopped.")] = 20,
    max_tokens: Annotated[Optional[int], typer.Option(help="Token limit per completion.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per model request.")] = 120.0,
    episode_timeout: Annotated[float, typer.Option(help="Seconds per episode.")] = 600.0,
    infra_retries: Annotated[
        int, typer.Option(min=0, help="Reruns, on a fresh episode, of a trial that failed for infrastructure reasons.")
    ] = 1,
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="A run folder (resumable), or a .jsonl file.")
    ] = None,
    url: Annotated[Optional[str], typer.Option(help="A running gateway (default: start one here).")] = None,
    registry: Annotated[
        Optional[Path], typer.Option("--registry", envvar="ENVFLEET_REGISTRY", help="registry.json to use.")
    ] = None,
    env_root: Annotated[
        Optional[Path], typer.Option("--env-root", envvar="ENVFLEET_ENV_ROOT", help="Folder of environments.")
    ] = None,
) -> None:
    """Run an agent on an environment's tasks through MCP; one trajectory per line (JSONL)."""
    if mode not in ("non-conv", "conv"):
        raise fail("--mode must be non-conv or conv", 2)
    try:
        reg = Registry.resolve(registry, env_root)
        selected = [task for _, task in reg.select_tasks([env], tasks.split(",") if tasks else None, split)]
    except EnvFleetError as e:
        raise fail(str(e)) from None
    if not selected:
        raise fail("no tasks to run")
    chat_settings = dict(temperature=temperature, max_tokens=max_tokens, timeout=timeout)
    try:
        agent_chat = parse_agent_spec(agent, base_url, **chat_settings) if ":" in agent else None
        user_chat = (
            parse_agent_spec(user, user_base_url or base_url, **chat_settings)
            if mode == "conv" and user != "scripted"
            else None
        )
    except ValueError as e:
        raise fail(str(e), 2) from None
    if agent_chat is None and agent not in ("gold", "noop", "random", "heuristic"):
        raise fail(
            f"unknown agent {agent!r}; built-in agents are gold, noop, random and heuristic, or give openai:MODEL", 2
        )
    if mode == "conv" and agent_chat is None:
        raise fail("conv mode needs an LLM agent (openai:MODEL)", 2)
    config = RunConfig(
        env_id=env,
        tasks=selected,
        agent=agent,
        mode=mode,
        user=user,
        trials=trials,
        concurrency=concurrency,
        seed=seed,
        max_steps=max_steps,
        max_turns=max_turns,
        episode_timeout=episode_timeout,
        infra_retries=infra_retries,
        agent_chat=agent_chat,
        user_chat=user_chat,
    )
    target = out_path
    scratch = None
    if target is None:  # JSONL to stdout: run into a scratch file
        scratch = Path(tempfile.mkdtemp()) / "run.jsonl"
        target = scratch
    total = len(selected) * trials

    async def go(base: str, token: str | None) -> list[dict[str, Any]]:
        with Progress(
            TextColumn("[bold]episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress:
            bar = progress.add_task("", total=total, completed=total - _todo(config, target))
            async with GatewayClient(base, token) as gateway:
                return await run_trials(
                    config,
                    gateway,
                    target,
                    lambda r: progress.update(bar, advance=1, description=f"{r['task_id']} #{r['trial']}"),
                )

    try:
        with gateway(reg, url) as (base, token):
            records = anyio.run(go, base, token)
    except RunMismatch as e:
        raise fail(str(e), 2) from None
    chosen = {t.id for t in selected}
    mine = [r for r in records if r.get("env_id") == env and r.get("task_id") in chosen]
    if scratch is not None:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in mine))
    summary = summarize(mine)
    err.print(
        f"{agent}: {sum(bool(r.get('success')) for r in mine)}/{len(mine)} episodes succeeded, mean reward "
        f"{summary['mean_reward'] if summary['mean_reward'] is not None else '-'}"
        + (f"; {summary['infra_errors']} infrastructure failure(s), not scored" if summary["infra_errors"] else ""),
        highlight=False,
    )


def _todo(config: RunConfig, target: Path) -> int:
    done = {
        (r["task_id"], r["trial"])
        for r in read_records(target)
        if r.get("status") == "ok" and r.get("env_id") == config.env_id
    }
    return sum(1 for trial in range(config.trials) for t in config.tasks if (t.id, trial) not in done)


def report(
    run_path: Annotated[Path, typer.Argument(help="A run folder or .jsonl file.")],
    as_json: Annotated[bool, typer.Option("--json", help="The summary as JSON.")] = False,
) -> None:
    """Mean reward, success, pass^k and a line per task; infrastructure failures apart."""
    records = read_records(run_path)
    if not records:
        raise fail(f"no trajectories in {run_path}")
    summary = summarize(records)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    head = Table("measure", "value")
    for key in (
        "trials",
        "scored",
        "infra_errors",
        "mean_reward",
        "success_rate",
        "pass^k",
        "infra_by_stage",
        "tokens",
        "mean_seconds",
    ):
        value = summary[key]
        head.add_row(key.replace("_", " "), json.dumps(value) if isinstance(value, dict | list) else str(value))
    out.print(head)
    table = Table("env", "task", "trials", "successes", "mean reward", "pass^k")
    for task in summary["tasks"]:
        table.add_row(
            task["env_id"],
            task["task_id"],
            str(task["trials"]),
            str(task["successes"]),
            f"{task['mean_reward']:.3f}",
            " ".join(f"{k}:{v:.2f}" for k, v in task["pass^k"].items()),
        )
    out.print(table)


def export(
    run_path: Annotated[Path, typer.Argument(help="A run folder or .jsonl file.")],
    format_: Annotated[
        str, typer.Option("--format", help="sft: OpenAI chat messages + tools, one example a line.")
    ] = "sft",
    only_success: Annotated[bool, typer.Option("--only-success", help="Only trajectories that succeeded.")] = False,
    min_steps: Annotated[int, typer.Option(help="Fewest tool calls a trajectory may have.")] = 0,
    max_steps: Annotated[Optional[int], typer.Option(help="Most tool calls a trajectory may have.")] = None,
) -> None:
    """Training examples (JSONL on stdout) from a run; what is filtered out is counted on stderr."""
    if format_ != "sft":
        raise fail("--format must be sft", 2)
    records = read_records(run_path)
    if not records:
        raise fail(f"no trajectories in {run_path}")
    rules = ExportFilter(only_success=only_success, min_steps=min_steps, max_steps=max_steps)
    written = 0
    for example in sft_examples(records, rules):
        sys.stdout.write(json.dumps(example, ensure_ascii=False) + "\n")
        written += 1
    err.print(
        f"{written} example(s) written" + (f"; left out: {rules.dropped}" if rules.dropped else ""), highlight=False
    )
