"""EnvFleet runtime: declarative environments served as MCP servers over isolated SQLite state.

The library is usable without any server::

    from servers import Registry

    env = Registry.resolve().environment("library")
    state = env.new_state()
    result = env.call(state, "search_books", {"query": "dune"})
    episode = env.episode(env.tasks[0].id)        # a task's initial state, scored by episode.evaluate()
"""

__version__ = "0.1.0"

from .environment import Environment
from .episodes import Episode
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
from .evaluation import Score
from .executor import Executor, ToolResult
from .pool import StatePool
from .registry import Registry, RegistryEntry
from .spec import EnvSpec
from .state import StateCopy, StateTemplate
from .tasks import Task, TaskPack
from .validation import ValidationReport, parse_spec, validate_spec

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
