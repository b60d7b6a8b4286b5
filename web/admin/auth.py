"""Sign-in: the admin password (configured, or generated once and printed), the sign-in page, and sign-out.

Failed sign-ins are slowed down and rate limited per client.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from web.admin import bp

log = logging.getLogger("lanternslide")
FAILED_LOGIN_DELAY = 1.0  # seconds each wrong password costs


def init_app(app: Flask, limiter: Any) -> None:
    """Keep the admin password's hash where the views can check it."""
    app.extensions["admin_password"] = _password_hash(app)


def limit_login(app: Flask, limiter: Any) -> None:
    """Flask-Limiter checks a view's own limit inside the wrapper it returns, so the wrapper must be the view."""
    endpoint = f"{bp.name}.{login.__name__}"
    app.view_functions[endpoint] = limiter.limit("10 per minute", methods=["POST"])(app.view_functions[endpoint])


def _password_hash(app: Flask) -> str:
    configured = app.config.get("ADMIN_PASSWORD")
    if configured:
        return generate_password_hash(configured)
    path = Path(app.instance_path) / "admin_password.hash"
    if path.exists():
        return path.read_text().strip()
    password = secrets.token_urlsafe(12)
    path.write_text(generate_password_hash(password))
    path.chmod(0o600)
    log.warning("\n\n  Admin password (shown once; only its hash is kept in %s):\n\n      %s\n\n"
                "  Set LANTERNSLIDE_ADMIN_PASSWORD to choose your own; delete that file to get a new one.\n", path, password)
    return path.read_text().strip()


def password_ok(password: str) -> bool:
    return bool(password) and check_password_hash(current_app.extensions["admin_password"], password)


def signed_in() -> bool:
    """A signed-in session, or HTTP Basic auth as user "admin"."""
    if session.get("admin") is True:
        return True
    auth = request.authorization
    return auth is not None and auth.username == "admin" and password_ok(auth.password or "")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in page and its form."""
    error = None
    if request.method == "POST":
        if password_ok(request.form.get("password", "")):
            session.clear()
            session["admin"] = True
            session.permanent = True
            target = request.args.get("next", "")
            return redirect(target if target.startswith("/admin") else url_for("admin.index"), 303)
        time.sleep(FAILED_LOGIN_DELAY)
        log.warning("failed admin sign-in from %s", request.remote_addr)
        error = "That password is not right."
    return render_template("admin/login.html", error=error), 401 if error else 200


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out."""
    session.pop("admin", None)
    return redirect(url_for("play.index"), 303)
