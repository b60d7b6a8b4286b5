"""htmx conventions in one place: which requests are swaps, and answering a swap with its fragment."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask import current_app
from flask import render_template
from flask import request


def is_htmx() -> bool:
    """True for htmx swaps; False for full page loads and htmx history restores (which need the whole page)."""
    return request.headers.get("HX-Request") == "true" and request.headers.get("HX-History-Restore-Request") != "true"


def render(page: str, partial: str, code: int = 200, headers: dict[str, str] | None = None, **context: Any) -> Response:
    """Render the fragment for htmx or the whole page otherwise, marking the response as varying by HX-Request."""
    response = current_app.make_response((render_template(partial if is_htmx() else page, **context), code))
    response.headers.update(headers or {})
    response.vary.add("HX-Request")
    return response
