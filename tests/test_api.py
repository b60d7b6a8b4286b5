"""The A1111-compatible API, driven by the real `webuiapi` client against `python -m inference serve`."""

import json
import threading
import time

import pytest
import requests
import webuiapi

from tests.support import ApiServer


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


def test_progress_answers_while_a_job_runs_and_interrupt_stops_it(client):
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=client.txt2img(
        prompt="a long painting", width=64, height=64, steps=150, seed=1)))
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
    assert seen["state"]["job"] == "txt2img" and seen["state"]["sampling_steps"] == 150
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
