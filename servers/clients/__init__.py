"""Layer 5, clients: code that *uses* environments, as an agent would. Agent sessions and the
built-in agents (gold, noop, random), rollouts of one agent through one episode (over MCP and the
control plane, or in process), the task gates that replay gold and noop agents, and a gym-style
reset/step wrapper. Imports any layer below; the runtime below never imports it.
"""

from .agents import (
    Agent,
    AgentSession,
    CallOutcome,
    GoldAgent,
    NoopAgent,
    RandomAgent,
    ToolSpec,
    make_agent,
    schema_value,
)
from .gates import GateResult, GateTrial, RegistrySource, check_in_processes, check_task_in_process, check_tasks
from .gym import ToolUseEnv
from .heuristic import HeuristicAgent
from .mcp_client import MCP_CLIENT_ERRORS, connect_http
from .rollout import (
    ControlPlaneError,
    GatewayClient,
    RolloutRecord,
    ToolCallUncertain,
    rollout_http,
    rollout_in_process,
)

__all__ = [
    "Agent",
    "AgentSession",
    "CallOutcome",
    "ToolSpec",
    "GoldAgent",
    "NoopAgent",
    "RandomAgent",
    "HeuristicAgent",
    "make_agent",
    "schema_value",
    "GatewayClient",
    "RolloutRecord",
    "ControlPlaneError",
    "ToolCallUncertain",
    "rollout_http",
    "rollout_in_process",
    "GateResult",
    "GateTrial",
    "RegistrySource",
    "check_tasks",
    "check_task_in_process",
    "check_in_processes",
    "ToolUseEnv",
    "MCP_CLIENT_ERRORS",
    "connect_http",
]
