"""What one picture needs (GenerationRequest) and what comes back (GenerationResult).

Field names follow the AUTOMATIC1111 API (prompt, negative_prompt, seed, steps, cfg_scale, width, height,
sampler_name, scheduler, tiling, restore_faces, and for img2img init_image, denoising_strength, resize_mode, mask,
mask_blur, inpainting_fill, inpaint_full_res, inpaint_full_res_padding, inpainting_mask_invert), so the same object
travels from a story slide, from the admin page and from /sdapi/v1/txt2img or img2img to any backend.  Validation
names the field, the rule and the value, and never silently corrects anything.  Sampler names are resolved by
inference/samplers.py, the pictures an img2img request carries are checked by inference/pictures.py, and every wrong
value raises inference/errors.py's `RequestError`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from inference.errors import RequestError
from inference.pictures import MAX_SIZE
from inference.pictures import MIN_SIZE
from inference.pictures import decode_base64_picture
from inference.pictures import encode_image
from inference.pictures import picture_header
from inference.samplers import resolve_sampler

MAX_STEPS = 150
MAX_CFG = 30.0
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 4000
# A1111's names for the img2img choices (the infotext and the README use them).
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
INPAINTING_FILLS = ("fill", "original", "latent noise", "latent nothing")
MAX_MASK_BLUR = 64  # A1111's slider goes to 64
MAX_MASK_PADDING = 256  # A1111's "only masked padding" slider goes to 256
CACHE_KEY = re.compile(r"[0-9a-f]{64}")
# The txt2img fields: every txt2img cache key and remote body is built from exactly these, as before img2img.
TXT2IMG_FIELDS = ("prompt", "negative_prompt", "seed", "steps", "cfg_scale", "width", "height", "sampler_name",
                  "scheduler", "tiling", "restore_faces")


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise RequestError(name, f"must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class GenerationRequest:
    """One image to paint: txt2img, or img2img when it has an init image (or the key of one to start from).

    Args:
        prompt (`str`): what the picture shows.
        negative_prompt (`str`, *optional*, defaults to ``""``): what it must not show.
        seed (`int`, *optional*, defaults to -1): -1 picks a random seed, reported in the result.
        steps (`int`, *optional*, defaults to 20): denoising steps, 1..150 (img2img paints about
            ``steps * denoising_strength`` of them, as A1111 does).
        cfg_scale (`float`, *optional*, defaults to 7.0): classifier-free guidance, 0..30.
        width, height (`int`, *optional*, default 512): multiples of 8 in 64..2048.
        sampler_name (`str`, *optional*, defaults to ``"DPM++ 2M"``): an A1111 sampler name.
        scheduler (`str`, *optional*, defaults to ``"automatic"``): an A1111 schedule type; automatic is the
            sampler's own (Karras for the DPM++ samplers, as in A1111).
        tiling (`bool`, *optional*): paint a seamless, tileable picture (circular padding).
        restore_faces (`bool`, *optional*): accepted for A1111 compatibility; reported as unsupported.
        init_image (`bytes`, *optional*): img2img: the encoded picture (PNG, WebP or JPEG, at most
            `MAX_PICTURE_BYTES` and `MAX_PICTURE_PIXELS`) to start from.  The API maps A1111's ``init_images`` list to
            one request per picture painted (see web/sdapi.py: one picture serves the whole batch, several pair with
            the pictures of a batch one by one, as in A1111).
        denoising_strength (`float`, *optional*, defaults to 0.75): img2img: how far from the init image, 0..1.
        resize_mode (`int`, *optional*, defaults to 0): img2img: how an init image of another size becomes
            ``width`` x ``height``: 0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale).
        mask (`bytes`, *optional*): inpainting: an encoded picture, white where to paint (alpha where transparent
            counts as white); needs an init image.
        mask_blur (`int`, *optional*, defaults to 4): Gaussian blur of the mask, 0..64 pixels.
        inpainting_fill (`int`, *optional*, defaults to 0): what the masked part starts from: 0 fill (the colours
            around it), 1 original, 2 latent noise, 3 latent nothing.
        inpaint_full_res (`bool`, *optional*, defaults to True): paint only the mask's box (plus padding) at full size
            and paste it back (A1111's "Only masked"); the picture keeps the init image's size.
        inpaint_full_res_padding (`int`, *optional*, defaults to 0): pixels around the mask's box, 0..256.
        inpainting_mask_invert (`int`, *optional*, defaults to 0): 1 paints what the mask leaves out.
        init_from (`str`, *optional*): the cache key (64 hex characters) of another picture to start from; the
            generation service loads that picture into ``init_image`` before painting (a story's continuation).

    The defaults are A1111's own (StableDiffusionProcessingImg2Img): what its API does with a field left out.
    """

    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    sampler_name: str = "DPM++ 2M"
    scheduler: str = "automatic"
    tiling: bool = False
    restore_faces: bool = False
    init_image: bytes | None = field(default=None, repr=False)
    denoising_strength: float = 0.75
    resize_mode: int = 0
    mask: bytes | None = field(default=None, repr=False)
    mask_blur: int = 4
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    init_from: str = ""

    def __post_init__(self) -> None:
        self.check()

    @property
    def is_img2img(self) -> bool:
        """Whether this request starts from a picture (``init_image`` or ``init_from``)."""
        return self.init_image is not None or bool(self.init_from)

    def check(self) -> None:
        """Raise `RequestError` naming the first field that is wrong."""
        for name in ("prompt", "negative_prompt"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise RequestError(name, f"must be text, got {type(value).__name__}")
            if len(value) > MAX_PROMPT_CHARS:
                raise RequestError(name, f"is {len(value)} characters long; at most {MAX_PROMPT_CHARS} allowed")
        _check_int("seed", self.seed, -1, MAX_SEED)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        if isinstance(self.cfg_scale, bool) or not isinstance(self.cfg_scale, (int, float)):
            raise RequestError("cfg_scale", f"must be a number, got {self.cfg_scale!r}")
        if not 0 <= self.cfg_scale <= MAX_CFG:
            raise RequestError("cfg_scale", f"must be between 0 and {MAX_CFG:g}, got {self.cfg_scale}")
        for name in ("width", "height"):
            value = _check_int(name, getattr(self, name), MIN_SIZE, MAX_SIZE)
            if value % 8:
                raise RequestError(name, f"must be a multiple of 8, got {value}")
        for name in ("tiling", "restore_faces", "inpaint_full_res"):
            if not isinstance(getattr(self, name), bool):
                raise RequestError(name, f"must be true or false, got {getattr(self, name)!r}")
        self._check_img2img()
        canonical = resolve_sampler(self.sampler_name, self.scheduler)
        if canonical != (self.sampler_name, self.scheduler):
            object.__setattr__(self, "sampler_name", canonical[0])
            object.__setattr__(self, "scheduler", canonical[1])

    def _check_img2img(self) -> None:
        strength = self.denoising_strength
        if isinstance(strength, bool) or not isinstance(strength, (int, float)):
            raise RequestError("denoising_strength", f"must be a number, got {strength!r}")
        if not 0 <= strength <= 1:
            raise RequestError("denoising_strength", f"must be between 0 and 1, got {strength}")
        _check_int("resize_mode", self.resize_mode, 0, len(RESIZE_MODES) - 1)
        _check_int("mask_blur", self.mask_blur, 0, MAX_MASK_BLUR)
        _check_int("inpainting_fill", self.inpainting_fill, 0, len(INPAINTING_FILLS) - 1)
        _check_int("inpaint_full_res_padding", self.inpaint_full_res_padding, 0, MAX_MASK_PADDING)
        _check_int("inpainting_mask_invert", self.inpainting_mask_invert, 0, 1)
        if not isinstance(self.init_from, str) or self.init_from and not CACHE_KEY.fullmatch(self.init_from):
            raise RequestError("init_from", f"must be a picture's cache key (64 lowercase hex characters) or empty, "
                                            f"got {str(self.init_from)[:80]!r}")
        if self.init_image is not None:
            picture_header(self.init_image, "init_image")
        if self.mask is not None:
            if not self.is_img2img:
                raise RequestError("mask", "needs a picture to paint on (init_image or init_from)")
            picture_header(self.mask, "mask")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build a request from a mapping, ignoring keys that are not request fields.  Pictures may be bytes or base64
        text (with or without a data: prefix); A1111's ``init_images`` list may hold one picture."""
        if not isinstance(data, dict):
            raise RequestError("body", f"must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names and v is not None}
        if "cfg_scale" in values and isinstance(values["cfg_scale"], int) and not isinstance(values["cfg_scale"], bool):
            values["cfg_scale"] = float(values["cfg_scale"])
        pictures = data.get("init_images")
        if pictures and "init_image" not in values:
            if not isinstance(pictures, list) or len(pictures) != 1:
                raise RequestError("init_images", "must be a list of one picture here (one request paints one "
                                                  "picture)")
            values["init_image"] = pictures[0]
        for name in ("init_image", "mask"):
            if name in values:
                values[name] = decode_base64_picture(values[name], name)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the request as a JSON-safe dict of A1111 field names: a txt2img request's eleven fields (as
        always), and for img2img also the img2img fields, its picture as A1111's ``init_images`` (a list of one
        base64 string; empty when only ``init_from`` names it) and the mask as base64."""
        data = {name: getattr(self, name) for name in TXT2IMG_FIELDS}
        if not self.is_img2img:
            return data
        image = [base64.b64encode(self.init_image).decode("ascii")] if self.init_image is not None else []
        return {
            **data,
            "init_images": image,
            "denoising_strength": self.denoising_strength,
            "resize_mode": self.resize_mode,
            "mask": base64.b64encode(self.mask).decode("ascii") if self.mask is not None else None,
            "mask_blur": self.mask_blur,
            "inpainting_fill": self.inpainting_fill,
            "inpaint_full_res": self.inpaint_full_res,
            "inpaint_full_res_padding": self.inpaint_full_res_padding,
            "inpainting_mask_invert": self.inpainting_mask_invert,
            "init_from": self.init_from,
        }

    def replace(self, **changes: Any) -> GenerationRequest:
        """Return a copy with some fields changed (validated again); picture digests already computed carry over."""
        copy = dataclasses.replace(self, **changes)
        known = self.__dict__.get("_digests")
        if known:
            copy.__dict__["_digests"] = {k: v for k, v in known.items() if k not in changes}
        return copy

    def digest(self, name: str) -> str | None:
        """SHA-256 of the picture in field ``name`` (``init_image`` or ``mask``), computed once per request."""
        data = getattr(self, name)
        if data is None:
            return None
        digests = self.__dict__.setdefault("_digests", {})  # not a field: frozen fields stay as they are
        if name not in digests:
            digests[name] = hashlib.sha256(data).hexdigest()
        return digests[name]

    def batch_key(self) -> tuple:
        """Requests with equal batch keys can run as one batch on one pipeline call: txt2img with txt2img of the same
        size, steps, sampler, cfg and tiling; img2img only with img2img of the same strength too (and latent upscale
        only with itself); a masked request only with itself."""
        key: tuple = (self.width, self.height, self.steps, self.cfg_scale, self.sampler_name, self.scheduler,
                      self.tiling)
        if not self.is_img2img:
            return key
        key += ("img2img", round(float(self.denoising_strength), 4), self.resize_mode == 3)
        if self.mask is not None:
            key += ("mask", id(self))
        return key

    def cache_key(self, model: str) -> str:
        """Return the content hash of model + normalized request; equal keys give equal pictures.

        A txt2img request's key is what it always was.  An img2img request's key adds its fields, with the pictures
        by their SHA-256 (the source by its cache key when ``init_from`` names it, whether or not it has been loaded
        into ``init_image`` yet) and the mask's settings only when there is a mask."""
        if self.seed == -1:
            raise RequestError("seed", "a random seed (-1) has no cache key; derive a fixed seed first")
        normal: dict[str, Any] = {name: getattr(self, name) for name in TXT2IMG_FIELDS}
        normal["cfg_scale"] = round(float(normal["cfg_scale"]), 4)
        normal.pop("restore_faces")
        if self.is_img2img:
            img2img: dict[str, Any] = {
                "init": f"key:{self.init_from}" if self.init_from else f"sha256:{self.digest('init_image')}",
                "denoising_strength": round(float(self.denoising_strength), 4),
                "resize_mode": self.resize_mode,
            }
            if self.mask is not None:
                img2img.update(mask=self.digest("mask"), mask_blur=self.mask_blur, inpainting_fill=self.inpainting_fill,
                               inpaint_full_res=self.inpaint_full_res,
                               inpaint_full_res_padding=self.inpaint_full_res_padding,
                               inpainting_mask_invert=self.inpainting_mask_invert)
            normal["img2img"] = img2img
        blob = json.dumps({"model": model, **normal}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class GenerationResult:
    """One painted picture.

    Args:
        image (`PIL.Image.Image`): the picture.
        seed (`int`): the seed actually used (never -1).
        request (`GenerationRequest`): what was asked, with the used seed filled in.
        info (`dict`): notes for the caller, e.g. ``{"unsupported": ["restore_faces"]}``.
        seconds (`float`): time the backend spent on this picture's batch.
    """

    image: Any
    seed: int
    request: GenerationRequest
    info: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def encode(self, fmt: str = "webp") -> bytes:
        """Return the picture as WebP (default), PNG or JPEG bytes."""
        return encode_image(self.image, fmt)


