"""Pictures as bytes: the bounds a picture sent with a request is checked against (bytes, format, pixels), read
from its header without decoding (`picture_header`), decoded where it is painted (`load_picture`), taken from base64
text (`decode_base64_picture`), and painted pictures encoded for the browser or the API (`encode_image`,
`to_data_url`).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

from inference.errors import RequestError

# A picture's sides in pixels: what a request may paint (width, height) and, squared, what a picture it carries may
# hold.
MIN_SIZE, MAX_SIZE = 64, 2048
IMAGE_FORMATS = ("webp", "png", "jpeg")  # what a painted picture is encoded in (`encode_image`)
# zlib level of every PNG we make (the cache's, the API's): a painted 512x512 picture is done 30 ms after the model,
# not 115 ms as at Pillow's default 6, for an 18% bigger file (bench/finish.py, 2-core CPU)
PNG_LEVEL = 1
# img2img: the pictures a request may carry (init image, mask), as encoded bytes.  Their size is checked when the
# request is built (bytes and the header's pixel count, cheap); the pixels are decoded only where they are painted.
MAX_PICTURE_BYTES = 16 * 1024 * 1024
MAX_PICTURE_PIXELS = MAX_SIZE * MAX_SIZE
PICTURE_FORMATS = {"PNG": "png", "WEBP": "webp", "JPEG": "jpeg", "MPO": "jpeg"}  # MPO: a phone camera's JPEG


def picture_header(data: Any, name: str) -> tuple[str, int, int]:
    """Check encoded picture bytes without decoding their pixels: size in bytes, format (PNG, WebP or JPEG) and pixel
    count from the header.  Return (format, width, height); raise `RequestError` naming ``name`` otherwise."""
    if not isinstance(data, bytes):
        raise RequestError(name, f"must be the bytes of a PNG, WebP or JPEG picture, got {type(data).__name__}")
    if len(data) > MAX_PICTURE_BYTES:
        raise RequestError(name, f"is {len(data)} bytes; at most {MAX_PICTURE_BYTES} ({MAX_PICTURE_BYTES >> 20} MB) "
                                 "allowed")
    from PIL import Image
    from PIL import UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format or "", image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise RequestError(name, f"is not a picture Pillow can read ({type(exc).__name__}); send a PNG, WebP or "
                                 "JPEG") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - larger than our own bound below
        raise RequestError(name, str(exc)) from None
    if kind not in PICTURE_FORMATS:
        raise RequestError(name, f"is a {kind or 'unknown'} picture; send a PNG, WebP or JPEG")
    if width * height > MAX_PICTURE_PIXELS or not width or not height:
        raise RequestError(name, f"is {width}x{height} pixels; at most {MAX_PICTURE_PIXELS} pixels "
                                 f"({MAX_SIZE}x{MAX_SIZE}) allowed")
    return PICTURE_FORMATS[kind], width, height


def load_picture(data: bytes, name: str) -> Any:
    """Decode checked picture bytes into a PIL image, as A1111 reads them (EXIF rotation applied); a truncated or
    corrupt file raises `RequestError` naming ``name``."""
    from PIL import Image
    from PIL import ImageOps

    picture_header(data, name)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError) as exc:
        raise RequestError(name, f"cannot be decoded: {str(exc)[:200]}") from None


def decode_base64_picture(text: Any, name: str) -> bytes:
    """The picture bytes in base64 text, with or without a ``data:image/...;base64,`` prefix (as A1111 accepts them);
    whitespace and missing padding are tolerated.  Raise `RequestError` naming ``name`` when it is not base64 or
    too large (the picture itself is checked by `picture_header`)."""
    if isinstance(text, bytes):
        return text
    if not isinstance(text, str):
        raise RequestError(name, f"must be a base64 string, got {type(text).__name__}")
    if text.startswith("data:"):
        header, sep, text = text.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestError(name, "a data: URL must read data:image/<type>;base64,<data>")
    if len(text) > (MAX_PICTURE_BYTES // 3 + 1) * 4 * 105 // 100:  # base64 of the largest picture, with line breaks
        raise RequestError(name, f"is {len(text)} characters of base64; pictures of at most {MAX_PICTURE_BYTES} "
                                 "bytes allowed")
    compact = "".join(text.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(name, "is not valid base64") from None


def encode_image(image: Any, fmt: str = "webp", pnginfo: Any = None) -> bytes:
    """Encode a PIL image; WebP at quality 90, PNG losslessly at zlib level `PNG_LEVEL` (with optional text
    chunks), JPEG at 90."""
    fmt = fmt.lower()
    if fmt not in IMAGE_FORMATS:
        raise RequestError("format", f"unknown image format {fmt!r}; valid: {', '.join(IMAGE_FORMATS)}")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=PNG_LEVEL)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=90, method=4)
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def to_data_url(data: bytes, fmt: str) -> str:
    """Wrap encoded image bytes in a ``data:`` URL."""
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode('ascii')}"
