"""Mounting /sdapi/v1 on an app: credentials, caps, whether the API is on (off when the server can be reached from
outside without credentials) and the model's title as A1111 shows it.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from flask import Flask

from web.sdapi.common import ApiState
from web.sdapi.common import bp


def init_app(app: Flask, flags: dict[str, Any] | None = None, limit: Any = None) -> None:
    """Mount /sdapi/v1 over the app's generation service, with the settings' credentials (``SDAPI_AUTH``, "user:pass
    [,user2:pass2]"; empty = open) and caps; ``limit`` is an optional rate-limit decorator applied to the whole
    blueprint.  When the server can be reached from outside (see `exposure`), the API is off unless credentials are
    set, and says so."""
    config = app.config
    title = model_title(config["MODEL"], app.extensions["images"].model)
    credentials = parse_auth(config["SDAPI_AUTH"])
    exposed = exposure(config["HOST"], config.get("SHARE", False), config["BEHIND_PROXY"])
    off = ""
    if exposed and not credentials:
        off = (f"The A1111 API (/sdapi/v1) is off: this server can be reached from outside ({exposed}) and no API "
               "credentials are set. To turn it on, start the server with --sdapi-auth user:password "
               "(or LANTERNSLIDE_SDAPI_AUTH) and send them with HTTP Basic auth.")
    app.extensions["sdapi"] = ApiState(title, default_options(title), credentials, dict(flags or {}), off,
                                       config["SDAPI_MAX_MEGAPIXEL_STEPS"], config["SDAPI_CLIENT_LIMIT"],
                                       max_calls(config))
    if limit is not None:
        limit(bp)
    app.register_blueprint(bp)


def max_calls(config: Any) -> int:
    """txt2img calls allowed in flight: each holds a server thread while it waits, so in the game most threads stay
    for players (a quarter for the API), and the API alone keeps 4 for its other routes."""
    threads = config["THREADS"]
    return max(2, threads - 4) if config.get("API_ALONE") else max(2, threads // 4)


def parse_auth(auth: str) -> dict[str, str]:
    """``"user:pass[,user2:pass2]"`` as {user: password}; a password may contain ":"."""
    credentials = {}
    for pair in filter(None, (auth or "").split(",")):
        user, sep, password = pair.partition(":")
        if not sep or not user:
            raise ValueError("--sdapi-auth: expected user:password[,user2:password2]")
        credentials[user] = password
    return credentials


def exposure(host: str, share: bool = False, behind_proxy: bool = False) -> str:
    """How a server with these settings can be reached from other machines ("" = from this machine only)."""
    reasons = ["--share"] if share else []
    if behind_proxy:
        reasons.append("--behind-proxy")
    if host.strip("[]") != "localhost":
        try:
            loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            reasons.append(f"--host {host}")
    return ", ".join(reasons)


def api_status(app: Flask) -> str:
    """One line for the start-up log: whether /sdapi/v1 is on, and for whom."""
    api = app.extensions["sdapi"]
    if api.off:
        return api.off
    if api.auth:
        return f"The A1111 API is on at /sdapi/v1 for {len(api.auth)} API user(s) with HTTP Basic auth."
    return "The A1111 API is on at /sdapi/v1 without credentials, for this machine only."


def model_title(model: str, identity: str = "") -> str:
    """The model's name and a hash of its identity (weights' content and config, see DiffusersBackend.identity)."""
    name = os.path.basename(model.rstrip("/")) or model
    return f"{name} [{model_hash(identity or model)}]"


def model_hash(model: str) -> str:
    import hashlib

    return hashlib.sha256(model.encode()).hexdigest()[:10]


def default_options(title: str) -> dict[str, Any]:
    return {"sd_model_checkpoint": title, "sd_checkpoint_hash": None, "send_seed": True, "send_size": True,
            "samples_format": "png", "enable_pnginfo": True, "CLIP_stop_at_last_layers": 1, "eta_ancestral": 1.0,
            "eta_ddim": 0.0, "show_progress_every_n_steps": 2, "live_previews_enable": True, "tiling": False,
            "face_restoration": False, "sd_vae": "Automatic", "return_grid": True}
