"""Layer 2, the state: a spec made executable. The seeded template database and its isolated
copies (SQLite, under an authorizer), tool steps compiled and proven against SQLite, the executor
that runs one call in one transaction, and row-level diffs between two states. Imports
:mod:`servers.errors` and the spec layer, nothing above.
"""

from .compiler import CompiledTool, compile_tools
from .diff import StateDiff, TableDiff, diff_states
from .executor import CallPreempted, Executor, ToolResult, preemptible
from .store import StateCopy, StateTemplate

__all__ = [
    "StateTemplate",
    "StateCopy",
    "CompiledTool",
    "compile_tools",
    "Executor",
    "ToolResult",
    "CallPreempted",
    "preemptible",
    "StateDiff",
    "TableDiff",
    "diff_states",
]
