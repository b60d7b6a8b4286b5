"""A Backend that paints on any AUTOMATIC1111-compatible server (A1111, Forge, SD.Next, another Lanternslide).

Each request is one POST /sdapi/v1/txt2img (or /img2img, with its init picture and mask in base64); while it
runs, /sdapi/v1/progress is polled for the step count and the live preview.  Basic auth is sent up front (A1111
never challenges), with ``ngrok-skip-browser-warning`` so an ngrok free-tier link answers JSON instead of its
interstitial page.  Connection errors and 5xx answers are retried a bounded number of times; every error names the
server and what it said.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
import threading
import time
from typing import Any

import requests

from inference.backend import FAILED
from inference.backend import LOADING
from inference.backend import READY
from inference.backend import BackendStatus
from inference.backend import BackendUnavailable
from inference.backend import GenerationCancelled
from inference.backend import StepCallback
from inference.backend import scale_to_fit
from inference.errors import RequestError
from inference.request import GenerationRequest
from inference.request import GenerationResult

log = logging.getLogger(__name__)


class RemoteError(RuntimeError):
    """The remote server refused or failed a request; the message names the server and its answer."""


class RemoteBackend:
    """Paint on an A1111-compatible server at ``base_url``.

    Args:
        base_url (`str`): e.g. ``http://gpu-box:7861`` (with or without ``/sdapi/v1``).
        auth (`str`, *optional*): ``user:password`` for HTTP Basic auth.
        connect_timeout, read_timeout (`float`, *optional*): seconds; the read timeout bounds one picture.
        retries (`int`, *optional*, defaults to 2): extra attempts after a connection error or a 5xx answer.
        poll_interval (`float`, *optional*, defaults to 0.5): seconds between progress polls.
        max_size (`int`, *optional*, defaults to 0): ask for pictures with the longer side at most this (0 = as is).
    """

    def __init__(self, base_url: str, auth: str = "", connect_timeout: float = 5.0, read_timeout: float = 300.0,
                 retries: int = 2, poll_interval: float = 0.5, recheck_after: float = 5.0, max_size: int = 0):
        root = base_url.rstrip("/")
        self.api = root if root.endswith("/sdapi/v1") else root + "/sdapi/v1"
        self.base_url = _shown(root.removesuffix("/sdapi/v1"))  # for messages: never the user:password@ part
        self.session = requests.Session()
        self.session.headers["ngrok-skip-browser-warning"] = "1"
        if auth:
            user, sep, password = auth.partition(":")
            if not sep:
                raise ValueError("api auth: expected user:password")
            self.session.auth = (user, password)
        self.timeout = (connect_timeout, read_timeout)
        self.retries = retries
        self.poll_interval = poll_interval
        self.recheck_after = recheck_after
        self.max_size = max_size
        self._status = BackendStatus(LOADING, f"Connecting to the image server at {self.base_url}…")
        self._checked = 0.0
        self._checking = threading.Lock()
        self._model = ""

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        threading.Thread(target=self._check, name="remote-check", daemon=True).start()

    def status(self) -> BackendStatus:
        """Where the server stands; a failed server is asked again in the background every few seconds."""
        if self._status.state == FAILED and time.monotonic() - self._checked > self.recheck_after:
            if self._checking.acquire(blocking=False):
                self._checking.release()
                threading.Thread(target=self._check, name="remote-check", daemon=True).start()
        return self._status

    def _check(self) -> None:
        with self._checking:
            self._checked = time.monotonic()
            try:
                models = self._call("GET", "/sd-models", timeout=(self.timeout[0], 15), retries=0)
                self._model = models[0]["title"] if models else ""
                self._status = BackendStatus(
                    READY, f"Ready: painting on {self.base_url} ({self._model or 'model unknown'})."
                )
            except RemoteError as exc:
                self._status = BackendStatus(
                    FAILED,
                    str(exc),
                    "Check that the server is running and the address and "
                    "credentials are right (--api-url, --api-auth); the game retries by itself.",
                )
            self._checked = time.monotonic()

    def identity(self, memo_folder: Any = None) -> str:
        """The server paints with whatever model it holds; its address names it (see README, remote backend)."""
        return self.base_url

    def count_tokens(self, text: str) -> int | None:
        return None

    def close(self) -> None:
        self.session.close()

    # -- HTTP ------------------------------------------------------------------------------------------------

    def _call(self, method: str, path: str, json: Any = None, timeout: Any = None, retries: int | None = None) -> Any:
        """One API call with bounded retries on connection errors and 5xx; returns the decoded JSON."""
        attempts = 1 + (self.retries if retries is None else retries)
        last = ""
        for attempt in range(attempts):
            try:
                response = self.session.request(method, self.api + path, json=json, timeout=timeout or self.timeout)
            except requests.Timeout:
                last = "did not answer in time"
            except requests.ConnectionError as exc:
                last = f"cannot be reached ({type(exc).__name__})"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError:
                        raise RemoteError(f"The image server at {self.base_url} answered {path} with something that "
                                          f"is not JSON (is it an A1111-compatible server?)") from None
                detail = _detail(response)
                if response.status_code == 401:
                    raise RemoteError(f"The image server at {self.base_url} refused the credentials ({detail}); "
                                      "check --api-auth")
                if response.status_code < 500:
                    raise RemoteError(f"The image server at {self.base_url} refused {path}: "
                                      f"{response.status_code} {detail}")
                last = f"failed with {response.status_code} {detail}"
            if attempt + 1 < attempts:
                time.sleep(min(4.0, 0.5 * 2**attempt))
        raise RemoteError(f"The image server at {self.base_url} {last}.")

    # -- painting --------------------------------------------------------------------------------------------

    def generate(
        self, requests_: list[GenerationRequest], on_step: StepCallback | None = None
    ) -> list[GenerationResult]:
        if self._status.state != READY:
            self._check()
            if self._status.state != READY:
                raise BackendUnavailable(self._status)
        results = []
        for request in requests_:
            try:
                results.append(self._generate_one(request, on_step))
            except RemoteError as exc:
                self._status = BackendStatus(FAILED, str(exc), "The game retries the server by itself.")
                self._checked = time.monotonic()
                raise BackendUnavailable(self._status) from None
        return results

    def _generate_one(self, request: GenerationRequest, on_step: StepCallback | None) -> GenerationResult:
        from PIL import Image

        width, height = scale_to_fit(request.width, request.height, self.max_size)
        if request.is_img2img and request.init_image is None:
            raise RequestError("init_from", f"the picture {request.init_from} to start from was not loaded (the "
                                            "generation service loads it from its cache before painting)")
        fields = request.to_dict()
        fields.pop("init_from", None)  # ours: the server gets the picture itself
        body = {
            **fields,
            "width": width,
            "height": height,
            "send_images": True,
            "save_images": False,
            "batch_size": 1,
            "n_iter": 1,
            "override_settings": {"show_progress_every_n_steps": 2},
        }
        done = threading.Event()
        cancelled = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(on_step, done, cancelled), daemon=True)
        started = time.perf_counter()
        if on_step is not None:
            watcher.start()
        try:
            answer = self._call("POST", "/img2img" if request.is_img2img else "/txt2img", json=body)
        finally:
            done.set()
        if cancelled.is_set():
            raise GenerationCancelled("interrupted")
        images = answer.get("images") or []
        if not images:
            raise RemoteError(f"The image server at {self.base_url} returned no picture")
        try:
            image = Image.open(io.BytesIO(base64.b64decode(images[0]))).convert("RGB")
        except (ValueError, OSError) as exc:
            raise RemoteError(
                f"The image server at {self.base_url} returned a picture that cannot be read: {exc}"
            ) from None
        info = _info(answer.get("info"))
        seed = int(info.get("seed", request.seed)) if str(info.get("seed", "")).lstrip("-").isdigit() else request.seed
        meta: dict[str, Any] = {"server": self.base_url}
        if (width, height) != (request.width, request.height):
            meta["scaled"] = f"{request.width}x{request.height} painted at {width}x{height} (max size {self.max_size})"
        if request.restore_faces:
            meta["unsupported"] = ["restore_faces"]
        return GenerationResult(image, seed, request.replace(seed=seed), meta, time.perf_counter() - started)

    def _watch(self, on_step: StepCallback, done: threading.Event, cancelled: threading.Event) -> None:
        """Poll /progress while a picture is painted; pass steps and previews on, and interrupt when asked."""
        while not done.wait(self.poll_interval):
            try:
                progress = self.session.get(self.api + "/progress", timeout=(self.timeout[0], 10)).json()
            except (requests.RequestException, ValueError):
                continue
            state = progress.get("state") or {}
            step, total = state.get("sampling_step") or 0, state.get("sampling_steps") or 0
            if not total:
                continue
            image = progress.get("current_image")
            preview = [base64.b64decode(image)] if image else [None]
            try:
                on_step(step, total, functools.partial(list, preview))
            except GenerationCancelled:
                cancelled.set()
                try:
                    self.session.post(self.api + "/interrupt", timeout=(self.timeout[0], 10))
                except requests.RequestException:
                    pass
                return


def _shown(url: str) -> str:
    """``url`` without any ``user:password@`` in it, for messages, pages and logs."""
    from urllib.parse import urlsplit
    from urllib.parse import urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("errors") or body.get("detail") or body)[:300]
    return str(body)[:300]


def _info(raw: Any) -> dict[str, Any]:
    import json

    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
