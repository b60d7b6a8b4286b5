"""bench/gpu.py's graphs, max, compile, regional and deepcache groups: the pipeline made faster (our own denoise
loop in CUDA graphs, torch.compile, DeepCache), each variant a row of the Bench (bench/gpu_core.py) it is given."""

from __future__ import annotations

import time

from bench.gpu_core import NEGATIVE
from bench.gpu_core import PROMPT
from bench.gpu_core import Bench


def eager(bench: Bench, model: str, size: int, groups: list[str]) -> None:
    """The plain, deepcache and channels_last groups, on one eager pipeline: the plain pictures that the other
    variants are compared with (batch 1 and 4), plain at --steps, 10 and 15 steps, DeepCache, channels_last batches."""
    steps = bench.args.steps
    pipe = bench.build(model)
    if "plain" in groups:
        for batch in (1, 4):
            bench.attempt(model, f"plain reference, batch {batch}",
                          lambda batch=batch: bench.reference(pipe, model, size, steps, batch))
        for n in dict.fromkeys((steps, 10, 15)):
            label = "plain (SDPA)" if n == steps else f"plain, {n} steps"
            bench.attempt(model, label, lambda n=n, label=label: bench.report(
                model, label, bench.measure(pipe, size, n, 1), size))
    if "deepcache" in groups:
        bench.attempt(model, "DeepCache", lambda: deepcache(bench, pipe, model, size, steps))
    if "channels_last" in groups:
        pipe.unet.to(memory_format=bench.torch.channels_last)
        pipe.vae.to(memory_format=bench.torch.channels_last)
        for batch in (1, 2, 4, 8):
            label = "channels_last" + (f", batch {batch}" if batch > 1 else "")
            bench.attempt(model, label, lambda batch=batch, label=label: bench.report(
                model, label, bench.measure(pipe, size, steps, batch), size))


def own_loop(bench: Bench, model: str, size: int, steps: int, compiled: bool, dtype: str | None = None,
             batches: tuple[int, ...] = (1, 4)) -> None:
    """Our own denoise loop on the pipeline's parts: CUDA graphs of the eager (or compiled) UNet, at each of
    ``batches``, in the run's dtype or ``dtype``, pictures compared with the plain pipeline's in the run's
    dtype."""
    torch = bench.torch
    if dtype:  # the plain pictures in the run's dtype, from a pipeline of its own
        for batch in batches:
            bench.reference(None, model, size, steps, batch)
    pipe = bench.build(model, dtype)
    if not dtype:  # the plain pictures, before the UNet is compiled
        for batch in batches:
            bench.reference(pipe, model, size, steps, batch)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    name = "max (compile + graphs)" if compiled else "graphs (own loop)" + (f", {dtype}" if dtype else "")
    started = time.perf_counter()
    if compiled:
        pipe.unet = torch.compile(pipe.unet)
        pipe.vae.decode = torch.compile(pipe.vae.decode)
    denoiser = paint_rows(bench, pipe, model, size, steps, name, batches, compiled, started)
    bench.note(f"{name}: {denoiser.graph_count()} CUDA graphs captured; prompt cache "
               f"{denoiser.embeds.hits} hits / {denoiser.embeds.misses} misses")


def paint_rows(bench: Bench, pipe, model: str, size: int, steps: int, name: str, batches: tuple[int, ...],
               compiled: bool = False, started: float | None = None, notes: bool = True):
    """A fresh Denoiser on ``pipe`` (so its CUDA graphs are captured now, under whatever the caller holds), a
    row per batch size, pictures compared with the plain pipeline's; returns the Denoiser.  ``notes``: say how
    long the capture took and why there are no graphs."""
    from inference.denoise import Denoiser

    torch = bench.torch
    started = time.perf_counter() if started is None else started
    denoiser = Denoiser(torch, pipe, graphs=True, compiled=compiled)
    if denoiser.why_no_graphs and notes:
        bench.note(f"{name}: {denoiser.why_no_graphs}: the same loop without them")
    for batch in batches:
        seeds = list(range(batch))

        def paint(batch=batch, seeds=seeds):
            return denoiser.paint([PROMPT] * batch, [NEGATIVE] * batch, seeds, size, size, steps, 7.5)

        with torch.inference_mode():
            images = paint()  # captures (and compiles) this shape
            if batch == batches[0] and notes:
                bench.note(f"{name}: compiling, capturing and the first picture took "
                           f"{time.perf_counter() - started:.0f} s, not counted in the figures")
            diff = bench.difference(model, batch, images)
            text = bench.timed(lambda: denoiser.embeds.get(PROMPT))
            shape = next(reversed(denoiser._shapes.values()))
            step = bench.timed(shape.forward)
            latents = torch.randn(batch, 4, size // pipe.vae_scale_factor, size // pipe.vae_scale_factor,
                                  device=bench.device, dtype=pipe.vae.dtype)
            # called as the loop calls it: another signature would make a compiled decoder compile again
            vae = bench.timed(lambda latents=latents, seeds=seeds: pipe.vae.decode(
                latents / pipe.vae.config.scaling_factor, return_dict=False,
                generator=[torch.Generator("cpu") for _ in seeds]))
            if bench.cuda:
                torch.cuda.reset_peak_memory_stats()
            picture = bench.timed(paint)
        label = name + (f", batch {batch}" if batch > 1 else "")
        bench.report(model, label, {"text": text, "step": step, "vae": vae, "picture": picture, "batch": batch,
                                    "steps": steps, "peak": bench.peak_memory(), "diff": diff}, size)
    return denoiser


def deepcache(bench: Bench, pipe, model: str, size: int, steps: int) -> None:
    """DeepCache on ``pipe``, deep features recomputed every 3 and every 5 steps (needs the `DeepCache` package)."""
    from DeepCache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    for interval in (3, 5):
        helper.set_params(cache_interval=interval, cache_branch_id=0)
        helper.enable()
        try:
            bench.report(model, f"DeepCache every {interval}", bench.measure(pipe, size, steps, 1, parts=False), size)
        finally:
            helper.disable()


def compiled_pipeline(bench: Bench, model: str, size: int, steps: int, regional: bool) -> None:
    """channels_last + torch.compile of the UNet (or, ``regional``, of its repeated blocks) and of the VAE decoder,
    batch 1 (and 4 for the whole-UNet compile), the compile time a note."""
    torch = bench.torch
    pipe = bench.build(model)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    started = time.perf_counter()
    if regional:
        pipe.unet.compile_repeated_blocks()
    else:
        pipe.unet = torch.compile(pipe.unet)
    pipe.vae.decode = torch.compile(pipe.vae.decode)
    name = "regional compile" if regional else "compile"
    result = bench.measure(pipe, size, steps, 1)
    bench.note(f"{name}: compiling and the warm-up runs took {time.perf_counter() - started:.0f} s, "
               "not counted in the figures")
    bench.report(model, f"channels_last + {name}", result, size)
    if not regional:
        bench.report(model, f"{name}, batch 4", bench.measure(pipe, size, steps, 4), size)
    del pipe
