"""`python app.py --ray ADDRESS` on a real Ray cluster made with the `ray` command line (inference/painters.py).

The game runs as a real process and joins the cluster, as a user's would; this test process talks to it over HTTP
only (its own Ray, tests/conftest.py's `ray_session`, is another cluster).  The cluster has no GPU, so each of its
machines gets one painter that takes that machine's CPUs, and a machine that leaves takes its painter with it.
"""

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from tests.support import ADMIN_PASSWORD
from tests.support import LiveServer
from tests.support import RayCluster
from tests.support import data_url_image
from tests.support import parse_events
from tests.support import wait_until


@pytest.fixture
def cluster(tmp_path):
    """A Ray cluster of this test's own, stopped at the end even when the test fails."""
    made = RayCluster(tmp_path)
    yield made
    made.stop()


@pytest.fixture
def game(cluster, tiny_model, tmp_path):
    """`python app.py --ray ADDRESS` on a cluster of one machine (the head, 1 CPU), painting one picture at a time
    and nothing ahead; stopped before the cluster."""
    cluster.add(cpus=1)
    server = LiveServer(tiny_model, tmp_path, ("--ray", cluster.address, "--batch-size", "1", "--prefetch-depth", "0"),
                        environ=cluster.environ)
    yield server
    server.stop()


def painters_when(server, ready):
    """The painters the admin sees, once ``ready`` of them are ready (polled gently: the machine is small)."""
    def check():
        time.sleep(0.5)
        found = server.status()["painters"]
        return found if sum(p["state"] == "ready" for p in found) == ready else None

    return wait_until(check, f"{ready} painter(s) ready")


def painter_names(server):
    time.sleep(0.5)
    return [p["name"] for p in server.status()["painters"]]


@pytest.mark.slow
def test_the_game_paints_on_a_cluster_made_with_ray_start_and_on_each_machine_that_joins_until_it_leaves(cluster, game):
    (first,) = painters_when(game, 1)
    assert "Ray node " in first["node"] and first["device"] == "cpu, 1 torch thread(s)"

    found = parse_events(requests.get(game.url + "/play/lighthouse/shore/stream", timeout=600).text)
    assert [name for name, _ in found][-2:] == ["frame", "done"]
    assert data_url_image(found[-2][1]).size == (64, 64)
    (first,) = game.status()["painters"]
    assert first["painted"] == 1 and first["failures"] == 0 and first["heartbeat_seconds"] is not None
    dashboard = requests.get(game.url + "/admin/dashboard", auth=("admin", ADMIN_PASSWORD), timeout=30).text
    assert first["name"] in dashboard and first["node"] in dashboard and first["device"] in dashboard

    cluster.add(cpus=1)  # `ray start --address=...` on another machine, while the game runs
    painters = painters_when(game, 2)
    second = next(p for p in painters if p["name"] != first["name"])
    assert second["node"] != first["node"] and "Ray node " in second["node"]

    def paint(prompt):
        body = {"prompt": prompt, "steps": 4, "width": 64, "height": 64, "seed": 7}
        response = requests.post(game.url + "/sdapi/v1/txt2img", json=body, timeout=600)
        assert response.status_code == 200, response.text
        return Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0]))).size

    with ThreadPoolExecutor(2) as pool:  # two pictures at once: one for each machine
        assert list(pool.map(paint, ["a red door", "a blue door"])) == [(64, 64), (64, 64)]
    painted = {p["name"]: p["painted"] for p in game.status()["painters"]}
    assert painted[second["name"]] >= 1 and sum(painted.values()) == 3, painted
    dashboard = requests.get(game.url + "/admin/dashboard", auth=("admin", ADMIN_PASSWORD), timeout=30).text
    assert second["name"] in dashboard and second["node"] in dashboard

    cluster.leave(1)  # that machine is switched off: its painter goes from the list, the head's paints on
    wait_until(lambda: painter_names(game) == [first["name"]], "the painter of the machine that left gone")
    assert paint("a green door") == (64, 64)
    assert painter_names(game) == [first["name"]]  # a machine that left gets no painter again
