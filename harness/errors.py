"""The harness's branch of the project's error tree (root: :class:`servers.errors.EnvFleetError`).

    EnvFleetError
    └── HarnessError        a run of agents could not go on as asked
        ├── ChatError       a model endpoint (the agent's or the simulated user's) failed or answered no completion
        └── RunMismatch     resuming a run with other settings would mix two experiments (also a ValueError)

The rollout client's errors (``ControlPlaneError``, ``ToolCallUncertain``) belong to the runtime's
client layer, :mod:`servers.clients`, and derive from ``EnvFleetError`` there.
"""

from __future__ import annotations

from servers import EnvFleetError

__all__ = ["HarnessError"]


class HarnessError(EnvFleetError):
    """Root of every error the harness raises on purpose."""
