"""Twine import (Twee 3, Twine 2 HTML) and Twee 3 export; the round trip keeps every slide, choice and image field."""

from pathlib import Path

import pytest

from game.story import dump_document
from game.story import load_story
from game.twine import TwineError
from game.twine import clean_text
from game.twine import export_twee
from game.twine import import_file
from game.twine import parse_links
from tests.support import STORIES
from tests.support import TWEE

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "twine-samples"



def test_twee_passages_become_slides_and_links_choices():
    [(data, warnings)] = import_file(TWEE, "cellar.twee")
    assert data["title"] == "The Cellar Door"
    assert data["start"] == "top_of_the_stairs"
    top = data["slides"]["top_of_the_stairs"]
    assert top["choices"] == [{"text": "Go down", "to": "Cellar"}, {"text": "Listen at the door", "to": "Cellar"},
                              {"text": "Leave", "to": "Outside"}]
    assert top["text"] == "You stand at the top of the cellar stairs. Your lamp flickers."
    assert set(data["slides"]) == {"top_of_the_stairs", "Cellar", "Outside"}  # the stylesheet is not a slide
    assert data["slides"]["Cellar"]["text"] == "Cold air. A rat."
    assert "slide 'top_of_the_stairs': link to 'Nowhere', which is not a passage; dropped" in warnings
    assert any("slide 'Cellar': story-format code removed (SugarCube macros" in w for w in warnings)
    assert "slide 'Outside': its navigation was story-format code, so it has no choices left" in warnings
    story = load_story(dump_document(data), "stories/cellar.yaml", "cellar")
    assert story.start == "top_of_the_stairs"


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


def test_format_code_is_stripped_and_named():
    assert clean_text("<% s.x = 1 %>Hello <%= s.x %>.") == ("Hello .", ["Snowman code"])
    text, removed = clean_text("x: 1\ny: 2\n--\nThe door opens.\n[if x]\nMore. {back link}")
    assert text == "The door opens.\n\nMore."
    assert removed == ["Chapbook vars section", "Chapbook modifiers", "Chapbook inserts"]


HTML = """<html><body><tw-storydata name="Fish &amp; Chips" startnode="2" format="SugarCube" ifid="X" hidden>
<style role="stylesheet" type="text/twine-css">a{}</style>
<tw-passagedata pid="1" name="Shop" tags="" position="100.5,200">The shop&#39;s door. [[Buy-&gt;Home]]</tw-passagedata>
<tw-passagedata pid="2" name="Home" tags="">You are home. [[Go out|Shop]]</tw-passagedata>
</tw-storydata></body></html>"""


def test_twine2_html_is_read_with_entities_and_startnode():
    [(data, warnings)] = import_file(HTML, "fish.html")
    assert data["title"] == "Fish & Chips"
    assert data["start"] == "Home"
    assert data["slides"]["Shop"] == {"text": "The shop's door.", "choices": [{"text": "Buy", "to": "Home"}]}


def test_not_a_twine_file_is_named():
    with pytest.raises(TwineError, match="no <tw-storydata> element found"):
        import_file("<html></html>", "page.html")
    with pytest.raises(TwineError, match="no passages found"):
        import_file("just some text", "notes.twee")


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
    assert back.slides == original.slides  # every slide: text, image, characters, choices, overrides


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the shared Twine samples are not beside this checkout")
@pytest.mark.parametrize("name", ["harlowe_lazerwalker_playfab-twine.twee", "plain_kulla_twine-to-github-pages-example.twee",
                                  "sugarcube_jiajunx31_cybersecurity-and-you.twee"])
def test_real_public_stories_import_into_valid_stories(name):
    [(data, warnings)] = import_file((SAMPLES / name).read_text(encoding="utf-8"), name)
    story = load_story(dump_document(data), name, "sample")
    assert len(story.slides) >= 3
    assert all(s.text for s in story.slides.values())
