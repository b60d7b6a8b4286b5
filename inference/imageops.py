"""A1111's img2img picture handling with Pillow and numpy (no torch): resize modes, masks, crop boxes, fill, overlay.

Each function follows the A1111 v1.10 function it is named after, so pictures are prepared as A1111 prepares them:
modules/images.py (``resize_image``, ``flatten``, ``fix_png_transparency``), modules/masking.py
(``get_crop_region_v2``, ``expand_crop_region``, ``fill``) and modules/processing.py (``create_binary_mask``, the
mask blur, ``apply_overlay``).  Where A1111 calls OpenCV (the mask's Gaussian blur) the same kernel is computed
here with numpy.  Pure: no torch, no Flask, nothing at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field

import numpy as np
from PIL import Image
from PIL import ImageFilter
from PIL import ImageOps

LANCZOS = Image.Resampling.LANCZOS
Box = tuple[int, int, int, int]


def flatten(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """An RGB picture with any transparency painted over ``background`` (A1111's img2img background, white)."""
    if image.mode in ("RGB", "P") and isinstance(image.info.get("transparency"), bytes):
        image = image.convert("RGBA")  # A1111's fix_png_transparency
    if image.mode in ("P", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        canvas = Image.new("RGBA", image.size, (*background, 255))
        canvas.paste(image, mask=image)
        image = canvas
    return image.convert("RGB")


def resize_image(mode: int, image: Image.Image, width: int, height: int) -> Image.Image:
    """A1111's resize modes with its default img2img upscaler (none: Lanczos): 0 just resize (stretch); 1 crop and
    resize (cover the frame, keep the aspect, crop the excess, centred); 2 resize and fill (fit inside, keep the
    aspect, fill the bars by stretching the picture's edge rows or columns).  A1111 resizes with mode 2's rules for
    any mode above 1 (mode 3, latent upscale, resizes latents instead; see the backend)."""
    if mode == 0:
        return image.resize((width, height), resample=LANCZOS)
    ratio, src_ratio = width / height, image.width / image.height
    if mode == 1:
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
        resized = image.resize((src_w, src_h), resample=LANCZOS)
        result = Image.new(image.mode if image.mode in ("L", "RGBA") else "RGB", (width, height))
        result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return result
    src_w = width if ratio < src_ratio else image.width * height // image.height
    src_h = height if ratio >= src_ratio else image.height * width // image.width
    resized = image.resize((src_w, src_h), resample=LANCZOS)
    result = Image.new(image.mode if image.mode in ("L", "RGBA") else "RGB", (width, height))
    result.paste(resized, box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    if ratio < src_ratio:
        fill_height = height // 2 - src_h // 2
        if fill_height > 0:
            result.paste(resized.resize((width, fill_height), box=(0, 0, width, 0)), box=(0, 0))
            result.paste(resized.resize((width, fill_height), box=(0, resized.height, width, resized.height)),
                         box=(0, fill_height + src_h))
    elif ratio > src_ratio:
        fill_width = width // 2 - src_w // 2
        if fill_width > 0:
            result.paste(resized.resize((fill_width, height), box=(0, 0, 0, height)), box=(0, 0))
            result.paste(resized.resize((fill_width, height), box=(resized.width, 0, resized.width, height)),
                         box=(fill_width + src_w, 0))
    return result


def binary_mask(image: Image.Image, round_alpha: bool = True) -> Image.Image:
    """A mask as A1111 reads one (create_binary_mask): a picture with transparency counts by its alpha (rounded to
    black or white), any other by its grey level."""
    if image.mode in ("P", "LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode == "RGBA" and image.getextrema()[-1] != (255, 255):
        alpha = image.split()[-1].convert("L")
        return alpha.point(lambda x: 255 if x > 128 else 0) if round_alpha else alpha
    return image.convert("L")


def _gaussian_kernel(sigma: float) -> np.ndarray:
    """OpenCV's Gaussian kernel for ``sigma`` with A1111's size, 2 * int(2.5 * sigma + 0.5) + 1 taps."""
    size = 2 * int(2.5 * sigma + 0.5) + 1
    taps = np.arange(size) - (size - 1) / 2
    kernel = np.exp(-(taps**2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def blur_mask(mask: Image.Image, blur_x: float, blur_y: float | None = None) -> Image.Image:
    """A1111's mask blur: OpenCV's GaussianBlur across (sigma ``blur_x``) and then down (``blur_y``), edges reflected
    without repeating the border pixel (OpenCV's default), rounded back to 8 bits after each pass."""
    blur_y = blur_x if blur_y is None else blur_y
    values = np.asarray(mask.convert("L"), dtype=np.float64)
    for axis, sigma in ((1, blur_x), (0, blur_y)):
        if sigma <= 0:
            continue
        kernel = _gaussian_kernel(sigma)
        half = len(kernel) // 2
        pad = [(0, 0), (0, 0)]
        pad[axis] = (half, half)
        padded = np.pad(values, pad, mode="reflect")
        out = np.zeros_like(values)
        length = values.shape[axis]
        for index, weight in enumerate(kernel):
            out += weight * (padded[:, index:index + length] if axis == 1 else padded[index:index + length, :])
        values = np.clip(np.floor(out + 0.5), 0, 255)
    return Image.fromarray(values.astype(np.uint8))


def crop_region(mask: Image.Image, pad: int = 0) -> Box | None:
    """The box around every painted pixel of ``mask``, grown by ``pad`` on each side inside the picture, or None for an
    empty mask (A1111's get_crop_region_v2)."""
    box = mask.getbbox()
    if not box:
        return None
    x1, y1, x2, y2 = box
    return (max(x1 - pad, 0), max(y1 - pad, 0), min(x2 + pad, mask.width), min(y2 + pad, mask.height)) if pad else box


def expand_crop_region(region: Box, width: int, height: int, image_width: int, image_height: int) -> Box:
    """Grow ``region`` to the aspect ratio of the ``width`` x ``height`` it will be painted at, inside the picture
    (A1111's expand_crop_region)."""
    x1, y1, x2, y2 = region
    ratio_crop_region = (x2 - x1) / (y2 - y1)
    ratio_processing = width / height
    if ratio_crop_region > ratio_processing:
        y1, y2 = _widen(y1, y2, (x2 - x1) / ratio_processing, image_height)
    else:
        x1, x2 = _widen(x1, x2, (y2 - y1) * ratio_processing, image_width)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Paint the masked part with the blurred colours around it (A1111's "fill" masked content)."""
    result = Image.new("RGBA", (image.width, image.height))
    masked = Image.new("RGBa", (image.width, image.height))
    masked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    masked = masked.convert("RGBa")
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = masked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


def overlay_layer(image: Image.Image, mask_for_overlay: Image.Image) -> Image.Image:
    """The init picture as a layer that is opaque where the mask leaves it alone: laid over the painted picture, it
    keeps every unmasked pixel as it was (A1111's overlay_images)."""
    if mask_for_overlay.size != image.size:
        mask_for_overlay = resize_image(0, mask_for_overlay, image.width, image.height)
    layer = Image.new("RGBa", (image.width, image.height))
    layer.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask_for_overlay.convert("L")))
    return layer.convert("RGBA")


def apply_overlay(painted: Image.Image, paste_to: Box | None, overlay: Image.Image) -> Image.Image:
    """The painted picture with the init picture's unmasked pixels laid back over it; with ``paste_to`` (x, y,
    width, height: "only masked" painting), the painted box is first scaled into its place on the init picture."""
    if paste_to is not None:
        x, y, width, height = paste_to
        base = Image.new("RGBA", (overlay.width, overlay.height))
        base.paste(resize_image(1, painted, width, height), (x, y))
        painted = base
    painted = painted.convert("RGBA")
    painted.alpha_composite(overlay)
    return painted.convert("RGB")


def latent_mask(mask: Image.Image, width: int, height: int, round_mask: bool = True) -> np.ndarray:
    """The mask at latent size (``width`` x ``height``), 0..1 (rounded to 0 or 1, as A1111 does by default)."""
    small = mask.convert("RGB").resize((width, height))  # Pillow's default filter, as in A1111
    values = np.asarray(small, dtype=np.float32)[:, :, 0] / 255
    return np.around(values) if round_mask else values


def scaled_size(width: int, height: int, factor: int) -> tuple[int, int]:
    """``width`` x ``height`` rounded down to multiples of ``factor`` (a VAE's scale), at least ``factor``."""
    return max(factor, width // factor * factor), max(factor, height // factor * factor)


@dataclass
class Img2ImgInput:
    """An init picture prepared for painting at ``width`` x ``height`` (see `prepare_img2img`).

    Args:
        image (`PIL.Image.Image`): what the VAE encodes: RGB at width x height, or the init picture at its own size
            for latent upscale (resize mode 3), whose latents are then resized.
        latent_upscale (`bool`): resize the latents, not the picture.
        mask (`PIL.Image.Image`, *optional*): the part to paint, "L" at width x height (inverted and blurred as
            asked): the latent mask comes from it.
        overlay (`PIL.Image.Image`, *optional*): the init picture's pixels to lay back over the painted picture.
        paste_to (`tuple`, *optional*): (x, y, width, height) on the init picture where an "only masked" picture goes.
        notes (`list`): what was done differently from what was asked, in words.
    """

    image: Image.Image
    latent_upscale: bool = False
    mask: Image.Image | None = None
    overlay: Image.Image | None = None
    paste_to: Box | None = None
    notes: list[str] = field(default_factory=list)


def prepare_img2img(source: Image.Image, mask: Image.Image | None, width: int, height: int, resize_mode: int = 0,
                    mask_blur: int = 4, inpainting_fill: int = 0, inpaint_full_res: bool = True,
                    inpaint_full_res_padding: int = 0, inpainting_mask_invert: int = 0) -> Img2ImgInput:
    """Prepare an init picture (and mask) as A1111's StableDiffusionProcessingImg2Img.init does, in its order:
    flatten transparency onto white; read the mask (alpha or grey), invert and blur it; for "only masked", crop the
    mask's box plus padding (grown to the painting's aspect) from picture and mask and paint it at full size, else
    resize both with ``resize_mode``; keep the unmasked pixels as an overlay; with ``inpainting_fill`` 0, fill the
    masked part with the colours around it.  A mask of another size than the picture is first stretched to it."""
    image = flatten(source)
    notes: list[str] = []
    painted: Image.Image | None = None
    overlay_mask: Image.Image | None = None
    region: Box | None = None
    paste_to: Box | None = None
    if mask is not None:
        painted = binary_mask(mask)
        if painted.size != image.size:
            painted = resize_image(0, painted, image.width, image.height)
            notes.append(f"mask resized from {mask.width}x{mask.height} to the init picture's "
                         f"{image.width}x{image.height}")
        if inpainting_mask_invert:
            painted = ImageOps.invert(painted)
        if mask_blur > 0:
            painted = blur_mask(painted, mask_blur)
        if inpaint_full_res:
            region = crop_region(painted, inpaint_full_res_padding)
            if region is None:
                notes.append("the mask is empty, so the whole picture was painted as img2img (as A1111 does)")
                painted = None
            else:
                overlay_mask = painted
                region = expand_crop_region(region, width, height, painted.width, painted.height)
                x1, y1, x2, y2 = region
                painted = resize_image(2, painted.crop(region), width, height)
                paste_to = (x1, y1, x2 - x1, y2 - y1)
        else:
            # A1111 resizes the mask with resize-and-fill rules in mode 3 while it stretches the latents; stretching
            # the mask too keeps it on the part it marks
            painted = resize_image(resize_mode if resize_mode < 3 else 0, painted, width, height)
            overlay_mask = Image.fromarray(np.clip(np.asarray(painted, dtype=np.float32) * 2, 0, 255).astype(np.uint8))
    latent_upscale = region is None and resize_mode == 3
    if region is None and not latent_upscale:
        image = resize_image(resize_mode, image, width, height)
    overlay = None
    if painted is not None and overlay_mask is not None:
        base = resize_image(0, image, width, height) if latent_upscale and image.size != (width, height) else image
        overlay = overlay_layer(base, overlay_mask)
    if region is not None:
        image = resize_image(2, image.crop(region), width, height)
    if painted is not None and inpainting_fill != 1:
        image = fill(image, painted if painted.size == image.size else resize_image(0, painted, *image.size))
    return Img2ImgInput(image, latent_upscale, painted, overlay, paste_to, notes)


def _widen(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    """One axis of A1111's expand_crop_region: grow [low, high) about its centre to ``wanted``, shifted back
    inside [0, limit) and cut to it."""
    grow = int(wanted - (high - low))
    low, high = low - grow // 2, high + grow - grow // 2
    if high >= limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)
