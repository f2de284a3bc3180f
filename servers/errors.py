"""The EnvFleet error tree: one root for every error the project raises on purpose, so a command
catches ``EnvFleetError`` and prints its message (no stack trace) whatever part of the project failed.

    EnvFleetError
    │ the runtime (this module unless named)
    ├── SpecError              an environment spec (or its seed data) is invalid; carries every issue found
    │   └── TaskPackError      a task pack is invalid (issues located by file, line and field)
    ├── RegistryError          registry.json is missing, malformed or names an unknown environment or task
    ├── StateError             the state store cannot serve a request (capacity, unknown state key)
    │   ├── StateCapacityError too many live state copies (or episodes)
    │   └── EpisodeNotFound    no live episode has that id (never existed, deleted or expired)
    ├── ToolError              a tool call failed; becomes an MCP result with ``isError: true``
    │   ├── UnknownToolError   no tool by that name
    │   ├── ToolArgumentError  arguments do not match the tool's input schema
    │   ├── RuleViolation      a ``require`` step (a business rule) refused the call
    │   ├── ReadOnlyStateError a write tool was called where state is shared and read-only
    │   └── ToolExecutionError SQLite refused a statement (constraint, budget, ...)
    ├── SqlProblem, CheckProblem   a statement or table check is not acceptable (spec/sql_analysis.py, spec/ddl.py;
    │                          become SpecIssues)
    ├── CallPreempted          a call outgrew its inline budget and was rolled back, to run again (state/executor.py)
    ├── _FunctionFailure       raised inside an SQL function (state/store.py), read back with function_error()
    │ the runtime's clients (servers/clients/rollout.py)
    ├── ControlPlaneError      the gateway's control plane refused or failed a request
    ├── ToolCallUncertain      a write's outcome is unknown (lost in transit): never resent
    │ the synthesizer (synthesizer/errors.py draws its branch)
    ├── SynthesisError         something the synthesizer was asked to make could not be made
    │   ├── LLMError           a model could not help (synthesizer/llm/errors.py: config, auth, reach, ...)
    │   ├── ReplyProblem, Problems           a model's reply or proposal is unusable (fed back to the model)
    │   ├── CatalogError, NoMatchingDomain, CorpusError, SeedingError   the catalog, a topic, a corpus, a seed
    │   ├── PublishConflict    the id is published already
    │   └── QueueFull, IdempotencyConflict   the REST service refuses a job
    │ the harness (harness/errors.py)
    └── HarnessError           a run of agents could not go on as asked
        ├── ChatError          a model endpoint failed or answered no completion
        └── RunMismatch        resuming a run with other settings

A ``ToolError`` is the agent's problem and its message is written for the agent; every other
error is the operator's problem. A class that was a ``ValueError`` before it joined the tree keeps
``ValueError`` as a second base, so callers that catch ``ValueError`` behave as before.
tests/test_project.py checks that every exception class defined in servers/, synthesizer/ and harness/ is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
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


class EnvFleetError(Exception):
    """Root of every error EnvFleet raises on purpose."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec, located by a path such as ``tools.checkout.steps[2].sql``."""

    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


class SpecError(EnvFleetError):
    """A spec failed validation. ``issues`` lists every problem, each with its location."""

    what = "the environment spec"

    def __init__(self, issues: list[SpecIssue], source: str | None = None) -> None:
        self.issues = issues
        self.source = source
        head = f"{source}: " if source else ""
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{head}{len(issues)} problem(s) in {self.what}:\n{lines}")


class TaskPackError(SpecError):
    """A task pack failed validation; issue locations name the file, line and field."""

    what = "the task pack"


class RegistryError(EnvFleetError):
    """The registry cannot be read or does not know the requested environment (or task)."""


class StateError(EnvFleetError):
    """The state store cannot serve the request."""


class StateCapacityError(StateError):
    """A cap on live state copies (or episodes), or the rate of new ones, is reached.

    ``retry_after`` is how many seconds until a retry can succeed, when that is known."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EpisodeNotFound(StateError):
    """No live episode has the id: it never existed, was deleted, or expired."""


class ToolError(EnvFleetError):
    """A tool call failed. The message is meant for the agent that made the call."""

    kind = "tool_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, "message": self.message, **self.details}


class UnknownToolError(ToolError):
    kind = "unknown_tool"


class ToolArgumentError(ToolError):
    kind = "invalid_arguments"


class RuleViolation(ToolError):
    kind = "rule_violation"


class ReadOnlyStateError(ToolError):
    kind = "read_only_state"


class ToolExecutionError(ToolError):
    kind = "execution_error"
