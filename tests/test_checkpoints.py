"""Single SD 2.x checkpoint files as users hold them, built here in the original key layout at the tiny model's sizes:
every format loads every tensor intact and paints; SD 1.x and unsafe pickles are refused in plain words; the
checkpoint decides v-prediction when its name does not; EMA weights are preferred; the model's identity (cache keys,
the API's model hash) follows the file's content and the config."""

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from inference import checkpoints
from inference.diffusers_backend import DiffusersBackend
from inference.request import GenerationRequest
from tests.ldm_checkpoint import pipeline_to_ldm

REQUEST = GenerationRequest(prompt="a lighthouse on a cliff at night", seed=7, steps=2, width=64, height=64)
CONTEXT_KEY = checkpoints.CONTEXT_KEY


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_model), safety_checker=None)


@pytest.fixture(scope="module")
def tiny_configs(tiny_model, tmp_path_factory):
    """The tiny model's component configs laid out as inference/configs is: a 'sd21-base' (epsilon) and a 'sd21-v'
    (v-prediction, bigger sample size, attention upcast, DDIM) folder, and the tokenizer."""
    root = tmp_path_factory.mktemp("configs")
    for name in ("sd21-base", "sd21-v"):
        for part in ("unet", "vae", "text_encoder", "scheduler"):
            shutil.copytree(tiny_model / part, root / name / part, ignore=shutil.ignore_patterns("*.safetensors"))
        shutil.copy(tiny_model / "model_index.json", root / name)
    unet = root / "sd21-v" / "unet" / "config.json"
    unet.write_text(json.dumps({**json.loads(unet.read_text()), "sample_size": 48, "upcast_attention": True}))
    scheduler = root / "sd21-v" / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "prediction_type": "v_prediction"}))
    shutil.copytree(checkpoints.CONFIGS_DIR / "tokenizer", root / "tokenizer")
    return root


@pytest.fixture
def configs(tiny_configs, monkeypatch):
    monkeypatch.setattr(checkpoints, "CONFIGS_DIR", tiny_configs)
    return tiny_configs


def save(state, path):
    if path.suffix.lower() == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": state, "global_step": 110000}, path)
    return path


def loaded(path, **settings):
    engine = DiffusersBackend(str(path), device="cpu", **settings)
    engine.start()
    status = engine.wait(120)
    return engine, status


def tensors(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny-512.safetensors", "tiny-512.SAFETENSORS", "tiny-512.ckpt", "tiny-512.pt"])
def test_every_format_loads_every_tensor_intact_and_paints(tiny, configs, tmp_path, name):
    path = save(pipeline_to_ldm(tiny.unet, tiny.vae, tiny.text_encoder), tmp_path / name)
    engine, status = loaded(path)
    assert status.ready, status
    for part in ("unet", "vae", "text_encoder"):
        want, got = tensors(getattr(tiny, part)), tensors(getattr(engine._pipe, part))
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), part
    assert "loaded as SD 2.1-base (512, epsilon): its file name says 512/base" in status.message
    image = engine.generate([REQUEST])[0].image
    assert image.size == (64, 64)
    engine.close()


def sd1_state():
    return {CONTEXT_KEY: torch.zeros(320, 768, dtype=torch.float16),
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3, dtype=torch.float16)}


@pytest.mark.parametrize("name", ["v1-5.safetensors", "v1-5.ckpt", "v1-5.pt", "v1-5.bin", "V1-5.SAFETENSORS"])
def test_an_sd1_checkpoint_is_refused_in_every_format_with_the_same_words(tmp_path, name):
    engine, status = loaded(save(sd1_state(), tmp_path / name))
    assert status.state == "failed"
    assert f"{name} is not a Stable Diffusion 2.x checkpoint (its cross-attention is 768 wide" in status.message


def test_training_callbacks_in_a_pickle_are_not_built_and_do_not_stop_the_check(tmp_path, monkeypatch):
    """Old .ckpt files pickle pytorch_lightning's ModelCheckpoint beside the weights; it is read as an inert
    placeholder (pytorch_lightning is not installed here: only a stand-in module while writing), and the file is
    judged by its weights."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    module.ModelCheckpoint = type("ModelCheckpoint", (), {"__module__": module.__name__})
    with monkeypatch.context() as patch:
        for name in ("pytorch_lightning", "pytorch_lightning.callbacks"):
            patch.setitem(sys.modules, name, types.ModuleType(name))
        patch.setitem(sys.modules, module.__name__, module)
        path = tmp_path / "v1-5-with-callbacks.ckpt"
        torch.save({"state_dict": sd1_state(), "callbacks": {"ModelCheckpoint": module.ModelCheckpoint()}}, path)
    assert "pytorch_lightning" not in sys.modules
    engine, status = loaded(path)
    assert "is not a Stable Diffusion 2.x checkpoint (its cross-attention is 768 wide" in status.message


class _Payload:
    """A hostile pickle: loading it would create a file (as it could run any command)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".ckpt", ".bin"])
def test_a_pickle_with_code_is_refused_without_running_it(tmp_path, suffix):
    marker = tmp_path / "ran"
    path = tmp_path / f"model{suffix}"
    torch.save({"state_dict": {CONTEXT_KEY: torch.zeros(2, 1024)}, "payload": _Payload(marker)}, path)
    engine, status = loaded(path)
    assert status.state == "failed"
    assert "holds Python objects besides its weights (" in status.message and "pathlib." in status.message
    assert "does not unpickle" in status.message and ".safetensors" in status.message
    assert not marker.exists()


def crafted(tiny, answer):
    """The tiny model's checkpoint with a UNet that answers ``answer`` everywhere (output convolution zero, bias
    set), standing for what a trained epsilon (about its input, 0.5) or v model (far below it) answers the probe."""
    state = pipeline_to_ldm(tiny.unet, tiny.vae, tiny.text_encoder)
    state["model.diffusion_model.out.2.weight"] = torch.zeros_like(state["model.diffusion_model.out.2.weight"])
    state["model.diffusion_model.out.2.bias"] = torch.full_like(state["model.diffusion_model.out.2.bias"], answer)
    return state


@pytest.mark.slow
def test_a_v_model_without_768_in_its_name_is_found_by_asking_its_unet(tiny, configs, tmp_path):
    engine, status = loaded(save(crafted(tiny, -1.5), tmp_path / "custom.safetensors"))
    assert status.ready, status
    assert "loaded as SD 2.1 (768, v-prediction): its file name says neither 512 nor 768" in status.message
    assert "answered -2.00" in status.message and "--model-config sd21-base overrides" in status.message
    pipe = engine._pipe
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.unet.config.sample_size == 48 and pipe.unet.config.upcast_attention is True
    from diffusers.models.attention_processor import Attention

    assert all(m.upcast_attention for m in pipe.unet.modules() if isinstance(m, Attention))
    assert engine.generate([REQUEST])[0].image.size == (64, 64)


@pytest.mark.slow
def test_an_epsilon_model_without_a_telling_name_stays_epsilon(tiny, configs, tmp_path):
    engine, status = loaded(save(crafted(tiny, 0.5), tmp_path / "custom.safetensors"))
    assert "loaded as SD 2.1-base (512, epsilon): its file name says neither" in status.message
    assert "answered +0.00" in status.message
    assert engine._pipe.scheduler.config.prediction_type == "epsilon"


@pytest.mark.slow
def test_model_config_wins_over_the_checkpoint(tiny, configs, tmp_path):
    engine, status = loaded(save(crafted(tiny, -1.5), tmp_path / "custom-768.safetensors"), model_config="sd21-base")
    assert "loaded as SD 2.1-base (512, epsilon): as --model-config says" in status.message
    assert engine._pipe.scheduler.config.prediction_type == "epsilon"


@pytest.mark.slow
def test_the_ema_weights_are_preferred_and_the_user_is_told(tiny, configs, tmp_path):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)
    ema = UNet2DConditionModel.from_config(tiny.unet.config)
    state = pipeline_to_ldm(tiny.unet, tiny.vae, tiny.text_encoder, ema_unet=ema)
    engine, status = loaded(save(state, tmp_path / "trained-512.safetensors"))
    assert status.ready, status
    got, want, training = tensors(engine._pipe.unet), tensors(ema), tensors(tiny.unet)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not all(torch.equal(got[k], training[k]) for k in training)
    assert "The file holds training and EMA weights; the EMA weights (the ones meant for pictures) were used" \
        in status.message


@pytest.mark.slow
def test_weights_are_read_into_the_target_dtype_once(tiny, configs, tmp_path):
    """fp32 file, fp16 model: every parameter is fp16 and owns its memory (nothing left pointing into a larger
    buffer, as a whole-file copy would)."""
    path = save(pipeline_to_ldm(tiny.unet, tiny.vae, tiny.text_encoder), tmp_path / "tiny-512.safetensors")
    engine, status = loaded(path, dtype="fp16")
    assert status.ready, status
    for part in ("unet", "vae"):
        for name, param in getattr(engine._pipe, part).named_parameters():
            assert param.dtype == torch.float16, name
            assert param.untyped_storage().nbytes() == param.numel() * 2, name
    want = tensors(tiny.unet)["conv_in.weight"].half()
    assert torch.equal(engine._pipe.unet.state_dict()["conv_in.weight"], want)


# -- identity: cache keys and the API's model hash ----------------------------------------------------------------


def test_identity_follows_content_config_dtype_and_size(tiny, tmp_path):
    path = save(pipeline_to_ldm(tiny.unet, tiny.vae, tiny.text_encoder), tmp_path / "model.safetensors")
    memo = tmp_path / "instance"

    def identity(**settings):
        return DiffusersBackend(str(path), **settings).identity(memo)

    first = identity()
    assert identity() == first  # the same file and settings: the same pictures
    assert len({first, identity(model_config="sd21-v"), identity(model_config="sd21-base"), identity(dtype="fp16"),
                identity(max_size=256)}) == 5
    remembered = json.loads((memo / "model-fingerprints.json").read_text())
    assert remembered[str(path.resolve())]["sha256"] in first
    state = crafted(tiny, 0.5)  # another model written over the same path
    save(state, path)
    assert identity() != first


def test_a_fingerprint_is_computed_once_and_remembered_by_size_and_time(tmp_path):
    path = tmp_path / "model.safetensors"
    save({"x": torch.zeros(4)}, path)
    memo = tmp_path / "memo.json"
    real = checkpoints.file_digest(path, memo)
    stat = path.stat()
    entries = json.loads(memo.read_text())
    entries[str(path.resolve())]["sha256"] = "remembered"
    memo.write_text(json.dumps(entries))
    assert checkpoints.file_digest(path, memo) == "remembered"  # not read again
    save({"x": torch.ones(5)}, path)  # a new file: other size and time
    assert path.stat().st_size != stat.st_size
    assert checkpoints.file_digest(path, memo) not in ("remembered", real)


def test_a_folder_model_changes_identity_with_its_config(tiny_model, tmp_path):
    folder = tmp_path / "sd"
    shutil.copytree(tiny_model, folder)
    before = DiffusersBackend(str(folder)).identity(tmp_path)
    scheduler = folder / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({**json.loads(scheduler.read_text()), "prediction_type": "v_prediction"}))
    assert DiffusersBackend(str(folder)).identity(tmp_path) != before


@pytest.mark.slow
def test_a_changed_model_is_never_served_another_models_cached_picture(tiny, configs, tmp_path, stories_dir):
    """The issue's case: the same file painted as one config, then the server restarted with another: the picture is
    painted again, and the API's model hash differs; replacing the file's content does the same."""
    from app import create_app

    path = save(pipeline_to_ldm(tiny.unet, tiny.vae, tiny.text_encoder), tmp_path / "model.safetensors")
    instance = tmp_path / "instance"

    def serve(**settings):
        engine, status = loaded(path, **settings)
        assert status.ready, status
        app = create_app({"TESTING": True, "STORIES": str(stories_dir), "INSTANCE": str(instance),
                          "BACKEND_INSTANCE": engine, "PREFETCH_DEPTH": 0})
        client = app.test_client()
        body = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", "seed": 3, "steps": 2, "width": 64,
                                                      "height": 64}).get_json()
        counters = app.extensions["images"].stats()["counters"]
        app.extensions["images"].close()
        return json.loads(body["info"])["sd_model_hash"], counters["cache_hits"], np.asarray(body["images"][0])

    first_hash, hits, _ = serve(model_config="sd21-base")
    assert hits == 0
    assert serve(model_config="sd21-base")[:2] == (first_hash, 1)  # same model: served from the cache
    other_hash, hits, _ = serve(model_config="sd21-v")
    assert hits == 0 and other_hash != first_hash
    save(crafted(tiny, 0.5), path)
    replaced_hash, hits, _ = serve(model_config="sd21-base")
    assert hits == 0 and replaced_hash not in (first_hash, other_hash)
