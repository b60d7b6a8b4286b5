"""Twine import (Twee 3, Twine 2 HTML) and Twee 3 export; the round trip keeps every slide, choice and image field."""

import dataclasses
from pathlib import Path

import pytest

from game.story import dump_document
from game.story import load_story
from game.twine import TwineError
from game.twine import export_report
from game.twine import export_twee
from game.twine import import_file
from game.twine import parse_links
from tests.support import LANTERN
from tests.support import STORIES

SAMPLES = next((p / "shared" / "twine-samples" for p in Path(__file__).resolve().parents
                if (p / "shared" / "twine-samples").is_dir()), Path("/nonexistent"))

@pytest.mark.parametrize(
    ("link", "expected"),
    [("[[Target]]", ("Target", "Target")), ("[[Go->Target]]", ("Go", "Target")), ("[[Target<-Go]]", ("Go", "Target")),
     ("[[Go|Target]]", ("Go", "Target")), ("[[Go|Target][$x to 1]]", ("Go", "Target")),
     ("[[A->B->C]]", ("A->B", "C")), ("[[Go->]]", ("Go->", "Go->"))],
)
def test_link_forms_follow_twines_rules(link, expected):
    assert parse_links(link) == [expected]


def test_external_links_are_not_choices():
    assert parse_links("[[Docs->https://example.org]]") == []


HTML = """<html><body><tw-storydata name="Fish &amp; Chips" startnode="2" format="SugarCube" ifid="X" hidden>
<style role="stylesheet" type="text/twine-css">a{}</style>
<tw-passagedata pid="1" name="Shop" tags="" position="100.5,200">The shop&#39;s door. [[Buy-&gt;Home]]</tw-passagedata>
<tw-passagedata pid="2" name="Home" tags="">You are home. [[Go out|Shop]]</tw-passagedata>
</tw-storydata></body></html>"""


def test_twine2_html_is_read_with_entities_and_startnode():
    [(data, _warnings)] = import_file(HTML, "fish.html")
    assert data["title"] == "Fish & Chips"
    assert data["start"] == "Home"
    assert data["slides"]["Shop"] == {"text": "The shop's door.", "choices": [{"text": "Buy", "to": "Home"}],
                                    "twine": {"position": "100.5,200"}}
    assert data["twine"] == {"ifid": "X", "format": "SugarCube"}


def test_not_a_twine_file_is_named():
    with pytest.raises(TwineError, match="no <tw-storydata> element found"):
        import_file("<html></html>", "page.html")
    with pytest.raises(TwineError, match="no passages found"):
        import_file("just some text", "notes.twee")




def slides_of(text, name="story.twee"):
    [(data, warnings)] = import_file(text, name)
    story = load_story(dump_document(data), name, "s")  # every import is a valid story of ours
    return data, story, warnings


def choices_of(story, sid):
    return [(c.text, c.to, c.condition, {e.var: e.expression for e in c.effects}) for c in story.slides[sid].choices]


HARLOWE = """\
:: StoryData
{"ifid": "D674C58C-DEFA-4F70-B7A2-27742230C0FC", "format": "Harlowe", "format-version": "3.3.8", "start": "Gate"}

:: Init [startup]
(set: $coins to 3)(set: $name to "Wren")

:: Gate [outside] {"position":"100,100","size":"100,100"}
(set: $lamp to true)''Welcome'', $name. You have (print: $coins) coins.
(if: $lamp)[Your lamp //flickers//.](else:)[It is dark.]
The path leads to the [[old mill->Mill]] beyond the river. (Note: the river is cold.)
<!-- [[Secret]] -->
(link-goto: "Walk to the tower", "Tower")
(link: "Pay the ferryman")[(set: $coins to it - 1)(set: $paid to true)(goto: "Ferry")]
(if: $coins > 2)[(link-goto: "Bribe the guard", "Tower")]
(either: "a", "b")

:: Mill
The mill wheel turns. (display: "Wind")
(click-goto: "Go home", "Gate")

:: Wind
A gust of wind.

:: Tower
(if: $paid)[The ferryman waves.](else-if: $coins is 0)[You are broke.]
[[Gate]]

:: Ferry
Water all around. (set: $coins to $coins - 1)
[[Tower]]

:: Secret
Nobody comes here.
"""


def test_harlowe_macros_become_state_choices_and_conditional_text():
    data, story, warnings = slides_of(HARLOWE)
    assert story.variables == {"coins": 3, "name": "Wren", "lamp": True, "paid": False}
    gate = story.slides["Gate"]
    assert gate.text == ("**Welcome**, {{ name }}. You have {{ coins }} coins.\n"
                         "{% if lamp %}Your lamp *flickers*.{% else %}It is dark.{% endif %}\n"
                         "The path leads to the old mill beyond the river. (Note: the river is cold.)")
    assert choices_of(story, "Gate") == [
        ("old mill", "Mill", None, {}),
        ("Walk to the tower", "Tower", None, {}),
        ("Pay the ferryman", "Ferry", None, {"paid": "true", "coins": "coins - 1"}),  # Ferry's own (set:) on arrival
        ("Bribe the guard", "Tower", "coins > 2", {}),
    ]
    assert "Secret" not in [c.to for c in gate.choices]  # a link inside an HTML comment is not a choice
    assert story.slides["Mill"].text == "The mill wheel turns. A gust of wind."
    assert choices_of(story, "Mill") == [("Go home", "Gate", None, {"lamp": "true"})]
    assert story.slides["Tower"].text == ("{% if paid %}The ferryman waves.{% elif coins == 0 %}You are broke."
                                          "{% endif %}")
    assert "passage 'Gate': (either:) cannot be mapped; dropped" in warnings
    assert any("passage 'Gate'" in w and "(set:) '$coins to it - 1' cannot be kept" in w for w in warnings)
    assert data["slides"]["Gate"]["twine"] == {"tags": ["outside"], "position": "100,100", "size": "100,100"}
    assert data["twine"] == {"ifid": "D674C58C-DEFA-4F70-B7A2-27742230C0FC", "format": "Harlowe",
                             "format-version": "3.3.8"}


SUGARCUBE = """\
:: StoryData
{"ifid": "5A1C7A52-3F5B-4D0B-9E8E-6C7C1A1E2B3C", "format": "SugarCube", "start": "Lab"}

:: StoryInit
<<set $score to 0, $who to "Ada">>
<<set $points = {math: 0, art: 1}>>

:: Lab [nobr]
/* [[Hidden passage]] */
Welcome to the lab, $who. Recall that a_{n} = 2a_{n-1} and _word_ stays.
<br><br>
Answer: [[one|Check][$score to 1]] or [[two|Check][$score to 2]].
<<link "Ask the professor" "Office">><</link>>
<<link "Guess">><<set $points.math += 1>><<goto "Check">><</link>>
<<if $score gte 1>>You answered before.<<elseif $score is 0>>First try.<<else>>Odd.<</if>>
<<script>>alert("hi")<</script>>
<<include "Footer">>

:: Check
<<if $score eq 2>>''Right!''<<set $points.math += 1>><<else>>//Wrong.//<</if>>
Maths: <<print $points.math>>. [[Back to the lab|Lab]]

:: Office
The professor is out. <<back>>

:: Footer
(c) the lab
"""


def test_sugarcube_macros_setters_and_init_become_state():
    data, story, warnings = slides_of(SUGARCUBE)
    assert story.variables == {"score": 0, "who": "Ada", "points_math": 0, "points_art": 1}
    lab = story.slides["Lab"]
    assert lab.text.startswith("Welcome to the lab, {{ who }}. Recall that a_{n} = 2a_{n-1} and _word_ stays.\n\n"
                               "Answer: one or two.")
    assert "{% if score >= 1 %}You answered before.{% elif score == 0 %}First try.{% else %}Odd.{% endif %}" in lab.text
    assert lab.text.endswith("(c) the lab")
    check_effect = "(points_math + (1)) if (score == 2) else points_math"
    guess_effect = "((points_math + (1)) + (1)) if (score == 2) else (points_math + (1))"  # its own += 1, then Check's
    assert choices_of(story, "Lab") == [
        ("one", "Check", None, {"score": "1", "points_math": check_effect}),
        ("two", "Check", None, {"score": "2", "points_math": check_effect}),
        ("Ask the professor", "Office", None, {}),
        ("Guess", "Check", None, {"points_math": guess_effect}),
    ]
    assert "Hidden passage" not in str(data)
    assert story.slides["Check"].text == ("{% if score == 2 %}**Right!**{% else %}*Wrong.*{% endif %}\n"
                                          "Maths: {{ points_math }}.")
    assert "passage 'Lab': JavaScript (<<script>>) cannot be mapped; dropped" in warnings
    assert "passage 'Office': <<back>> is dropped: the play page has its own Back" in warnings


def test_a_choice_applies_sets_in_order_when_played():
    from game import engine
    _, story, _ = slides_of(SUGARCUBE)
    state = engine.choose(story, engine.start(story), "Lab", 1)  # "two": $score to 2, then Check's own set
    assert engine.values(story, state)["points_math"] == 1
    assert engine.view(story, state).text.startswith("**Right!**")
    state = engine.choose(story, engine.start(story), "Lab", 0)
    assert engine.view(story, state).text.startswith("*Wrong.*")


CHAPBOOK = """\
:: StoryData
{"ifid": "0C4B1B0E-8F0C-4B6E-9E7A-6D2F3A1B9C8D", "format": "Chapbook", "start": "Kitchen"}

:: Kitchen
hungry: true
visits: 1
--
The kitchen smells of _fresh bread_ and **coffee**. (Note: the oven is on.) See a_{n}.

[if hungry]
You could eat {visits} loaves.
{link to: 'Pantry', label: 'Raid the pantry'}

[else]
You are full.

[continue]
{embed passage: 'Clock'}
{back link}

[JavaScript]
engine.state.set('x', 1);

:: Pantry
hungry: false
--
Crumbs everywhere. [[Back to the kitchen->Kitchen]]

:: Clock
The clock ticks.
"""


def test_chapbook_vars_modifiers_and_inserts():
    _, story, warnings = slides_of(CHAPBOOK)
    assert story.variables == {"hungry": True, "visits": 1}
    assert story.slides["Kitchen"].text == (
        "The kitchen smells of *fresh bread* and **coffee**. (Note: the oven is on.) See a_{n}.\n\n"
        "{% if hungry %}\nYou could eat {{ visits }} loaves.\n\n{% else %}\nYou are full.\n\n{% endif %}\n"
        "The clock ticks.")
    assert choices_of(story, "Kitchen") == [("Raid the pantry", "Pantry", "hungry", {"hungry": "false"})]
    assert choices_of(story, "Pantry") == [("Back to the kitchen", "Kitchen", None, {"hungry": "true", "visits": "1"})]
    assert "passage 'Kitchen': [javascript] code cannot be mapped; dropped" in warnings
    assert any("{back link} is dropped" in w for w in warnings)


SNOWMAN = """\
:: StoryData
{"ifid": "9E1F2C3D-4B5A-6978-8A9B-0C1D2E3F4A5B", "format": "Snowman", "start": "Dock"}

:: Dock
<% s.boat = false; s.fish = 2; %>
The _tide_ is out. You have <%= s.fish %> fish.
<% if (s.boat) { %>Your boat bobs.<% } else { %>No boat yet.<% } %>
[Buy a boat](Market) or [[Wait->Dock]]. <% window.open('https://example.org') %>

:: Market
<% s.boat = true; s.fish -= 1; %>
The market is busy. <% story.show('Dock') %>
"""


def test_snowman_code_and_markdown_links():
    _, story, warnings = slides_of(SNOWMAN)
    assert story.variables == {"boat": False, "fish": 2}
    assert story.slides["Dock"].text == ("The *tide* is out. You have {{ fish }} fish.\n"
                                         "{% if boat %}Your boat bobs.{% else %}No boat yet.{% endif %}\n"
                                         "Buy a boat or Wait.")
    assert choices_of(story, "Dock") == [("Buy a boat", "Market", None, {"boat": "true", "fish": "fish - (1)"}),
                                         ("Wait", "Dock", None, {"boat": "false", "fish": "2"})]
    assert choices_of(story, "Market") == [("Continue", "Dock", None, {"boat": "false", "fish": "2"})]
    assert any("passage 'Dock': JavaScript 'window.open" in w for w in warnings)


def test_markup_of_other_formats_survives_in_prose():
    text = ":: StoryData\n{\"format\": \"SugarCube\"}\n\n:: A\nKeep _word_ and a_{n} and {{ not a template }}.\n"
    _, story, _ = slides_of(text)
    assert story.slides["A"].text == "Keep _word_ and a_{n} and {{ '{' }}{ not a template }}."
    from game import engine
    assert engine.view(story, engine.start(story)).text == "Keep _word_ and a_{n} and {{ not a template }}."


def test_non_ascii_passage_names_keep_readable_ids():
    text = ":: Café de Flore\n[[Дорога домой]] [[北京]]\n\n:: Дорога домой\nThe road.\n\n:: 北京\nThe city.\n"
    _data, story, _ = slides_of(text)
    assert set(story.slides) == {"cafe_de_flore", "doroga_domoy", "beijing"}
    assert story.slides["doroga_domoy"].twine["name"] == "Дорога домой"


def test_export_escapes_twee_syntax_and_round_trips():
    story = load_story("""\
title: Escapes
start: a
slides:
  a:
    text: |
      First line.
      :: not a passage header
    choices:
      - {text: "left -> right", to: room_1}
      - {text: "odd ] label", to: room_1}
  room_1:
    text: A room.
    twine: {name: "room [1]", tags: ["dark"]}
""", "s", "esc")
    twee = export_twee(story)
    assert ":: room \\[1\\] [dark] {" in twee
    [(data, _warnings)] = import_file(twee, "esc.twee")
    back = load_story(dump_document(data), "back", "esc")
    assert back.slides["a"].text == "First line.\n:: not a passage header"
    assert [(c.text, c.to) for c in back.slides["a"].choices] == [
        ("left -> right", "room_1"),
        ("odd ] label", "room_1"),
    ]
    assert back.slides["room_1"].twine["name"] == "room [1]" and back.slides["room_1"].twine["tags"] == ["dark"]


@pytest.mark.parametrize("fmt", ["Harlowe", "SugarCube"])
def test_state_exports_as_the_formats_macros_and_comes_back(fmt):
    import dataclasses

    story = dataclasses.replace(LANTERN, twine={"format": fmt})
    twee, warnings = export_report(story)
    assert ("(set: $lantern to false)" if fmt == "Harlowe" else "<<set $lantern to false>>") in twee
    assert ("(if: not $lantern)[(link: " if fmt == "Harlowe" else "<<if !$lantern>><<link ") in twee
    assert warnings == [(f"slide 'hall': 'Go down' is hidden, not greyed out, while closed ({fmt.lower()} has no "
                        "disabled links)")]
    [(data, import_warnings)] = import_file(twee, "lantern.twee")
    back = load_story(dump_document(data), "back", "lantern")
    assert import_warnings == []
    assert back.variables == story.variables
    assert back.slides["hall"].text == story.slides["hall"].text
    assert back.slides["hall"].image == story.slides["hall"].image
    for mine, theirs in zip(story.slides["hall"].choices, back.slides["hall"].choices, strict=True):
        assert (mine.text, mine.to, mine.condition, mine.effects) == (theirs.text, theirs.to, theirs.condition,
                                                                      theirs.effects)


def test_a_twine_story_keeps_names_tags_positions_ifid_and_format_through_export():
    data, story, _ = slides_of(HARLOWE)
    twee = export_twee(story)
    assert '"ifid": "D674C58C-DEFA-4F70-B7A2-27742230C0FC"' in twee and '"format": "Harlowe"' in twee
    assert ':: Gate [outside] {"position": "100,100"' in twee
    [(again, _)] = import_file(twee, "again.twee")
    assert again["twine"] == data["twine"]
    assert set(again["slides"]) == set(data["slides"])
    for sid, slide in data["slides"].items():  # what Twine had is kept; passages without a position now have one
        assert slide.get("twine", {}).items() <= again["slides"][sid]["twine"].items()
    assert load_story(dump_document(again), "again", "s").variables == story.variables


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(STORIES.glob("*.yaml")), ids=lambda p: p.name)
def test_round_trip_ours_to_twee_to_ours_keeps_everything(path):
    original = load_story(path.read_text(), str(path), path.stem)
    twee = export_twee(original)
    assert twee.startswith(":: StoryTitle\n" + original.title)
    [(data, warnings)] = import_file(twee, f"{path.stem}.twee")
    back = load_story(dump_document(data), "round-trip", path.stem)
    assert warnings == []
    assert back.title == original.title and back.start == original.start
    assert back.style == original.style and back.characters == original.characters
    # every slide: text, image, characters, choices, overrides (plus the Twine position it now has)
    assert {k: dataclasses.replace(s, twine={}) for k, s in back.slides.items()} == original.slides


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared Twine samples are not beside this checkout")
@pytest.mark.parametrize(("name", "reachable", "conditional"),
                         [("harlowe_lazerwalker_playfab-twine.twee", 7, 0),
                          ("plain_kulla_twine-to-github-pages-example.twee", 8, 0),
                          ("sugarcube_jiajunx31_cybersecurity-and-you.twee", 28, 3)])
def test_real_public_stories_import_into_valid_stories(name, reachable, conditional):
    _data, story, _warnings = slides_of((SAMPLES / name).read_text(encoding="utf-8"), name)
    assert len(story.parents()) >= reachable
    assert sum(1 for s in story.slides.values() for c in s.choices if c.condition) >= conditional
    for slide in story.slides.values():
        assert slide.text and "<<" not in slide.text and "<script" not in slide.text and "<br" not in slide.text


@pytest.mark.parametrize("macro", ["goto", "include"])
def test_a_sugarcube_goto_or_include_of_a_web_address_is_dropped_with_a_warning(macro):
    text = f':: StoryData\n{{"format": "SugarCube"}}\n\n:: A\nHello. <<{macro} [[https://example.org]]>>\n'
    data, _story, warnings = slides_of(text)  # raised IndexError before
    assert data["slides"]["A"]["text"] == "Hello."
    assert f"passage 'A': <<{macro} [[https://example.org]]>> leads to a web page, not a passage; dropped" in warnings
