"""The drop folder as the story intake reads it (issue 14 items 4, 6, 10-13; issue 16 item 4): only regular files
inside it, never a link's target in a reason, reasons of bounded size, a bounded batch per tick, and the owner of a
book id kept everywhere."""

import itertools
import json
import os

import pytest
import yaml

from bookbug_assets.input_files import MAX_MESSAGE_CHARS, MAX_PROBLEMS_SHOWN
from bookbug_assets.intake import FolderCursor, scan_folder_tick, story_for_book
from bookbug_assets.story_intake import StoryNotFound, TickBudget
from bookbug_assets.stories import StoryError, parse_story_bytes
from bookbug_assets.watched_folder import MAX_REASON_BYTES, list_entries, read_regular, write_reason
from tests.conftest import EXAMPLE

STYLES = {"soft-meadow"}


class Log:
    def __init__(self):
        self.lines = []

    def warning(self, message):
        self.lines.append(message)

    error = info = warning


def story(**changes) -> str:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    return yaml.safe_dump(data)


def age(path, seconds=60, offset_ns=0):
    """As if written `seconds` ago (the scan takes files once settled)."""
    stamp = int((os.path.getmtime(path) - seconds) * 1e9) + offset_ns
    os.utime(path, ns=(stamp, stamp), follow_symlinks=False)


def scan(folder, cursor=None, **kw):
    return scan_folder_tick(folder, STYLES, cursor or FolderCursor(), Log(), **kw)


# --- item 6: links, FIFOs and hard links are not read; nothing they point at reaches a reason ----------------------

def test_links_fifos_and_hard_links_get_a_reason_and_are_never_read(tmp_path):
    inbox, outside = tmp_path / "stories", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "secret.yaml").write_text("SECRETLINE_4242: root:$6$hash\nbook_id: leaked\n")
    (outside / "valid.yaml").write_text(story(book_id="outside-book"))
    (inbox / "leak.yaml").symlink_to(outside / "secret.yaml")
    (inbox / "valid-link.yaml").symlink_to(outside / "valid.yaml")
    os.mkfifo(inbox / "pipe.yaml")
    os.link(outside / "valid.yaml", inbox / "hard.yaml")
    result = scan(inbox, settle_s=0)
    assert result.accepted == [], [a.source.name for a in result.accepted]
    reasons = dict(result.rejected)
    assert set(reasons) == {"leak.yaml", "valid-link.yaml", "pipe.yaml", "hard.yaml"}
    assert "symbolic link" in reasons["leak.yaml"] and "symbolic link" in reasons["valid-link.yaml"]
    assert "FIFO" in reasons["pipe.yaml"] and "hard links" in reasons["hard.yaml"]
    assert not any("SECRETLINE" in r or "leaked" in r for r in reasons.values()), reasons
    # Answered once: the next tick has nothing to say about them.
    assert not scan(inbox, result.cursor, settle_s=0).rejected


def test_a_name_swapped_for_a_link_after_the_listing_is_still_refused(tmp_path):
    (tmp_path / "secret.txt").write_text("SECRETLINE_4242: x\n")
    (tmp_path / "a.yaml").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(Exception, match="symbolic link"):
        read_regular(tmp_path, "a.yaml", 1000)
    with pytest.raises(Exception, match="not a file name"):
        read_regular(tmp_path, "../secret.txt", 1000)


def test_reasons_are_never_written_through_a_linked_rejected_folder(tmp_path):
    inbox, elsewhere = tmp_path / "stories", tmp_path / "elsewhere"
    inbox.mkdir()
    elsewhere.mkdir()
    (inbox / "rejected").symlink_to(elsewhere, target_is_directory=True)
    log = Log()
    assert write_reason(inbox, "bad.yaml", "uploader-controlled text", log) is None
    assert list(elsewhere.iterdir()) == []
    assert "link" in log.lines[0]


def test_hidden_files_and_subfolders_are_not_uploads(tmp_path):
    (tmp_path / ".pip.yaml.swp").write_text("x")
    (tmp_path / ".rsync.XXXXXX").write_text(story())
    (tmp_path / "drafts").mkdir()
    (tmp_path / "drafts" / "x.yaml").write_text(story())
    assert list_entries(tmp_path) == []


# --- item 13: reasons of bounded size, field names clipped and escaped ---------------------------------------------

def test_reasons_are_capped_at_50_problems_and_8_kb(tmp_path):
    data = json.loads(json.dumps(yaml.safe_load(EXAMPLE.read_text())))
    data.update({f"unknown_{i}_" + "k" * 120: i for i in range(5000)})
    with pytest.raises(StoryError) as info:
        parse_story_bytes(json.dumps(data).encode(), "many.json", STYLES)
    assert len(info.value.problems) == 5000  # every problem is kept for a caller that wants them
    message = str(info.value)
    assert len(message) <= MAX_MESSAGE_CHARS and message.count("Extra inputs") <= MAX_PROBLEMS_SHOWN
    assert "more problems" in message and "k" * 100 not in message
    where = write_reason(tmp_path, "many.json", message * 3)
    assert where.stat().st_size <= MAX_REASON_BYTES


def test_sixty_thousand_keys_are_refused_at_the_value_limit():
    text = EXAMPLE.read_text() + "".join(f"k{i}: {i}\n" for i in range(60_000))
    with pytest.raises(StoryError, match="more than 10,000 values"):
        parse_story_bytes(text.encode(), "keys.yaml", STYLES)


# --- item 4: a bounded batch per tick, the cursor advancing per file ---------------------------------------------

def test_a_tick_takes_a_bounded_batch_oldest_first_and_the_cursor_carries_on(tmp_path):
    for i in range(7):
        (tmp_path / f"s{i}.yaml").write_text(story(book_id=f"book-{i}"))
        age(tmp_path / f"s{i}.yaml", offset_ns=i)  # s0 oldest
    cursor, taken = FolderCursor(), []
    for _ in range(3):
        result = scan(tmp_path, cursor, budget=TickBudget(max_files=3))
        taken.append([a.source.name for a in result.accepted])
        cursor = result.cursor
    assert taken == [["s0.yaml", "s1.yaml", "s2.yaml"], ["s3.yaml", "s4.yaml", "s5.yaml"], ["s6.yaml"]]
    # The time budget stops a tick too (a clock that says the budget is spent after the first file).
    for i in range(7):
        (tmp_path / f"s{i}.yaml").write_text(story(book_id=f"book-{i}", title="Changed"))
        age(tmp_path / f"s{i}.yaml", offset_ns=i)
    ticks = itertools.chain([0.0], itertools.repeat(99.0))
    result = scan(tmp_path, cursor, budget=TickBudget(max_files=10, seconds=3, clock=lambda: next(ticks)))
    assert len(result.accepted) == 1 and result.deferred == 6


# --- items 10 + 11: one file's failure is its own; the owner stays the owner ------------------------------------

def test_poison_files_and_a_duplicate_never_break_or_take_the_owners_book(tmp_path):
    (tmp_path / "pip-and-the-lantern.yaml").write_text(EXAMPLE.read_text())
    age(tmp_path / "pip-and-the-lantern.yaml", 120)
    (tmp_path / "aaa.yaml").write_text(story(title="Hijacked"))  # same book_id, newer
    (tmp_path / "date.yaml").write_text(story(book_id="dated").replace("title:", "when: 2023-02-30\ntitle:", 1))
    (tmp_path / "deep.yaml").write_text("book_id: " + "[" * 1000 + "]" * 1000 + "\n")
    found = story_for_book(tmp_path, "pip-and-the-lantern", STYLES)
    assert found.name == "pip-and-the-lantern.yaml" and found.story.title != "Hijacked"
    # The file the book was built from stays its source, even when a newer or older file claims the id.
    age(tmp_path / "aaa.yaml", 600)
    recorded = ("pip-and-the-lantern.yaml", found.sha256)
    assert story_for_book(tmp_path, "pip-and-the-lantern", STYLES, recorded=recorded).story.title != "Hijacked"
    # A run tagged with the duplicate is refused while the owner's file is as it was built.
    with pytest.raises(StoryNotFound, match="which pip-and-the-lantern.yaml owns"):
        story_for_book(tmp_path, "pip-and-the-lantern", STYLES, tagged="aaa.yaml", recorded=recorded)
    # The owner's own broken file is this book's one-line failure, not another file's.
    (tmp_path / "pip-and-the-lantern.yaml").write_text(EXAMPLE.read_text().replace("seed: 2024", "seed: [1"))
    with pytest.raises(StoryNotFound, match="pip-and-the-lantern.yaml"):
        story_for_book(tmp_path, "pip-and-the-lantern", STYLES, tagged="pip-and-the-lantern.yaml")


def test_an_unreadable_file_gets_one_reason(tmp_path, monkeypatch):
    import bookbug_assets.intake as intake

    (tmp_path / "locked.yaml").write_text(story())
    age(tmp_path / "locked.yaml")

    def denied(folder, name, max_bytes):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(intake, "read_regular", denied)  # root reads anything: chmod 000 would not show it
    first = scan(tmp_path)
    assert [n for n, _ in first.rejected] == ["locked.yaml"] and "cannot be read" in first.rejected[0][1]
    assert scan(tmp_path, first.cursor).rejected == []


def test_a_run_tagged_with_an_outside_file_reads_it_and_quotes_nothing_of_a_bad_one(tmp_path):
    """`bookbug book /some/where/x.yaml` tags its run with the absolute path (the CLI validated the file first)."""
    inbox, outside = tmp_path / "stories", tmp_path / "outside"
    inbox.mkdir()
    outside.mkdir()
    (outside / "mine.yaml").write_text(story(book_id="outside-folder"))
    found = story_for_book(inbox, "outside-folder", STYLES, tagged=str(outside / "mine.yaml"))
    assert found.name == str(outside / "mine.yaml")
    # Built from there last time: a run without a tag (the UI) reads it again.
    assert story_for_book(inbox, "outside-folder", STYLES, recorded=(found.name, found.sha256)).sha256 == found.sha256
    (outside / "secret.yaml").write_text("SECRETLINE_4242: root:$6$hash\n")
    os.mkfifo(outside / "pipe.yaml")
    for bad in ("secret.yaml", "pipe.yaml"):
        with pytest.raises(StoryNotFound) as info:
            story_for_book(inbox, "outside-folder", STYLES, tagged=str(outside / bad))
        assert "SECRETLINE" not in str(info.value) and "bookbug validate" in str(info.value)
