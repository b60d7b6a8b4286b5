"""A content-addressed picture store on disk: PNG files named by their request's cache key, size-capped.

Each entry is ``<key[:2]>/<key>.png`` (lossless, so a cached picture has exactly the pixels a fresh one would)
beside ``<key>.json`` (seed, info, seconds).  Reading an entry touches its modification time; when the store
grows past its cap the least recently used entries go first.  The index is rebuilt from the folder at start,
so the cache survives restarts.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedImage:
    key: str
    png: bytes
    meta: dict[str, Any]


class ImageCache:
    """Pictures by cache key, at most ``max_bytes`` on disk (0 = unlimited)."""

    def __init__(self, folder: str | Path, max_bytes: int = 2 * 1024**3):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, float]] = {}  # key -> (bytes on disk, last use)
        self.folder.mkdir(parents=True, exist_ok=True)
        for png in self.folder.glob("??/*.png"):
            meta = png.with_suffix(".json")
            try:
                size = png.stat().st_size + (meta.stat().st_size if meta.exists() else 0)
                self._index[png.stem] = (size, png.stat().st_mtime)
            except FileNotFoundError:
                continue

    def _paths(self, key: str) -> tuple[Path, Path]:
        if not key.isalnum():
            raise ValueError(f"cache key: expected a hex digest, got {key[:80]!r}")
        base = self.folder / key[:2] / key
        return base.with_suffix(".png"), base.with_suffix(".json")

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def total_bytes(self) -> int:
        return sum(size for size, _ in self._index.values())

    def get(self, key: str) -> CachedImage | None:
        """Return the entry and mark it as just used; None when absent."""
        png_path, meta_path = self._paths(key)
        try:
            png = png_path.read_bytes()
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        except (FileNotFoundError, json.JSONDecodeError):
            with self._lock:
                self._index.pop(key, None)
            return None
        now = time.time()
        try:
            os.utime(png_path, (now, now))
        except FileNotFoundError:
            pass
        with self._lock:
            if key in self._index:
                self._index[key] = (self._index[key][0], now)
        return CachedImage(key, png, meta)

    def put(self, key: str, png: bytes, meta: dict[str, Any]) -> None:
        """Store an entry atomically (temp file + rename), then evict the least recently used past the cap."""
        png_path, meta_path = self._paths(key)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        for path, data in ((meta_path, meta_bytes), (png_path, png)):
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        with self._lock:
            self._index[key] = (len(png) + len(meta_bytes), time.time())
        self._evict()

    def _evict(self) -> None:
        if not self.max_bytes:
            return
        with self._lock:
            total = sum(size for size, _ in self._index.values())
            victims = []
            for key, (size, _) in sorted(self._index.items(), key=lambda item: item[1][1]):
                if total <= self.max_bytes:
                    break
                victims.append(key)
                total -= size
            for key in victims:
                del self._index[key]
        for key in victims:
            for path in self._paths(key):
                path.unlink(missing_ok=True)
            log.debug("cache: evicted %s", key)
