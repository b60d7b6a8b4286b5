"""Stories: the list, create, upload (YAML, Twee, Twine HTML), the YAML editor with live checks and the story graph,
saves checked against their revision, delete / duplicate / rename with a way back, revisions, downloads."""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import current_app
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from flask.typing import ResponseReturnValue

from game.graph import story_graph
from game.library import SLUG_RE
from game.library import InvalidStory
from game.library import LibraryError
from game.library import StaleRevision
from game.library import StoryExists
from game.story import dump_document
from game.twine import TwineError
from game.twine import export_report
from game.twine import export_twee
from game.twine import import_file
from game.yamlsafe import yaml_parser
from web import services
from web.admin import admin_required
from web.admin import back_to_stories
from web.admin import bp
from web.admin import flash_page

NEW_STORY = """# {title}: a new story. Slides are described below; a slide without choices is an ending.
title: {title}
start: beginning
style:
  prompt: "storybook illustration, soft light, detailed"
  negative_prompt: "text, watermark, lowres, blurry"
  width: 512
  height: 512
  steps: 20
  cfg_scale: 7
  seed: {seed}
characters: {{}}
slides:
  beginning:
    text: |
      The story begins here.
    image: "a quiet landscape at dawn"
    choices:
      - text: Go on
        to: next
  next:
    text: |
      And here it ends, for now.
    image: "a path disappearing into mist"
"""
BAD_SLUG = "'{}' cannot name a story: use lowercase letters, digits, - and _ (up to 64)"


@bp.get("/stories")
@admin_required
def stories() -> ResponseReturnValue:
    """Every story, broken ones with their problems; after a delete, the way back."""
    return render_template("admin/stories.html", entries=services.stories().entries(),
                           deleted=request.args.get("deleted"), revision=request.args.get("revision"))


@bp.post("/stories")
@admin_required
def create_story() -> ResponseReturnValue:
    """Start a new story from a small template and open it in the editor."""
    slug, title = request.form.get("slug", "").strip().lower(), request.form.get("title", "").strip() or "Untitled"
    if not SLUG_RE.match(slug):
        return flash_page("Story not created", BAD_SLUG.format(slug[:64]), 422, back_to_stories())
    try:
        services.stories().create(slug, NEW_STORY.format(title=title.replace('"', "'"), seed=secrets.randbelow(10**6)))
    except StoryExists as exc:
        return flash_page("Story not created", str(exc), 422, back_to_stories())
    return redirect(url_for("admin.edit_story", slug=slug), 303)


@bp.post("/stories/import")
@admin_required
def import_story() -> ResponseReturnValue:
    """Upload a story: our YAML, or Twine (Twee 3 or Twine 2 HTML), each story saved under a fresh slug; the report
    lists, per story, what the import could not keep and what the story's own checks warn about."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return flash_page("Nothing uploaded", "Choose a .yaml, .twee, .tw or .html file.", 422, back_to_stories())
    name = upload.filename.rsplit("/", 1)[-1]
    try:
        text = upload.read().decode("utf-8")
    except UnicodeDecodeError:
        return flash_page("Not imported", f"{name} is not UTF-8 text.", 422, back_to_stories())
    stem = re.sub(r"[^a-z0-9_-]+", "-", name.rsplit(".", 1)[0].lower()).strip("-")[:50] or "story"
    try:
        if name.lower().endswith((".yaml", ".yml")):
            converted: list[tuple[str, list[str]]] = [(text, [])]
        else:
            converted = [(dump_document(data), warnings) for data, warnings in import_file(text, name)]
        made = []
        for index, (yaml_text, warnings) in enumerate(converted):
            slug = free_slug(stem if index == 0 else f"{stem}-{index + 1}")
            entry = services.stories().create(slug, yaml_text)
            made.append((entry, warnings))
    except (TwineError, InvalidStory, StoryExists) as exc:
        return flash_page("Not imported", f"{name}: {exc}", 422, back_to_stories())
    return render_template("admin/imported.html", made=made, name=name)


def free_slug(base: str) -> str:
    slug, n = base, 2
    while services.stories().path(slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@bp.get("/stories/<slug>")
@admin_required
def edit_story(slug: str) -> ResponseReturnValue:
    """The YAML editor, with the story's problems and its graph."""
    text, revision = services.stories().text(slug)
    return render_template("admin/edit.html", slug=slug, text=text, revision=revision, **edit_context(slug, text))


def export_notes(story: Any) -> list[str] | None:
    """What a Twine export of the story could not write in its story format (None for a story with errors)."""
    return export_report(story)[1] if story is not None else None


def edit_context(slug: str, text: str) -> dict[str, Any]:
    """Everything the editor page shows: the checks and graph, and what a Twine export would leave out."""
    context = check_context(slug, text)
    return {**context, "export_notes": export_notes(context["story"])}


def check_context(slug: str, text: str) -> dict[str, Any]:
    """Problems and the graph for the editor, from the text as typed (saved or not)."""
    try:
        entry = services.stories().check(slug, text)
        problems = list(entry.problems)
        story = entry.story
    except InvalidStory as exc:
        problems, story = list(exc.problems), None
    try:
        document = yaml_parser().load(text)
    except Exception:  # noqa: BLE001 - not YAML yet: the problems list already says so
        document = None
    nodes, edges = story_graph(document)
    dead_ends = [n.id for n in nodes if n.ending and not n.missing and not n.source_only]
    return {"problems": problems, "story": story, "nodes": nodes, "edges": edges,
            "width": max((n.x for n in nodes), default=0) + 110, "height": max((n.y for n in nodes), default=0) + 40,
            "positions": {n.id: (n.x, n.y) for n in nodes}, "dead_ends": dead_ends,
            "errors": [p for p in problems if p.severity == "error"]}


@bp.post("/stories/<slug>/check")
@admin_required
def check_story(slug: str) -> ResponseReturnValue:
    """The editor's as-you-type check: problems and graph of the text as typed."""
    return render_template("admin/_story_check.html", slug=slug, **check_context(slug, request.form.get("text", "")))


@bp.post("/stories/<slug>")
@admin_required
def save_story(slug: str) -> ResponseReturnValue:
    """Save the YAML editor's text, unless the story changed since it was opened (then both versions are shown)."""
    text, base = request.form.get("text", "").replace("\r\n", "\n"), request.form.get("revision", "")
    try:
        entry = services.stories().save(slug, text, base)
    except StaleRevision as exc:
        return render_template("admin/conflict.html", slug=slug, yours=text, theirs=exc.text, current=exc.current), 409
    except InvalidStory:
        return render_template("admin/edit.html", slug=slug, text=text, revision=base, unsaved=True,
                               **edit_context(slug, text)), 422
    return render_template("admin/edit.html", slug=slug, text=text, revision=entry.revision, saved=True,
                           **edit_context(slug, text))


@bp.post("/stories/<slug>/delete")
@admin_required
def delete_story(slug: str) -> ResponseReturnValue:
    """Delete a story (kept as a revision, with a link to undo)."""
    try:
        kept = services.stories().delete(slug, request.form.get("revision", ""))
    except StaleRevision:
        return flash_page("Not deleted", "The story changed since you opened it; look at it again first.", 409,
                          [(url_for("admin.edit_story", slug=slug), "Open the story")])
    return redirect(url_for("admin.stories", deleted=slug, revision=kept.id), 303)


@bp.post("/stories/<slug>/copy")
@admin_required
def copy_story(slug: str) -> ResponseReturnValue:
    """Duplicate or rename a story."""
    new_slug = request.form.get("new_slug", "").strip().lower()
    if not SLUG_RE.match(new_slug):
        return flash_page("Not done", BAD_SLUG.format(new_slug[:64]), 422, back_to_stories())
    try:
        if request.form.get("action") == "rename":
            services.stories().rename(slug, new_slug, request.form.get("revision", ""))
        else:
            services.stories().duplicate(slug, new_slug)
    except LibraryError as exc:
        return flash_page("Not done", str(exc), 422, back_to_stories())
    return redirect(url_for("admin.edit_story", slug=new_slug), 303)


@bp.get("/stories/<slug>/revisions")
@admin_required
def story_revisions(slug: str) -> ResponseReturnValue:
    """Earlier versions of a story, one of them shown."""
    shown = request.args.get("show")
    text = services.stories().revision_text(slug, shown) if shown else None
    return render_template("admin/revisions.html", slug=slug, revisions=services.stories().revisions(slug),
                           shown=shown, text=text)


@bp.post("/stories/<slug>/revisions/<revision_id>")
@admin_required
def restore_revision(slug: str, revision_id: str) -> ResponseReturnValue:
    """Bring back an earlier version (the current one is kept as a revision in turn)."""
    services.stories().restore(slug, revision_id)
    return redirect(url_for("admin.edit_story", slug=slug), 303)


@bp.get("/stories/<slug>/download")
@admin_required
def download_story(slug: str) -> ResponseReturnValue:
    """The story file as it is on disk."""
    text, _ = services.stories().text(slug)
    return current_app.response_class(text, mimetype="application/x-yaml",
                                      headers={"Content-Disposition": f'attachment; filename="{slug}.yaml"'})


@bp.get("/stories/<slug>/twee")
@admin_required
def export_story(slug: str) -> ResponseReturnValue:
    """The story as Twee 3, for Twine."""
    story = services.stories().get(slug)
    return current_app.response_class(export_twee(story), mimetype="text/plain",
                                      headers={"Content-Disposition": f'attachment; filename="{slug}.twee"'})
