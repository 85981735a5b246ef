"""`bookbug deliver | archive | restore <book_id>` and `bookbug books`: a book's lifecycle from the command line.

The moves are defs/lifecycle/actions.py's, against the instance in $DAGSTER_HOME and the store the settings
name, exactly as the deliver_book / archive_book / restore_book jobs make them (README "Book lifecycle").
Each prints one line: what moved, what happened to the partitions, what the store keeps. A move that cannot be
made (an unknown book, a run in flight, nothing to do) is a one-line error and exit code 1.
"""

from __future__ import annotations

import argparse

import dagster as dg

from bookbug_assets.cli.errors import CliError
from bookbug_assets.cli.instance import open_instance
from bookbug_assets.layout import pdf_key, stored_story, story_key

ARCHIVE_SCHEDULE = "archive_delivered_books_schedule"


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    note = argparse.ArgumentParser(add_help=False)
    note.add_argument("--note", default="", metavar="TEXT", help="why, kept in the book's lifecycle history")
    for name, text in (("deliver", "record a built book as handed over (starts its archive clock)"),
                       ("archive", "remove a book's partition (its page cells leave the book x page grid); its "
                                   "files, ledger rows and PDF stay in the store"),
                       ("restore", "bring an archived book's partition back (rebuilding it is cache hits, $0)")):
        sub.add_parser(name, parents=[common, note], help=text).add_argument("book_id")
    books = sub.add_parser("books", parents=[common], help="list the books: state, pages, cost, PDF")
    books.add_argument("--all", action="store_true",
                       help="also the archived books (reads the store's whole books/ folder: slow on a big bucket)")


def lifecycle_command(args: argparse.Namespace, storage) -> int:
    if args.command == "books":
        return _list_books(storage, include_archived=args.all)
    store = storage.store()
    book_id = args.book_id
    if args.command == "deliver":
        print(_deliver(store, book_id, args.note))
        return 0
    from bookbug_assets.defs.lifecycle.actions import archive, restore

    instance = open_instance()
    if args.command == "archive":
        result = archive(instance, store, book_id, note=args.note)
        if not result.changed and result.partition == "unchanged" and not result.slots.removed:
            since = f" since {result.state.archived_at:%Y-%m-%d}" if result.state.archived_at else ""
            raise CliError(f"book {book_id!r} is already archived{since}: nothing to do (`bookbug restore "
                           f"{book_id}` brings it back)")
        print(result.line())
        return 0
    result = restore(instance, store, book_id, note=args.note)
    if not result.changed and result.partition == "unchanged" and not result.slots.added:
        raise CliError(f"book {book_id!r} is {result.state.state}, not archived: nothing to restore")
    _observe_style(instance, store, book_id)
    print(f"{result.line()}; its images are all kept, so `bookbug regenerate {book_id}` rebuilds it from the "
          "cache at $0 (unless its story or style changed since)")
    return 0


def _deliver(store, book_id: str, note: str) -> str:
    from bookbug_assets.defs.lifecycle.actions import deliver
    from bookbug_assets.lifecycle import load_state

    if stored_story(store, book_id) is None:
        raise CliError(f"no book {book_id!r}: it has no stored story at {store.uri(story_key(book_id))} (build it "
                       "first: bookbug book <story file>)")
    before = load_state(store, book_id)
    if before.state == "delivered":
        raise CliError(f"book {book_id!r} is already delivered (on {before.delivered_at:%Y-%m-%d}): nothing to do")
    state = deliver(store, book_id, note=note)
    return (f"{book_id}: delivered at {state.delivered_at:%Y-%m-%d %H:%M} UTC; its PDF {store.uri(pdf_key(book_id))} "
            f"is kept; archive it with `bookbug archive {book_id}` (or turn on {ARCHIVE_SCHEDULE})")


def _observe_style(instance: dg.DagsterInstance, store, book_id: str) -> None:
    """As the restore_book job does: while archived the book got no book_style observation when its style
    changed, so one now lets the UI say whether its pages are stale."""
    from bookbug_assets.defs.books.book_style import BOOK_STYLE, DATA_VERSION_TAG, style_version

    story = stored_story(store, book_id)
    instance.report_runless_asset_event(dg.AssetObservation(
        asset_key=BOOK_STYLE, partition=book_id, tags={DATA_VERSION_TAG: style_version(store, story.style)}))


def _list_books(storage, include_archived: bool) -> int:
    """One line per book: id, state, pages, cost so far, whether its PDF is there. The instance's books (its
    `books` partitions: active and delivered); with `include_archived`, every book with a stored story."""
    from bookbug_assets.cost_report import book_cost
    from bookbug_assets.defs.partitions import books_partitions
    from bookbug_assets.lifecycle import load_state

    instance = open_instance()
    store = storage.store()
    partitions = set(instance.get_dynamic_partitions(books_partitions.name))
    books = set(partitions)
    if include_archived:
        books |= {key.split("/")[1] for key in store.list("books") if key == story_key(key.split("/")[1])}
    if not books:
        print("no books yet" + ("" if include_archived else " (--all lists the archived ones too)"))
        return 0
    width = max(len(b) for b in books)
    for book_id in sorted(books):
        state = load_state(store, book_id).state
        if state == "archived" and book_id in partitions:  # an archive that stopped half way
            state = "archived, partition left (run `bookbug archive` again)"
        elif state != "archived" and book_id not in partitions:
            state = f"{state}, no partition here (`bookbug regenerate {book_id}` adds it)"
        story = stored_story(store, book_id)
        pages = f"{len(story.page_keys):>3} pages" if story else "  - pages"
        pdf = "PDF" if store.exists(pdf_key(book_id)) else "no PDF"
        print(f"{book_id:<{width}}  {pages}  ${book_cost(store, book_id).cost_usd:>8.2f}  {pdf:<6}  {state}")
    return 0
