"""/txt2img and /img2img painted through the generation service, answered like A1111 (base64 PNGs carrying their
infotext, the request echoed, ``info``), and /progress, /interrupt and /skip, which concern the caller's own pictures
only.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from datetime import datetime
from typing import Any

from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from PIL import Image

from inference import infotext as a1111
from inference.jobs import API
from inference.jobs import DONE
from inference.jobs import QueueFull
from inference.jobs import Snapshot
from inference.request import GenerationRequest
from inference.samplers import SCHEDULES
from inference.samplers import effective_schedule
from web.sdapi.calls import Call
from web.sdapi.calls import build_requests
from web.sdapi.calls import parse_fields
from web.sdapi.calls import unsupported
from web.sdapi.common import VERSION
from web.sdapi.common import ApiError
from web.sdapi.common import bp
from web.sdapi.common import caller
from web.sdapi.common import read_body
from web.sdapi.common import service
from web.sdapi.common import state

# img2img's body: init pictures and a mask of at most 16 MB each, in base64 (4/3 as long); the other routes keep
# the app's 1 MB.
MAX_IMG2IMG_BODY = 48 * 1024 * 1024


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
    client = caller()
    owner = f"{client}{uuid.uuid4().hex[:8]}"
    if len(call.requests) > state().client_limit:
        raise ApiError(429, f"This call asks for {len(call.requests)} pictures; this server lets one API client have "
                       f"at most {state().client_limit} waiting (--sdapi-client-limit). Ask for fewer pictures.")
    keys = queue_all(call.requests, owner, client)
    snaps, interrupted = wait_all(keys, owner)
    return answer(call, snaps, interrupted)


def queue_all(requests_: list[GenerationRequest], owner: str, client: str) -> list[str]:
    """Queue every picture of a call through the shared service (coalescing and cache included), below every
    player, and return their keys; all or nothing: a call the queue turns away leaves no pictures behind and is a
    429 (the caller has too many waiting) or a 503 (the painter is busy)."""
    keys: list[str] = []
    try:
        for req in requests_:
            snap = service().submit(req, API, owner, client)
            if snap is not None:  # only paint-ahead is ever turned away without QueueFull
                keys.append(snap.key)
    except QueueFull as exc:
        for key in keys:
            service().withdraw(key, owner)
        headers = {"Retry-After": str(exc.retry_after)}
        if exc.mine:
            raise ApiError(429, f"You have too many pictures waiting: at most {state().client_limit} per API client "
                           f"(--sdapi-client-limit), and this call asks for {len(requests_)}. Try again when your "
                           "other calls have finished.", f"retry after {exc.retry_after} s", headers) from None
        raise ApiError(503, "The painter is busy; try again later", f"queue full, retry after {exc.retry_after} s",
                       headers) from None
    return keys


def wait_all(keys: list[str], owner: str) -> tuple[list[Snapshot], bool]:
    """Wait for a call's queued pictures, in order: their final snapshots, and whether the call was interrupted.  An
    interrupt stops ours and drops the rest, a skip only the picture being painted; a picture that fails withdraws
    the rest and is a 500."""
    snaps: list[Snapshot] = []
    interrupted = False
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
    return snaps, interrupted


def answer(call: Call, snaps: list[Snapshot], interrupted: bool) -> ResponseReturnValue:
    """A1111's answer to a painted call: base64 PNGs with their infotext, the request echoed, ``info`` as a JSON
    string."""
    params, requests_, seeds = call.params, call.requests, call.seeds
    title = state().model_title
    done = [(req, seed, snap) for req, seed, snap in zip(requests_, seeds, snaps, strict=False)
            if snap.state == DONE and snap.png is not None]
    texts = [infotext(req, seed, title, call.extra) for req, seed, _ in done]
    images = [png_with_info(snap.png, text) for (_, _, snap), text in zip(done, texts, strict=True)
              if snap.png is not None] if params["send_images"] else []
    notes = our_notes(params, len(requests_), [snap for _, _, snap in done], interrupted)
    info = call_info(call, title, texts, notes)
    if call.kind == "img2img" and not params["include_init_images"]:
        params = {**params, "init_images": None, "mask": None}  # A1111 echoes the pictures only when asked to
    return jsonify({"images": images, "parameters": params, "info": json.dumps(info)})


def call_info(call: Call, title: str, texts: list[str], notes: dict[str, str]) -> dict[str, Any]:
    """A1111's ``info`` about a call (before it is turned into a JSON string): what was painted, with the model
    ``title``, each picture's infotext and Lanternslide's ``notes`` among the extra generation parameters."""
    params, requests_, seeds = call.params, call.requests, call.seeds
    first = requests_[0]
    return {
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
            **notes,
        },
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": params["styles"] or [],
        "job_timestamp": datetime.now().strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
    }


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
    # A1111's API names the job after its call: shared.state.begin(job="scripts_txt2img") or "scripts_img2img"
    job_state = {**idle_state, "job": f"scripts_{snap.task}", "job_count": count, "sampling_step": snap.step,
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
