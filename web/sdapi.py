"""The AUTOMATIC1111 web UI's HTTP API, /sdapi/v1/*, served over the generation service.

Clients written for A1111 (webuiapi, Krita and Photoshop plug-ins, bots) work unchanged: the same routes, request
fields, defaults, response shapes and error bodies (../shared/reference/sdapi-contract.md).  Pictures go through
the same queue, coalescing and cache as the game, at admin priority (players of the game come first).  Fields we
cannot honour (hires fix, face restoration, scripts) are accepted and reported in ``info``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import platform
import random
import secrets
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue

from inference.request import AUTOMATIC_SCHEDULE
from inference.request import MAX_SEED
from inference.request import SAMPLER_ALIASES
from inference.request import SAMPLERS
from inference.request import SCHEDULES
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import effective_schedule
from inference.service import ADMIN
from inference.service import DONE
from inference.service import GenerationService
from inference.service import QueueFull
from web import services

bp = Blueprint("sdapi", __name__, url_prefix="/sdapi/v1")
VERSION = "lanternslide"
API_OWNER = "api:"

# txt2img request fields: name -> (type, API default), as A1111 v1.10 (StableDiffusionTxt2ImgProcessingAPI).
FIELDS: dict[str, tuple[str, Any]] = {
    "prompt": ("str", ""), "negative_prompt": ("str", ""), "styles": ("list", None), "seed": ("int", -1),
    "subseed": ("int", -1), "subseed_strength": ("float", 0), "seed_resize_from_h": ("int", -1),
    "seed_resize_from_w": ("int", -1), "sampler_name": ("str", None), "sampler_index": ("str", "Euler"),
    "scheduler": ("str", None), "batch_size": ("int", 1), "n_iter": ("int", 1), "steps": ("int", 50),
    "cfg_scale": ("float", 7.0), "width": ("int", 512), "height": ("int", 512), "restore_faces": ("bool", None),
    "tiling": ("bool", None), "do_not_save_samples": ("bool", False), "do_not_save_grid": ("bool", False),
    "eta": ("float", None), "denoising_strength": ("float", None), "s_min_uncond": ("float", None),
    "s_churn": ("float", None), "s_tmax": ("float", None), "s_tmin": ("float", None), "s_noise": ("float", None),
    "override_settings": ("dict", None), "override_settings_restore_afterwards": ("bool", True),
    "refiner_checkpoint": ("str", None), "refiner_switch_at": ("float", None), "disable_extra_networks": ("bool", False),
    "firstpass_image": ("str", None), "comments": ("dict", None), "enable_hr": ("bool", False),
    "firstphase_width": ("int", 0), "firstphase_height": ("int", 0), "hr_scale": ("float", 2.0),
    "hr_upscaler": ("str", None), "hr_second_pass_steps": ("int", 0), "hr_resize_x": ("int", 0),
    "hr_resize_y": ("int", 0), "hr_checkpoint_name": ("str", None), "hr_sampler_name": ("str", None),
    "hr_scheduler": ("str", None), "hr_prompt": ("str", ""), "hr_negative_prompt": ("str", ""),
    "script_name": ("str", None), "script_args": ("list", []), "send_images": ("bool", True),
    "save_images": ("bool", False), "alwayson_scripts": ("dict", {}), "force_task_id": ("str", None),
    "infotext": ("str", None),
}
MAX_IMAGES = 16  # batch_size * n_iter per request
_TYPE_ERRORS = {"int": ("value is not a valid integer", "type_error.integer"),
                "float": ("value is not a valid float", "type_error.float"),
                "bool": ("value could not be parsed to a boolean", "type_error.bool"),
                "str": ("str type expected", "type_error.str"), "list": ("value is not a valid list", "type_error.list"),
                "dict": ("value is not a valid dict", "type_error.dict")}


@dataclass
class ApiState:
    """Per-app API state: the options clients set, and the counters /progress reports."""

    model_title: str
    options: dict[str, Any] = field(default_factory=dict)
    auth: dict[str, str] = field(default_factory=dict)
    flags: dict[str, Any] = field(default_factory=dict)


class ApiError(Exception):
    """An error answered with A1111's error body: {error, detail, body, errors}."""

    def __init__(self, status: int, detail: Any, errors: str = "", headers: dict[str, str] | None = None):
        super().__init__(str(detail))
        self.status, self.detail, self.errors, self.headers = status, detail, errors, headers or {}


def init_app(app: Flask, flags: dict[str, Any] | None = None, limit: Any = None) -> None:
    """Mount /sdapi/v1 over the app's generation service; ``SDAPI_AUTH`` is "user:pass[,user2:pass2]" (empty =
    open); ``limit`` is an optional rate-limit decorator applied to the whole blueprint."""
    title = model_title(app.config["MODEL"], app.extensions["images"].model)
    credentials = {}
    for pair in filter(None, (app.config["SDAPI_AUTH"] or "").split(",")):
        user, sep, password = pair.partition(":")
        if not sep or not user:
            raise ValueError("--sdapi-auth: expected user:password[,user2:password2]")
        credentials[user] = password
    app.extensions["sdapi"] = ApiState(title, default_options(title), credentials, dict(flags or {}))
    if limit is not None:
        limit(bp)
    app.register_blueprint(bp)


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


def state() -> ApiState:
    return current_app.extensions["sdapi"]


def service() -> GenerationService:
    return services.images()


# -- auth and errors -------------------------------------------------------------------------------------------


@bp.before_request
def check_auth() -> ResponseReturnValue | None:
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
    if exc.status == 422:
        body: dict[str, Any] = {"detail": exc.detail}
    else:
        body = {"error": "HTTPException" if exc.status < 500 else "RuntimeError", "detail": exc.detail, "body": "",
                "errors": exc.errors}
    return jsonify(body), exc.status, exc.headers


# -- txt2img ---------------------------------------------------------------------------------------------------


def read_body() -> dict[str, Any]:
    """The JSON object of the request, or a 422 in FastAPI's words."""
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json":
        raise ApiError(422, [{"loc": ["body"], "msg": f"expected application/json, got {mimetype}",
                              "type": "value_error.contenttype"}])
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise ApiError(422, [{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}])
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(422, [{"loc": ["body", 0], "msg": f"Expecting value: {exc}", "type": "value_error.jsondecode"}]) from None
    if not isinstance(body, dict):
        raise ApiError(422, [{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}])
    return body


def coerce(kind: str, value: Any) -> Any:
    """Coerce one value the way pydantic v1 does for A1111's models; raise ValueError when it cannot."""
    if value is None:
        return None
    if kind == "int":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ValueError
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise ValueError
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        raise ValueError
    if kind == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if hasattr(value, "value"):
            return str(value.value)
        raise ValueError
    if kind == "list" and isinstance(value, list) or kind == "dict" and isinstance(value, dict):
        return value
    raise ValueError


def parse_fields(body: dict[str, Any]) -> dict[str, Any]:
    """Every txt2img field with A1111's defaults filled in; unknown keys ignored; wrong types -> 422."""
    params, errors = {}, []
    for name, (kind, default) in FIELDS.items():
        try:
            params[name] = coerce(kind, body[name]) if name in body else default
        except (ValueError, TypeError):
            msg, kind_error = _TYPE_ERRORS[kind]
            errors.append({"loc": ["body", name], "msg": msg, "type": kind_error})
    if errors:
        raise ApiError(422, errors)
    return params


def unsupported(params: dict[str, Any]) -> list[str]:
    """Names of the requested features that Lanternslide accepts but does not perform."""
    names = []
    for name in ("enable_hr", "restore_faces"):
        if params[name]:
            names.append(name)
    if params["alwayson_scripts"]:
        names += [f"alwayson_scripts.{k}" for k in params["alwayson_scripts"]]
    if params["script_name"]:
        names.append(f"script_name={params['script_name']}")
    if params["subseed_strength"]:
        names.append("subseed_strength")
    for key in (params["override_settings"] or {}):
        if key not in ("sd_model_checkpoint", "samples_format"):
            names.append(f"override_settings.{key}")
    return names


def build_requests(params: dict[str, Any]) -> tuple[list[GenerationRequest], list[int], str]:
    """The pictures to paint, their seeds, and the sampler label; a bad value -> 422 naming the field."""
    count = params["batch_size"] * params["n_iter"]
    if not 1 <= count <= MAX_IMAGES or params["batch_size"] < 1 or params["n_iter"] < 1:
        raise ApiError(422, [{"loc": ["body", "batch_size"], "msg": f"batch_size x n_iter must be 1..{MAX_IMAGES}, "
                              f"got {params['batch_size']} x {params['n_iter']}", "type": "value_error"}])
    prompt, negative = params["prompt"], params["negative_prompt"]
    styles = {s["name"]: s for s in prompt_styles()}
    for name in params["styles"] or []:
        style = styles.get(name)
        if style is None:
            raise ApiError(422, [{"loc": ["body", "styles"], "msg": f"unknown style {name!r}; valid: {', '.join(styles)}",
                                  "type": "value_error"}])
        prompt = ", ".join(p for p in (prompt, style["prompt"]) if p)
        negative = ", ".join(p for p in (negative, style["negative_prompt"]) if p)
    base = params["seed"] if params["seed"] not in (None, -1) else random.randint(0, MAX_SEED)
    seeds = [(base + i) % (MAX_SEED + 1) for i in range(count)]
    sampler = params["sampler_name"] or params["sampler_index"] or "Euler"
    try:
        requests_ = [GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, steps=params["steps"],
                                       cfg_scale=params["cfg_scale"], width=params["width"], height=params["height"],
                                       sampler_name=sampler, scheduler=params["scheduler"] or "automatic",
                                       tiling=bool(params["tiling"]), restore_faces=bool(params["restore_faces"]))
                     for seed in seeds]
    except RequestError as exc:
        name = "sampler_name" if exc.field == "sampler_name" and params["sampler_name"] else exc.field
        if exc.field == "sampler_name" and not params["sampler_name"]:
            name = "sampler_index"
        raise ApiError(422, [{"loc": ["body", name], "msg": exc.message, "type": "value_error"}]) from None
    first = requests_[0]
    return requests_, seeds, first.sampler_name


def infotext(req: GenerationRequest, seed: int, title: str) -> str:
    """A1111's "parameters" text for one picture."""
    schedule = SCHEDULES[req.scheduler][0]
    lines = [req.prompt]
    if req.negative_prompt:
        lines.append(f"Negative prompt: {req.negative_prompt}")
    name, _, digest = title.rpartition(" [")
    lines.append(f"Steps: {req.steps}, Sampler: {req.sampler_name}, Schedule type: {schedule}, CFG scale: {req.cfg_scale:g}, "
                 f"Seed: {seed}, Size: {req.width}x{req.height}, Model hash: {digest.rstrip(']')}, Model: {name}"
                 + (", Tiling: True" if req.tiling else "") + f", Version: {VERSION}")
    return "\n".join(lines)


def png_with_info(png: bytes, text: str) -> str:
    """Base64 of the PNG with its infotext in a "parameters" text chunk (no data: prefix)."""
    from PIL import Image
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@bp.post("/txt2img")
def txt2img() -> ResponseReturnValue:
    # 1. Read and check the body: FastAPI-style 422s name the field.
    body = read_body()
    params = parse_fields(body)
    requests_, seeds, sampler = build_requests(params)
    owner = f"{API_OWNER}{uuid.uuid4().hex[:8]}"
    # 2. Queue every picture through the shared service (coalescing and cache included).
    keys = []
    try:
        for req in requests_:
            snap = service().submit(req, ADMIN, owner)
            if snap is not None:  # only paint-ahead is ever turned away without QueueFull
                keys.append(snap.key)
    except QueueFull as exc:
        raise ApiError(503, "The painter is busy; try again later", f"queue full, retry after {exc.retry_after} s",
                       {"Retry-After": str(exc.retry_after)}) from None
    # 3. Wait for them; an interrupt stops ours and drops the rest.
    snaps, interrupted = [], False
    for key in keys:
        if interrupted:
            service().withdraw(key, owner)
        snap = service().wait(key)
        if snap.state == "cancelled":
            interrupted = True
        elif snap.state != DONE:
            raise ApiError(500, "", f"{snap.error} {snap.hint}".strip())
        snaps.append(snap)
    # 4. Answer like A1111: base64 PNGs with infotext, the request echoed, info as a JSON string.
    title = state().model_title
    done = [(req, seed, snap) for req, seed, snap in zip(requests_, seeds, snaps) if snap.state == DONE]
    texts = [infotext(req, seed, title) for req, seed, _ in done]
    images = [png_with_info(snap.png, text) for (_, _, snap), text in zip(done, texts)] if params["send_images"] else []
    first = requests_[0]
    extra: dict[str, Any] = {}
    skipped = unsupported(params)
    if skipped:
        extra["Lanternslide: not supported"] = ", ".join(skipped)
    if interrupted:
        extra["Lanternslide: interrupted"] = f"{len(done)} of {len(requests_)} pictures painted"
    if any(snap.meta.get("info", {}).get("scaled") for _, _, snap in done):
        extra["Lanternslide: scaled"] = done[0][2].meta["info"]["scaled"]
    info = {
        "prompt": first.prompt, "all_prompts": [r.prompt for r in requests_], "negative_prompt": first.negative_prompt,
        "all_negative_prompts": [r.negative_prompt for r in requests_], "seed": seeds[0], "all_seeds": seeds,
        "subseed": params["subseed"] if params["subseed"] not in (None, -1) else seeds[0], "all_subseeds": seeds,
        "subseed_strength": params["subseed_strength"] or 0, "width": first.width, "height": first.height,
        "sampler_name": sampler, "cfg_scale": first.cfg_scale, "steps": first.steps, "batch_size": params["batch_size"],
        "restore_faces": bool(params["restore_faces"]), "face_restoration_model": None,
        "sd_model_name": title.rsplit(" [", 1)[0], "sd_model_hash": title.rsplit("[", 1)[-1].rstrip("]"),
        "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": params["seed_resize_from_w"],
        "seed_resize_from_h": params["seed_resize_from_h"], "denoising_strength": params["denoising_strength"],
        "extra_generation_params": {"Schedule type": SCHEDULES[effective_schedule(first.sampler_name, first.scheduler)][0],
                                    **extra},
        "index_of_first_image": 0, "infotexts": texts, "styles": params["styles"] or [],
        "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S"), "clip_skip": 1,
        "is_using_inpainting_conditioning": False, "version": VERSION,
    }
    return jsonify({"images": images, "parameters": params, "info": json.dumps(info)})


# -- progress and control --------------------------------------------------------------------------------------


@bp.get("/progress")
def progress() -> ResponseReturnValue:
    skip_image = request.args.get("skip_current_image", "false").lower() == "true"
    running = service().current()
    idle_state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "", "job_count": 0,
                  "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if running is None:
        return jsonify({"progress": 0.0, "eta_relative": 0.0, "state": idle_state, "current_image": None,
                        "textinfo": None})
    snap, elapsed, count = running
    fraction = min(1.0, 0.01 + (snap.step / snap.total if snap.total else 0.0))
    job_state = {**idle_state, "job": "txt2img", "job_count": count, "sampling_step": snap.step,
                 "sampling_steps": snap.total, "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S")}
    image = None if skip_image or not snap.preview else base64.b64encode(snap.preview).decode("ascii")
    return jsonify({"progress": fraction, "eta_relative": max(0.0, elapsed / fraction - elapsed), "state": job_state,
                    "current_image": image, "textinfo": f"step {snap.step} of {snap.total}"})


@bp.post("/interrupt")
def interrupt() -> ResponseReturnValue:
    service().interrupt(API_OWNER)
    return jsonify({})


@bp.post("/skip")
def skip() -> ResponseReturnValue:
    service().interrupt(API_OWNER)
    return jsonify(None)


# -- what is available -----------------------------------------------------------------------------------------


@bp.get("/samplers")
def samplers() -> ResponseReturnValue:
    aliases: dict[str, list[str]] = {}
    for alias, name in SAMPLER_ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    return jsonify([{"name": name, "aliases": aliases.get(name, []),
                     "options": {"scheduler": AUTOMATIC_SCHEDULE[name]} if name in AUTOMATIC_SCHEDULE else {}}
                    for name in SAMPLERS])


@bp.get("/schedulers")
def schedulers() -> ResponseReturnValue:
    return jsonify([{"name": name, "label": label, "aliases": None, "default_rho": 7.0 if name == "karras" else -1,
                     "need_inner_model": False} for name, (label, _) in SCHEDULES.items()])


@bp.get("/sd-models")
def sd_models() -> ResponseReturnValue:
    title = state().model_title
    model = current_app.config.get("MODEL", title)
    return jsonify([{"title": title, "model_name": title.rsplit(" [", 1)[0], "hash": title.rsplit("[", 1)[-1].rstrip("]"), "sha256": None,
                     "filename": os.path.abspath(model) if os.path.exists(model) else model, "config": None}])


@bp.get("/options")
def get_options() -> ResponseReturnValue:
    return jsonify(state().options)


@bp.post("/options")
def set_options() -> ResponseReturnValue:
    body = read_body()
    options = state().options
    for key, value in body.items():
        if key not in options:
            raise ApiError(500, "", f"unknown option {key!r}", {})
        if key == "sd_model_checkpoint" and value != state().model_title:
            raise ApiError(500, "", f"model {value!r} not found; this server has {state().model_title!r}")
    options.update(body)
    return jsonify(None)


@bp.get("/cmd-flags")
def cmd_flags() -> ResponseReturnValue:
    flags = dict(state().flags)
    for key in list(flags):
        if "auth" in key.lower() or "token" in key.lower() or "secret" in key.lower():
            flags[key] = "***" if flags[key] else None
    return jsonify(flags)


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
    return jsonify(prompt_styles())


@bp.get("/upscalers")
def upscalers() -> ResponseReturnValue:
    return jsonify([{"name": "None", "model_name": None, "model_path": None, "model_url": None, "scale": 1}])


@bp.get("/face-restorers")
def face_restorers() -> ResponseReturnValue:
    return jsonify([])


@bp.get("/embeddings")
def embeddings() -> ResponseReturnValue:
    return jsonify({"loaded": {}, "skipped": {}})


@bp.get("/scripts")
def scripts() -> ResponseReturnValue:
    return jsonify({"txt2img": [], "img2img": []})


@bp.get("/memory")
def memory() -> ResponseReturnValue:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if platform.system() == "Darwin" else 1024)
    return jsonify({"ram": {"used": rss, "peak": rss}, "cuda": {"error": "not reported by Lanternslide"}})
