"""`bookbug deliver | archive | restore | books`: through the CLI's main(), against a throwaway data root and a
sqlite instance in a temporary DAGSTER_HOME (the `env` fixture of test_cli.py), as a user would run them."""

import os
import re

import dagster as dg
import pytest

from bookbug_assets.layout import book_state_key, pdf_key
from bookbug_assets.lifecycle import load_state
from bookbug_assets.storage import LocalArtifactStore
from tests.test_cli import env, one_error_line, run, story_text  # noqa: F401 - env is a fixture


def _instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(os.environ["DAGSTER_HOME"])


def _partitions() -> tuple[list[str], list[str]]:
    instance = _instance()
    return instance.get_dynamic_partitions("books"), instance.get_dynamic_partitions("page_slots")


def _style_observations(book_id: str) -> int:
    records = _instance().fetch_observations(dg.AssetKey("book_style"), limit=1000).records
    return sum(r.partition_key == book_id for r in records)


def _build(env, capsys, book_id: str, pages: int) -> None:
    path = env["stories"] / f"{book_id}.yaml"
    path.write_text(story_text(book_id, pages=pages))
    code, _, err = run(capsys, "book", str(path))
    assert code == 0, err


@pytest.fixture
def two_books(env, capsys):
    _build(env, capsys, "short-book", 2)
    _build(env, capsys, "long-book", 4)
    return LocalArtifactStore(env["outputs"])


def test_archive_then_restore_keeps_every_file_and_the_rebuild_is_free(env, capsys, two_books):
    store = two_books
    assert _partitions() == (["short-book", "long-book"], ["001", "002", "003", "004"])
    files_before = set(store.list(""))

    code, out, err = run(capsys, "archive", "long-book", "--note", "printed")
    assert code == 0 and not err, err
    line = out.strip().splitlines()[-1]
    assert re.fullmatch(r"long-book: archived; partition removed; page slots 003\.\.004 removed; kept in the store: "
                        r"book_files \d+, ledger_rows \d+, has_pdf 1, has_story 1", line), line
    assert _partitions() == (["short-book"], ["001", "002"])
    assert set(store.list("")) == files_before | {book_state_key("long-book")}  # nothing deleted
    assert load_state(store, "long-book").history[-1].note == "printed"

    code, _, err = run(capsys, "archive", "long-book")
    assert code == 1 and "book 'long-book' is already archived since " in one_error_line(err)
    code, _, err = run(capsys, "regenerate", "long-book")  # would add the partition behind the state's back
    assert code == 1 and "is archived: `bookbug restore long-book` first" in one_error_line(err)
    assert _partitions()[0] == ["short-book"]

    code, out, _ = run(capsys, "books")
    assert "short-book" in out and "long-book" not in out
    code, out, _ = run(capsys, "books", "--all")
    listed = {line.split()[0]: line for line in out.splitlines()}
    assert re.search(r"4 pages\s+\$\s+0\.00\s+PDF\s+archived$", listed["long-book"]), out
    assert listed["short-book"].endswith("active")

    observed = _style_observations("long-book")
    code, out, err = run(capsys, "restore", "long-book")
    line = out.strip().splitlines()[-1]
    assert code == 0 and not err, err
    assert line.startswith("long-book: active; partition added; page slots 003..004 added; kept in the store: ")
    assert "`bookbug regenerate long-book` rebuilds it from the cache at $0" in line
    assert _partitions() == (["short-book", "long-book"], ["001", "002", "003", "004"])
    assert _style_observations("long-book") == observed + 1  # as the restore_book job records one

    code, _, err = run(capsys, "restore", "long-book")
    assert code == 1 and "book 'long-book' is active, not archived: nothing to restore" in one_error_line(err)

    code, out, err = run(capsys, "regenerate", "long-book")
    assert code == 0, err
    assert "[bookbug] 0 new generation(s), 6 cache hit(s), $0.00" in out  # 2 references + 4 pages, all cached


def test_deliver_records_the_delivery_once(env, capsys, two_books):
    store = two_books
    code, out, err = run(capsys, "deliver", "short-book", "--note", "sent to the printer")
    assert code == 0 and not err, err
    assert out.strip().startswith("short-book: delivered at ") and "bookbug archive short-book" in out
    state = load_state(store, "short-book")
    assert state.state == "delivered" and state.history[-1].note == "sent to the printer"
    assert _partitions()[0] == ["short-book", "long-book"]  # delivering touches no partition

    code, _, err = run(capsys, "deliver", "short-book")
    assert code == 1 and "book 'short-book' is already delivered (on " in one_error_line(err)
    store.delete(pdf_key("long-book"))
    code, _, err = run(capsys, "deliver", "long-book")
    assert code == 1 and "book 'long-book' has no PDF at " in one_error_line(err)

    code, _, err = run(capsys, "archive", "short-book")
    assert code == 0, err
    code, _, err = run(capsys, "deliver", "short-book")
    assert code == 1 and "'short-book' is archived: it cannot be delivered (restore it first)" in one_error_line(err)


def test_moves_that_cannot_be_made_are_one_line_and_exit_1(env, capsys, two_books):
    for argv, words in [(("archive", "nobody"), "no book 'nobody': it is not a books partition"),
                        (("restore", "nobody"), "book 'nobody' has no stored story: there is nothing to restore"),
                        (("deliver", "nobody"), "no book 'nobody': it has no stored story")]:
        code, _, err = run(capsys, *argv)
        assert code == 1 and words in one_error_line(err), (argv, err)

    _instance().add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id="f" * 36, status=dg.DagsterRunStatus.STARTED,
                                      tags={"bookbug/book": "long-book"}))
    code, _, err = run(capsys, "archive", "long-book")
    assert code == 1 and f"book 'long-book' has run {'f' * 36} in flight" in one_error_line(err)
    assert "long-book" in _partitions()[0]


def test_books_with_none_yet(env, capsys):
    code, out, err = run(capsys, "books")
    assert code == 0 and not err and out.startswith("no books yet")
