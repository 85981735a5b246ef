"""A run holding pages of several books (a many-book backfill: Dagster splits it by page slot) draws them side by
side on one pool, not one book after another."""

import logging
import threading
import time
from types import SimpleNamespace

import dagster as dg
import yaml

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.defs.pages import assets as pages
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE


def _book(workspace, book_id: str):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["book_id"] = book_id
    path = workspace["stories"] / f"{book_id}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_story_file(path, {"soft-meadow"})


def test_pages_of_several_books_in_one_run_are_drawn_side_by_side(workspace, defs_for, instance, monkeypatch):
    defs = defs_for()
    books = [_book(workspace, "book-a"), _book(workspace, "book-b")]
    for story in books:
        assert all(r.success for r in materialize_book(defs, instance, story, echo=lambda *_: None).values())

    drawing: set[str] = set()
    together: list[set[str]] = []
    lock = threading.Lock()
    real = pages.render_target

    def watched(plan, target, request, ctx, **kw):
        with lock:
            drawing.add(ctx.book_id)
            together.append(set(drawing))
        time.sleep(0.3)  # a provider's latency: what the other books' pages should overlap
        try:
            return real(plan, target, request, ctx, **kw)
        finally:
            with lock:
                drawing.discard(ctx.book_id)

    monkeypatch.setattr(pages, "render_target", watched)
    context = SimpleNamespace(log=logging.getLogger("pages-test"), asset_key=dg.AssetKey("book_pages"),
                              run=SimpleNamespace(run_id="many-books", tags={}), selected_asset_check_keys=set())
    keys = [(s.book_id, slot) for slot in ("001", "002") for s in books]  # one slot's run holds both books
    events = list(pages.render_book_pages(context, defs.resources["storage"], defs.resources["image_providers"],
                                          keys))
    assert sorted((e.partition for e in events)) == sorted(f"{b}|{slot}" for b, slot in keys)
    assert any(len(books_at_once) == 2 for books_at_once in together), together
