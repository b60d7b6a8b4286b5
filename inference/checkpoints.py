"""Single SD 2.x checkpoint files: read them safely, refuse what is not SD 2.x, choose the config, load with little
memory; and the fingerprint of a model's weights.

Files in the original (LDM) layout (``.safetensors``, or pickled ``.ckpt``/``.pt``/``.pth``/``.bin``) load
offline against the component configs shipped in ``inference/configs`` (diffusers would otherwise fetch them from
the deleted stabilityai repositories).  Pickles are read with ``torch.load(weights_only=True)``: nothing in the file
runs; the training callbacks old checkpoints carry become inert placeholders, anything else is refused.

Memory: each component's weights are read one tensor at a time straight into the target dtype (safetensors with
plain reads, pickles through a memory map dropped after each component) and become the model's parameters without a
second copy, so the peak stays near the size of the weights in the target dtype.

v-prediction: 768 and 512 models share one architecture, so when neither ``--model-config`` nor the file name says
which this is, the UNet is asked once, as A1111 does: at timestep 999, on a latent and a 2-token context of 0.5
everywhere, an epsilon model answers about its input (the noise), a v-prediction model more than 1 below it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).parent / "configs"
SINGLE_FILE_CONFIGS = {"sd21-base": "SD 2.1-base (512, epsilon)", "sd21-v": "SD 2.1 (768, v-prediction)"}
SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
UNET, VAE, TEXT, EMA = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.", "model_ema."
# The UNet's first cross-attention (or, in smaller layouts, any): its width tells SD 1 (768) from SD 2 (1024); and its
# first convolution, whose input channels tell a plain model (4) from an inpainting one (9).
CONTEXT_KEY = UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
INPUT_KEY = UNET + "input_blocks.0.0.weight"
V_THRESHOLD = -1.0  # A1111's: mean(UNet(x) - x) below this is a v-prediction model
# Globals that old training checkpoints pickle beside the weights and that are safe to leave unbuilt.
INERT_GLOBALS = ("pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
                 "pytorch_lightning.callbacks.ModelCheckpoint")
_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
MEMO_ENTRIES = 256


class CheckpointError(ValueError):
    """A checkpoint file that cannot or will not be loaded; the message says why in plain words."""


class _Inert:
    """Stands in for a training callback pickled in a checkpoint; built without running any of its code."""

    def __setstate__(self, state: Any) -> None:
        pass


class Checkpoint:
    """The tensor names and shapes of one checkpoint file, and reading chosen tensors into a dtype."""

    def __init__(self, path: Path):
        self.path = path
        self.safetensors = path.suffix.lower() == ".safetensors"
        if path.suffix.lower() not in SUFFIXES:
            raise CheckpointError(f"{path.name}: expected a {', '.join(SUFFIXES)} checkpoint, a diffusers folder or a "
                                  "hub id")
        if self.safetensors:
            self._header, self._data_start = _safetensors_header(path)
            self.shapes = {k: tuple(v["shape"]) for k, v in self._header.items()}
        else:
            self.shapes = {k: tuple(v.shape) for k, v in self._pickled().items()}

    def _pickled(self) -> dict[str, Any]:
        import pickle

        import torch

        try:
            with torch.serialization.safe_globals([(_Inert, name) for name in INERT_GLOBALS]):
                try:
                    loaded = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as exc:
                    if "mmap" not in str(exc):
                        raise
                    log.warning("%s is in PyTorch's old format, which cannot be memory-mapped: it is read whole "
                                "(more memory while loading)", self.path.name)
                    loaded = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            unsafe = ", ".join(torch.serialization.get_unsafe_globals_in_checkpoint(str(self.path))) or str(exc)[:200]
            raise CheckpointError(
                f"{self.path.name} holds Python objects besides its weights ({unsafe}); Lanternslide does not unpickle "
                "those, since that could run any code. Use the .safetensors version of this model") from exc
        except Exception as exc:  # a truncated or foreign file: say which
            raise CheckpointError(f"{self.path.name} could not be read as a PyTorch checkpoint ({exc})") from exc
        while isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
            loaded = loaded["state_dict"]
        if not isinstance(loaded, dict):
            raise CheckpointError(f"{self.path.name} holds no state dict of weights")
        return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}

    def read(self, names: dict[str, str], dtype: Any) -> dict[str, Any]:
        """Return ``{name: tensor}`` for ``{name: key in the file}``, floating tensors cast to ``dtype``, each its own
        memory (nothing refers back to the file)."""
        import torch

        out = {}
        if self.safetensors:
            with self.path.open("rb", buffering=0) as f:
                for name, key in names.items():
                    entry = self._header[key]
                    start, end = entry["data_offsets"]
                    raw = torch.empty(end - start, dtype=torch.uint8)
                    f.seek(self._data_start + start)
                    if f.readinto(raw.numpy().data) != end - start:
                        raise CheckpointError(f"{self.path.name} is truncated (tensor {key} ends past the file)")
                    tensor = raw.view(getattr(torch, _SAFETENSORS_DTYPES[entry["dtype"]])).reshape(entry["shape"])
                    out[name] = tensor.to(dtype) if tensor.is_floating_point() else tensor
            return out
        tensors = self._pickled()  # memory-mapped: the map goes when these go, at the end of this call
        for name, key in names.items():
            tensor = tensors[key]
            out[name] = tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor.clone()
        return out


def _safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        length = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
        if not 2 <= length <= min(100_000_000, size - 8):
            raise CheckpointError(f"{path.name} is not a valid .safetensors file (header of {length} bytes)")
        try:
            header = json.loads(f.read(length))
        except ValueError as exc:
            raise CheckpointError(f"{path.name} is not a valid .safetensors file (unreadable header)") from exc
    header.pop("__metadata__", None)
    for key, entry in header.items():
        start, end = entry.get("data_offsets", (0, -1))
        if entry.get("dtype") not in _SAFETENSORS_DTYPES or not 0 <= start <= end <= size - 8 - length:
            raise CheckpointError(f"{path.name} is not a valid .safetensors file (tensor {key!r})")
    return header, 8 + length


def check_sd2(checkpoint: Checkpoint) -> None:
    """Refuse a file that is not a plain SD 2.x model, with the same plain words whatever its format."""
    name = checkpoint.path.name
    keys = [CONTEXT_KEY] if CONTEXT_KEY in checkpoint.shapes else sorted(
        k for k in checkpoint.shapes if k.startswith(UNET) and k.endswith(".attn2.to_k.weight"))
    context = checkpoint.shapes[keys[0]] if keys else None
    if context is None or len(context) != 2:
        raise CheckpointError(f"{name} is not a Stable Diffusion checkpoint in the original single-file layout (it has "
                              f"no UNet cross-attention weights such as {CONTEXT_KEY}); Lanternslide loads SD 2.1 and "
                              "SD 2.1-base files")
    width = json.loads((CONFIGS_DIR / "sd21-base" / "unet" / "config.json").read_text())["cross_attention_dim"]
    if context[1] != width:
        raise CheckpointError(f"{name} is not a Stable Diffusion 2.x checkpoint (its cross-attention is {context[1]} "
                              f"wide, SD 2.x uses {width}); Lanternslide ships configs for SD 2.1 and SD 2.1-base only")
    channels = checkpoint.shapes.get(INPUT_KEY, (0, 4))[1]
    if channels != 4:
        raise CheckpointError(f"{name} is an inpainting or depth model (its UNet takes {channels} input channels, "
                              "not 4); Lanternslide paints with plain SD 2.1 and SD 2.1-base models")


def config_from_setting_or_name(path: Path, setting: str) -> tuple[str | None, str]:
    """The config ``--model-config`` or the file name chooses, and why; None when the checkpoint must be asked."""
    if setting != "auto":
        return setting, "as --model-config says"
    lowered = path.name.lower()
    if "768" in lowered:
        return "sd21-v", "its file name says 768 (--model-config sd21-base to override)"
    if "512" in lowered or "base" in lowered:
        return "sd21-base", "its file name says 512/base (--model-config sd21-v to override)"
    return None, ""


def unet_names(checkpoint: Checkpoint) -> tuple[dict[str, str], str]:
    """The UNet's tensors to read: the EMA copy when the file holds a complete one (it is the copy meant for
    pictures); with a note saying which was used."""
    names = {k: k for k in checkpoint.shapes if k.startswith(UNET)}
    ema = {k: EMA + k.removeprefix("model.").replace(".", "") for k in names}
    present = [k for k, v in ema.items() if v in checkpoint.shapes]
    if not present:
        return names, ""
    if len(present) == len(names):
        return ema, "the file holds training and EMA weights; the EMA weights (the ones meant for pictures) were used"
    return names, (f"the file's EMA weights are incomplete ({len(present)} of {len(names)} UNet tensors); "
                   "the training weights were used")


def probe_prediction(torch: Any, unet: Any) -> float:
    """A1111's probe: mean(UNet(x, t=999, context) - x) for x and a 2-token context of 0.5 everywhere."""
    param = next(unet.parameters())
    with torch.inference_mode():
        x = torch.full((1, unet.config.in_channels, 8, 8), 0.5, dtype=param.dtype, device=param.device)
        context = torch.full((1, 2, unet.config.cross_attention_dim), 0.5, dtype=param.dtype, device=param.device)
        out = unet(x, torch.tensor([999], device=param.device), encoder_hidden_states=context).sample
        return float((out.float() - x.float()).mean())


def load_single_file(path: Path, torch: Any, dtype: Any, setting: str, device: str = "cpu",
                     report: Callable[[str], None] = lambda text: None) -> tuple[Any, list[str]]:
    """Build a StableDiffusionPipeline from one SD 2.x checkpoint file; return it and notes for the user (which
    config was chosen and why, which weights were used).  The UNet moves to ``device`` first, where the probe runs
    (measured on this project's CPU: 20-30 s for SD 2.1's UNet; a GPU takes a fraction of a second)."""
    import diffusers
    from diffusers import AutoencoderKL
    from diffusers import StableDiffusionPipeline
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
    from transformers import CLIPTextModel
    from transformers import CLIPTokenizer

    checkpoint = Checkpoint(path)
    check_sd2(checkpoint)
    config, why = config_from_setting_or_name(path, setting)
    names, ema_note = unet_names(checkpoint)
    common = {"local_files_only": True, "dtype": dtype}
    report(f"Loading {path.name}: the UNet…")
    unet = UNet2DConditionModel.from_single_file(checkpoint.read(names, dtype), config=str(CONFIGS_DIR / (
        config or "sd21-base")), subfolder="unet", **common)
    if config is None:
        report(f"Loading {path.name}: asking its UNet whether it predicts noise or v…")
        unet.to(device)
        score = probe_prediction(torch, unet)
        config = "sd21-v" if score < V_THRESHOLD else "sd21-base"
        other = "sd21-base" if config == "sd21-v" else "sd21-v"
        why = (f"its file name says neither 512 nor 768, so one step of its UNet was tried on a fixed input and "
               f"answered {score:+.2f} against it (v-prediction models answer below {V_THRESHOLD:+.0f}, epsilon "
               f"models near 0); --model-config {other} overrides")
        if config == "sd21-v":
            unet = _as_config(unet, CONFIGS_DIR / config, lambda: UNet2DConditionModel.from_single_file(
                checkpoint.read(names, dtype), config=str(CONFIGS_DIR / config), subfolder="unet", **common))
    notes = [f"{path.name} loaded as {SINGLE_FILE_CONFIGS[config]}: {why}"] + ([ema_note] if ema_note else [])
    for note in notes:
        log.info("%s", note)
    folder = str(CONFIGS_DIR / config)
    report(f"Loading {path.name}: the text encoder…")
    text_encoder = create_diffusers_clip_model_from_ldm(
        CLIPTextModel, checkpoint.read({k: k for k in checkpoint.shapes if k.startswith(TEXT)}, dtype),
        subfolder="text_encoder", config=folder, torch_dtype=dtype, local_files_only=True)
    report(f"Loading {path.name}: the VAE…")
    vae = AutoencoderKL.from_single_file(checkpoint.read({k: k for k in checkpoint.shapes if k.startswith(VAE)}, dtype),
                                         config=folder, subfolder="vae", **common)
    scheduler_config = json.loads((CONFIGS_DIR / config / "scheduler" / "scheduler_config.json").read_text())
    scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_pretrained(folder, subfolder="scheduler")
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=CLIPTokenizer.from_pretrained(str(CONFIGS_DIR / "tokenizer")),
        unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe, notes


def _as_config(unet: Any, folder: Path, reload: Callable[[], Any]) -> Any:
    """Give a loaded UNet the settings of ``folder``'s UNet config: in place when they differ only in sample size and
    attention upcasting (the 768 model's), else by loading it again."""
    from diffusers.models.attention_processor import Attention

    wanted = json.loads((folder / "unet" / "config.json").read_text())
    changed = {k: v for k, v in wanted.items() if not k.startswith("_") and unet.config.get(k) != v}
    if set(changed) - {"sample_size", "upcast_attention"}:
        return reload()
    unet.register_to_config(**changed)
    if "upcast_attention" in changed:
        for module in unet.modules():
            if isinstance(module, Attention):
                module.upcast_attention = changed["upcast_attention"]
    return unet


# -- fingerprints ------------------------------------------------------------------------------------------------


def file_digest(path: Path, memo: Path | None = None) -> str:
    """SHA-256 of a file's bytes, computed once and remembered in ``memo`` by path, size and modification time."""
    stat = path.stat()
    key = str(path.resolve())
    entries = _read_memo(memo)
    entry = entries.get(key)
    if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    if stat.st_size > 100_000_000:
        log.info("fingerprinting %s (%.1f GB) once, so that no cached picture is ever served for another model…",
                 path.name, stat.st_size / 1e9)
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if memo is not None:
        entries = _read_memo(memo)
        entries.pop(key, None)
        entries[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
        _write_memo(memo, dict(list(entries.items())[-MEMO_ENTRIES:]))
    return digest


def _read_memo(memo: Path | None) -> dict[str, dict[str, Any]]:
    if memo is None or not memo.is_file():
        return {}
    try:
        entries = json.loads(memo.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s is unreadable; model fingerprints will be computed again", memo)
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_memo(memo: Path, entries: dict[str, dict[str, Any]]) -> None:
    memo.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=memo.parent, suffix=".tmp", delete=False, encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
    os.replace(f.name, memo)


def weights_digest(model: str, path: Path, cache_dir: str | None, memo: Path | None) -> str:
    """What the weights of ``model`` are: a file's SHA-256; for a diffusers folder one over the files the pipeline
    reads; for a hub id the commit of the downloaded snapshot."""
    if path.is_file():
        return "sha256:" + file_digest(path, memo)
    if path.is_dir():
        whole = hashlib.sha256()
        parts = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")
        files = sorted(f for part in parts for f in ([path / part] if part.endswith(".json") else
                                                     (path / part).rglob("*")) if f.is_file())
        for file in files:
            whole.update(f"{file.relative_to(path).as_posix()}={file_digest(file, memo)}\n".encode())
        return "folder-sha256:" + whole.hexdigest()
    if path.exists() or model.count("/") != 1:
        return "missing"
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, "model_index.json", cache_dir=cache_dir)
    except Exception:  # noqa: BLE001 - no hub client or an odd cache: the repo id alone names it
        found = None
    return f"hub:{model}@{Path(found).parent.name}" if isinstance(found, str) else f"hub:{model}@not-downloaded"
