"""``envfleet synth``: make environments and task packs. Registered as an ``envfleet`` plugin
(entry point group ``envfleet.commands``), so the runtime's CLI never imports the synthesizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from servers import EnvFleetError, Registry
from servers.cli_support import fail
from servers.episodes import DEFAULT_REGISTRY, PACKAGED_ENV_ROOT

from .catalog import load_catalog
from .llm import LLMConfig
from .llm.backend import LLMBackend
from .pipeline import Job, Result, publish_result, run_batch, save_stages
from .planning import plan_jobs, planned_env_id
from .publish import InvariantViolation, PublishConflict, is_published
from .topics import mine_corpus, read_corpus

app = typer.Typer(
    help="Synthesize environments and task packs (offline and procedural by default, or with an LLM).",
    invoke_without_command=True,
    no_args_is_help=False,
)
out = Console()
err = Console(stderr=True, soft_wrap=True)


PACKAGED = "servers/envs, the packaged environments"
CHECKOUT = "registry.json of the source checkout"
"""How --help shows the default paths: the same wherever the package is installed."""


@app.callback()
def synth(
    ctx: typer.Context,
    topic: Annotated[
        Optional[list[str]], typer.Option(help="A topic (repeatable): a domain id or words like 'dental clinic'.")
    ] = None,
    count: Annotated[
        Optional[int], typer.Option(help="How many environments, spread over the catalog's sectors.")
    ] = None,
    from_corpus: Annotated[Optional[Path], typer.Option(help="JSONL of user requests to mine topics from.")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives byte-identical environments.")] = 1,
    variant: Annotated[int, typer.Option(help="Variant of a --topic domain (0 is the canonical one).")] = 0,
    tasks_per_env: Annotated[int, typer.Option(help="Tasks to synthesize per environment.")] = 20,
    workers: Annotated[
        Optional[int], typer.Option(help="Worker processes (default: one per core; LLM: its concurrency).")
    ] = None,
    env_root: Annotated[
        Path,
        typer.Option(
            envvar="ENVFLEET_ENV_ROOT", help="Where environment folders are published.", show_default=PACKAGED
        ),
    ] = PACKAGED_ENV_ROOT,
    registry: Annotated[
        Path, typer.Option(envvar="ENVFLEET_REGISTRY", help="The registry.json to update.", show_default=CHECKOUT)
    ] = DEFAULT_REGISTRY,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Publish nothing; keep every stage's output under --out.")
    ] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for --dry-run output.")] = None,
    backend: Annotated[
        str, typer.Option(help="procedural (offline, the default) or llm (an OpenAI-compatible model).")
    ] = "procedural",
    llm_config: Annotated[
        Optional[Path], typer.Option(help="TOML file with an \\[llm] section (or ENVFLEET_LLM_CONFIG).")
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="Model for every LLM stage (or ENVFLEET_MODEL).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible endpoint (or OPENAI_BASE_URL).")] = None,
    paraphrase: Annotated[
        bool, typer.Option("--paraphrase", help="LLM: a procedural environment, with instructions worded by the model.")
    ] = False,
    review: Annotated[
        bool, typer.Option("--review", help="LLM: a model reviews recorded tool calls, as an extra gate.")
    ] = False,
    stages: Annotated[
        Optional[str],
        typer.Option(help="LLM: comma-separated stages (judge, domain, seed, tools, paraphrase, review)."),
    ] = None,
    replay: Annotated[
        bool, typer.Option("--replay", help="LLM: answer only from the response cache; never call the endpoint.")
    ] = False,
    cache_dir: Annotated[
        Optional[Path], typer.Option(help="LLM: the response cache folder (or ENVFLEET_LLM_CACHE).")
    ] = None,
    max_envs: Annotated[Optional[int], typer.Option(help="At most this many environments from --from-corpus.")] = None,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="Replace environments published already under the same id (default: refuse, and write nothing).",
        ),
    ] = False,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Exit 0 when some (not all) environments are published (default: exit 1 unless every one is).",
        ),
    ] = False,
) -> None:
    """Make environments: from --topic, --count or --from-corpus; publish them (or --dry-run).

    Exits 1 unless every planned environment was published (or kept, with --dry-run); --allow-partial
    accepts a batch where at least one was."""
    if ctx.invoked_subcommand is not None:
        return
    if not (topic or count or from_corpus):
        out.print(ctx.get_help())
        raise typer.Exit(2)
    if dry_run and out_dir is None:
        raise fail("--dry-run needs --out DIR", 2)
    if backend not in ("procedural", "llm"):
        raise fail(f"--backend must be procedural or llm, not {backend!r}", 2)
    if backend == "procedural" and (paraphrase or review or stages or replay):
        raise fail("--paraphrase, --review, --stages and --replay need --backend llm", 2)
    llm = None
    try:
        catalog = load_catalog()
        if backend == "llm":
            taken = set(Registry.load(registry).ids()) if registry.exists() else set()
            llm = _llm_backend(llm_config, model, base_url, cache_dir, replay, paraphrase, review, stages, taken)
        plan = plan_jobs(
            catalog,
            topics=topic,
            corpus=read_corpus(from_corpus) if from_corpus else None,
            count=count,
            seed=seed,
            variant=variant,
            tasks=tasks_per_env,
            llm=llm,
            max_envs=max_envs,
        )
        if plan.mining is not None:
            _print_mining(plan.mining)
        for note in plan.substitutions:
            _print_substitution(note)
        jobs = plan.jobs
        taken = (
            []
            if dry_run or replace
            else sorted({i for i in map(planned_env_id, jobs) if i is not None and is_published(env_root, i, registry)})
        )
    except EnvFleetError as e:
        if llm is not None:
            llm.client.close()
        raise fail(str(e)) from None
    if taken:  # checked before any work: the README's example must not silently overwrite the packaged fleet
        if llm is not None:
            llm.client.close()
        raise fail(
            f"{', '.join(taken)} {'is' if len(taken) == 1 else 'are'} published already (in {registry} and "
            f"{env_root}); nothing was written. Pass --replace to replace it, or --env-root and --registry to "
            "publish elsewhere, or --dry-run --out DIR to look without publishing."
        )
    try:
        results = _run(jobs, workers if workers or llm is None else llm.client.config.concurrency, llm)
    finally:
        if llm is not None:
            llm.client.close()
    for result in results:
        if dry_run:
            save_stages(result, out_dir)  # type: ignore[arg-type]
        elif result.ok:
            try:
                publish_result(result, env_root, registry, replace=replace)
            except PublishConflict as e:  # an id only known after synthesis (a model named it), or twice in the batch
                result.ok, result.reason = False, f"{e} (--replace replaces it)"
            except InvariantViolation as e:  # a world that breaks its own invariants: this one fails, the batch goes on
                result.ok, result.reason = False, str(e)
    _print_results(results)
    if llm is not None:
        _print_usage(llm.client.usage.to_dict())
    done = sum(r.ok for r in results)
    verb = "kept under " + str(out_dir) if dry_run else f"published to {env_root}"
    out.print(f"{done}/{len(results)} environments passed; {verb}", highlight=False)
    failed = [r for r in results if not r.ok]
    if failed:
        err.print(
            f"[red]shortfall:[/red] {len(failed)} of {len(results)} planned environment(s) not "
            f"{'kept' if dry_run else 'published'}:",
            highlight=False,
        )
        for result in failed:
            err.print(f"  {result.env_id} (topic {result.job.name}): {result.reason}", highlight=False)
    if done == 0 or (failed and not allow_partial):
        if failed and done:
            err.print(
                f"exit 1: {done}/{len(results)} is fewer than asked (--allow-partial accepts a partial batch)",
                highlight=False,
            )
        raise typer.Exit(1)


def _llm_backend(
    config_path: Path | None,
    model: str | None,
    base_url: str | None,
    cache_dir: Path | None,
    replay: bool,
    paraphrase: bool,
    review: bool,
    stages: str | None,
    taken: set[str],
) -> LLMBackend:
    config = LLMConfig.load(config_path, model=model, base_url=base_url, cache_dir=cache_dir, replay=replay or None)
    chosen = {s.strip() for s in stages.split(",") if s.strip()} if stages else None
    return LLMBackend.from_options(config, stages=chosen, paraphrase=paraphrase, review=review, taken=taken)


def _run(jobs: list[Job], workers: int | None, llm: LLMBackend | None = None) -> list[Result]:
    with Progress(
        TextColumn("[bold]synthesizing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
    ) as progress:
        bar = progress.add_task("", total=len(jobs))
        return run_batch(
            jobs, workers, lambda r: progress.update(bar, advance=1, description=r.env_id), llm.session if llm else None
        )


def _print_usage(usage: dict) -> None:
    table = Table("LLM stage", "calls", "from cache", "retries", "prompt tokens", "completion tokens", "cost (USD)")
    for name, u in [*usage["stages"].items(), ("total", usage["total"])]:
        table.add_row(
            name,
            str(u["calls"]),
            str(u["cached"]),
            str(u["retries"]),
            f"{u['prompt_tokens']:,}",
            f"{u['completion_tokens']:,}",
            f"{u['cost_usd']:.4f}",
        )
    out.print(table)


def _print_results(results: list[Result]) -> None:
    """One row per environment; ids are never cut, and a failure's reason is printed whole in the
    shortfall list (on stderr), not squeezed into a cell."""
    table = Table(
        Column("env", no_wrap=True), Column("domain", no_wrap=True), "tools", "tasks", "tests", "seconds", "result"
    )
    for r in results:
        spec = r.stages.get("spec", {})
        tests = r.stages.get("procedural_tests", {})
        table.add_row(
            r.env_id,
            r.stages.get("topic", {}).get("domain", r.job.name),
            str(len(spec.get("tools", []))),
            str(len(r.stages.get("tasks", []))),
            f"{tests.get('score', '-')}",
            f"{r.seconds:.1f}",
            "[green]ok[/green]" if r.ok else "[red]failed[/red]",
        )
    if not out.is_terminal:  # a pipe or a file is not 80 columns wide: the whole table, ids uncut
        out.width = max(out.width, Measurement.get(out, out.options.update_width(1000), table).maximum)
    out.print(table)


def _print_substitution(note: dict) -> None:
    matched = ", ".join(repr(w) for w in note["matched"]) or "nothing"
    err.print(
        f"[yellow]note:[/yellow] topic {note['topic']!r} is made as catalog domain {note['domain']} "
        f"({note['name']!r}, sector {note['sector']}): it matched {matched} (score {note['score']:g}). "
        f"The catalog has no domain by that name; --backend llm models a new domain for the topic itself.",
        highlight=False,
    )


def _print_mining(report: dict) -> None:
    err.print(
        f"corpus: {report['total']} requests, {report['stateful']} stateful, {report['duplicates']} near-duplicates, "
        f"{report['matched']} matched, {len(report['unmatched'])} unmatched; sectors: {report['by_sector']}",
        highlight=False,
    )


@app.command()
def topics(
    corpus: Annotated[
        Optional[Path], typer.Option(help="Mine this JSONL corpus instead of listing the catalog.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the catalog's domains, or mine a corpus of user requests for topics."""
    try:
        catalog = load_catalog()
        report = mine_corpus(catalog, corpus).to_dict() if corpus else None
    except EnvFleetError as e:
        raise fail(str(e)) from None
    if report is not None:
        if as_json:
            out.print_json(json.dumps(report))
        else:
            _print_mining(report)
            for domain, n in report["by_domain"].items():
                out.print(f"  {n:3d}  {domain}", highlight=False)
        return
    table = Table("sector", "domain", "name", "entities", "rules")
    for domain_id in catalog.ids():
        domain = catalog.domain(domain_id)
        table.add_row(
            catalog.sector_of[domain_id], domain_id, domain.name, str(len(domain.entities)), str(len(domain.rules))
        )
    out.print(table)


@app.command()
def stats(
    env_root: Annotated[
        Path, typer.Option(help="Environment folders to measure.", show_default=PACKAGED)
    ] = PACKAGED_ENV_ROOT,
    as_json: Annotated[bool, typer.Option("--json", help="Everything, metrics with their details, as JSON.")] = False,
    baselines: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--baselines",
            help="An `envfleet run` folder (or its trajectories.jsonl) of the noop, random or heuristic agent "
            "(repeatable): their success rates on synthesized tasks, against the targets.",
        ),
    ] = None,
) -> None:
    """The quality bar for synthesized environments and its acceptance metrics.

    Coverage, size, tests, gates, variety; each acceptance metric with its target: met, unmet or n/a."""
    from .stats import fleet_stats, render

    missing = [str(p) for p in baselines or [] if not p.exists()]
    if missing:
        raise fail(f"--baselines: no such file or folder: {', '.join(missing)}", 2)
    try:
        report = fleet_stats(env_root, baselines or [])
    except EnvFleetError as e:  # a --baselines file that is not run results
        raise fail(str(e), 2) from None
    if as_json:
        out.print_json(json.dumps(report))
    else:
        render(report, out)
