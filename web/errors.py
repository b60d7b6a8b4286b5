"""One place that turns errors into answers: a page for browsers, the fragment for htmx swaps, JSON under /sdapi."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask
from flask import jsonify
from flask import render_template
from flask import request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError

from web.htmx import is_htmx

log = logging.getLogger("lanternslide")
API_PREFIX = "/sdapi/"
TITLES = {400: "Please try again", 404: "Not found", 405: "Not allowed", 413: "Too large", 429: "Slow down",
          500: "Something broke"}
MESSAGES = {
    400: "That request was not understood.",
    404: "There is nothing at this address. The story or slide may have been renamed.",
    405: "This address does not accept that kind of request.",
    413: "That request is too large.",
    429: "You are going a little fast: please wait a moment and try again.",
    500: "Lanternslide hit an unexpected error. It has been logged; try again, or go back to the stories.",
}
CSRF_MESSAGE = ("This form has expired or was not sent by this site (the CSRF token is missing or old). Reload the "
                "page and try again.")


def init_app(app: Flask) -> None:
    """Answer every HTTP error of ours through `error_page`."""
    for code in (400, 404, 405, 413, 429, 500):
        app.register_error_handler(code, error_page)


def json_error(code: int) -> ResponseReturnValue:
    """FastAPI-style JSON, as A1111 clients expect under /sdapi."""
    return jsonify({"detail": {404: "Not Found", 405: "Method Not Allowed", 413: "Request Entity Too Large",
                               429: "Too Many Requests"}.get(code, "Error")}), code


def error_page(error: Any) -> ResponseReturnValue:
    """The error as JSON under /sdapi, as a notice fragment for htmx swaps, else as a page."""
    code = getattr(error, "code", 500) or 500
    if request.path.startswith(API_PREFIX):
        return json_error(code)
    if code == 500:
        log.error("unhandled error on %s", request.path, exc_info=error)
    message = CSRF_MESSAGE if isinstance(error, CSRFError) else MESSAGES.get(code, "Something went wrong.")
    template = "_notice.html" if is_htmx() and code in (400, 413, 429) else "error.html"
    return render_template(template, title=TITLES.get(code, "Error"), message=message), code
