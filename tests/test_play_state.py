"""Playing a story with state over HTTP: rendered text, open/closed choices, effects applied once, back and
shared links with the right values, pictures and paint-ahead for the player's values, a bounded session."""

import re

import pytest

from game.prompts import compose
from tests.support import HTMX
from tests.support import LANTERN_YAML
from tests.support import final_frame

LIT = {"lantern": True, "coins": 2}


@pytest.fixture
def lantern(stories_dir):
    (stories_dir / "lantern.yaml").write_text(LANTERN_YAML)
    return stories_dir


def text_of(html: str) -> str:
    return re.search(r'<div class="text" id="slide-text"[^>]*>(.*?)</div>', html, re.S).group(1).strip()


def buttons(html: str) -> list[str]:
    """The choice buttons of a page, each as 'N label' with '(closed)' when it is shown disabled."""
    found = re.findall(r'<button ([^>]*)><kbd>(\d)</kbd><span>([^<]*)</span>', html)
    return [f"{n} {label}" + (" (closed)" if " disabled" in attributes else "") for attributes, n, label in found]


def picture_key(app, values):
    with app.app_context():
        story = app.extensions["stories"].get("lantern")
        images = app.extensions["images"]
        return images.key(compose(story, "hall", images.backend.count_tokens, values=values).request)


def test_taking_the_lantern_changes_the_text_and_the_choices(lantern, client):
    first = client.get("/play/lantern/hall").get_data(as_text=True)
    assert text_of(first) == "<p>Hall.  Coins: 3</p>"
    assert buttons(first) == ["1 Take the lantern", "2 Go down (closed)"]  # Pay is hidden; Go down shown greyed
    assert '<input type="hidden" name="step" value="0">' in first
    assert "{%" not in first and "{{" not in first  # no template source reaches a player
    taken = client.post("/play/lantern/hall", data={"choice": "1", "step": "0"})
    assert (taken.status_code, taken.headers["Location"]) == (303, "/play/lantern/hall?step=1")
    page = client.get(taken.headers["Location"]).get_data(as_text=True)
    assert text_of(page) == "<p>Hall. Your lantern glows. Coins: 2</p>"
    assert buttons(page) == ["1 Go down"]  # numbered among the shown ones; the form still sends its own index
    assert 'name="choice" value="2" data-key="1"' in page


def test_a_closed_choice_posted_anyway_is_refused_with_the_page_as_it_was(lantern, client):
    client.get("/play/lantern/hall")
    response = client.post("/play/lantern/hall", data={"choice": "2", "step": "0"}, headers=HTMX)
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "“Go down” is not open to you now" in html
    assert text_of(html) == "<p>Hall.  Coins: 3</p>"


def test_the_same_choice_posted_twice_applies_its_effect_once(lantern, client):
    client.get("/play/lantern/hall")
    one = client.post("/play/lantern/hall", data={"choice": "1", "step": "0"}, headers=HTMX)
    two = client.post("/play/lantern/hall", data={"choice": "1", "step": "0"}, headers=HTMX)  # a double click
    assert one.status_code == two.status_code == 200
    assert "Coins: 2" in text_of(two.get_data(as_text=True))
    assert two.headers["HX-Push-Url"] == "/play/lantern/hall?step=1"
    assert "Coins: 2" in text_of(client.get("/play/lantern/hall?step=1").get_data(as_text=True))
    # a plain form (no JavaScript) sent again from the first page: still one lantern, paid for once
    again = client.post("/play/lantern/hall", data={"choice": "1", "step": "0"})
    assert again.headers["Location"] == "/play/lantern/hall?step=1"
    assert "Coins: 2" in text_of(client.get(again.headers["Location"]).get_data(as_text=True))


def test_back_shows_each_slide_with_the_values_it_had(lantern, client):
    client.get("/play/lantern/hall")
    client.post("/play/lantern/hall", data={"choice": "1", "step": "0"})
    cellar = client.get(client.post("/play/lantern/hall", data={"choice": "2", "step": "1"}).headers["Location"])
    back = re.search(r'<a href="([^"]+)"[^>]*rel="prev"', cellar.get_data(as_text=True)).group(1)
    assert back == "/play/lantern/hall?step=1"
    lit = client.get(back, headers=HTMX).get_data(as_text=True)
    assert "Your lantern glows" in text_of(lit)
    earlier = re.search(r'<a href="([^"]+)"[^>]*rel="prev"', lit).group(1)
    assert earlier == "/play/lantern/hall?step=0"  # the same slide, one visit earlier
    dark = client.get(earlier).get_data(as_text=True)
    assert text_of(dark) == "<p>Hall.  Coins: 3</p>" and 'rel="prev"' not in dark
    # having gone back, the player goes on from this page: on this path the lantern was never taken
    assert client.get("/play/lantern").headers["Location"] == "/play/lantern/hall?step=0"
    taken = client.post("/play/lantern/hall", data={"choice": "1", "step": "0"}).headers["Location"]
    assert "Coins: 2" in text_of(client.get(taken).get_data(as_text=True))


def test_a_shared_link_starts_the_receiver_with_the_starting_values(lantern, app):
    sender, receiver = app.test_client(), app.test_client()
    sender.get("/play/lantern/hall")
    link = sender.post("/play/lantern/hall", data={"choice": "1", "step": "0"}).headers["Location"]
    assert "Your lantern glows" in text_of(sender.get(link).get_data(as_text=True))
    shared = receiver.get(link).get_data(as_text=True)  # /play/lantern/hall?step=1, opened by a friend
    assert text_of(shared) == "<p>Hall.  Coins: 3</p>"
    assert buttons(shared) == ["1 Take the lantern", "2 Go down (closed)"]
    assert "Coins: 2" in text_of(sender.get("/play/lantern/hall").get_data(as_text=True))  # the sender keeps theirs


@pytest.mark.slow
def test_the_picture_is_painted_for_the_players_values(lantern, app):
    client = app.test_client()
    client.get("/play/lantern/hall")
    client.post("/play/lantern/hall", data={"choice": "1", "step": "0"})
    with app.app_context():
        story = app.extensions["stories"].get("lantern")
        lit = compose(story, "hall", values=LIT).request
        dark = compose(story, "hall").request
    assert "lit by a lantern" in lit.prompt and "lantern" not in dark.prompt and lit.seed != dark.seed
    frame = final_frame(client, "/play/lantern/hall")  # the page's picture stream follows the player's values
    assert f"seed {lit.seed} ·" in frame
    assert 'alt="a hall lit by a lantern"' in frame  # the description as rendered, never its template source
    assert app.extensions["images"].state_of(picture_key(app, LIT)) == "done"
    # a friend with no progress gets the dark hall's picture from the same address
    assert f"seed {dark.seed} ·" in final_frame(app.test_client(), "/play/lantern/hall")


def test_paint_ahead_asks_for_the_picture_each_choice_leads_to(lantern, make_app):
    app = make_app(PREFETCH_DEPTH=1)
    client = app.test_client()
    client.get("/play/lantern/hall")
    lit_key, dark_key = picture_key(app, LIT), picture_key(app, None)
    assert lit_key != dark_key  # the rendered description is part of the cache key
    assert app.extensions["images"].state_of(lit_key) is not None  # "Take the lantern" leads to the lit hall
    with app.app_context():
        story = app.extensions["stories"].get("lantern")
        cellar = app.extensions["images"].key(compose(story, "cellar", app.extensions["images"].backend.count_tokens,
                                                      values=LIT).request)
    assert app.extensions["images"].state_of(cellar) is None  # "Go down" is closed: nothing painted for it


@pytest.mark.slow
def test_the_session_cookie_stays_bounded_across_long_plays_of_many_stories(stories_dir, client):
    def story(n):  # every step changes 14 numbers: many distinct values to remember, each story its own
        variables = "\n".join(f"  n{i}: {i * 79 + n * 1047}" for i in range(14))
        effects = ", ".join(f"n{i}: 'n{i} * 2 + {i + n + 1}'" for i in range(14))
        return (f"title: Long {n}\nstart: a\nstate:\n{variables}\nslides:\n  a:\n    text: 'A {{{{ n0 }}}}'\n"
                f"    choices:\n      - {{text: On, to: a, set: {{{effects}}}}}\n")

    for n in range(8):
        (stories_dir / f"long{n}.yaml").write_text(story(n))
    for n in range(8):
        client.get(f"/play/long{n}/a")
        for step in range(10):
            response = client.post(f"/play/long{n}/a", data={"choice": "1", "step": str(step)})
            assert response.headers["Location"] == f"/play/long{n}/a?step={step + 1}"
            assert len(client.get_cookie("session").value) <= 3600  # browsers keep cookies of about 4,000
    # the story played last is where it was left, with its values; the one played longest ago was forgotten
    resume = client.get("/play/long7").headers["Location"]
    assert resume == "/play/long7/a?step=10"
    assert text_of(client.get(resume).get_data(as_text=True)) == f"<p>A {7 * 1047 * 1024 + 8 * 1023}</p>"
    assert client.get("/play/long0").headers["Location"] == "/play/long0/a"
    assert text_of(client.get("/play/long0/a").get_data(as_text=True)) == "<p>A 0</p>"


def test_odd_steps_and_choices_are_answered_not_crashed_on(lantern, client):
    client.get("/play/lantern/hall")
    for choice, step in (("1" * 5000, "0"), ("²", "0"), ("1", "²"), ("1", "-1"), ("1", "9" * 40), ("1", "7")):
        response = client.post("/play/lantern/hall", data={"choice": choice, "step": step}, headers=HTMX)
        assert response.status_code in (200, 409), (choice, step)
    assert client.get("/play/lantern/hall?step=²").status_code == 200
    assert client.get("/play/lantern/hall?step=99999999999999").status_code == 200
    # a step that names no page counts as the latest: the lantern was paid for once
    assert "Coins: 2" in text_of(client.get(client.get("/play/lantern").headers["Location"]).get_data(as_text=True))
