"""A1111's sampler and schedule type names, resolved as A1111 resolves them."""

import pytest

from inference.samplers import resolve_sampler


@pytest.mark.parametrize(
    ("name", "schedule", "expected"),
    [
        ("Euler a", None, ("Euler a", "automatic")),
        ("euler A", None, ("Euler a", "automatic")),
        ("k_dpmpp_2m", "Karras", ("DPM++ 2M", "karras")),
        ("DPM++ 2M Karras", None, ("DPM++ 2M", "karras")),
        ("DPM++ 2M SDE Exponential", None, ("DPM++ 2M SDE", "exponential")),
        ("UniPC", "SGM Uniform", ("UniPC", "sgm_uniform")),
    ],
)
def test_sampler_names_resolve_like_a1111(name, schedule, expected):
    assert resolve_sampler(name, schedule) == expected
