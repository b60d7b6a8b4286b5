"""The author's side: sign-in, and a dashboard of the share link, who is playing and the painter's queue.

The password comes from the ADMIN_PASSWORD setting; without one, a password is generated at the first start,
printed once in the terminal, and only its hash is kept in the instance folder.  Every state-changing request
carries a CSRF token (Flask-WTF); failed sign-ins are slowed down and rate limited.  Scripts may read
/admin/status.json with HTTP Basic auth (user "admin").
"""

from __future__ import annotations

import logging
import secrets
import time
from functools import wraps
from pathlib import Path
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
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger("lanternslide")
FAILED_LOGIN_DELAY = 1.0  # seconds each wrong password costs


def init_app(app: Flask, limiter: Any) -> None:
    """Set up the admin password, the login rate limit, and mount the admin pages."""
    app.extensions["admin_password"] = _password_hash(app)
    app.register_blueprint(bp)
    # Flask-Limiter checks a view's own limit inside the wrapper it returns, so the wrapper must be the view.
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
    if session.get("admin") is True:
        return True
    auth = request.authorization
    return auth is not None and auth.username == "admin" and password_ok(auth.password or "")


def admin_required(view: Any) -> Any:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        if not signed_in():
            if request.path.endswith(".json"):
                return jsonify({"detail": "Not authenticated"}), 401, {"WWW-Authenticate": 'Basic realm="admin"'}
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


@bp.before_request
def check_csrf() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        current_app.extensions["csrf"].protect()


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
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
    session.pop("admin", None)
    return redirect(url_for("play.index"), 303)


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    return render_template("admin/index.html", **dashboard())


@bp.get("/dashboard")
@admin_required
def dashboard_fragment() -> ResponseReturnValue:
    return render_template("partials/dashboard.html", **dashboard())


def dashboard() -> dict[str, Any]:
    share = current_app.extensions.get("share_url")
    qr = None
    if share:
        import segno

        qr = segno.make(share, error="m").svg_data_uri(scale=4, dark="#1b1306", light="#f1e7d6")
    return {"share_url": share, "share_qr": qr, "players": current_app.extensions["players"].active(),
            "status": current_app.extensions["images"].stats(), "now": time.time()}


@bp.get("/status.json")
@admin_required
def status() -> ResponseReturnValue:
    """Queue depth per priority, running batches, cache hits and misses, generation times, prefetch hit rate."""
    return jsonify(current_app.extensions["images"].stats())
