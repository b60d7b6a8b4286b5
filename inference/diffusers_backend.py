"""Stable Diffusion 2.1 in this process, with Hugging Face diffusers.

torch, diffusers and transformers are imported only inside the loader thread (here and in the modules this backend
is made of: inference/loading.py, inference/optimizations.py, inference/diffusers_img2img.py), so importing this
module (and starting the app) costs nothing.  The model loads in the background; until it is ready,
`status()` says what is happening and `generate()` raises `BackendUnavailable` with the same words.

Models (``--model``): a Hugging Face repo id (downloaded with progress in the terminal), a local diffusers
folder (``model_index.json`` inside), or one checkpoint file in the original SD 2.x layout (inference/checkpoints.py).
``identity()`` names what changes the pictures (the weights' content, the config, dtype, size cap) for cache keys.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from inference.backend import LOADING
from inference.backend import READY
from inference.backend import BackendStatus
from inference.backend import BackendUnavailable
from inference.backend import GenerationCancelled
from inference.backend import StepCallback
from inference.backend import scale_to_fit
from inference.checkpoints import CONFIGS_DIR  # noqa: F401 - re-exported: where the shipped configs live
from inference.checkpoints import SINGLE_FILE_CONFIGS
from inference.checkpoints import config_from_setting_or_name
from inference.checkpoints import weights_digest
from inference.diffusers_img2img import Img2Img
from inference.diffusers_img2img import prepare
from inference.loading import CPU_DRAFT_SIZE
from inference.loading import DTYPES
from inference.loading import explain_load_failure
from inference.loading import gpu_likely
from inference.loading import load_pipeline
from inference.loading import pick_device
from inference.loading import quiet_torchvision_notices
from inference.loading import say_cpu
from inference.optimizations import OPTIMIZATIONS
from inference.optimizations import OWN_LOOP
from inference.optimizations import circular_padding
from inference.optimizations import optimize
from inference.optimizations import warmup_runs
from inference.request import MAX_SEED
from inference.request import GenerationRequest
from inference.request import GenerationResult
from inference.samplers import SAMPLERS
from inference.samplers import SCHEDULES
from inference.samplers import effective_schedule

log = logging.getLogger(__name__)

MAX_BATCH = 8  # pictures painted in one pipeline call; a larger batch is painted in parts


class DiffusersBackend:
    """Paint with a StableDiffusionPipeline held in this process; one generation at a time.

    Args:
        model (`str`): hub id, diffusers folder or single checkpoint file.
        device (`str`, *optional*, defaults to ``"auto"``): ``auto``, ``cuda``, ``cuda:N``, ``mps`` or ``cpu``.
        dtype (`str`, *optional*, defaults to ``"auto"``): ``auto`` (fp16 on GPUs, fp32 on CPU), ``fp16``,
            ``bf16`` or ``fp32``.
        model_config (`str`, *optional*, defaults to ``"auto"``): for a single checkpoint file, ``sd21-base``
            or ``sd21-v``; ``auto`` goes by the file name (768, or 512/base) and else asks the UNet itself.
        max_size (`int`, *optional*, defaults to 0): when set, pictures are painted with their longer side at
            most this many pixels (reported in each result's info); 0 paints the requested size; None ("auto")
            paints drafts of at most `CPU_DRAFT_SIZE` pixels on a machine without a GPU and full size on one.
        offline (`bool`, *optional*): never contact the Hugging Face hub.
        cache_dir (`str`, *optional*): where hub downloads are kept.
        optimize (`str`, *optional*, defaults to ``"auto"``): ``none``, ``channels_last``, ``compile`` (channels_last
            plus torch.compile of the UNet and VAE decoder, compiled in the background before the model is ready),
            ``graphs`` (channels_last, our own denoise loop with cached prompt embeddings and the UNet replayed from
            CUDA graphs, captured before the model is ready; without CUDA the same loop with no graphs) or ``max``
            (graphs plus torch.compile of the UNet and VAE decoder).
        deepcache (`int`, *optional*, defaults to 0): reuse the UNet's deep features, recomputing them every this many
            steps (the ``DeepCache`` package; faster, slightly different pictures); 0 = off.
        compile_cache (`str`, *optional*): folder for torch.compile's inductor cache, so a restart does not recompile.
        warmup (`list`, *optional*, defaults to the model's own size): the (width, height, tiling) shapes that
            optimize=compile prepares for before the model is ready, one picture each (after which batches of any
            size reuse the compiled code).  A picture of another shape or tiling
            is compiled for when it is first asked for: about a minute on a GPU, once.
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        model_config: str = "auto",
        max_size: int | None = 0,
        offline: bool = False,
        cache_dir: str | None = None,
        optimize: str = "auto",
        deepcache: int = 0,
        compile_cache: str | None = None,
        warmup: list[tuple[int, int, bool]] | None = None,
    ):
        if dtype not in ("auto", *DTYPES):
            raise ValueError(f"dtype: unknown value {dtype!r}; valid: auto, {', '.join(DTYPES)}")
        if optimize not in ("auto", *OPTIMIZATIONS):
            raise ValueError(f"optimize: unknown value {optimize!r}; valid: auto, {', '.join(OPTIMIZATIONS)}")
        if deepcache and optimize in ("compile", *OWN_LOOP):
            raise ValueError(f"deepcache: cannot be combined with optimize={optimize} (it rewires the UNet that "
                             f"{'compile traces' if optimize == 'compile' else 'our own denoise loop calls'})")
        if deepcache < 0:
            raise ValueError(f"deepcache: expected 0 (off) or a cache interval of 1 or more, got {deepcache}")
        if model_config not in ("auto", *SINGLE_FILE_CONFIGS):
            raise ValueError(
                f"model_config: unknown value {model_config!r}; valid: auto, {', '.join(SINGLE_FILE_CONFIGS)}"
            )
        self.model = model
        self.device = device
        self.dtype = dtype
        self.model_config = model_config
        # "auto" is decided here, once, without importing torch (the app must start in well under a second), so the
        # cache keys made before the model loads already name the size pictures will be painted at.
        self.auto_draft = max_size is None and not gpu_likely(device)
        self.max_size = (CPU_DRAFT_SIZE if self.auto_draft else 0) if max_size is None else max_size
        self.offline = offline
        self.cache_dir = cache_dir
        self.optimize = optimize
        self.deepcache = deepcache
        self.compile_cache = compile_cache
        self.warmup = list(warmup or [])
        self.optimization = "none"
        self._status = BackendStatus(LOADING, "The image engine has not started yet.")
        self._settled = threading.Event()
        self._generate_lock = threading.Lock()
        self._tokenizer_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pipe: Any = None
        self._torch: Any = None
        self._schedulers: dict[tuple[str, str], Any] = {}
        self._base_scheduler: Any = None
        self._counter: Any = None
        self._denoiser: Any = None  # inference.denoise.Denoiser, with optimize=graphs or max
        self._identity: str | None = None
        self.notes: list[str] = []  # what loading chose and why (config, EMA weights), said in the ready message
        self._img2img = Img2Img()  # img2img and inpaint pipelines sharing the loaded pipeline's components
        self._said_plain_img2img = False

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the model in a background thread; returns at once."""
        if self._thread is None:
            self._status = BackendStatus(LOADING, f"Loading the image model {self.model}…")
            self._thread = threading.Thread(target=self._load, name="model-loader", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> BackendStatus:
        """Block until the model is ready or has failed (or the timeout passes); return the status."""
        self._settled.wait(timeout)
        return self._status

    def status(self) -> BackendStatus:
        return self._status

    def close(self) -> None:
        with self._generate_lock:
            self._pipe = None
            self._counter = None
            self._denoiser = None
            self._img2img.close()
            self._schedulers.clear()

    def _load(self) -> None:
        started = time.perf_counter()
        try:
            self._status = BackendStatus(LOADING, "Starting the image engine (importing PyTorch and diffusers)…")
            if (
                self.optimize in ("compile", "max")
                and self.compile_cache
                and "TORCHINDUCTOR_CACHE_DIR" not in os.environ
            ):
                # set before torch looks: inductor fixes its cache folder the first time it is asked for it, and
                # a cache in the instance folder lets a restart reuse the compiled kernels
                os.environ["TORCHINDUCTOR_CACHE_DIR"] = self.compile_cache
                os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
            quiet_torchvision_notices()
            import torch

            self._torch = torch
            device, dtype = pick_device(torch, self.device, self.dtype)
            if device == "cpu":
                say_cpu(str(dtype).split(".")[-1], self.max_size, self.auto_draft)
            self._status = BackendStatus(LOADING, f"Loading {self.model} onto {device}…")
            pipe, self.notes = load_pipeline(torch, self.model, dtype, device, self.model_config, self.offline,
                                             self.cache_dir, self._say)
            pipe = pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            self._base_scheduler = pipe.scheduler.config
            self.optimization, self._denoiser = optimize(torch, pipe, device, self.optimize, self.deepcache,
                                                         self.warmup, self.max_size, MAX_BATCH, self._say)
            # A private tokenizer for counting: a fast tokenizer's padding/truncation settings are shared state,
            # and counting from web threads while the painter encodes a prompt would change them mid-call.
            self._counter = copy.deepcopy(pipe.tokenizer)
            self._pipe = pipe
            self._status = BackendStatus(
                READY,
                f"Ready: {self.model} on {device} ({str(dtype).split('.')[-1]}, "
                f"optimized: {self.optimization}).{''.join(f' {n[0].upper()}{n[1:]}.' for n in self.notes)}",
            )
            log.info("image model ready in %.1f s: %s on %s", time.perf_counter() - started, self.model, device)
        except Exception as exc:  # noqa: BLE001 - any load failure becomes a status the pages can show
            self._status = explain_load_failure(self.model, exc, self.offline)
            log.error("image model failed to load: %s %s", self._status.message, self._status.hint)
            log.debug("load failure", exc_info=True)
        finally:
            self._settled.set()

    def _say(self, text: str) -> None:
        """Tell, while loading, what is happening (the status pages and `generate` show)."""
        self._status = BackendStatus(LOADING, text)

    def warmup_runs(self, native: tuple[int, int] = (512, 512)) -> list[tuple[int, int, bool, int]]:
        """The (width, height, tiling, batch) pictures optimize=compile paints to compile for: this backend's warm-up
        shapes, else the model's ``native`` size, as painted after max_size (inference/optimizations.py)."""
        return warmup_runs(self.warmup, self.max_size, native)

    def identity(self, memo_folder: str | Path | None = None) -> str:
        """What decides this backend's pictures, for cache keys and the API's model hash: the weights' content
        (SHA-256, computed once and remembered in ``memo_folder``/model-fingerprints.json by size and modification
        time), the config (``--model-config`` or the file name's choice, or "probed" when the checkpoint decides;
        a diffusers folder's configs are part of its content), the dtype setting, the size cap and DeepCache."""
        if self._identity is None:
            path = Path(os.path.expanduser(self.model))
            memo = Path(memo_folder) / "model-fingerprints.json" if memo_folder else None
            if path.is_file():
                config = config_from_setting_or_name(path, self.model_config)[0] or "probed"
            else:
                config = "folder" if path.is_dir() else "hub"
            self._identity = (f"{weights_digest(self.model, path, self.cache_dir, memo)}|config={config}"
                              f"|dtype={self.dtype}|max_size={self.max_size}"
                              + (f"|deepcache={self.deepcache}" if self.deepcache else ""))
        return self._identity

    # -- painting --------------------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int | None:
        counter = self._counter
        if counter is None:
            return None
        with self._tokenizer_lock:
            return len(counter(text, truncation=False)["input_ids"]) - 2

    def generate(self, requests: list[GenerationRequest],
                 on_step: StepCallback | None = None) -> list[GenerationResult]:
        """Paint every request; compatible requests (same size, steps, sampler, cfg, tiling) share a batch."""
        if self._pipe is None:
            raise BackendUnavailable(self._status)
        results: dict[int, GenerationResult] = {}
        groups: dict[tuple, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.batch_key(), []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), MAX_BATCH):
                chunk = indices[start : start + MAX_BATCH]
                for index, result in zip(
                    chunk, self._generate_batch([requests[i] for i in chunk], on_step), strict=False
                ):
                    results[index] = result
        return [results[i] for i in range(len(requests))]

    def _generate_batch(self, batch: list[GenerationRequest], on_step: StepCallback | None) -> list[GenerationResult]:
        torch = self._torch
        first = batch[0]
        width, height = scale_to_fit(first.width, first.height, self.max_size)
        seeds = [r.seed if r.seed != -1 else random.randint(0, MAX_SEED) for r in batch]
        cancelled = False

        def step_end(pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            nonlocal cancelled
            if on_step is not None and not cancelled:
                latents = tensors["latents"]
                try:
                    on_step(index + 1, pipe.num_timesteps, lambda: latents.detach().float().cpu().numpy())
                except GenerationCancelled:
                    cancelled = True
                    pipe._interrupt = True  # documented early stop (diffusers using-diffusers/callback.md)
            return tensors

        # img2img pictures are decoded and prepared (resized, masked) before the painter is taken
        inputs = [prepare(r, width, height) for r in batch] if first.is_img2img else None
        with self._generate_lock:
            pipe = self._pipe
            if pipe is None:
                raise BackendUnavailable(self._status)
            pipe.scheduler = self._scheduler(first.sampler_name, first.scheduler)
            started = time.perf_counter()
            denoiser = self._denoiser
            with circular_padding(torch, pipe, first.tiling), torch.inference_mode():
                if inputs is not None:
                    if denoiser is not None and not self._said_plain_img2img:
                        log.info("img2img pictures are painted with diffusers' own img2img pipelines: the fast "
                                 "denoise loop (--optimize %s) paints txt2img pictures only", self.optimize)
                        self._said_plain_img2img = True
                    images = self._img2img.paint(torch, pipe, batch, inputs, seeds, width, height, step_end)
                elif denoiser is not None:
                    images = denoiser.paint([r.prompt for r in batch], [r.negative_prompt for r in batch], seeds, width,
                                            height, first.steps, first.cfg_scale, first.tiling, on_step)
                else:
                    images = pipe(
                        prompt=[r.prompt for r in batch],
                        negative_prompt=[r.negative_prompt for r in batch],
                        width=width,
                        height=height,
                        num_inference_steps=first.steps,
                        guidance_scale=first.cfg_scale,
                        # one CPU generator per image: the same seed paints the same picture in any batch
                        generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                        callback_on_step_end=step_end,
                        callback_on_step_end_tensor_inputs=["latents"],
                        output_type="pil",
                    ).images
            seconds = time.perf_counter() - started
        if cancelled:
            raise GenerationCancelled("generation cancelled")
        results = []
        for index, (request, seed, image) in enumerate(zip(batch, seeds, images, strict=False)):
            info: dict[str, Any] = {"model": self.model, "sampler": f"{first.sampler_name} / {first.scheduler}"}
            if (width, height) != (request.width, request.height):
                info["scaled"] = (
                    f"{request.width}x{request.height} painted at {width}x{height} (max size {self.max_size})"
                )
            if request.restore_faces:
                info["unsupported"] = ["restore_faces"]
            if inputs is not None and inputs[index].notes:
                info["notes"] = list(inputs[index].notes)
            results.append(GenerationResult(image, seed, request.replace(seed=seed), info, seconds))
        return results

    def _scheduler(self, sampler_name: str, schedule: str) -> Any:
        key = (sampler_name, schedule)
        if key not in self._schedulers:
            import diffusers

            class_name, overrides, _ = SAMPLERS[sampler_name]
            cls = getattr(diffusers, class_name)
            schedule_overrides = SCHEDULES[effective_schedule(sampler_name, schedule)][1]
            self._schedulers[key] = cls.from_config(self._base_scheduler, **overrides, **schedule_overrides)
        return self._schedulers[key]

