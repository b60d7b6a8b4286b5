"""Sign-in: the admin password (configured, or generated once and printed), sign-in and sign-out, and the admin
sessions kept on the server (web/admin/sessions.py).

Wrong passwords, from the form or HTTP Basic auth alike, are slowed down and limited per client; a signed-in session
lasts ADMIN_SESSION_HOURS and ends for good at sign-out or when the password changes.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

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
from web.admin.sessions import AdminSessions
from web.admin.sessions import SignInGuard
from web.security import on_this_machine

log = logging.getLogger("lanternslide")
FAILED_LOGIN_DELAY = 1.0  # seconds each wrong password costs
FAILED_LOGIN_LIMIT = 10  # wrong passwords per client a minute, form and Basic auth together


def init_app(app: Flask) -> None:
    """Set up the admin password, the admin sessions and the sign-in limit."""
    sessions = AdminSessions(Path(app.instance_path) / "admin_sessions.json",
                             float(app.config.get("ADMIN_SESSION_HOURS", 12)) * 3600)
    app.extensions["admin_sessions"] = sessions
    app.extensions["admin_password"] = _password_hash(app, sessions)
    app.extensions["admin_guard"] = SignInGuard(FAILED_LOGIN_LIMIT, 60.0)


def _password_hash(app: Flask, sessions: AdminSessions) -> str:
    """The admin password's hash; a password other than the last start's ends every admin session."""
    configured = app.config.get("ADMIN_PASSWORD")
    if configured:
        if sessions.password and check_password_hash(sessions.password, configured):
            return sessions.password
        return sessions.set_password(generate_password_hash(configured))
    path = Path(app.instance_path) / "admin_password.hash"
    if not path.exists():
        password = secrets.token_urlsafe(12)
        path.write_text(generate_password_hash(password))
        path.chmod(0o600)
        log.warning("\n\n  Admin password (shown once; only its hash is kept in %s):\n\n      %s\n\n"
                    "  Set LANTERNSLIDE_ADMIN_PASSWORD to choose your own; delete that file to get a new one.\n",
                    path, password)
    return sessions.set_password(path.read_text().strip())


def sessions() -> AdminSessions:
    return current_app.extensions["admin_sessions"]


class TooManyTries(Exception):
    """This client gave too many wrong passwords lately; its password is not even looked at."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many wrong passwords from your address: try again in {retry_after} s.")
        self.retry_after = retry_after


def check_password(password: str, username_ok: bool = True) -> bool:
    """Check a sign-in attempt (form or Basic auth) against the per-client limit; a wrong one is slowed down.

    Raises `TooManyTries` when this client is over the limit.  The person at this computer (without a proxy in
    front) is not limited, the same as for every other limit.
    """
    guard: SignInGuard | None = None
    if not on_this_machine():
        guard, client = current_app.extensions["admin_guard"], request.remote_addr or ""
        wait = guard.begin(client)
        if wait is not None:
            log.warning("admin sign-in refused for %s: too many wrong passwords", client)
            raise TooManyTries(wait)
    ok = False
    try:
        ok = bool(password) and check_password_hash(current_app.extensions["admin_password"], password) and username_ok
        if not ok:
            log.warning("failed admin sign-in from %s", request.remote_addr)
            time.sleep(FAILED_LOGIN_DELAY)
    finally:
        if guard is not None:
            guard.end(client, ok)
    return ok


def signed_in() -> bool:
    """True for a live admin session; HTTP Basic auth (user "admin") is checked like a sign-in."""
    if sessions().valid(session.get("admin")):
        return True
    auth = request.authorization
    if auth is None:
        return False
    return check_password(auth.password or "", auth.username == "admin")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in page and its form."""
    error, code, headers = None, 200, {}
    if request.method == "POST":
        try:
            if check_password(request.form.get("password", "")):
                sessions().close(session.get("admin"))
                session.clear()
                session["admin"] = sessions().open()
                session.permanent = True
                target = request.args.get("next", "")
                return redirect(target if target.startswith("/admin") else url_for("admin.index"), 303)
            error, code = "That password is not right.", 401
        except TooManyTries as exc:
            error, code, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
    return render_template("admin/login.html", error=error), code, headers


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this session on the server (a copy of the cookie stops working too); ``everywhere`` ends them all."""
    if request.form.get("everywhere") and sessions().valid(session.get("admin")):
        ended = sessions().close_all()
        log.info("admin signed out everywhere (%d sessions ended)", ended)
    sessions().close(session.get("admin"))
    session.pop("admin", None)
    return redirect(url_for("play.index"), 303)
