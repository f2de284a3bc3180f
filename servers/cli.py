"""The ``envfleet`` command. Each command opens one library object and calls one method."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from .cli_support import cli_reference, err, fail, gateway
from .episodes.environment import Environment
from .episodes.pool import ID_RULE, Quotas, valid_id
from .episodes.registry import (
    DEFAULT_REGISTRY,
    PACKAGED_ENV_ROOT,
    STAGING_GRACE_SECONDS,
    Registry,
    registry_json_schema,
)
from .errors import EnvFleetError, SpecError
from .spec.models import spec_json_schema

app = typer.Typer(
    name="envfleet",
    help="Serve, inspect and validate EnvFleet environments (MCP servers over isolated SQLite state).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
registry_app = typer.Typer(help="Build and check registry.json.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")

out = Console(soft_wrap=True)  # lines are never broken at a guessed width when piped
PROGRESS_EVERY = 10.0
"""Seconds between progress lines on a stderr that is not a terminal."""
TASKS_PER_JOB = 24
"""A worker process costs seconds to start (imports, a gateway): by default, one per this many tasks at most."""

PACKAGED = "servers/envs, the packaged environments"
CHECKOUT = "registry.json of the source checkout"
"""How --help shows the default paths: the same wherever the package is installed."""
RegistryOpt = Annotated[
    Optional[Path],  # typer reads Optional[...], not X | None
    typer.Option("--registry", envvar="ENVFLEET_REGISTRY", help="registry.json to use."),
]
EnvRootOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--env-root",
        envvar="ENVFLEET_ENV_ROOT",
        help="Folder of environment folders (scanned; no registry file needed).",
    ),
]


def _print_table(headers: list[str], rows: list[list[str]], ids: int = 1) -> None:
    """A table on stdout that never cuts a value: on a terminal, rich columns whose first ``ids``
    (the ids) keep their full width and fold rather than truncate when space runs out; elsewhere
    (a pipe, CI) plain tab-separated lines, which ``cut -f`` and spreadsheets read."""
    if not out.is_terminal:
        sys.stdout.write("".join("\t".join(cell.replace("\t", " ") for cell in row) + "\n" for row in [headers, *rows]))
        sys.stdout.flush()
        return
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers[:ids])]
    words = [
        max(len(w) for text in [h, *(r[i] for r in rows)] for w in text.split() or [""]) for i, h in enumerate(headers)
    ]
    roomy = sum(widths) + sum(words[ids:]) + 3 * len(headers) + 1 <= out.width  # else ids fold, never crop
    columns = [Column(h, overflow="fold", no_wrap=roomy and i < ids) for i, h in enumerate(headers)]
    table = Table(*columns)
    styles = {"pass": "[green]pass[/green]", "FAIL": "[red]FAIL[/red]"}
    for row in rows:
        table.add_row(*(styles.get(cell, escape(cell)) for cell in row))
    out.print(table, soft_wrap=False)


def _registry(registry: Path | None, env_root: Path | None) -> Registry:
    try:
        return Registry.resolve(registry, env_root)
    except EnvFleetError as e:
        raise fail(str(e)) from None


@app.command("list")
def list_envs(
    registry: RegistryOpt = None,
    env_root: EnvRootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the registry entries as JSON.")] = False,
) -> None:
    """List the environments in the registry."""
    reg = _registry(registry, env_root)
    if as_json:
        out.print_json(json.dumps([reg.entry(i).model_dump(mode="json", by_alias=True) for i in reg.ids()]))
        return
    rows = [
        [e.id, e.title, e.version, e.domain, str(e.tool_count), str(len(e.tables))] for e in map(reg.entry, reg.ids())
    ]
    _print_table(["id", "title", "version", "domain", "tools", "tables"], rows)


@app.command()
def serve(
    env: Annotated[
        Optional[str], typer.Argument(help="Environment id from the registry, or an environment folder.")
    ] = None,
    all_envs: Annotated[bool, typer.Option("--all", help="Serve every environment of the registry over HTTP.")] = False,
    transport: Annotated[str, typer.Option(help="stdio or http (--all implies http).")] = "stdio",
    host: Annotated[str, typer.Option(help="HTTP bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8100,
    registry: RegistryOpt = None,
    env_root: EnvRootOpt = None,
    allowed_host: Annotated[
        Optional[list[str]],
        typer.Option(
            "--allowed-host",
            envvar="ENVFLEET_ALLOWED_HOSTS",
            help="Host header to accept besides localhost (e.g. 'fleet:*'); '*' disables the check.",
        ),
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option(help="stdio: start from this task's initial state (its instruction is offered as a prompt)."),
    ] = None,
    state_ttl: Annotated[float, typer.Option(help="Seconds an idle state copy is kept.")] = 1800.0,
    max_states: Annotated[int, typer.Option(help="Most live state copies; more are refused.")] = 4096,
    episode_ttl: Annotated[float, typer.Option(help="Seconds an idle episode is kept.")] = 1800.0,
    max_episodes: Annotated[int, typer.Option(help="Most live episodes; more get HTTP 429.")] = 4096,
    sse: Annotated[bool, typer.Option("--sse", help="Answer with SSE streams instead of JSON responses.")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    watch_interval: Annotated[
        float,
        typer.Option(
            help="Seconds between looks at the registry (or env root) for published "
            "or deleted environments; 0 turns live reload off."
        ),
    ] = 2.0,
    max_states_per_client: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="ENVFLEET_MAX_STATES_PER_CLIENT",
            help="Most live state copies one client address may create; 0: no cap.",
        ),
    ] = 1024,
    max_states_per_prefix: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="ENVFLEET_MAX_STATES_PER_PREFIX",
            help="Most live state copies whose keys share a prefix (the text before the first - . _ or ~); 0: no cap.",
        ),
    ] = 1024,
    new_states_per_second: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="ENVFLEET_NEW_STATES_PER_SECOND",
            help="New state copies one client may create per second, sustained; 0: no rate limit.",
        ),
    ] = 20.0,
    new_state_burst: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="ENVFLEET_NEW_STATE_BURST",
            help="New state copies one client may create at once (the bucket the rate refills).",
        ),
    ] = 200,
    state_min_idle: Annotated[
        float,
        typer.Option(
            min=0,
            envvar="ENVFLEET_STATE_MIN_IDLE",
            help="Seconds idle after which a state copy may be evicted (least recently "
            "used first) to make room under a cap; 0: never evict, only expire "
            "after --state-ttl.",
        ),
    ] = 300.0,
    max_episodes_per_client: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="ENVFLEET_MAX_EPISODES_PER_CLIENT",
            help="Most live episodes one client address may start; 0: no cap.",
        ),
    ] = 0,
    call_threads: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            envvar="ENVFLEET_CALL_THREADS",
            help="Worker threads running tool calls at once across the gateway "
            "(default: the gateway's; /healthz shows it).",
        ),
    ] = None,
    forwarded_allow_ips: Annotated[
        Optional[str],
        typer.Option(
            envvar="FORWARDED_ALLOW_IPS",
            help="Proxies (comma-separated addresses or networks) whose "
            "X-Forwarded-For names the client; default: none is trusted.",
        ),
    ] = None,
) -> None:
    """Serve one environment over stdio or HTTP, or the whole fleet over HTTP (--all)."""
    if all_envs == (env is not None):
        raise fail("give an environment id (or folder), or --all", 2)
    if transport not in ("stdio", "http"):
        raise fail("--transport must be stdio or http", 2)
    if allowed_host and len(allowed_host) == 1 and "," in allowed_host[0]:
        allowed_host = [h.strip() for h in allowed_host[0].split(",") if h.strip()]
    if all_envs or transport == "http":
        from .serving.runners import serve_http

        if task is not None:
            raise fail("--task is for stdio; over HTTP, start an episode: POST /episodes {env_id, task_id}", 2)
        reg = _registry(registry, env_root)
        single = None
        if env is not None:
            single = _env_id(reg, env)
        try:
            quotas = Quotas(
                per_client=max_states_per_client or None,
                per_prefix=max_states_per_prefix or None,
                rate=new_states_per_second or None,
                burst=new_state_burst,
                min_idle=state_min_idle or None,
            )
        except ValueError as e:
            raise fail(str(e), 2) from None
        try:
            extra: dict[str, Any] = {"call_threads": call_threads} if call_threads is not None else {}
            serve_http(
                reg,
                host=host,
                port=port,
                single=single,
                json_response=not sse,
                allowed_hosts=allowed_host,
                state_ttl=state_ttl,
                max_states=max_states,
                episode_ttl=episode_ttl,
                max_episodes=max_episodes,
                watch_interval=watch_interval,
                log_level=log_level,
                state_quotas=quotas,
                max_episodes_per_client=max_episodes_per_client or None,
                forwarded_allow_ips=forwarded_allow_ips,
                **extra,
            )
        except EnvFleetError as e:
            raise fail(str(e)) from None
        return
    from .serving.runners import serve_stdio

    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    environment = _load_env(env, registry, env_root)
    if task is not None and task not in {t.id for t in environment.tasks}:
        raise fail(f"environment {environment.id!r} has no task {task!r}", 2)
    serve_stdio(environment, task)


def _env_id(reg: Registry, env: str) -> str:
    path = Path(env)
    if (path / "env.json").exists() and env not in reg.entries:
        raise fail("serving a folder over HTTP: use --env-root with its parent folder", 2)
    try:
        reg.entry(env)
    except EnvFleetError as e:
        raise fail(str(e)) from None
    return env


def _load_env(env: str | None, registry: Path | None, env_root: Path | None) -> Environment:
    assert env is not None
    try:
        path = Path(env)
        if (path / "env.json").exists() or path.name == "env.json":
            return Environment.load(path)
        return _registry(registry, env_root).environment(env)
    except EnvFleetError as e:
        raise fail(str(e)) from None


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="An environment folder (or its env.json).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result, with each tool's read and write sets, as JSON.")
    ] = False,
) -> None:
    """Check an environment: schema, SQL, names, seed data. Exit 1 with every problem listed."""
    try:
        env = Environment.load(path)
    except SpecError as e:
        if as_json:
            out.print_json(
                json.dumps({"ok": False, "issues": [{"location": i.location, "message": i.message} for i in e.issues]})
            )
        else:
            err.print(f"[red]✗ {path}[/red]: {len(e.issues)} problem(s)", highlight=False)
            for issue in e.issues:
                err.print(f"  [bold]{issue.location}[/bold]: {issue.message}", highlight=False)
        raise typer.Exit(1) from None
    report = env.report
    if as_json:
        out.print_json(
            json.dumps(
                {
                    "ok": True,
                    "id": env.id,
                    "content_hash": env.content_hash,
                    "warnings": [{"location": w.location, "message": w.message} for w in report.warnings],
                    "tools": {name: analysis.to_dict() for name, analysis in report.tools.items()},
                }
            )
        )
        return
    rows = sum(len(rows) for rows in env.seed.values())
    out.print(
        f"[green]✓ {env.id}[/green] {env.spec.version}: {len(env.spec.tables)} tables, {rows} seed rows, "
        f"{len(env.spec.tools)} tools",
        highlight=False,
    )
    for warning in report.warnings:
        out.print(f"  [yellow]warning[/yellow] {warning.location}: {warning.message}", highlight=False)


@app.command("mcp-config")
def mcp_config(
    env: Annotated[str, typer.Argument(help="Environment id.")],
    url: Annotated[
        Optional[str], typer.Option(help="Base URL of a running `envfleet serve --all` (gives an HTTP entry).")
    ] = None,
    state_key: Annotated[
        Optional[str], typer.Option(help="State key for the HTTP entry (private writable state).")
    ] = None,
    command: Annotated[
        Optional[str], typer.Option(help="Command MCP clients should launch (default: this envfleet).")
    ] = None,
    registry: RegistryOpt = None,
    env_root: EnvRootOpt = None,
) -> None:
    """Print the mcpServers JSON snippet for Claude Desktop, Cursor, Claude Code and other MCP clients."""
    if state_key is not None and not valid_id(state_key):
        raise fail(f"--state-key {escape(repr(state_key)[:80])} is not a state key: state keys are {ID_RULE}", 2)
    if state_key is not None and not url:
        raise fail("--state-key is for the HTTP entry: give --url too", 2)
    try:
        document = _registry(registry, env_root).mcp_config(
            env,
            url=url,
            state_key=state_key,
            command=command or _own_command(),
            pin=registry is not None or env_root is not None,
        )
    except EnvFleetError as e:
        raise fail(str(e)) from None
    print(json.dumps(document, indent=2))


def _own_command() -> str:
    """The absolute path of this installation's ``envfleet`` (MCP clients start it without our PATH)."""
    beside = Path(sys.executable).with_name("envfleet")
    if beside.exists():
        return str(beside)
    return shutil.which("envfleet") or "envfleet"


@registry_app.command("build")
def registry_build(
    env_root: Annotated[
        Path, typer.Option(help="Folder of environment folders.", show_default=PACKAGED)
    ] = PACKAGED_ENV_ROOT,
    out_path: Annotated[
        Path, typer.Option("--out", help="Where to write registry.json.", show_default=CHECKOUT)
    ] = DEFAULT_REGISTRY,
) -> None:
    """Regenerate registry.json from the environment folders."""
    try:
        reg = Registry.build(env_root, relative_to=out_path.resolve().parent)
    except EnvFleetError as e:
        raise fail(str(e)) from None
    reg.write(out_path)
    out.print(f"wrote {out_path} ({len(reg.ids())} environments)", highlight=False)


@registry_app.command("init")
def registry_init(
    env_root: EnvRootOpt = None,
    registry: RegistryOpt = None,
) -> None:
    """Make an env root a fleet on first use (what a container runs before it serves): copy the
    packaged environments in when it has none, build its registry when missing."""
    from .episodes.registry import init_fleet

    if env_root is None or registry is None:
        raise fail("give --env-root and --registry (or ENVFLEET_ENV_ROOT and ENVFLEET_REGISTRY)", 2)
    try:
        copied = init_fleet(env_root, registry)
    except EnvFleetError as e:
        raise fail(str(e)) from None
    err.print(
        f"{registry}: {len(Registry.load(registry).ids())} environments"
        + (f" ({len(copied)} copied in)" if copied else ""),
        highlight=False,
    )


@registry_app.command("check")
def registry_check(
    registry: Annotated[Path, typer.Option(help="registry.json to check.", show_default=CHECKOUT)] = DEFAULT_REGISTRY,
    env_root: Annotated[
        Optional[Path],
        typer.Option("--env-root", help="The env root it lists (default: the folder its environments are in)."),
    ] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Remove leftover staging folders and rebuild a stale registry.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            help="Seconds a staging folder must be untouched to count as a leftover "
            "(younger ones may be a publish under way)."
        ),
    ] = STAGING_GRACE_SECONDS,
) -> None:
    """Exit 1 if registry.json does not match the environment folders it lists, is in an older format,
    or its env root holds staging folders an interrupted publish left behind. --fix repairs all three."""
    from .episodes.registry import rebuild, remove_leftovers, staging_folders

    try:
        reg = Registry.load(registry)
    except EnvFleetError as e:
        raise fail(str(e)) from None
    roots = [env_root.resolve()] if env_root else reg.env_roots()
    if not roots and registry.resolve() == DEFAULT_REGISTRY.resolve():
        roots = [PACKAGED_ENV_ROOT]
    stale, outdated = reg.stale(), reg.outdated()
    leftovers = [f for root in roots for f in staging_folders(root) if f.age >= grace]
    if fix:
        for root in roots:
            for removed in remove_leftovers(root, grace):
                err.print(
                    f"removed {removed.path} (a staging folder untouched for {removed.age / 60:.0f} min)",
                    highlight=False,
                )
        if stale or outdated:
            if len(roots) != 1:
                raise fail(f"{registry} lists environments from {len(roots)} folders; rebuild with --env-root DIR")
            try:
                reg = rebuild(registry, roots[0])
            except EnvFleetError as e:
                raise fail(str(e)) from None
            err.print(f"rebuilt {registry} from {roots[0]} ({len(reg.ids())} environments)", highlight=False)
        stale, outdated = reg.stale(), reg.outdated()
        leftovers = [f for root in roots for f in staging_folders(root) if f.age >= grace]
    problems = []
    if stale:
        problems.append(f"{registry} is stale for: {', '.join(stale)}")
    if outdated:
        problems.append(f"{registry} is in an older format (not valid server.json) for: {', '.join(outdated)}")
    if leftovers:
        problems.append("staging folders left by an interrupted publish: " + ", ".join(str(f.path) for f in leftovers))
    if problems:
        for problem in problems[:-1]:
            err.print(f"[red]error:[/red] {problem}", highlight=False)
        raise fail(f"{problems[-1]}; run `envfleet registry check --fix`" if not fix else problems[-1])
    out.print(f"{registry} is up to date ({len(reg.ids())} environments)", highlight=False)


@app.command("schema")
def export_schema(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the JSON Schemas into.")] = Path("docs"),
) -> None:
    """Write the JSON Schemas of env.json, task packs and registry.json."""
    from .spec.tasks import task_json_schema

    out_dir.mkdir(parents=True, exist_ok=True)
    for name, schema in (
        ("env-spec.schema.json", spec_json_schema()),
        ("task.schema.json", task_json_schema()),
        ("registry.schema.json", registry_json_schema()),
    ):
        (out_dir / name).write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        out.print(f"wrote {out_dir / name}", highlight=False)


class _Progress:
    """How far a check is, on stderr: a live bar on a terminal; elsewhere (CI logs) a line every
    :data:`PROGRESS_EVERY` seconds and one at the end."""

    def __init__(self, total: int, jobs: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.total, self.jobs, self.done, self.failed = total, jobs, 0, 0
        self.start = self.last = time.monotonic()
        self.bar: Progress | None = None
        if err.is_terminal:
            self.bar = Progress(
                TextColumn("gating"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=err,
                transient=True,
            )
            self.task = self.bar.add_task("", total=total)
            self.bar.start()

    def __call__(self, result: Any) -> None:
        self.done += 1
        self.failed += not result.passed
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=f"{self.failed} failed" if self.failed else "")
        elif time.monotonic() - self.last >= PROGRESS_EVERY:
            self._line()

    def _line(self) -> None:
        self.last = time.monotonic()
        err.print(
            f"check: {self.done}/{self.total} tasks gated, {self.failed} failed, {self.last - self.start:.0f}s "
            f"({self.jobs} job{'s' if self.jobs > 1 else ''})",
            highlight=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        else:
            self._line()


def _default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_document(results: list[Any]) -> dict[str, Any]:
    per_env: dict[str, dict[str, int]] = {}
    for r in results:
        counts = per_env.setdefault(r.env_id, {"tasks": 0, "passed": 0, "failed": 0})
        counts["tasks"] += 1
        counts["passed" if r.passed else "failed"] += 1
    passed = sum(r.passed for r in results)
    return {
        "ok": passed == len(results),
        "totals": {"tasks": len(results), "passed": passed, "failed": len(results) - passed},
        "environments": per_env,
        "results": [r.to_dict() for r in results],
    }


@app.command()
def check(
    envs: Annotated[
        Optional[list[str]], typer.Argument(help="Environment ids (default with --all: every one).")
    ] = None,
    all_envs: Annotated[bool, typer.Option("--all", help="Check every environment of the registry.")] = False,
    url: Annotated[
        Optional[str], typer.Option(help="A running gateway to check against (default: start one here).")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Tasks checked at once, per job.")] = 8,
    jobs: Annotated[
        Optional[int],
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Worker processes, each loading its environments and running its own gateway "
            "(default: the number of CPUs; 1 checks in this process).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON document: per-task results and totals.")
    ] = False,
    registry: RegistryOpt = None,
    env_root: EnvRootOpt = None,
) -> None:
    """Run the task gates over real MCP: gold scores 1.0, noop fails, the initial state fails a check (when the
    gold changes it), gold replays are deterministic, and an agent that obeys a refusal task's forbidden request
    fails. Exit 1 if any task fails a gate."""
    import anyio

    from .clients.gates import RegistrySource, check_in_processes, check_tasks
    from .clients.rollout import GatewayClient
    from .serving.runners import CONTROL_TOKEN_ENV

    reg = _registry(registry, env_root)
    if all_envs == bool(envs):
        raise fail("give environment ids, or --all", 2)
    env_ids = reg.ids() if all_envs else list(envs or [])
    try:  # the registry's own counts: a parallel check leaves loading the environments to its workers
        counts = {env_id: sum(pack.tasks for pack in reg.entry(env_id).task_packs) for env_id in env_ids}
    except EnvFleetError as e:
        raise fail(str(e)) from None
    source = (
        RegistrySource("file", reg.source) if reg.source else RegistrySource("root", reg.root) if reg.root else None
    )
    total = sum(counts.values())
    jobs = max(1, min(jobs or min(_default_jobs(), total // TASKS_PER_JOB), total)) if source else 1
    try:
        selected = reg.select_tasks(env_ids) if jobs == 1 else []
    except EnvFleetError as e:
        raise fail(str(e)) from None
    if not (selected if jobs == 1 else total):
        raise fail("no tasks to check")
    progress = _Progress(len(selected) if jobs == 1 else total, jobs)

    async def gate(base: str, token: str | None) -> list[Any]:
        async with GatewayClient(base, token) as gateway:
            return await check_tasks(gateway, selected, concurrency, progress)

    try:
        if jobs == 1:
            with gateway(reg, url) as (base, token):
                results = anyio.run(gate, base, token)
        else:
            assert source is not None
            refs = [(env_id, index) for env_id, count in counts.items() for index in range(count)]
            results = check_in_processes(
                source,
                refs,
                jobs,
                url=url,
                token=os.environ.get(CONTROL_TOKEN_ENV) if url else None,
                concurrency=concurrency,
                on_result=progress,
                expected=counts,
            )
    except EnvFleetError as e:
        raise fail(str(e)) from None
    finally:
        progress.close()
    failed = [r for r in results if not r.passed]
    if as_json:
        print(json.dumps(_check_document(results), indent=2, ensure_ascii=False))
    else:
        obedient = any(r.obedient_success is not None for r in results)  # a column only when a task has the gate
        _print_table(
            [
                "env",
                "task",
                "gold",
                "noop",
                "initial fails",
                "deterministic",
                *(["obedient"] if obedient else []),
                "result",
            ],
            [
                [
                    r.env_id,
                    r.task_id,
                    f"{r.gold_reward}",
                    str(r.noop_success),
                    "-" if r.initial_fails is None and r.gold_success else str(r.initial_fails),
                    str(r.deterministic),
                    *([_obedient_cell(r)] if obedient else []),
                    "pass" if r.passed else "FAIL",
                ]
                for r in results
            ],
            ids=2,
        )
        for r in failed:
            for problem in r.problems:
                err.print(f"[red]{escape(r.env_id)}/{escape(r.task_id)}[/red]: {escape(problem)}", highlight=False)
        out.print(f"{len(results) - len(failed)}/{len(results)} tasks pass every gate", highlight=False)
    if failed:
        raise typer.Exit(1)


def _obedient_cell(result: Any) -> str:
    """The obedient gate in the check table: ``-`` when the task names no forbidden calls, ``refused`` when the tools
    refuse them all, else whether the obedient agent succeeded (False is the pass)."""
    if result.forbidden_refused:
        return "refused"
    return "-" if result.obedient_success is None else str(result.obedient_success)


CLI_REFERENCE_INTRO = """# Command-line reference

Every `envfleet` command and subcommand, including the plugin commands the synthesizer (`synth`,
`synthesizer`) and the harness (`run`, `report`, `export`) register, exactly as `--help` prints it at
100 columns. Generated; do not edit. Regenerate after changing a command's options or help:

    envfleet cli-reference --out docs/cli.md

`tests/servers/test_cli.py` fails when this file differs from what the commands print.
"""


@app.command("cli-reference", hidden=True)
def write_cli_reference(
    out_path: Annotated[
        Optional[Path], typer.Option("--out", help="Write the reference here (default: stdout).")
    ] = None,
) -> None:
    """Write docs/cli.md: the --help of every command and subcommand, plugins included."""
    text = cli_reference(CLI_REFERENCE_INTRO)
    if out_path is None:
        sys.stdout.write(text)
        return
    out_path.write_text(text, encoding="utf-8")
    err.print(f"wrote {out_path}", highlight=False)


def _plugins(argv: list[str]) -> None:
    """Add command groups other packages register under the ``envfleet.commands`` entry point group
    (the synthesizer's ``synth``), without this package importing them: a group is imported only
    when it is the command asked for, so a broken plugin cannot take the runtime's commands down."""
    from importlib.metadata import entry_points

    asked = next((a for a in argv if not a.startswith("-")), None)
    for entry in entry_points(group="envfleet.commands"):
        if entry.name != asked:
            app.command(
                name=entry.name,
                help=f"(from {entry.value.split(':')[0]}; see `envfleet {entry.name} --help`)",
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            )(lambda: None)
            continue
        try:
            command = entry.load()
            if isinstance(command, typer.Typer):  # a command group (``synth``)
                app.add_typer(command, name=entry.name)
            else:  # a single command (``report PATH``)
                app.command(name=entry.name)(command)
        except Exception as e:  # noqa: BLE001 - report any failure of a plugin as a clean error
            err.print(
                f"[red]error:[/red] command group {entry.name!r} ({entry.value}) failed to load: "
                f"{type(e).__name__}: {e}",
                highlight=False,
            )
            raise SystemExit(1) from None


def main() -> None:
    _plugins(sys.argv[1:])
    app()
