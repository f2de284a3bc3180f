"""EnvFleet runtime: declarative environments served as MCP servers over isolated SQLite state.

The library is usable without any server::

    from servers import Registry

    env = Registry.resolve().environment("library")
    state = env.new_state()
    result = env.call(state, "search_books", {"query": "dune"})
"""

__version__ = "0.1.0"

from .environment import Environment
from .errors import (
    EnvFleetError,
    ReadOnlyStateError,
    RegistryError,
    RuleViolation,
    SpecError,
    SpecIssue,
    StateCapacityError,
    StateError,
    ToolArgumentError,
    ToolError,
    ToolExecutionError,
    UnknownToolError,
)
from .executor import Executor, ToolResult
from .registry import Registry, RegistryEntry
from .spec import EnvSpec
from .state import StateCopy, StateTemplate
from .state_pool import StatePool
from .validation import ValidationReport, parse_spec, validate_spec

__all__ = [
    "__version__",
    "EnvSpec",
    "Environment",
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
    "RegistryError",
    "StateError",
    "StateCapacityError",
    "ToolError",
    "UnknownToolError",
    "ToolArgumentError",
    "RuleViolation",
    "ReadOnlyStateError",
    "ToolExecutionError",
]
