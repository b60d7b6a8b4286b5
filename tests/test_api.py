"""The A1111-compatible API, driven by the real `webuiapi` client against `python -m inference serve`."""

import base64
import io
import json
import threading
import time

import numpy as np
import pytest
import requests
import webuiapi
from PIL import Image

from tests.support import ApiServer
from tests.support import encoded_picture
from tests.support import smooth_picture
from tests.support import square_mask


@pytest.fixture
def client(api_server):
    return webuiapi.WebUIApi(host="127.0.0.1", port=api_server.port, username=ApiServer.user,
                             password=ApiServer.password, sampler="Euler a", steps=3)


def raw(api_server, method, path, **kwargs):
    kwargs.setdefault("auth", (ApiServer.user, ApiServer.password))
    return requests.request(method, api_server.url + "/sdapi/v1" + path, timeout=60, **kwargs)


def test_txt2img_returns_images_of_the_asked_size_with_info(client):
    result = client.txt2img(prompt="a lighthouse at night", width=64, height=96, seed=5, cfg_scale=6)
    assert result.image.size == (64, 96)
    assert result.info["seed"] == 5 and result.info["all_seeds"] == [5]
    assert result.info["sampler_name"] == "Euler a"
    assert result.info["width"] == 64 and result.info["steps"] == 3
    assert "Seed: 5, Size: 64x96" in result.image.info["parameters"]
    assert result.parameters["seed"] == 5 and result.parameters["cfg_scale"] == 6.0


def test_batch_size_and_n_iter_give_consecutive_seeds(client):
    result = client.txt2img(prompt="a train", width=64, height=64, seed=100, batch_size=2, n_iter=2)
    assert len(result.images) == 4
    assert result.info["all_seeds"] == [100, 101, 102, 103]
    assert len(result.info["infotexts"]) == 4


def test_the_same_seed_paints_the_same_picture_and_a_random_seed_is_reported(client):
    first = client.txt2img(prompt="a fox", width=64, height=64, seed=9).image
    second = client.txt2img(prompt="a fox", width=64, height=64, seed=9).image
    assert first.tobytes() == second.tobytes()
    random_seed = client.txt2img(prompt="a fox", width=64, height=64, seed=-1)
    assert 0 <= random_seed.info["seed"] < 2**32
    assert random_seed.parameters["seed"] == -1  # the request is echoed as asked


def test_unsupported_fields_are_accepted_and_reported(client):
    result = client.txt2img(prompt="x", width=64, height=64, enable_hr=True, restore_faces=True,
                            alwayson_scripts={"ADetailer": {"args": []}})
    reported = result.info["extra_generation_params"]["Lanternslide: not supported"]
    assert "enable_hr" in reported and "restore_faces" in reported and "alwayson_scripts.ADetailer" in reported


def test_samplers_models_options_and_the_rest(client, api_server):
    names = [s["name"] for s in client.get_samplers()]
    assert "Euler a" in names and "DPM++ 2M" in names
    assert [s["name"] for s in client.get_schedulers()][:2] == ["automatic", "karras"]
    title = client.get_sd_models()[0]["title"]
    assert client.util_get_model_names() == [title]
    assert client.get_options()["sd_model_checkpoint"] == title
    client.set_options({"send_seed": False, "sd_model_checkpoint": title})
    assert client.get_options()["send_seed"] is False
    client.set_options({"send_seed": True})
    flags = client.get_cmd_flags()
    assert flags["port"] == api_server.port and flags["api"] is True
    assert "api_auth" not in flags and "instance" not in flags  # an allow-list: no credentials, no folders
    assert ApiServer.password not in json.dumps(flags)
    for path, shape in [("/upscalers", list), ("/face-restorers", list), ("/embeddings", dict), ("/scripts", dict),
                        ("/memory", dict), ("/prompt-styles", list)]:
        assert isinstance(raw(api_server, "GET", path).json(), shape), path


def test_setting_an_unknown_model_fails_like_a1111(api_server):
    response = raw(api_server, "POST", "/options", json={"sd_model_checkpoint": "nope.safetensors"})
    assert response.status_code == 500
    assert "model 'nope.safetensors' not found" in response.json()["errors"]


@pytest.mark.parametrize(("call", "job"), [("txt2img", "scripts_txt2img"), ("img2img", "scripts_img2img")])
def test_progress_answers_while_a_job_runs_and_interrupt_stops_it(client, call, job):
    # A1111's API names the call being painted as its own txt2img and img2img calls do (shared.state.begin(job=...))
    pictures = {"images": [smooth_picture()], "denoising_strength": 1.0} if call == "img2img" else {}
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=getattr(client, call)(
        prompt="a long painting", width=64, height=64, steps=150, seed=1, **pictures)))
    worker.start()
    seen = None
    deadline = time.time() + 60
    while time.time() < deadline:
        progress = client.get_progress()
        if progress["state"]["sampling_steps"]:
            seen = progress
            break
        time.sleep(0.05)
    assert seen is not None
    assert 0 < seen["progress"] <= 1
    assert seen["state"]["job"] == job and seen["state"]["sampling_steps"] == 150
    client.interrupt()
    worker.join(60)
    assert "interrupted" in json.dumps(outcome["result"].info["extra_generation_params"])
    assert outcome["result"].images == []
    assert client.get_progress()["progress"] == 0.0
    client.util_wait_for_ready(check_interval=0.1)


def test_auth_is_required_on_every_route(api_server):
    for method, path in [("GET", "/sd-models"), ("GET", "/progress"), ("POST", "/txt2img")]:
        response = raw(api_server, method, path, auth=None, json={})
        assert response.status_code == 401
        assert response.json()["detail"] == "Not authenticated"
        assert response.headers["WWW-Authenticate"] == "Basic"
    wrong = raw(api_server, "GET", "/sd-models", auth=(ApiServer.user, "wrong"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "Incorrect username or password"
    anonymous = webuiapi.WebUIApi(host="127.0.0.1", port=api_server.port)
    with pytest.raises(RuntimeError) as info:
        anonymous.txt2img(prompt="x")
    assert info.value.args[0] == 401


@pytest.mark.parametrize(
    ("kwargs", "loc", "words"),
    [
        ({"data": "{not json", "headers": {"Content-Type": "application/json"}}, ["body", 0], "Expecting value"),
        ({"data": '{"prompt": "x"}', "headers": {"Content-Type": "text/plain"}}, ["body"], "expected application/json"),
        ({"data": ""}, ["body"], "field required"),
        ({"json": ["a", "list"]}, ["body"], "not a valid dict"),
        ({"json": {"steps": "many"}}, ["body", "steps"], "not a valid integer"),
        ({"json": {"cfg_scale": [1]}}, ["body", "cfg_scale"], "not a valid float"),
        ({"json": {"width": 100000}}, ["body", "width"], "between 64 and 2048"),
        ({"json": {"steps": -3}}, ["body", "steps"], "between 1 and 150"),
        ({"json": {"width": 100}}, ["body", "width"], "multiple of 8"),
        ({"json": {"sampler_name": "Nope"}}, ["body", "sampler_name"], "unknown sampler 'Nope'"),
        ({"json": {"batch_size": 50}}, ["body", "batch_size"], "must be 1..16"),
        ({"json": {"styles": ["No such style"]}}, ["body", "styles"], "unknown style"),
        ({"json": {"styles": [{}]}}, ["body", "styles", 0], "str type expected"),
        (
            {"data": "[" * 50000 + "]" * 50000, "headers": {"Content-Type": "application/json"}},
            ["body"],
            "nested deeper than 32 levels",
        ),
        (
            {"json": {"override_settings": {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}},
            ["body"],
            "nested deeper",
        ),
        ({"json": {"seed": 2**64}}, ["body", "seed"], "less than or equal to 4294967295"),
        ({"json": {"seed": -2}}, ["body", "seed"], "greater than or equal to -1 (-1 means a random seed)"),
        ({"json": {"subseed": 2**32}}, ["body", "subseed"], "less than or equal to 4294967295"),
        ({"json": {"steps": True}}, ["body", "steps"], "true/false is not a number"),
        ({"json": {"cfg_scale": False}}, ["body", "cfg_scale"], "true/false is not a number"),
        ({"json": {"send_images": "maybe"}}, ["body", "send_images"], "could not be parsed to a boolean"),
    ],
)
def test_bad_requests_get_a_clear_422_and_the_server_stays_up(api_server, kwargs, loc, words):
    response = raw(api_server, "POST", "/txt2img", **kwargs)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc
    assert words in detail["msg"]
    assert raw(api_server, "GET", "/progress").status_code == 200


def test_models_and_settings_name_the_model_without_its_path_on_the_server(api_server, tiny_model):
    models = raw(api_server, "GET", "/sd-models")
    assert models.json()[0]["filename"] == tiny_model.name
    assert models.json()[0]["title"].startswith(tiny_model.name + " [")
    for path in ("/sd-models", "/options", "/cmd-flags"):
        assert str(tiny_model) not in raw(api_server, "GET", path).text, path


def test_numbers_in_strings_are_coerced_and_unknown_keys_ignored(api_server):
    response = raw(api_server, "POST", "/txt2img", json={"prompt": "x", "steps": "2", "width": "64", "height": 64,
                                                         "negative_promp": "typo", "send_images": False,
                                                         "seed": None, "cfg_scale": "6.5", "tiling": "false"})
    assert response.status_code == 200
    body = response.json()
    assert body["images"] == []
    assert json.loads(body["info"])["steps"] == 2


def test_unknown_routes_and_methods_answer_json(api_server):
    assert raw(api_server, "GET", "/no-such-route").json() == {"detail": "Not Found"}
    response = raw(api_server, "GET", "/txt2img")
    assert response.status_code == 405 and response.json() == {"detail": "Method Not Allowed"}


def test_the_api_alone_takes_the_speed_settings_and_names_a_bad_one(tmp_path, capsys, caplog):
    from inference.__main__ import main
    from web.settings import build_parser

    args = vars(build_parser(api_alone=True).parse_args(["--optimize", "compile", "--model-config", "sd21-v"]))
    assert (args["OPTIMIZE"], args["MODEL_CONFIG"], args["DEEPCACHE"], args["PORT"]) == ("compile", "sd21-v", 0, 7861)
    assert "STORIES" not in args and "SHARE" not in args  # the game's own settings are not offered
    assert main(["serve", "--instance", str(tmp_path), "--optimize", "compile", "--deepcache", "3"]) == 2
    assert "deepcache: cannot be combined with optimize=compile" in capsys.readouterr().err + caplog.text
    with pytest.raises(SystemExit):
        build_parser(api_alone=True).parse_args(["--optimize", "turbo"])
    assert "argument --optimize: invalid choice: 'turbo'" in capsys.readouterr().err


# -- img2img and the routes clients probe ----------------------------------------------------------------------


def b64(image, fmt="PNG", prefix=True):
    text = base64.b64encode(encoded_picture(image, fmt)).decode("ascii")
    return f"data:image/{fmt.lower()};base64,{text}" if prefix else text


def png_of(text):
    return Image.open(io.BytesIO(base64.b64decode(text)))


def a1111_img2img_payload():
    """The body A1111's own API tests send (test/test_img2img.py, simple_img2img_request), pictures made here."""
    return {
        "batch_size": 1, "cfg_scale": 7, "denoising_strength": 0.75, "eta": 0, "height": 64,
        "include_init_images": False, "init_images": [b64(smooth_picture())], "inpaint_full_res": False,
        "inpaint_full_res_padding": 0, "inpainting_fill": 0, "inpainting_mask_invert": False, "mask": None,
        "mask_blur": 4, "n_iter": 1, "negative_prompt": "", "override_settings": {}, "prompt": "example prompt",
        "resize_mode": 0, "restore_faces": False, "s_churn": 0, "s_noise": 1, "s_tmax": 0, "s_tmin": 0,
        "sampler_index": "Euler a", "seed": -1, "seed_resize_from_h": -1, "seed_resize_from_w": -1, "steps": 3,
        "styles": [], "subseed": -1, "subseed_strength": 0, "tiling": False, "width": 64,
    }


@pytest.mark.parametrize("changes", [
    {},
    {"mask": b64(square_mask())},
    {"mask": b64(square_mask()), "inpainting_mask_invert": True},
    {"script_name": "sd upscale", "script_args": ["", 8, "Lanczos", 2.0]},
])
def test_a1111s_own_img2img_test_payloads_are_painted(api_server, changes):
    response = raw(api_server, "POST", "/img2img", json={**a1111_img2img_payload(), **changes})
    assert response.status_code == 200, response.text
    body = response.json()
    assert png_of(body["images"][0]).size == (64, 64)
    info = json.loads(body["info"])
    assert info["denoising_strength"] == 0.75 and "Denoising strength: 0.75" in info["infotexts"][0]
    assert body["parameters"]["init_images"] is None and body["parameters"]["mask"] is None  # as A1111 echoes them
    if "script_name" in changes:
        assert "script_name=sd upscale" in info["extra_generation_params"]["Lanternslide: not supported"]
    if changes.get("inpainting_mask_invert"):
        assert "Mask mode: Inpaint not masked" in info["infotexts"][0]


def test_webuiapi_img2img_paints_from_a_picture_with_a1111s_info(client):
    result = client.img2img(images=[smooth_picture(96, 48)], prompt="a lighthouse", width=64, height=96, seed=5,
                            denoising_strength=0.5, resize_mode=1)
    assert result.image.size == (64, 96)
    assert result.info["denoising_strength"] == 0.5 and result.info["seed"] == 5
    assert result.info["extra_generation_params"]["Denoising strength"] == 0.5
    text = result.image.info["parameters"]
    assert "Seed: 5, Size: 64x96" in text and "Model: " in text and ", Denoising strength: 0.5, Version: " in text
    assert result.parameters["init_images"] is None and result.parameters["resize_mode"] == 1
    again = client.img2img(images=[smooth_picture(96, 48)], prompt="a lighthouse", width=64, height=96, seed=5,
                           denoising_strength=0.5, resize_mode=1)
    assert again.image.tobytes() == result.image.tobytes()  # the same call paints the same picture


def test_webuiapi_img2img_with_a_mask_repaints_only_the_mask(client):
    source = smooth_picture(96, 48)
    result = client.img2img(images=[source], mask_image=square_mask((96, 48), (40, 10, 56, 26)), mask_blur=0,
                            prompt="a lantern", width=64, height=64, seed=3, denoising_strength=1.0)
    # webuiapi asks for A1111's "only masked" (inpaint_full_res=True): the box is painted, the picture keeps its size
    assert result.image.size == (96, 48)
    out, kept = np.asarray(result.image.convert("RGB")).astype(int), np.asarray(source).astype(int)
    inside = np.zeros((48, 96), bool)
    inside[10:26, 40:56] = True
    assert np.array_equal(out[~inside], kept[~inside]) and np.abs(out[inside] - kept[inside]).mean() > 5
    text = result.image.info["parameters"]
    assert "Denoising strength: 1.0, Inpaint area: Only masked, Masked area padding: 0, Masked content: fill" in text


def test_several_init_pictures_pair_with_the_pictures_of_a_batch(api_server):
    body = {**a1111_img2img_payload(), "seed": 11, "batch_size": 2,
            "init_images": [b64(smooth_picture()), b64(Image.new("RGB", (64, 64), (20, 200, 20)))]}
    response = raw(api_server, "POST", "/img2img", json=body)
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert info["all_seeds"] == [11, 12] and info["batch_size"] == 2
    first, second = (png_of(text) for text in response.json()["images"])
    assert first.tobytes() != second.tobytes()
    refused = raw(api_server, "POST", "/img2img", json={**body, "batch_size": 1})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "init_images"]
    assert "bad number of images passed: 2; expecting 1 or less" in refused.json()["detail"][0]["msg"]


@pytest.mark.parametrize(
    ("changes", "loc", "words"),
    [
        ({"init_images": ["not base64 at all!"]}, ["body", "init_images", 0], "is not valid base64"),
        ({"init_images": [base64.b64encode(b"hello, not a picture").decode()]}, ["body", "init_images", 0],
         "is not a picture Pillow can read"),
        ({"init_images": [b64(Image.new("RGB", (2049, 2048)))]}, ["body", "init_images", 0],
         "2049x2048 pixels; at most 4194304 pixels"),
        ({"init_images": [b64(smooth_picture(), "GIF")]}, ["body", "init_images", 0], "send a PNG, WebP or JPEG"),
        ({"mask": "data:image/png;base64,AAAA"}, ["body", "mask"], "is not a picture Pillow can read"),
        ({"denoising_strength": 1.5}, ["body", "denoising_strength"], "must be between 0 and 1, got 1.5"),
        ({"resize_mode": 7}, ["body", "resize_mode"], "between 0 and 3, got 7"),
        ({"inpainting_fill": "lots"}, ["body", "inpainting_fill"], "not a valid integer"),
        ({"init_images": []}, ["body", "init_images"], "needs at least one picture"),
        ({"init_images": "one picture"}, ["body", "init_images"], "not a valid list"),
    ],
)
def test_bad_img2img_fields_get_a_422_naming_the_field(api_server, changes, loc, words):
    response = raw(api_server, "POST", "/img2img", json={**a1111_img2img_payload(), **changes})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"][0]
    assert detail["loc"] == loc and words in detail["msg"]


def test_img2img_without_an_init_picture_is_not_found_like_a1111(api_server):
    response = raw(api_server, "POST", "/img2img", json={"prompt": "x"})
    assert response.status_code == 404 and response.json()["detail"] == "Init image not found"


def test_img2img_takes_bodies_larger_than_other_calls_up_to_its_own_cap(api_server):
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (640, 640, 3), dtype=np.uint8))
    body = {**a1111_img2img_payload(), "init_images": [b64(noise)], "steps": 2}
    assert len(json.dumps(body)) > 1 << 20  # past the 1 MB every other body of ours is held to
    assert raw(api_server, "POST", "/img2img", json=body).status_code == 200
    assert raw(api_server, "POST", "/txt2img", json=body).status_code == 413
    huge = b'{"prompt": "' + b"x" * (49 << 20) + b'"}'  # past img2img's 48 MB
    response = raw(api_server, "POST", "/img2img", data=huge, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json() == {"detail": "Request Entity Too Large"}


def test_png_info_reads_our_own_infotext_back(client, api_server):
    result = client.img2img(images=[smooth_picture()], prompt="a quiet harbour, dusk", negative_prompt="fog",
                            width=64, height=64, seed=21, denoising_strength=0.4)
    picture = webuiapi.raw_b64_img(result.image)  # a PNG with the picture's text chunks, as a client passes it on
    body = raw(api_server, "POST", "/png-info", json={"image": picture}).json()
    assert body["info"] == result.image.info["parameters"]
    fields = body["parameters"]
    assert fields["Prompt"] == "a quiet harbour, dusk" and fields["Negative prompt"] == "fog"
    assert (fields["Steps"], fields["Seed"], fields["Size-1"], fields["Size-2"]) == ("3", "21", "64", "64")
    assert fields["Sampler"] == "Euler a" and fields["Denoising strength"] == "0.4"
    assert fields["Masked content"] == "original" and fields["Clip skip"] == "1"  # A1111's defaults for the rest


A1111_INFOTEXT = (
    "girl with an artist's beret, (determined:1.2), blue eyes\n"
    "Negative prompt: ugly, [blurry]\n"
    'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 965400086, Size: 512x768, '
    'Model hash: 45dee52b, Model: v2-1_512-ema-pruned, Denoising strength: 0.3, Mask blur: 4, '
    'Lora hashes: "add_detail: 7c6bad76eb54, more: 0123", Version: v1.10.1'
)


def test_png_info_reads_a1111s_infotext_like_a1111(api_server):
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", A1111_INFOTEXT)
    chunks.add_text("Software", "stable-diffusion-webui")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=chunks)
    body = raw(api_server, "POST", "/png-info", json={"image": "data:image/png;base64,"
                                                      + base64.b64encode(buffer.getvalue()).decode()}).json()
    assert body["info"] == A1111_INFOTEXT and body["items"] == {"Software": "stable-diffusion-webui"}
    fields = body["parameters"]
    assert fields["Prompt"] == "girl with an artist's beret, (determined:1.2), blue eyes"
    assert fields["Negative prompt"] == "ugly, [blurry]"
    assert (fields["Size-1"], fields["Size-2"], fields["Schedule type"]) == ("512", "768", "Karras")
    assert fields["Lora hashes"] == "add_detail: 7c6bad76eb54, more: 0123"  # quoted values come back unquoted
    assert fields["Emphasis"] == "Original" and fields["Version"] == "v1.10.1"
    assert "Downcast alphas_cumprod" not in fields  # a 1.10 infotext implies no compatibility settings
    assert fields["Inpaint area"] == "Whole picture" and fields["Masked area padding"] == 32


def test_png_info_reads_a_jpeg_comment_and_names_a_bad_picture(api_server):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + "a red door\nSteps: 5, Sampler: Euler, Seed: 1".encode("utf_16_be")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG", exif=exif)
    body = raw(api_server, "POST", "/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}).json()
    assert body["info"].startswith("a red door") and body["parameters"]["Steps"] == "5"
    bad = raw(api_server, "POST", "/png-info", json={"image": base64.b64encode(b"plain text").decode()})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "image"]
    assert raw(api_server, "POST", "/png-info", json={}).json()["detail"][0]["loc"] == ["body", "image"]


def test_the_routes_clients_probe_answer_in_a1111s_shapes(api_server):
    for path in ("/hypernetworks", "/realesrgan-models", "/sd-vae", "/loras"):
        response = raw(api_server, "GET", path)
        assert response.status_code == 200 and response.json() == [], path
    for path in ("/refresh-checkpoints", "/refresh-vae", "/refresh-loras"):
        response = raw(api_server, "POST", path)
        assert response.status_code == 200 and response.json() is None, path
    assert raw(api_server, "GET", "/loras", auth=None).status_code == 401  # the same rules as every route
