"""The core of bench/gpu.py: ``Bench`` (one device, one dtype) builds the SD 2.1 pipelines, times them, compares
their pictures with the plain pipeline's, keeps the rows and rewrites the Markdown table after every row; the
variant groups (bench/gpu_optimized.py, gpu_service.py, gpu_attention.py) are plain functions that take it."""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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
