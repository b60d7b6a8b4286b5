"""The stories folder: listing, broken stories, reloading edits."""

import os
import time

import pytest

from game.library import InvalidStory
from game.library import StaleRevision
from game.library import StoryBroken
from game.library import StoryExists
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


def edited(text, old="title: The Lighthouse Keeper", new="title: The Lamp"):
    assert old in text
    return text.replace(old, new)


def test_save_is_checked_against_the_revision_it_started_from(stories_dir, tmp_path):
    library = StoryLibrary(stories_dir, tmp_path / "revisions")
    text, revision = library.text("lighthouse")
    saved = library.save("lighthouse", edited(text), revision)
    assert saved.title == "The Lamp"
    assert "# The Lighthouse Keeper" in (stories_dir / "lighthouse.yaml").read_text()  # comments kept as written
    with pytest.raises(StaleRevision) as info:  # a second tab still holds the old revision
        library.save("lighthouse", edited(text, new="title: Other"), revision)
    assert info.value.current == saved.revision
    assert "title: The Lamp" in info.value.text  # both versions can be shown
    assert library.get("lighthouse").title == "The Lamp"


@pytest.mark.slow
def test_an_invalid_story_is_not_saved(stories_dir, tmp_path):
    library = StoryLibrary(stories_dir, tmp_path / "revisions")
    text, revision = library.text("lighthouse")
    with pytest.raises(InvalidStory) as info:
        library.save("lighthouse", text.replace("        to: cliff_path\n", "        to: cliff_pth\n", 1), revision)
    assert "goes to 'cliff_pth', which is not a slide (did you mean 'cliff_path'?)" in str(info.value)
    assert library.text("lighthouse") == (text, revision)


def test_every_save_keeps_the_previous_revision_which_can_be_restored(stories_dir, tmp_path):
    library = StoryLibrary(stories_dir, tmp_path / "revisions")
    text, first = library.text("lighthouse")
    second = library.save("lighthouse", edited(text), first).revision
    library.save("lighthouse", edited(text, new="title: Third"), second)
    kept = library.revisions("lighthouse")
    assert [r.revision for r in kept] == [second, first]
    library.restore("lighthouse", kept[-1].id)
    assert library.text("lighthouse") == (text, first)
    assert len(library.revisions("lighthouse")) == 3  # the replaced "Third" is kept too


def test_only_the_newest_revisions_are_kept_and_an_unknown_one_is_not_found(stories_dir, tmp_path):
    library = StoryLibrary(stories_dir, tmp_path / "revisions", keep=2)
    text, revision = library.text("lighthouse")
    for number in range(4):
        time.sleep(0.002)  # a revision's name starts with its millisecond
        revision = library.save("lighthouse", edited(text, new=f"title: Number {number}"), revision).revision
    kept = library.revisions("lighthouse")
    assert len(kept) == 2 and len(list((tmp_path / "revisions" / "lighthouse").iterdir())) == 2
    assert "title: Number 2" in library.revision_text("lighthouse", kept[0].id)
    assert "title: Number 1" in library.revision_text("lighthouse", kept[1].id)
    with pytest.raises(StoryNotFound):
        library.revision_text("lighthouse", "0000000000000-000000000000")


def test_create_duplicate_rename_and_delete_with_a_way_back(stories_dir, tmp_path):
    library = StoryLibrary(stories_dir, tmp_path / "revisions")
    text, revision = library.text("lighthouse")
    library.duplicate("lighthouse", "copy")
    with pytest.raises(StoryExists):
        library.create("copy", text)
    renamed = library.rename("copy", "renamed", library.text("copy")[1])
    assert renamed.slug == "renamed" and not (stories_dir / "copy.yaml").exists()
    gone = library.delete("renamed", renamed.revision)
    with pytest.raises(StoryNotFound):
        library.get("renamed")
    library.restore("renamed", gone.id)
    assert library.get("renamed").title == "The Lighthouse Keeper"


def test_writes_are_atomic_and_leave_no_temporary_files(stories_dir, tmp_path):
    library = StoryLibrary(stories_dir, tmp_path / "revisions")
    text, revision = library.text("lighthouse")
    library.save("lighthouse", edited(text), revision)
    assert sorted(p.name for p in stories_dir.iterdir()) == ["lighthouse.yaml", "night-train.yaml"]


def test_a_file_over_the_size_cap_is_listed_broken_without_being_read_and_not_opened(stories_dir):
    from game.library import StoryTooLarge

    (stories_dir / "huge.yaml").write_bytes(b"title: Huge\n" + b"#" * (1024 * 1024))
    library = StoryLibrary(stories_dir)
    entry = library.entry("huge")
    assert entry.broken and "huge.yaml: is 1,048,588 bytes; a story file may be at most 1,048,576 bytes" in str(
        entry.errors[0])
    with pytest.raises(StoryTooLarge):
        library.text("huge")
    assert not library.entry("lighthouse").broken


def test_saves_keep_the_files_mode(stories_dir):
    library = StoryLibrary(stories_dir)
    path = stories_dir / "lighthouse.yaml"
    path.chmod(0o604)
    text, revision = library.text("lighthouse")
    library.save("lighthouse", text.replace("cold shore", "grey shore"), revision)
    assert path.stat().st_mode & 0o777 == 0o604
    umask = os.umask(0)
    os.umask(umask)
    library.create("fresh", text)
    assert (stories_dir / "fresh.yaml").stat().st_mode & 0o777 == 0o666 & ~umask
