"""The author's side.  For now: the generation service's status, as JSON, for the admin page to show."""

from __future__ import annotations

from flask import Blueprint
from flask import current_app
from flask import jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/status.json")
def status() -> ResponseReturnValue:
    """Queue depth per priority, running batches, cache hits and misses, generation times, prefetch hit rate."""
    return jsonify(current_app.extensions["images"].stats())
