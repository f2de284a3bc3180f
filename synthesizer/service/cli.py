"""``envfleet synthesizer serve``: the REST service (registered as an ``envfleet`` plugin)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from servers.cli_support import fail
from servers.episodes import DEFAULT_REGISTRY, PACKAGED_ENV_ROOT

app = typer.Typer(help="The synthesizer's REST service.", no_args_is_help=True)

TOKEN_ENV = "ENVFLEET_SYNTH_TOKEN"
LOCAL = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Bind address; a public one needs a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    env_root: Annotated[
        Optional[Path], typer.Option(help="Where environments are published (or ENVFLEET_ENV_ROOT).")
    ] = None,
    registry: Annotated[Optional[Path], typer.Option(help="The registry.json to keep (or ENVFLEET_REGISTRY).")] = None,
    jobs_db: Annotated[
        Optional[Path], typer.Option(help="SQLite file for jobs (default: beside the registry).")
    ] = None,
    token_file: Annotated[
        Optional[Path], typer.Option(help=f"A file holding the bearer token (or {TOKEN_ENV}).")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Jobs run at once.")] = 1,
    max_queued: Annotated[int, typer.Option(min=1, help="Jobs that may wait; beyond, POSTs get 429.")] = 16,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body, in MB.")] = 8.0,
    fleet_url: Annotated[
        Optional[str], typer.Option(help="A fleet gateway to tell to reload after publishing (or ENVFLEET_FLEET_URL).")
    ] = None,
    llm_config: Annotated[
        Optional[Path], typer.Option(help="TOML for the llm backend (or ENVFLEET_LLM_CONFIG).")
    ] = None,
    allowed_host: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Host header to accept besides localhost, as for the gateway: 'synth' (any port), "
            "'synth:8000', 'synth:*'; '*' turns the Host/Origin check off."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the synthesizer's REST API (jobs, environments, registry) with uvicorn."""
    import uvicorn

    from .app import create_app
    from .runner import ServiceSettings

    token = token_file.read_text(encoding="utf-8").strip() if token_file else os.environ.get(TOKEN_ENV) or None
    if host not in LOCAL and not token:
        raise fail(
            f"refusing to listen on {host} without a token: every write would be open to the network. Set "
            f"{TOKEN_ENV} or --token-file (or listen on 127.0.0.1)",
            2,
        )
    root = env_root or Path(os.environ.get("ENVFLEET_ENV_ROOT") or PACKAGED_ENV_ROOT)
    registry_path = registry or Path(os.environ.get("ENVFLEET_REGISTRY") or DEFAULT_REGISTRY)
    hosts = allowed_host or [h.strip() for h in os.environ.get("ENVFLEET_ALLOWED_HOSTS", "").split(",") if h.strip()]
    settings = ServiceSettings(
        env_root=root.resolve(),
        registry=registry_path.resolve(),
        db=(jobs_db or registry_path.resolve().parent / ".envfleet-jobs.sqlite"),
        token=token,
        max_queued=max_queued,
        workers=workers,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        fleet_url=fleet_url or os.environ.get("ENVFLEET_FLEET_URL") or None,
        fleet_token=os.environ.get("ENVFLEET_CONTROL_TOKEN") or None,
        llm_config=llm_config,
        allowed_hosts=hosts,
    )
    settings.env_root.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level.lower(), lifespan="on")
