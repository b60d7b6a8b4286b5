"""The author's side: sign-in, and a dashboard of the share link, who is playing and the painter's queue.

The password comes from the ADMIN_PASSWORD setting; without one, a password is generated at the first start,
printed once in the terminal, and only its hash is kept in the instance folder.  Every state-changing request
carries a CSRF token (Flask-WTF).  Scripts may read /admin/status.json with HTTP Basic auth (user "admin").
Wrong passwords, from the form or Basic auth alike, are slowed down and limited per client; a signed-in session
lasts ADMIN_SESSION_HOURS and ends for good at sign-out or when the password changes (see game/adminauth.py).
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from functools import wraps
from pathlib import Path
from typing import Any

from flask import Blueprint
from flask import Flask
from flask import current_app
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash
from werkzeug.security import generate_password_hash

from game.adminauth import AdminSessions
from game.adminauth import SignInGuard
from inference.scheduler import ADMIN

bp = Blueprint("admin", __name__, url_prefix="/admin")
log = logging.getLogger("lanternslide")
FAILED_LOGIN_DELAY = 1.0  # seconds each wrong password costs
FAILED_LOGIN_LIMIT = 10  # wrong passwords per client a minute, form and Basic auth together


def init_app(app: Flask) -> None:
    """Set up the admin password, the admin sessions, the sign-in limit, and mount the admin pages."""
    sessions = AdminSessions(Path(app.instance_path) / "admin_sessions.json",
                             float(app.config.get("ADMIN_SESSION_HOURS", 12)) * 3600)
    app.extensions["admin_sessions"] = sessions
    app.extensions["admin_password"] = _password_hash(app, sessions)
    app.extensions["admin_guard"] = SignInGuard(FAILED_LOGIN_LIMIT, 60.0)
    app.register_blueprint(bp)


def _password_hash(app: Flask, sessions: AdminSessions) -> str:
    """The admin password's hash; a password other than the last start's ends every admin session."""
    configured = app.config.get("ADMIN_PASSWORD")
    if configured:
        if sessions.password and check_password_hash(sessions.password, configured):
            return sessions.password
        return sessions.set_password(generate_password_hash(configured))
    path = Path(app.instance_path) / "admin_password.hash"
    if not path.exists():
        password = secrets.token_urlsafe(12)
        path.write_text(generate_password_hash(password))
        path.chmod(0o600)
        log.warning("\n\n  Admin password (shown once; only its hash is kept in %s):\n\n      %s\n\n"
                    "  Set LANTERNSLIDE_ADMIN_PASSWORD to choose your own; delete that file to get a new one.\n",
                    path, password)
    return sessions.set_password(path.read_text().strip())


def sessions() -> AdminSessions:
    return current_app.extensions["admin_sessions"]


class TooManyTries(Exception):
    """This client gave too many wrong passwords lately; its password is not even looked at."""

    def __init__(self, retry_after: int):
        super().__init__(f"Too many wrong passwords from your address: try again in {retry_after} s.")
        self.retry_after = retry_after


def check_password(password: str, username_ok: bool = True) -> bool:
    """Check a sign-in attempt (form or Basic auth) against the per-client limit; a wrong one is slowed down.

    Raises `TooManyTries` when this client is over the limit.  The person at this computer (without a proxy in
    front) is not limited, the same as for every other limit.
    """
    guard: SignInGuard | None = None
    if not current_app.extensions["on_this_machine"]():
        guard, client = current_app.extensions["admin_guard"], request.remote_addr or ""
        wait = guard.begin(client)
        if wait is not None:
            log.warning("admin sign-in refused for %s: too many wrong passwords", client)
            raise TooManyTries(wait)
    ok = False
    try:
        ok = bool(password) and check_password_hash(current_app.extensions["admin_password"], password) and username_ok
        if not ok:
            log.warning("failed admin sign-in from %s", request.remote_addr)
            time.sleep(FAILED_LOGIN_DELAY)
    finally:
        if guard is not None:
            guard.end(client, ok)
    return ok


def signed_in() -> bool:
    """True for a live admin session; HTTP Basic auth (user "admin") is checked like a sign-in."""
    if sessions().valid(session.get("admin")):
        return True
    auth = request.authorization
    if auth is None:
        return False
    return check_password(auth.password or "", auth.username == "admin")


def admin_required(view: Any) -> Any:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        try:
            allowed = signed_in()
        except TooManyTries as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            if request.path.endswith(".json"):
                return jsonify({"detail": str(exc)}), 429, headers
            return render_template("error.html", title="Slow down", message=str(exc)), 429, headers
        if not allowed:
            if "admin" in session:  # expired or ended elsewhere: the cookie's token is worth nothing now
                session.pop("admin")
            if request.path.endswith(".json"):
                return jsonify({"detail": "Not authenticated"}), 401, {"WWW-Authenticate": 'Basic realm="admin"'}
            return redirect(url_for("admin.login", next=request.path))
        return view(*args, **kwargs)

    return wrapper


@bp.errorhandler(LookupError)
def not_found(exc: LookupError) -> ResponseReturnValue:
    return flash_page("Not found", f"{exc}. It may have been renamed or deleted.", 404,
                      [(url_for("admin.stories"), "Back to the stories")])


@bp.errorhandler(RuntimeError)
def broken(exc: RuntimeError) -> ResponseReturnValue:
    return flash_page("Cannot do that", str(exc), 409, [(url_for("admin.stories"), "Back to the stories")])


@bp.before_request
def check_csrf() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        current_app.extensions["csrf"].protect()


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    error, code, headers = None, 200, {}
    if request.method == "POST":
        try:
            if check_password(request.form.get("password", "")):
                sessions().close(session.get("admin"))
                session.clear()
                session["admin"] = sessions().open()
                session.permanent = True
                target = request.args.get("next", "")
                return redirect(target if target.startswith("/admin") else url_for("admin.index"), 303)
            error, code = "That password is not right.", 401
        except TooManyTries as exc:
            error, code, headers = str(exc), 429, {"Retry-After": str(exc.retry_after)}
    return render_template("admin/login.html", error=error), code, headers


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """End this session on the server (a copy of the cookie stops working too); ``everywhere`` ends them all."""
    if request.form.get("everywhere") and sessions().valid(session.get("admin")):
        ended = sessions().close_all()
        log.info("admin signed out everywhere (%d sessions ended)", ended)
    sessions().close(session.get("admin"))
    session.pop("admin", None)
    return redirect(url_for("play.index"), 303)


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    return render_template("admin/index.html", **dashboard())


@bp.get("/dashboard")
@admin_required
def dashboard_fragment() -> ResponseReturnValue:
    return render_template("partials/dashboard.html", **dashboard())


def dashboard() -> dict[str, Any]:
    share = current_app.extensions.get("share_url")
    qr = None
    if share:
        import segno

        qr = segno.make(share, error="m").svg_data_uri(scale=4, dark="#1b1306", light="#f1e7d6")
    return {"share_url": share, "share_qr": qr, "players": current_app.extensions["players"].active(),
            "status": current_app.extensions["images"].stats(), "now": time.time()}


@bp.get("/status.json")
@admin_required
def status() -> ResponseReturnValue:
    """Queue depth per priority, running batches, cache hits and misses, generation times, prefetch hit rate."""
    return jsonify(current_app.extensions["images"].stats())


# -- stories: list, create, upload, edit with live checks, revisions, download ------------------------------------

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


def library() -> Any:
    return current_app.extensions["stories"]


def flash_page(title: str, message: str, code: int, links: list[tuple[str, str]]) -> ResponseReturnValue:
    return render_template("error.html", title=title, message=message, links=links), code


@bp.get("/stories")
@admin_required
def stories() -> ResponseReturnValue:
    return render_template("admin/stories.html", entries=library().entries(), deleted=request.args.get("deleted"),
                           revision=request.args.get("revision"))


@bp.post("/stories")
@admin_required
def create_story() -> ResponseReturnValue:
    from game.library import StoryExists
    from game.library import check_slug

    slug, title = request.form.get("slug", "").strip().lower(), request.form.get("title", "").strip() or "Untitled"
    try:
        check_slug(slug)
        library().create(slug, NEW_STORY.format(title=title.replace('"', "'"), seed=secrets.randbelow(10**6)))
    except (StoryExists, LookupError) as exc:
        message = str(exc) if isinstance(exc, StoryExists) else (
            f"'{slug}' cannot name a story: use lowercase letters, digits, - and _ (up to 64)")
        return flash_page("Story not created", message, 422, [(url_for("admin.stories"), "Back to the stories")])
    return redirect(url_for("admin.edit_story", slug=slug), 303)


@bp.post("/stories/import")
@admin_required
def import_story() -> ResponseReturnValue:
    """Upload a story: our YAML, or Twine (Twee 3 or Twine 2 HTML), each story saved under a fresh slug."""
    from game.library import InvalidStory
    from game.library import StoryExists
    from game.story import dump_document
    from game.twine import TwineError
    from game.twine import import_file

    upload = request.files.get("file")
    back = [(url_for("admin.stories"), "Back to the stories")]
    if upload is None or not upload.filename:
        return flash_page("Nothing uploaded", "Choose a .yaml, .twee, .tw or .html file.", 422, back)
    name = upload.filename.rsplit("/", 1)[-1]
    try:
        text = upload.read().decode("utf-8")
    except UnicodeDecodeError:
        return flash_page("Not imported", f"{name} is not UTF-8 text.", 422, back)
    stem = re.sub(r"[^a-z0-9_-]+", "-", name.rsplit(".", 1)[0].lower()).strip("-")[:50] or "story"
    try:
        if name.lower().endswith((".yaml", ".yml")):
            converted = [(text, [])]
        else:
            converted = [(dump_document(data), warnings) for data, warnings in import_file(text, name)]
        made, notes = [], []
        for index, (yaml_text, warnings) in enumerate(converted):
            slug = free_slug(stem if index == 0 else f"{stem}-{index + 1}")
            library().create(slug, yaml_text)
            made.append(slug)
            notes += warnings
    except (TwineError, InvalidStory, StoryExists) as exc:
        return flash_page("Not imported", f"{name}: {exc}", 422, back)
    return render_template("admin/imported.html", made=made, notes=notes, name=name)


def free_slug(base: str) -> str:
    slug, n = base, 2
    while library().path(slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


@bp.get("/stories/<slug>")
@admin_required
def edit_story(slug: str) -> ResponseReturnValue:
    text, revision = library().text(slug)
    return render_template("admin/edit.html", slug=slug, text=text, revision=revision, **check_context(slug, text))


def check_context(slug: str, text: str) -> dict[str, Any]:
    """Problems and the graph for the editor, from the text as typed (saved or not)."""
    from game.library import InvalidStory
    from game.story import story_graph
    from game.story import yaml_parser

    try:
        entry = library().check(slug, text)
        problems = list(entry.problems)
        story = entry.story
    except InvalidStory as exc:
        problems, story = list(exc.problems), None
    try:
        document = yaml_parser().load(text)
    except Exception:  # noqa: BLE001 - not YAML yet: the problems list already says so
        document = None
    nodes, edges = story_graph(document)
    dead_ends = [n.id for n in nodes if n.ending and not n.missing]
    return {"problems": problems, "story": story, "nodes": nodes, "edges": edges,
            "width": max((n.x for n in nodes), default=0) + 110, "height": max((n.y for n in nodes), default=0) + 40,
            "positions": {n.id: (n.x, n.y) for n in nodes}, "dead_ends": dead_ends,
            "errors": [p for p in problems if p.severity == "error"]}


@bp.post("/stories/<slug>/check")
@admin_required
def check_story(slug: str) -> ResponseReturnValue:
    return render_template("partials/story_check.html", slug=slug, **check_context(slug, request.form.get("text", "")))


@bp.post("/stories/<slug>")
@admin_required
def save_story(slug: str) -> ResponseReturnValue:
    from game.library import InvalidStory
    from game.library import StaleRevision

    text, base = request.form.get("text", "").replace("\r\n", "\n"), request.form.get("revision", "")
    try:
        entry = library().save(slug, text, base)
    except StaleRevision as exc:
        return render_template("admin/conflict.html", slug=slug, yours=text, theirs=exc.text, current=exc.current), 409
    except InvalidStory:
        return render_template("admin/edit.html", slug=slug, text=text, revision=base, unsaved=True,
                               **check_context(slug, text)), 422
    return render_template("admin/edit.html", slug=slug, text=text, revision=entry.revision, saved=True,
                           **check_context(slug, text))


@bp.post("/stories/<slug>/delete")
@admin_required
def delete_story(slug: str) -> ResponseReturnValue:
    from game.library import StaleRevision

    try:
        kept = library().delete(slug, request.form.get("revision", ""))
    except StaleRevision:
        return flash_page("Not deleted", "The story changed since you opened it; look at it again first.", 409,
                          [(url_for("admin.edit_story", slug=slug), "Open the story")])
    return redirect(url_for("admin.stories", deleted=slug, revision=kept.id), 303)


@bp.post("/stories/<slug>/copy")
@admin_required
def copy_story(slug: str) -> ResponseReturnValue:
    from game.library import StoryExists
    from game.library import check_slug

    new_slug = request.form.get("new_slug", "").strip().lower()
    try:
        check_slug(new_slug)
        if request.form.get("action") == "rename":
            library().rename(slug, new_slug, request.form.get("revision", ""))
        else:
            library().duplicate(slug, new_slug)
    except (StoryExists, LookupError, RuntimeError) as exc:
        return flash_page("Not done", str(exc) or f"'{new_slug}' cannot name a story", 422,
                          [(url_for("admin.stories"), "Back to the stories")])
    return redirect(url_for("admin.edit_story", slug=new_slug), 303)


@bp.get("/stories/<slug>/revisions")
@admin_required
def story_revisions(slug: str) -> ResponseReturnValue:
    shown = request.args.get("show")
    text = library().revision_text(slug, shown) if shown else None
    return render_template("admin/revisions.html", slug=slug, revisions=library().revisions(slug), shown=shown,
                           text=text)


@bp.post("/stories/<slug>/revisions/<revision_id>")
@admin_required
def restore_revision(slug: str, revision_id: str) -> ResponseReturnValue:
    library().restore(slug, revision_id)
    return redirect(url_for("admin.edit_story", slug=slug), 303)


@bp.get("/stories/<slug>/download")
@admin_required
def download_story(slug: str) -> ResponseReturnValue:
    text, _ = library().text(slug)
    return current_app.response_class(text, mimetype="application/x-yaml",
                                      headers={"Content-Disposition": f'attachment; filename="{slug}.yaml"'})


@bp.get("/stories/<slug>/twee")
@admin_required
def export_story(slug: str) -> ResponseReturnValue:
    from game.twine import export_twee

    story = library().get(slug)
    return current_app.response_class(export_twee(story), mimetype="text/plain",
                                      headers={"Content-Disposition": f'attachment; filename="{slug}.twee"'})


# -- tuning a slide's picture, and baking a whole story ----------------------------------------------------------

TUNABLE = ("negative_prompt", "width", "height", "steps", "cfg_scale", "sampler_name", "scheduler", "seed", "tiling")


def tuning_request(slug: str, slide_id: str, form: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The story, the slide's composition with the form's changes applied, and the form values (for the page)."""
    import dataclasses

    from game.prompts import compose
    from game.story import ImageSpec

    story = library().get(slug)
    if slide_id not in story.slides:
        raise LookupError(f"no slide '{slide_id}' in story '{slug}'")
    slide = story.slides[slide_id]
    values: dict[str, Any] = {}
    if form:
        values["image"] = form.get("image", "").strip() or None
        for key in TUNABLE:
            raw = form.get(key, "")
            if key == "tiling":
                values[key] = raw == "on"
            elif key in ("negative_prompt", "sampler_name", "scheduler"):
                values[key] = raw
            elif raw.strip():
                try:
                    values[key] = float(raw) if key == "cfg_scale" else int(raw)
                except ValueError:
                    raise ValueError(f"{key}: expected a number, got {raw!r}") from None
        overrides = ImageSpec(**{k: v for k, v in values.items() if k in TUNABLE})
        slide = dataclasses.replace(slide, image=values["image"], style=slide.style.merged(overrides))
        story = dataclasses.replace(story, slides={**story.slides, slide_id: slide})
    composition = compose(story, slide_id, current_app.extensions["backend"].count_tokens)
    return story, composition, values


@bp.route("/stories/<slug>/slides/<slide_id>", methods=["GET", "POST"])
@admin_required
def tune(slug: str, slide_id: str) -> ResponseReturnValue:
    """The slide's prompt as composed (with the 75-token budget and what was dropped), its settings, and previews."""
    from inference.request import SAMPLERS
    from inference.request import SCHEDULES
    from inference.request import RequestError

    error, cards = None, []
    try:
        story, composition, _ = tuning_request(slug, slide_id, request.form if request.method == "POST" else None)
        if request.method == "POST":
            count = max(1, min(8, int(request.form.get("count", "4") or 4)))
            base = composition.request
            first = base.seed if base.seed != -1 else secrets.randbelow(2**32 - 8)
            for offset in range(count):
                job = current_app.extensions["images"].submit(base.replace(seed=first + offset), ADMIN,
                                                              f"admin:{slug}")
                cards.append(job.key)
    except (ValueError, RequestError) as exc:
        story, composition, _ = tuning_request(slug, slide_id, None)
        error = str(exc)
    text, revision = library().text(slug)
    return render_template("admin/tune.html", slug=slug, story=story, slide=story.slides[slide_id],
                           composition=composition, request_=composition.request, cards=cards, error=error,
                           revision=revision, samplers=list(SAMPLERS), schedules=list(SCHEDULES)), 422 if error else 200


@bp.get("/jobs/<key>")
@admin_required
def job_card(key: str) -> ResponseReturnValue:
    """One preview, polled until it is painted: progress, a rough preview, then the picture and a Keep button."""
    from inference.request import to_data_url

    if not re.fullmatch(r"[0-9A-Za-z]{1,128}", key):  # job keys are hex digests; anything else names no preview
        return flash_page("Not found", "There is no preview with that id.", 404,
                          [(url_for("admin.stories"), "Back to the stories")])
    snap = current_app.extensions["images"].lookup(key)
    if snap is None:
        return render_template("partials/tune_card.html", key=key, snap=None, gone=True), 404
    picture = to_data_url(snap.png, "png") if snap.png else None
    preview = to_data_url(snap.preview, "jpeg") if snap.preview else None
    return render_template("partials/tune_card.html", key=key, snap=snap, picture=picture, preview=preview,
                           slug=request.args.get("slug", ""), slide_id=request.args.get("slide", ""),
                           revision=request.args.get("revision", ""))


@bp.post("/stories/<slug>/slides/<slide_id>/keep")
@admin_required
def keep(slug: str, slide_id: str) -> ResponseReturnValue:
    """Write the chosen picture's seed and settings (and subject line) into the slide, keeping the file's comments."""
    import io

    from game.library import InvalidStory
    from game.library import StaleRevision
    from game.story import dump_document
    from game.story import yaml_parser

    from game.prompts import compose

    back = [(url_for("admin.tune", slug=slug, slide_id=slide_id), "Back")]
    try:
        story, composition, values = tuning_request(slug, slide_id, request.form)
        chosen = composition.request.replace(seed=int(request.form.get("chosen_seed", composition.request.seed)))
    except ValueError as exc:  # a form value that is no number (RequestError is one too)
        return flash_page("Not kept", str(exc)[:300], 422, back)
    original = compose(library().get(slug), slide_id, current_app.extensions["backend"].count_tokens).request
    text, revision = library().text(slug)
    document = yaml_parser().load(io.StringIO(text))
    node = document["slides"][slide_id]
    if values.get("image"):
        node["image"] = values["image"]
    style = node.get("style") or {}
    for key in TUNABLE:  # the seed always; other settings only where they differ from what the slide had
        if key == "seed" or getattr(chosen, key) != getattr(original, key):
            style[key] = getattr(chosen, key)
    node["style"] = style
    try:
        library().save(slug, dump_document(document), request.form.get("revision", revision))
    except StaleRevision:
        return flash_page("Not kept", "The story changed since this page was opened; open the slide again and retry.",
                          409, [(url_for("admin.tune", slug=slug, slide_id=slide_id), "Open the slide again")])
    except InvalidStory as exc:
        return flash_page("Not kept", str(exc), 422, back)
    return redirect(url_for("admin.tune", slug=slug, slide_id=slide_id, kept=chosen.seed), 303)


def bake_progress(slug: str) -> dict[str, Any]:
    from game.prompts import compose

    story = library().get(slug)
    images = current_app.extensions["images"]
    keys = [images.key(compose(story, sid, current_app.extensions["backend"].count_tokens).request) for sid in story.slides]
    states = [images.state_of(key) for key in keys]
    return {"slug": slug, "done": states.count("done"), "failed": states.count("failed"), "total": len(keys)}


@bp.post("/stories/<slug>/bake")
@admin_required
def bake(slug: str) -> ResponseReturnValue:
    """Paint every slide of the story into the cache, at admin priority (players still come first)."""
    from game.prompts import compose
    from inference.scheduler import QueueFull

    story = library().get(slug)
    queued = 0
    for sid in story.slides:
        try:
            current_app.extensions["images"].submit(
                compose(story, sid, current_app.extensions["backend"].count_tokens).request, ADMIN, f"bake:{slug}")
            queued += 1
        except QueueFull:
            break
    return render_template("partials/bake.html", queued=queued, **bake_progress(slug))


@bp.get("/stories/<slug>/bake")
@admin_required
def bake_status(slug: str) -> ResponseReturnValue:
    return render_template("partials/bake.html", queued=None, **bake_progress(slug))


# -- form editing: story settings and one slide at a time (written into the YAML, comments kept) --------------------


def load_document(slug: str) -> tuple[Any, str]:
    import io

    from game.story import yaml_parser

    text, revision = library().text(slug)
    return yaml_parser().load(io.StringIO(text)), revision


def save_document(slug: str, document: Any, revision: str, again: str) -> ResponseReturnValue | None:
    """Save an edited document; on a problem, a page that says what and how to go on (None when saved)."""
    from game.library import InvalidStory
    from game.library import StaleRevision
    from game.story import dump_document

    try:
        library().save(slug, dump_document(document), revision)
    except StaleRevision:
        return flash_page("Not saved", "The story changed since this form was opened; nothing was overwritten. "
                          "Open it again and redo the change.", 409, [(again, "Open it again")])
    except InvalidStory as exc:
        return flash_page("Not saved", str(exc), 422, [(again, "Back to the form")])
    return None


@bp.route("/stories/<slug>/settings", methods=["GET", "POST"])
@admin_required
def story_settings(slug: str) -> ResponseReturnValue:
    from inference.request import SAMPLERS
    from inference.request import SCHEDULES

    document, revision = load_document(slug)
    if request.method == "POST":
        form = request.form
        revision = form.get("revision", "")
        document["title"] = form.get("title", "").strip()
        document["start"] = form.get("start", "")
        style = document.get("style") or {}
        for key in ("prompt", "negative_prompt", "sampler_name", "scheduler"):
            if form.get(key, "").strip():
                style[key] = form[key].strip()
            elif key in style:
                del style[key]
        for key, cast in (("width", int), ("height", int), ("steps", int), ("cfg_scale", float), ("seed", int)):
            raw = form.get(key, "").strip()
            if raw:
                try:
                    style[key] = cast(raw)
                except ValueError:
                    return flash_page("Not saved", f"style.{key}: expected a number, got {raw!r}", 422,
                                      [(url_for("admin.story_settings", slug=slug), "Back to the form")])
            elif key in style:
                del style[key]
        style["tiling"] = form.get("tiling") == "on"
        document["style"] = style
        characters = {}
        for line in form.get("characters", "").splitlines():
            name, sep, description = line.partition(":")
            if sep and name.strip():
                characters[name.strip()] = description.strip()
        document["characters"] = characters
        problem = save_document(slug, document, revision, url_for("admin.story_settings", slug=slug))
        return problem or redirect(url_for("admin.edit_story", slug=slug), 303)
    style = document.get("style") or {}
    return render_template("admin/settings.html", slug=slug, document=document, style=style, revision=revision,
                           slides=list(document.get("slides") or {}), samplers=list(SAMPLERS), schedules=list(SCHEDULES))


@bp.route("/stories/<slug>/slides/<slide_id>/edit", methods=["GET", "POST"])
@admin_required
def edit_slide(slug: str, slide_id: str) -> ResponseReturnValue:
    from ruamel.yaml.scalarstring import LiteralScalarString

    from game.library import SLUG_RE

    document, revision = load_document(slug)
    slides = document.get("slides") or {}
    if slide_id not in slides:
        raise LookupError(f"no slide '{slide_id}' in story '{slug}'")
    node = slides[slide_id]
    if request.method == "POST":
        form = request.form
        text = form.get("text", "").replace("\r\n", "\n").strip()
        node["text"] = LiteralScalarString(text + "\n")
        if form.get("image", "").strip():
            node["image"] = form["image"].strip()
        elif "image" in node:
            del node["image"]
        characters = form.getlist("characters")
        if characters:
            node["characters"] = characters
        elif "characters" in node:
            del node["characters"]
        choices = []
        for label, target, new in zip(form.getlist("choice_text"), form.getlist("choice_to"), form.getlist("choice_new")):
            if not label.strip():
                continue  # an emptied row removes the choice
            target = new.strip() if target == "__new__" else target
            if target == "__new__" or not target:
                continue
            if target not in slides:  # created on the spot: a stub to write later
                if not SLUG_RE.match(target.lower()):
                    return flash_page("Not saved", f"'{target}' cannot name a slide: use letters, digits, - and _", 422,
                                      [(url_for("admin.edit_slide", slug=slug, slide_id=slide_id), "Back to the form")])
                slides[target] = {"text": LiteralScalarString(f"(to be written: after “{label.strip()}”)\n")}
            choices.append({"text": label.strip(), "to": target})
        if choices:
            node["choices"] = choices
        elif "choices" in node:
            del node["choices"]
        again = url_for("admin.edit_slide", slug=slug, slide_id=slide_id)
        problem = save_document(slug, document, form.get("revision", ""), again)
        return problem or redirect(url_for("admin.edit_story", slug=slug), 303)
    return render_template("admin/slide.html", slug=slug, slide_id=slide_id, node=node, revision=revision,
                           slides=list(slides), characters=list(document.get("characters") or {}),
                           choices=list(node.get("choices") or []) + [{"text": "", "to": ""}] * 2)


@bp.post("/stories/<slug>/slides")
@admin_required
def add_slide(slug: str) -> ResponseReturnValue:
    from ruamel.yaml.scalarstring import LiteralScalarString

    from game.library import SLUG_RE

    document, _ = load_document(slug)
    slide_id = request.form.get("slide_id", "").strip()
    back = url_for("admin.edit_story", slug=slug)
    if not SLUG_RE.match(slide_id.lower()) or slide_id in (document.get("slides") or {}):
        return flash_page("Slide not added", f"'{slide_id}' is taken or cannot name a slide (letters, digits, - and _)",
                          422, [(back, "Back to the story")])
    document["slides"][slide_id] = {"text": LiteralScalarString("(to be written)\n")}
    problem = save_document(slug, document, request.form.get("revision", ""), back)
    return problem or redirect(url_for("admin.edit_slide", slug=slug, slide_id=slide_id), 303)
