"""An unchanged book keeps its PDF (issue 13: the PDF was rebuilt on every run); anything it contains changing, or
the file itself changing, lays it out again."""

import dagster as dg
from pypdf import PdfReader

from bookbug_assets.defs.book_runs import _assets, materialize_book
from bookbug_assets.layout import pdf_key, story_key
from bookbug_assets.print_book import print_book
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE


def test_an_unchanged_book_keeps_its_pdf_and_a_change_lays_it_out_again(workspace, defs_for, instance):
    path = workspace["stories"] / EXAMPLE.name
    path.write_text(EXAMPLE.read_text())
    defs = defs_for()
    story = load_story_file(path, {"soft-meadow"})
    results = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert all(r.success for r in results.values())
    store = defs.resources["storage"].store()
    out = store.local_path(pdf_key(story.book_id))
    first_bytes, first_mtime = out.read_bytes(), out.stat().st_mtime_ns

    # 1. The same pages, text and layout: the stored PDF is kept, byte for byte, file untouched.
    again = dg.materialize(_assets(defs, "book_pdf"), instance=instance, resources=dict(defs.resources),
                           partition_key=story.book_id)
    meta = again.asset_materializations_for_node("book_pdf")[0].metadata
    assert meta["rebuilt"].value is False
    assert out.stat().st_mtime_ns == first_mtime and out.read_bytes() == first_bytes
    assert meta["pages"].value == 13

    # 2. A file changed by hand is not trusted: laid out again.
    out.write_bytes(first_bytes[:-100])
    assert print_book(store, story.book_id).reused is False
    assert len(PdfReader(out).pages) == 13

    # 3. A change to what a page says lays the book out again.
    record = store.read_json(story_key(story.book_id))
    record["story"]["pages"][0]["text"] += " The end."
    store.write_json(story_key(story.book_id), record)
    changed = print_book(store, story.book_id)
    assert changed.reused is False and changed.result.sha256 != meta["sha256"].value
    assert print_book(store, story.book_id).reused is True
