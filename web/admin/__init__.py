"""The author's side, under /admin: sign-in (auth), the dashboard, stories (list, upload, edit, revisions,
downloads), form editing, and tuning and baking pictures.

Every page needs the admin password (a signed-in session, or HTTP Basic auth as user "admin" for scripts), and
every state-changing request carries a CSRF token.  Errors of the story library become pages that say what
happened and where to go on; nothing else is caught here.
"""

from __future__ import annotations

from functools import wraps
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue

from game.library import LibraryError
from game.library import NotFound

bp = Blueprint("admin", __name__, url_prefix="/admin")


def init_app(app: Flask) -> None:
    """Set up the admin password, sessions and sign-in limits, and mount the admin pages."""
    from web.admin import auth
    from web.admin import dashboard  # noqa: F401 - registers its views
    from web.admin import editing  # noqa: F401
    from web.admin import stories  # noqa: F401
    from web.admin import tuning  # noqa: F401

    auth.init_app(app)
    app.register_blueprint(bp)


def admin_required(view: Any) -> Any:
    """Let signed-in admins through; send others to the sign-in page (or a 401 for .json addresses)."""
    from web.admin.auth import TooManyTries
    from web.admin.auth import signed_in

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        try:
            allowed = signed_in()
        except TooManyTries as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            if request.path.endswith(".json"):
                return jsonify({"detail": str(exc)}), 429, headers
            return render_template("error.html", title="Slow down", message=str(exc)), 429, headers
        if not allowed:
            if "admin" in session:  # expired or ended elsewhere: the cookie's token is worth nothing now
                session.pop("admin")
            if request.path.endswith(".json"):
                return jsonify({"detail": "Not authenticated"}), 401, {"WWW-Authenticate": 'Basic realm="admin"'}
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


def flash_page(title: str, message: str, code: int, links: list[tuple[str, str]]) -> ResponseReturnValue:
    """A page that says what happened and where to go on."""
    return render_template("error.html", title=title, message=message, links=links), code


def back_to_stories() -> list[tuple[str, str]]:
    return [(url_for("admin.stories"), "Back to the stories")]


@bp.errorhandler(LibraryError)
def library_error(exc: LibraryError) -> ResponseReturnValue:
    """A story, slide or revision that is not there (404), or a story in a state that forbids the action (409)."""
    if isinstance(exc, NotFound):
        return flash_page("Not found", f"{exc}. It may have been renamed or deleted.", 404, back_to_stories())
    return flash_page("Cannot do that", str(exc), 409, back_to_stories())


@bp.before_request
def check_csrf() -> None:
    """Every state-changing admin request carries a CSRF token."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        current_app.extensions["csrf"].protect()
