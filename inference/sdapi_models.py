"""A1111's txt2img and img2img request models (``StableDiffusionTxt2ImgProcessingAPI``,
``StableDiffusionImg2ImgProcessingAPI``) as pydantic v2 models, the png-info body, and their 422 bodies.

A1111 v1.10 builds its request models with pydantic v1: every field optional with a default, unknown keys ignored,
strings that look like numbers coerced.  This model gives the same defaults and coercion by construction, and a few
refusals A1111 does not make but a public server must: booleans are not numbers, a seed is -1 (random) or
0..2^32-1.  Errors come back in FastAPI's validation format with pydantic v1's wording (what A1111 clients see):
``{"loc": ["body", "steps"], "msg": "value is not a valid integer", "type": "type_error.integer"}``.

Pure: no Flask, no globals that change.
"""

from __future__ import annotations

import json
from typing import Annotated
from typing import Any
from typing import TypeVar

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import ValidationError
from pydantic import model_validator
from pydantic_core import PydanticCustomError

from inference.request import MAX_SEED

M = TypeVar("M", bound=BaseModel)
MAX_DEPTH = 32  # nesting of the JSON body (lists and objects); A1111 clients send 3 or 4 levels
MEGAPIXEL = 1024 * 1024


def _no_bool(kind: str) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(f"{kind}_from_bool", "true/false is not a number")
        return value
    return BeforeValidator(check)


Int = Annotated[int, _no_bool("int")]
Float = Annotated[float, _no_bool("float")]
Seed = Annotated[int, _no_bool("int"), Field(ge=-1, le=MAX_SEED)]
# A flag A1111 types as int but its own tests send as true/false (inpainting_mask_invert): both are read as 0/1.
Flag = Annotated[int, BeforeValidator(lambda value: int(value) if isinstance(value, bool) else value)]


class _Processing(BaseModel):
    """The fields txt2img and img2img share (A1111's StableDiffusionProcessing and the API's extra fields)."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    prompt: str | None = ""
    negative_prompt: str | None = ""
    styles: list[str] | None = None
    seed: Seed | None = -1
    subseed: Seed | None = -1
    subseed_strength: Float | None = 0
    seed_resize_from_h: Int | None = -1
    seed_resize_from_w: Int | None = -1
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    batch_size: Int | None = 1
    n_iter: Int | None = 1
    steps: Int | None = 50
    cfg_scale: Float | None = 7.0
    width: Int | None = 512
    height: Int | None = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool | None = False
    do_not_save_grid: bool | None = False
    eta: Float | None = None
    s_min_uncond: Float | None = None
    s_churn: Float | None = None
    s_tmax: Float | None = None
    s_tmin: Float | None = None
    s_noise: Float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool | None = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: Float | None = None
    disable_extra_networks: bool | None = False
    comments: dict[str, Any] | None = None
    script_name: str | None = None
    script_args: list[Any] | None = Field(default_factory=list)
    send_images: bool | None = True
    save_images: bool | None = False
    alwayson_scripts: dict[str, Any] | None = Field(default_factory=dict)
    force_task_id: str | None = None
    infotext: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """An explicit null for a field that has a value by default means that default (webuiapi and other
        clients send nulls for fields they leave alone)."""
        if isinstance(data, dict):
            fields = cls.model_fields
            return {k: v for k, v in data.items()
                    if not (v is None and k in fields and fields[k].get_default(call_default_factory=True) is not None)}
        return data


class Txt2ImgRequest(_Processing):
    """The body of POST /sdapi/v1/txt2img, with A1111 v1.10's API defaults (sdapi-contract.md section 1)."""

    denoising_strength: Float | None = None
    firstpass_image: str | None = None
    enable_hr: bool | None = False
    firstphase_width: Int | None = 0
    firstphase_height: Int | None = 0
    hr_scale: Float | None = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: Int | None = 0
    hr_resize_x: Int | None = 0
    hr_resize_y: Int | None = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str | None = ""
    hr_negative_prompt: str | None = ""


class Img2ImgRequest(_Processing):
    """The body of POST /sdapi/v1/img2img: txt2img's shared fields (no hires fix) plus A1111 v1.10's
    StableDiffusionProcessingImg2Img fields and the API's own, with their API defaults.  Pictures are base64 text
    (with or without a data: prefix); they are decoded and checked where the requests are built."""

    init_images: list[str] | None = None
    resize_mode: Int | None = 0
    denoising_strength: Float | None = 0.75
    image_cfg_scale: Float | None = None
    mask: str | None = None
    mask_blur_x: Int | None = 4
    mask_blur_y: Int | None = 4
    mask_blur: Int | None = None
    mask_round: bool | None = True
    inpainting_fill: Int | None = 0
    inpaint_full_res: bool | None = True
    inpaint_full_res_padding: Int | None = 0
    inpainting_mask_invert: Flag | None = 0
    initial_noise_multiplier: Float | None = None
    latent_mask: str | None = None
    include_init_images: bool | None = False


class PngInfoRequest(BaseModel):
    """The body of POST /sdapi/v1/png-info: one picture as base64 text."""

    model_config = ConfigDict(extra="ignore")

    image: str


# pydantic v2 error type -> pydantic v1 (A1111's) message and type; others keep pydantic v2's words.
_V1_WORDS = {
    "int_type": ("value is not a valid integer", "type_error.integer"),
    "int_parsing": ("value is not a valid integer", "type_error.integer"),
    "int_from_float": ("value is not a valid integer", "type_error.integer"),
    "int_from_bool": ("value is not a valid integer: true/false is not a number", "type_error.integer"),
    "float_type": ("value is not a valid float", "type_error.float"),
    "float_parsing": ("value is not a valid float", "type_error.float"),
    "float_from_bool": ("value is not a valid float: true/false is not a number", "type_error.float"),
    "finite_number": ("value is not a valid float", "type_error.float"),
    "bool_type": ("value could not be parsed to a boolean", "type_error.bool"),
    "bool_parsing": ("value could not be parsed to a boolean", "type_error.bool"),
    "string_type": ("str type expected", "type_error.str"),
    "list_type": ("value is not a valid list", "type_error.list"),
    "dict_type": ("value is not a valid dict", "type_error.dict"),
}


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 ``detail`` list for a pydantic error, in pydantic v1's words; the input is never echoed."""
    errors = []
    for error in exc.errors(include_input=False, include_url=False):
        kind = error["type"]
        if kind in _V1_WORDS:
            msg, v1_type = _V1_WORDS[kind]
        elif kind in ("greater_than_equal", "less_than_equal"):
            bound = error.get("ctx", {}).get("ge" if kind == "greater_than_equal" else "le")
            msg = (
                f"ensure this value is {'greater' if kind == 'greater_than_equal' else 'less'} than or equal to {bound}"
            )
            msg += " (-1 means a random seed)" if str(error["loc"][-1]).endswith("seed") else ""
            v1_type = f"value_error.number.not_{'ge' if kind == 'greater_than_equal' else 'le'}"
        else:
            msg, v1_type = error["msg"], kind
        errors.append({"loc": ["body", *error["loc"]], "msg": msg, "type": v1_type})
    return errors


class BodyError(ValueError):
    """The body is not a JSON object we can read; ``detail`` is FastAPI's 422 list."""

    def __init__(self, detail: list[dict[str, Any]]):
        super().__init__(detail[0]["msg"])
        self.detail = detail


def parse_json_object(raw: bytes, mimetype: str | None) -> dict[str, Any]:
    """The JSON object in a request body, or `BodyError` saying why not (wrong type, empty, invalid, too deep)."""
    if mimetype and mimetype != "application/json":
        raise BodyError([{"loc": ["body"], "msg": f"expected application/json, got {mimetype}",
                          "type": "value_error.contenttype"}])
    if not raw.strip():
        raise BodyError([{"loc": ["body"], "msg": "field required", "type": "value_error.missing"}])
    try:
        body = json.loads(raw)
    except RecursionError:
        body = None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError([{"loc": ["body", 0], "msg": f"Expecting value: {str(exc)[:200]}",
                          "type": "value_error.jsondecode"}]) from None
    if body is None and raw.strip() != b"null" or depth(body) > MAX_DEPTH:
        raise BodyError([{"loc": ["body"], "msg": f"JSON nested deeper than {MAX_DEPTH} levels",
                          "type": "value_error.jsondepth"}])
    if not isinstance(body, dict):
        raise BodyError([{"loc": ["body"], "msg": "value is not a valid dict", "type": "type_error.dict"}])
    return body


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply lists and objects nest in ``value`` (a scalar is 0); stops counting past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > limit:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_txt2img(body: dict[str, Any]) -> Txt2ImgRequest:
    """The validated request with A1111's defaults filled in, or `BodyError` naming every field at fault."""
    return parse(Txt2ImgRequest, body)


def parse_img2img(body: dict[str, Any]) -> Img2ImgRequest:
    """The validated img2img request with A1111's defaults filled in, or `BodyError` naming every field at fault."""
    return parse(Img2ImgRequest, body)


def parse(model: type[M], body: dict[str, Any]) -> M:
    """``body`` validated by ``model``, or `BodyError` naming every field at fault."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise BodyError(validation_errors(exc)) from None


def megapixel_steps(steps: int, width: int, height: int, pictures: int) -> float:
    """The work a call asks for: steps x pixels x pictures, in megapixel-steps (1 megapixel = 1024 x 1024)."""
    return steps * width * height * pictures / MEGAPIXEL
