"""The AUTOMATIC1111 web UI's HTTP API, /sdapi/v1/*, served over the generation service.

Clients written for A1111 (webuiapi, Krita and Photoshop plug-ins, bots) work unchanged: the same routes, request
fields, defaults, response shapes and error bodies (../shared/reference/sdapi-contract.md).  Pictures go through
the same queue, coalescing and cache as the game, at the lowest priority (players of the game never wait for an
API call: they preempt it), with a cap per client and per call.  Fields we cannot honour (hires fix, face
restoration, scripts) are accepted and reported in ``info``.  A server reachable from outside serves the API only
with credentials; interrupt, skip and progress concern the caller's own pictures only.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import platform
import random
import secrets
import threading
import uuid
from dataclasses import dataclass
from dataclasses import field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from PIL import Image
from PIL import ImageOps

from inference import infotext as a1111
from inference.backend import without_paths
from inference.imageops import binary_mask
from inference.jobs import API
from inference.jobs import DONE
from inference.jobs import QueueFull
from inference.request import AUTOMATIC_SCHEDULE
from inference.request import MAX_PICTURE_BYTES
from inference.request import MAX_SEED
from inference.request import SAMPLER_ALIASES
from inference.request import SAMPLERS
from inference.request import SCHEDULES
from inference.request import GenerationRequest
from inference.request import RequestError
from inference.request import decode_base64_picture
from inference.request import effective_schedule
from inference.request import load_picture
from inference.sdapi_models import BodyError
from inference.sdapi_models import PngInfoRequest
from inference.sdapi_models import megapixel_steps
from inference.sdapi_models import parse
from inference.sdapi_models import parse_img2img
from inference.sdapi_models import parse_json_object
from inference.sdapi_models import parse_txt2img
from inference.service import GenerationService
from web import services

bp = Blueprint("sdapi", __name__, url_prefix="/sdapi/v1")
VERSION = "lanternslide"

MAX_IMAGES = 16  # batch_size * n_iter per request
# img2img's body: init pictures and a mask of at most 16 MB each, in base64 (4/3 as long); the other routes keep
# the app's 1 MB.  png-info reads one picture.
MAX_IMG2IMG_BODY = 48 * 1024 * 1024
MAX_PNG_INFO_BODY = 24 * 1024 * 1024
MAX_MEGAPIXEL_STEPS = 1200  # default cap on steps x pixels x pictures per call: 8 pictures x 150 steps at 1024x1024
CLIENT_LIMIT = 16  # default cap on the pictures one API client may have waiting: one full call of MAX_IMAGES
# What /cmd-flags shows: settings that tell a client how this server paints, and nothing else (no credentials, no
# addresses of other servers, no folders).  "model" is shown by its name only.
PUBLIC_FLAGS = frozenset({
    "host", "port", "backend", "remote_workers", "device", "dtype", "model_config", "optimize", "deepcache",
    "max_size", "offline", "image_format", "threads", "queue_limit", "batch_size", "cache_max_mb", "prefetch_depth",
    "prefetch_count", "prefetch_cancel", "preview_every", "share", "behind_proxy", "rate_limit",
    "player_queue_limit", "generation_timeout", "log_level", "sdapi_client_limit", "sdapi_max_megapixel_steps",
    "client_limit", "max_megapixel_steps",
})


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


def model_name(model: str) -> str:
    """The model as strangers may see it: a file's or folder's name, or the hub id; never a path on this server."""
    looks_like_path = os.path.isabs(model) or model.startswith((".", "~")) or os.path.exists(model)
    return (os.path.basename(model.rstrip("/\\")) or model) if looks_like_path else model


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


# -- txt2img and img2img --------------------------------------------------------------------------------------


@dataclass
class Call:
    """A checked txt2img or img2img call: its fields with A1111's defaults, the pictures to paint and their seeds,
    the sampler's name, the batch size (several init pictures set it, as in A1111) and the extra infotext fields."""

    kind: str
    params: dict[str, Any]
    requests: list[GenerationRequest]
    seeds: list[int]
    sampler: str
    batch_size: int
    extra: dict[str, Any] = field(default_factory=dict)


def read_body() -> dict[str, Any]:
    """The JSON object of the request, or a 422 in FastAPI's words (wrong type, empty, invalid or too deep)."""
    try:
        return parse_json_object(request.get_data(cache=False), request.mimetype)
    except BodyError as exc:
        raise ApiError(422, exc.detail) from None


def parse_fields(body: dict[str, Any], kind: str = "txt2img") -> dict[str, Any]:
    """Every txt2img (or img2img) field with A1111's defaults filled in; unknown keys ignored; wrong types -> 422."""
    try:
        return (parse_img2img if kind == "img2img" else parse_txt2img)(body).model_dump()
    except BodyError as exc:
        raise ApiError(422, exc.detail) from None


def unsupported(params: dict[str, Any]) -> list[str]:
    """Names of the requested features that Lanternslide accepts but does not perform."""
    names = []
    for name in ("enable_hr", "restore_faces"):
        if params.get(name):
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
    if params.get("initial_noise_multiplier") not in (None, 1, 1.0):
        names.append("initial_noise_multiplier")
    if params.get("mask_round") is False:
        names.append("mask_round")
    if params.get("latent_mask"):
        names.append("latent_mask")
    if params.get("mask") and params.get("mask_blur") is None and params["mask_blur_x"] != params["mask_blur_y"]:
        names.append("mask_blur_x/mask_blur_y (one blur both ways: the larger)")
    return names


def field_error(loc: list[Any], message: str, kind: str = "value_error") -> ApiError:
    return ApiError(422, [{"loc": loc, "msg": message, "type": kind}])


def read_picture(text: Any, loc: list[Any]) -> tuple[bytes, Any]:
    """A base64 picture of the body, decoded and checked (size, format, pixels, whole file): a 422 naming ``loc``."""
    name = str(loc[1])
    try:
        data = decode_base64_picture(text, name)
        return data, load_picture(data, name)
    except RequestError as exc:
        raise field_error(loc, exc.message, "value_error.picture") from None


def img2img_fields(params: dict[str, Any]) -> tuple[list[bytes], dict[str, Any], dict[str, Any]]:
    """The init pictures, the img2img fields of every request and A1111's extra infotext fields for them."""
    texts = params["init_images"]
    if texts is None:
        raise ApiError(404, "Init image not found")  # A1111's answer
    if not texts:
        raise field_error(["body", "init_images"], "needs at least one picture")
    pictures = [read_picture(text, ["body", "init_images", index])[0] for index, text in enumerate(texts)]
    mask, mask_image = read_picture(params["mask"], ["body", "mask"]) if params["mask"] else (None, None)
    blur = params["mask_blur"] if params["mask_blur"] is not None else max(params["mask_blur_x"], params["mask_blur_y"])
    fields = {"denoising_strength": params["denoising_strength"], "resize_mode": params["resize_mode"], "mask": mask,
              "mask_blur": blur, "inpainting_fill": params["inpainting_fill"],
              "inpaint_full_res": bool(params["inpaint_full_res"]),
              "inpaint_full_res_padding": params["inpaint_full_res_padding"],
              "inpainting_mask_invert": params["inpainting_mask_invert"]}
    extra: dict[str, Any] = {"Denoising strength": params["denoising_strength"]}
    if mask_image is not None:
        if params["inpainting_mask_invert"]:
            extra["Mask mode"] = "Inpaint not masked"
        if blur > 0 and (params["mask_blur"] is not None or params["mask_blur_x"] == params["mask_blur_y"]):
            extra["Mask blur"] = blur
        marked = binary_mask(mask_image)
        if params["inpainting_mask_invert"]:
            marked = ImageOps.invert(marked)
        if params["inpaint_full_res"] and marked.getbbox() is not None:
            extra["Inpaint area"] = "Only masked"
            extra["Masked area padding"] = params["inpaint_full_res_padding"]
        if params["inpainting_fill"] in (0, 2, 3):
            extra["Masked content"] = {0: "fill", 2: "latent noise", 3: "latent nothing"}[params["inpainting_fill"]]
    return pictures, fields, extra


def build_requests(params: dict[str, Any], kind: str = "txt2img") -> Call:
    """The pictures to paint and their seeds; a bad value -> 422 naming the field.  For img2img, one init picture
    serves every picture of the call; several pair with the pictures of each batch one by one, the batch size becoming
    their number (more of them than ``batch_size`` is refused), as in A1111."""
    batch_size = params["batch_size"]
    count = batch_size * params["n_iter"]
    if not 1 <= count <= MAX_IMAGES or params["batch_size"] < 1 or params["n_iter"] < 1:
        raise ApiError(422, [{"loc": ["body", "batch_size"], "msg": f"batch_size x n_iter must be 1..{MAX_IMAGES}, "
                              f"got {params['batch_size']} x {params['n_iter']}", "type": "value_error"}])
    pictures: list[bytes | None] = [None]
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if kind == "img2img":
        if params["init_images"] and len(params["init_images"]) > batch_size:
            raise field_error(["body", "init_images"], f"bad number of images passed: {len(params['init_images'])}; "
                                                       f"expecting {batch_size} or less")
        pictures[:], fields, extra = img2img_fields(params)
        if len(pictures) > 1:
            batch_size = len(pictures)
            count = batch_size * params["n_iter"]
    prompt, negative = params["prompt"], params["negative_prompt"]
    styles = {s["name"]: s for s in prompt_styles()}
    for name in params["styles"] or []:
        style = styles.get(name)
        if style is None:
            raise field_error(["body", "styles"], f"unknown style {name!r}; valid: {', '.join(styles)}")
        prompt = ", ".join(p for p in (prompt, style["prompt"]) if p)
        negative = ", ".join(p for p in (negative, style["negative_prompt"]) if p)
    base = params["seed"] if params["seed"] not in (None, -1) else random.randint(0, MAX_SEED)
    seeds = [(base + i) % (MAX_SEED + 1) for i in range(count)]
    sampler = params["sampler_name"] or params["sampler_index"] or "Euler"
    try:
        firsts = [GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seeds[0], steps=params["steps"],
                                    cfg_scale=params["cfg_scale"], width=params["width"], height=params["height"],
                                    sampler_name=sampler, scheduler=params["scheduler"] or "automatic",
                                    tiling=bool(params["tiling"]), restore_faces=bool(params["restore_faces"]),
                                    init_image=picture, **fields)
                  for picture in pictures]
    except RequestError as exc:
        name = {"init_image": "init_images"}.get(exc.field, exc.field)
        if exc.field == "sampler_name" and not params["sampler_name"]:
            name = "sampler_index"
        raise field_error(["body", name], exc.message) from None
    for first in firsts:  # each picture hashed once for every request made from it (see GenerationRequest.replace)
        first.digest("init_image")
        first.digest("mask")
    requests_ = [firsts[i % batch_size % len(firsts)].replace(seed=seed) for i, seed in enumerate(seeds)]
    first = requests_[0]
    work = megapixel_steps(first.steps, first.width, first.height, count)
    if work > state().max_megapixel_steps:
        raise ApiError(422, [{"loc": ["body"], "msg": (
            f"this call asks for {count} picture(s) x {first.steps} steps x {first.width}x{first.height} = {work:g} "
            f"megapixel-steps (1 megapixel = 1024x1024); this server allows at most "
            f"{state().max_megapixel_steps:g} per call: ask for fewer pictures, fewer steps or a smaller size"),
            "type": "value_error.work"}])
    return Call(kind, params, requests_, seeds, first.sampler_name, batch_size, extra)


def infotext(req: GenerationRequest, seed: int, title: str, extra: dict[str, Any] | None = None) -> str:
    """A1111's "parameters" text for one picture (img2img's fields in A1111's order: the denoising strength after
    the model, the mask's settings before the version)."""
    schedule = SCHEDULES[req.scheduler][0]
    extra = dict(extra or {})
    strength = extra.pop("Denoising strength", None)
    lines = [req.prompt]
    if req.negative_prompt:
        lines.append(f"Negative prompt: {req.negative_prompt}")
    name, _, digest = title.rpartition(" [")
    lines.append(
        f"Steps: {req.steps}, Sampler: {req.sampler_name}, Schedule type: {schedule}, CFG scale: {req.cfg_scale:g}, "
        f"Seed: {seed}, Size: {req.width}x{req.height}, Model hash: {digest.rstrip(']')}, Model: {name}"
        + (f", Denoising strength: {strength}" if strength is not None else "")
        + (", Tiling: True" if req.tiling else "")
        + "".join(f", {key}: {a1111.quote(value)}" for key, value in extra.items())
        + f", Version: {VERSION}"
    )
    return "\n".join(lines)


def png_with_info(png: bytes, text: str) -> str:
    """Base64 of the PNG with its infotext in a "parameters" text chunk (no data: prefix)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).save(buffer, format="PNG", pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@bp.post("/txt2img")
def txt2img() -> ResponseReturnValue:
    """Paint pictures from a prompt, as A1111 does (body and answer in its words)."""
    return generate("txt2img")


@bp.post("/img2img")
def img2img() -> ResponseReturnValue:
    """Paint pictures from init pictures (and a mask), as A1111 does: the same queue, caps and answer as txt2img."""
    request.max_content_length = MAX_IMG2IMG_BODY
    return generate("img2img")


def generate(kind: str) -> ResponseReturnValue:
    """A txt2img or img2img call: read and check the body (FastAPI-style 422s name the field), hold one of the
    calls allowed at once, paint."""
    body = read_body()
    params = parse_fields(body, kind)
    call = build_requests(params, kind)
    api = state()
    with api.lock:
        if api.max_calls and api.calls >= api.max_calls:
            raise ApiError(503, "The painter is busy with other API calls; try again later",
                           f"{api.calls} calls are waiting, at most {api.max_calls} at once", {"Retry-After": "5"})
        api.calls += 1
    try:
        return paint(call)
    finally:
        with api.lock:
            api.calls -= 1


def our_notes(params: dict[str, Any], asked: int, done: list[Any], interrupted: bool) -> dict[str, str]:
    """What Lanternslide tells about a call in ``extra_generation_params``: fields it does not honour, pictures not
    painted, pictures painted smaller, and what the painter did differently from what was asked."""
    extra: dict[str, str] = {}
    skipped = unsupported(params)
    if skipped:
        extra["Lanternslide: not supported"] = ", ".join(skipped)
    if len(done) < asked:
        extra["Lanternslide: interrupted" if interrupted else "Lanternslide: skipped"] = (
            f"{len(done)} of {asked} pictures painted")
    if any(snap.meta.get("info", {}).get("scaled") for snap in done):
        extra["Lanternslide: scaled"] = done[0].meta["info"]["scaled"]
    notes = list(dict.fromkeys(note for snap in done for note in snap.meta.get("info", {}).get("notes", [])))
    if notes:
        extra["Lanternslide: notes"] = "; ".join(notes)
    return extra


def paint(call: Call) -> ResponseReturnValue:
    """Paint a checked txt2img or img2img call for the caller and answer it like A1111."""
    params, requests_, seeds = call.params, call.requests, call.seeds
    client = caller()
    owner = f"{client}{uuid.uuid4().hex[:8]}"
    if len(requests_) > state().client_limit:
        raise ApiError(429, f"This call asks for {len(requests_)} pictures; this server lets one API client have at "
                       f"most {state().client_limit} waiting (--sdapi-client-limit). Ask for fewer pictures.")
    # 2. Queue every picture through the shared service (coalescing and cache included), below every player.
    keys: list[str] = []
    try:
        for req in requests_:
            snap = service().submit(req, API, owner, client)
            if snap is not None:  # only paint-ahead is ever turned away without QueueFull
                keys.append(snap.key)
    except QueueFull as exc:
        for key in keys:  # all or nothing: a refused call leaves no pictures behind
            service().withdraw(key, owner)
        headers = {"Retry-After": str(exc.retry_after)}
        if exc.mine:
            raise ApiError(429, f"You have too many pictures waiting: at most {state().client_limit} per API client "
                           f"(--sdapi-client-limit), and this call asks for {len(requests_)}. Try again when your "
                           "other calls have finished.", f"retry after {exc.retry_after} s", headers) from None
        raise ApiError(503, "The painter is busy; try again later", f"queue full, retry after {exc.retry_after} s",
                       headers) from None
    # 3. Wait for them; an interrupt stops ours and drops the rest, a skip only the picture being painted.
    snaps, interrupted = [], False
    for index, key in enumerate(keys):
        if interrupted:
            service().withdraw(key, owner)
        snap = service().wait(key)
        if snap.state == "cancelled":
            interrupted = interrupted or snap.error != "skipped"
        elif snap.state != DONE:
            for rest in keys[index + 1:]:
                service().withdraw(rest, owner)
            raise ApiError(500, "", f"{snap.error} {snap.hint}".strip())
        snaps.append(snap)
    # 4. Answer like A1111: base64 PNGs with infotext, the request echoed, info as a JSON string.
    title = state().model_title
    done = [(req, seed, snap) for req, seed, snap in zip(requests_, seeds, snaps, strict=False)
            if snap.state == DONE and snap.png is not None]
    texts = [infotext(req, seed, title, call.extra) for req, seed, _ in done]
    images = [png_with_info(snap.png, text) for (_, _, snap), text in zip(done, texts, strict=True)
              if snap.png is not None] if params["send_images"] else []
    first = requests_[0]
    extra = our_notes(params, len(requests_), [snap for _, _, snap in done], interrupted)
    info = {
        "prompt": first.prompt,
        "all_prompts": [r.prompt for r in requests_],
        "negative_prompt": first.negative_prompt,
        "all_negative_prompts": [r.negative_prompt for r in requests_],
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": params["subseed"] if params["subseed"] not in (None, -1) else seeds[0],
        "all_subseeds": seeds,
        "subseed_strength": params["subseed_strength"] or 0,
        "width": first.width,
        "height": first.height,
        "sampler_name": call.sampler,
        "cfg_scale": first.cfg_scale,
        "steps": first.steps,
        "batch_size": call.batch_size,
        "restore_faces": bool(params["restore_faces"]),
        "face_restoration_model": None,
        "sd_model_name": title.rsplit(" [", 1)[0],
        "sd_model_hash": title.rsplit("[", 1)[-1].rstrip("]"),
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": params["seed_resize_from_w"],
        "seed_resize_from_h": params["seed_resize_from_h"],
        "denoising_strength": params["denoising_strength"],
        "extra_generation_params": {
            "Schedule type": SCHEDULES[effective_schedule(first.sampler_name, first.scheduler)][0],
            **call.extra,
            **extra,
        },
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": params["styles"] or [],
        "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }
    if call.kind == "img2img" and not params["include_init_images"]:
        params = {**params, "init_images": None, "mask": None}  # A1111 echoes the pictures only when asked to
    return jsonify({"images": images, "parameters": params, "info": json.dumps(info)})


# -- progress and control --------------------------------------------------------------------------------------


@bp.get("/progress")
def progress() -> ResponseReturnValue:
    """How far the caller's picture being painted has come, with a live preview."""
    skip_image = request.args.get("skip_current_image", "false").lower() == "true"
    running = service().current(caller())  # the caller's own work: other clients' pictures stay theirs
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
    """Stop the caller's own pictures, painting or waiting (never a player's or another client's)."""
    service().interrupt(caller(), "interrupted", queued=True)
    return jsonify({})


@bp.post("/skip")
def skip() -> ResponseReturnValue:
    """Skip the caller's own picture(s) being painted; the rest of their calls go on."""
    service().interrupt(caller(), "skipped")
    return jsonify(None)


# -- what is available -----------------------------------------------------------------------------------------


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


def open_for_info(text: str) -> Any:
    """A picture opened for its metadata only: the header and the chunks before the pixels, never the pixels (so a
    picture of any size can be read, and none is decoded)."""
    try:
        data = decode_base64_picture(text, "image")
        if len(data) > MAX_PICTURE_BYTES:
            raise RequestError("image", f"is {len(data)} bytes; at most {MAX_PICTURE_BYTES} allowed")
        try:
            return Image.open(io.BytesIO(data))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise RequestError("image", f"is not a picture Pillow can read ({type(exc).__name__})") from None
    except RequestError as exc:
        raise field_error(["body", "image"], exc.message, "value_error.picture") from None


@bp.post("/png-info")
def png_info() -> ResponseReturnValue:
    """The infotext a picture carries (ours or A1111's: a PNG's "parameters" chunk, a JPEG's or WebP's EXIF
    comment), its other info items, and the fields A1111 reads from the infotext."""
    request.max_content_length = MAX_PNG_INFO_BODY
    try:
        text = parse(PngInfoRequest, read_body()).image.strip()
    except BodyError as exc:
        raise ApiError(422, exc.detail) from None
    if not text:
        return jsonify({"info": "", "items": {}, "parameters": {}})
    image = open_for_info(text)
    geninfo, items = a1111.read_info(image)
    geninfo = geninfo or ""
    return jsonify({"info": geninfo, "items": items, "parameters": a1111.parse_generation_parameters(geninfo)})
