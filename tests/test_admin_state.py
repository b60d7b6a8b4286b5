"""The author's side of state over HTTP: variables, conditions and effects in the forms, state problems in the
as-you-type check, conditional choices in the graph, previews with chosen values, Twine import and export reports."""

import html
import io
import re
import time

import pytest

from game.library import StoryLibrary
from game.prompts import compose
from tests.support import LANTERN_YAML
from tests.support import editor_state

LIT = {"lantern": True, "coins": 2}


@pytest.fixture
def lantern(stories_dir):
    (stories_dir / "lantern.yaml").write_text(LANTERN_YAML)
    return stories_dir


def revision_of(page):
    return re.search(r'name="revision" value="([0-9a-f]+)"', page).group(1)


@pytest.mark.slow
def test_the_settings_form_edits_the_variables(author, lantern):
    page = author.get("/admin/stories/lantern/settings").get_data(as_text=True)
    assert re.search(r'<textarea name="state"[^>]*>lantern = false\ncoins = 3\n</textarea>', page)
    form = {"csrf_token": author.token, "revision": revision_of(page), "title": "Lantern", "start": "hall",
            "characters": "", "state": 'lantern = false\ncoins: 5\nname = "Wren Ash"\n\nnote = 12 apples'}
    response = author.post("/admin/stories/lantern/settings", data=form)
    assert response.status_code == 303
    story = StoryLibrary(lantern).get("lantern")
    assert story.variables == {"lantern": False, "coins": 5, "name": "Wren Ash", "note": "12 apples"}
    again = author.get("/admin/stories/lantern/settings").get_data(as_text=True)
    assert "lantern = false\ncoins = 5\nname = Wren Ash\nnote = 12 apples\n</textarea>" in again
    # a name that cannot be a variable, and removing one that choices still use, are refused with the reason
    bad = author.post("/admin/stories/lantern/settings", data={**form, "revision": revision_of(again),
                                                               "state": "lantern = false\n9lives = 1"})
    assert bad.status_code == 422
    assert "state: line 2 (&#39;9lives = 1&#39;): a variable name is a letter" in bad.get_data(as_text=True)
    gone = author.post("/admin/stories/lantern/settings", data={**form, "revision": revision_of(again),
                                                                "state": "lantern = false"})
    assert gone.status_code == 422 and "unknown variable &#39;coins&#39;" in gone.get_data(as_text=True)


@pytest.mark.slow
def test_variables_added_to_a_story_without_any_go_before_the_slides(author, stories_dir):
    page = author.get("/admin/stories/lighthouse/settings").get_data(as_text=True)
    form = {"csrf_token": author.token, "revision": revision_of(page), "title": "The Lighthouse Keeper",
            "start": "shore", "characters": "keeper: an old keeper\nghost: a pale woman", "state": "torch = true"}
    assert author.post("/admin/stories/lighthouse/settings", data=form).status_code == 303
    text = (stories_dir / "lighthouse.yaml").read_text()
    assert "state:\n  torch: true\nslides:" in text
    assert "# The Lighthouse Keeper" in text  # the file's comments survive


@pytest.mark.slow
def test_the_slide_form_round_trips_conditions_hide_or_disable_and_effects(author, lantern):
    page = author.get("/admin/stories/lantern/slides/hall/edit").get_data(as_text=True)
    assert 'name="choice_if" value="not lantern"' in page
    assert '<textarea name="choice_set" rows="2" spellcheck="false" placeholder="lantern = true">lantern = true\n' \
           'coins = coins - 1\n</textarea>' in page
    rows = re.findall(r'<select name="choice_otherwise">(.*?)</select>', page, re.S)
    assert ['value="disable" selected' in row for row in rows] == [False, True, False, False, False]
    assert "Variables: <code>lantern</code>, <code>coins</code>" in page
    form = {"csrf_token": author.token, "revision": revision_of(page), "text": "Hall. Coins: {{ coins }}",
            "image": "a hall{% if lantern %} lit by a lantern{% endif %}",
            "choice_text": ["Take the lantern", "Go down", "Pay", "Sing"],
            "choice_to": ["hall", "cellar", "cellar", "__new__"], "choice_new": ["", "", "", "song"],
            "choice_if": ["not lantern", "lantern", "coins > 5", "coins  >=\n 1"],
            "choice_otherwise": ["hide", "disable", "hide", "disable"],
            "choice_set": ["lantern = true\ncoins = coins - 1", "", "",
                           'coins: coins - 1\nname = "x"\nlantern = false']}
    bad = author.post("/admin/stories/lantern/slides/hall/edit", data=form)
    assert bad.status_code == 422  # 'name' is not a variable of this story: nothing is saved, the reason is named
    refused = html.unescape(bad.get_data(as_text=True))
    assert "field 'choices[3].set.name': sets 'name', which is not declared" in refused
    form["choice_set"][3] = "coins: coins - 1\nlantern = false"
    assert author.post("/admin/stories/lantern/slides/hall/edit", data=form).status_code == 303
    hall = StoryLibrary(lantern).get("lantern").slides["hall"]
    summary = [(c.text, c.to, c.condition, c.otherwise, [(e.var, e.expression) for e in c.effects])
               for c in hall.choices]
    assert summary == [
        ("Take the lantern", "hall", "not lantern", "hide", [("lantern", "true"), ("coins", "coins - 1")]),
        ("Go down", "cellar", "lantern", "disable", []),
        ("Pay", "cellar", "coins > 5", "hide", []),
        ("Sing", "song", "coins >= 1", "disable", [("coins", "coins - 1"), ("lantern", "false")]),
    ]
    text = (lantern / "lantern.yaml").read_text()
    assert "        if: coins >= 1\n        otherwise: disable\n        set:\n          coins: coins - 1\n" \
           "          lantern: false\n" in text  # true/false stay YAML values, the rest expressions
    # what was saved is what the form shows next time
    again = author.get("/admin/stories/lantern/slides/hall/edit").get_data(as_text=True)
    assert 'name="choice_if" value="coins &gt;= 1"' in again
    assert "coins = coins - 1\nlantern = false\n</textarea>" in again


@pytest.mark.slow
def test_a_slide_form_from_another_version_of_the_page_is_refused(author, lantern):
    page = author.get("/admin/stories/lantern/slides/hall/edit").get_data(as_text=True)
    response = author.post("/admin/stories/lantern/slides/hall/edit", data={
        "csrf_token": author.token, "revision": revision_of(page), "text": "Hall.",
        "choice_text": ["Take the lantern"], "choice_to": ["hall"], "choice_new": [""]})  # no condition columns
    assert response.status_code == 422 and "choice rows do not line up" in response.get_data(as_text=True)
    assert "if: not lantern" in (lantern / "lantern.yaml").read_text()  # nothing was lost


@pytest.mark.slow
def test_state_problems_show_with_line_slide_and_field_as_you_type(author, lantern):
    text, _, _ = editor_state(author, "lantern")
    typo = text.replace("if: not lantern,", "if: not lanter,")
    typo = typo.replace("coins: coins - 1}", "coins: coins - 1, lamp: 1}")
    check = author.post("/admin/stories/lantern/check", data={"text": typo, "csrf_token": author.token})
    found = html.unescape(check.get_data(as_text=True))
    assert "line 9: slide <strong>hall</strong>, choices[0].if: unknown variable 'lanter' (did you mean 'lantern'?)" \
        in found
    assert "slide <strong>hall</strong>, choices[0].set.lamp: sets 'lamp', which is not declared" in found
    odd = text.replace("{{ coins }}", "{{ coins + lantern ~ }}")
    found = html.unescape(author.post("/admin/stories/lantern/check", data={"text": odd, "csrf_token": author.token})
                          .get_data(as_text=True))
    assert "line 6: slide <strong>hall</strong>, text: does not compile" in found


@pytest.mark.slow
def test_the_graph_draws_conditional_choices_apart_and_shows_their_condition(author, lantern):
    _, _, page = editor_state(author, "lantern")
    edges = re.findall(r'<line [^>]*class="([^"]+)"[^>]*><title>([^<]*)</title>', page)
    assert [(cls, html.unescape(title)) for cls, title in edges] == [
        ("edge conditional hide", "hall → hall: “Take the lantern”, only if not lantern (hidden otherwise); "
                                  "sets lantern = true, coins = coins - 1"),
        ("edge conditional disable", "hall → cellar: “Go down”, only if lantern (greyed out otherwise)"),
        ("edge conditional hide", "hall → cellar: “Pay”, only if coins > 5 (hidden otherwise)"),
        ("edge", "cellar → hall: “Up”"),
    ]
    assert '<text class="edge-label"' in page and ">if not lantern</text>" in page
    assert "3 choices with a condition" in page
    assert "“Go down”: only if <code>lantern</code>, shown greyed out otherwise" in html.unescape(page)


@pytest.mark.slow
def test_tuning_previews_a_slide_with_chosen_values(author, lantern):
    page = author.get("/admin/stories/lantern/slides/hall").get_data(as_text=True)
    assert '<select name="state.lantern">' in page and 'name="state.coins" type="number" step="any" value="3"' in page
    assert "lit by a lantern" not in re.search(r'<p class="prompt">(.*?)</p>', page, re.S).group(1)
    form = {"csrf_token": author.token, "image": "a hall{% if lantern %} lit by a lantern{% endif %}", "steps": "2",
            "sampler_name": "Euler", "scheduler": "automatic", "state.lantern": "true", "state.coins": "2",
            "count": "1"}
    shown = author.post("/admin/stories/lantern/slides/hall", data={**form, "action": "compose"})
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200 and "/admin/jobs/" not in page  # composed, nothing painted
    assert '<span class="part subject" title="subject">a hall lit by a lantern</span>' in page
    assert "<option selected>true</option>" in page  # the chosen values stay in the form
    painted = author.post("/admin/stories/lantern/slides/hall", data=form).get_data(as_text=True)
    key = re.search(r"/admin/jobs/([0-9a-f]{64})", painted).group(1)
    story = StoryLibrary(lantern).get("lantern")
    expected = compose(story, "hall", values=LIT).request.seed  # the lit hall's own seed
    assert expected != compose(story, "hall").request.seed
    for _ in range(600):
        card = author.get(f"/admin/jobs/{key}?slug=lantern&slide=hall").get_data(as_text=True)
        if "hx-trigger" not in card:
            break
        time.sleep(0.1)
    assert f'data-seed="{expected}"' in card
    bad = author.post("/admin/stories/lantern/slides/hall", data={**form, "state.coins": "lots"})
    assert bad.status_code == 422 and "state.coins: must be a number" in bad.get_data(as_text=True)


@pytest.mark.slow
def test_the_import_report_shows_what_was_dropped_with_the_storys_own_warnings(author):
    twee = (':: StoryTitle\nKey\n\n:: StoryData\n{"ifid": "D674C58C-DEFA-4F70-B7A2-27742230C0FD", "format": "Harlowe",'
            ' "start": "Start"}\n\n:: Start\n(set: $key to false)A locked door. (if: $key)[ [[Open the door->End]] ]'
            "<script>alert(1)</script>\n\n:: End\nDone.\n")
    response = author.post("/admin/stories/import", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(twee.encode()), "key.twee"), "csrf_token": author.token})
    page = html.unescape(response.get_data(as_text=True))
    assert response.status_code == 200 and '<a href="/admin/stories/key">Key</a>' in page
    assert "(key: 2 slides, 1 variable)" in page and "Check these (2):" in page
    assert "import: passage 'Start': a <script> (JavaScript) cannot be mapped; dropped" in page
    assert "line 8: slide <strong>Start</strong>, choices: every choice is closed when key is false" in page
    # a player who reaches that slide is told so, and offered a way on
    stuck = author.get("/play/key/Start").get_data(as_text=True)
    assert "No way on is open from here" in stuck and "Play again from the beginning" in stuck


@pytest.mark.slow
def test_the_editor_shows_what_a_twine_export_cannot_keep(author, lantern):
    _, _, page = editor_state(author, "lantern")
    panel = html.unescape(re.search(r'<div class="panel" id="twine-export">(.*?)</div>', page, re.S).group(1))
    assert 'href="/admin/stories/lantern/twee"' in panel
    assert "The export cannot keep everything (1):" in panel
    assert "slide 'hall': 'Go down' is hidden, not greyed out, while closed (harlowe has no disabled links)" in panel
    _, _, train = editor_state(author, "night-train")
    assert ("slide 'ending_never': its picture continues the picture of 'platform'; this rides in the passage's "
            "metadata, which importing this file here keeps but Twine itself drops") in html.unescape(train)
    author.post("/admin/stories", data={"title": "Small", "slug": "small", "csrf_token": author.token})
    _, _, plain = editor_state(author, "small")
    assert "Everything in this story has a place in the export." in plain
