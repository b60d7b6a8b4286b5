"""Pictures as browsers get them: each painted picture is encoded once per format, not once per view.

Re-encoding a 512x512 PNG to WebP costs ~30 ms, and a painted slide is shown again and again (every player, every
back and reload), so the encodings of the most recently shown pictures are kept, in a bounded memo.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

FORMATS = ("webp", "png", "jpeg")


class BrowserEncodings:
    """A bounded memo of encoded pictures by (key, format).

    Args:
        keep (`int`, *optional*, defaults to 128): encodings kept in memory (~50 KB each as WebP)...
        keep_bytes (`int`, *optional*, defaults to 16 MB): ...holding at most this many bytes.
    """

    def __init__(self, keep: int = 128, keep_bytes: int = 16 * 1024 * 1024):
        self.keep = keep
        self.keep_bytes = keep_bytes
        self.bytes = 0
        self._memo: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._memo)

    def stats(self) -> dict[str, int]:
        """How many encodings are kept, and their bytes."""
        with self._lock:
            return {"entries": len(self._memo), "bytes": self.bytes}

    def get(self, key: str, png: bytes, fmt: str) -> bytes:
        """The picture ``png`` (cached under ``key``) in ``fmt``, encoded at most once while it stays in the memo."""
        if fmt == "png":
            return png
        with self._lock:
            if (key, fmt) in self._memo:
                self._memo.move_to_end((key, fmt))
                return self._memo[(key, fmt)]
        data = png_to(png, fmt)
        with self._lock:
            if (key, fmt) not in self._memo:
                self._memo[(key, fmt)] = data
                self.bytes += len(data)
            while self._memo and (len(self._memo) > self.keep or self.bytes > self.keep_bytes):
                self.bytes -= len(self._memo.popitem(last=False)[1])
        return data


def png_to(png: bytes, fmt: str) -> bytes:
    """Re-encode a cached PNG for the browser (WebP by default)."""
    if fmt == "png":
        return png
    from PIL import Image

    from inference.request import encode_image

    return encode_image(Image.open(io.BytesIO(png)), fmt)
