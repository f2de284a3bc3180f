"""What every EnvFleet command line shares: ``envfleet`` itself and the plugin commands other packages
register under it (``synth``, ``synthesizer``, ``run``, ``report``, ``export``). One way to fail, one way
to reach a gateway, one way to write the CLI reference; each command stays a thin layer that opens one
library object and calls one method.

Top layer, beside :mod:`servers.cli`: it may import every layer below, and synthesizer/ and harness/
import it (its ``__all__`` is pinned in tests/test_project.py like a layer's).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from .episodes.registry import Registry

__all__ = ["err", "fail", "gateway", "help_text", "cli_reference", "HELP_ENV"]

err = Console(stderr=True, soft_wrap=True)
"""stderr, for errors and progress: lines are never broken at a guessed width when piped."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """``error: message`` on stderr and the exit to raise (``raise fail(...) from None``): code 1 when the
    work failed (an ``EnvFleetError``'s message), 2 when the command line asked for something impossible."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def gateway(registry: Registry, url: str | None) -> Iterator[tuple[str, str | None]]:
    """(base URL, control-plane token) of the gateway a command talks to: ``url`` (the token from
    ``ENVFLEET_CONTROL_TOKEN``), or a gateway on ``registry`` started here for the duration of the block."""
    from .serving.runners import CONTROL_TOKEN_ENV, running_gateway

    if url:
        yield url, os.environ.get(CONTROL_TOKEN_ENV)
        return
    with running_gateway(registry) as local:
        yield local.url, local.token


HELP_ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"}
"""--help as the reference shows it: 100 columns whatever the terminal, no colours."""
_UNSTABLE = ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TERMINAL_WIDTH", "LINES", "_TYPER_FORCE_DISABLE_TERMINAL")


def help_text(command: Sequence[str]) -> str:
    """``envfleet <command> --help`` as a user sees it, run as its own process (plugin commands load only
    when asked for), at a fixed width and without colours; trailing blanks and blank edges are dropped."""
    env = {k: v for k, v in os.environ.items() if k not in _UNSTABLE} | HELP_ENV
    script = "import sys; sys.argv[0] = 'envfleet'; from servers.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", script, *command, "--help"], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"envfleet {' '.join(command)} --help exited {result.returncode}: {result.stderr.strip()}")
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()).strip("\n") + "\n"


_COMMANDS = re.compile(r"^│ (?P<name>[a-z][a-z0-9-]*)\s", re.M)


def cli_reference(intro: str, command: Sequence[str] = ()) -> str:
    """docs/cli.md: ``intro``, then the --help of ``envfleet`` and of every command and subcommand under it,
    found by reading each help's Commands panel."""
    sections = [intro.rstrip("\n") + "\n"]
    todo = [list(command)]
    while todo:
        path = todo.pop(0)
        text = help_text(path)
        sections.append(f"\n## `envfleet{''.join(' ' + p for p in path)}`\n\n```text\n{text}```\n")
        panel = text.split("─ Commands ", 1)[1].split("╰", 1)[0] if "─ Commands " in text else ""
        todo[:0] = [[*path, m["name"]] for m in _COMMANDS.finditer(panel)]
    return "".join(sections)
