"""The stories folder: listing, broken stories, reloading edits."""

import os

import pytest

from game.library import StoryBroken
from game.library import StoryLibrary
from game.library import StoryNotFound


def test_lists_shipped_stories(stories_dir):
    entries = StoryLibrary(stories_dir).entries()
    assert {e.slug for e in entries} == {"lighthouse", "night-train"}
    assert all(not e.broken for e in entries)


def test_a_broken_story_is_listed_with_its_errors_and_the_others_still_play(stories_dir):
    (stories_dir / "broken.yaml").write_text("title: Broken\nstart: nowhere\nslides:\n  a:\n    text: hi\n")
    library = StoryLibrary(stories_dir)
    entries = library.entries()
    assert [e.slug for e in entries][-1] == "broken"
    broken = library.entry("broken")
    assert broken.broken
    assert "stories/broken.yaml, line 2, field 'start': no slide called 'nowhere'" in str(broken.errors[0])
    with pytest.raises(StoryBroken):
        library.get("broken")
    assert library.get("lighthouse").title == "The Lighthouse Keeper"


def test_a_non_utf8_file_is_broken_not_fatal(stories_dir):
    (stories_dir / "binary.yaml").write_bytes(b"\xff\xfe\x00title")
    entry = StoryLibrary(stories_dir).entry("binary")
    assert "is not UTF-8 text" in str(entry.errors[0])


def test_edits_on_disk_are_picked_up_without_a_restart(stories_dir):
    library = StoryLibrary(stories_dir)
    first = library.entry("lighthouse")
    path = stories_dir / "lighthouse.yaml"
    path.write_text(path.read_text().replace("title: The Lighthouse Keeper", "title: The Lamp"))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    second = library.entry("lighthouse")
    assert second.title == "The Lamp"
    assert second.revision != first.revision
    assert library.entry("lighthouse") is second  # unchanged files are not parsed again


@pytest.mark.parametrize("slug", ["../etc/passwd", "Lighthouse", "", "a/b", "x" * 80, "missing"])
def test_bad_or_unknown_slugs_are_not_found(stories_dir, slug):
    with pytest.raises(StoryNotFound):
        StoryLibrary(stories_dir).get(slug)


def test_a_missing_folder_lists_nothing(tmp_path):
    assert StoryLibrary(tmp_path / "nope").entries() == []
