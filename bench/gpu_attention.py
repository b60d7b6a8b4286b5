"""bench/gpu.py's precision and attention groups: the other half precision, and each SDPA backend forced, on the
graphs level and the plain pipeline, pictures compared with the run's plain pipeline; rows of the Bench
(bench/gpu_core.py) they are given."""

from __future__ import annotations

import functools

from bench.gpu_core import OTHER_DTYPE
from bench.gpu_core import SDPA_BACKENDS
from bench.gpu_core import Bench
from bench.gpu_optimized import own_loop
from bench.gpu_optimized import paint_rows


def precision(bench: Bench, model: str, size: int, steps: int) -> None:
    """The precision group: the run's other half precision (bf16 next to fp16, or next to a CPU's fp32) on the
    levels of --precision-levels: graphs at each of --precision-batches, and the plain pipeline at batch 1."""
    other = OTHER_DTYPE[bench.args.dtype]
    levels = bench.args.precision_levels.split(",")
    if "graphs" in levels:
        batches = tuple(int(b) for b in bench.args.precision_batches.split(","))
        bench.attempt(model, f"graphs (own loop), {other}",
                      lambda: own_loop(bench, model, size, steps, compiled=False, dtype=other, batches=batches))
        bench.release()
    if "plain" in levels:
        bench.attempt(model, f"plain (SDPA), {other}", lambda: plain_in(bench, model, size, steps, other))
        bench.release()


def plain_in(bench: Bench, model: str, size: int, steps: int, dtype: str) -> None:
    """The plain pipeline in ``dtype``, batch 1, its picture compared with the plain one in the run's dtype."""
    bench.reference(None, model, size, steps, 1)
    pipe = bench.build(model, dtype)
    result = bench.measure(pipe, size, steps, 1)
    bench.report(model, f"plain (SDPA), {dtype}", {**result, "diff": bench.difference(model, 1, result["pictures"])},
                 size)
    del pipe


def attention(bench: Bench, model: str, size: int, steps: int, level: str,
              backends: tuple[str, ...] = SDPA_BACKENDS) -> None:
    """The attention group on one level (graphs: our own loop, channels_last, the UNet in CUDA graphs where there
    is CUDA; plain: the plain pipeline): each SDPA backend of ``backends`` forced, batch 1, a row per backend (see
    ``forced``); a backend that cannot run a small attention here is a row saying so at once."""
    bench.reference(None, model, size, steps, 1)
    pipe = bench.build(model)
    if level == "graphs":
        pipe.unet.to(memory_format=bench.torch.channels_last)
        pipe.vae.to(memory_format=bench.torch.channels_last)
    for backend in backends:
        label = f"{level}, SDPA {backend}"
        why_not = cannot_run(bench, backend, pipe.unet.dtype)
        if why_not:
            bench.failed(model, label, f"failed: {why_not}")
            continue
        bench.attempt(model, label, lambda label=label, backend=backend: forced(
            bench, pipe, backend, label, lambda name: attention_row(bench, pipe, model, size, steps, level, name)))
        if bench.cuda:  # the row's CUDA graphs and their memory pool
            bench.release()


def cannot_run(bench: Bench, backend: str, dtype) -> str:
    """Why SDPA ``backend`` cannot run even a small attention on this device in ``dtype`` ("" when it can)."""
    from torch.nn.attention import SDPBackend
    from torch.nn.attention import sdpa_kernel

    probe = bench.torch.randn(1, 2, 16, 64, device=bench.device, dtype=dtype)
    try:
        with sdpa_kernel(getattr(SDPBackend, backend)):
            bench.torch.nn.functional.scaled_dot_product_attention(probe, probe, probe)
    except RuntimeError as exc:
        why = (str(exc).splitlines() or [""])[0].split(". ")[0]  # torch's first sentence says it
        return f"{backend} cannot run on {bench.device} in {str(dtype).split('.')[-1]}: {why}"
    return ""


def attention_row(bench: Bench, pipe, model: str, size: int, steps: int, level: str, name: str) -> None:
    if level == "graphs":
        denoiser = paint_rows(bench, pipe, model, size, steps, name, (1,), notes=False)
        if bench.cuda and not denoiser.graph_count():
            bench.note(f"{name}: no CUDA graph captured (see the log): the UNet was called directly")
    else:
        result = bench.measure(pipe, size, steps, 1)
        bench.report(model, name, {**result, "diff": bench.difference(model, 1, result["pictures"])}, size)


def forced(bench: Bench, pipe, backend: str, label: str, row) -> None:
    """``row(label)`` with SDPA forced to ``backend`` for every attention (text encoder, UNet, VAE) from start to
    end. Where that cannot run, ``row(label + ", UNet only")`` with the backend forced on every UNet call (its
    warm-up and CUDA-graph capture included) and the rest on torch's own choice, and a note says why; where
    the UNet cannot run on it either, the error says so (and attempt() makes it the row)."""
    from torch.nn.attention import SDPBackend
    from torch.nn.attention import sdpa_kernel

    kernel = getattr(SDPBackend, backend)
    try:
        with sdpa_kernel(kernel):
            row(label)
        return
    except RuntimeError as exc:  # "No available kernel", "No viable backend": this backend cannot run it
        everything = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
    bench.release()
    unet = pipe.unet
    forward = unet.forward

    @functools.wraps(forward)
    def unet_on_backend(*args, **kwargs):
        with sdpa_kernel(kernel):
            return forward(*args, **kwargs)

    unet.forward = unet_on_backend
    try:
        row(f"{label}, UNet only")
    except RuntimeError as exc:
        alone = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
        raise RuntimeError(f"{backend} cannot run here: {alone}" if alone == everything else
                           f"{backend} on every attention: {everything}; on the UNet alone: {alone}") from exc
    finally:
        del unet.forward
    bench.note(f"{label}: forcing it on every attention failed ({everything}); the UNet alone ran on it, the "
               "text encoder and the VAE on torch's own choice")
