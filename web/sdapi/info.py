"""/png-info: the infotext a picture carries, read from its metadata without decoding its pixels."""

from __future__ import annotations

import io
from typing import Any

from flask import jsonify
from flask import request
from flask.typing import ResponseReturnValue
from PIL import Image

from inference import infotext as a1111
from inference.errors import RequestError
from inference.pictures import MAX_PICTURE_BYTES
from inference.pictures import decode_base64_picture
from inference.sdapi_models import BodyError
from inference.sdapi_models import PngInfoRequest
from inference.sdapi_models import parse
from web.sdapi.common import ApiError
from web.sdapi.common import bp
from web.sdapi.common import field_error
from web.sdapi.common import read_body

# png-info's body: one picture of at most 16 MB, in base64 (4/3 as long); the other routes keep the app's 1 MB.
MAX_PNG_INFO_BODY = 24 * 1024 * 1024


def open_for_info(text: str) -> Any:
    """A picture opened for its metadata only: the header and the chunks before the pixels, never the pixels (so a
    picture of any size can be read, and none is decoded)."""
    try:
        data = decode_base64_picture(text, "image")
        if len(data) > MAX_PICTURE_BYTES:
            raise RequestError("image", f"is {len(data)} bytes; at most {MAX_PICTURE_BYTES} allowed")
        try:
            return Image.open(io.BytesIO(data))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise RequestError("image", f"is not a picture Pillow can read ({type(exc).__name__})") from None
    except RequestError as exc:
        raise field_error(["body", "image"], exc.message, "value_error.picture") from None


@bp.post("/png-info")
def png_info() -> ResponseReturnValue:
    """The infotext a picture carries (ours or A1111's: a PNG's "parameters" chunk, a JPEG's or WebP's EXIF
    comment), its other info items, and the fields A1111 reads from the infotext."""
    request.max_content_length = MAX_PNG_INFO_BODY
    try:
        text = parse(PngInfoRequest, read_body()).image.strip()
    except BodyError as exc:
        raise ApiError(422, exc.detail) from None
    if not text:
        return jsonify({"info": "", "items": {}, "parameters": {}})
    image = open_for_info(text)
    geninfo, items = a1111.read_info(image)
    geninfo = geninfo or ""
    return jsonify({"info": geninfo, "items": items, "parameters": a1111.parse_generation_parameters(geninfo)})
