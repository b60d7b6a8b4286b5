"""Peak memory while loading a single SD 2.1 checkpoint file of the real sizes (random weights, made here once).

Writes an SD 2.1-base checkpoint in the original key layout (UNet 866 M, text encoder 340 M with OpenCLIP's 24th
block, VAE 84 M parameters; fp16 = 2.6 GB) and loads it in a fresh process per case, printing the process's peak
RSS and its RSS after loading, for Lanternslide's loader (inference/checkpoints.py) and, for comparison, diffusers'
``StableDiffusionPipeline.from_single_file`` (the loader used before).

    python -m bench.checkpoint_memory [--file /tmp/sd21-random.safetensors] [--dtypes fp16,fp32]
                                      [--loaders ours,diffusers]

Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def make_file(path: Path) -> None:
    """Random fp16 weights of SD 2.1-base's sizes, written in the original single-file layout."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig
    from transformers import CLIPTextModel

    from inference.checkpoints import CONFIGS_DIR
    from tests.ldm_checkpoint import pipeline_to_ldm

    folder = CONFIGS_DIR / "sd21-base"
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(str(folder / "text_encoder")))
    generator = torch.Generator().manual_seed(0)
    for model in (unet, vae, text):
        model.to_empty(device="cpu")
        model.half()
        for param in model.parameters():
            param.data.normal_(0, 0.02, generator=generator)
    state = pipeline_to_ldm(unet, vae, text, extra_text_layer=True)
    if path.suffix.lower() == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state}, path)


def measure(path: Path, dtype_name: str, loader: str) -> None:
    """One case, in this (fresh) process: print peak and final RSS in MB."""
    import diffusers  # noqa: F401 - imported before the clock starts, as both loaders need it
    import torch
    import transformers  # noqa: F401

    from inference.checkpoints import CONFIGS_DIR
    from inference.checkpoints import load_single_file

    dtype = {"fp16": torch.float16, "fp32": torch.float32}[dtype_name]
    before = rss_mb()
    started = time.perf_counter()
    if loader == "ours":
        pipe, notes = load_single_file(path, torch, dtype, "sd21-base")
    else:
        from diffusers import StableDiffusionPipeline
        from transformers import CLIPTokenizer

        pipe = StableDiffusionPipeline.from_single_file(
            str(path), config=str(CONFIGS_DIR / "sd21-base"), local_files_only=True, dtype=dtype,
            tokenizer=CLIPTokenizer.from_pretrained(str(CONFIGS_DIR / "tokenizer")), safety_checker=None,
            requires_safety_checker=False)
    seconds = time.perf_counter() - started
    weights = sum(
        p.numel() * p.element_size() for m in (pipe.unet, pipe.vae, pipe.text_encoder) for p in m.parameters()
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{loader:9} {path.suffix:12} -> {dtype_name}: weights {weights / 2**20:7.0f} MB | RSS before {before:6.0f} MB,"
        f" peak {peak:6.0f} MB, after {rss_mb():6.0f} MB | peak - before {peak - before:6.0f} MB | {seconds:5.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=Path("/tmp/sd21-random.safetensors"))
    parser.add_argument("--dtypes", default="fp16,fp32")
    parser.add_argument("--loaders", default="ours,diffusers")
    parser.add_argument("--measure", nargs=3, metavar=("FILE", "DTYPE", "LOADER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1], args.measure[2])
        return
    if not args.file.exists():
        print(f"writing {args.file} (random SD 2.1-base weights, fp16)…", flush=True)
        subprocess.run([sys.executable, "-c", "from bench.checkpoint_memory import make_file; from pathlib import "
                        f"Path; make_file(Path({str(args.file)!r}))"], check=True, cwd=ROOT)
    print(f"{args.file}: {args.file.stat().st_size / 2**20:.0f} MB", flush=True)
    for dtype in args.dtypes.split(","):
        for loader in args.loaders.split(","):
            subprocess.run(
                [sys.executable, "-m", "bench.checkpoint_memory", "--measure", str(args.file), dtype, loader],
                check=False,
                cwd=ROOT,
            )


if __name__ == "__main__":
    main()
