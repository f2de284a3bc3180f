"""Interactive API docs (Swagger UI) served from the package, so ``/docs`` works offline.

FastAPI's default ``/docs`` page loads its script and styles from a CDN and renders nothing on a
machine without internet access. The assets come from the ``swagger-ui-bundle`` wheel instead.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

__all__ = ["DOCS_KWARGS", "mount_offline_docs"]

DOCS_KWARGS = {"docs_url": None, "redoc_url": None}
"""Pass to ``FastAPI(...)`` to turn off the CDN-backed pages that :func:`mount_offline_docs` replaces."""

_ASSETS = "/docs/assets"


def mount_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI for ``app``'s OpenAPI document at ``/docs``, with every asset local."""
    app.mount(_ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_ASSETS}/favicon-32x32.png",
        )
