"""Form editing: the story's settings and one slide at a time, written into the YAML with its comments kept
(the edits themselves are game.editing's pure functions)."""

from __future__ import annotations

from typing import Any

from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from game.editing import ChoiceRow
from game.editing import EditError
from game.editing import add_slide as add_slide_to
from game.editing import apply_slide_edit
from game.editing import apply_story_settings
from game.editing import choice_rows
from game.editing import image_fields
from game.editing import load_document
from game.editing import state_text
from game.library import InvalidStory
from game.library import SlideNotFound
from game.library import StaleRevision
from game.story import DEFAULT_STRENGTH
from game.story import dump_document
from inference.samplers import SAMPLERS
from inference.samplers import SCHEDULES
from web import services
from web.admin import admin_required
from web.admin import bp
from web.admin import flash_page


def open_document(slug: str) -> tuple[Any, str]:
    text, revision = services.stories().text(slug)
    return load_document(text), revision


def save_document(slug: str, document: Any, revision: str, again: str) -> ResponseReturnValue | None:
    """Save an edited document; on a problem, a page that says what and how to go on (None when saved)."""
    try:
        services.stories().save(slug, dump_document(document), revision)
    except StaleRevision:
        return flash_page("Not saved", "The story changed since this form was opened; nothing was overwritten. "
                          "Open it again and redo the change.", 409, [(again, "Open it again")])
    except InvalidStory as exc:
        return flash_page("Not saved", str(exc), 422, [(again, "Back to the form")])
    return None


@bp.route("/stories/<slug>/settings", methods=["GET", "POST"])
@admin_required
def story_settings(slug: str) -> ResponseReturnValue:
    """Title, start, the picture style every slide inherits, the characters and the variables."""
    document, revision = open_document(slug)
    again = url_for("admin.story_settings", slug=slug)
    if request.method == "POST":
        try:
            apply_story_settings(document, request.form)
        except EditError as exc:
            return flash_page("Not saved", str(exc), 422, [(again, "Back to the form")])
        problem = save_document(slug, document, request.form.get("revision", ""), again)
        return problem or redirect(url_for("admin.edit_story", slug=slug), 303)
    return render_template("admin/settings.html", slug=slug, document=document, style=document.get("style") or {},
                           revision=revision, slides=list(document.get("slides") or {}), samplers=list(SAMPLERS),
                           schedules=list(SCHEDULES), state=state_text(document))


@bp.route("/stories/<slug>/slides/<slide_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_slide(slug: str, slide_id: str) -> ResponseReturnValue:
    """One slide: text, picture description (and the slide whose picture it continues, with the strength),
    characters, and choices (to existing slides or new ones), each with its condition, whether it hides or shows
    greyed out while closed, and its effects."""
    document, revision = open_document(slug)
    slides = document.get("slides") or {}
    if slide_id not in slides:
        raise SlideNotFound(slug, slide_id)
    again = url_for("admin.edit_slide", slug=slug, slide_id=slide_id)
    if request.method == "POST":
        form = request.form
        try:
            columns = [form.getlist(f"choice_{name}") for name in ("text", "to", "new", "if", "otherwise", "set")]
            if len({len(column) for column in columns}) > 1:  # a form from another version of this page
                raise EditError("choices", "the form's choice rows do not line up; open the slide again")
            rows = [ChoiceRow(*row) for row in zip(*columns, strict=True)]
            apply_slide_edit(document, slug, slide_id, form.get("text", ""), form.get("image", ""),
                             form.getlist("characters"), rows, form.get("image_from"), form.get("image_strength", ""))
        except EditError as exc:
            return flash_page("Not saved", str(exc), 422, [(again, "Back to the form")])
        problem = save_document(slug, document, form.get("revision", ""), again)
        return problem or redirect(url_for("admin.edit_story", slug=slug), 303)
    node = slides[slide_id]
    image, source, strength = image_fields(node)
    story = services.stories().entry(slug).story  # None while the story has errors: then every other slide
    sources = story.possible_sources(slide_id) if story is not None and slide_id in story.slides else [
        s for s in slides if s != slide_id]
    return render_template("admin/slide.html", slug=slug, slide_id=slide_id, node=node, revision=revision,
                           image=image, image_from=source, image_strength=strength, default_strength=DEFAULT_STRENGTH,
                           sources=sources, slides=list(slides), characters=list(document.get("characters") or {}),
                           choices=choice_rows(node) + [ChoiceRow("", "")] * 2,
                           variables=list(document.get("state") or {}))


@bp.post("/stories/<slug>/slides")
@admin_required
def add_slide(slug: str) -> ResponseReturnValue:
    """Add an empty slide and open its form."""
    document, _ = open_document(slug)
    slide_id = request.form.get("slide_id", "").strip()
    back = url_for("admin.edit_story", slug=slug)
    try:
        add_slide_to(document, slide_id)
    except EditError as exc:
        return flash_page("Slide not added", str(exc), 422, [(back, "Back to the story")])
    problem = save_document(slug, document, request.form.get("revision", ""), back)
    return problem or redirect(url_for("admin.edit_slide", slug=slug, slide_id=slide_id), 303)
