"""What one picture needs (GenerationRequest) and what comes back (GenerationResult).

Field names follow the AUTOMATIC1111 API (prompt, negative_prompt, seed, steps, cfg_scale, width, height,
sampler_name, scheduler, tiling, restore_faces), so the same object travels from a story slide, from the
admin page and from /sdapi/v1/txt2img to any backend.  Validation names the field, the rule and the value,
and never silently corrects anything.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from dataclasses import dataclass
from dataclasses import field
from typing import Any

# A1111 sampler name -> (diffusers scheduler class, constructor overrides, schedule types it supports).
# Sources: diffusers docs api/schedulers/overview.md; A1111 modules/sd_samplers_kdiffusion.py.
_KARRAS_ETC = ("automatic", "karras", "exponential", "beta", "sgm_uniform")
SAMPLERS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}, _KARRAS_ETC),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {}, _KARRAS_ETC),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, _KARRAS_ETC),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}, ("automatic", "sgm_uniform")),
    "Euler": ("EulerDiscreteScheduler", {}, _KARRAS_ETC),
    "LMS": ("LMSDiscreteScheduler", {}, _KARRAS_ETC),
    "Heun": ("HeunDiscreteScheduler", {}, _KARRAS_ETC),
    "DPM2": ("KDPM2DiscreteScheduler", {}, ("automatic", "karras", "exponential", "beta")),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}, ("automatic", "karras", "exponential", "beta")),
    "DDIM": ("DDIMScheduler", {}, ("automatic", "sgm_uniform")),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}, ("automatic", "sgm_uniform")),
    "UniPC": ("UniPCMultistepScheduler", {}, _KARRAS_ETC),
    "DEIS": ("DEISMultistepScheduler", {}, _KARRAS_ETC),
}
SAMPLER_ALIASES = {
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_euler_a": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_a": "DPM2 a",
}
# What "automatic" means per sampler, as in A1111's sampler options ({"scheduler": "karras"}).
AUTOMATIC_SCHEDULE = {"DPM++ 2M": "karras", "DPM++ SDE": "karras", "DPM++ 2M SDE": "karras"}
# Schedule type name -> (A1111 label, diffusers scheduler overrides).
SCHEDULES: dict[str, tuple[str, dict[str, Any]]] = {
    "automatic": ("Automatic", {}),
    "karras": ("Karras", {"use_karras_sigmas": True}),
    "exponential": ("Exponential", {"use_exponential_sigmas": True}),
    "beta": ("Beta", {"use_beta_sigmas": True}),
    "sgm_uniform": ("SGM Uniform", {"timestep_spacing": "trailing"}),
}

MIN_SIZE, MAX_SIZE = 64, 2048
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_SEED = 2**32 - 1
MAX_PROMPT_CHARS = 4000
IMAGE_FORMATS = ("webp", "png", "jpeg")


class RequestError(ValueError):
    """A request field is missing, of the wrong type or out of range.

    Args:
        field (`str`): the field at fault, in A1111 naming (e.g. ``"steps"``).
        message (`str`): what is wrong and what would be right.
    """

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def resolve_sampler(name: str, scheduler: str | None = None) -> tuple[str, str]:
    """Return the canonical (sampler_name, scheduler) for an A1111 sampler and schedule name.

    Accepts aliases (``k_euler_a``), any letter case, and the legacy names with the schedule appended
    (``"DPM++ 2M Karras"``), as A1111 does.  Raises `RequestError` listing the valid names otherwise.
    """
    by_lower = {n.lower(): n for n in SAMPLERS}
    wanted = (name or "").strip()
    schedule = resolve_schedule(scheduler) if scheduler else "automatic"
    canonical = by_lower.get(wanted.lower()) or SAMPLER_ALIASES.get(wanted.lower())
    if canonical is None:
        # "DPM++ 2M Karras" -> sampler "DPM++ 2M" with schedule karras
        for key, (label, _) in SCHEDULES.items():
            suffix = " " + label.lower()
            if wanted.lower().endswith(suffix) and wanted.lower()[: -len(suffix)] in by_lower:
                canonical = by_lower[wanted.lower()[: -len(suffix)]]
                if schedule == "automatic":
                    schedule = key
                break
    if canonical is None:
        raise RequestError("sampler_name", f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    supported = SAMPLERS[canonical][2]
    if schedule not in supported:
        raise RequestError(
            "scheduler", f"{schedule!r} is not available with sampler {canonical!r}; valid: {', '.join(supported)}"
        )
    return canonical, schedule


def effective_schedule(sampler_name: str, schedule: str) -> str:
    """Return the schedule type actually used: "automatic" becomes the sampler's own default."""
    return AUTOMATIC_SCHEDULE.get(sampler_name, "automatic") if schedule == "automatic" else schedule


def resolve_schedule(name: str) -> str:
    """Return the canonical schedule type for a name or label (``"Karras"`` -> ``"karras"``)."""
    wanted = (name or "").strip().lower().replace(" ", "_")
    for key, (label, _) in SCHEDULES.items():
        if wanted in (key, label.lower().replace(" ", "_")):
            return key
    raise RequestError("scheduler", f"unknown scheduler {name!r}; valid: {', '.join(SCHEDULES)}")


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, f"must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise RequestError(name, f"must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class GenerationRequest:
    """One image to paint.

    Args:
        prompt (`str`): what the picture shows.
        negative_prompt (`str`, *optional*, defaults to ``""``): what it must not show.
        seed (`int`, *optional*, defaults to -1): -1 picks a random seed, reported in the result.
        steps (`int`, *optional*, defaults to 20): denoising steps, 1..150.
        cfg_scale (`float`, *optional*, defaults to 7.0): classifier-free guidance, 0..30.
        width, height (`int`, *optional*, default 512): multiples of 8 in 64..2048.
        sampler_name (`str`, *optional*, defaults to ``"DPM++ 2M"``): an A1111 sampler name.
        scheduler (`str`, *optional*, defaults to ``"automatic"``): an A1111 schedule type; automatic is the
            sampler's own (Karras for the DPM++ samplers, as in A1111).
        tiling (`bool`, *optional*): paint a seamless, tileable picture (circular padding).
        restore_faces (`bool`, *optional*): accepted for A1111 compatibility; reported as unsupported.
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

    def __post_init__(self) -> None:
        self.check()

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
        for name in ("tiling", "restore_faces"):
            if not isinstance(getattr(self, name), bool):
                raise RequestError(name, f"must be true or false, got {getattr(self, name)!r}")
        canonical = resolve_sampler(self.sampler_name, self.scheduler)
        if canonical != (self.sampler_name, self.scheduler):
            object.__setattr__(self, "sampler_name", canonical[0])
            object.__setattr__(self, "scheduler", canonical[1])

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build a request from a mapping, ignoring keys that are not request fields."""
        if not isinstance(data, dict):
            raise RequestError("body", f"must be an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names and v is not None}
        if "cfg_scale" in values and isinstance(values["cfg_scale"], int) and not isinstance(values["cfg_scale"], bool):
            values["cfg_scale"] = float(values["cfg_scale"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return the request as a plain dict of A1111 field names."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> GenerationRequest:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def batch_key(self) -> tuple:
        """Requests with equal batch keys can run as one batch on one pipeline call."""
        return (self.width, self.height, self.steps, self.cfg_scale, self.sampler_name, self.scheduler, self.tiling)

    def cache_key(self, model: str) -> str:
        """Return the content hash of model + normalized request; equal keys give equal pictures."""
        if self.seed == -1:
            raise RequestError("seed", "a random seed (-1) has no cache key; derive a fixed seed first")
        normal = self.to_dict()
        normal["cfg_scale"] = round(float(normal["cfg_scale"]), 4)
        normal.pop("restore_faces")
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


def encode_image(image: Any, fmt: str = "webp", pnginfo: Any = None) -> bytes:
    """Encode a PIL image; WebP at quality 90, PNG losslessly (with optional text chunks), JPEG at 90."""
    fmt = fmt.lower()
    if fmt not in IMAGE_FORMATS:
        raise RequestError("format", f"unknown image format {fmt!r}; valid: {', '.join(IMAGE_FORMATS)}")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", pnginfo=pnginfo)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=90, method=4)
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def to_data_url(data: bytes, fmt: str) -> str:
    """Wrap encoded image bytes in a ``data:`` URL."""
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode('ascii')}"
