"""Our own denoise loop (--optimize graphs / max) paints the plain pipeline's pictures, on the tiny SD 2.x model.

CUDA graphs cannot run on this CPU: the captured-shape logic (static buffers, batches padded to buckets) is checked
with an emulated capture, a test double standing in for the GPU that re-runs the captured call on replay and writes
into the same static output, as a replayed graph does.  The real capture is timed and checked on a GPU by
bench/gpu_check.sh.
"""

import numpy as np
import pytest

from inference.backend import GenerationCancelled
from inference.diffusers_backend import DiffusersBackend
from inference.request import GenerationRequest

REQUEST = GenerationRequest(prompt="a lighthouse on a cliff at night", seed=7, steps=3, width=64, height=64)
VARIANTS = [
    REQUEST,
    REQUEST.replace(sampler_name="Euler a"),
    REQUEST.replace(sampler_name="Heun", scheduler="karras"),
    REQUEST.replace(cfg_scale=1),
    REQUEST.replace(tiling=True),
    REQUEST.replace(width=96, negative_prompt="fog"),
]


def pixels(result):
    return np.asarray(result.image).astype(int)


def plain(backend, request):
    return pixels(backend.generate([request])[0])


def load(tiny_model, level, **kwargs):
    engine = DiffusersBackend(str(tiny_model), device="cpu", optimize=level, warmup=[(64, 64, False)], **kwargs)
    engine.start()
    status = engine.wait(900)
    assert status.ready, status
    return engine


@pytest.fixture(scope="module")
def fast(tiny_model):
    engine = load(tiny_model, "graphs")
    yield engine
    engine.close()


def emulated_capture(fn):
    """Test double for a CUDA graph capture: replay re-runs the call into the static output."""
    out = fn()
    return out, lambda: out.copy_(fn()), None


@pytest.mark.slow
def test_the_graphs_level_says_it_has_no_cuda_graphs_on_a_cpu(fast):
    assert (
        "optimized: graphs (own loop, prompt cache 256, CUDA graphs need a CUDA GPU, not cpu)" in fast.status().message
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "request_", VARIANTS, ids=lambda r: f"{r.sampler_name}-cfg{r.cfg_scale}-tile{r.tiling}-{r.width}"
)
def test_own_loop_paints_the_plain_picture(fast, backend, request_):
    assert np.abs(plain(fast, request_) - plain(backend, request_)).max() <= 3


@pytest.mark.slow
def test_own_loop_batches_match_single_plain_pictures_and_keep_order(fast, backend):
    requests = [REQUEST.replace(seed=s, prompt=f"a lighthouse, take {s}") for s in (1, 2, 3)]
    results = fast.generate(requests)
    assert [r.seed for r in results] == [1, 2, 3]
    for request, result in zip(requests, results, strict=True):
        assert np.abs(pixels(result) - plain(backend, request)).max() <= 3


@pytest.mark.slow
def test_progress_each_step_with_latents_and_cancelling_stops(fast):
    seen = []
    fast.generate([REQUEST.replace(steps=4)], lambda step, total, latents: seen.append((step, total, latents().shape)))
    assert seen == [(1, 4, (1, 4, 8, 8)), (2, 4, (1, 4, 8, 8)), (3, 4, (1, 4, 8, 8)), (4, 4, (1, 4, 8, 8))]

    def stop_after_two(step, total, latents):
        seen.append(step)
        if step == 2:
            raise GenerationCancelled()

    seen.clear()
    with pytest.raises(GenerationCancelled):
        fast.generate([REQUEST.replace(steps=10)], stop_after_two)
    assert seen == [1, 2]
    assert fast.generate([REQUEST])[0].image.size == (64, 64)


def test_prompt_embeddings_are_cached_by_text_and_bounded(backend):
    import torch

    from inference.denoise import Denoiser

    denoiser = Denoiser(torch, backend._pipe, graphs=False, embed_cache=2)
    first = denoiser.embeds.get("a lighthouse")
    assert denoiser.embeds.get("a lighthouse") is first and (denoiser.embeds.hits, denoiser.embeds.misses) == (1, 1)
    denoiser.embeds.get("a train")
    denoiser.embeds.get("a harbour")
    assert len(denoiser.embeds) == 2 and denoiser.embeds.get("a lighthouse") is not first  # dropped, encoded again
    assert torch.equal(denoiser.embeds.get("a lighthouse"), first)


@pytest.mark.slow
def test_captured_shapes_replay_fresh_inputs_and_padded_batches_match_the_plain_pictures(backend):
    import torch

    from inference.denoise import Denoiser

    pipe = backend._pipe
    denoiser = Denoiser(torch, pipe, graphs=True, capture=emulated_capture)
    assert denoiser.graphs and denoiser.pad
    for seeds, prompt in [((1, 2, 3), "a lighthouse"), ((4, 5, 6), "a red train in snow"), ((7,), "a harbour")]:
        requests = [REQUEST.replace(seed=s, prompt=prompt, sampler_name="DPM++ 2M", scheduler="karras") for s in seeds]
        with backend._generate_lock, torch.inference_mode():  # the shared pipeline's scheduler (see above)
            pipe.scheduler = backend._scheduler("DPM++ 2M", "karras")
            images = denoiser.paint([prompt] * len(seeds), [""] * len(seeds), list(seeds), 64, 64, 3, 7.0)
        for request, image in zip(requests, images, strict=True):
            assert np.abs(np.asarray(image).astype(int) - plain(backend, request)).max() <= 3
    # three pictures padded to the bucket of 4 (8 rows with the CFG pair), one picture in its own: two captures
    assert denoiser.graph_count() == 2
    assert sorted(key[0] for key in denoiser._shapes) == [2, 8]


@pytest.mark.slow
def test_a_failed_capture_paints_without_the_graph(backend):
    import torch

    from inference.denoise import Denoiser

    def out_of_memory(fn):
        raise torch.OutOfMemoryError("CUDA out of memory (test double)")

    denoiser = Denoiser(torch, backend._pipe, graphs=True, capture=out_of_memory)
    # the shared pipeline's scheduler is per call: hold the painter's lock, as a paint still running from an earlier
    # test's service would otherwise step the same scheduler
    with backend._generate_lock, torch.inference_mode():
        backend._pipe.scheduler = backend._scheduler("DPM++ 2M", "karras")
        image = denoiser.paint([REQUEST.prompt], [""], [7], 64, 64, 3, 7.0)[0]
    assert denoiser.graph_count() == 0
    expected = plain(backend, REQUEST.replace(sampler_name="DPM++ 2M", scheduler="karras"))
    assert np.abs(np.asarray(image).astype(int) - expected).max() <= 3


def test_graphs_and_deepcache_do_not_mix():
    with pytest.raises(ValueError, match="cannot be combined with optimize=graphs"):
        DiffusersBackend("x", optimize="graphs", deepcache=3)


@pytest.mark.slow
def test_max_level_compiles_during_warm_up_only_and_paints_the_plain_picture(compact_model, tmp_path,
                                                                             compact_backend, monkeypatch):
    """What dynamo compiles is checked with its eager backend (inductor's code generation takes minutes on 2 shared
    cores, and the optimize=compile test already covers it), on the compact model, which dynamo traces quicker."""
    from torch._dynamo.utils import counters

    from inference import optimizations

    monkeypatch.setattr(optimizations, "COMPILE_BACKEND", "eager")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    backend = compact_backend
    engine = load(compact_model, "max", compile_cache=str(tmp_path / "inductor"))
    assert "optimized: max (own loop" in engine.status().message
    graphs = counters["stats"]["unique_graphs"]
    # every batch size (padded to the buckets prepared) and sampler after warm-up: nothing new to compile
    for count, (sampler, schedule) in zip((1, 3, 5, 2), [("DPM++ 2M", "karras"), ("Euler a", "automatic"),
                                                          ("DPM2", "karras"), ("DDIM", "automatic")], strict=True):
        requests = [REQUEST.replace(seed=seed, sampler_name=sampler, scheduler=schedule) for seed in range(count)]
        results = engine.generate(requests)
        assert np.abs(pixels(results[-1]) - plain(backend, requests[-1])).max() <= 3
    assert counters["stats"]["unique_graphs"] == graphs
    engine.close()


@pytest.mark.slow
def test_img2img_paints_with_the_plain_pipeline_and_says_so_once(fast, backend, caplog):
    import io
    import logging

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 120, 40)).save(buffer, format="PNG")
    request = REQUEST.replace(init_image=buffer.getvalue(), steps=4, denoising_strength=0.5)
    with caplog.at_level(logging.INFO, logger="inference.diffusers_backend"):
        first = fast.generate([request])[0]
        fast.generate([request.replace(seed=8)])
    assert caplog.text.count("the fast denoise loop (--optimize graphs) paints txt2img pictures only") == 1
    assert np.abs(pixels(first) - plain(backend, request)).max() <= 3  # the same picture as without the loop
