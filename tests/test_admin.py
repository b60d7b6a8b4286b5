"""The admin sign-in and dashboard: password, CSRF, slowed failures, who is playing, the queue."""

import io
import re
import threading
import time
from pathlib import Path

import pytest

from tests.support import csrf_token
from tests.support import editor_state
from tests.support import sign_in
from web.admin import auth as admin


@pytest.fixture
def fast_failures(monkeypatch):
    monkeypatch.setattr(admin, "FAILED_LOGIN_DELAY", 0)


@pytest.mark.slow
def test_a_generated_password_is_printed_once_and_only_its_hash_kept(make_app, tmp_path, caplog):
    make_app(ADMIN_PASSWORD="")
    printed = re.search(r"Admin password \(shown once.*?\n\n\s+(\S+)\n", caplog.text, re.S).group(1)
    stored = (tmp_path / "instance" / "admin_password.hash").read_text()
    assert printed not in stored and stored.startswith(("scrypt:", "pbkdf2:"))
    caplog.clear()
    client = make_app(ADMIN_PASSWORD="").test_client()
    assert "Admin password" not in caplog.text  # not again
    assert sign_in(client, printed).status_code == 303


@pytest.mark.slow
def test_pages_need_a_signed_in_admin(make_app):
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    assert client.get("/admin/").headers["Location"] == "/admin/login?next=/admin/"
    response = client.get("/admin/status.json")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/admin/status.json", auth=("admin", "open sesame")).status_code == 200
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    page = client.get("/admin/").get_data(as_text=True)
    assert "Playing now" in page and "Painter" in page


def test_a_wrong_password_is_refused_and_slowed(make_app, monkeypatch):
    delays = []
    monkeypatch.setattr(admin.time, "sleep", delays.append)
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    response = sign_in(client, "guess")
    assert response.status_code == 401
    assert "That password is not right." in response.get_data(as_text=True)
    assert delays == [admin.FAILED_LOGIN_DELAY]
    assert client.get("/admin/").status_code == 302


def test_a_post_without_csrf_token_is_refused(make_app):
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    response = client.post("/admin/login", data={"password": "open sesame"})
    assert response.status_code == 400
    assert "CSRF token is missing" in response.get_data(as_text=True)
    sign_in(client)
    assert client.post("/admin/logout").status_code == 400  # signed in, but still no token
    assert client.get("/admin/").status_code == 200


def test_sign_out(make_app):
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    sign_in(client)
    token = csrf_token(client, "/admin/")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/admin/").status_code == 302


@pytest.mark.slow
def test_failed_sign_ins_are_rate_limited_per_client(make_app, fast_failures):
    client = make_app(ADMIN_PASSWORD="open sesame", BEHIND_PROXY=True).test_client()
    stranger = {"REMOTE_ADDR": "203.0.113.9"}  # what the web server makes of a trusted proxy's X-Forwarded-For
    token = csrf_token(client)
    codes = [client.post("/admin/login", data={"password": "x", "csrf_token": token}, environ_base=stranger).status_code
             for _ in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429]


@pytest.mark.slow
def test_dashboard_shows_who_is_playing_and_the_queue(make_app):
    app = make_app(ADMIN_PASSWORD="open sesame")
    player = app.test_client()
    player.get("/play/lighthouse/shore")
    player.post("/play/lighthouse/shore", data={"choice": "2"})
    player.get("/play/lighthouse/wreckage")
    admin_client = app.test_client()
    sign_in(admin_client)
    html = admin_client.get("/admin/dashboard").get_data(as_text=True)
    assert "<td>lighthouse</td><td>wreckage</td>" in html
    assert "Not shared." in html
    assert "waiting:" in html and "cache:" in html


def test_the_share_link_and_its_qr_code_are_shown(make_app):
    app = make_app(ADMIN_PASSWORD="open sesame")
    app.extensions["share_url"] = "https://example-friends.ngrok-free.app"
    client = app.test_client()
    sign_in(client)
    html = client.get("/admin/").get_data(as_text=True)
    assert 'href="https://example-friends.ngrok-free.app"' in html
    assert 'src="data:image/svg+xml' in html


def test_players_never_see_admin_links(client):
    for path in ("/", "/play/lighthouse/shore"):
        assert "/admin" not in client.get(path).get_data(as_text=True)


# -- stories ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_stories_are_listed_with_broken_ones_and_their_errors(author, stories_dir):
    (stories_dir / "broken.yaml").write_text(
        "title: B\nstart: a\nslides:\n  a:\n    text: x\n    choices: [{text: go, to: zz}]\n"
    )
    html = author.get("/admin/stories").get_data(as_text=True)
    assert "The Lighthouse Keeper" in html and "broken:" in html and "goes to &#39;zz&#39;" in html


@pytest.mark.slow
def test_create_a_story_then_edit_it_with_live_checks_and_a_graph(author):
    response = author.post("/admin/stories", data={"title": "The Mill", "slug": "mill", "csrf_token": author.token})
    assert response.headers["Location"] == "/admin/stories/mill"
    text, revision, html = editor_state(author, "mill")
    assert "title: The Mill" in text and "<svg class=\"graph\"" in html and "No errors" in html
    check = author.post("/admin/stories/mill/check", data={"text": text.replace("to: next", "to: nowhere"),
                                                           "csrf_token": author.token}).get_data(as_text=True)
    assert "1 error" in check and "slide <strong>beginning</strong>, choices[0].to: goes to &#39;nowhere&#39;" in check
    assert 'class="node missing unreachable"' in check or "missing" in check
    assert "slide <strong>next</strong> has no choices: it is an ending" in author.post(
        "/admin/stories/mill/check", data={"text": text, "csrf_token": author.token}).get_data(as_text=True)


@pytest.mark.slow
def test_save_keeps_comments_reaches_players_and_refuses_a_stale_second_tab(author, stories_dir):
    text, revision, _ = editor_state(author, "lighthouse")
    changed = text.replace("You wake on a cold shore", "You wake on a warm shore")
    saved = author.post(
        "/admin/stories/lighthouse", data={"text": changed, "revision": revision, "csrf_token": author.token}
    )
    assert saved.status_code == 200 and "Saved." in saved.get_data(as_text=True)
    assert "# The Lighthouse Keeper" in (stories_dir / "lighthouse.yaml").read_text()
    assert "warm shore" in author.get("/play/lighthouse/shore").get_data(as_text=True)
    stale = author.post("/admin/stories/lighthouse", data={"text": text.replace("cold", "icy"), "revision": revision,
                                                          "csrf_token": author.token})
    assert stale.status_code == 409
    page = stale.get_data(as_text=True)
    assert "Not saved: the story changed meanwhile" in page and "icy shore" in page and "warm shore" in page
    assert "warm shore" in (stories_dir / "lighthouse.yaml").read_text()


@pytest.mark.slow
def test_an_invalid_save_is_refused_and_the_text_kept(author):
    text, revision, _ = editor_state(author, "lighthouse")
    bad = text.replace("steps: 20", "steps: 900")
    response = author.post(
        "/admin/stories/lighthouse", data={"text": bad, "revision": revision, "csrf_token": author.token}
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "Not saved: fix the errors below first" in html and "steps: 900" in html
    assert "must be between 1 and 150, got 900" in html


@pytest.mark.slow
def test_delete_asks_first_and_can_be_undone(author):
    _, revision, _ = editor_state(author, "night-train")
    response = author.post("/admin/stories/night-train/delete", data={"revision": revision, "csrf_token": author.token})
    listing = author.get(response.headers["Location"]).get_data(as_text=True)
    assert "Deleted “night-train”." in listing and "Undo" in listing
    assert author.get("/play/night-train").status_code == 404
    undo = re.search(r'action="(/admin/stories/night-train/revisions/[^"]+)"', listing).group(1)
    author.post(undo, data={"csrf_token": author.token})
    assert author.get("/play/night-train").status_code == 302


@pytest.mark.slow
def test_revisions_are_listed_viewable_and_restorable(author):
    text, revision, _ = editor_state(author, "lighthouse")
    author.post(
        "/admin/stories/lighthouse",
        data={"text": text.replace("cold shore", "grey shore"), "revision": revision, "csrf_token": author.token},
    )
    page = author.get("/admin/stories/lighthouse/revisions").get_data(as_text=True)
    revision_id = re.search(r"show=([0-9]+-[0-9a-f]+)", page).group(1)
    assert "cold shore" in author.get(f"/admin/stories/lighthouse/revisions?show={revision_id}").get_data(as_text=True)
    author.post(f"/admin/stories/lighthouse/revisions/{revision_id}", data={"csrf_token": author.token})
    assert "cold shore" in editor_state(author, "lighthouse")[0]


@pytest.mark.slow
def test_upload_twine_and_yaml_and_download_both_ways(author):
    from tests.support import TWEE

    response = author.post(
        "/admin/stories/import",
        data={"file": (io.BytesIO(TWEE.encode()), "cellar.twee"), "csrf_token": author.token},
        content_type="multipart/form-data",
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "/admin/stories/cellar" in html
    assert "link to &#39;Nowhere&#39;, which is not a passage; dropped" in html
    assert "You stand at the top of the cellar stairs" in author.get("/play/cellar/top_of_the_stairs").get_data(
        as_text=True
    )
    yaml_text = author.get("/admin/stories/lighthouse/download").get_data(as_text=True)
    assert yaml_text.startswith("# The Lighthouse Keeper")
    twee = author.get("/admin/stories/lighthouse/twee")
    assert twee.headers["Content-Disposition"] == 'attachment; filename="lighthouse.twee"'
    again = author.post("/admin/stories/import", data={"file": (io.BytesIO(yaml_text.encode()), "lighthouse.yaml"),
                                                      "csrf_token": author.token}, content_type="multipart/form-data")
    assert "/admin/stories/lighthouse-2" in again.get_data(as_text=True)
    bad = author.post("/admin/stories/import", data={"file": (io.BytesIO(b"nothing"), "x.twee"),
                                                    "csrf_token": author.token}, content_type="multipart/form-data")
    assert bad.status_code == 422 and "no passages found" in bad.get_data(as_text=True)


@pytest.mark.slow
def test_duplicate_and_rename(author):
    _, revision, _ = editor_state(author, "lighthouse")
    author.post(
        "/admin/stories/lighthouse/copy",
        data={"new_slug": "beacon", "action": "duplicate", "revision": revision, "csrf_token": author.token},
    )
    _, beacon_revision, _ = editor_state(author, "beacon")
    author.post(
        "/admin/stories/beacon/copy",
        data={"new_slug": "tower", "action": "rename", "revision": beacon_revision, "csrf_token": author.token},
    )
    assert author.get("/admin/stories/beacon").status_code == 404
    assert author.get("/admin/stories/tower").status_code == 200
    bad = author.post(
        "/admin/stories/tower/copy", data={"new_slug": "../x", "action": "duplicate", "csrf_token": author.token}
    )
    assert bad.status_code == 422


# -- tuning and baking -----------------------------------------------------------------------------------------


def poll_card(client, key, slug, slide):
    deadline = time.monotonic() + 600  # a generous bound against a hang, not a speed limit
    while time.monotonic() < deadline:
        html = client.get(f"/admin/jobs/{key}?slug={slug}&slide={slide}").get_data(as_text=True)
        if "hx-trigger" not in html:
            return html
        time.sleep(0.1)
    raise AssertionError("preview never finished")


@pytest.mark.slow
def test_tuning_shows_the_composed_prompt_with_its_budget_and_paints_seeds_side_by_side(author):
    page = author.get("/admin/stories/night-train/slides/soup").get_data(as_text=True)
    assert "Prompt as composed" in page and "of 75 tokens (counted by the model)" in page
    assert 'class="part subject"' in page and 'class="part setting"' in page  # context carried from the dining car
    form = {"csrf_token": author.token, "image": "a steaming bowl of soup in a dining car", "negative_prompt": "text",
            "width": "512", "height": "512", "steps": "4", "cfg_scale": "7", "sampler_name": "Euler a",
            "scheduler": "automatic", "seed": "100", "count": "3"}
    html = author.post("/admin/stories/night-train/slides/soup", data=form).get_data(as_text=True)
    keys = re.findall(r"/admin/jobs/([0-9a-f]{64})", html)
    assert len(set(keys)) == 3
    seeds = []
    for key in dict.fromkeys(keys):
        card = poll_card(author, key, "night-train", "soup")
        seeds.append(int(re.search(r'data-seed="(\d+)"', card).group(1)))
        assert "Keep this one" in card
    assert seeds == [100, 101, 102]


@pytest.mark.slow
def test_a_preview_the_server_no_longer_knows_stops_polling_and_says_so(author):
    response = author.get(f"/admin/jobs/{'0' * 64}?slug=lighthouse&slide=shore")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "hx-trigger" not in html  # no endless 'waiting…'
    assert "no longer known here" in html and "Paint again" in html


@pytest.mark.slow
def test_keeping_a_preview_writes_its_seed_and_settings_to_the_slide(author, stories_dir):
    _, revision, _ = editor_state(author, "lighthouse")
    form = {"csrf_token": author.token, "revision": revision, "image": "a rocky shore at dawn, a lighthouse",
            "negative_prompt": "text, watermark, signature, lowres, blurry, deformed, out of frame", "width": "512",
            "height": "512", "steps": "30", "cfg_scale": "7", "sampler_name": "DPM++ 2M", "scheduler": "karras",
            "seed": "5", "chosen_seed": "7"}
    response = author.post("/admin/stories/lighthouse/slides/shore/keep", data=form)
    assert response.status_code == 303
    saved = (stories_dir / "lighthouse.yaml").read_text()
    assert "# The Lighthouse Keeper" in saved  # comments survive
    assert 'image: "a rocky shore at dawn, a lighthouse"' in saved  # the author's quoting style is kept
    from game.library import StoryLibrary
    from game.prompts import compose

    story = StoryLibrary(stories_dir).get("lighthouse")
    assert (story.slides["shore"].style.seed, story.slides["shore"].style.steps) == (7, 30)
    assert story.slides["shore"].style.sampler_name is None  # unchanged settings are not copied into the slide
    request = compose(story, "shore").request
    assert (request.seed, request.steps) == (7, 30)
    stale = author.post("/admin/stories/lighthouse/slides/shore/keep", data={**form, "chosen_seed": "8"})
    assert stale.status_code == 409  # that form was based on the revision before the keep


@pytest.mark.slow
def test_a_bad_setting_is_named(author):
    response = author.post(
        "/admin/stories/lighthouse/slides/shore",
        data={"csrf_token": author.token, "steps": "999", "sampler_name": "Euler", "scheduler": "automatic"},
    )
    assert response.status_code == 422
    assert "steps: must be between 1 and 150, got 999" in response.get_data(as_text=True)


@pytest.mark.slow
def test_bake_paints_every_slide_with_progress_and_from_the_command_line(author, make_app):
    author.post("/admin/stories", data={"title": "Small", "slug": "small", "csrf_token": author.token})
    html = author.post("/admin/stories/small/bake", data={"csrf_token": author.token}).get_data(as_text=True)
    assert "<progress max=\"2\"" in html
    deadline = time.monotonic() + 600  # a generous bound against a hang, not a speed limit
    while time.monotonic() < deadline:
        html = author.get("/admin/stories/small/bake").get_data(as_text=True)
        if "2 of 2 pictures ready" in html:
            break
        time.sleep(0.1)
    assert "every slide comes at once" in html and "hx-trigger" not in html
    assert "sse-connect" not in author.get("/play/small/beginning").get_data(as_text=True)  # inline: baked

    (Path(author.application.config["STORIES"]) / "tiny.yaml").write_text(
        re.sub(r"seed: \d+", "seed: 4242", (Path(author.application.config["STORIES"]) / "small.yaml").read_text()))
    app = make_app(ADMIN_PASSWORD="x")
    result = app.test_cli_runner().invoke(args=["bake", "tiny"])
    assert result.exit_code == 0, result.output
    assert "Baking 2 pictures of Small" in result.output
    assert "2 of 2 pictures are in the cache." in result.output
    assert "Error: no story called 'nope'" in app.test_cli_runner().invoke(args=["bake", "nope"]).output


def five_rooms(stories_dir: Path, slug: str, seed: int) -> None:
    """A story of five slides, each with a picture of its own, painted in 2 steps."""
    slides = "".join(f"  r{i}:\n    text: Room {i}.\n    image: room number {i}\n"
                     + (f"    choices:\n      - {{text: on, to: r{i + 1}}}\n" if i < 4 else "") for i in range(5))
    (stories_dir / f"{slug}.yaml").write_text(
        f"title: {slug}\nstart: r0\nstyle: {{steps: 2, seed: {seed}}}\nslides:\n{slides}")


@pytest.mark.slow
def test_a_story_with_more_pictures_than_the_queue_takes_is_baked_whole(make_app, stories_dir):
    five_rooms(stories_dir, "rooms", 1)
    five_rooms(stories_dir, "halls", 2)
    app = make_app(ADMIN_PASSWORD="open sesame", QUEUE_LIMIT=1)  # the queue takes one picture at a time
    client = app.test_client()
    sign_in(client)
    html = client.post("/admin/stories/rooms/bake", data={"csrf_token": csrf_token(client, "/admin/stories")})
    assert '<progress max="5"' in html.get_data(as_text=True)
    deadline = time.monotonic() + 600  # a generous bound against a hang, not a speed limit
    while time.monotonic() < deadline:
        html = client.get("/admin/stories/rooms/bake").get_data(as_text=True)
        if "hx-trigger" not in html:  # the fragment stops polling: nothing is painting or waiting for room
            break
        time.sleep(0.2)
    assert "5 of 5 pictures ready: every slide comes at once" in html, html

    result = app.test_cli_runner().invoke(args=["bake", "halls"])
    assert result.exit_code == 0, result.output
    assert "Baking 5 pictures" in result.output and "5 of 5 pictures are in the cache." in result.output


class HeldPainter:
    """Fault injection: the tiny backend, stuck on its first picture until ``go`` is set (a painter busy with a
    long batch), so the queue stays full and every bake waits for room in it."""

    def __init__(self, real):
        self.real = real
        self.go = threading.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, requests, on_step=None):
        assert self.go.wait(600)  # a generous bound against a hang
        return self.real.generate(requests, on_step)


@pytest.mark.slow
def test_a_fifth_story_baking_at_once_is_refused_until_one_is_done(make_app, stories_dir, story_backend):
    for number in range(5):
        five_rooms(stories_dir, f"rooms{number}", 10 + number)
    painter = HeldPainter(story_backend)
    app = make_app(ADMIN_PASSWORD="open sesame", QUEUE_LIMIT=1, BACKEND_INSTANCE=painter)
    client = app.test_client()
    sign_in(client)
    token = {"csrf_token": csrf_token(client, "/admin/stories")}
    try:
        for number in range(4):  # four stories wait for room in the queue, each on a thread of its own
            assert client.post(f"/admin/stories/rooms{number}/bake", data=token).status_code == 200
        refused = client.post("/admin/stories/rooms4/bake", data=token)
        assert refused.status_code == 429
        html = refused.get_data(as_text=True)
        assert "4 other stories are being baked; bake this one when one of them is done." in html
        assert '<progress max="5" value="0"' in html  # its fragment, nothing of it asked for
        assert client.post("/admin/stories/rooms0/bake", data=token).status_code == 200  # already baking: no refusal
    finally:
        painter.go.set()
    deadline = time.monotonic() + 600  # a generous bound against a hang, not a speed limit
    while time.monotonic() < deadline:
        if "5 of 5 pictures ready" in client.get("/admin/stories/rooms0/bake").get_data(as_text=True):
            break
        time.sleep(0.2)
    assert client.post("/admin/stories/rooms4/bake", data=token).status_code == 200  # one is done: room for it


# -- form editing ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_story_settings_form_writes_title_style_and_characters_keeping_comments(author, stories_dir):
    page = author.get("/admin/stories/lighthouse/settings").get_data(as_text=True)
    revision = re.search(r'name="revision" value="([0-9a-f]+)"', page).group(1)
    response = author.post("/admin/stories/lighthouse/settings", data={
        "csrf_token": author.token, "revision": revision, "title": "The Lamp", "start": "shore",
        "prompt": "ink drawing", "negative_prompt": "text", "width": "512", "height": "512", "steps": "25",
        "cfg_scale": "6.5", "seed": "99", "sampler_name": "Euler", "scheduler": "",
        "characters": "keeper: an old keeper\nghost: a pale woman\ncat: a black cat with one white paw"})
    assert response.status_code == 303
    saved = (stories_dir / "lighthouse.yaml").read_text()
    assert "# The Lighthouse Keeper" in saved and "title: The Lamp" in saved
    from game.library import StoryLibrary

    story = StoryLibrary(stories_dir).get("lighthouse")
    assert (story.style.steps, story.style.cfg_scale, story.style.sampler_name, story.style.scheduler) == (
        25,
        6.5,
        "Euler",
        None,
    )
    assert story.characters["cat"] == "a black cat with one white paw"


def no_conditions(rows):
    """The slide form's condition, while-closed and effects columns, left as they come: always open, no effects."""
    return {"choice_if": [""] * rows, "choice_otherwise": ["hide"] * rows, "choice_set": [""] * rows}


@pytest.mark.slow
def test_add_slides_and_choices_with_targets_picked_or_created_on_the_spot(author):
    author.post("/admin/stories", data={"title": "Forms", "slug": "forms", "csrf_token": author.token})
    _, revision, _ = editor_state(author, "forms")
    response = author.post("/admin/stories/forms/slides", data={"slide_id": "well", "revision": revision,
                                                               "csrf_token": author.token})
    assert response.headers["Location"] == "/admin/stories/forms/slides/well/edit"
    form = author.get("/admin/stories/forms/slides/well/edit").get_data(as_text=True)
    revision = re.search(r'name="revision" value="([0-9a-f]+)"', form).group(1)
    response = author.post("/admin/stories/forms/slides/well/edit", data={
        "csrf_token": author.token, "revision": revision, "text": "A dry well.", "image": "an old stone well",
        "choice_text": ["Climb down", "Walk away", ""], "choice_to": ["__new__", "next", ""],
        "choice_new": ["bottom", "", ""], **no_conditions(3)})
    assert response.status_code == 303
    text, revision, html = editor_state(author, "forms")
    assert "well:\n    text: |\n      A dry well.\n    image: an old stone well" in text
    assert "bottom:\n    text: |\n      (to be written: after “Climb down”)" in text
    assert 'data-slide="bottom"' in html and 'data-slide="well"' in html  # the graph shows them
    # the start slide now leads to the well: pick it from the existing slides
    form = author.get("/admin/stories/forms/slides/beginning/edit").get_data(as_text=True)
    assert "<option>well</option>" in form
    author.post("/admin/stories/forms/slides/beginning/edit", data={
        "csrf_token": author.token, "revision": revision, "text": "The story begins here.",
        "choice_text": ["Go on", "To the well"], "choice_to": ["next", "well"], "choice_new": ["", ""],
        **no_conditions(2)})
    assert "To the well" in author.get("/play/forms/beginning").get_data(as_text=True)
    # emptying a choice's text removes it; a stale form is refused
    author.post("/admin/stories/forms/slides/beginning/edit", data={
        "csrf_token": author.token, "revision": editor_state(author, "forms")[1], "text": "The story begins here.",
        "choice_text": ["", "To the well"], "choice_to": ["next", "well"], "choice_new": ["", ""],
        **no_conditions(2)})
    assert "Go on" not in author.get("/play/forms/beginning").get_data(as_text=True)
    stale = author.post(
        "/admin/stories/forms/slides/well/edit",
        data={
            "csrf_token": author.token,
            "revision": revision,
            "text": "x",
            "choice_text": [],
            "choice_to": [],
            "choice_new": [],
        },
    )
    assert stale.status_code == 409


@pytest.mark.slow
def test_a_slide_form_that_breaks_the_story_is_refused(author):
    form = author.get("/admin/stories/lighthouse/slides/shore/edit").get_data(as_text=True)
    revision = re.search(r'name="revision" value="([0-9a-f]+)"', form).group(1)
    response = author.post("/admin/stories/lighthouse/slides/shore/edit", data={
        "csrf_token": author.token, "revision": revision, "text": "", "choice_text": ["Go"], "choice_to": ["stairs"],
        "choice_new": [""], **no_conditions(1)})
    assert response.status_code == 422
    import html

    assert "slide 'shore', field 'text': must be non-empty text" in html.unescape(response.get_data(as_text=True))


# -- sign-in limit and server-side sessions (the attacks over HTTP are in test_hostile.py) -------------------------


@pytest.mark.slow
def test_wrong_basic_auth_passwords_are_slowed_like_the_forms(make_app, monkeypatch):
    delays = []
    monkeypatch.setattr(admin.time, "sleep", delays.append)
    client = make_app(ADMIN_PASSWORD="open sesame").test_client()
    assert client.get("/admin/status.json", auth=("admin", "guess")).status_code == 401
    assert client.get("/admin/status.json", auth=("root", "open sesame")).status_code == 401  # no oracle either
    assert delays == [admin.FAILED_LOGIN_DELAY] * 2


def test_the_sign_in_guard_forgets_failures_after_its_window_and_bounds_its_table():
    from web.admin.sessions import SignInGuard

    now = [0.0]
    guard = SignInGuard(limit=2, window=60, max_clients=3, clock=lambda: now[0])
    for _ in range(2):
        assert guard.begin("a") is None
        guard.end("a", ok=False)
    assert guard.begin("a") == 60
    now[0] = 30
    assert guard.begin("a") == 30
    assert guard.begin("b") is None  # another client is not affected
    guard.end("b", ok=True)
    now[0] = 61
    assert guard.begin("a") is None  # the window has passed
    guard.end("a", ok=True)
    for client in ("c", "d", "e", "f"):
        guard.begin(client)
        guard.end(client, ok=False)
    assert len(guard._failures) <= 3


def test_admin_sessions_survive_a_restart_expire_and_end_with_a_new_password(tmp_path):
    from web.admin.sessions import AdminSessions

    now = [1000.0]
    path = tmp_path / "admin_sessions.json"
    sessions = AdminSessions(path, lifetime=3600, clock=lambda: now[0])
    sessions.set_password("hash-1")
    token = sessions.open()
    assert sessions.valid(token) and not sessions.valid("made-up") and not sessions.valid(True)
    assert token not in path.read_text() and path.stat().st_mode & 0o777 == 0o600  # only its hash is kept
    again = AdminSessions(path, lifetime=3600, clock=lambda: now[0])
    assert again.set_password("hash-1") and again.valid(token)
    now[0] += 3601
    assert not again.valid(token)
    now[0] -= 3601
    assert again.set_password("hash-2") and not again.valid(token)
    other = again.open()
    again.close(other)
    assert not again.valid(other)


def test_expired_sign_ins_are_sent_to_the_login_page(make_app):
    app = make_app(ADMIN_PASSWORD="open sesame", ADMIN_SESSION_HOURS=1)
    client = app.test_client()
    sign_in(client)
    assert client.get("/admin/").status_code == 200
    app.extensions["admin_sessions"].lifetime = 0  # as if the hour had passed
    assert client.get("/admin/").headers["Location"] == "/admin/login?next=/admin/"


@pytest.mark.slow
def test_the_dashboard_offers_sign_out_everywhere(make_app):
    app = make_app(ADMIN_PASSWORD="open sesame")
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop)
    sign_in(phone)
    page = laptop.get("/admin/").get_data(as_text=True)
    assert 'name="everywhere" value="1"' in page and "Sign out everywhere" in page
    laptop.post("/admin/logout", data={"csrf_token": csrf_token(laptop, "/admin/"), "everywhere": "1"})
    assert phone.get("/admin/").status_code == 302 and laptop.get("/admin/").status_code == 302
