"""The synthesizer's branch of the project's error tree (root: :class:`servers.errors.EnvFleetError`).

    EnvFleetError
    └── SynthesisError      something the synthesizer was asked to make could not be made
"""

from __future__ import annotations

from servers import EnvFleetError

__all__ = ["SynthesisError"]


class SynthesisError(EnvFleetError):
    """Root of every error the synthesizer raises on purpose."""
