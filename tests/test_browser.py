"""Play a shipped story in a real browser: Playwright driving Debian's chromium against `python app.py`."""

import os
import re
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PICTURE = "#picture img[src^='data:image/webp;base64,']"

pytestmark = pytest.mark.browser

if not os.path.exists(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: .ci/run installs Debian's chromium package")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def see_slide(page, path: str, words: str) -> None:
    page.wait_for_url(f"**{path}")
    assert words in page.locator("#slide-text").inner_text()
    page.wait_for_selector(PICTURE)  # the slide's own picture arrived as a data URL


def authored_story(browser, live_server, title: str, slug: str):
    """A tab of its own (a wide window) signed in to the admin, on the editor of a story it has just created with
    this title and slug; the caller closes ``page.context``."""
    from tests.support import ADMIN_PASSWORD

    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.set_default_timeout(60_000)
    page.goto(live_server.url + "/admin/login")
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.goto(live_server.url + "/admin/stories")
    page.fill("input[name=title]", title)
    page.fill("input[name=slug]", slug)
    page.get_by_role("button", name="Create").click()
    page.wait_for_url(f"**/admin/stories/{slug}")
    return page


def test_play_three_choices_then_back_and_reload(page, live_server):
    page.goto(live_server.url + "/")
    page.get_by_role("link", name="The Lighthouse Keeper").click()
    see_slide(page, "/play/lighthouse/shore", "You wake on a cold shore")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "slide.png"))

    page.keyboard.press("2")  # number keys pick choices
    see_slide(page, "/play/lighthouse/wreckage", "Splintered planks")
    page.get_by_role("button", name="Read the logbook").click()
    see_slide(page, "/play/lighthouse/log", "The last entry")
    page.get_by_role("button", name="Patch the rowboat").click()
    see_slide(page, "/play/lighthouse/rowboat", "You stuff the gap")

    page.go_back()
    see_slide(page, "/play/lighthouse/log", "The last entry")
    page.reload()
    see_slide(page, "/play/lighthouse/log", "The last entry")
    page.go_forward()
    see_slide(page, "/play/lighthouse/rowboat", "You stuff the gap")


def test_each_slide_gets_its_own_picture(page, live_server):
    page.goto(live_server.url + "/play/night-train/platform")
    page.wait_for_selector(PICTURE)
    first = page.locator("#picture img").get_attribute("src")
    page.keyboard.press("1")
    see_slide(page, "/play/night-train/corridor", "The corridor is longer")
    assert page.locator("#picture img").get_attribute("src") != first


def test_works_on_a_phone_sized_screen(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(live_server.url + "/play/lighthouse/shore")
    page.wait_for_selector(PICTURE)
    picture, text = page.locator("#picture").bounding_box(), page.locator("#slide-text").bounding_box()
    assert picture["width"] > 300  # the picture fills the width
    assert text["y"] >= picture["y"] + picture["height"] - 1  # text below the picture, not squeezed beside it
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()


def test_the_next_picture_is_already_there_when_the_choice_is_clicked(page, live_server):
    page.goto(live_server.url + "/play/night-train/dining")
    page.wait_for_selector(PICTURE)
    # while the player reads, the painter paints ahead the slides this one's choices lead to
    live_server.wait_idle()
    page.get_by_role("button", name="Taste the soup").click()
    page.wait_for_url("**/play/night-train/soup")
    assert page.locator("#picture[sse-connect]").count() == 0  # nothing to wait for: it came with the slide
    assert page.locator("#picture img.final").get_attribute("src").startswith("data:image/webp;base64,")


def test_author_creates_a_story_sees_the_graph_update_and_a_stale_tab_is_refused(browser, live_server):
    from tests.support import ADMIN_PASSWORD

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(live_server.url + "/admin/")
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    assert "That password is not right." in page.content()
    page.fill("#password", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.get_by_role("link", name="Stories").click()
    page.fill("input[name=title]", "The Orchard")
    page.fill("input[name=slug]", "orchard")
    page.get_by_role("button", name="Create").click()
    page.wait_for_url("**/admin/stories/orchard")
    assert page.locator(".graph .node").count() == 2
    editor = page.locator(".yaml-form textarea")
    text = editor.input_value()
    second = context.new_page()  # a second tab opened on the same revision
    second.goto(live_server.url + "/admin/stories/orchard")
    added = text.replace(
        '    image: "a path disappearing into mist"\n',
        '    image: "a path disappearing into mist"\n    choices:\n      - text: Climb\n        to: tree\n',
    )
    added += "  tree:\n    text: |\n      From the tree you see the whole orchard.\n    image: \"an apple tree\"\n"
    editor.fill(added)
    page.locator(".graph .node").nth(2).wait_for()  # the graph updated as we typed
    assert page.locator(".graph .node").count() == 3
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Saved.")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-editor.png"), full_page=False)
    second.locator(".yaml-form textarea").fill(text.replace("The story begins here.", "Another start."))
    second.get_by_role("button", name="Save").click()
    second.wait_for_selector("text=Not saved: the story changed meanwhile")
    page.goto(live_server.url + "/play/orchard/next")
    assert "Climb" in page.content()
    context.close()


def test_author_adds_three_slides_tunes_a_picture_keeps_a_seed_and_a_player_sees_it(browser, live_server):
    page = authored_story(browser, live_server, "The Garden", "garden")
    # three new slides, each reached by a choice created on the spot from the slide before it
    previous = "next"
    for name, label in (("gate", "Open the gate"), ("pond", "Walk to the pond"), ("bench", "Sit on the bench")):
        page.goto(f"{live_server.url}/admin/stories/garden/slides/{previous}/edit")
        page.fill("textarea[name=text]", f"You are at the {previous}.")
        page.locator("input[name=choice_text]").first.fill(label)
        page.locator("select[name=choice_to]").first.select_option("__new__")
        page.locator("input[name=choice_new]").first.fill(name)
        page.get_by_role("button", name="Save slide").click()
        page.wait_for_url("**/admin/stories/garden")
        assert page.locator(f'.graph .node[data-slide="{name}"]').count() == 1  # the graph grew
        previous = name
    assert page.locator(".graph .node").count() == 5
    # tune the gate's picture: two seeds side by side, keep the second
    page.locator('.graph .node[data-slide="gate"]').click()  # a slide in the graph opens it
    page.wait_for_url("**/admin/stories/garden/slides/gate/edit")
    page.get_by_role("link", name="tune its picture").click()
    page.wait_for_url("**/admin/stories/garden/slides/gate")
    page.fill("textarea[name=image]", "an iron garden gate covered in ivy")
    page.fill("input[name=seed]", "500")
    page.fill("input[name=count]", "2")
    page.fill("input[name=steps]", "6")
    page.get_by_role("button", name="Paint previews").click()
    keep = page.get_by_role("button", name="Keep this one")
    keep.nth(1).wait_for()
    assert page.locator(".card.done img").count() == 2
    keep.nth(1).click()
    page.wait_for_selector("text=Kept seed 501")
    # a player plays it and sees the gate with its kept picture
    player = browser.new_context().new_page()
    player.set_default_timeout(60_000)
    player.goto(live_server.url + "/play/garden")
    player.get_by_role("button", name="Go on").click()
    player.get_by_role("button", name="Open the gate").click()
    player.wait_for_url("**/play/garden/gate")
    assert "You are at the gate." in player.locator("#slide-text").inner_text()
    player.wait_for_selector("#picture img.final")
    assert "seed 501" in player.locator("#picture .caption").inner_text()
    page.context.close()


HARBOUR = """\
title: The Harbour
start: quay
style: {steps: 4, width: 64, height: 64, seed: 3}
slides:
  quay:
    text: A quay at dawn.
    image: a stone quay at dawn, fishing boats
    choices:
      - {text: Wait for dusk, to: dusk}
  dusk:
    text: The same quay at dusk.
    image:
      prompt: the stone quay at dusk, lanterns lit
      from: quay   # the same place, a new moment
      strength: 0.5
"""


def test_author_compares_strengths_of_a_continuation_side_by_side_and_keeps_one(browser, live_server):
    page = authored_story(browser, live_server, "The Harbour", "harbour")
    page.locator(".yaml-form textarea").fill(HARBOUR)
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("text=Saved.")
    edge = page.locator('.graph path.edge.continuation[data-from="quay"][data-to="dusk"]')
    assert edge.count() == 1 and "dusk continues the picture of quay" in edge.locator("title").text_content()
    page.goto(live_server.url + "/admin/stories/harbour/slides/dusk")
    assert page.locator("select[name=image_from]").input_value() == "quay"
    page.fill("input[name=strengths]", "0.2, 0.8")
    page.get_by_role("button", name="Compare strengths").click()  # htmx: the previews arrive in place
    keep = page.get_by_role("button", name="Keep this one")
    keep.nth(1).wait_for()
    page.wait_for_selector(".card.done.source img[data-slide='quay']")  # the picture they continue, beside them
    assert [page.locator(".card.done[data-strength]").nth(i).get_attribute("data-strength") for i in range(2)] == [
        "0.2", "0.8"]
    assert page.locator(".card.done[data-strength='0.8'] figcaption strong").inner_text() == "strength 0.8"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "admin-compare-strengths.png"), full_page=True)
    seed = page.locator(".card.done[data-strength='0.8'] img").get_attribute("data-seed")
    page.locator(".card.done[data-strength='0.8']").get_by_role("button", name="Keep this one").click()
    page.wait_for_selector(f"text=Kept seed {seed}, painted from the picture of quay at strength 0.8")
    page.goto(live_server.url + "/admin/stories/harbour/slides/dusk/edit")
    assert page.locator("input[name=image_strength]").input_value() == "0.8"
    assert page.locator("select[name=image_from]").input_value() == "quay"
    page.context.close()


def test_the_shelf_shows_each_story_as_a_book_whose_cover_arrives_without_a_reload(page, live_server):
    from playwright.sync_api import expect

    (live_server.stories / "clockmaker.yaml").write_text(
        "title: The Clockmaker's Shop\ndescription: Every clock in the shop stopped at the same minute.\nstart: door\n"
        "style: {steps: 6}\n"
        "slides:\n  door:\n    text: The bell above the door rings once.\n"
        "    image: a dusty clockmaker's shop full of silent clocks, candlelight\n")
    response = page.goto(live_server.url + "/")
    # the page as sent: the new story's card has its title on a coloured ground while its cover is painted
    assert re.search(r'<div class="cover blank hue-\d" id="cover-clockmaker"', response.text())
    page.evaluate("window.sameDocument = true")
    cover = page.locator("#cover-clockmaker img")
    expect(cover).to_have_js_property("complete", True, timeout=300_000)
    assert cover.evaluate("img => img.naturalWidth") == 64  # the picture (64 px here), no wider than painted
    assert page.evaluate("window.sameDocument") is True  # swapped in: the page was not reloaded
    expect(page.locator(".shelf .cover.blank")).to_have_count(0, timeout=300_000)  # every story's cover came
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "shelf.png"))
    page.get_by_role("link", name="The Clockmaker's Shop").click()
    page.wait_for_url("**/play/clockmaker/door")
    assert page.locator("#picture img.final").count() == 1  # the cover was this first picture: it came at once


def test_the_shelf_fits_a_phone(browser, live_server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto(live_server.url + "/")
    books = page.locator(".shelf .book")
    first, second = books.nth(0).bounding_box(), books.nth(1).bounding_box()
    assert first["y"] == second["y"] and second["x"] > first["x"] + first["width"]  # two books side by side
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()
