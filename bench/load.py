"""Load on the real server: 1, 4 and 16 simulated players on loopback, each keeping a picture stream open while it
requests pages as fast as it can for a fixed time.  Prints pages/s, p50/p95 page latency, pictures received, and
any failures (5xx, lost pictures).  Tiny random SD2 pipeline on this machine unless --model is given.

    python bench/load.py [--seconds 10] [--players 1,4,16]

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from playthrough import HTMX  # noqa: E402
from playthrough import Server  # noqa: E402
from playthrough import machine  # noqa: E402

PAGES = ["/", "/play/{slug}/shore", "/play/{slug}/cliff_path", "/play/{slug}/stairs", "/play/{slug}/lamp_room"]


def player(server: Server, slug: str, index: int, seconds: float, out: dict) -> None:
    session = requests.Session()
    slides = ["shore", "wreckage", "log", "cliff_path", "door", "cellar", "stairs", "lamp_room"]
    pictures, latencies, errors = 0, [], 0

    def follow(slide: str) -> None:
        nonlocal pictures, errors
        try:
            with session.get(f"{server.url}/play/{slug}/{slide}/stream", stream=True, timeout=300) as response:
                for line in response.iter_lines(decode_unicode=True):
                    if 'class="final"' in line:
                        pictures += 1
                    if line.startswith("event: done"):
                        return
        except requests.RequestException:
            errors += 1

    stream = threading.Thread(target=follow, args=(slides[index % len(slides)],))
    stream.start()
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        path = PAGES[n % len(PAGES)].format(slug=slug)
        n += 1
        started = time.perf_counter()
        try:
            response = session.get(server.url + path, headers=HTMX if n % 2 else {}, timeout=60)
            if response.status_code >= 500:
                errors += 1
        except requests.RequestException:
            errors += 1
        latencies.append(time.perf_counter() - started)
    stream.join(300)
    out[index] = (latencies, pictures, errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-size", type=int, default=64)
    parser.add_argument("--players", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lanternslide-load-"))
    args.model_label = args.model or "tiny random SD2 pipeline (tests/tiny_pipeline.py), 64x64, 20 steps"
    if not args.model:
        from tests.tiny_pipeline import build_tiny_pipeline

        args.model = str(build_tiny_pipeline(workdir / "tiny"))
    print(f"machine: {machine(args)}")
    server = Server(args, workdir / "server", PREFETCH_DEPTH=1)
    try:
        print(f"{'players':>7} {'pages':>6} {'pages/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'pictures':>8} {'errors':>6}")
        for count in [int(n) for n in args.players.split(",")]:
            slug = server.story_copy("lighthouse", f"load-{count}", 7000 + count)
            out: dict = {}
            threads = [threading.Thread(target=player, args=(server, slug, i, args.seconds, out)) for i in range(count)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            latencies = sorted(x for lat, _, _ in out.values() for x in lat)
            pictures = sum(p for _, p, _ in out.values())
            errors = sum(e for _, _, e in out.values())
            print(f"{count:>7} {len(latencies):>6} {len(latencies) / args.seconds:>8.1f} "
                  f"{1000 * statistics.median(latencies):>7.1f} {1000 * latencies[int(0.95 * (len(latencies) - 1))]:>7.1f} "
                  f"{pictures:>5}/{count:<2} {errors:>6}")
            server.idle()
    finally:
        server.stop()
    print("pages: the story list and slides, half as htmx fragments; each player also keeps one picture stream open")


if __name__ == "__main__":
    main()
