"""Build a tiny, randomly initialised SD 2.x pipeline of the real diffusers classes into a folder.

Weights cannot be downloaded here, so tests (and the CPU benches) load this folder through the normal
``--model PATH`` route.  Shapes follow diffusers' own SD2 fast tests (tests/pipelines/stable_diffusion_2):
two-level UNet with linear projections and SD2-style head dims (one layer per block), a four-level VAE (scale
factor 8 as SD 2.1's, so 64x64 images come from 8x8 latents and a preview is 8x8) and a 5-layer CLIP text encoder
sized for the full CLIP vocabulary, with the tokenizer files shipped in inference/configs/tokenizer.  Kept this
small on purpose: the whole suite paints hundreds of pictures on a 2-core machine (a 64x64 picture in 4 steps
takes ~0.09 s; with SD2's fast-test VAE of scale factor 2 and two layers per block it took ~0.35 s), and
torch.compile's test compiles the UNet, whose compile time grows with its layers.

``compact=True`` makes it smaller still for torch.compile's tests, whose time is inductor's C++ (~1.5 s a kernel on
this machine, one kernel per fused operation and shape): a one-level UNet without a middle block and a two-level VAE
(scale factor 2), 29 kernels instead of 54 (compiled and warm in 85 s instead of 138 s, two at once on 2 cores).
What those tests check (compiled once per size, no recompilation for a new batch or sampler, the plain picture) does
not depend on the model's depth.

    python tests/tiny_pipeline.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "inference" / "configs" / "tokenizer"


def build_tiny_pipeline(out_dir: str | Path, prediction_type: str = "epsilon", compact: bool = False) -> Path:
    """Write a tiny random SD 2.x pipeline (diffusers folder layout) to ``out_dir`` and return the path."""
    import torch
    from diffusers import AutoencoderKL
    from diffusers import DDIMScheduler
    from diffusers import StableDiffusionPipeline
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig
    from transformers import CLIPTextModel
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    levels = {"block_out_channels": (32,), "down_block_types": ("CrossAttnDownBlock2D",),
              "up_block_types": ("CrossAttnUpBlock2D",), "mid_block_type": None, "attention_head_dim": (2,)}
    if not compact:
        levels = {"block_out_channels": (32, 64), "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
                  "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "attention_head_dim": (2, 4)}
    unet = UNet2DConditionModel(
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        cross_attention_dim=32,
        use_linear_projection=True,
        **levels,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type=prediction_type,
    )
    torch.manual_seed(0)
    vae_levels = 2 if compact else 4
    vae = AutoencoderKL(
        block_out_channels=[32] * vae_levels,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * vae_levels,
        up_block_types=["UpDecoderBlock2D"] * vae_levels,
        latent_channels=4,
        sample_size=64,
    )
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=0,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            vocab_size=49408,
            hidden_act="gelu",
            projection_dim=512,
        )
    )
    tokenizer = CLIPTokenizer.from_pretrained(str(TOKENIZER_DIR))
    pipe = StableDiffusionPipeline(
        unet=unet,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    out = Path(out_dir)
    pipe.save_pretrained(str(out))
    return out


if __name__ == "__main__":
    print(build_tiny_pipeline(sys.argv[1]))
