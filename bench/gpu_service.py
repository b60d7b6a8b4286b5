"""bench/gpu.py's service group: what a player gets, through Lanternslide's own backend and generation service at
one --optimize level, as a row of the Bench (bench/gpu_core.py) it is given."""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from bench.gpu_core import NEGATIVE
from bench.gpu_core import PROMPT
from bench.gpu_core import Bench
from inference.encodings import BrowserEncodings
from inference.encodings import EncodeAhead

ENCODINGS = BrowserEncodings()  # the web process's memo of browser encodings, as the pages use it


def service_row(bench: Bench, model: str, size: int, steps: int, level: str) -> None:
    """Lanternslide's own path at one --optimize level: DiffusersBackend + GenerationService + cache, previews
    every 2 steps, pictures asked for by player threads the way slide streams ask."""
    from inference.cache import ImageCache
    from inference.diffusers_backend import DiffusersBackend
    from inference.request import GenerationRequest
    from inference.service import GenerationService

    folder = bench.workdir / f"{model}-folder"
    if not folder.exists():
        pipe = bench.build(model)
        pipe.save_pretrained(str(folder))
        del pipe
        bench.release()
    seeds = iter(range(10_000, 1_000_000))
    started = time.perf_counter()
    backend = DiffusersBackend(str(folder), device=bench.device, dtype=bench.args.dtype, optimize=level,
                               compile_cache=str(bench.workdir / "inductor"), warmup=[(size, size, False)])
    backend.start()
    status = backend.wait()
    ready = time.perf_counter() - started
    if not status.ready:
        raise RuntimeError(f"{status.message} {status.hint}")
    bench.note(f"service --optimize {level}: {status.message} (ready after {ready:.0f} s, warm-up included)")
    service = GenerationService(backend, ImageCache(bench.workdir / f"cache-{level}"), model=model,
                                max_batch=bench.args.batch, preview_every=2,
                                encode_ahead=EncodeAhead(ENCODINGS, "webp"))  # as the game's pages have it
    service.start()
    try:
        def requests(count: int) -> list:
            return [GenerationRequest(PROMPT, NEGATIVE, seed=next(seeds), steps=steps, width=size, height=size,
                                      cfg_scale=7, sampler_name="DPM++ 2M", scheduler="karras")
                    for _ in range(count)]

        def paint(count: int, asked: list | None = None) -> None:
            asked = asked or requests(count)
            with ThreadPoolExecutor(len(asked)) as players:  # .result() re-raises a player's failure here
                for done in [players.submit(wait_for_picture, service, r) for r in asked]:
                    done.result()

        if bench.cuda:
            bench.torch.cuda.reset_peak_memory_stats()
        first_request = requests(1)
        bench.sync()
        clock = time.perf_counter()
        paint(1, first_request)
        first = time.perf_counter() - clock
        one = bench.timed(lambda: paint(1))
        four = bench.timed(lambda: paint(4))
        eight = bench.timed(lambda: paint(8))
        again = [painted_again(service, first_request[0]) for _ in range(1 + max(1, bench.args.repeats))]
        row = (
            model,
            level,
            f"{ready:.1f}",
            f"{first:.3f}",
            f"{one:.3f}",
            f"{four / 4:.3f}",
            f"{one / (four / 4):.2f}x",
            f"{8 / eight:.2f}",
            f"{again[0]:.1f} / {statistics.median(again[1:]):.1f}",
            f"{bench.peak_memory():.1f}" if bench.cuda else "-",
        )
        bench.service_rows.append(row)
        print("service: " + " | ".join(row), flush=True)
        bench.save()
    finally:
        service.close()
        backend.close()
        del backend
        bench.release()


def painted_again(service, request) -> float:
    """Milliseconds of our own work to hand out a picture that is already painted: find its job (or cached
    file) and its browser encoding (WebP, made once per picture as it was painted; a view encodes only a
    picture that the encoding ahead left over)."""
    clock = time.perf_counter()
    snapshot = service.submit(request)
    if snapshot is None or snapshot.state != "done" or not snapshot.png:
        raise RuntimeError(f"an already painted picture came back {snapshot and snapshot.state}")
    ENCODINGS.get(snapshot.key, snapshot.png, "webp")
    return 1000 * (time.perf_counter() - clock)


def wait_for_picture(service, request) -> None:
    """Submit one player's picture and block until it is painted (the way a slide's stream follows it)."""
    asked = service.submit(request)
    snapshot = service.wait(asked.key, 600)
    if snapshot.state != "done":
        raise RuntimeError(f"the service did not paint the picture: {snapshot.state} {snapshot.error}")
