"""What this server offers, in A1111's shapes: samplers, schedule types, the model, options, harmless settings,
prompt styles (the stories' picture styles), and the empty lists of what it does not have (upscalers, LoRAs, ...).
"""

from __future__ import annotations

import os
import platform
from typing import Any

from flask import current_app
from flask import jsonify
from flask.typing import ResponseReturnValue

from inference.samplers import AUTOMATIC_SCHEDULE
from inference.samplers import SAMPLER_ALIASES
from inference.samplers import SAMPLERS
from inference.samplers import SCHEDULES
from web.sdapi.common import ApiError
from web.sdapi.common import bp
from web.sdapi.common import read_body
from web.sdapi.common import state

# What /cmd-flags shows: settings that tell a client how this server paints, and nothing else (no credentials, no
# addresses of other servers, no folders).  "model" is shown by its name only.
PUBLIC_FLAGS = frozenset({
    "host", "port", "backend", "remote_workers", "device", "dtype", "model_config", "optimize", "deepcache",
    "max_size", "offline", "image_format", "threads", "queue_limit", "batch_size", "cache_max_mb", "prefetch_depth",
    "prefetch_count", "prefetch_cancel", "preview_every", "share", "behind_proxy", "rate_limit",
    "player_queue_limit", "generation_timeout", "log_level", "sdapi_client_limit", "sdapi_max_megapixel_steps",
    "client_limit", "max_megapixel_steps",
})


def model_name(model: str) -> str:
    """The model as strangers may see it: a file's or folder's name, or the hub id; never a path on this server."""
    looks_like_path = os.path.isabs(model) or model.startswith((".", "~")) or os.path.exists(model)
    return (os.path.basename(model.rstrip("/\\")) or model) if looks_like_path else model


@bp.get("/samplers")
def samplers() -> ResponseReturnValue:
    """The samplers this server paints with, under their A1111 names."""
    aliases: dict[str, list[str]] = {}
    for alias, name in SAMPLER_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return jsonify([{"name": name, "aliases": aliases.get(name, []),
                     "options": {"scheduler": AUTOMATIC_SCHEDULE[name]} if name in AUTOMATIC_SCHEDULE else {}}
                    for name in SAMPLERS])


@bp.get("/schedulers")
def schedulers() -> ResponseReturnValue:
    """The schedule types (A1111 1.9+)."""
    return jsonify([{"name": name, "label": label, "aliases": None, "default_rho": 7.0 if name == "karras" else -1,
                     "need_inner_model": False} for name, (label, _) in SCHEDULES.items()])


@bp.get("/sd-models")
def sd_models() -> ResponseReturnValue:
    """The one loaded model, by name (never its path on this server)."""
    title = state().model_title
    model = current_app.config.get("MODEL", title)
    return jsonify(
        [
            {
                "title": title,
                "model_name": title.rsplit(" [", 1)[0],
                "hash": title.rsplit("[", 1)[-1].rstrip("]"),
                "sha256": None,
                "filename": model_name(model),
                "config": None,
            }
        ]
    )  # A1111 shows a path; we never do


@bp.get("/options")
def get_options() -> ResponseReturnValue:
    """The options clients set (A1111 keeps them per server)."""
    return jsonify(state().options)


@bp.post("/options")
def set_options() -> ResponseReturnValue:
    """Set options; another checkpoint than the loaded one fails, as in A1111."""
    body = read_body()
    options = state().options
    for key, value in body.items():
        if key not in options:
            raise ApiError(500, "", f"unknown option {key[:100]!r}", {})
        if key == "sd_model_checkpoint" and value != state().model_title:
            raise ApiError(500, "", f"model {str(value)[:200]!r} not found; this server has {state().model_title!r}")
    options.update(body)
    return jsonify(None)


@bp.get("/cmd-flags")
def cmd_flags() -> ResponseReturnValue:
    """This server's harmless settings (an allow-list: no credentials, other servers' addresses or folders)."""
    flags = state().flags
    shown: dict[str, Any] = {key: value for key, value in flags.items() if key in PUBLIC_FLAGS}
    if "model" in flags:
        shown["model"] = model_name(str(flags["model"]))
    shown.update(api=True, nowebui="stories" not in flags)  # the API alone has no game
    return jsonify(shown)


def prompt_styles() -> list[dict[str, str]]:
    """Each story's picture style, offered as an A1111 prompt style named after the story."""
    library = current_app.extensions.get("stories")
    styles = []
    for entry in library.entries() if library is not None else []:
        if entry.story is not None and (entry.story.style.prompt or entry.story.style.negative_prompt):
            styles.append({"name": entry.story.title, "prompt": entry.story.style.prompt or "",
                           "negative_prompt": entry.story.style.negative_prompt or ""})
    return styles


@bp.get("/prompt-styles")
def get_prompt_styles() -> ResponseReturnValue:
    """Each story's picture style, offered as a prompt style."""
    return jsonify(prompt_styles())


@bp.get("/upscalers")
def upscalers() -> ResponseReturnValue:
    """No upscalers here (the contract shape, empty but for "None")."""
    return jsonify([{"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 1}])


@bp.get("/face-restorers")
def face_restorers() -> ResponseReturnValue:
    """No face restorers here."""
    return jsonify([])


@bp.get("/embeddings")
def embeddings() -> ResponseReturnValue:
    """No textual-inversion embeddings here."""
    return jsonify({"loaded": {}, "skipped": {}})


@bp.get("/scripts")
def scripts() -> ResponseReturnValue:
    """No scripts here."""
    return jsonify({"txt2img": [], "img2img": []})


@bp.get("/memory")
def memory() -> ResponseReturnValue:
    """Memory of this process (RAM only)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if platform.system() == "Darwin" else 1024)
    return jsonify({"ram": {"used": rss, "peak": rss}, "cuda": {"error": "not reported by Lanternslide"}})


@bp.get("/sd-vae")
def sd_vae() -> ResponseReturnValue:
    """No separate VAE files: the model's own VAE paints (A1111 lists {model_name, filename} per file)."""
    return jsonify([])


@bp.get("/hypernetworks")
def hypernetworks() -> ResponseReturnValue:
    """No hypernetworks here (A1111 lists {name, path})."""
    return jsonify([])


@bp.get("/realesrgan-models")
def realesrgan_models() -> ResponseReturnValue:
    """No Real-ESRGAN upscalers here (A1111 lists {name, path, scale})."""
    return jsonify([])


@bp.get("/loras")
def loras() -> ResponseReturnValue:
    """No LoRA networks here (A1111's built-in Lora extension lists {name, alias, path, metadata})."""
    return jsonify([])


@bp.post("/refresh-checkpoints")
@bp.post("/refresh-vae")
@bp.post("/refresh-loras")
def refresh() -> ResponseReturnValue:
    """Nothing to rescan: the one model is loaded at start (A1111 answers null)."""
    return jsonify(None)
