"""Compose the picture request for a slide.

The prompt is built from parts, in this order: the slide's subject (its ``image`` line, or, when it has
none, a description taken from its text), the characters present, the setting carried over from the slide
it is reached from (for slides without an ``image``, which is exactly the context old setups lost), and the
story's style.  CLIP reads at most 75 tokens (77 with the start and end markers); when the parts are longer,
the least important are dropped first and reported.  Everything here depends on the slide and, where its
description has conditional parts, on the story's variables (rendered first), never on the player's path: every
player with the same description gets the same picture, with its own seed derived from the story seed, the
slide and the rendered description (one player's picture is everyone's cache hit).

A slide whose ``image`` has ``from: <slide>`` continues that slide's picture (img2img: same place, new moment): its
composition carries the source slide's, composed with the same values, so the pair is as deterministic as one
picture; `pictures` turns it into the requests to paint, sources first, each continuation naming the picture it
starts from by its cache key.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from game import expressions as ex
from game import state as st
from game.story import DEFAULT_STRENGTH
from game.story import Story
from inference.request import GenerationRequest

CROP_AND_RESIZE = 1  # A1111's resize_mode: a source of another shape is cropped to the continuation's, not stretched

TOKEN_BUDGET = 75  # CLIP's 77-token window less the start and end tokens
DEFAULT_SEED = 0
SUBJECT, CHARACTER, SETTING, STYLE = "subject", "character", "setting", "style"
_SENTENCE = re.compile(r"(?<=[.!?…])\s+")
_WORDISH = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")

TokenCounter = Callable[[str], "int | None"]


@dataclass(frozen=True)
class PromptPart:
    """One comma-separated piece of the prompt, with where it came from and how much it matters."""

    text: str
    role: str
    priority: int


@dataclass(frozen=True)
class Composition:
    """The request for a slide, and how its prompt was put together.

    Args:
        request (`GenerationRequest`): what the painter gets.
        parts (`tuple[PromptPart]`): the parts kept, in prompt order.
        dropped (`tuple[PromptPart]`): the parts left out to fit the token budget.
        tokens (`int`): tokens in the final prompt.
        budget (`int`): the token budget (75).
        measured (`bool`): True when counted with the model's tokenizer, False when estimated.
        slide (`str`): the slide composed.
        source (`Composition`, *optional*): for a continuation, the composition of the slide whose picture it is
            painted from (with the same values).  ``request`` then has the img2img fields (``denoising_strength``,
            ``resize_mode``) but not yet ``init_from``, the source picture's cache key, which only the generation
            service can compute: paint it through `pictures`, never on its own.
    """

    request: GenerationRequest
    parts: tuple[PromptPart, ...]
    dropped: tuple[PromptPart, ...]
    tokens: int
    budget: int
    measured: bool
    slide: str = ""
    source: Composition | None = None


def estimate_tokens(text: str) -> int:
    """Estimate CLIP tokens without a tokenizer; errs high so that nothing is silently cut by CLIP."""
    return sum(1 if not piece.isalnum() else max(1, math.ceil(len(piece) / 6)) for piece in _WORDISH.findall(text))


def derive_seed(base: int, slide_id: str, description: str | None = None) -> int:
    """Return the seed of a slide: a stable hash of the story's base seed and the slide id (and, for a slide whose
    description depends on the story's variables, the rendered description)."""
    key = f"{base}:{slide_id}" if description is None else f"{base}:{slide_id}:{description}"
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "big")


def describe_text(text: str, max_words: int = 30) -> str:
    """Turn a slide's prose into a picture description: its opening sentences, quotes and markup removed."""
    plain = re.sub(r"[*_`#>\"“”]", "", " ".join(text.split()))
    words: list[str] = []
    for sentence in _SENTENCE.split(plain):
        sentence_words = sentence.split()
        if words and len(words) + len(sentence_words) > max_words:
            break
        words.extend(sentence_words)
    return " ".join(words[:max_words]).rstrip(".!?… ")


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def setting_for(story: Story, slide_id: str, values: Mapping[str, ex.Value] | None = None) -> str | None:
    """The ``image`` of the nearest slide before this one (on the shortest way from the start) that has one,
    rendered with ``values`` (the starting values when None)."""
    parents = story.parents()
    current = parents.get(slide_id)
    while current is not None:
        if story.slides[current].image:
            return _render(story, story.slides[current].image, values)
        current = parents.get(current)
    return None


def _render(story: Story, source: str | None, values: Mapping[str, ex.Value] | None) -> str:
    return st.render(story.sandbox, source or "", st.normalize(story.variables, values))


def depends_on_state(story: Story, slide_id: str) -> bool:
    """Whether the slide's picture description (its image, or its text when it has none, or the carried-over
    setting) has conditional parts or printed values."""
    slide = story.slides[slide_id]
    sources: list[str | None] = [slide.image] if slide.image else [slide.text]
    if not slide.image:
        current = story.parents().get(slide_id)
        while current is not None and not story.slides[current].image:
            current = story.parents().get(current)
        if current is not None:
            sources.append(story.slides[current].image)
    return any(story.sandbox.is_template(s) for s in sources)


def varying_pictures(story: Story, slide_id: str) -> list[str]:
    """The slides, of this one and those whose pictures it continues (nearest first), whose picture descriptions
    depend on the story's variables: the slide's picture changes with them when this is not empty (a continuation
    of a picture that changes changes with it, even when its own description does not)."""
    return [s for s in [slide_id, *story.sources(slide_id)] if depends_on_state(story, s)]


def prompt_parts(story: Story, slide_id: str, values: Mapping[str, ex.Value] | None = None) -> list[PromptPart]:
    """The candidate parts of a slide's prompt, in prompt order, before any are dropped."""
    slide = story.slides[slide_id]
    spec = story.style.merged(slide.style)
    parts: list[PromptPart] = []
    image = _render(story, slide.image, values) if slide.image else None
    if image:
        parts += [PromptPart(p, SUBJECT, 100 if i == 0 else 90 - i) for i, p in enumerate(_split(image))]
    else:
        parts.append(PromptPart(describe_text(_render(story, slide.text, values)), SUBJECT, 100))
    for i, name in enumerate(slide.characters):
        parts.append(PromptPart(story.characters[name], CHARACTER, 80 - i))
    if not slide.image:
        setting = setting_for(story, slide_id, values)
        if setting:
            parts += [PromptPart(p, SETTING, 50 - i) for i, p in enumerate(_split(setting))]
    parts += [PromptPart(p, STYLE, 70 - i) for i, p in enumerate(_split(spec.prompt))]
    return parts


class _TokenMeter:
    """Counts the tokens of a prompt made of parts with the model's tokenizer, estimating them when there is none or
    it returns None; ``measured`` stays True only while every count was the tokenizer's."""

    def __init__(self, count_tokens: TokenCounter | None):
        self.count_tokens = count_tokens
        self.measured = True

    def __call__(self, parts: list[PromptPart]) -> int:
        text = ", ".join(p.text for p in parts)
        value = self.count_tokens(text) if self.count_tokens is not None else None
        if value is None:
            self.measured = False
            return estimate_tokens(text)
        return value


def fit_prompt(parts: list[PromptPart], budget: int,
               count: Callable[[list[PromptPart]], int]) -> tuple[list[PromptPart], list[PromptPart], int]:
    """The parts kept (in prompt order), those dropped (in the order they were) and the kept prompt's tokens: the
    least important part (the later one on ties) is dropped until the prompt fits, never the main subject (the first
    part); a subject too long on its own then loses its last words."""
    kept = list(parts)
    dropped: list[PromptPart] = []
    tokens = count(kept)
    while tokens > budget and len(kept) > 1:
        victim = min(kept[1:], key=lambda p: (p.priority, -kept.index(p)))
        kept.remove(victim)
        dropped.append(victim)
        tokens = count(kept)
    if tokens > budget:
        words = kept[0].text.split()
        while len(words) > 1 and count([PromptPart(" ".join(words), SUBJECT, 100)]) > budget:
            words.pop()
        cut = kept[0].text[len(" ".join(words)):].strip()
        dropped.append(PromptPart(cut, SUBJECT, 100))
        kept[0] = PromptPart(" ".join(words), SUBJECT, 100)
        tokens = count(kept)
    return kept, dropped, tokens


def slide_seed(story: Story, slide_id: str, variant: str | None) -> int:
    """The seed of a slide's picture: the slide's own seed as it is, -1 (random) when the story asks for it,
    otherwise derived from the story seed, the slide id and ``variant`` (its rendered description, when it depends
    on the story's variables)."""
    slide = story.slides[slide_id]
    spec = story.style.merged(slide.style)
    if slide.style.seed is not None:
        return slide.style.seed
    if spec.seed == -1:
        return -1
    return derive_seed(spec.seed if spec.seed is not None else DEFAULT_SEED, slide_id, variant)


def compose(story: Story, slide_id: str, count_tokens: TokenCounter | None = None,
            budget: int = TOKEN_BUDGET, values: Mapping[str, ex.Value] | None = None) -> Composition:
    """Build the GenerationRequest for one slide, fitting the prompt into CLIP's window.

    ``count_tokens`` is the loaded model's tokenizer (see ``Backend.count_tokens``); without one, or while it
    returns None, tokens are estimated.  ``values`` are the player's variables (``engine.values``; the story's
    starting values when None): a description with conditional parts is rendered with them and gets its own seed.
    """
    slide = story.slides[slide_id]
    parts = prompt_parts(story, slide_id, values)
    variant = ", ".join(p.text for p in parts if p.role in (SUBJECT, SETTING)) if depends_on_state(story, slide_id) \
        else None
    meter = _TokenMeter(count_tokens)
    kept, dropped, tokens = fit_prompt(parts, budget, meter)
    seed = slide_seed(story, slide_id, variant)
    # A continuation: its source composed with the same values.
    source = compose(story, slide.source, count_tokens, budget, values) if slide.source is not None else None
    request = slide_request(story, slide_id, ", ".join(p.text for p in kept), seed, source)
    return Composition(request, tuple(kept), tuple(dropped), tokens, budget, meter.measured, slide_id, source)


def slide_request(story: Story, slide_id: str, prompt: str, seed: int, source: Composition | None) -> GenerationRequest:
    """The request for a slide's picture: the story's style with the slide's over the painter's defaults; a
    continuation of ``source`` is img2img from it, at the source's size unless the slide sets its own, with the
    style's strength (DEFAULT_STRENGTH when none)."""
    slide = story.slides[slide_id]
    spec = story.style.merged(slide.style)
    defaults = GenerationRequest(prompt="")
    width, height = spec.width or defaults.width, spec.height or defaults.height
    img2img: dict[str, Any] = {}
    if source is not None:
        width = slide.style.width or source.request.width
        height = slide.style.height or source.request.height
        img2img = {"denoising_strength": spec.strength if spec.strength is not None else DEFAULT_STRENGTH,
                   "resize_mode": CROP_AND_RESIZE}
    return GenerationRequest(
        prompt=prompt,
        negative_prompt=spec.negative_prompt or "",
        seed=seed,
        steps=spec.steps or defaults.steps,
        cfg_scale=spec.cfg_scale if spec.cfg_scale is not None else defaults.cfg_scale,
        width=width,
        height=height,
        sampler_name=spec.sampler_name or defaults.sampler_name,
        scheduler=spec.scheduler or defaults.scheduler,
        tiling=bool(spec.tiling),
        **img2img,
    )


def pictures(composition: Composition, key: Callable[[GenerationRequest], str]) -> list[tuple[str, GenerationRequest]]:
    """The pictures to paint for a composed slide, as (slide id, request), in the order they can be painted: the
    plain picture a chain of continuations starts from first, then each continuation with ``init_from`` the key
    (``key``: the generation service's) of the picture before it, the slide's own last.  A plain picture is just
    itself."""
    chain: list[Composition] = []
    current: Composition | None = composition
    while current is not None:
        chain.append(current)
        current = current.source
    result: list[tuple[str, GenerationRequest]] = []
    for step in reversed(chain):
        request = step.request if not result else step.request.replace(init_from=key(result[-1][1]))
        result.append((step.slide, request))
    return result


def labelled(story: Story, chain: list[tuple[str, GenerationRequest]]) -> list[tuple[GenerationRequest, str]]:
    """`pictures` as the generation service's ``submit_chain`` takes them: each request with what it is, for the
    admin's notes and the log."""
    return [(request, f"story '{story.slug}', slide '{slide_id}'") for slide_id, request in chain]


def story_pictures(story: Story, key: Callable[[GenerationRequest], str],
                   count_tokens: TokenCounter | None = None) -> list[list[tuple[GenerationRequest, str]]]:
    """Every slide's picture as a new player sees it (the starting values), each with the pictures it continues
    before it (see `pictures` and `labelled`), slides in `Story.painting_order`: what a bake paints."""
    return [labelled(story, pictures(compose(story, slide_id, count_tokens), key))
            for slide_id in story.painting_order()]


def picture_shapes(stories: list[Story], limit: int = 3) -> list[tuple[int, int, bool]]:
    """The (width, height, tiling) of the stories' pictures, most used first, at most ``limit`` of them.

    A compiled image engine prepares for these before the first player arrives, so that no picture waits for a
    compilation (see ``DiffusersBackend``'s ``warmup``).
    """
    counts: Counter[tuple[int, int, bool]] = Counter()
    for story in stories:
        for slide_id in story.slides:
            request = compose(story, slide_id).request
            counts[(request.width, request.height, request.tiling)] += 1
    return [shape for shape, _ in counts.most_common(limit)]
