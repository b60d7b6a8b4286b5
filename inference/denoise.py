"""Lanternslide's own denoise loop: the fast path of ``--optimize graphs`` and ``--optimize max``.

It paints what ``StableDiffusionPipeline.__call__`` paints (same latents, samplers, guidance and decoder, so the
same seed gives the same picture within rounding) with less of our own overhead around the networks:

- prompt embeddings are cached by prompt text (bounded, least recently used first out), so a slide painted again
  or a prompt shared by several players is encoded once;
- the UNet is called on fixed-shape input buffers, the batch padded up to a bucket (1, 2, 4 or 8 pictures), and on a
  CUDA GPU each (size, bucket, tiling) shape is captured once into a CUDA graph and replayed, which removes the
  kernel-launch overhead (about two thirds of an eager UNet step at batch 1 on an H100); a capture that fails (out
  of memory, say) falls back to calling the UNet, and says so in the log;
- the loop never waits for the GPU: step counts and previews are copied to pinned host memory in the background and
  handed to the progress callback when the GPU has got there (at most ``PREVIEW_LAG`` steps behind), so the host
  keeps the GPU queue full instead of stopping it every step.

Without CUDA (tests, CPU painting) the same loop runs with the UNet called directly and progress reported at once.
torch is passed in by the caller: importing this module costs nothing.
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

BUCKETS = (1, 2, 4, 8)
PREVIEW_LAG = 2  # steps the host may run ahead of the progress it reports
EMBED_CACHE = 256  # prompt texts whose embeddings are kept (~160 KB each for SD 2.1 in fp16)
MAX_GRAPHS = 16  # captured UNet shapes kept; the least recently used is dropped past this

Capture = Callable[[Callable[[], Any]], tuple[Any, Callable[[], None], Any]]


def bucket(count: int, buckets: tuple[int, ...] = BUCKETS) -> int:
    """The smallest bucket holding ``count`` pictures (``count`` itself past the largest bucket)."""
    return next((b for b in buckets if b >= count), count)


def cuda_capture(torch: Any, pool: Any) -> Capture:
    """Return a function that captures ``fn`` into a CUDA graph: (static output, replay, graph to keep alive).

    The recipe of torch.cuda.graphs: run ``fn`` on a side stream first (cuBLAS/cuDNN handles, autotuning, lazy
    module loading must not happen inside the capture), then capture it into ``pool``, shared by every graph (only
    one replays at a time, and each output is consumed before the next replay)."""

    def capture(fn: Callable[[], Any]) -> tuple[Any, Callable[[], None], Any]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            out = fn()
        return out, graph.replay, graph

    return capture


class PromptEmbeddings:
    """Text-encoder output by prompt text, least recently used dropped past ``limit`` entries."""

    def __init__(self, pipe: Any, limit: int = EMBED_CACHE):
        self.pipe = pipe
        self.limit = limit
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, text: str) -> Any:
        if text in self._cache:
            self.hits += 1
            self._cache.move_to_end(text)
            return self._cache[text]
        self.misses += 1
        embeds = self.pipe.encode_prompt(text, self.pipe._execution_device, 1, False)[0]
        if self.limit > 0:
            self._cache[text] = embeds
            while len(self._cache) > self.limit:
                self._cache.popitem(last=False)
        return embeds

    def __len__(self) -> int:
        return len(self._cache)


class UNetShape:
    """The UNet at one input shape: static input buffers, and either a captured graph or a direct call."""

    def __init__(self, torch: Any, unet: Any, rows: int, latent: tuple[int, int, int], context: tuple[int, int],
                 dtype: Any, device: Any, dynamic_batch: bool = False):
        self.sample = torch.zeros((rows, *latent), dtype=dtype, device=device)
        self.context = torch.zeros((rows, *context), dtype=dtype, device=device)
        self.timestep = torch.zeros((), dtype=torch.float32, device=device)
        if dynamic_batch and rows > 1:
            # one compilation for every bucket, instead of one for the first batch size and one for the rest
            torch._dynamo.mark_dynamic(self.sample, 0)
            torch._dynamo.mark_dynamic(self.context, 0)
        self.unet = unet
        self.out: Any = None
        self._replay: Callable[[], None] | None = None
        self._graph: Any = None

    def call(self) -> Any:
        return self.unet(self.sample, self.timestep, encoder_hidden_states=self.context, return_dict=False)[0]

    def capture(self, capture: Capture) -> None:
        self.out, self._replay, self._graph = capture(self.call)

    @property
    def captured(self) -> bool:
        return self._replay is not None

    def forward(self) -> Any:
        if self._replay is None:
            return self.call()
        self._replay()
        return self.out


class Denoiser:
    """Paint batches of pictures with the pipeline's parts and our own loop (see the module docstring).

    Args:
        torch (`module`): the torch module.
        pipe (`StableDiffusionPipeline`): loaded, on its device; its ``scheduler`` is the sampler used.
        graphs (`bool`): capture the UNet in CUDA graphs (ignored, with a log line, without CUDA).
        pad (`bool`, *optional*): pad batches to the buckets (default: when graphs are in use).
        compiled (`bool`, *optional*): the UNet is torch.compile'd: mark the batch dimension dynamic, so every bucket
            shares one compilation.
        embed_cache (`int`, *optional*): prompt texts whose embeddings are kept (0 = none).
        capture (`callable`, *optional*): how a UNet call is captured (default `cuda_capture`; tests on a CPU pass an
            emulation).
    """

    def __init__(self, torch: Any, pipe: Any, graphs: bool = True, pad: bool | None = None, compiled: bool = False,
                 embed_cache: int = EMBED_CACHE, capture: Capture | None = None):
        self.torch = torch
        self.pipe = pipe
        self.device = pipe._execution_device
        self.cuda = getattr(self.device, "type", str(self.device)) == "cuda"
        self.graphs = bool(graphs and (self.cuda or capture is not None))
        self.why_no_graphs = "" if self.graphs or not graphs else f"CUDA graphs need a CUDA GPU, not {self.device}"
        if self.why_no_graphs:
            log.info("%s: painting with the same loop, calling the UNet directly", self.why_no_graphs)
        self.pad = self.graphs if pad is None else pad
        self.compiled = compiled
        self.embeds = PromptEmbeddings(pipe, embed_cache)
        self._capture = capture
        self._shapes: OrderedDict[tuple, UNetShape] = OrderedDict()
        self._failed: set[tuple] = set()
        self._graph_pool: Any = None

    def describe(self) -> str:
        """What is in effect, for the status line."""
        parts = ["own loop", f"prompt cache {self.embeds.limit}"]
        parts.append("CUDA graphs per size and batch of " + "/".join(map(str, BUCKETS)) if self.graphs
                     else self.why_no_graphs or "no CUDA graphs")
        return ", ".join(parts)

    # -- the UNet at a shape ---------------------------------------------------------------------------------------

    def _unet_at(self, rows: int, latent: tuple[int, int, int], context: tuple[int, int], tiling: bool) -> UNetShape:
        key = (rows, latent, context, tiling)
        shape = self._shapes.get(key)
        if shape is not None:
            self._shapes.move_to_end(key)
            return shape
        shape = UNetShape(self.torch, self.pipe.unet, rows, latent, context, self.pipe.unet.dtype, self.device,
                          dynamic_batch=self.compiled)
        if self.graphs and key not in self._failed:
            try:
                shape.capture(self._capture or cuda_capture(self.torch, self._pool()))
                log.info("captured the UNet for %d rows of %s%s in a CUDA graph", rows, latent,
                         " (tiling)" if tiling else "")
            except Exception as exc:  # noqa: BLE001 - a failed capture paints without the graph
                self._failed.add(key)
                shape.out = shape._replay = shape._graph = None
                log.warning("could not capture the UNet for %d rows of %s in a CUDA graph (%s: %s); calling it "
                            "directly for this shape", rows, latent, type(exc).__name__, exc)
        self._shapes[key] = shape
        while len(self._shapes) > MAX_GRAPHS:
            self._shapes.popitem(last=False)
        return shape

    def _pool(self) -> Any:
        if self._graph_pool is None:
            self._graph_pool = self.torch.cuda.graph_pool_handle()
        return self._graph_pool

    def graph_count(self) -> int:
        return sum(1 for s in self._shapes.values() if s.captured)

    # -- painting ----------------------------------------------------------------------------------------------

    def paint(self, prompts: list[str], negatives: list[str], seeds: list[int], width: int, height: int, steps: int,
              guidance: float, tiling: bool = False,
              on_step: Callable[[int, int, Callable[[], Any]], None] | None = None) -> list[Any]:
        """Paint ``len(prompts)`` pictures (PIL images) of one shape and setting; ``on_step(step, total, latents)``
        as the backend's protocol says.  The caller holds circular padding on while ``tiling``."""
        torch, pipe = self.torch, self.pipe
        count = len(prompts)
        rows_per_half = bucket(count) if self.pad else count
        cfg = guidance > 1 and pipe.unet.config.time_cond_proj_dim is None
        cond = torch.cat([self.embeds.get(p) for p in prompts])
        uncond = torch.cat([self.embeds.get(n) for n in negatives]) if cfg else None
        scheduler = pipe.scheduler
        scheduler.set_timesteps(steps, device=self.device)
        timesteps = scheduler.timesteps
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        latents = pipe.prepare_latents(count, pipe.unet.config.in_channels, height, width, cond.dtype, self.device,
                                       generators)
        extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
        rows = rows_per_half * (2 if cfg else 1)
        unet = self._unet_at(rows, tuple(latents.shape[1:]), tuple(cond.shape[1:]), tiling)
        halves = [(0, uncond), (rows_per_half, cond)] if cfg else [(0, cond)]
        unet.sample.zero_()  # padding rows: any finite input (rows never mix); zeros are the cheapest
        for start, embeds in halves:
            unet.context[start:start + count].copy_(embeds)
            if rows_per_half > count:
                unet.context[start + count : start + rows_per_half].copy_(
                    embeds[-1:].expand(rows_per_half - count, -1, -1)
                )

        total = len(timesteps)
        progress = Progress(torch, self.cuda, on_step, total, latents) if on_step is not None else None
        for index, t in enumerate(timesteps):
            model_input = (
                scheduler.scale_model_input(latents, t) if hasattr(scheduler, "scale_model_input") else latents
            )
            for start, _ in halves:
                unet.sample[start:start + count].copy_(model_input)
            unet.timestep.copy_(t)
            out = unet.forward()
            if cfg:
                noise_uncond, noise_text = out[:count], out[rows_per_half:rows_per_half + count]
                noise = noise_uncond + guidance * (noise_text - noise_uncond)
            else:
                noise = out[:count].clone()  # a replay overwrites its output; schedulers may keep what they get
            latents = scheduler.step(noise, t, latents, **extra, return_dict=False)[0]
            if progress is not None:
                progress.stepped(index + 1, latents)
        image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False, generator=generators)[0]
        if progress is not None:
            progress.finish()
        return pipe.image_processor.postprocess(image, output_type="pil", do_denormalize=[True] * count)

    # -- warming up --------------------------------------------------------------------------------------------

    def warm_up(self, shapes: list[tuple[int, int, bool]], tiled: Callable[[bool], Any],
                say: Callable[[str], None] = lambda text: None, max_batch: int = BUCKETS[-1]) -> int:
        """Paint each (width, height, tiling) shape once per bucket up to ``max_batch`` (two steps each), so that
        captures, compilations and first-use costs (cuDNN, lazy kernel loading) happen before the model reports
        ready; ``tiled(flag)`` is the caller's circular-padding context.  Returns the pictures painted."""
        runs = [(w, h, t, b) for w, h, t in shapes for b in BUCKETS if b <= max_batch]
        for number, (width, height, tiling, batch) in enumerate(runs, 1):
            say(f"Preparing the fast painter, {number} of {len(runs)}: {width}x{height}"
                f"{', tiled' if tiling else ''}, {batch} at once")
            with tiled(tiling), self.torch.inference_mode():
                self.paint(["warm up"] * batch, [""] * batch, list(range(batch)), width, height, 2, 7.0, tiling)
        return len(runs)


class Progress:
    """Step reports for one picture.  On CUDA the latents of each step are copied to pinned host memory without
    waiting, and a step is reported once the GPU has finished it, or when the host is ``PREVIEW_LAG`` steps ahead
    (then waiting only for that older step, while newer ones keep the GPU busy).  Elsewhere, reported at once."""

    def __init__(self, torch: Any, cuda: bool, on_step: Callable[[int, int, Callable[[], Any]], None], total: int,
                 latents: Any):
        self.torch, self.cuda, self.on_step, self.total = torch, cuda, on_step, total
        self.pending: deque[tuple[int, Any, Any]] = deque()
        if cuda:
            self.ring = [torch.empty(latents.shape, dtype=latents.dtype, pin_memory=True)
                         for _ in range(PREVIEW_LAG + 2)]

    def stepped(self, step: int, latents: Any) -> None:
        if not self.cuda:
            self.on_step(step, self.total, functools.partial(_to_numpy, latents))
            return
        host = self.ring[step % len(self.ring)]
        host.copy_(latents, non_blocking=True)
        done = self.torch.cuda.Event()
        done.record()
        self.pending.append((step, host, done))
        while self.pending and (len(self.pending) > PREVIEW_LAG or self.pending[0][2].query()):
            self._report()

    def finish(self) -> None:
        while self.pending:
            self._report()

    def _report(self) -> None:
        step, host, done = self.pending.popleft()
        done.synchronize()
        self.on_step(step, self.total, lambda: host.float().numpy())


def _to_numpy(latents: Any) -> Any:
    """Latents as a float32 numpy array on the host (for previews on a CPU)."""
    return latents.detach().float().cpu().numpy()
