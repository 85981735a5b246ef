"""The story folder sensor: exact page requests, a cursor, and rejected files with reasons."""

import json
import shutil

import dagster as dg
import yaml

from bookbug_assets.defs.intake.sensors import story_folder_sensor
from tests.conftest import EXAMPLE


def tick(defs, instance, cursor=None):
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
