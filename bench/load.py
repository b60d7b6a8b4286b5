"""Load on the real server: 1, 4 and 16 simulated players on loopback, each keeping a picture stream open while it
requests pages as fast as it can for a fixed time.  Prints pages/s, p50/p95 page latency, pictures received, and
any failures (5xx, lost pictures).  Tiny random SD2 pipeline on this machine unless --model is given.

    python -m bench.load [--seconds 10] [--players 1,4,16]
    python -m bench.load --attack [--seconds 10] [--streams 370] [--calls 400]

--attack: the server runs as behind a proxy (as with --share; the bench is the proxy, on loopback, and names each
client in X-Forwarded-For) with API credentials set, and its default caps.  Four players load a page every 0.25 s,
first with the server idle, then while one stranger floods it: --streams picture streams held open (to the end of
the phase) and --calls txt2img calls (8 at a time, 4 pictures of 30 steps each, interrupts between), bounded in
count and by --seconds.  Prints the players' page p50/p95 in both phases and what the stranger got.

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.playthrough import HTMX
from bench.playthrough import Server
from bench.playthrough import machine

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


ATTACKER = "203.0.113.66"
API_USER, API_PASSWORD = "bench", "bench-api-password"


def paced_player(server: Server, slug: str, address: str, seconds: float, latencies: list, errors: list) -> None:
    """A player behind the proxy: one page every 0.25 s (a quick reader), alternating full pages and htmx swaps."""
    session = requests.Session()
    session.headers["X-Forwarded-For"] = address
    deadline, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        path = PAGES[n % len(PAGES)].format(slug=slug)
        n += 1
        started = time.perf_counter()
        try:
            response = session.get(server.url + path, headers=HTMX if n % 2 else {}, timeout=120)
            if response.status_code != 200:
                errors.append(response.status_code)
        except requests.RequestException as exc:
            errors.append(type(exc).__name__)
        latencies.append(time.perf_counter() - started)
        time.sleep(max(0.0, 0.25 - (time.perf_counter() - started)))


def flood(server: Server, slug: str, seconds: float, streams: int, calls: int, out: dict) -> None:  # noqa: C901
    # ``slug``: a story of the stranger's own, whose pictures are not painted yet (their streams stay open)
    """One stranger: ``streams`` picture streams held open and ``calls`` API calls, all within ``seconds``."""
    deadline = time.perf_counter() + seconds
    held: list[tuple[http.client.HTTPConnection, http.client.HTTPResponse]] = []
    got: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def api_caller(index: int) -> None:
        session = requests.Session()
        session.auth = (API_USER, API_PASSWORD)
        session.headers["X-Forwarded-For"] = ATTACKER
        n = index
        while time.perf_counter() < deadline:
            with lock:
                if out.setdefault("calls", 0) >= calls:
                    return
                out["calls"] += 1
            n += 8
            body = {"prompt": f"flood {n}", "seed": n, "steps": 30, "batch_size": 4, "width": 64, "height": 64}
            try:
                response = session.post(
                    server.url + "/sdapi/v1/txt2img", json=body, timeout=max(1.0, deadline - time.perf_counter())
                )
                key = f"api {response.status_code}"
                if n % 5 == 0:
                    session.post(server.url + "/sdapi/v1/interrupt", timeout=30)
            except requests.RequestException as exc:
                key = f"api {type(exc).__name__}"
            with lock:
                got[key] += 1

    callers = [threading.Thread(target=api_caller, args=(i,)) for i in range(8)]
    for thread in callers:
        thread.start()
    host, port = server.url.removeprefix("http://").split(":")
    for i in range(streams):
        if time.perf_counter() >= deadline:
            break
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            conn.request("GET", f"/play/{slug}/{['shore', 'wreckage', 'log', 'cliff_path'][i % 4]}/stream",
                         headers={"X-Forwarded-For": ATTACKER})
            response = conn.getresponse()
            head = ""
            while response.status == 200 and "\n\n" not in head.partition("event: frame")[2]:
                chunk = response.read1(4096)  # up to the first picture frame: live, or "checked every few s"
                if not chunk:
                    break
                head += chunk.decode(errors="replace")
            if response.status != 200:
                got[f"stream {response.status}"] += 1
            elif "checked every" in head or "instead of live" in head:
                got["stream polled"] += 1
            elif 'class="final"' in head:
                got["stream picture at once"] += 1
            else:
                got["stream live"] += 1
            held.append((conn, response))
        except (OSError, http.client.HTTPException) as exc:
            got[f"stream {type(exc).__name__}"] += 1
    for thread in callers:
        thread.join(max(0.0, deadline - time.perf_counter()) + 60)
    time.sleep(max(0.0, deadline - time.perf_counter()))
    for conn, response in held:
        response.close()
        conn.close()
    out["got"] = got


def attack(args: argparse.Namespace, workdir: Path) -> None:
    server = Server(args, workdir / "server", PREFETCH_DEPTH=1, BEHIND_PROXY="true",
                    SDAPI_AUTH=f"{API_USER}:{API_PASSWORD}")
    try:
        slug = server.story_copy("lighthouse", "attack", 9100)
        for path in PAGES:  # paint the pages' pictures first, so that the idle phase is idle
            requests.get(server.url + path.format(slug=slug), timeout=120)
        server.idle()
        print(f"server: --behind-proxy, API credentials set, other settings default; {args.seconds:g} s per phase")
        print(f"{'phase':<8} {'pages':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'errors':>6}")
        for phase in ("idle", "attack"):
            latencies: list[float] = []
            errors: list = []
            out: dict = {}
            players = [threading.Thread(target=paced_player,
                                        args=(server, slug, f"198.51.100.{10 + i}", args.seconds, latencies, errors))
                       for i in range(4)]
            theirs = server.story_copy("lighthouse", "attack-streams", 9200)
            stranger = threading.Thread(
                target=flood, args=(server, theirs, args.seconds, args.streams, args.calls, out)
            )
            if phase == "attack":
                stranger.start()
                time.sleep(min(2.0, args.seconds / 5))  # let the flood build up first
            for thread in players:
                thread.start()
            for thread in players:
                thread.join()
            if phase == "attack":
                stranger.join()
            latencies.sort()
            print(f"{phase:<8} {len(latencies):>6} {1000 * statistics.median(latencies):>7.1f} "
                  f"{1000 * latencies[int(0.95 * (len(latencies) - 1))]:>7.1f} {1000 * latencies[-1]:>7.1f} "
                  f"{len(errors):>6}" + (f"  ({dict(collections.Counter(errors))})" if errors else ""))
            if phase == "attack":
                print(f"the stranger: {out.get('calls', 0)} API calls sent, "
                      + ", ".join(f"{k}: {v}" for k, v in sorted(out.get("got", {}).items())))
                print(f"server after the flood: {server.status().get('streams', {})} streams, "
                      f"{server.status().get('jobs', '?')} jobs in the table")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-size", type=int, default=64)
    parser.add_argument("--players", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--attack", action="store_true", help="players' pages while one stranger floods the server")
    parser.add_argument("--streams", type=int, default=370, help="--attack: streams the stranger holds open")
    parser.add_argument("--calls", type=int, default=400, help="--attack: API calls the stranger makes")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="lanternslide-load-"))
    args.model_label = args.model or "tiny random SD2 pipeline (tests/tiny_pipeline.py), 64x64, 20 steps"
    if not args.model:
        from tests.tiny_pipeline import build_tiny_pipeline

        args.model = str(build_tiny_pipeline(workdir / "tiny"))
    print(f"machine: {machine(args)}")
    if args.attack:
        attack(args, workdir)
        return
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
            print(
                f"{count:>7} {len(latencies):>6} {len(latencies) / args.seconds:>8.1f} "
                f"{1000 * statistics.median(latencies):>7.1f} "
                f"{1000 * latencies[int(0.95 * (len(latencies) - 1))]:>7.1f} "
                f"{pictures:>5}/{count:<2} {errors:>6}"
            )
            server.idle()
    finally:
        server.stop()
    print("pages: the story list and slides, half as htmx fragments; each player also keeps one picture stream open")


if __name__ == "__main__":
    main()
