"""The backend switch and shared helpers."""

import pytest

from inference.backend import BackendSettings
from inference.backend import create_backend
from inference.backend import scale_to_fit


def test_create_backend_builds_the_diffusers_backend_without_loading_it():
    backend = create_backend(BackendSettings(model="/nowhere", device="cpu"))
    assert backend.status().state == "loading"
    assert backend.count_tokens("x") is None


def test_unknown_backend_kind_is_named():
    with pytest.raises(ValueError, match="unknown kind 'magic'; valid: diffusers"):
        create_backend(BackendSettings(kind="magic"))


@pytest.mark.parametrize(
    ("size", "limit", "expected"),
    [
        ((512, 512), 0, (512, 512)),
        ((512, 512), 64, (64, 64)),
        ((512, 768), 64, (64, 96)),
        ((64, 128), 64, (64, 128)),
        ((768, 512), 256, (256, 168)),
        ((64, 64), 256, (64, 64)),
    ],
)
def test_scale_to_fit_keeps_multiples_of_8(size, limit, expected):
    assert scale_to_fit(*size, limit) == expected
