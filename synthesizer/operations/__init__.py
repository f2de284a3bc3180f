"""The tools the modeler makes for an entity, one module per operation kind (see ``base.OperationKind``).

Adding a kind (quote, pay, refund, book a slot ...): write ``synthesizer/operations/<kind>.py`` with a
``@register``-ed ``OperationKind`` (its tools, the tables they write, their probes) and import it
below; the import order is the order tools are listed in a spec, so new kinds go last. A kind serves
legacy designs, world designs (``styles``), or both; a kind the catalog declares per domain (quote,
book, pay, cancel, transfer, compensate ...) has a ``model``, and the catalog's operation union is built
from those models.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

# isort: off
from . import identify  # noqa: F401
from . import get, search, find_by_label, list_for, count_by_status, get_status, summarize  # noqa: F401
from . import list_owned, quote  # noqa: F401
from . import create, update, transition  # noqa: F401
from . import book, pay, cancel  # noqa: F401
from . import transfer, compensate  # noqa: F401

# isort: on
from .base import OPERATIONS, OperationKind, OperationModel, Style, Tool, ToolRole, default_by, operation, register

__all__ = [
    "OPERATIONS",
    "OperationKind",
    "OperationModel",
    "Operation",
    "Style",
    "Tool",
    "ToolRole",
    "default_by",
    "operation",
    "operation_problems",
    "register",
]

Operation: Any = Annotated[
    Union[tuple(k.model for k in OPERATIONS.values() if k.model is not None)],  # noqa: UP007
    Field(discriminator="kind"),
]
"""A declared operation of any kind with a catalog model (``Domain.operations``)."""


def operation_problems(op: Any, domain: Any) -> list[str]:
    """Its kind's checks of a declared operation."""
    return operation(op.kind).problems(op, domain)
