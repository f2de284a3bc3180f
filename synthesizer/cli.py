"""``envfleet synth``: make environments and task packs. Registered as an ``envfleet`` plugin
(entry point group ``envfleet.commands``), so the runtime's CLI never imports the synthesizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from servers.registry import DEFAULT_REGISTRY, PACKAGED_ENV_ROOT

from .catalog import CatalogError, load_catalog
from .pipeline import Job, Result, plan_batch, publish_result, run_batch, save_stages
from .topics import NoMatchingDomain, match_topic, mine_corpus

app = typer.Typer(help="Synthesize environments and task packs (offline, procedural).", invoke_without_command=True,
                  no_args_is_help=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@app.callback()
def synth(
    ctx: typer.Context,
    topic: Annotated[Optional[list[str]], typer.Option(help="A topic (repeatable): a domain id or words like 'dental clinic'.")] = None,  # noqa: UP045
    count: Annotated[Optional[int], typer.Option(help="How many environments, spread over the catalog's sectors.")] = None,  # noqa: UP045
    from_corpus: Annotated[Optional[Path], typer.Option(help="JSONL of user requests to mine topics from.")] = None,  # noqa: UP045
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives byte-identical environments.")] = 1,
    variant: Annotated[int, typer.Option(help="Variant of a --topic domain (0 is the canonical one).")] = 0,
    tasks_per_env: Annotated[int, typer.Option(help="Tasks to synthesize per environment.")] = 20,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes (default: one per core).")] = None,  # noqa: UP045
    env_root: Annotated[Path, typer.Option(help="Where environment folders are published.")] = PACKAGED_ENV_ROOT,
    registry: Annotated[Path, typer.Option(help="The registry.json to update.")] = DEFAULT_REGISTRY,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Publish nothing; keep every stage's output under --out.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Folder for --dry-run output.")] = None,  # noqa: UP045
) -> None:
    """Make environments: from --topic, --count or --from-corpus; publish them (or --dry-run)."""
    if ctx.invoked_subcommand is not None:
        return
    if not (topic or count or from_corpus):
        out.print(ctx.get_help())
        raise typer.Exit(2)
    if dry_run and out_dir is None:
        raise _fail("--dry-run needs --out DIR", 2)
    try:
        catalog = load_catalog()
        jobs: list[Job] = []
        for text in topic or []:
            jobs.append(Job(match_topic(catalog, text).domain_id, seed, variant, tasks_per_env))
        if from_corpus:
            report = mine_corpus(catalog, from_corpus)
            _print_mining(report.to_dict())
            jobs += [Job(d, seed, 0, tasks_per_env) for d in report.domains()]
        if count:
            jobs += plan_batch(count, seed, tasks_per_env)
    except (CatalogError, NoMatchingDomain, OSError, ValueError) as e:
        raise _fail(str(e)) from None
    results = _run(jobs, workers)
    published = 0
    for result in results:
        if dry_run:
            save_stages(result, out_dir)  # type: ignore[arg-type]
        elif result.ok:
            publish_result(result, env_root, registry)
            published += 1
    _print_results(results)
    verb = "kept under " + str(out_dir) if dry_run else f"published to {env_root}"
    out.print(f"{sum(r.ok for r in results)}/{len(results)} environments passed; {verb}", highlight=False)
    if not any(r.ok for r in results):
        raise typer.Exit(1)


def _run(jobs: list[Job], workers: int | None) -> list[Result]:
    with Progress(TextColumn("[bold]synthesizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=err, transient=True) as progress:
        bar = progress.add_task("", total=len(jobs))
        return run_batch(jobs, workers, lambda r: progress.update(bar, advance=1, description=r.env_id))


def _print_results(results: list[Result]) -> None:
    table = Table("env", "domain", "tools", "tasks", "tests", "seconds", "result")
    for r in results:
        spec = r.stages.get("spec", {})
        tests = r.stages.get("procedural_tests", {})
        table.add_row(r.env_id, r.job.domain_id, str(len(spec.get("tools", []))), str(len(r.stages.get("tasks", []))),
                      f"{tests.get('score', '-')}", f"{r.seconds:.1f}", "[green]ok[/green]" if r.ok else f"[red]{r.reason}[/red]")
    out.print(table)


def _print_mining(report: dict) -> None:
    err.print(f"corpus: {report['total']} requests, {report['stateful']} stateful, {report['duplicates']} near-duplicates, "
              f"{report['matched']} matched, {len(report['unmatched'])} unmatched; sectors: {report['by_sector']}", highlight=False)


@app.command()
def topics(
    corpus: Annotated[Optional[Path], typer.Option(help="Mine this JSONL corpus instead of listing the catalog.")] = None,  # noqa: UP045
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the catalog's domains, or mine a corpus of user requests for topics."""
    catalog = load_catalog()
    if corpus:
        report = mine_corpus(catalog, corpus).to_dict()
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
        table.add_row(catalog.sector_of[domain_id], domain_id, domain.name, str(len(domain.entities)), str(len(domain.rules)))
    out.print(table)


@app.command()
def stats(
    env_root: Annotated[Path, typer.Option(help="Environment folders to measure.")] = PACKAGED_ENV_ROOT,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The quality bar for synthesized environments: coverage, size, tests, gates, variety."""
    from .stats import fleet_stats, render

    report = fleet_stats(env_root)
    if as_json:
        out.print_json(json.dumps(report))
    else:
        render(report, out)
