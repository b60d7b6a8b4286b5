"""What every part of the A1111 API shares: the blueprint, its per-app state, A1111's error body, HTTP Basic auth,
who the caller is, and the request body read as FastAPI would.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from urllib.parse import quote

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from inference.backend import without_paths
from inference.sdapi_models import BodyError
from inference.sdapi_models import parse_json_object
from inference.service import GenerationService
from web import services

bp = Blueprint("sdapi", __name__, url_prefix="/sdapi/v1")
VERSION = "lanternslide"

MAX_MEGAPIXEL_STEPS = 1200  # default cap on steps x pixels x pictures per call: 8 pictures x 150 steps at 1024x1024
CLIENT_LIMIT = 16  # default cap on the pictures one API client may have waiting: one full call (calls.MAX_IMAGES)


@dataclass
class ApiState:
    """Per-app API state: the options clients set, and the counters /progress reports."""

    model_title: str
    options: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, str] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)
    off: str = ""  # why the API is off (reachable from outside without credentials); "" = on
    max_megapixel_steps: float = MAX_MEGAPIXEL_STEPS
    client_limit: int = CLIENT_LIMIT
    max_calls: int = 0  # txt2img calls waiting at once (each holds a server thread); 0 = no cap
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class ApiError(Exception):
    """An error answered with A1111's error body: {error, detail, body, errors}."""

    def __init__(self, status: int, detail: Any, errors: str = "", headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers or {}


def state() -> ApiState:
    return current_app.extensions["sdapi"]


def service() -> GenerationService:
    return services.images()


@bp.before_request
def check_auth() -> ResponseReturnValue | None:
    """HTTP Basic auth on every route when credentials are set; 403 on every route when the API is off."""
    if state().off:
        raise ApiError(403, state().off)
    users = state().auth
    if not users:
        return None
    auth = request.authorization
    if auth is None or auth.type != "basic":
        raise ApiError(401, "Not authenticated", headers={"WWW-Authenticate": "Basic"})
    expected = users.get(auth.username or "")
    if expected is None or not secrets.compare_digest(expected.encode(), (auth.password or "").encode()):
        raise ApiError(401, "Incorrect username or password", headers={"WWW-Authenticate": "Basic"})
    return None


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> ResponseReturnValue:
    """An ApiError as A1111's error body."""
    if exc.status == 422:
        body: dict[str, Any] = {"detail": exc.detail}
    else:
        detail = without_paths(exc.detail) if isinstance(exc.detail, str) else exc.detail
        body = {"error": "HTTPException" if exc.status < 500 else "RuntimeError", "detail": detail, "body": "",
                "errors": without_paths(exc.errors)}
    return jsonify(body), exc.status, exc.headers


def caller() -> str:
    """Who is asking, as the owner prefix of their jobs: the API user when credentials are on, else the client's
    address.  Quoted, so one caller's prefix is never the start of another's."""
    identity = request.authorization.username if state().auth and request.authorization else request.remote_addr
    return f"api/{quote(identity or '?', safe='')}/"


def read_body() -> dict[str, Any]:
    """The JSON object of the request, or a 422 in FastAPI's words (wrong type, empty, invalid or too deep)."""
    try:
        return parse_json_object(request.get_data(cache=False), request.mimetype)
    except BodyError as exc:
        raise ApiError(422, exc.detail) from None


def field_error(loc: list[Any], message: str, kind: str = "value_error") -> ApiError:
    """A 422 naming one field (``loc``), in FastAPI's words."""
    return ApiError(422, [{"loc": loc, "msg": message, "type": kind}])
