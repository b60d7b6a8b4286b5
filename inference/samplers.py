"""A1111's sampler and schedule type names, and the diffusers schedulers that stand in for them.

`SAMPLERS` and `SCHEDULES` are the tables (the admin's choices, /sdapi/v1/samplers and /schedulers, the diffusers
backend's scheduler); `resolve_sampler` and `resolve_schedule` turn any name A1111 accepts into the canonical one, and
`effective_schedule` says what "automatic" means for a sampler.
"""

from __future__ import annotations

from typing import Any

from inference.errors import RequestError

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
