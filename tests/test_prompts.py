"""The prompt composer: parts, context carried over, the 75-token budget, seeds."""


from game.prompts import compose
from game.prompts import derive_seed
from game.prompts import describe_text
from game.prompts import estimate_tokens
from game.prompts import picture_shapes
from game.story import load_story
from tests.support import STORIES

LIGHTHOUSE = load_story((STORIES / "lighthouse.yaml").read_text(), "stories/lighthouse.yaml", "lighthouse")
TRAIN = load_story((STORIES / "night-train.yaml").read_text(), "stories/night-train.yaml", "night-train")


def test_prompt_has_subject_then_characters_then_style():
    composition = compose(LIGHTHOUSE, "cliff_path")
    prompt = composition.request.prompt
    assert prompt.startswith("a narrow cliff path in heavy rain at night")
    assert prompt.index("grey beard") < prompt.index("oil painting")
    assert composition.request.negative_prompt == LIGHTHOUSE.style.negative_prompt
    assert (composition.request.steps, composition.request.sampler_name, composition.request.scheduler) == (
        20,
        "DPM++ 2M",
        "karras",
    )


def test_a_slide_without_image_is_described_from_its_text_plus_the_earlier_setting():
    composition = compose(TRAIN, "soup")
    roles = [p.role for p in composition.parts]
    assert roles[0] == "subject"
    assert composition.parts[0].text.startswith("It tastes exactly like your grandmother's kitchen")
    assert "setting" in roles  # the dining car it is reached from
    assert "dining car" in composition.request.prompt


def test_describe_text_keeps_opening_sentences_and_strips_quotes():
    assert describe_text('"Hello," she said. The sea was grey. ' + "word " * 40) == "Hello, she said. The sea was grey"


def test_prompt_fits_the_budget_and_reports_what_was_dropped():
    composition = compose(TRAIN, "soup", budget=40)
    assert composition.tokens <= 40
    assert composition.dropped
    assert not composition.measured
    kept_roles = {p.role for p in composition.parts}
    dropped_roles = [p.role for p in composition.dropped]
    assert "subject" in kept_roles
    assert dropped_roles[0] == "setting"  # least important goes first


def test_a_subject_too_long_on_its_own_is_cut_and_reported():
    composition = compose(LIGHTHOUSE, "shore", budget=8)
    assert composition.tokens <= 8
    assert [p.role for p in composition.parts] == ["subject"]
    assert composition.dropped[-1].role == "subject"


def test_measured_with_the_model_tokenizer_when_loaded(backend):
    composition = compose(LIGHTHOUSE, "lamp_room", backend.count_tokens)
    assert composition.measured
    assert composition.tokens == backend.count_tokens(composition.request.prompt)
    assert composition.tokens <= 75


def test_estimate_errs_high():
    assert estimate_tokens("a lighthouse, moody light") >= 5


def test_every_shipped_slide_composes_within_the_window():
    for story in (LIGHTHOUSE, TRAIN):
        for slide_id in story.slides:
            assert compose(story, slide_id).tokens <= 75


def test_seeds_are_derived_per_slide_and_stable():
    a, b = compose(LIGHTHOUSE, "shore").request.seed, compose(LIGHTHOUSE, "wreckage").request.seed
    assert a != b
    assert a == derive_seed(1234, "shore") == compose(LIGHTHOUSE, "shore").request.seed


def test_an_explicit_slide_seed_is_used_as_is():
    text = (
        (STORIES / "lighthouse.yaml")
        .read_text()
        .replace(
            "    choices:\n      - text: Climb the cliff path toward",
            "    style: {seed: 99}\n    choices:\n      - text: Climb the cliff path toward",
            1,
        )
    )
    story = load_story(text, "s", "lighthouse")
    assert compose(story, "shore").request.seed == 99


def test_composition_does_not_depend_on_slides_the_player_never_passes():
    text = (STORIES / "lighthouse.yaml").read_text()
    assert "a flooded engine room" not in text
    changed = load_story(
        text.replace(
            "  wreckage:\n", "  zzz_unrelated:\n    text: x\n    image: a flooded engine room\n  wreckage:\n", 1
        ),
        "s",
        "lighthouse",
    )
    assert compose(changed, "stairs") == compose(LIGHTHOUSE, "stairs")
    assert compose(changed, "stairs") != compose(TRAIN, next(iter(TRAIN.slides)))


def test_picture_shapes_lists_the_sizes_the_stories_paint_most_used_first():
    assert picture_shapes([LIGHTHOUSE, TRAIN]) == [(512, 512, False)]
    text = (
        (STORIES / "lighthouse.yaml")
        .read_text()
        .replace(
            "    choices:\n      - text: Climb the cliff path toward",
            "    style: {width: 768, height: 512, tiling: true}\n    choices:\n"
            "      - text: Climb the cliff path toward",
            1,
        )
    )
    wide = load_story(text, "s", "lighthouse")
    assert picture_shapes([wide, TRAIN]) == [(512, 512, False), (768, 512, True)]
    assert picture_shapes([wide], limit=1) == [(512, 512, False)]
    assert picture_shapes([]) == []


def test_a_description_that_depends_on_state_gets_its_own_prompt_and_seed():
    story = load_story("""\
title: Lantern
start: hall
state: {lantern: false}
style: {seed: 7}
slides:
  hall:
    text: The hall.
    image: "a hall{% if lantern %}, lit by a lantern{% endif %}"
    choices: [{text: On, to: cellar}]
  cellar:
    text: "{% if lantern %}Shadows dance.{% else %}Darkness.{% endif %}"
""", "s", "lantern")
    dark, lit = compose(story, "hall"), compose(story, "hall", values={"lantern": True})
    assert (dark.request.prompt, lit.request.prompt) == ("a hall", "a hall, lit by a lantern")
    assert dark.request.seed == derive_seed(7, "hall", "a hall")
    assert lit.request.seed == derive_seed(7, "hall", "a hall, lit by a lantern") != dark.request.seed
    assert compose(story, "hall", values={"lantern": False}) == dark  # same description: same picture, same cache entry
    # a slide painted from its text, with the carried-over setting of the slide before it
    assert (
        compose(story, "cellar", values={"lantern": True}).request.prompt == "Shadows dance, a hall, lit by a lantern"
    )
    assert compose(story, "cellar").request.prompt == "Darkness, a hall"
