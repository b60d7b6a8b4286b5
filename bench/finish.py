"""From a painted picture to a finished job: the generation service's own time per picture (issue 14's "spent
outside the networks"), measured through the real service on this machine.

A painter that hands back ready-made pictures at once (a bench stand-in for the model, so that only the service's
work is timed: PNG for the cache, the cache write, waking the waiting players) paints 512x512 pictures with the
spectrum of natural pictures (1/f colour fields: random-weight models paint noise, which compresses unlike a real
picture).  For a batch of 1 and of 4 it prints the time from the painter's return to the first and the last job
being done, with the cache's PNG at zlib level 6 (Pillow's default, what the service used until 2026-11-26) and 1
(`inference.pictures.PNG_LEVEL`, what it uses now), and the PNG's size.

    python -m bench.finish [--size 512] [--repeats 7]

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inference import pictures
from inference.backend import READY
from inference.backend import BackendStatus
from inference.cache import ImageCache
from inference.jobs import PLAYER
from inference.request import GenerationRequest
from inference.request import GenerationResult
from inference.service import GenerationService


def natural_picture(size: int, seed: int) -> Image.Image:
    """A colour field whose spectrum falls as 1/f^1.6, as natural pictures' does."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    falloff = np.hypot(fx, fy)
    falloff[0, 0] = 1.0
    channels = []
    for _ in range(3):
        field = np.real(np.fft.ifft2((rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size)))
                                     / falloff**1.6))
        channels.append((field - field.mean()) / field.std())
    return Image.fromarray(np.clip(np.stack(channels, -1) * 45 + 128, 0, 255).astype(np.uint8))


class ReadyPictures:
    """Bench stand-in for the model: returns the given pictures at once and notes when it returned."""

    def __init__(self, images: list[Image.Image]):
        self.images = images
        self.returned = 0.0

    def start(self) -> None:
        pass

    def status(self) -> BackendStatus:
        return BackendStatus(READY, "ready")

    def count_tokens(self, text: str) -> int | None:
        return None

    def identity(self, memo_folder: Any = None) -> str:
        return "ready-pictures"

    def generate(self, requests: list[GenerationRequest], on_step: Any = None) -> list[GenerationResult]:
        results = [GenerationResult(self.images[i % len(self.images)], r.seed, r) for i, r in enumerate(requests)]
        self.returned = time.perf_counter()
        return results

    def close(self) -> None:
        pass


def finish_times(images: list[Image.Image], batch: int, workdir: Path, run: int) -> list[float]:
    """Seconds from the painter's return to each of ``batch`` jobs being done."""
    painter = ReadyPictures(images)
    cache = ImageCache(workdir / f"cache-{pictures.PNG_LEVEL}-{batch}-{run}")
    service = GenerationService(painter, cache, model="bench", max_batch=batch, gather=0.5)
    service.start()
    try:
        requests = [GenerationRequest(prompt=f"picture {run}-{i}", seed=i, width=images[0].width,
                                      height=images[0].height, steps=1) for i in range(batch)]
        keys = [service.submit(request, PLAYER).key for request in requests]
        done: list[float] = []
        lock = threading.Lock()

        def follow(key: str) -> None:
            service.wait(key, 120)
            with lock:
                done.append(time.perf_counter())

        threads = [threading.Thread(target=follow, args=(key,)) for key in keys]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sorted(moment - painter.returned for moment in done)
    finally:
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    images = [natural_picture(args.size, seed) for seed in range(4)]
    import PIL

    print(f"machine: {platform.node()}: {os.cpu_count()} CPU cores, {platform.machine()}, Python "
          f"{platform.python_version()}, Pillow {PIL.__version__}; {args.size}x{args.size} pictures, median of "
          f"{args.repeats} runs")
    print("| PNG level | batch | first done ms | last done ms | PNG KB |")
    print("|---|---|---|---|---|")
    level_before = pictures.PNG_LEVEL
    with tempfile.TemporaryDirectory() as folder:
        for level in (6, 1):
            pictures.PNG_LEVEL = level
            size = len(pictures.encode_image(images[0], "png")) // 1024
            for batch in (1, 4):
                runs = [finish_times(images, batch, Path(folder), run) for run in range(args.repeats)]
                first = statistics.median(r[0] for r in runs) * 1000
                last = statistics.median(r[-1] for r in runs) * 1000
                print(f"| {level} | {batch} | {first:.1f} | {last:.1f} | {size} |")
    pictures.PNG_LEVEL = level_before


if __name__ == "__main__":
    main()
