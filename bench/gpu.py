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
                   channels_last, graphs and max) painting with live previews: the first picture after the model reports
                   ready, one picture, 4 players at once, 8 players at once, and a picture already painted asked
                   for again (our own overhead: job lookup and the browser encoding, first view and later views)
    precision      the other half precision (bf16 next to an fp16 run; bf16 next to an fp32 run on a CPU): the graphs
                   level, batch 1 and 4 (--precision-batches), and the plain pipeline (--precision-levels picks),
                   pictures compared with the run's plain pipeline
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
import shutil
import sys
import time

from bench.gpu_attention import attention
from bench.gpu_attention import precision
from bench.gpu_core import COLUMNS
from bench.gpu_core import SIZES
from bench.gpu_core import Bench
from bench.gpu_core import format_row
from bench.gpu_optimized import compiled_pipeline
from bench.gpu_optimized import eager
from bench.gpu_optimized import own_loop
from bench.gpu_service import service_row

GROUPS = ("plain", "channels_last", "deepcache", "compile", "regional", "graphs", "max", "service", "precision",
          "attention")
SERVICE_LEVELS = ("channels_last", "graphs", "max")  # graphs is what auto means on a CUDA GPU
PRECISION_LEVELS = ("graphs", "plain")


def run_model(bench: Bench, model: str, size: int, groups: list[str]) -> None:
    """The variant groups of ``groups`` on one model, in the order that puts what matters most first (--budget)."""
    steps = bench.args.steps
    if any(g in groups for g in ("plain", "channels_last", "deepcache")):
        eager(bench, model, size, groups)
        bench.release()  # the eager pipeline, gone with eager()
    if "graphs" in groups:
        bench.attempt(model, "graphs", lambda: own_loop(bench, model, size, steps, compiled=False))
        bench.release()
    if "service" in groups:
        for level in bench.args.service_levels.split(","):
            if level != "max":
                bench.attempt(model, f"service {level}", lambda level=level: service_row(bench, model, size, steps,
                                                                                          level))
                bench.release()
    if "compile" in groups:
        bench.attempt(model, "compile", lambda: compiled_pipeline(bench, model, size, steps, regional=False))
        bench.release()
    if "regional" in groups:
        bench.attempt(model, "regional compile", lambda: compiled_pipeline(bench, model, size, steps, regional=True))
        bench.release()
    if "max" in groups:
        bench.attempt(model, "max", lambda: own_loop(bench, model, size, steps, compiled=True))
        bench.release()
    if "service" in groups and "max" in bench.args.service_levels.split(","):
        bench.attempt(model, "service max", lambda: service_row(bench, model, size, steps, "max"))
        bench.release()
    # last: what is left of --budget after every group above, so these never push out their rows
    if "precision" in groups:
        precision(bench, model, size, steps)
    if "attention" in groups:
        for level in ("graphs", "plain"):
            bench.attempt(model, f"attention {level}", lambda level=level: attention(bench, model, size, steps, level))
            bench.release()


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    """The command line (``argv``, default sys.argv[1:]) checked, and the variant groups it asks for."""
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
                        help="--optimize levels the service group runs, comma-separated "
                             "(default: channels_last,graphs,max)")
    parser.add_argument("--precision-batches", default="1,4",
                        help="batch sizes of the precision group's graphs rows, comma-separated (default: 1,4)")
    parser.add_argument("--precision-levels", default=",".join(PRECISION_LEVELS),
                        help="levels the precision group runs, comma-separated (default: graphs,plain)")
    parser.add_argument("--batch", type=int, default=4, help="the service's batch size (the app's BATCH_SIZE)")
    parser.add_argument("--budget", type=float, default=0,
                        help="seconds: start no variant that would not fit in what is left (0 = no limit)")
    args = parser.parse_args(argv)
    groups = [g.strip() for g in args.only.split(",") if g.strip()]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        parser.error(f"--only: unknown group {unknown[0]!r}; valid: {', '.join(GROUPS)}")
    try:
        if not all(int(b) > 0 for b in args.precision_batches.split(",")):
            raise ValueError
    except ValueError:
        parser.error(f"--precision-batches: {args.precision_batches!r} is not a comma-separated list of batch sizes")
    unknown = [level for level in args.precision_levels.split(",") if level not in PRECISION_LEVELS]
    if unknown:
        parser.error(f"--precision-levels: unknown level {unknown[0]!r}; valid: {', '.join(PRECISION_LEVELS)}")
    if args.skip_compile:
        groups = [g for g in groups if g not in ("compile", "regional", "max")]
        args.service_levels = ",".join(level for level in args.service_levels.split(",") if level != "max")
    unknown = [m for m in args.models.split(",") if m.strip() and m.strip() not in SIZES]
    if unknown:
        parser.error(f"--models: unknown model {unknown[0].strip()!r}; valid: {', '.join(SIZES)}")
    return args, groups


def main() -> None:
    args, groups = parse_args()
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
    try:
        for model in models:
            run_model(bench, model, args.size or SIZES[model], groups)
    finally:  # the pipelines saved for the service group (5 GB for SD 2.1-base), the caches, inductor's code
        shutil.rmtree(bench.workdir, ignore_errors=True)
    print("it/s counts denoising iterations (one UNet call on the CFG pair); 'of floor' is the FLOP floor "
          "(performance.md section 2) divided by the measured s/image, on the device's dense fp16 peak; service rows "
          "time a picture from submit to done through Lanternslide's backend, queue, previews and PNG encode")
    bench.note(f"the whole run took {time.monotonic() - bench.started:.0f} s")
    if args.markdown:
        bench.save()
        print(f"table written to {args.markdown}")


if __name__ == "__main__":
    main()
