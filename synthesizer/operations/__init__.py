"""The tools the modeler makes for an entity, one module per operation kind (see ``base.OperationKind``).

Adding a kind (quote, pay, refund, book a slot ...): write ``synthesizer/operations/<kind>.py`` with a
``@register``-ed ``OperationKind`` (its tools, the tables they write, their probes) and import it
below; the import order is the order tools are listed in a spec, so new kinds go last.
"""

from __future__ import annotations

# isort: off
from . import get, search, find_by_label, list_for, count_by_status, get_status, summarize  # noqa: F401
from . import create, update, transition  # noqa: F401

# isort: on
from .base import OPERATIONS, OperationKind, Tool, ToolRole, operation, register

__all__ = ["OPERATIONS", "OperationKind", "Tool", "ToolRole", "operation", "register"]
