"""EnvFleet runtime: declarative environments served as MCP servers over isolated SQLite state.

The library is usable without any server::

    from servers import Episode, Registry

    env = Registry.resolve().environment("library")
    state = env.new_state()
    result = env.call(state, "search_books", {"query": "dune"})
    episode = Episode(env, env.tasks[0].id)       # a task's initial state, scored by episode.evaluate()

The package reads in layers, each importing only those below it (docs/architecture.md):
:mod:`servers.errors` and :mod:`servers.version`, then :mod:`servers.spec`, :mod:`servers.state`,
:mod:`servers.episodes`, :mod:`servers.serving`, :mod:`servers.clients`, and :mod:`servers.cli` on top, beside
:mod:`servers.cli_support` (what every command line shares, the synthesizer's and harness's plugin commands included).
This facade re-exports the library's core; each layer's ``__init__`` exports the rest of its public names.
"""

from .episodes import Environment, Episode, Registry, RegistryEntry, Score, StatePool
from .errors import (
    EnvFleetError,
    EpisodeNotFound,
    ReadOnlyStateError,
    RegistryError,
    RuleViolation,
    SpecError,
    SpecIssue,
    StateCapacityError,
    StateError,
    TaskPackError,
    ToolArgumentError,
    ToolError,
    ToolExecutionError,
    UnknownToolError,
)
from .spec import EnvSpec, Task, TaskPack, ValidationReport, parse_spec, validate_spec
from .state import Executor, StateCopy, StateTemplate, ToolResult
from .version import __version__

__all__ = [
    "__version__",
    "EnvSpec",
    "Environment",
    "Episode",
    "Task",
    "TaskPack",
    "Score",
    "Executor",
    "ToolResult",
    "Registry",
    "RegistryEntry",
    "StateCopy",
    "StateTemplate",
    "StatePool",
    "ValidationReport",
    "parse_spec",
    "validate_spec",
    "EnvFleetError",
    "SpecError",
    "SpecIssue",
    "TaskPackError",
    "RegistryError",
    "StateError",
    "StateCapacityError",
    "EpisodeNotFound",
    "ToolError",
    "UnknownToolError",
    "ToolArgumentError",
    "RuleViolation",
    "ReadOnlyStateError",
    "ToolExecutionError",
]
