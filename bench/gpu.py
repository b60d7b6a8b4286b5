"""Time SD 2.1 on this device: text encoding, one UNet step, VAE decode and whole pictures, per optimization.

On CUDA it builds the real architectures from the configs shipped in inference/configs (SD 2.1-base at 512 and
SD 2.1 768-v at 768) with random weights (weights do not change the time) in fp16 (or --dtype bf16), and times:
plain (SDPA), + channels_last, + DeepCache (every 3 and 5 steps; lossy), + torch.compile of the UNet and VAE decoder,
batches of 2/4/8, and DPM++ 2M Karras at 10/15/20 steps.  On a CPU it runs the tiny test pipeline at 64x64 only to prove the code path works.  Warm-up runs
are excluded; every figure is the median of --repeats runs.

    python bench/gpu.py [--dtype fp16|bf16] [--repeats 5] [--skip-compile]

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# FLOPs per picture part, from ../shared/reference/performance.md section 2.1 (2 FLOP per multiply-add).
FLOPS = {512: {"unet_cfg_step": 1.608e12, "vae": 2.514e12, "text": 0.09e12},
         768: {"unet_cfg_step": 4.298e12, "vae": 5.754e12, "text": 0.09e12}}
PEAK = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "4090": 165e12}


def build(torch, config: str | None, dtype, device: str, workdir: Path):
    """A pipeline of the real SD 2.1 shapes with random weights (or the tiny test pipeline on CPU)."""
    from diffusers import AutoencoderKL
    from diffusers import DPMSolverMultistepScheduler
    from diffusers import StableDiffusionPipeline
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig
    from transformers import CLIPTextModel
    from transformers import CLIPTokenizer

    if config is None:
        from tests.tiny_pipeline import build_tiny_pipeline

        pipe = StableDiffusionPipeline.from_pretrained(str(build_tiny_pipeline(workdir / "tiny")), safety_checker=None)
    else:
        folder = ROOT / "inference" / "configs" / config
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
            vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
            text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
        pipe = StableDiffusionPipeline(
            unet=unet, vae=vae, text_encoder=text,
            tokenizer=CLIPTokenizer.from_pretrained(str(ROOT / "inference" / "configs" / "tokenizer")),
            scheduler=DPMSolverMultistepScheduler.from_pretrained(str(folder / "scheduler")),
            safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def timed(torch, device: str, fn, repeats: int) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs, after one warm-up run (excluded)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(torch, pipe, size: int, device: str, repeats: int, steps: int, batch: int, direct_step: bool = True) -> dict:
    """Time the parts and the whole; with ``direct_step`` False (DeepCache, which needs the scheduler's own
    timesteps) the UNet step is derived from the whole picture less text encoding and VAE decode."""
    generator = [torch.Generator("cpu").manual_seed(i) for i in range(batch)]
    prompts = ["a lighthouse on a cliff at night, oil painting"] * batch

    def whole() -> None:
        pipe(prompt=prompts, negative_prompt=["blurry"] * batch, width=size, height=size, num_inference_steps=steps,
             generator=generator, output_type="pil")

    with torch.inference_mode():
        embeds, negative = pipe.encode_prompt(prompts[0], device, 1, True, "blurry")
        text = timed(torch, device, lambda: pipe.encode_prompt(prompts[0], device, 1, True, "blurry"), repeats)
        latent = size // pipe.vae_scale_factor
        sample = torch.randn(2 * batch, 4, latent, latent, device=device, dtype=pipe.unet.dtype)
        context = torch.cat([negative, embeds]).repeat(batch, 1, 1)
        step = timed(torch, device, lambda: pipe.unet(sample, 500, encoder_hidden_states=context), repeats) \
            if direct_step else None
        latents = torch.randn(batch, 4, latent, latent, device=device, dtype=pipe.vae.dtype)
        vae = timed(torch, device, lambda: pipe.vae.decode(latents / pipe.vae.config.scaling_factor), repeats)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        picture = timed(torch, device, whole, repeats)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    if step is None:
        step = max(1e-9, (picture - text - vae) / steps)
    return {"text": text, "step": step, "vae": vae, "picture": picture, "batch": batch, "steps": steps, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--models", default="sd21-base,sd21-v")
    args = parser.parse_args()
    import diffusers
    import torch

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype] if cuda else torch.float32
    name = torch.cuda.get_device_name(0) if cuda else "CPU (tiny 64x64 pipeline: proves the code path, not speed)"
    print(f"device: {name}; torch {torch.__version__}, diffusers {diffusers.__version__}, dtype {str(dtype)[6:]}; "
          f"median of {args.repeats} runs after 1 warm-up run (excluded)")
    peak = next((v for k, v in PEAK.items() if k in name), None)
    workdir = Path(tempfile.mkdtemp(prefix="lanternslide-gpu-"))
    shapes = [(c, 512 if c == "sd21-base" else 768) for c in args.models.split(",")] if cuda else [(None, 64)]
    header = (f"{'model':>9} {'variant':>22} {'batch':>5} {'steps':>5} {'text ms':>8} {'step ms':>8} {'it/s':>6} "
              f"{'VAE ms':>7} {'s/image':>8} {'images/s':>8} {'peak GiB':>8} {'of floor':>8}")
    print(header)
    for config, size in shapes:
        pipe = build(torch, config, dtype, device, workdir)
        variants = [("plain (SDPA)", 1, 20), ("plain, 10 steps", 1, 10), ("plain, 15 steps", 1, 15)]
        for label, batch, steps in variants + [("channels_last", 1, 20)] + [(f"channels_last, batch {b}", b, 20) for b in (2, 4, 8)]:
            if label.startswith("channels_last") and not getattr(pipe, "_cl", False):
                pipe.unet.to(memory_format=torch.channels_last)
                pipe.vae.to(memory_format=torch.channels_last)
                pipe._cl = True
            report(config, label, measure(torch, pipe, size, device, args.repeats, steps, batch), size, peak)
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        for interval in (3, 5):
            helper.set_params(cache_interval=interval, cache_branch_id=0)
            helper.enable()
            report(config, f"DeepCache every {interval}",
                   measure(torch, pipe, size, device, args.repeats, 20, 1, direct_step=False), size, peak)
            helper.disable()
        if not args.skip_compile:
            started = time.perf_counter()
            pipe.unet = torch.compile(pipe.unet)
            pipe.vae.decode = torch.compile(pipe.vae.decode)
            result = measure(torch, pipe, size, device, args.repeats, 20, 1)
            print(f"{'':>9} (compile + warm-up took {time.perf_counter() - started:.0f} s, excluded from the figures)")
            report(config, "channels_last + compile", result, size, peak)
            for b in (4,):
                report(config, f"compile, batch {b}", measure(torch, pipe, size, device, args.repeats, 20, b), size, peak)
        del pipe
        if cuda:
            torch.cuda.empty_cache()
    print("it/s counts denoising iterations (one UNet call on the CFG pair); 'of floor' is the FLOP floor "
          "(performance.md section 2) divided by the measured s/image, on the device's dense fp16 peak")


def report(config, label: str, r: dict, size: int, peak: float | None) -> None:
    per_image = r["picture"] / r["batch"]
    floor = ""
    if peak and size in FLOPS:
        flops = FLOPS[size]["unet_cfg_step"] * r["steps"] + FLOPS[size]["vae"] + FLOPS[size]["text"]
        floor = f"{100 * flops / peak / per_image:.0f}%"
    memory = f"{r['peak']:.1f}" if r["peak"] is not None else "-"
    print(f"{config or 'tiny':>9} {label:>22} {r['batch']:>5} {r['steps']:>5} {1000 * r['text']:>8.1f} "
          f"{1000 * r['step']:>8.1f} {1 / r['step']:>6.1f} {1000 * r['vae']:>7.1f} {per_image:>8.3f} "
          f"{1 / per_image:>8.2f} {memory:>8} {floor:>8}")


if __name__ == "__main__":
    main()
