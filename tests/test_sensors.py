"""The story folder sensor: exact page requests, a cursor, and rejected files with reasons."""

import json
import os
import shutil
import time

import dagster as dg
import pytest
import yaml

from bookbug_assets.defs.intake.sensors import story_folder_sensor
from tests.conftest import EXAMPLE


def mark_style_built(workspace, style="soft-meadow"):
    """As if the style sensor's run had built the style (its style_lora profile is in the store): the story sensor
    holds back a book in a style that is not built."""
    from bookbug_assets.layout import style_profile_key
    from bookbug_assets.storage import LocalArtifactStore

    LocalArtifactStore(workspace["outputs"]).write_json(style_profile_key(style), {
        "style": style, "prompt_prefix": "", "trigger_word": "", "palette": [], "dataset_sha256": "0" * 64,
        "lora": None})


@pytest.fixture(autouse=True)
def _soft_meadow_built(workspace):
    mark_style_built(workspace)


def sensor_state(defs, cursor):
    """The per-file state a cursor names (it lives in the store; the cursor is a pointer)."""
    from bookbug_assets.sensor_state import load_sensor_state

    return json.loads(load_sensor_state(defs.resources["storage"].store(), cursor, None))


def settle(folder):
    """Files written in the last 10 s, as if written a minute earlier (order kept): the sensor takes a file only
    once it has settled (intake.SETTLE_S), and these tests drop finished files."""
    for path in folder.iterdir():
        info = path.lstat()
        if path.is_file() and not path.is_symlink() and time.time_ns() - info.st_mtime_ns < 10 * 10**9:
            os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns - 60 * 10**9))


def tick(defs, instance, cursor=None, settled=True):
    if settled:
        settle(defs.resources["storage"].stories_path)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"storage": defs.resources["storage"]})
    # evaluate_tick applies the checks the daemon applies (a backfill request must fit the target).
    data = story_folder_sensor.evaluate_tick(context)
    return dg.SensorResult(run_requests=data.run_requests, skip_reason=data.skip_message, cursor=data.cursor,
                           dynamic_partitions_requests=data.dynamic_partitions_requests)


def subset_keys(run_request):
    subset = run_request.asset_graph_subset
    return {(apk.asset_key.to_user_string(), apk.partition_key) for apk in subset.iterate_asset_partitions()}


def write_story(folder, name, **changes):
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    (folder / name).write_text(yaml.safe_dump(data))
    return data


def test_new_story_gives_partitions_and_exactly_its_pages(workspace, defs_for, instance):
    pages = yaml.safe_load(EXAMPLE.read_text())["pages"][:5]
    write_story(workspace["stories"], "short.yaml", book_id="short-book", pages=pages)
    defs = defs_for()
    result = tick(defs, instance)
    adds = {r.partitions_def_name: sorted(r.partition_keys) for r in result.dynamic_partitions_requests}
    assert adds == {"books": ["short-book"], "page_slots": ["001", "002", "003", "004", "005"]}
    assert len(result.run_requests) == 1
    keys = subset_keys(result.run_requests[0])
    assert {p for a, p in keys if a == "book_pages"} == {f"short-book|00{i}" for i in range(1, 6)}
    assert {a for a, p in keys if p == "short-book"} == {"story", "sprite_sheet", "hero_page", "book_pdf"}

    # An unchanged file is never run again; a changed one is.
    again = tick(defs, instance, cursor=result.cursor)
    assert not again.run_requests and again.skip_reason
    write_story(workspace["stories"], "short.yaml", book_id="short-book", pages=pages, title="A new title")
    changed = tick(defs, instance, cursor=result.cursor)
    assert len(changed.run_requests) == 1


def test_malformed_stories_are_rejected_with_reasons_and_good_ones_still_run(workspace, defs_for, instance):
    folder = workspace["stories"]
    shutil.copy(EXAMPLE, folder / "good.yaml")
    data = yaml.safe_load(EXAMPLE.read_text())
    (folder / "broken.json").write_text('{"book_id": "x", ')
    (folder / "broken.yaml").write_text("title: [oops\n")
    (folder / "missing.json").write_text(json.dumps({k: v for k, v in data.items() if k != "title"}))
    (folder / "empty-pages.json").write_text(json.dumps({**data, "book_id": "e", "pages": []}))
    (folder / "huge-pages.json").write_text(json.dumps({**data, "book_id": "h", "pages": data["pages"] * 42}))
    (folder / "style.json").write_text(json.dumps({**data, "book_id": "s", "style": "noir"}))
    (folder / "escape.json").write_text(json.dumps({**data, "book_id": "../../etc"}))
    (folder / "junk.yaml").write_bytes(bytes(range(256)) * 8)
    with (folder / "fifty-mb.json").open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    (folder / "notes.txt").write_text("not a story")

    result = tick(defs_for(), instance)
    assert [subset_keys(r) and {p for a, p in subset_keys(r) if a == "story"} for r in result.run_requests] == \
        [{"pip-and-the-lantern"}]
    reasons = {p.name: p.read_text() for p in (folder / "rejected").iterdir()}
    expected = {"broken.json": "invalid JSON", "broken.yaml": "invalid YAML", "missing.json": "title",
                "empty-pages.json": "pages", "huge-pages.json": "pages", "style.json": "unknown style 'noir'",
                "escape.json": "book_id", "junk.yaml": "", "fifty-mb.json": "must be under",
                "notes.txt": "unsupported extension"}
    for name, words in expected.items():
        reason = reasons[f"{name}.reason.txt"]
        assert name in reason and words in reason, reason
    assert (folder / "broken.json").exists(), "a rejected upload is never deleted"
    # Rejections are not re-reported every tick.
    assert not tick(defs_for(), instance, cursor=result.cursor).run_requests


def test_two_files_claiming_one_book_id(workspace, defs_for, instance):
    shutil.copy(EXAMPLE, workspace["stories"] / "a.yaml")
    shutil.copy(EXAMPLE, workspace["stories"] / "b.yaml")
    result = tick(defs_for(), instance)
    assert len(result.run_requests) == 1
    assert "already used by a.yaml" in (workspace["stories"] / "rejected" / "b.yaml.reason.txt").read_text()


def test_a_later_file_cannot_take_a_book_id_another_file_holds(workspace, defs_for, instance):
    defs, folder = defs_for(), workspace["stories"]
    shutil.copy(EXAMPLE, folder / "a.yaml")
    first = tick(defs, instance)
    write_story(folder, "b.yaml", title="Someone else's book")  # same book_id as a.yaml, a tick later
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests  # the book a.yaml made is not rebuilt from b.yaml
    assert "already used by a.yaml" in (folder / "rejected" / "b.yaml.reason.txt").read_text()
    (folder / "a.yaml").unlink()  # the owner goes away: the book_id is free
    write_story(folder, "b.yaml", title="Someone else's book, now the only one")
    third = tick(defs, instance, cursor=second.cursor)
    assert len(third.run_requests) == 1


def test_the_sensor_never_raises_on_a_damaged_cursor_or_an_unwritable_rejected_folder(workspace, defs_for,
                                                                                      instance):
    shutil.copy(EXAMPLE, workspace["stories"] / "good.yaml")
    (workspace["stories"] / "broken.json").write_text("{")
    (workspace["stories"] / "rejected").write_text("a file where the folder should be")
    result = tick(defs_for(), instance, cursor='{"not_files": 1}')
    assert len(result.run_requests) == 1  # the good story still runs; the bad one is logged


# --- issue 14 item 4: a flood of large files is taken a bounded batch at a time -----------------------------------

def _processed(before: dict, after: dict) -> set:
    return {name for name, fingerprint in after.items() if before.get(name) != fingerprint}


def test_a_flood_of_large_stories_is_taken_in_bounded_batches_and_a_later_story_still_runs(workspace, defs_for,
                                                                                           instance):
    from bookbug_assets.story_intake import MAX_FILES_PER_TICK

    folder = workspace["stories"]
    base = yaml.safe_load(EXAMPLE.read_text())
    pages = [{**base["pages"][i % 12], "scene": ("A long, careful scene note for the illustrator. " * 40)[:2000]}
             for i in range(64)]
    flood = MAX_FILES_PER_TICK + 12
    for i in range(flood):
        write_story(folder, f"flood-{i:03d}.yaml", book_id=f"flood-{i:03d}", pages=pages)
    assert min(p.stat().st_size for p in folder.iterdir()) > 80_000
    settle(folder)
    write_story(folder, "late.yaml", book_id="late-story")  # dropped after the flood, newest
    defs, cursor, seen, ticks, books = defs_for(), None, {}, 0, []
    while ticks < flood + 1:
        result = tick(defs, instance, cursor=cursor)
        ticks += 1
        files = sensor_state(defs, result.cursor)["files"]
        taken = _processed(seen, files)
        if not taken:
            break
        assert 1 <= len(taken) <= MAX_FILES_PER_TICK, len(taken)  # bounded, and never stuck
        books += [p for r in result.run_requests for a, p in subset_keys(r) if a == "story"]
        cursor, seen = result.cursor, files
    assert len(seen) == flood + 1 and ticks >= 2
    assert sorted(books) == sorted([f"flood-{i:03d}" for i in range(flood)] + ["late-story"])
    assert len(result.cursor) < 200, "the Dagster cursor names the state; it does not hold a line per file"


# --- issue 14 item 13: a file still being written is not taken -------------------------------------------------

def test_a_half_written_upload_is_taken_only_once_it_has_settled(workspace, defs_for, instance):
    folder, defs = workspace["stories"], defs_for()
    text = EXAMPLE.read_text()
    half = text[:text.index("  - text:", text.index("pages:") + 200)]  # a valid prefix: the first pages only
    (folder / "upload.yaml").write_text(half)
    first = tick(defs, instance, settled=False)
    assert not first.run_requests and "still being written" in first.skip_reason.skip_message
    (folder / "upload.yaml").write_text(text)  # the upload finishes
    second = tick(defs, instance, cursor=first.cursor, settled=False)
    assert not second.run_requests
    third = tick(defs, instance, cursor=second.cursor)  # a minute later
    assert len(third.run_requests) == 1
    assert len({p for a, p in subset_keys(third.run_requests[0]) if a == "book_pages"}) == 12


# --- issue 14 items 6 and 12 through the sensor -----------------------------------------------------------------

def test_a_linked_rejected_folder_is_never_written_through(workspace, defs_for, instance, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (workspace["stories"] / "rejected").symlink_to(elsewhere, target_is_directory=True)
    (workspace["stories"] / "broken.json").write_text('{"title": "uploader text"')
    shutil.copy(EXAMPLE, workspace["stories"] / "good.yaml")
    result = tick(defs_for(), instance)
    assert len(result.run_requests) == 1 and list(elsewhere.iterdir()) == []


def test_linked_reviews_are_refused_with_a_reason_that_quotes_nothing(workspace, defs_for, instance, tmp_path):
    from bookbug_assets.defs.review.sensors import review_sensor

    reviews = workspace["root"] / "reviews"
    reviews.mkdir()
    (tmp_path / "secret.txt").write_text("SECRETLINE_4242: x\n")
    (reviews / "pip-and-the-lantern.yaml").symlink_to(tmp_path / "secret.txt")
    defs = defs_for()
    context = dg.build_sensor_context(instance=instance, definitions=defs,
                                      resources={"storage": defs.resources["storage"]})
    data = review_sensor.evaluate_tick(context)
    reason = (reviews / "rejected" / "pip-and-the-lantern.yaml.reason.txt").read_text()
    assert "symbolic link" in reason and "SECRETLINE" not in reason
    again = review_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs,
                                                                cursor=data.cursor,
                                                                resources={"storage": defs.resources["storage"]}))
    assert not again.run_requests


# --- issue 16 items 4 and 7 ---------------------------------------------------------------------------------------

def test_a_story_waiting_for_its_style_is_taken_when_the_style_appears(workspace, defs_for, instance):
    folder, defs = workspace["stories"], defs_for()
    write_story(folder, "chibi.yaml", book_id="chibi-book", style="chibi")
    first = tick(defs, instance)
    reason = folder / "rejected" / "chibi.yaml.reason.txt"
    assert not first.run_requests and "unknown style 'chibi'" in reason.read_text()
    shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "chibi")
    mark_style_built(workspace, "chibi")
    second = tick(defs, instance, cursor=first.cursor)  # the file itself did not change
    assert [{p for a, p in subset_keys(r) if a == "story"} for r in second.run_requests] == [{"chibi-book"}]
    assert not reason.exists(), "a stale reason file stays after the story is accepted"


def test_touching_a_story_requests_its_backfill_again(workspace, defs_for, instance):
    folder, defs = workspace["stories"], defs_for()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    first = tick(defs, instance)
    assert len(first.run_requests) == 1
    assert not tick(defs, instance, cursor=first.cursor).run_requests
    os.utime(folder / EXAMPLE.name)  # `touch`: same bytes, new mtime
    touched = tick(defs, instance, cursor=first.cursor)
    assert len(touched.run_requests) == 1 and touched.run_requests[0].tags["bookbug/reason"] == "story touched"


def _built_as_if_by_make_demo(workspace, name=EXAMPLE.name):
    import hashlib

    from bookbug_assets.layout import StoryRecord, pdf_key, story_key
    from bookbug_assets.stories import load_story_file
    from bookbug_assets.storage import LocalArtifactStore

    store = LocalArtifactStore(workspace["outputs"])
    path = workspace["stories"] / name
    parsed = load_story_file(path, {"soft-meadow"})
    store.write_json(story_key(parsed.book_id), StoryRecord(source=name, sha256=hashlib.sha256(
        path.read_bytes()).hexdigest(), story=parsed).model_dump(mode="json"))
    store.write_bytes(pdf_key(parsed.book_id), b"%PDF-1.4 built")


def test_a_book_make_demo_built_is_not_backfilled_again_on_the_first_tick(workspace, defs_for, instance):
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    _built_as_if_by_make_demo(workspace)
    first = tick(defs_for(), instance)
    assert not first.run_requests, [r.tags for r in first.run_requests]
    adds = {r.partitions_def_name: list(r.partition_keys) for r in first.dynamic_partitions_requests}
    assert adds["books"] == ["pip-and-the-lantern"]  # the UI still shows the book


def test_the_file_a_book_was_built_from_keeps_it_against_an_older_duplicate(workspace, defs_for, instance):
    folder = workspace["stories"]
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    _built_as_if_by_make_demo(workspace)
    write_story(folder, "aaa.yaml", title="Hijacked")  # same book_id
    stamp = (folder / EXAMPLE.name).stat().st_mtime_ns - 3600 * 10**9
    os.utime(folder / "aaa.yaml", ns=(stamp, stamp))  # even an older file does not take it
    result = tick(defs_for(), instance)
    assert not result.run_requests
    assert "already used by pip-and-the-lantern.yaml" in (folder / "rejected" / "aaa.yaml.reason.txt").read_text()


# --- issue 14 items 10 and 11: the story asset reads the owner's file whatever else is in the folder -----------

def test_the_story_step_reads_the_owners_file_past_poison_and_duplicates(workspace, defs_for, instance):
    from bookbug_assets.defs.book_runs import _assets
    from bookbug_assets.layout import load_story

    folder, defs = workspace["stories"], defs_for()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    first = tick(defs, instance)
    for add in first.dynamic_partitions_requests:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    write_story(folder, "aaa.yaml", title="Hijacked")
    (folder / "date.yaml").write_text(EXAMPLE.read_text().replace("title:", "when: 2023-02-30\ntitle:", 1))
    (folder / "deep.yaml").write_text("book_id: " + "[" * 1000 + "]" * 1000 + "\n")
    second = tick(defs, instance, cursor=first.cursor)
    assert not second.run_requests
    store = defs.resources["storage"].store()

    def materialize(tags):
        return dg.materialize(_assets(defs, "story"), instance=instance, resources=dict(defs.resources),
                              partition_key="pip-and-the-lantern", tags=tags, raise_on_error=False)

    assert materialize(first.run_requests[0].tags).success  # the sensor's run
    assert materialize({}).success  # a run from the UI or `bookbug regenerate`: no tag
    assert load_story(store, "pip-and-the-lantern").title != "Hijacked"
    hijack = materialize({"bookbug/story_file": "aaa.yaml"})
    assert not hijack.success
    assert load_story(store, "pip-and-the-lantern").title != "Hijacked"


# --- issue 13 item 6: the sensor at volume ---------------------------------------------------------------------

def test_one_backfill_per_tick_for_every_new_book_and_each_reads_its_own_file(workspace, defs_for, instance):
    from bookbug_assets.defs.book_runs import _assets
    from bookbug_assets.layout import load_story, load_story_record
    from bookbug_assets.story_intake import requested_source

    folder, defs = workspace["stories"], defs_for()
    pages = yaml.safe_load(EXAMPLE.read_text())["pages"]
    sizes = {f"book-{i}": 3 + i for i in range(5)}
    for book, n in sizes.items():
        write_story(folder, f"{book}.yaml", book_id=book, title=f"Title of {book}", pages=pages[:n])
    result = tick(defs, instance)
    assert len(result.run_requests) == 1, "one backfill for the tick, not one per story"
    request = result.run_requests[0]
    keys = subset_keys(request)
    assert {p for a, p in keys if a == "story"} == set(sizes)
    assert {p for a, p in keys if a == "book_pages"} == {f"{b}|{i:03d}" for b, n in sizes.items()
                                                         for i in range(1, n + 1)}  # real pages, no empty slots
    assert ("generation_ledger", None) in keys and request.tags["bookbug/books"] == "5"
    assert "bookbug/story_file" not in request.tags  # every run of the backfill would carry it
    store = defs.resources["storage"].store()
    assert {b: requested_source(store, b)[0] for b in sizes} == {b: f"{b}.yaml" for b in sizes}

    for add in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))
    for book in ("book-1", "book-3"):  # the story step of a run in that backfill: its tags name no file
        run = dg.materialize(_assets(defs, "story"), instance=instance, resources=dict(defs.resources),
                             partition_key=book, tags=request.tags)
        assert run.success
        assert load_story(store, book).title == f"Title of {book}"
        assert load_story_record(store, book).source == f"{book}.yaml"
        assert requested_source(store, book) is None, "the request record goes once the book is built from it"


def test_the_cursor_stays_small_and_the_state_keeps_only_files_still_there(workspace, defs_for, instance):
    from bookbug_assets.sensor_state import KEEP, STATE_PREFIX

    folder, defs = workspace["stories"], defs_for()
    for i in range(25):
        write_story(folder, f"s{i:02d}.yaml", book_id=f"s{i:02d}")
    cursor = None
    for _ in range(3):  # 20 files a tick
        cursor = tick(defs, instance, cursor=cursor).cursor
    assert len(sensor_state(defs, cursor)["files"]) == 25 and len(cursor) < 200
    for i in range(10):
        (folder / f"s{i:02d}.yaml").unlink()
    for i in range(KEEP + 3):  # every tick a change, so a new state version
        write_story(folder, f"new{i}.yaml", book_id=f"new-{i}")
        cursor = tick(defs, instance, cursor=cursor).cursor
    state = sensor_state(defs, cursor)
    assert len(state["files"]) == 15 + KEEP + 3 and "s00.yaml" not in state["files"]
    assert len(cursor) < 200
    versions = defs.resources["storage"].store().list(f"{STATE_PREFIX}/story_folder_sensor")
    assert len(versions) <= KEEP + 1, versions


def test_an_older_inline_cursor_is_read_and_a_lost_state_starts_afresh(workspace, defs_for, instance):
    folder, defs = workspace["stories"], defs_for()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    settle(folder)
    from bookbug_assets.intake import FolderCursor, scan_folder_tick

    inline = scan_folder_tick(folder, {"soft-meadow"}, FolderCursor(), None).cursor.dumps()  # what 1.x stored
    assert not tick(defs, instance, cursor=inline).run_requests
    lost = json.dumps({"state": "intake/sensor-state/story_folder_sensor/000000000009-deadbeefdeadbeef.json",
                       "seq": 9})
    assert len(tick(defs, instance, cursor=lost).run_requests) == 1


# --- issue 16: a book whose style is new waits until the style is built ---------------------------------------

def test_a_book_in_a_style_not_built_yet_waits_and_is_requested_once_it_is_built(workspace, defs_for, instance,
                                                                                  capfd):
    folder, defs = workspace["stories"], defs_for()
    shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "chibi")  # valid, not built
    write_story(folder, "chibi.yaml", book_id="chibi-book", style="chibi")
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)  # soft-meadow is built: this one runs now
    first = tick(defs, instance)
    assert [{p for a, p in subset_keys(r) if a == "story"} for r in first.run_requests] == [{"pip-and-the-lantern"}]
    assert "waits for style 'chibi'" in capfd.readouterr().err
    assert not (folder / "rejected" / "chibi.yaml.reason.txt").exists(), "a valid story is not rejected"
    assert not tick(defs, instance, cursor=first.cursor).run_requests  # still not built: still waiting
    mark_style_built(workspace, "chibi")  # the style sensor's run finished
    built = tick(defs, instance, cursor=first.cursor)
    assert [{p for a, p in subset_keys(r) if a == "story"} for r in built.run_requests] == [{"chibi-book"}]
    assert built.run_requests[0].tags["bookbug/reason"] == "new story"
