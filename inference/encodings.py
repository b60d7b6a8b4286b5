"""Pictures as browsers get them: each painted picture is encoded once per format (and size), not once per view.

Re-encoding a 512x512 PNG to WebP costs ~30 ms, and a painted slide is shown again and again (every player, every
back and reload), so the encodings of the most recently shown pictures are kept, in a bounded memo.  The story
covers of the front page are small copies (``width``) of the start slides' pictures, made the same way.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

FORMATS = ("webp", "png", "jpeg")


class BrowserEncodings:
    """A bounded memo of encoded pictures by (key, format, width).

    Args:
        keep (`int`, *optional*, defaults to 128): encodings kept in memory (~50 KB each as WebP)...
        keep_bytes (`int`, *optional*, defaults to 16 MB): ...holding at most this many bytes.
    """

    def __init__(self, keep: int = 128, keep_bytes: int = 16 * 1024 * 1024):
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.bytes = 0
        self._memo: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._memo)

    def stats(self) -> dict[str, int]:
        """How many encodings are kept, and their bytes."""
        with self._lock:
            return {"entries": len(self._memo), "bytes": self.bytes}

    def find(self, key: str, fmt: str, width: int = 0) -> bytes | None:
        """The encoding kept for ``key`` in ``fmt`` (at most ``width`` pixels wide), or None: the picture itself is
        then not needed to answer."""
        with self._lock:
            data = self._memo.get((key, fmt, width))
            if data is not None:
                self._memo.move_to_end((key, fmt, width))
            return data

    def get(self, key: str, png: bytes, fmt: str, width: int = 0) -> bytes:
        """The picture ``png`` (cached under ``key``) in ``fmt``, encoded at most once while it stays in the memo;
        with ``width``, scaled down to at most that many pixels wide (never up), keeping its proportions."""
        if fmt == "png" and not width:
            return png
        kept = self.find(key, fmt, width)
        if kept is not None:
            return kept
        data = png_to(png, fmt, width)
        with self._lock:
            if (key, fmt, width) not in self._memo:
                self._memo[(key, fmt, width)] = data
                self.bytes += len(data)
            while self._memo and (len(self._memo) > self.keep or self.bytes > self.keep_bytes):
                self.bytes -= len(self._memo.popitem(last=False)[1])
        return data


def png_to(png: bytes, fmt: str, width: int = 0) -> bytes:
    """Re-encode a cached PNG for the browser (WebP by default), at most ``width`` pixels wide when given."""
    if fmt == "png" and not width:
        return png
    from PIL import Image

    from inference.request import encode_image

    image: Image.Image = Image.open(io.BytesIO(png))
    if width and image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
    return encode_image(image, fmt)
