"""A txt2img or img2img call checked before anything is painted: A1111's fields with their defaults, the init
pictures and mask, prompt styles, seeds and the caps on pictures and work per call; a bad value is a 422 naming the
field, in FastAPI's words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from PIL import ImageOps

from inference.errors import RequestError
from inference.imageops import binary_mask
from inference.pictures import decode_base64_picture
from inference.pictures import load_picture
from inference.request import MAX_SEED
from inference.request import GenerationRequest
from inference.sdapi_models import BodyError
from inference.sdapi_models import megapixel_steps
from inference.sdapi_models import parse_img2img
from inference.sdapi_models import parse_txt2img
from web.sdapi.catalogue import prompt_styles
from web.sdapi.common import ApiError
from web.sdapi.common import field_error
from web.sdapi.common import state

MAX_IMAGES = 16  # batch_size * n_iter per request


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
    prompt, negative = styled_prompts(params)
    base = params["seed"] if params["seed"] not in (None, -1) else random.randint(0, MAX_SEED)
    seeds = [(base + i) % (MAX_SEED + 1) for i in range(count)]
    firsts = first_requests(params, prompt, negative, seeds[0], pictures, fields)
    requests_ = [firsts[i % batch_size % len(firsts)].replace(seed=seed) for i, seed in enumerate(seeds)]
    check_work(requests_[0], count)
    return Call(kind, params, requests_, seeds, requests_[0].sampler_name, batch_size, extra)


def styled_prompts(params: dict[str, Any]) -> tuple[str, str]:
    """The call's prompt and negative prompt with its prompt styles appended, in the order named; an unknown style
    is a 422."""
    prompt, negative = params["prompt"], params["negative_prompt"]
    styles = {s["name"]: s for s in prompt_styles()}
    for name in params["styles"] or []:
        style = styles.get(name)
        if style is None:
            raise field_error(["body", "styles"], f"unknown style {name!r}; valid: {', '.join(styles)}")
        prompt = ", ".join(p for p in (prompt, style["prompt"]) if p)
        negative = ", ".join(p for p in (negative, style["negative_prompt"]) if p)
    return prompt, negative


def first_requests(params: dict[str, Any], prompt: str, negative: str, seed: int, pictures: list[bytes | None],
                   fields: dict[str, Any]) -> list[GenerationRequest]:
    """One request for each init picture (``None`` for txt2img) with the call's (styled) prompts, its first seed and
    the img2img ``fields``; a value GenerationRequest refuses is a 422 naming the body's field.  Each picture is
    hashed here, once for every request made from it (see GenerationRequest.replace)."""
    sampler = params["sampler_name"] or params["sampler_index"] or "Euler"
    try:
        firsts = [GenerationRequest(prompt=prompt, negative_prompt=negative, seed=seed, steps=params["steps"],
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
    for first in firsts:
        first.digest("init_image")
        first.digest("mask")
    return firsts


def check_work(first: GenerationRequest, count: int) -> None:
    """Refuse (422) a call of ``count`` pictures like ``first`` that is more work than this server allows per call
    (SDAPI_MAX_MEGAPIXEL_STEPS)."""
    work = megapixel_steps(first.steps, first.width, first.height, count)
    if work > state().max_megapixel_steps:
        raise ApiError(422, [{"loc": ["body"], "msg": (
            f"this call asks for {count} picture(s) x {first.steps} steps x {first.width}x{first.height} = {work:g} "
            f"megapixel-steps (1 megapixel = 1024x1024); this server allows at most "
            f"{state().max_megapixel_steps:g} per call: ask for fewer pictures, fewer steps or a smaller size"),
            "type": "value_error.work"}])
