"""Time SD 2.1 on this device: text encoding, one UNet step, VAE decode and whole pictures, per optimization.

It builds the real architectures from the configs shipped in inference/configs (SD 2.1-base at 512 and SD 2.1
768-v at 768) with random weights (weights do not change the time) in fp16 (or --dtype bf16) and times these
variant groups (--only picks some):

    plain          the plain pipeline (SDPA attention), DPM++ 2M Karras at 20, 10 and 15 steps
    channels_last  + channels_last memory layout, batch 1, 2, 4 and 8
    deepcache      + DeepCache, deep features recomputed every 3 and every 5 steps (lossy; needs `DeepCache`)
    compile        + torch.compile of the UNet and the VAE decoder, batch 1 and 4 (compile time printed apart)
    regional       + diffusers' regional compile of the UNet's repeated blocks (compile_repeated_blocks)
    graphs         + Lanternslide's own denoise loop (inference/denoise.py): prompt embeddings cached, no host sync
                   per step, the eager UNet replayed from a CUDA graph per (size, batch bucket), batch 1 and 4
    max            graphs + torch.compile of the UNet (inside the graphs) and of the VAE decoder, batch 1 and 4
    service        what a player gets: Lanternslide's own backend and generation service (--service-levels, default
                   auto, graphs and max) painting with live previews: the first picture after the model reports
                   ready, one picture, 4 players at once, 8 players at once, and a picture already painted asked
                   for again (our own overhead: job lookup and the browser encoding, first view and later views)
    precision      the other half precision (bf16 next to an fp16 run; bf16 next to an fp32 run on a CPU): the graphs
                   level, batch 1 and 4, and the plain pipeline, pictures compared with the run's plain pipeline
    attention      each SDPA backend forced (torch.nn.attention.sdpa_kernel: FLASH_ATTENTION, EFFICIENT_ATTENTION,
                   CUDNN_ATTENTION, MATH) on the graphs level and the plain pipeline, batch 1, the backend held
                   from warm-up and capture on (a CUDA graph replays the kernels chosen when it was captured); where
                   the backend cannot run every attention (the VAE's 512-wide head, say) but can run the UNet's, the
                   row is "UNet only" (text encoder and VAE on torch's own choice) and a note says why; a backend
                   that cannot run here at all is a row saying so

Pictures of graphs, max, precision and attention are compared with the plain pipeline's at the same seed and in
the run's dtype (max/mean pixel difference).
--budget stops starting variants when their time would not fit (each skipped one is a row), and the Markdown table
is rewritten after every row, so a run cut short still leaves its figures.

Warm-up runs are excluded; every figure is the median of --repeats runs; the device and versions are printed.
Without CUDA it runs the tiny test pipeline at 64x64 (it proves the code path, not speed); --models sd21-base
--size 128 runs the real architecture on a CPU at a small size.

    python -m bench.gpu                                        # CUDA: both shapes, every group
    python -m bench.gpu --models sd21-base --only plain,compile --markdown table.md
    python -m bench.gpu --device cpu --models sd21-base --size 128 --repeats 1 --only plain,service

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inference.encodings import BrowserEncodings
from inference.encodings import EncodeAhead

ROOT = Path(__file__).resolve().parent.parent

GROUPS = ("plain", "channels_last", "deepcache", "compile", "regional", "graphs", "max", "service", "precision",
          "attention")
SERVICE_LEVELS = ("auto", "graphs", "max")
SDPA_BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")  # torch.nn.attention.SDPBackend
OTHER_DTYPE = {"fp16": "bf16", "bf16": "fp16", "fp32": "bf16"}  # what the precision group paints in
DTYPES = ("fp16", "bf16", "fp32")
# seconds a variant needs on a GPU at least (compile warm-ups; SD 2.1-base at 512, 3 repeats), for --budget; the
# others need NEEDS_DEFAULT
NEEDS = {"compile": 150, "regional": 90, "max": 150, "service max": 90,
         **{f"graphs (own loop), {d}": 20 for d in DTYPES}, **{f"plain (SDPA), {d}": 15 for d in DTYPES},
         "attention graphs": 10, "attention plain": 10,
         **{f"{level}, SDPA {b}": 10 for level in ("graphs", "plain") for b in SDPA_BACKENDS}}
NEEDS_DEFAULT = 25
SIZES = {"tiny": 64, "sd21-base": 512, "sd21-v": 768}
# FLOPs per picture part, from ../shared/reference/performance.md section 2.1 (2 FLOP per multiply-add).
FLOPS = {512: {"unet_cfg_step": 1.608e12, "vae": 2.514e12, "text": 0.09e12},
         768: {"unet_cfg_step": 4.298e12, "vae": 5.754e12, "text": 0.09e12}}
PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "4090": 165e12}
PROMPT = "a lighthouse on a cliff at night, oil painting"
NEGATIVE = "blurry"
COLUMNS = ("model", "variant", "batch", "steps", "text ms", "step ms", "it/s", "VAE ms", "s/image", "images/s",
           "peak GiB", "of floor", "px diff max/mean")
SERVICE_COLUMNS = ("model", "optimize", "ready after s", "first picture after ready s", "one picture s",
                   "4 players s/picture", "4 players vs one", "8 players images/s", "painted again ms (first/later)",
                   "peak GiB")


class Bench:
    """One device, one dtype: builds pipelines, times them and keeps the rows for the table."""

    def __init__(self, torch, args: argparse.Namespace):
        self.torch = torch
        self.args = args
        self.device = args.device
        self.cuda = self.device.startswith("cuda")
        self.dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
        self.dtype = self.dtypes[args.dtype]
        self.name = (
            torch.cuda.get_device_name(0) if self.cuda else f"CPU ({platform.processor() or platform.machine()})"
        )
        self.peak_flops = next((v for k, v in PEAK.items() if k in self.name), None) if self.cuda else None
        self.workdir = Path(tempfile.mkdtemp(prefix="lanternslide-gpu-"))
        self.rows: list[tuple[str, ...]] = []
        self.service_rows: list[tuple[str, ...]] = []
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.references: dict[tuple[str, int], object] = {}  # (model, batch) -> the plain pipeline's pixels
        self.header = ""

    # -- pipelines -----------------------------------------------------------------------------------------------

    def build(self, model: str, dtype: str | None = None):
        """A pipeline of the real SD 2.1 shapes with random weights (or the tiny test pipeline), in ``dtype`` (default
        the run's): the same weights in every build, cast from the same float32 values."""
        torch = self.torch
        torch.manual_seed(0)  # the same random weights in every build, so pictures compare across variants
        from diffusers import AutoencoderKL
        from diffusers import DPMSolverMultistepScheduler
        from diffusers import StableDiffusionPipeline
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextConfig
        from transformers import CLIPTextModel
        from transformers import CLIPTokenizer

        if model == "tiny":
            from tests.tiny_pipeline import build_tiny_pipeline

            folder = self.workdir / "tiny"
            if not folder.exists():
                build_tiny_pipeline(folder)
            pipe = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None)
        else:
            folder = ROOT / "inference" / "configs" / model
            with torch.device(self.device):
                unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
                vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
                text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
            pipe = StableDiffusionPipeline(
                unet=unet, vae=vae, text_encoder=text,
                tokenizer=CLIPTokenizer.from_pretrained(str(ROOT / "inference" / "configs" / "tokenizer")),
                scheduler=DPMSolverMultistepScheduler.from_pretrained(str(folder / "scheduler")),
                safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
        pipe = pipe.to(device=self.device, dtype=self.dtypes[dtype] if dtype else self.dtype)
        pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def release(self) -> None:
        import gc

        gc.collect()
        if self.cuda:
            self.torch.cuda.empty_cache()
        self.torch._dynamo.reset()

    # -- timing --------------------------------------------------------------------------------------------------

    def timed(self, fn, repeats: int | None = None) -> float:
        """Median seconds of ``fn`` over ``repeats`` runs, after one warm-up run (excluded)."""
        fn()
        times = []
        for _ in range(repeats or self.args.repeats):
            self.sync()
            started = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def measure(self, pipe, size: int, steps: int, batch: int, parts: bool = True) -> dict:
        """Time the parts and the whole; with ``parts`` False (DeepCache, whose wrapper needs the scheduler's own
        timesteps) the UNet step is derived from the whole picture less text encoding and VAE decode."""
        torch = self.torch
        pictures: list = []

        def whole() -> None:  # seeds 0..batch-1, as the plain pictures that the others are compared with
            generator = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
            pictures[:] = pipe(prompt=[PROMPT] * batch, negative_prompt=[NEGATIVE] * batch, width=size, height=size,
                               num_inference_steps=steps, generator=generator, output_type="pil").images

        with torch.inference_mode():
            embeds, negative = pipe.encode_prompt(PROMPT, self.device, 1, True, NEGATIVE)
            text = self.timed(lambda: pipe.encode_prompt(PROMPT, self.device, 1, True, NEGATIVE))
            latent = size // pipe.vae_scale_factor
            step = None
            if parts:
                sample = torch.randn(2 * batch, 4, latent, latent, device=self.device, dtype=pipe.unet.dtype)
                context = torch.cat([negative, embeds]).repeat(batch, 1, 1)
                step = self.timed(lambda: pipe.unet(sample, 500, encoder_hidden_states=context))
            latents = torch.randn(batch, 4, latent, latent, device=self.device, dtype=pipe.vae.dtype)
            vae = self.timed(lambda: pipe.vae.decode(latents / pipe.vae.config.scaling_factor))
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            picture = self.timed(whole)
        if step is None:
            step = max(1e-9, (picture - text - vae) / steps)
        return {"text": text, "step": step, "vae": vae, "picture": picture, "batch": batch, "steps": steps,
                "peak": self.peak_memory(), "pictures": pictures}

    def peak_memory(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None

    def reference(self, pipe, model: str, size: int, steps: int, batch: int):
        """The plain pipeline's pixels for the bench prompt and seeds 0..batch-1 (kept for later variants); ``pipe``
        is the plain pipeline in the run's dtype, or None to build one when the pixels are not kept yet."""
        import numpy as np

        if (model, batch) not in self.references:
            pipe = pipe or self.build(model)
            generator = [self.torch.Generator("cpu").manual_seed(i) for i in range(batch)]
            with self.torch.inference_mode():
                images = pipe(prompt=[PROMPT] * batch, negative_prompt=[NEGATIVE] * batch, width=size, height=size,
                              num_inference_steps=steps, generator=generator, output_type="pil").images
            self.references[(model, batch)] = np.stack([np.asarray(i).astype(int) for i in images])
        return self.references[(model, batch)]

    def difference(self, model: str, batch: int, images) -> str:
        import numpy as np

        reference = self.references.get((model, batch))
        if reference is None:
            return "-"
        delta = np.abs(np.stack([np.asarray(i).astype(int) for i in images]) - reference)
        return f"{delta.max()}/{delta.mean():.2f}"

    def report(self, model: str, label: str, r: dict, size: int) -> None:
        per_image = r["picture"] / r["batch"]
        floor = ""
        if self.peak_flops and size in FLOPS:
            flops = FLOPS[size]["unet_cfg_step"] * r["steps"] + FLOPS[size]["vae"] + FLOPS[size]["text"]
            floor = f"{100 * flops / self.peak_flops / per_image:.0f}%"
        ms = lambda key: f"{1000 * r[key]:.1f}" if r.get(key) is not None else "-"  # noqa: E731
        row = (model, label, str(r["batch"]), str(r["steps"]), ms("text"), ms("step"),
               f"{1 / r['step']:.1f}" if r.get("step") else "-", ms("vae"), f"{per_image:.3f}",
               f"{1 / per_image:.2f}", f"{r['peak']:.1f}" if r.get("peak") is not None else "-", floor,
               r.get("diff", "-"))
        self.rows.append(row)
        print(format_row(row), flush=True)
        self.save()

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"{'':>9} ({text})", flush=True)
        self.save()

    def save(self) -> None:
        """Rewrite the Markdown table (after every row: a run cut short keeps what it measured)."""
        if self.args.markdown:
            Path(self.args.markdown).write_text(markdown(self, self.header))

    def left(self) -> float:
        return self.args.budget - (time.monotonic() - self.started) if self.args.budget else float("inf")

    def attempt(self, model: str, label: str, fn) -> None:
        """Run one variant; a failure (out of memory, a compile error, a missing package) is a row, never an abort;
        a variant that would not fit in what is left of --budget is skipped, and says so."""
        needs = NEEDS.get(label, NEEDS_DEFAULT) if self.cuda else 0
        if self.left() < needs:
            self.failed(model, label, f"skipped: {self.left():.0f} s of the --budget left, it needs about {needs} s")
            return
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - a bench reports every failure and carries on
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.failed(model, label, f"failed: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}")
            self.release()

    def failed(self, model: str, label: str, why: str) -> None:
        row = (model, label, *["-"] * (len(COLUMNS) - 3), why)
        self.rows.append(row)
        self.note(f"{model} {label}: {why}")

    # -- variant groups ------------------------------------------------------------------------------------------

    def run_model(self, model: str, size: int, groups: list[str]) -> None:
        steps = self.args.steps
        eager = [g for g in groups if g in ("plain", "channels_last", "deepcache")]
        if eager:
            pipe = self.build(model)
            if "plain" in groups:
                for batch in (1, 4):
                    self.attempt(model, f"plain reference, batch {batch}",
                                 lambda batch=batch: self.reference(pipe, model, size, steps, batch))
                for n in dict.fromkeys((steps, 10, 15)):
                    label = "plain (SDPA)" if n == steps else f"plain, {n} steps"
                    self.attempt(model, label, lambda n=n, label=label: self.report(
                        model, label, self.measure(pipe, size, n, 1), size))
            if "deepcache" in groups:
                self.attempt(model, "DeepCache", lambda: self.deepcache(pipe, model, size, steps))
            if "channels_last" in groups:
                pipe.unet.to(memory_format=self.torch.channels_last)
                pipe.vae.to(memory_format=self.torch.channels_last)
                for batch in (1, 2, 4, 8):
                    label = "channels_last" + (f", batch {batch}" if batch > 1 else "")
                    self.attempt(model, label, lambda batch=batch, label=label: self.report(
                        model, label, self.measure(pipe, size, steps, batch), size))
            del pipe
            self.release()
        if "graphs" in groups:
            self.attempt(model, "graphs", lambda: self.own_loop(model, size, steps, compiled=False))
            self.release()
        if "service" in groups:
            for level in self.args.service_levels.split(","):
                if level != "max":
                    self.attempt(model, f"service {level}", lambda level=level: self.service(model, size, steps, level))
                    self.release()
        if "compile" in groups:
            self.attempt(model, "compile", lambda: self.compiled(model, size, steps, regional=False))
            self.release()
        if "regional" in groups:
            self.attempt(model, "regional compile", lambda: self.compiled(model, size, steps, regional=True))
            self.release()
        if "max" in groups:
            self.attempt(model, "max", lambda: self.own_loop(model, size, steps, compiled=True))
            self.release()
        if "service" in groups and "max" in self.args.service_levels.split(","):
            self.attempt(model, "service max", lambda: self.service(model, size, steps, "max"))
            self.release()
        # last: what is left of --budget after every group above, so these never push out their rows
        self.run_numerics(model, size, steps, groups)

    def run_numerics(self, model: str, size: int, steps: int, groups: list[str]) -> None:
        """The precision and attention groups."""
        if "precision" in groups:
            other = OTHER_DTYPE[self.args.dtype]
            batches = tuple(int(b) for b in self.args.precision_batches.split(","))
            self.attempt(model, f"graphs (own loop), {other}",
                         lambda: self.own_loop(model, size, steps, compiled=False, dtype=other, batches=batches))
            self.release()
            self.attempt(model, f"plain (SDPA), {other}", lambda: self.plain_in(model, size, steps, other))
            self.release()
        if "attention" in groups:
            for level in ("graphs", "plain"):
                self.attempt(model, f"attention {level}", lambda level=level: self.attention(model, size, steps, level))
                self.release()

    def own_loop(self, model: str, size: int, steps: int, compiled: bool, dtype: str | None = None,
                 batches: tuple[int, ...] = (1, 4)) -> None:
        """Our own denoise loop on the pipeline's parts: CUDA graphs of the eager (or compiled) UNet, at each of
        ``batches``, in the run's dtype or ``dtype``, pictures compared with the plain pipeline's in the run's
        dtype."""
        torch = self.torch
        if dtype:  # the plain pictures in the run's dtype, from a pipeline of its own
            for batch in batches:
                self.reference(None, model, size, steps, batch)
        pipe = self.build(model, dtype)
        if not dtype:  # the plain pictures, before the UNet is compiled
            for batch in batches:
                self.reference(pipe, model, size, steps, batch)
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        name = "max (compile + graphs)" if compiled else "graphs (own loop)" + (f", {dtype}" if dtype else "")
        started = time.perf_counter()
        if compiled:
            pipe.unet = torch.compile(pipe.unet)
            pipe.vae.decode = torch.compile(pipe.vae.decode)
        denoiser = self.paint_rows(pipe, model, size, steps, name, batches, compiled, started)
        self.note(f"{name}: {denoiser.graph_count()} CUDA graphs captured; prompt cache "
                  f"{denoiser.embeds.hits} hits / {denoiser.embeds.misses} misses")

    def paint_rows(self, pipe, model: str, size: int, steps: int, name: str, batches: tuple[int, ...],
                   compiled: bool = False, started: float | None = None, notes: bool = True):
        """A fresh Denoiser on ``pipe`` (so its CUDA graphs are captured now, under whatever the caller holds), a
        row per batch size, pictures compared with the plain pipeline's; returns the Denoiser.  ``notes``: say how
        long the capture took and why there are no graphs."""
        from inference.denoise import Denoiser

        torch = self.torch
        started = time.perf_counter() if started is None else started
        denoiser = Denoiser(torch, pipe, graphs=True, compiled=compiled)
        if denoiser.why_no_graphs and notes:
            self.note(f"{name}: {denoiser.why_no_graphs}: the same loop without them")
        for batch in batches:
            seeds = list(range(batch))

            def paint(batch=batch, seeds=seeds):
                return denoiser.paint([PROMPT] * batch, [NEGATIVE] * batch, seeds, size, size, steps, 7.5)

            with torch.inference_mode():
                images = paint()  # captures (and compiles) this shape
                if batch == batches[0] and notes:
                    self.note(f"{name}: compiling, capturing and the first picture took "
                              f"{time.perf_counter() - started:.0f} s, not counted in the figures")
                diff = self.difference(model, batch, images)
                text = self.timed(lambda: denoiser.embeds.get(PROMPT))
                shape = next(reversed(denoiser._shapes.values()))
                step = self.timed(shape.forward)
                latents = torch.randn(batch, 4, size // pipe.vae_scale_factor, size // pipe.vae_scale_factor,
                                      device=self.device, dtype=pipe.vae.dtype)
                # called as the loop calls it: another signature would make a compiled decoder compile again
                vae = self.timed(lambda latents=latents, seeds=seeds: pipe.vae.decode(
                    latents / pipe.vae.config.scaling_factor, return_dict=False,
                    generator=[torch.Generator("cpu") for _ in seeds]))
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats()
                picture = self.timed(paint)
            label = name + (f", batch {batch}" if batch > 1 else "")
            self.report(model, label, {"text": text, "step": step, "vae": vae, "picture": picture, "batch": batch,
                                       "steps": steps, "peak": self.peak_memory(), "diff": diff}, size)
        return denoiser

    def plain_in(self, model: str, size: int, steps: int, dtype: str) -> None:
        """The plain pipeline in ``dtype``, batch 1, its picture compared with the plain one in the run's dtype."""
        self.reference(None, model, size, steps, 1)
        pipe = self.build(model, dtype)
        result = self.measure(pipe, size, steps, 1)
        self.report(model, f"plain (SDPA), {dtype}", {**result, "diff": self.difference(model, 1, result["pictures"])},
                    size)
        del pipe

    def attention(self, model: str, size: int, steps: int, level: str) -> None:
        """Each SDPA backend forced on one level (graphs: our own loop, channels_last, the UNet in CUDA graphs where
        there is CUDA; plain: the plain pipeline), batch 1, a row per backend (see ``forced``); a backend that cannot
        run a small attention here is a row saying so at once."""
        self.reference(None, model, size, steps, 1)
        pipe = self.build(model)
        if level == "graphs":
            pipe.unet.to(memory_format=self.torch.channels_last)
            pipe.vae.to(memory_format=self.torch.channels_last)
        for backend in SDPA_BACKENDS:
            label = f"{level}, SDPA {backend}"
            why_not = self.cannot_run(backend, pipe.unet.dtype)
            if why_not:
                self.failed(model, label, f"failed: {why_not}")
                continue
            self.attempt(model, label, lambda label=label, backend=backend: self.forced(
                pipe, backend, label, lambda name: self.attention_row(pipe, model, size, steps, level, name)))
            if self.cuda:  # the row's CUDA graphs and their memory pool
                self.release()

    def cannot_run(self, backend: str, dtype) -> str:
        """Why SDPA ``backend`` cannot run even a small attention on this device in ``dtype`` ("" when it can)."""
        from torch.nn.attention import SDPBackend
        from torch.nn.attention import sdpa_kernel

        probe = self.torch.randn(1, 2, 16, 64, device=self.device, dtype=dtype)
        try:
            with sdpa_kernel(getattr(SDPBackend, backend)):
                self.torch.nn.functional.scaled_dot_product_attention(probe, probe, probe)
        except RuntimeError as exc:
            why = (str(exc).splitlines() or [""])[0].split(". ")[0]  # torch's first sentence says it
            return f"{backend} cannot run on {self.device} in {str(dtype).split('.')[-1]}: {why}"
        return ""

    def attention_row(self, pipe, model: str, size: int, steps: int, level: str, name: str) -> None:
        if level == "graphs":
            denoiser = self.paint_rows(pipe, model, size, steps, name, (1,), notes=False)
            if self.cuda and not denoiser.graph_count():
                self.note(f"{name}: no CUDA graph captured (see the log): the UNet was called directly")
        else:
            result = self.measure(pipe, size, steps, 1)
            self.report(model, name, {**result, "diff": self.difference(model, 1, result["pictures"])}, size)

    def forced(self, pipe, backend: str, label: str, row) -> None:
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
        self.release()
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
        self.note(f"{label}: forcing it on every attention failed ({everything}); the UNet alone ran on it, the "
                  "text encoder and the VAE on torch's own choice")

    def deepcache(self, pipe, model: str, size: int, steps: int) -> None:
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        for interval in (3, 5):
            helper.set_params(cache_interval=interval, cache_branch_id=0)
            helper.enable()
            try:
                self.report(model, f"DeepCache every {interval}", self.measure(pipe, size, steps, 1, parts=False), size)
            finally:
                helper.disable()

    def compiled(self, model: str, size: int, steps: int, regional: bool) -> None:
        torch = self.torch
        pipe = self.build(model)
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
        started = time.perf_counter()
        if regional:
            pipe.unet.compile_repeated_blocks()
        else:
            pipe.unet = torch.compile(pipe.unet)
        pipe.vae.decode = torch.compile(pipe.vae.decode)
        name = "regional compile" if regional else "compile"
        result = self.measure(pipe, size, steps, 1)
        self.note(f"{name}: compiling and the warm-up runs took {time.perf_counter() - started:.0f} s, "
                  "not counted in the figures")
        self.report(model, f"channels_last + {name}", result, size)
        if not regional:
            self.report(model, f"{name}, batch 4", self.measure(pipe, size, steps, 4), size)
        del pipe

    def service(self, model: str, size: int, steps: int, level: str) -> None:
        """Lanternslide's own path at one --optimize level: DiffusersBackend + GenerationService + cache, previews
        every 2 steps, pictures asked for by player threads the way slide streams ask."""
        from inference.cache import ImageCache
        from inference.diffusers_backend import DiffusersBackend
        from inference.request import GenerationRequest
        from inference.service import GenerationService

        folder = self.workdir / f"{model}-folder"
        if not folder.exists():
            pipe = self.build(model)
            pipe.save_pretrained(str(folder))
            del pipe
            self.release()
        seeds = iter(range(10_000, 1_000_000))
        started = time.perf_counter()
        backend = DiffusersBackend(str(folder), device=self.device, dtype=self.args.dtype, optimize=level,
                                   compile_cache=str(self.workdir / "inductor"), warmup=[(size, size, False)])
        backend.start()
        status = backend.wait()
        ready = time.perf_counter() - started
        if not status.ready:
            raise RuntimeError(f"{status.message} {status.hint}")
        self.note(f"service --optimize {level}: {status.message} (ready after {ready:.0f} s, warm-up included)")
        service = GenerationService(backend, ImageCache(self.workdir / f"cache-{level}"), model=model,
                                    max_batch=self.args.batch, preview_every=2,
                                    encode_ahead=EncodeAhead(ENCODINGS, "webp"))  # as the game's pages have it
        service.start()
        try:
            def requests(count: int) -> list:
                return [GenerationRequest(PROMPT, NEGATIVE, seed=next(seeds), steps=steps, width=size, height=size,
                                          cfg_scale=7, sampler_name="DPM++ 2M", scheduler="karras")
                        for _ in range(count)]

            def paint(count: int, asked: list | None = None) -> None:
                asked = asked or requests(count)
                with ThreadPoolExecutor(len(asked)) as players:  # .result() re-raises a player's failure here
                    for done in [players.submit(wait_for_picture, service, r) for r in asked]:
                        done.result()

            if self.cuda:
                self.torch.cuda.reset_peak_memory_stats()
            first_request = requests(1)
            self.sync()
            clock = time.perf_counter()
            paint(1, first_request)
            first = time.perf_counter() - clock
            one = self.timed(lambda: paint(1))
            four = self.timed(lambda: paint(4))
            eight = self.timed(lambda: paint(8))
            again = [self.painted_again(service, first_request[0]) for _ in range(1 + max(1, self.args.repeats))]
            row = (
                model,
                level,
                f"{ready:.1f}",
                f"{first:.3f}",
                f"{one:.3f}",
                f"{four / 4:.3f}",
                f"{one / (four / 4):.2f}x",
                f"{8 / eight:.2f}",
                f"{again[0]:.1f} / {statistics.median(again[1:]):.1f}",
                f"{self.peak_memory():.1f}" if self.cuda else "-",
            )
            self.service_rows.append(row)
            print("service: " + " | ".join(row), flush=True)
            self.save()
        finally:
            service.close()
            backend.close()
            del backend
            self.release()

    @staticmethod
    def painted_again(service, request) -> float:
        """Milliseconds of our own work to hand out a picture that is already painted: find its job (or cached
        file) and its browser encoding (WebP, made once per picture as it was painted; a view encodes only a
        picture that the encoding ahead left over)."""
        clock = time.perf_counter()
        snapshot = service.submit(request)
        if snapshot is None or snapshot.state != "done" or not snapshot.png:
            raise RuntimeError(f"an already painted picture came back {snapshot and snapshot.state}")
        ENCODINGS.get(snapshot.key, snapshot.png, "webp")
        return 1000 * (time.perf_counter() - clock)


ENCODINGS = BrowserEncodings()  # the web process's memo of browser encodings, as the pages use it


def wait_for_picture(service, request) -> None:
    """Submit one player's picture and block until it is painted (the way a slide's stream follows it)."""
    asked = service.submit(request)
    snapshot = service.wait(asked.key, 600)
    if snapshot.state != "done":
        raise RuntimeError(f"the service did not paint the picture: {snapshot.state} {snapshot.error}")


def format_row(row: tuple[str, ...]) -> str:
    widths = (9, 36, 5, 5, 8, 8, 6, 7, 8, 8, 8, 8, 10)
    return " ".join(f"{cell:>{width}}" for cell, width in zip(row, widths, strict=False))


def markdown(bench: Bench, header: str) -> str:
    lines = [header, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in bench.rows]
    if bench.service_rows:
        lines += ["", "Through the service (what a player gets; seconds from asking to the finished picture):", "",
                  "| " + " | ".join(SERVICE_COLUMNS) + " |", "|" + "---|" * len(SERVICE_COLUMNS)]
        lines += ["| " + " | ".join(row) + " |" for row in bench.service_rows]
    lines += [""] + [f"- {note}" for note in bench.notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (cuda when there is one), cuda, cuda:N or cpu")
    parser.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"),
                        help="auto: fp16 on CUDA, fp32 on a CPU")
    parser.add_argument("--models", default="", help="comma-separated: sd21-base, sd21-v, tiny "
                        "(default: sd21-base,sd21-v on CUDA, tiny on a CPU)")
    parser.add_argument("--size", type=int, default=0, help="picture side in pixels (default: the model's own)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", default=",".join(GROUPS), help=f"variant groups, comma-separated: {', '.join(GROUPS)}"
    )
    parser.add_argument("--skip-compile", action="store_true", help="leave out every torch.compile variant")
    parser.add_argument("--markdown", help="also write the table as Markdown to this file (after every row)")
    parser.add_argument("--service-levels", default=",".join(SERVICE_LEVELS),
                        help="--optimize levels the service group runs, comma-separated (default: auto,graphs,max)")
    parser.add_argument("--precision-batches", default="1,4",
                        help="batch sizes of the precision group's graphs rows, comma-separated (default: 1,4)")
    parser.add_argument("--batch", type=int, default=4, help="the service's batch size (the app's BATCH_SIZE)")
    parser.add_argument("--budget", type=float, default=0,
                        help="seconds: start no variant that would not fit in what is left (0 = no limit)")
    args = parser.parse_args()
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown group {unknown[0]!r}; valid: {', '.join(GROUPS)}")
    try:
        if not all(int(b) > 0 for b in args.precision_batches.split(",")):
            raise ValueError
    except ValueError:
        parser.error(f"--precision-batches: {args.precision_batches!r} is not a comma-separated list of batch sizes")
    if args.skip_compile:
        groups = [g for g in groups if g not in ("compile", "regional", "max")]
        args.service_levels = ",".join(level for level in args.service_levels.split(",") if level != "max")

    import diffusers
    import torch
    import transformers

    diffusers.utils.logging.set_verbosity_error()  # the table, not loading chatter
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if args.dtype == "auto":
        args.dtype = "fp16" if cuda else "fp32"
    models = [m.strip() for m in (args.models or ("sd21-base,sd21-v" if cuda else "tiny")).split(",") if m.strip()]
    for model in models:
        if model not in SIZES:
            parser.error(f"--models: unknown model {model!r}; valid: {', '.join(SIZES)}")
    bench = Bench(torch, args)
    header = (
        f"device: {bench.name}; torch {torch.__version__}, diffusers {diffusers.__version__}, transformers "
        f"{transformers.__version__}, {args.dtype}; DPM++ 2M Karras, CFG 7.5 (service: 7), median of "
        f"{args.repeats} runs after 1 warm-up run (excluded); command: python -m bench.gpu {' '.join(sys.argv[1:])}"
    )
    if not cuda and "tiny" in models:
        header += " [tiny random pipeline on a CPU: proves the code path, not speed]"
    bench.header = header
    print(header)
    print(format_row(COLUMNS))
    for model in models:
        bench.run_model(model, args.size or SIZES[model], groups)
    print("it/s counts denoising iterations (one UNet call on the CFG pair); 'of floor' is the FLOP floor "
          "(performance.md section 2) divided by the measured s/image, on the device's dense fp16 peak; service rows "
          "time a picture from submit to done through Lanternslide's backend, queue, previews and PNG encode")
    bench.note(f"the whole run took {time.monotonic() - bench.started:.0f} s")
    if args.markdown:
        bench.save()
        print(f"table written to {args.markdown}")


if __name__ == "__main__":
    main()
