"""Write a diffusers SD 2.x pipeline back into the original single-file (LDM) layout, as users download it.

Used by the tests (on the tiny pipeline of tests/tiny_pipeline.py) and by bench/checkpoint_memory.py (on random
weights of the real SD 2.1 sizes).  The key names are the original ones: ``model.diffusion_model.input_blocks.…``
for the UNet, ``first_stage_model.encoder.down.…`` for the VAE (attention weights as 1x1 convolutions) and
OpenCLIP's ``cond_stage_model.model.transformer.resblocks.N.attn.in_proj_weight`` (q, k and v in one tensor) for
the text encoder, beside the training buffers (``betas``, ``alphas_cumprod``) real files carry.  With ``ema`` the
UNet is stored twice, as training checkpoints are: ``model.diffusion_model.*`` and the flattened
``model_ema.diffusion_model…`` names.
"""

from __future__ import annotations

import re
from typing import Any

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_CLIP_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
               "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def unet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """UNet2DConditionModel state dict -> ``model.diffusion_model.*``."""
    per_level = config["layers_per_block"] + 1
    up_has_attention = ["CrossAttn" in kind for kind in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        name, _, leaf = key.rpartition(".")
        for ours, theirs in _UNET_TOP.items():
            if name == ours:
                name = theirs
                break
        else:
            name = _unet_block(name, per_level, up_has_attention)
        out[f"model.diffusion_model.{name}.{leaf}"] = value
    return out


def _unet_block(name: str, per_level: int, up_has_attention: list[bool]) -> str:
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.?(.*)", name):
        level, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        return _inner(f"input_blocks.{per_level * level + index + 1}.{0 if kind == 'resnets' else 1}", kind, rest)
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv", name):
        return f"input_blocks.{per_level * (int(m[1]) + 1)}.0.op"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.?(.*)", name):
        kind, index, rest = m[1], int(m[2]), m[3]
        return _inner(f"middle_block.{2 * index if kind == 'resnets' else 1}", kind, rest)
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.?(.*)", name):
        level, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
        return _inner(f"output_blocks.{per_level * level + index}.{0 if kind == 'resnets' else 1}", kind, rest)
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv", name):
        level = int(m[1])
        return f"output_blocks.{per_level * level + per_level - 1}.{2 if up_has_attention[level] else 1}.conv"
    raise KeyError(f"no LDM name for UNet weight {name}")


def _inner(block: str, kind: str, rest: str) -> str:
    if kind == "resnets":
        head, _, tail = rest.partition(".")
        rest = ".".join(filter(None, [_RESNET.get(head, head), tail]))
    return f"{block}.{rest}" if rest else block


def vae_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """AutoencoderKL state dict -> ``first_stage_model.*`` (mid-block attention as 1x1 convolutions)."""
    levels = len(config["block_out_channels"])
    out = {}
    for key, value in state.items():
        name = key
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", name)
        name = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.",
                      lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", name)
        name = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                      lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", name)
        name = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", name)
        if ".mid_block.attentions.0." in name:
            head, _, tail = name.partition(".mid_block.attentions.0.")
            part, _, leaf = tail.rpartition(".")
            name = f"{head}.mid.attn_1.{_VAE_ATTENTION[part]}.{leaf}"
            if leaf == "weight" and value.dim() == 2:
                value = value[:, :, None, None]
        name = name.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        out[f"first_stage_model.{name}"] = value
    return out


def clip_to_openclip(state: dict[str, Any], extra_layer: bool = False) -> dict[str, Any]:
    """CLIPTextModel state dict -> OpenCLIP ``cond_stage_model.model.*``; ``extra_layer`` adds the 24th block and the
    projection the real SD 2.x files carry (diffusers stops at the penultimate layer and skips both)."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in state.items() if "position_ids" not in k}
    prefix = "cond_stage_model.model."
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"]}
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for i in layers:
        ours, theirs = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for leaf in ("weight", "bias"):
            out[f"{theirs}attn.in_proj_{leaf}"] = torch.cat(
                [state[f"{ours}self_attn.{p}_proj.{leaf}"] for p in "qkv"])
            for part, name in _CLIP_LAYER.items():
                out[f"{theirs}{name}.{leaf}"] = state[f"{ours}{part}.{leaf}"]
    if extra_layer:
        last = f"{prefix}transformer.resblocks.{layers[-1]}."
        for key in [k for k in out if k.startswith(last)]:
            out[key.replace(last, f"{prefix}transformer.resblocks.{layers[-1] + 1}.")] = out[key].clone()
    width = out[prefix + "ln_final.weight"].shape[0]
    out[prefix + "text_projection"] = torch.eye(width, dtype=out[prefix + "ln_final.weight"].dtype)
    out[prefix + "logit_scale"] = torch.tensor(4.6052)
    return out


def pipeline_to_ldm(unet: Any, vae: Any, text_encoder: Any, ema_unet: Any = None,
                    extra_text_layer: bool = False) -> dict[str, Any]:
    """The whole single-file checkpoint; ``ema_unet`` (a second UNet) is stored as the EMA copy."""
    import torch

    out = {**unet_to_ldm(unet.state_dict(), unet.config), **vae_to_ldm(vae.state_dict(), vae.config),
           **clip_to_openclip(text_encoder.state_dict(), extra_text_layer)}
    if ema_unet is not None:
        for key, value in unet_to_ldm(ema_unet.state_dict(), ema_unet.config).items():
            out["model_ema." + key.removeprefix("model.").replace(".", "")] = value
        out["model_ema.decay"] = torch.tensor(0.9999)
        out["model_ema.num_updates"] = torch.tensor(1000, dtype=torch.int32)
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    out["betas"] = betas.float()
    out["alphas_cumprod"] = torch.cumprod(1 - betas, 0).float()
    return {k: v.contiguous() for k, v in out.items()}
