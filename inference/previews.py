"""Live previews: a cheap latent -> RGB projection of the current latents, as a small JPEG.

SD 2.x latents project to colours with a 4x3 linear map; the coefficients are A1111's "Approx cheap" ones
(modules/sd_vae_approx.py), applied to model-space latents, giving values in about [-1, 1].  It costs well under
a millisecond at 64x64 latents, so a preview every step or two is free next to a UNet step.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING
from typing import Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from inference.request import GenerationRequest

SD2_LATENT_RGB = np.array(
    [
        [0.298, 0.207, 0.208],
        [0.187, 0.286, 0.173],
        [-0.158, 0.189, 0.264],
        [-0.184, -0.271, -0.473],
    ],
    dtype=np.float32,
)


def latents_to_rgb(latents: np.ndarray) -> np.ndarray:
    """Project one latent (4, h, w) to an RGB uint8 array (h, w, 3)."""
    if latents.ndim != 3 or latents.shape[0] != 4:
        raise ValueError(f"latents: expected shape (4, h, w), got {latents.shape}")
    rgb = np.einsum("chw,cr->hwr", latents.astype(np.float32), SD2_LATENT_RGB)
    return np.clip((rgb + 1.0) * 127.5, 0, 255).astype(np.uint8)


def preview_jpeg(latents: np.ndarray, width: int, height: int, longest: int = 256, quality: int = 70) -> bytes:
    """Return a JPEG preview of one latent, scaled to the picture's aspect with its longer side ``longest``."""
    scale = longest / max(width, height)
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    image = Image.fromarray(latents_to_rgb(latents)).resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def wants_preview(step: int, total: int, every: int) -> bool:
    """Whether a batch shows a preview at this step: every ``every`` steps and the first, never the last (the
    picture itself comes then); 0 = never.  The one rule for the service's painter and painter processes."""
    return bool(every) and (step % every == 0 or step == 1) and step < total


def preview_frames(requests: Sequence[GenerationRequest], frames: Sequence[Any]) -> list[bytes | None]:
    """Each picture's preview as JPEG bytes: latents drawn at the request's aspect, a picture a remote server sent
    (bytes already) passed on as it is, None where there is none."""
    return [frame if frame is None or isinstance(frame, bytes) else preview_jpeg(frame, request.width, request.height)
            for request, frame in zip(requests, frames, strict=False)]
