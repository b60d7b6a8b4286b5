"""Speed-ups of the in-process diffusers backend (``--optimize``): the levels, and the warm-up that prepares them.

Cumulative: channels_last memory layout for the UNet and VAE; then torch.compile of the UNet and the VAE decoder.
"auto" is graphs on CUDA (measured on an H100 with bench/gpu_check.sh, README "Performance": a picture through the
service 0.67 s -> 0.31 s, the first after ready 1.5 s -> 0.38 s, ready 4 s after loading) and none elsewhere;
channels_last on CUDA with DeepCache (which rewires the UNet the graphs capture).  compile and max are opt-in: they
compile for minutes at the first start.  "graphs" and "max" paint with our own denoise loop
(inference/denoise.py): channels_last, prompt embeddings cached, no host sync per step, the UNet replayed from CUDA
graphs per size and batch bucket; "max" adds torch.compile of the UNet (inside the graphs) and of the VAE decoder.
Compiling and capturing happen while the model loads, by painting warm-up pictures (`warmup_runs`), so no player's
picture waits for them.  torch comes from the backend (inference/diffusers_backend.py), which imports it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

from inference.backend import scale_to_fit

log = logging.getLogger(__name__)

OPTIMIZATIONS = ("none", "channels_last", "compile", "graphs", "max")
OWN_LOOP = ("graphs", "max")
# torch.compile's backend for optimize=max; the tests set "eager" to check what dynamo compiles after warm-up without
# paying for inductor's code generation on a CPU (inductor itself is covered by the optimize=compile test)
COMPILE_BACKEND = "inductor"


def optimize(torch: Any, pipe: Any, device: str, requested: str, deepcache: int, warmup: list[tuple[int, int, bool]],
             max_size: int, max_batch: int, say: Callable[[str], None]) -> tuple[str, Any]:
    """Apply the speed-ups asked for (``requested``: auto or one of `OPTIMIZATIONS`; ``deepcache``: DeepCache's
    interval, 0 = off) to the loaded ``pipe`` on ``device``, painting the warm-up pictures they need (`warmup_runs`
    of ``warmup`` and ``max_size``; batches up to ``max_batch`` for the own loop) and telling ``say`` how far it is.
    Return the level in effect, as the ready message names it, and inference/denoise.py's Denoiser for graphs and max
    (else None)."""
    level = chosen_level(requested, device, deepcache)
    if level in ("channels_last", "compile", *OWN_LOOP):
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if level in OWN_LOOP:
        return prepare_own_loop(torch, pipe, level, warmup, max_size, max_batch, say)
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
        runs = warmup_runs(warmup, max_size, (native, native))
        for number, (width, height, tiling, batch) in enumerate(runs, 1):
            say(f"Compiling the model for speed, {number} of {len(runs)}: {width}x{height}"
                f"{', tiled' if tiling else ''}{f', {batch} at once' if batch > 1 else ''} (the first "
                "start takes a few minutes; later starts reuse the compiled code)…")
            with circular_padding(torch, pipe, tiling), torch.inference_mode():
                pipe(prompt=["warm up"] * batch, width=width, height=height, num_inference_steps=2,
                     generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)], output_type="pil")
        log.info("compiled the model (%d warm-up pictures) in %.1f s", len(runs), time.perf_counter() - started)
    if deepcache:
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=deepcache, cache_branch_id=0)
        helper.enable()
        level += f" + DeepCache every {deepcache} steps"
    return level, None


def chosen_level(requested: str, device: str, deepcache: int = 0) -> str:
    """The level ``requested`` means on ``device``: "auto" is graphs on CUDA (channels_last with DeepCache, which
    cannot be captured) and none elsewhere (the own loop gains nothing without graphs on a CPU)."""
    if requested != "auto":
        return requested
    if not device.startswith("cuda"):
        return "none"
    return "channels_last" if deepcache else "graphs"


def prepare_own_loop(torch: Any, pipe: Any, level: str, warmup: list[tuple[int, int, bool]], max_size: int,
                     max_batch: int, say: Callable[[str], None]) -> tuple[str, Any]:
    """Set up inference/denoise.py's loop (and for "max" compile the UNet and VAE decoder), and paint every
    warm-up shape once per batch bucket, so captures and compilations happen before the model is ready.  Return the
    level as the ready message names it, and the Denoiser."""
    from inference.denoise import Denoiser

    started = time.perf_counter()
    if level == "max":
        pipe.unet = torch.compile(pipe.unet, backend=COMPILE_BACKEND)
        pipe.vae.decode = torch.compile(pipe.vae.decode, backend=COMPILE_BACKEND)
    denoiser = Denoiser(torch, pipe, graphs=True, compiled=level == "max")
    native = pipe.unet.config.sample_size * pipe.vae_scale_factor
    shapes = list(dict.fromkeys((w, h, t) for w, h, t, _ in warmup_runs(warmup, max_size, (native, native))))
    if level == "max":
        suffix = " (compiling: the first start takes a few minutes; later starts reuse the compiled code)…"
    else:
        suffix = "…"
    runs = denoiser.warm_up(shapes, lambda tiling: circular_padding(torch, pipe, tiling),
                            lambda text: say(text + suffix), max_batch)
    log.info("prepared the fast painter (%d warm-up pictures, %d CUDA graphs) in %.1f s", runs,
             denoiser.graph_count(), time.perf_counter() - started)
    return f"{level} ({denoiser.describe()})", denoiser


def warmup_runs(warmup: list[tuple[int, int, bool]], max_size: int,
                native: tuple[int, int] = (512, 512)) -> list[tuple[int, int, bool, int]]:
    """The (width, height, tiling, batch) pictures painted to compile for: each ``warmup`` shape (or else the
    model's ``native`` size, 512 for SD 2.1-base and 768 for SD 2.1) as painted after ``max_size``, one picture
    each: its compiled code then takes any batch size without compiling again (see _compile_once)."""
    wanted = warmup or [(*native, False)]
    shapes = dict.fromkeys((*scale_to_fit(w, h, max_size), bool(t)) for w, h, t in wanted)
    return [(*shape, 1) for shape in shapes]


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
