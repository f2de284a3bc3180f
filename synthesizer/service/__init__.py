"""The synthesizer as a REST service: ``envfleet synthesizer serve``.

``jobs`` keeps jobs in SQLite (the queue, and the history a restart keeps), ``runner`` does them
in worker threads, ``schemas`` are the request and response bodies, ``app`` is the FastAPI app.
"""

from .app import create_app
from .runner import ServiceSettings

__all__ = ["create_app", "ServiceSettings"]
