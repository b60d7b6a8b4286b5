"""The front page with many stories: how long does the shelf take to answer, and its covers?

Builds the app (Flask's test client, the in-process diffusers backend) on a folder of the shipped stories plus
``--stories`` small ones (1 step each, so the covers paint quickly), then measures: the first view of the shelf
(every cover to paint: each story composed, the first 8 asked for), the shelf once every cover is painted, each
cover's first fetch (the picture read from the disk cache and made small) and its fetch from the memo, and the
cost of making a 512x512 picture into a 320 px WebP cover (random noise: the worst case for the encoder).

    python -m bench.shelf                     # tiny random SD2 pipeline on this machine (CPU)
    python -m bench.shelf --stories 200

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stories", type=int, default=48, help="small stories beside the shipped ones")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from app import create_app
    from inference.diffusers_backend import DiffusersBackend
    from inference.encodings import png_to
    from tests.tiny_pipeline import build_tiny_pipeline

    work = Path(tempfile.mkdtemp(prefix="shelf-bench-"))
    try:
        backend = DiffusersBackend(str(build_tiny_pipeline(work / "model")), device="cpu", max_size=64)
        backend.start()
        backend.wait(300)
        stories = work / "stories"
        stories.mkdir()
        for path in (ROOT / "stories").glob("*.yaml"):
            shutil.copy(path, stories)
        for n in range(args.stories):
            (stories / f"book{n:03d}.yaml").write_text(
                f"title: Book {n:03d}\ndescription: A tale of {n}.\nstart: a\n"
                f"style: {{steps: 1, prompt: 'oil painting, moody light, detailed'}}\n"
                f"slides:\n  a:\n    text: Page one.\n    image: a lantern number {n}, a shore at dawn\n")
        app = create_app({"TESTING": True, "STORIES": str(stories), "INSTANCE": str(work / "instance"),
                          "BACKEND_INSTANCE": backend, "MAX_SIZE": 64, "PREFETCH_DEPTH": 1})
        client, images = app.test_client(), app.extensions["images"]
        app.extensions["stories"].entries()  # the story files parsed once, as a running server has them

        def timed(path: str) -> tuple[bytes, float]:
            started = time.perf_counter()
            data = client.get(path).data
            return data, (time.perf_counter() - started) * 1000

        total = args.stories + len(list((ROOT / "stories").glob("*.yaml")))
        page, ms = timed("/")
        print(f"shelf of {total}, no cover painted yet (each composed, 8 asked for): {ms:.1f} ms, {len(page)} bytes")
        while True:
            html = client.get("/").get_data(as_text=True)
            while images.stats()["queued"] or images.stats()["running"]:
                time.sleep(0.1)
            if "cover blank" not in html:
                break
        times = [timed("/")[1] for _ in range(20)]
        page = client.get("/").data
        print(f"shelf of {total}, every cover painted: median {statistics.median(times):.1f} ms, "
              f"max {max(times):.1f} ms, {len(page)} bytes")
        sources = [s.replace("&amp;", "&") for s in re.findall(r'<img src="([^"]+)"', page.decode())]
        first = [timed(s)[1] for s in sources]
        again = [timed(s)[1] for s in sources]
        print(f"a cover, first fetch (picture read, made small): median {statistics.median(first):.2f} ms; "
              f"from the memo: median {statistics.median(again):.2f} ms")
        noise = io.BytesIO()
        pixels = (np.random.default_rng(0).random((512, 512, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(noise, "PNG")
        made = []
        for _ in range(10):
            started = time.perf_counter()
            cover = png_to(noise.getvalue(), "webp", 320)
            made.append((time.perf_counter() - started) * 1000)
        print(f"512x512 picture (noise) made into a 320 px WebP cover: median {statistics.median(made):.1f} ms, "
              f"{len(cover)} bytes (the whole picture as WebP: {len(png_to(noise.getvalue(), 'webp'))} bytes)")
        images.close()
        backend.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
