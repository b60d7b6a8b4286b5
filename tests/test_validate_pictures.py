"""Picture checks: a story's and a slide's picture settings are checked by the painter's own rules, each problem
naming the file, line, slide and field (continuations: tests/test_continuations.py)."""

import pytest

from tests.support import GOOD
from tests.support import story_errors


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (
            "  steps: 20",
            "  steps: 500",
            "stories/t.yaml, line 4, field 'style.steps': must be between 1 and 150, got 500",
        ),
        ("  steps: 20", "  width: 500", "field 'style.width': must be a multiple of 8, got 500"),
        ("  steps: 20", "  height: 32", "field 'style.height': must be between 64 and 2048, got 32"),
        ("  steps: 20", "  cfg_scale: 99", "field 'style.cfg_scale': must be between 0 and 30"),
        ("  steps: 20", "  seed: -5", "field 'style.seed': must be a whole number from 0"),
        ("  steps: 20", "  sampler_name: Eulr", "field 'style.sampler_name': unknown sampler 'Eulr'"),
        (
            "  steps: 20",
            "  sampler_name: DDIM\n  scheduler: karras",
            "field 'style.scheduler': 'karras' is not available",
        ),
        (
            "    image: a shore",
            "    image: a shore\n    style: {steps: 0}",
            "slide 'a', field 'style.steps': must be between 1",
        ),
    ],
)
def test_broken_picture_settings_name_what_is_wrong(before, after, expected):
    assert before in GOOD
    found = story_errors(GOOD.replace(before, after))
    assert any(expected in p for p in found), found
