"""Simulated players click through a shipped story against the real server; how long do they wait for pictures?

For each configuration a real `python app.py` (waitress, the in-process diffusers backend) starts on a fresh cache;
each player is a thread with its own session that loads a slide, waits for its picture (inline, or over the SSE
stream), "reads" for the reading time, and picks a choice (seeded random), like a person.  Per slide it records T,
the generation time the server reports for that picture, and W, the perceived wait from the click to the final
picture received.  Prefetch on and off run in the same invocation, for 1, 4 and 16 players.  A separate burst
measures images/s with batching (batch 4) against one at a time (batch 1).

    python -m bench.playthrough                      # tiny random SD2 pipeline on this machine (CPU)
    python -m bench.playthrough --model PATH --device cuda --max-size 0

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
HTMX = {"HX-Request": "true"}
ADMIN_PASSWORD = "bench-admin"
SECONDS = re.compile(r'class="final"[^>]*data-seconds="([0-9.]+)"')


class Server:
    """`python app.py` on a free port with its own stories copy and instance folder."""

    def __init__(self, args: argparse.Namespace, workdir: Path, **settings: str):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.stories = workdir / "stories"
        shutil.copytree(ROOT / "stories", self.stories)
        env = {**os.environ, "LANTERNSLIDE_ADMIN_PASSWORD": ADMIN_PASSWORD,
               **{f"LANTERNSLIDE_{k}": str(v) for k, v in settings.items()}}
        command = [sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--model", args.model,
                   "--device", args.device, "--max-size", str(args.max_size), "--stories", str(self.stories),
                   "--instance", str(workdir / "instance"), "--log-level", "warning"]
        self.log = (workdir / "server.log").open("w")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                if self.status()["backend"]["state"] == "ready":
                    return
            except requests.ConnectionError:
                time.sleep(0.2)
                continue
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def story_copy(self, slug: str, name: str, seed: int) -> str:
        """A copy of a story under a new name and seed, so that no picture of it is cached yet."""
        text = (self.stories / f"{slug}.yaml").read_text()
        text = re.sub(r"(?m)^  seed: \d+", f"  seed: {seed}", text, count=1)
        (self.stories / f"{name}.yaml").write_text(text)
        return name

    def status(self) -> dict:
        return requests.get(self.url + "/admin/status.json", auth=("admin", ADMIN_PASSWORD), timeout=10).json()

    def idle(self) -> None:
        while True:
            status = self.status()
            if status["queued"] == 0 and not status["running"]:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(20)
        self.log.close()


def picture(session: requests.Session, server: Server, slug: str, slide: str, html: str) -> tuple[float, bool]:
    """Return (T, inline) once the slide's final picture is in hand; reads the stream when it is not inline."""
    found = SECONDS.search(html)
    if found and "sse-connect" not in html:
        return float(found.group(1)), True
    with session.get(f"{server.url}/play/{slug}/{slide}/stream", stream=True, timeout=600) as response:
        for line in response.iter_lines(decode_unicode=True):
            found = SECONDS.search(line)
            if found:
                return float(found.group(1)), False
            if line.startswith("event: done"):
                break
    raise RuntimeError(f"no picture for {slug}/{slide}")


def play(server: Server, slug: str, player: int, slides: int, reading: float, records: list) -> None:
    """One player: start the story, then read and choose until an ending or `slides` pictures."""
    rng = random.Random(player)
    session = requests.Session()
    if reading:
        session.get(server.url + "/", timeout=60)  # the story list, read like a slide
        time.sleep(reading)
    started = time.perf_counter()
    response = session.get(f"{server.url}/play/{slug}", timeout=60)
    slide = response.url.rsplit("/", 1)[-1]
    html = response.text
    for index in range(slides):
        t, inline = picture(session, server, slug, slide, html)
        records.append({"w": time.perf_counter() - started, "t": t, "inline": inline, "start": index == 0})
        choices = re.findall(r'name="choice" value="(\d+)"', html)
        if not choices:
            break
        time.sleep(reading)
        started = time.perf_counter()  # the click
        response = session.post(f"{server.url}/play/{slug}/{slide}", data={"choice": rng.choice(choices)},
                                headers=HTMX, timeout=60)
        slide = response.headers["HX-Push-Url"].rsplit("/", 1)[-1]
        html = response.text


def run_players(server: Server, slug: str, players: int, slides: int, reading: float) -> dict:
    records: list = []
    before = server.status()["counters"]
    threads = [threading.Thread(target=play, args=(server, slug, p, slides, reading, records)) for p in range(players)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    server.idle()
    after = server.status()["counters"]
    waits = sorted(r["w"] for r in records if not r["start"])
    starts = sorted(r["w"] for r in records if r["start"])
    gen = [r["t"] for r in records if not r["inline"]] or [r["t"] for r in records]
    return {
        "players": players,
        "slides": len(records),
        "p50": statistics.median(waits),
        "p95": waits[min(len(waits) - 1, int(0.95 * len(waits)))],
        "start_p50": statistics.median(starts),
        "mean_t": statistics.fmean(gen),
        "inline": sum(r["inline"] for r in records),
        "generated": after["generated"] - before["generated"],
        "wall": wall,
    }


def burst(server: Server, slug: str, count: int) -> float:
    """Ask for `count` different pictures at once; return images per second until all are painted."""
    story_slides = re.findall(r"(?m)^  (\w+):\n    text:", (server.stories / f"{slug}.yaml").read_text())[:count]
    done = []

    def one(slide: str) -> None:
        session = requests.Session()
        html = session.get(f"{server.url}/play/{slug}/{slide}", timeout=60).text
        done.append(picture(session, server, slug, slide, html))

    threads = [threading.Thread(target=one, args=(s,)) for s in story_slides]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(done) / (time.perf_counter() - started)


def machine(args: argparse.Namespace) -> str:
    import torch

    device = (
        torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or platform.machine()
    )
    return (f"{platform.node()}: {os.cpu_count()} CPU cores, {device}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, model {args.model_label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model to load (default: a tiny random SD2 pipeline built now)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-size", type=int, default=64, help="paint size cap (64 for the tiny CPU pipeline)")
    parser.add_argument("--story", default="lighthouse")
    parser.add_argument("--players", default="1,4,16")
    parser.add_argument("--slides", type=int, default=5, help="pictures per player")
    parser.add_argument("--reading", type=float, help="seconds a player reads a slide (default 1.5 x measured T)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lanternslide-bench-"))
    args.model_label = args.model or "tiny random SD2 pipeline (tests/tiny_pipeline.py), 64x64, 20 steps"
    if not args.model:
        from tests.tiny_pipeline import build_tiny_pipeline

        args.model = str(build_tiny_pipeline(workdir / "tiny"))
    print(f"machine: {machine(args)}")
    counts = [int(n) for n in args.players.split(",")]
    results = {}
    for prefetch in (1, 0):
        server = Server(args, workdir / f"prefetch{prefetch}", PREFETCH_DEPTH=prefetch, BATCH_SIZE=4)
        try:
            if args.reading is None:
                slug = server.story_copy(args.story, "calibrate", 999)
                t, _ = picture(
                    requests.Session(), server, slug, "shore" if args.story == "lighthouse" else "platform", ""
                )
                args.reading = round(1.5 * t, 3)
                print(f"calibration: T = {t:.3f} s, reading time = 1.5 T = {args.reading:.3f} s")
            for n in counts:
                slug = server.story_copy(args.story, f"run-{prefetch}-{n}", 1000 + 10 * n + prefetch)
                results[(prefetch, n)] = run_players(server, slug, n, args.slides, args.reading)
        finally:
            server.stop()
    print(f"\nreading time {args.reading:.3f} s, {args.slides} pictures per player, story {args.story}")
    print(f"{'prefetch':>8} {'players':>7} {'slides':>6} {'W p50 s':>8} {'W p95 s':>8} {'mean T s':>8} {'p95 W/T':>7}"
          f" {'start W':>7} {'inline':>6} {'generated':>9}")
    for (prefetch, n), r in sorted(results.items(), key=lambda item: (-item[0][0], item[0][1])):
        print(
            f"{'on' if prefetch else 'off':>8} {n:>7} {r['slides']:>6} {r['p50']:>8.3f} {r['p95']:>8.3f} "
            f"{r['mean_t']:>8.3f} {r['p95'] / r['mean_t']:>7.2f} {r['start_p50']:>7.3f} {r['inline']:>6} "
            f"{r['generated']:>9}"
        )
    print("W = click on a choice to its final picture received (p50/p95 over all choices); start W = opening the"
          " story from the story list (p50); T = generation time the server reports; inline = pictures that came"
          " with the slide itself (no second request); generated = pictures the painter made (incl. prefetch)")
    one_player = results.get((0, 1))
    if one_player:
        print(
            "cold overhead at 1 player without prefetch: W p50 - mean T = "
            f"{1000 * (one_player['p50'] - one_player['mean_t']):.0f} ms"
        )

    print("\nthroughput, burst of distinct pictures at once (prefetch off):")
    rates = {}
    for batch in (1, 4):
        server = Server(args, workdir / f"batch{batch}", PREFETCH_DEPTH=0, BATCH_SIZE=batch)
        try:
            for n in [c for c in counts if c > 1]:
                slug = server.story_copy(args.story, f"burst-{batch}-{n}", 5000 + 10 * n + batch)
                rates[(batch, n)] = burst(server, slug, n)
        finally:
            server.stop()
    for n in [c for c in counts if c > 1]:
        print(f"  {n:>2} players: batch 1 {rates[(1, n)]:.2f} images/s, batch 4 {rates[(4, n)]:.2f} images/s "
              f"({rates[(4, n)] / rates[(1, n)]:.2f}x)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
