"""Pictures as browsers get them: each painted picture is encoded once per format (and size), not once per view.

Re-encoding a 512x512 PNG to WebP costs ~30 ms, and a painted slide is shown again and again (every player, every
back and reload), so the encodings of the most recently shown pictures are kept, in a bounded memo.  A picture just
painted is encoded for the pages before anyone asks (`EncodeAhead`, one thread fed by the generation service), so
the first player to see it does not pay for the encoding either.  The story covers of the front page are small
copies (``width``) of the start slides' pictures, made the same way.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from collections import deque

log = logging.getLogger(__name__)

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
        self.made = 0  # encodings made (each is kept while it stays in the memo)
        self._memo: OrderedDict[tuple[str, str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._memo)

    def stats(self) -> dict[str, int]:
        """How many encodings are kept, their bytes, and how many were made in all."""
        with self._lock:
            return {"entries": len(self._memo), "bytes": self.bytes, "made": self.made}

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
            self.made += 1
            if (key, fmt, width) not in self._memo:
                self._memo[(key, fmt, width)] = data
                self.bytes += len(data)
            while self._memo and (len(self._memo) > self.keep or self.bytes > self.keep_bytes):
                self.bytes -= len(self._memo.popitem(last=False)[1])
        return data



class EncodeAhead:
    """Encodes each newly painted picture in the format pages get, on one thread, before any view asks for it.

    The generation service offers every picture it paints (`offer`); the thread puts its encoding in ``encodings``,
    where the page, the picture stream and the image route then find it.  Bounded: at most ``limit`` pictures wait;
    past that a picture is left to its first view, which encodes it as it would without this.  The thread starts
    with the first picture and ends with `close` (the service's).

    Args:
        encodings (`BrowserEncodings`): the memo the pages read.
        fmt (`str`): the format pages get (webp, png or jpeg); PNG needs no encoding (pages get the PNG itself).
        limit (`int`, *optional*, defaults to 16): pictures waiting to be encoded, at most.
    """

    def __init__(self, encodings: BrowserEncodings, fmt: str, limit: int = 16):
        self.encodings = encodings
        self.fmt = fmt
        self.limit = limit
        self.encoded = 0
        self.dropped = 0
        self._waiting: deque[tuple[str, bytes]] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def offer(self, key: str, png: bytes) -> bool:
        """Have the picture ``png`` (cached under ``key``) encoded soon, without waiting for it; False when it is
        not taken (the format is PNG, too many wait, or closed)."""
        if self.fmt == "png":
            return False
        with self._cond:
            if self._closed:
                return False
            if len(self._waiting) >= self.limit:
                self.dropped += 1
                return False
            self._waiting.append((key, png))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="encode-ahead", daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def stats(self) -> dict[str, int]:
        """Pictures waiting, encoded ahead, and left to their first view because too many waited."""
        with self._cond:
            return {"waiting": len(self._waiting), "encoded": self.encoded, "dropped": self.dropped}

    def close(self, timeout: float = 10.0) -> None:
        """Drop what waits and end the thread (after the picture it is encoding, waiting at most ``timeout`` s)."""
        with self._cond:
            self._closed = True
            self._waiting.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                key, png = self._waiting.popleft()
            if self.encodings.find(key, self.fmt) is not None:
                continue  # a view was quicker
            try:
                self.encodings.get(key, png, self.fmt)
            except Exception:  # a picture that cannot be encoded fails again, and is told, when a view asks
                log.warning("encoding picture %s ahead failed", key, exc_info=True)
                continue
            with self._cond:
                self.encoded += 1

def png_to(png: bytes, fmt: str, width: int = 0) -> bytes:
    """Re-encode a cached PNG for the browser (WebP by default), at most ``width`` pixels wide when given."""
    if fmt == "png" and not width:
        return png
    from PIL import Image

    from inference.pictures import encode_image

    image: Image.Image = Image.open(io.BytesIO(png))
    if width and image.width > width:
        image = image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS)
    return encode_image(image, fmt)
