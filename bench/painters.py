"""Painters out of the web process (issue 13), measured on the real server (`python app.py`, waitress):

(a) page latency for a player whose picture is already painted, while other players' pictures are being painted:
    the in-process painter (``--painters inprocess``) against one painter process (``--painters 1``), with the
    same page idle for reference;
(b) images/s for a burst of distinct pictures: one painter process against two (``--painters 1`` / ``2``).

Every painter gets ``--torch-threads`` CPU threads (default 1, through OMP_NUM_THREADS), in or out of the web process.

    python -m bench.painters [--seconds 15] [--burst 16] [--modes a,b]
    python -m bench.painters --model PATH --device cuda --max-size 0      # on a GPU box

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.playthrough import HTMX
from bench.playthrough import Server
from bench.playthrough import machine

STORY = "lighthouse"


def wait_painters(server: Server, count: int) -> None:
    """Until ``count`` painter processes are ready (the server is up once the first one is)."""
    deadline = time.time() + 600
    while time.time() < deadline:
        listed = server.status().get("painters", [])
        if sum(1 for p in listed if p["state"] == "ready") >= count:
            return
        time.sleep(0.2)
    raise RuntimeError(f"painters not ready: {server.status().get('painters')}")


def slides_of(server: Server, slug: str) -> list[str]:
    text = (server.stories / f"{slug}.yaml").read_text()
    section = text.split("\nslides:\n", 1)[1]
    return [line.strip()[:-1] for line in section.splitlines() if line.startswith("  ") and not line.startswith("   ")
            and line.rstrip().endswith(":")]


def follow(session: requests.Session, server: Server, slug: str, slide: str) -> bool:
    """Read a slide's picture stream to its end; True once the final picture came."""
    final = False
    with session.get(f"{server.url}/play/{slug}/{slide}/stream", stream=True, timeout=600) as response:
        for line in response.iter_lines(decode_unicode=True):
            final = final or 'class="final"' in line
            if line.startswith("event: done"):
                break
    return final


def page_times(server: Server, path: str, seconds: float) -> list[float]:
    session = requests.Session()
    session.get(server.url + path, timeout=60)
    times = []
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        n += 1
        started = time.perf_counter()
        response = session.get(server.url + path, headers=HTMX if n % 2 else {}, timeout=60)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200 and "sse-connect" not in response.text, "the picture was not ready"
    return times


def percentiles(times: list[float]) -> str:
    ordered = sorted(times)
    p95 = ordered[-(-95 * len(ordered) // 100) - 1]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms ({len(ordered)} pages)"


def ready_page_while_painting(args: argparse.Namespace, workdir: Path, painters: str) -> None:
    """(a): the page of a painted slide, idle and then while 4 other players' pictures are painted."""
    server = Server(args, workdir / f"a-{painters}", PAINTERS=painters, PREFETCH_DEPTH=0, PLAYER_QUEUE_LIMIT=64)
    try:
        if painters != "inprocess":
            wait_painters(server, int(painters))
        follow(requests.Session(), server, STORY, "shore")
        idle = page_times(server, f"/play/{STORY}/shore", args.seconds / 3)
        stop = threading.Event()
        painted = []

        def other_player(index: int) -> None:
            session = requests.Session()
            slug = server.story_copy(STORY, f"other{index}", 1000 + index)
            for slide in slides_of(server, slug):
                if stop.is_set():
                    return
                if follow(session, server, slug, slide):
                    painted.append(slide)

        others = [threading.Thread(target=other_player, args=(i,)) for i in range(4)]
        for thread in others:
            thread.start()
        time.sleep(1.0)  # let the painter get going
        busy = server.status()
        loaded = page_times(server, f"/play/{STORY}/shore", args.seconds)
        stop.set()
        pictures_meanwhile = len(painted)
        for thread in others:
            thread.join(600)
        label = "in-process painter" if painters == "inprocess" else f"{painters} painter process(es)"
        print(f"(a) {label}: ready page idle {percentiles(idle)}; while painting {percentiles(loaded)}; "
              f"{pictures_meanwhile} other pictures painted meanwhile (queue when measuring began: "
              f"{busy['queued']} waiting, {sum(len(b) for b in busy['running'])} painting)", flush=True)
    finally:
        server.stop()


def burst(args: argparse.Namespace, workdir: Path, painters: str) -> None:
    """(b): images/s for ``--burst`` distinct pictures asked for at once."""
    server = Server(args, workdir / f"b-{painters}", PAINTERS=painters, PREFETCH_DEPTH=0, PLAYER_QUEUE_LIMIT=256,
                    QUEUE_LIMIT=256)
    try:
        wait_painters(server, int(painters))
        follow(requests.Session(), server, STORY, "shore")  # warm: the first picture of each painter is slower
        follow(requests.Session(), server, STORY, "wreckage")
        wanted = []
        copies = 0
        while len(wanted) < args.burst:
            slug = server.story_copy(STORY, f"burst{copies}", 2000 + copies)
            copies += 1
            wanted += [(slug, slide) for slide in slides_of(server, slug)]
        wanted = wanted[: args.burst]
        done = []
        started = time.perf_counter()

        def one(slug: str, slide: str) -> None:
            done.append(follow(requests.Session(), server, slug, slide))

        threads = [threading.Thread(target=one, args=pair) for pair in wanted]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(1200)
        elapsed = time.perf_counter() - started
        print(f"(b) {painters} painter process(es): {sum(done)} of {len(wanted)} distinct pictures in {elapsed:.1f} s "
              f"= {sum(done) / elapsed:.2f} images/s (batch size {args.batch})", flush=True)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model to load (default: a tiny random SD2 pipeline built now)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-size", type=int, default=64, help="paint size cap (64 for the tiny CPU pipeline)")
    parser.add_argument("--seconds", type=float, default=15, help="seconds of page requests while painting")
    parser.add_argument("--burst", type=int, default=16, help="distinct pictures asked for at once in (b)")
    parser.add_argument("--batch", type=int, default=4, help="the server's --batch-size")
    parser.add_argument("--torch-threads", type=int, default=1, help="CPU threads of each painter")
    parser.add_argument("--modes", default="a,b")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)  # the servers and their painter processes inherit it
    os.environ["LANTERNSLIDE_BATCH_SIZE"] = str(args.batch)
    workdir = Path(tempfile.mkdtemp(prefix="lanternslide-painters-"))
    args.model_label = args.model or "tiny random SD2 pipeline (tests/tiny_pipeline.py), 64x64, 20 steps"
    if not args.model:
        from tests.tiny_pipeline import build_tiny_pipeline

        args.model = str(build_tiny_pipeline(workdir / "tiny"))
    print(f"machine: {machine(args)}; {args.torch_threads} torch thread(s) per painter", flush=True)
    modes = args.modes.split(",")
    if "a" in modes:
        for painters in ("inprocess", "1"):
            ready_page_while_painting(args, workdir, painters)
    if "b" in modes:
        for painters in ("1", "2"):
            burst(args, workdir, painters)


if __name__ == "__main__":
    main()
