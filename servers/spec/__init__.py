"""Layer 1, the spec: what an environment *is*, as data. The env.json models, the static checks
(SQL parsed with sqlglot, read/write sets, determinism and cost rules), the DDL they imply, and the
task-pack models. Nothing here touches a database file or runs a tool call. Imports only
:mod:`servers.errors` and its own modules.
"""

from .models import (
    SPEC_FORMAT,
    Column,
    Comparison,
    EnvSpec,
    ExecStep,
    LetStep,
    Limits,
    RequireStep,
    ReturnStep,
    Step,
    Table,
    TableCheck,
    Tool,
    spec_json_schema,
)
from .tasks import (
    Answer,
    Check,
    Collateral,
    DeleteRows,
    GoldCall,
    InsertRows,
    StateChange,
    Task,
    TaskPack,
    UpdateRows,
    UserScenario,
    load_task_pack,
    task_json_schema,
    task_problems,
)
from .validation import ToolAnalysis, ValidationReport, parse_spec, validate_spec

__all__ = [
    "SPEC_FORMAT", "EnvSpec", "Table", "Column", "TableCheck", "Tool", "Step", "RequireStep", "LetStep", "ExecStep",
    "ReturnStep", "Comparison", "Limits", "spec_json_schema",
    "ValidationReport", "ToolAnalysis", "parse_spec", "validate_spec",
    "Task", "TaskPack", "UserScenario", "StateChange", "InsertRows", "UpdateRows", "DeleteRows", "GoldCall", "Check",
    "Collateral", "Answer", "task_problems", "load_task_pack", "task_json_schema",
]
