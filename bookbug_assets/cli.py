"""Command line: `python -m bookbug_assets.cli demo | book <file> | regenerate <book_id>`.

Runs a whole book in this process against the instance in $DAGSTER_HOME (defs/book_runs.py), so the
runs, the partitions and their lineage show in the UI afterwards (`make ui`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import dagster as dg

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.definitions import build_definitions
from bookbug_assets.intake import StoryNotFound, find_story_file
from bookbug_assets.layout import pdf_key
from bookbug_assets.ledger import Ledger
from bookbug_assets.stories import Story, StoryError, load_story_file
from bookbug_assets.styles import style_names

EXAMPLE_STORY = Path("data/stories/pip-and-the-lantern.yaml")


def _load(defs_styles: Path, path: Path) -> Story:
    try:
        return load_story_file(path, set(style_names(defs_styles)))
    except StoryError as exc:
        sys.exit(f"error: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bookbug", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="render the example book end to end")
    book = sub.add_parser("book", help="render one story file end to end")
    book.add_argument("story_file", type=Path)
    regen = sub.add_parser("regenerate", help="re-materialize exactly one book's assets and pages")
    regen.add_argument("book_id")
    args = parser.parse_args(argv)

    defs = build_definitions()
    storage = defs.resources["storage"]
    if args.command == "regenerate":
        try:
            _, story = find_story_file(storage.stories_path, args.book_id, set(style_names(storage.styles_path)))
        except StoryNotFound as exc:
            sys.exit(f"error: {exc}")
    else:
        story = _load(storage.styles_path, EXAMPLE_STORY if args.command == "demo" else args.story_file)
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    results = materialize_book(defs, instance, story)
    if not all(r.success for r in results.values()):
        return 1
    store = storage.store()
    pdf = store.local_path(pdf_key(story.book_id))
    rows = [r for r in Ledger(store).rows(story.book_id) if r.run_id in {res.run_id for res in results.values()}]
    paid = [r for r in rows if r.status == "ok"]
    print(f"[bookbug] {len(paid)} new generation(s), {sum(r.cache_hit for r in rows)} cache hit(s), "
          f"${sum(r.cost_usd for r in rows):.2f} in {time.monotonic() - started:.1f}s")
    print(f"[bookbug] PDF: {pdf.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
