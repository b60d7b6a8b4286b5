"""img2img and inpainting in the in-process diffusers backend (inference/diffusers_backend.py).

A request's pictures are decoded and prepared as A1111 does (`prepare`, with inference/imageops.py), encoded by the
VAE (`encode`) and painted by diffusers' img2img or inpaint pipeline (`Img2Img`), made over the loaded pipeline's own
components.  torch and the pipeline come from the backend, which holds its painting lock meanwhile.
"""

from __future__ import annotations

from typing import Any

from inference.errors import RequestError
from inference.imageops import LANCZOS
from inference.imageops import Img2ImgInput
from inference.imageops import apply_overlay
from inference.imageops import latent_mask
from inference.imageops import prepare_img2img
from inference.imageops import scaled_size
from inference.pictures import load_picture
from inference.request import GenerationRequest


def prepare(request: GenerationRequest, width: int, height: int) -> Img2ImgInput:
    """Decode the request's pictures and prepare them as A1111 does (inference/imageops.py)."""
    if request.init_image is None:
        raise RequestError("init_from", f"the picture {request.init_from} to start from was not loaded (the "
                                        "generation service loads it from its cache before painting)")
    source = load_picture(request.init_image, "init_image")
    mask = load_picture(request.mask, "mask") if request.mask is not None else None
    return prepare_img2img(source, mask, width, height, request.resize_mode, request.mask_blur,
                           request.inpainting_fill, request.inpaint_full_res, request.inpaint_full_res_padding,
                           request.inpainting_mask_invert)


class Img2Img:
    """diffusers' img2img and inpaint pipelines for one loaded pipeline, made when first needed, and the painting of
    img2img batches with them."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def close(self) -> None:
        """Let the pipelines go (the model they share is being let go)."""
        self._made.clear()

    def pipelines(self, pipe: Any) -> tuple[Any, Any]:
        """diffusers' img2img and inpaint pipelines over the loaded pipeline's own components (no second copy of
        any weights), made once."""
        if not self._made:
            from diffusers import StableDiffusionImg2ImgPipeline
            from diffusers import StableDiffusionInpaintPipeline

            for name, cls in (("img2img", StableDiffusionImg2ImgPipeline), ("inpaint", StableDiffusionInpaintPipeline)):
                made = cls(**pipe.components, requires_safety_checker=False)
                made.set_progress_bar_config(disable=True)
                self._made[name] = made
        return self._made["img2img"], self._made["inpaint"]

    def paint(self, torch: Any, pipe: Any, batch: list[GenerationRequest], inputs: list[Img2ImgInput],
              seeds: list[int], width: int, height: int, step_end: Any) -> list[Any]:
        """Paint a batch of img2img requests (same size, steps, sampler, cfg and strength; a masked one alone).

        Each picture is encoded by the VAE with its own seeded generator, which then draws its noise: the same request
        paints the same picture, alone or in a batch.  Without a mask, diffusers' StableDiffusionImg2ImgPipeline
        paints from those latents.  With one, StableDiffusionInpaintPipeline does: with the normal 4-channel SD UNet it
        lays the init latents, noised to the current step, over everything outside the mask after each step (and
        the init latents themselves after the last), which is what A1111 does when no inpainting model is loaded.
        The unmasked pixels are then laid back over the picture (A1111's overlay)."""
        img2img, inpaint = self.pipelines(pipe)
        first = batch[0]
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        latents = torch.cat([encode(torch, pipe, item, generator, width, height)
                             for item, generator in zip(inputs, generators, strict=True)])
        factor = pipe.vae_scale_factor
        masked = inputs[0].mask if len(inputs) == 1 else None
        keep = None
        if masked is not None:
            paint = torch.from_numpy(latent_mask(masked, width // factor, height // factor))
            paint = paint.to(device=latents.device, dtype=latents.dtype)[None, None]
            keep = 1 - paint
            fill = batch[0].inpainting_fill
            if fill == 2:  # latent noise, from the picture's own seed
                noise = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(seeds[0]))
                latents = latents * keep + noise.to(device=latents.device, dtype=latents.dtype) * paint
            elif fill == 3:  # latent nothing
                latents = latents * keep
        common = {
            "prompt": [r.prompt for r in batch],
            "negative_prompt": [r.negative_prompt for r in batch],
            "image": latents,
            "strength": float(first.denoising_strength),
            "num_inference_steps": first.steps,
            "guidance_scale": first.cfg_scale,
            "generator": generators,
            "callback_on_step_end": step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
            "output_type": "pil",
        }
        for made in (img2img, inpaint):
            made.scheduler = pipe.scheduler
        if int(first.steps * first.denoising_strength) < 1:
            # no step to paint (A1111 paints one at the smallest noise): the init latents, decoded
            decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
            images = pipe.image_processor.postprocess(decoded, output_type="pil")
        elif keep is not None:
            # the mask at pixel size, made of whole latent cells, so diffusers' own downsizing gives it back exactly
            pixels = (1 - keep).repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
            images = inpaint(**common, mask_image=pixels, masked_image_latents=torch.zeros_like(latents),
                             height=height, width=width).images
        else:
            images = img2img(**common).images
        return [apply_overlay(image, item.paste_to, item.overlay) if item.overlay is not None else image
                for image, item in zip(images, inputs, strict=True)]


def encode(torch: Any, pipe: Any, item: Img2ImgInput, generator: Any, width: int, height: int) -> Any:
    """The init picture's latents (sampled with the picture's own generator, scaled for the UNet); for latent
    upscale, encoded at the picture's own size and resized bilinearly, as A1111 does."""
    image = item.image
    factor = pipe.vae_scale_factor
    if image.size != scaled_size(*image.size, factor):
        image = image.resize(scaled_size(*image.size, factor), LANCZOS)
    pixels = pipe.image_processor.preprocess(image, height=image.height, width=image.width)
    pixels = pixels.to(device=pipe.vae.device, dtype=pipe.vae.dtype)
    latents = pipe.vae.encode(pixels).latent_dist.sample(generator=generator) * pipe.vae.config.scaling_factor
    if item.latent_upscale and latents.shape[-2:] != (height // factor, width // factor):
        latents = torch.nn.functional.interpolate(latents, size=(height // factor, width // factor),
                                                  mode="bilinear")
    return latents
