"""What a public link needs: the proxy's headers, Secure cookies, CSRF, per-client rate limits, security headers,
and the session key that survives restarts."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask
from flask import current_app
from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

SECURITY_HEADERS = {
    # Only our own scripts and styles; pictures from us or inline data: URLs; no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
                               "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie is marked Secure whenever the request came over https (the ngrok link)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


def behind_proxy(app: Flask) -> bool:
    """True when requests reach us through a proxy (the ngrok link, or one the operator runs)."""
    return bool(app.config["SHARE"] or app.config["BEHIND_PROXY"])


def on_this_machine() -> bool:
    """The person at this computer (loopback, no proxy): never rate limited, no per-client picture cap."""
    return not behind_proxy(current_app) and request.remote_addr in ("127.0.0.1", "::1")


def client_key() -> str:
    """Who to count a waiting picture against: the client's address; nobody for the person at this computer."""
    return "" if on_this_machine() else request.remote_addr or ""


def harden(app: Flask) -> Limiter:
    """Secure cookies on https, CSRF, per-client limits, security headers.  The proxy's headers are the web
    server's business (web/server.py): by the time a request gets here, its remote address is the friend's and its
    scheme the one they used, or the headers were dropped."""
    app.session_interface = _SessionInterface()
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # the admin blueprint checks; players' moves need no token
    CSRFProtect(app)
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://", headers_enabled=True,
                      retry_after="delta-seconds")
    limiter.request_filter(on_this_machine)

    @app.after_request
    def security_headers(response: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return limiter


def session_key(instance: Path) -> str:
    """Return this install's session key, creating it once so sessions survive restarts."""
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()
