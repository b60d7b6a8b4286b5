"""The dashboard: the share link and its QR code, who is playing, the painter's queue; and its JSON for scripts."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app
from flask import jsonify
from flask import render_template
from flask.typing import ResponseReturnValue

from web import services
from web.admin import admin_required
from web.admin import bp


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    """The admin home page: the dashboard."""
    return render_template("admin/index.html", **dashboard())


@bp.get("/dashboard")
@admin_required
def dashboard_fragment() -> ResponseReturnValue:
    """The dashboard alone, polled by the admin home page."""
    return render_template("admin/_dashboard.html", **dashboard())


def dashboard() -> dict[str, Any]:
    share = current_app.extensions.get("share_url")
    qr = None
    if share:
        import segno

        qr = segno.make(share, error="m").svg_data_uri(scale=4, dark="#1b1306", light="#f1e7d6")
    return {"share_url": share, "share_qr": qr, "players": services.players().active(),
            "status": status_figures(), "now": time.time()}


def status_figures() -> dict[str, Any]:
    """The service's figures, and the browser encodings (the slides' pictures, the story covers) kept in memory."""
    return {**services.images().stats(), "encoded": services.encodings().stats(), "covers": services.covers().stats()}


@bp.get("/status.json")
@admin_required
def status() -> ResponseReturnValue:
    """Queue depth per priority, running batches, cache hits and misses, generation times, prefetch hit rate."""
    return jsonify(status_figures())
