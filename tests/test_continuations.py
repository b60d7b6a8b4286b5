"""Continuations: a slide painted img2img from another slide's picture (``image: {from: ..., strength: ...}``).

The story format and its checks, the composer, the generation service (sources first and never twice, a failing
source), paint-ahead, baking and the picture stream, on the real tiny model at 64x64.
"""

import html
import io
import re
import threading

import numpy as np
import pytest
from PIL import Image

from game.editing import ChoiceRow
from game.editing import apply_slide_edit
from game.editing import load_document
from game.prompts import compose
from game.prompts import labelled
from game.prompts import pictures
from game.story import StoryError
from game.story import dump_document
from game.story import load_story
from game.twine import export_report
from game.twine import import_file
from inference.cache import ImageCache
from inference.jobs import DONE
from inference.jobs import PLAYER
from inference.jobs import PREFETCH
from inference.jobs import QueueFull
from inference.request import GenerationRequest
from inference.service import GenerationService
from tests.support import csrf_token
from tests.support import data_url_image
from tests.support import final_frame
from tests.support import form_values
from tests.support import sign_in
from tests.support import wait_until

# Every picture 64x64 and a few steps; `shore` is painted plain, the others continue it (or each other).
SHORE = """\
title: Shore  # a comment that must survive a round trip
start: gate
style: {steps: 3, width: 64, height: 64, seed: 7, cfg_scale: 7}
slides:
  gate:
    text: A gate above the sea.
    image: an iron gate on a cliff
    choices:
      - {text: Go down at noon, to: noon}
      - {text: Wait for the night, to: night}
  shore:
    text: A grey shore at dawn.
    image: a rocky shore at dawn, a dark lighthouse
    choices:
      - {text: Wait, to: noon}
  noon:
    text: The same shore at noon.
    image:
      prompt: the rocky shore at noon, bright sun   # what changes
      from: shore   # same place...
      strength: 0.6   # ...new moment
    choices:
      - {text: Wait for the night, to: night}
  night:
    text: Night falls on the shore.
    image: {prompt: "the rocky shore at night, stars", from: noon}
"""
SHORE_PROMPT = "a rocky shore at dawn, a dark lighthouse"


def prompts_of(calls):
    """The subjects painted, batch by batch, in order (a prompt's first part names its slide here)."""
    return [prompt.split(",")[0] for batch in calls for prompt, _ in batch]


class Recorder:
    """Observation and fault injection around the real backend: records what each batch paints (prompt, and
    whether it starts from a picture), can hold the painter at the door, and fails every batch that paints a prompt
    containing ``fail_prompt`` (the named fault: a source picture that cannot be painted)."""

    def __init__(self, real, fail_prompt=None):
        self.real = real
        self.fail_prompt = fail_prompt
        self.calls = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def generate(self, requests, on_step=None):
        self.calls.append([(r.prompt, r.init_image is not None) for r in requests])
        self.entered.set()
        assert self.gate.wait(120)
        if self.fail_prompt and any(self.fail_prompt in r.prompt for r in requests):
            raise RuntimeError(f"injected fault: {self.fail_prompt!r} cannot be painted")
        return self.real.generate(requests, on_step)


def pixels(png):
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)



# -- the story format -------------------------------------------------------------------------------------------


def test_a_continuation_loads_and_dumps_back_with_its_comments_and_key_order():
    story = load_story(SHORE, "shore.yaml", "shore")
    noon, night = story.slides["noon"], story.slides["night"]
    assert (noon.source, noon.style.strength, noon.image) == ("shore", 0.6, "the rocky shore at noon, bright sun")
    assert (night.source, night.style.strength) == ("noon", None)  # the default strength
    assert story.sources("night") == ["noon", "shore"] and story.sources("shore") == []
    assert story.painting_order() == ["gate", "shore", "noon", "night"]
    assert dump_document(story.document) == SHORE


def test_the_slide_form_sets_changes_and_removes_a_continuation_keeping_the_files_comments():
    document = load_document(SHORE)
    rows = [ChoiceRow("Wait for the night", "night")]
    apply_slide_edit(document, "shore", "noon", "The same shore at noon.", "the shore at noon", [], rows,
                     "gate", "0.3")
    text = dump_document(document)
    assert re.search(r"prompt: the shore at noon +# what changes\n +from: gate +# same place\.\.\.\n +strength: 0\.3 +"
                     r"# \.\.\.new moment", text)  # edited in place: comments and key order kept
    assert (load_story(text, "s", "s").slides["noon"].source, load_story(text, "s", "s").slides["noon"].style.strength
            ) == ("gate", 0.3)
    apply_slide_edit(document, "shore", "gate", "A gate.", "an iron gate", [], [], "shore", "")  # a new one
    apply_slide_edit(document, "shore", "noon", "Noon.", "the shore at noon", [], rows, "", "0.3")  # removed
    story = load_story(dump_document(document), "s", "s")
    assert (story.slides["gate"].source, story.slides["gate"].style.strength) == ("shore", None)
    assert story.slides["noon"].source is None and story.slides["noon"].image == "the shore at noon"
    assert "a comment that must survive" in dump_document(document)


@pytest.mark.slow
def test_the_admin_slide_form_shows_and_saves_a_continuation(author, stories_dir):
    (stories_dir / "shore.yaml").write_text(SHORE)
    page = author.get("/admin/stories/shore/slides/noon/edit").get_data(as_text=True)
    assert 'name="image" value="the rocky shore at noon, bright sun"' in page
    sources = re.search(r'<select name="image_from">(.*?)</select>', page, re.S).group(1)
    assert "<option selected>shore</option>" in sources and "noon" not in sources  # it cannot continue itself
    assert "night" not in sources  # night continues noon's picture: a cycle
    assert re.search(r'name="image_strength" [^>]*value="0.6"', page)
    revision = re.search(r'name="revision" value="([0-9a-f]+)"', page).group(1)
    form = {"csrf_token": author.token, "revision": revision, "text": "Noon.", "image": "the shore at noon",
            "image_from": "gate", "image_strength": "0.25", "choice_text": ["Wait for the night"],
            "choice_to": ["night"], "choice_new": [""], "choice_if": [""], "choice_otherwise": ["hide"],
            "choice_set": [""]}
    assert author.post("/admin/stories/shore/slides/noon/edit", data=form).status_code == 303
    saved = (stories_dir / "shore.yaml").read_text()
    assert re.search(r"from: gate +# same place\.\.\.\n +strength: 0\.25 ", saved)
    page = author.get("/admin/stories/shore/slides/noon/edit").get_data(as_text=True)
    form.update(image_from="night", revision=re.search(r'name="revision" value="([0-9a-f]+)"', page).group(1))
    refused = author.post("/admin/stories/shore/slides/noon/edit", data=form)  # noon -> night -> noon
    assert refused.status_code == 422
    assert "continue each other in a cycle (noon -&gt; night -&gt; noon)" in refused.get_data(as_text=True)


def test_twine_export_and_import_keep_a_continuation_and_the_report_says_twine_itself_drops_it():
    story = load_story(SHORE, "shore.yaml", "shore")
    twee, warnings = export_report(story)
    assert any("slide 'noon': its picture continues the picture of 'shore'" in w and "Twine itself drops" in w
               for w in warnings)
    [(data, _)] = import_file(twee, "shore.twee")
    again = load_story(dump_document(data), "shore.twee", "shore")
    assert (again.slides["noon"].source, again.slides["noon"].style.strength) == ("shore", 0.6)
    assert (again.slides["night"].source, again.slides["night"].style.strength) == ("noon", None)
    assert again.slides["noon"].image == "the rocky shore at noon, bright sun"


def test_twine_import_keeps_the_picture_of_a_continuation_whose_source_is_gone():
    story = load_story(SHORE, "shore.yaml", "shore")
    twee = export_report(story)[0].replace('"from": "noon"', '"from": "dusk"')
    [(data, warnings)] = import_file(twee, "shore.twee")
    night = load_story(dump_document(data), "shore.twee", "shore").slides["night"]
    assert night.source is None and night.image == "the rocky shore at night, stars"
    assert any("slide 'night': its picture cannot continue another one" in w for w in warnings)


def chain_story(depth):
    slides = "".join(f"  s{i}:\n    text: Slide {i}.\n    image: {{prompt: picture {i}, from: s{i + 1}}}\n"
                     for i in range(depth))
    return f"title: Deep\nstart: s0\nslides:\n{slides}  s{depth}:\n    text: The first picture.\n"


@pytest.mark.parametrize(("text", "expected"), [
    (SHORE.replace("from: shore", "from: shor"),
     ["shore.yaml, line 20, slide 'noon', field 'image.from': continues the picture of 'shor', which is not a slide "
      "(did you mean 'shore'?)"]),
    (SHORE.replace("from: shore", "from: noon"),
     ["shore.yaml, line 20, slide 'noon', field 'image.from': continues its own picture: name another slide (the "
      "picture to start from)"]),
    (SHORE.replace("from: shore", "from: night"),
     ["shore.yaml, line 20, slide 'noon', field 'image.from': the pictures of 'noon', 'night' continue each other in "
      "a cycle (noon -> night -> noon), so none of them can be painted first: make one of them a plain picture (no "
      "'from')",
      "shore.yaml, line 26, slide 'night', field 'image.from': the pictures of 'noon', 'night' continue each other "
      "in a cycle (noon -> night -> noon), so none of them can be painted first: make one of them a plain picture "
      "(no 'from')"]),
    (SHORE.replace("strength: 0.6", "strength: 1.5"),
     ["shore.yaml, line 21, slide 'noon', field 'image.strength': must be a number from 0 (the source picture as it "
      "is) to 1 (a new picture in its place), got 1.5"]),
    (SHORE.replace("strength: 0.6", "strength: strong"),
     ["shore.yaml, line 21, slide 'noon', field 'image.strength': must be a number from 0 (the source picture as it "
      "is) to 1 (a new picture in its place), got 'strong'"]),
    (SHORE.replace("from: shore", "from: [shore]"),
     ["shore.yaml, line 20, slide 'noon', field 'image.from': must name the slide whose picture this one continues, "
      "got ['shore']"]),
    (chain_story(9),
     ["deep.yaml, line 6, slide 's0', field 'image.from': its picture is painted from a chain of 9 pictures (s0 -> s1 "
      "-> s2 -> s3 -> ... -> s9); at most 8 'from' steps lead to a plain picture"]),
])
def test_continuation_mistakes_are_named_with_file_line_slide_and_field(text, expected):
    source = "deep.yaml" if text.startswith("title: Deep") else "shore.yaml"
    with pytest.raises(StoryError) as caught:
        load_story(text, source, "s")
    assert [str(p) for p in caught.value.problems if p.severity == "error"] == expected


def test_a_chain_of_eight_continuations_is_allowed_and_strength_without_from_is_a_warning():
    assert load_story(chain_story(8), "deep.yaml", "deep").sources("s0") == [f"s{i}" for i in range(1, 9)]
    story = load_story(SHORE.replace("image: an iron gate on a cliff", "image: {prompt: a gate, strength: 0.2}"),
                       "shore.yaml", "shore")
    assert [str(w) for w in story.warnings if w.field] == [
        "shore.yaml, line 7, slide 'gate', field 'image.strength': has no effect without 'from' (the slide whose "
        "picture this one continues)"]


# -- composing --------------------------------------------------------------------------------------------------


def test_a_continuation_is_composed_after_its_sources_each_naming_the_picture_before_it():
    story = load_story(SHORE.replace("    text: Night falls on the shore.\n",
                                     "    text: Night falls on the shore.\n    style: {width: 96}\n"), "s", "shore")
    chain = pictures(compose(story, "night"), lambda r: r.cache_key("tiny"))
    assert [slide for slide, _ in chain] == ["shore", "noon", "night"]
    shore, noon, night = (request for _, request in chain)
    assert not shore.is_img2img and shore.init_from == ""
    assert (noon.init_from, noon.denoising_strength) == (shore.cache_key("tiny"), 0.6)
    assert (night.init_from, night.denoising_strength) == (noon.cache_key("tiny"), 0.5)
    assert (noon.width, noon.height, night.width, night.height) == (64, 64, 96, 64)  # the source's size, or its own
    assert night.resize_mode == 1  # a source of another shape is cropped, not stretched
    assert noon.seed != shore.seed and noon.prompt.startswith("the rocky shore at noon")  # seeds derived as always
    assert labelled(story, chain)[-1] == (night, "story 'shore', slide 'night'")


def test_a_continuation_of_a_picture_that_depends_on_the_variables_follows_the_same_values():
    story = load_story("""\
title: Lamp
start: hall
state: {lit: false}
slides:
  hall:
    text: A hall.
    image: "a hall{% if lit %}, lit by a lamp{% endif %}"
    choices: [{text: Look again, to: again}]
  again:
    text: The hall again.
    image: {prompt: the same hall with a cat, from: hall}
""", "s", "lamp")
    key = lambda r: r.cache_key("tiny")  # noqa: E731
    dark, lit = (pictures(compose(story, "again", values={"lit": value}), key) for value in (False, True))
    assert (dark[0][1].prompt, lit[0][1].prompt) == ("a hall", "a hall, lit by a lamp")
    assert dark[1][1].init_from == key(dark[0][1]) != lit[1][1].init_from == key(lit[0][1])
    assert pictures(compose(story, "again", values={"lit": True}), key) == lit  # the same values, the same pair


# -- the generation service ------------------------------------------------------------------------------------


@pytest.fixture
def service_for(backend, tmp_path):
    services = []

    def build(recorder=None, **options):
        recorder = recorder or Recorder(backend)
        service = GenerationService(recorder, ImageCache(tmp_path / f"cache{len(services)}"), "tiny",
                                    **{"preview_every": 1, **options})
        service.start()
        services.append(service)
        return service, recorder

    yield build
    for service in services:
        service.close()


def chain_of(service, slide, story=None):
    story = story or load_story(SHORE, "s", "shore")
    return labelled(story, pictures(compose(story, slide), service.key))


def hold(service, recorder):
    """Occupy the painter with a blocker held at the door, so that what is asked next queues up behind it."""
    recorder.gate.clear()
    service.submit(GenerationRequest(prompt="blocker", seed=1, steps=1, width=72, height=64), PLAYER)
    assert recorder.entered.wait(60)


@pytest.mark.slow
def test_two_continuations_asked_at_once_paint_their_source_once_and_first(service_for):
    service, recorder = service_for(max_batch=4)
    hold(service, recorder)
    noon, night = chain_of(service, "noon"), chain_of(service, "night")
    asked = []
    threads = [threading.Thread(target=lambda c=c, w=w: asked.append(service.submit_chain(c, PLAYER, who=w, client=w)))
               for c, w in ((noon, "ann"), (night, "bob"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert service.stats()["queued"] == 3  # shore, noon, night: shore once
    recorder.gate.set()
    for snap in asked:
        assert service.wait(snap.key, 600).state == DONE
    assert prompts_of(recorder.calls) == ["blocker", "a rocky shore at dawn", "the rocky shore at noon",
                                          "the rocky shore at night"]
    assert [painted for batch in recorder.calls[1:] for _, painted in batch] == [False, True, True]
    assert service.stats()["counters"]["generated"] == 4


@pytest.mark.slow
def test_a_continuation_is_deterministic_shared_and_not_the_plain_picture_of_its_prompt(service_for, backend):
    first, _ = service_for()
    second, _ = service_for()  # another cache: painted afresh
    done = [s.wait(s.submit_chain(chain_of(s, "noon")).key, 600) for s in (first, second)]
    assert done[0].state == done[1].state == DONE and done[0].key == done[1].key
    assert done[0].png == done[1].png  # the same bytes twice
    assert first.submit_chain(chain_of(first, "noon"), PLAYER, who="bob").png == done[0].png  # a cache hit
    assert first.stats()["counters"]["generated"] == 2
    noon = chain_of(first, "noon")[-1][0]
    plain = backend.generate([noon.replace(init_from="")])[0].encode("png")
    assert np.abs(pixels(plain) - pixels(done[0].png)).mean() > 5  # not the picture the prompt alone gives


@pytest.mark.slow
def test_a_player_raises_the_paint_ahead_of_a_source_to_player_priority(service_for):
    service, recorder = service_for(max_batch=1)
    hold(service, recorder)
    service.submit_chain(chain_of(service, "noon"), PREFETCH, who="ann")
    other = service.submit_chain(chain_of(service, "gate"), PREFETCH, who="ann")  # newer: painted ahead first...
    assert service.stats()["queue"]["prefetch"] == 3
    asked = service.submit_chain(chain_of(service, "noon"), PLAYER, who="ann", client="ann")  # ...until a player waits
    assert service.stats()["queue"] == {"player": 2, "admin": 0, "prefetch": 1, "api": 0}
    recorder.gate.set()
    assert service.wait(asked.key, 600).state == DONE and service.wait(other.key, 600).state == DONE
    assert prompts_of(recorder.calls) == ["blocker", "a rocky shore at dawn", "the rocky shore at noon",
                                          "an iron gate on a cliff"]


def test_a_continuation_and_its_source_count_as_two_jobs_in_the_queue(service_for):
    service, recorder = service_for(max_queue=2)
    hold(service, recorder)
    service.submit_chain(chain_of(service, "noon"), PLAYER, who="ann", client="ann")
    assert service.stats()["queued"] == 2
    with pytest.raises(QueueFull):
        service.submit_chain(chain_of(service, "gate"), PLAYER, who="bob", client="bob")
    recorder.gate.set()


def test_one_players_cap_counts_the_picture_asked_for_not_its_sources(service_for):
    service, recorder = service_for(max_per_client=1)
    hold(service, recorder)
    service.submit_chain(chain_of(service, "night"), PLAYER, who="ann", client="ann")  # three jobs, one picture
    assert service.stats()["queued"] == 3
    with pytest.raises(QueueFull) as caught:
        service.submit_chain(chain_of(service, "gate"), PLAYER, who="ann", client="ann")
    assert caught.value.mine and service.stats()["queued"] == 3
    recorder.gate.set()


def test_a_source_that_a_waiting_continuation_needs_is_not_dropped_with_the_paint_ahead(service_for):
    service, recorder = service_for()
    hold(service, recorder)
    shore_key = service.key(chain_of(service, "shore")[-1][0])
    noon = service.submit_chain(chain_of(service, "noon"), PREFETCH, who="ann")
    assert service.cancel(shore_key, "ann") is False  # noon waits for it
    assert service.cancel(noon.key, "ann") is True
    assert service.cancel(shore_key, "ann") is True
    recorder.gate.set()
    assert service.stats()["queued"] == 0


@pytest.mark.slow
def test_a_failing_source_gives_a_plain_picture_not_cached_and_a_note_then_the_real_one(service_for, backend):
    service, recorder = service_for(recorder=Recorder(backend, fail_prompt=SHORE_PROMPT))
    noon = chain_of(service, "noon")
    snap = service.wait(service.submit_chain(noon, PLAYER, who="ann").key, 600)
    assert snap.state == DONE and snap.error == ""  # the player gets a picture, no error
    plain = backend.generate([noon[-1][0].replace(init_from="")])[0].encode("png")
    assert np.abs(pixels(plain) - pixels(snap.png)).max() <= 1  # the plain picture of the same prompt and seed
    assert snap.key not in service.cache
    [note] = service.stats()["notes"]
    assert note["picture"] == "story 'shore', slide 'noon'" and note["key"] == snap.key
    assert note["message"].startswith("painted as a plain picture: the picture it continues (story 'shore', slide "
                                      "'shore') failed (RuntimeError: injected fault")
    assert service.submit_chain(noon, PLAYER, who="bob").png == snap.png  # while the source is still failed
    recorder.fail_prompt = None  # the fault is over: the source is painted again, then the real continuation
    assert service.wait(service.submit(noon[0][0], PLAYER).key, 600).state == DONE
    real = service.wait(service.submit_chain(noon, PLAYER, who="ann").key, 600)
    assert real.state == DONE and real.png != snap.png and real.key in service.cache
    assert recorder.calls[-1] == [(noon[-1][0].prompt, True)]


# -- the game: paint-ahead, the picture stream, the admin -------------------------------------------------------


@pytest.fixture
def shore_app(make_app, stories_dir, story_backend):
    (stories_dir / "shore.yaml").write_text(SHORE)

    def build(**config):
        recorder = Recorder(story_backend, config.pop("fail_prompt", None))
        app = make_app(BACKEND_INSTANCE=recorder, ADMIN_PASSWORD="open sesame", **config)
        return app, recorder

    return build


def idle(app):
    images = app.extensions["images"]
    return wait_until(lambda: (lambda s: s if s["queued"] == 0 and not s["running"] else None)(images.stats()),
                      "the painter idle")


@pytest.mark.slow
def test_the_continuation_slides_stream_ends_with_its_picture_which_two_players_share(shore_app):
    app, recorder = shore_app()
    ann, bob = app.test_client(), app.test_client()
    for player in (ann, bob):
        assert player.get("/play/shore/noon").status_code == 200
    pictures_ = [data_url_image(final_frame(player, "/play/shore/noon")) for player in (ann, bob)]
    assert pictures_[0].size == (64, 64)
    assert np.array_equal(np.asarray(pictures_[0]), np.asarray(pictures_[1]))
    assert prompts_of(recorder.calls) == ["a rocky shore at dawn", "the rocky shore at noon"]  # one cache entry
    assert [painted for batch in recorder.calls for _, painted in batch] == [False, True]
    assert "sse-connect" not in ann.get("/play/shore/noon").get_data(as_text=True)  # inline: painted


@pytest.mark.slow
def test_paint_ahead_paints_the_sources_of_the_next_slides_first_and_once(shore_app):
    app, recorder = shore_app(PREFETCH_DEPTH=1)
    client = app.test_client()
    client.get("/play/shore/gate")
    idle(app)
    assert prompts_of(recorder.calls) == ["an iron gate on a cliff", "a rocky shore at dawn",
                                          "the rocky shore at noon", "the rocky shore at night"]
    html = client.post("/play/shore/gate", data={"choice": "2"}, follow_redirects=True).get_data(as_text=True)
    assert "Night falls on the shore." in html and "sse-connect" not in html  # painted ahead: inline at once


@pytest.mark.slow
def test_a_failing_source_still_gives_the_player_a_picture_and_the_admin_a_note(shore_app):
    app, _ = shore_app(fail_prompt=SHORE_PROMPT)
    client = app.test_client()
    client.get("/play/shore/noon")
    frame = final_frame(client, "/play/shore/noon")
    assert data_url_image(frame).size == (64, 64) and "could not be painted" not in frame
    sign_in(client)
    status = client.get("/admin/status.json").get_json()
    assert status["counters"]["fallbacks"] == 1
    assert "slide 'noon'" in status["notes"][0]["picture"]
    dashboard = client.get("/admin/").get_data(as_text=True)
    assert "story &#39;shore&#39;, slide &#39;noon&#39;: painted as a plain picture" in dashboard


@pytest.mark.slow
def test_baking_paints_every_picture_once_sources_first_and_counts_them_all(shore_app):
    app, recorder = shore_app()
    client = app.test_client()
    sign_in(client)
    token = csrf_token(client, "/admin/stories")
    html = client.post("/admin/stories/shore/bake", data={"csrf_token": token}).get_data(as_text=True)
    assert '<progress max="4"' in html
    html = wait_until(lambda: (lambda h: h if "4 of 4 pictures ready" in h else None)(
        client.get("/admin/stories/shore/bake").get_data(as_text=True)), "the bake done")
    assert "every slide comes at once" in html
    assert prompts_of(recorder.calls) == ["an iron gate on a cliff", "a rocky shore at dawn",
                                          "the rocky shore at noon", "the rocky shore at night"]
    result = app.test_cli_runner().invoke(args=["bake", "shore"])  # all in the cache: nothing painted again
    assert result.exit_code == 0, result.output
    assert "Baking 4 pictures of Shore" in result.output and "4 of 4 pictures are in the cache." in result.output
    assert len(prompts_of(recorder.calls)) == 4


# -- the author: tuning a continuation, comparing strengths, the graph ------------------------------------------


def card_polls(page):
    """The poll addresses of the preview cards on a tuning page, in order."""
    return [html.unescape(url) for url in re.findall(r'hx-get="(/admin/jobs/[0-9a-f]{64}[^"]*)"', page)]


def painted_card(client, url):
    return wait_until(lambda: (lambda h: h if "hx-trigger" not in h else None)(client.get(url).get_data(as_text=True)),
                      f"the card {url} painted")


def card_pixels(card):
    return np.asarray(data_url_image(card).convert("RGB")).astype(int)


@pytest.fixture
def tuning(shore_app):
    """An app painting the shore story (pictures as PNG, so that a player's is the same bytes), the recorder of
    what its painter paints, and a signed-in author."""
    app, recorder = shore_app(IMAGE_FORMAT="png")
    author = app.test_client()
    sign_in(author)
    return app, recorder, author


@pytest.mark.slow
def test_tuning_a_continuation_paints_it_from_its_source_shown_beside_and_players_get_the_one_kept(tuning,
                                                                                                 stories_dir):
    app, recorder, author = tuning
    page = author.get("/admin/stories/shore/slides/noon").get_data(as_text=True)
    select = re.search(r'<select name="image_from">(.*?)</select>', page, re.S).group(1)
    assert '<option value="">none: a picture of its own</option>' in select
    assert "<option selected>shore</option>" in select
    assert re.search(r'name="image_strength" [^>]*value="0.6"', page)
    assert "The picture of <strong>shore</strong>, which this one continues, is painted first" in page
    assert "Painted from the picture of" in page and "at strength 0.6" in page
    form = {**form_values(page, "tune-form"), "count": "2"}
    assert (form["image_from"], form["image_strength"], form["width"]) == ("shore", "0.6", "64")
    polls = card_polls(author.post("/admin/stories/shore/slides/noon", data=form).get_data(as_text=True))
    assert len(polls) == 3 and "of=shore" in polls[0]  # the picture it continues first, then the candidates
    assert all("from=shore" in url and "strength=0.6" in url for url in polls[1:])
    source = painted_card(author, polls[0])
    assert "the picture it continues" in source and 'data-slide="shore"' in source and "Keep this one" not in source
    cards = [painted_card(author, url) for url in polls[1:]]
    seed = int(form["seed"])
    assert [int(re.search(r'data-seed="(\d+)"', card).group(1)) for card in cards] == [seed, seed + 1]
    assert all("<strong>strength 0.6</strong>" in card for card in cards)
    # painted as a player's would be: the source first as a plain picture, then the candidates from it
    assert prompts_of(recorder.calls) == ["a rocky shore at dawn", "the rocky shore at noon", "the rocky shore at noon"]
    assert [from_picture for batch in recorder.calls for _, from_picture in batch] == [False, True, True]
    again = author.get("/admin/stories/shore/slides/noon").get_data(as_text=True)
    assert card_polls(again) == polls[:1]  # opened again: the picture it continues is shown at once
    # not the picture the prompt and seed alone give ("none" as the source: a plain picture)
    plain = card_polls(author.post("/admin/stories/shore/slides/noon", data={**form, "image_from": "", "count": "1"})
                       .get_data(as_text=True))
    assert len(plain) == 1 and "from=" not in plain[0]
    plain_card = painted_card(author, plain[0])
    assert np.abs(card_pixels(plain_card) - card_pixels(cards[0])).mean() > 5
    assert re.search(r'formaction="[^"]*\?chosen_from="', plain_card)  # kept as painted: a picture of its own
    # keep the second: seed, source and strength go into the slide; a player then gets that very picture at once
    keep = html.unescape(re.search(r'formaction="([^"]+)"', cards[1]).group(1))
    response = author.post(keep, data={**form, "chosen_seed": str(seed + 1)})
    assert response.status_code == 303 and f"kept={seed + 1}" in response.headers["Location"]
    saved = (stories_dir / "shore.yaml").read_text()
    assert "# a comment that must survive a round trip" in saved
    assert re.search(r"from: shore +# same place\.\.\.\n +strength: 0\.6 +# \.\.\.new moment", saved)
    assert f"seed: {seed + 1}" in saved
    kept = author.get(response.headers["Location"]).get_data(as_text=True)
    assert f"Kept seed {seed + 1}, painted from the picture of shore at strength 0.6," in kept
    play = app.test_client().get("/play/shore/noon").get_data(as_text=True)
    assert "sse-connect" not in play  # already painted: the picture comes with the slide
    assert np.array_equal(card_pixels(play), card_pixels(cards[1]))


@pytest.mark.slow
def test_compare_strengths_paints_one_card_per_strength_at_one_seed_and_keeps_the_chosen_one(tuning, stories_dir):
    app, recorder, author = tuning
    form = {**form_values(author.get("/admin/stories/shore/slides/noon").get_data(as_text=True), "tune-form"),
            "action": "strengths", "strengths": "0.3, 0.5 0.7", "seed": "-1"}
    response = author.post("/admin/stories/shore/slides/noon", data=form)
    assert response.status_code == 200
    polls = card_polls(response.get_data(as_text=True))
    assert len(polls) == 4 and "of=shore" in polls[0]
    cards = [painted_card(author, url) for url in polls[1:]]
    assert [re.search(r'data-strength="([^"]+)"', card).group(1) for card in cards] == ["0.3", "0.5", "0.7"]
    assert [re.search(r"<strong>strength ([^<]+)</strong>", card).group(1) for card in cards] == ["0.3", "0.5", "0.7"]
    seeds = {re.search(r'data-seed="(\d+)"', card).group(1) for card in cards}
    assert len(seeds) == 1  # one seed (drawn once for "-1"): only the strength differs
    pixels_ = [card_pixels(card) for card in cards]
    assert np.abs(pixels_[0] - pixels_[2]).mean() > 1  # the strength changes the picture
    assert prompts_of(recorder.calls).count("a rocky shore at dawn") == 1  # the source once, for all three
    keep = html.unescape(re.search(r'formaction="([^"]+)"', cards[0]).group(1))
    assert "chosen_from=shore" in keep and "chosen_strength=0.3" in keep
    kept = author.post(keep, data={**form, "image_strength": "0.9", "chosen_seed": seeds.pop()})
    assert kept.status_code == 303
    saved = (stories_dir / "shore.yaml").read_text()  # the card's strength, not what the form says now
    assert re.search(r"from: shore +# same place\.\.\.\n +strength: 0\.3 +# \.\.\.new moment", saved)
    play = app.test_client().get("/play/shore/noon").get_data(as_text=True)
    assert "sse-connect" not in play and np.array_equal(card_pixels(play), pixels_[0])


def test_a_strengths_comparison_is_bounded_and_needs_a_picture_to_continue(tuning):
    _, recorder, author = tuning
    form = {**form_values(author.get("/admin/stories/shore/slides/noon").get_data(as_text=True), "tune-form"),
            "action": "strengths"}
    for strengths, message in (("0.1, 0.2, 0.3, 0.4, 0.5", "strengths: at most 4 strengths at once, got 5"),
                               ("0.2, 1.5", "strengths: must be a number from 0 (the source picture as it is) to 1"),
                               ("", "strengths: name the strengths to compare, for example 0.3, 0.5, 0.7")):
        response = author.post("/admin/stories/shore/slides/noon", data={**form, "strengths": strengths})
        assert response.status_code == 422 and message in html.unescape(response.get_data(as_text=True))
    plain = author.post("/admin/stories/shore/slides/noon", data={**form, "image_from": ""})
    assert plain.status_code == 422
    assert "image_from: comparing strengths needs a picture to continue" in plain.get_data(as_text=True)
    assert recorder.calls == [] and "/admin/jobs/" not in plain.get_data(as_text=True)  # nothing was painted


def test_a_full_queue_answers_busy_and_shows_the_previews_it_took(shore_app):
    app, recorder = shore_app(QUEUE_LIMIT=2)
    author = app.test_client()
    sign_in(author)
    form = {**form_values(author.get("/admin/stories/shore/slides/noon").get_data(as_text=True), "tune-form"),
            "action": "strengths", "strengths": "0.3, 0.5, 0.7"}
    hold(app.extensions["images"], recorder)
    response = author.post("/admin/stories/shore/slides/noon", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert "the painter has too many pictures waiting: retry in" in page
    polls = card_polls(page)  # the source and the first strength were taken before the queue was full
    assert len(polls) == 2 and "of=shore" in polls[0] and "strength=0.3" in polls[1]
    recorder.gate.set()


def test_the_source_select_leaves_out_slides_that_would_make_a_cycle_and_a_forged_one_is_refused(tuning):
    _, _, author = tuning
    page = author.get("/admin/stories/shore/slides/shore").get_data(as_text=True)
    options = re.findall(r"<option[^>]*>([^<]*)</option>",
                         re.search(r'<select name="image_from">(.*?)</select>', page, re.S).group(1))
    assert options == ["none: a picture of its own", "gate"]  # noon and night continue shore's picture
    assert "Not offered: noon, night (each continues this picture already" in page
    page = author.get("/admin/stories/shore/slides/noon").get_data(as_text=True)
    options = re.findall(r"<option[^>]*>([^<]*)</option>",
                         re.search(r'<select name="image_from">(.*?)</select>', page, re.S).group(1))
    assert options == ["none: a picture of its own", "gate", "shore"]  # night continues noon's
    form = {**form_values(page, "tune-form"), "image_from": "night"}
    refused = author.post("/admin/stories/shore/slides/noon", data=form)
    assert refused.status_code == 422
    assert ("image_from: cannot continue the picture of 'night': its picture continues this one's (night -> noon), "
            "so they would continue each other in a cycle") in html.unescape(refused.get_data(as_text=True))
    kept = author.post("/admin/stories/shore/slides/noon/keep", data={**form, "chosen_seed": "5"})
    assert kept.status_code == 422 and "would continue each other in a cycle" in kept.get_data(as_text=True)


def test_keep_writes_a_new_continuation_or_removes_one_keeping_the_files_comments(tuning, stories_dir):
    _, _, author = tuning
    page = author.get("/admin/stories/shore/slides/gate").get_data(as_text=True)
    form = form_values(page, "tune-form")
    assert form["image_from"] == "" and form["image_strength"] == ""
    response = author.post("/admin/stories/shore/slides/gate/keep?chosen_from=shore&chosen_strength=0.25",
                           data={**form, "chosen_seed": "11"})
    assert response.status_code == 303
    story = load_story((stories_dir / "shore.yaml").read_text(), "shore.yaml", "shore")
    gate = story.slides["gate"]
    assert (gate.source, gate.style.strength, gate.image, gate.style.seed) == ("shore", 0.25,
                                                                                "an iron gate on a cliff", 11)
    page = author.get("/admin/stories/shore/slides/noon").get_data(as_text=True)
    response = author.post("/admin/stories/shore/slides/noon/keep",
                           data={**form_values(page, "tune-form"), "image_from": "", "chosen_seed": "12"})
    assert response.status_code == 303 and "source=" not in response.headers["Location"]
    text = (stories_dir / "shore.yaml").read_text()
    noon = load_story(text, "shore.yaml", "shore").slides["noon"]
    assert (noon.source, noon.image, noon.style.seed) == (None, "the rocky shore at noon, bright sun", 12)
    assert "# a comment that must survive a round trip" in text


def test_a_continuation_of_a_picture_that_changes_with_the_values_is_flagged_as_changing(author, stories_dir):
    (stories_dir / "lamp.yaml").write_text("""\
title: Lamp
start: hall
state: {lit: false}
slides:
  hall:
    text: A hall.
    image: "a hall{% if lit %}, lit by a lamp{% endif %}"
    choices: [{text: Look again, to: again}]
  again:
    text: The hall again.
    image: {prompt: the same hall with a cat, from: hall}
""")
    page = author.get("/admin/stories/lamp/slides/again").get_data(as_text=True)
    assert "(this slide&#39;s picture does not change with them)" not in page
    assert "This picture changes with the values: it is painted from the picture of hall, which changes" in page


def test_the_htmx_paint_answers_with_the_previews_and_the_prompt_and_varies_by_hx_request(tuning):
    app, recorder, author = tuning
    hold(app.extensions["images"], recorder)
    form = {**form_values(author.get("/admin/stories/shore/slides/noon").get_data(as_text=True), "tune-form"),
            "image": "the rocky shore at dusk", "count": "1"}
    response = author.post("/admin/stories/shore/slides/noon", data=form, headers={"HX-Request": "true"})
    fragment = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert fragment.startswith('<div class="cards" id="tune-cards">') and "<html" not in fragment
    assert len(card_polls(fragment)) == 2
    assert '<div class="panel" id="tune-prompt" hx-swap-oob="true">' in fragment  # the prompt as now composed
    assert '<span class="part subject" title="subject">the rocky shore at dusk</span>' in fragment
    whole = author.post("/admin/stories/shore/slides/noon", data=form)
    assert "HX-Request" in whole.headers["Vary"] and "<html" in whole.get_data(as_text=True)
    assert 'hx-swap-oob' not in whole.get_data(as_text=True)
    recorder.gate.set()


def test_the_graph_draws_continuations_as_their_own_edges_and_a_picture_source_is_not_unreachable(author,
                                                                                                  stories_dir):
    (stories_dir / "shore.yaml").write_text(SHORE)
    page = author.get("/admin/stories/shore").get_data(as_text=True)
    continuations = re.findall(r'<path d="[^"]+" class="edge continuation" marker-end="url\(#arrow-continuation\)" '
                               r'data-from="(\w+)" data-to="(\w+)"><title>([^<]*)</title>', page)
    assert continuations == [("shore", "noon", "noon continues the picture of shore at strength 0.6"),
                             ("noon", "night", "night continues the picture of noon")]
    def choice_edges(page):  # each choice's line, but where it is drawn (shore stands elsewhere without noon's)
        return [re.sub(r' [xy][12]="[^"]+"', "", line) for line in re.findall(r"<line [^>]*>.*?</line>", page)]

    plain = SHORE.replace("      from: shore   # same place...\n      strength: 0.6   # ...new moment\n", "").replace(
        ', from: noon}', '}')
    (stories_dir / "plain.yaml").write_text(plain)
    unchanged = author.get("/admin/stories/plain").get_data(as_text=True)
    assert "edge continuation" not in unchanged
    assert choice_edges(page) == choice_edges(unchanged)  # the choices, drawn as before
    assert choice_edges(page)[2] == ('<line class="edge" marker-end="url(#arrow)"><title>shore → noon: “Wait”</title>'
                                     '</line>')
    assert "continuation: blue dashed curve" in page and "continuation: blue dashed curve" not in unchanged
    # shore: no choice leads there, but noon's picture is painted from it: said so, not warned about
    node = re.search(r'<a href="[^"]*" class="node([^"]*)" data-slide="shore">\s*<title>([^<]*)</title>', page)
    assert node.group(1).split() == ["unreachable", "source-only"]
    assert "only its picture is used, as a source" in node.group(2)
    assert "slide <strong>shore</strong>: no choice leads here, so players never read it; its picture is painted as " \
           "the source of <strong>noon</strong>" in page
    assert "cannot be reached" not in page
    assert "cannot be reached" in unchanged  # a plain picture no choice leads to is still worth a warning
    story = load_story(SHORE + "  lost:\n    text: Nobody comes here.\n", "shore.yaml", "shore")
    assert [str(w) for w in story.warnings] == ["shore.yaml, line 27, slide 'lost': cannot be reached from the start "
                                                "slide"]
