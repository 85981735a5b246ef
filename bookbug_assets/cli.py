"""Command line: `python -m bookbug_assets.cli demo | book <file> | regenerate <book_id>`.

Runs a whole book in this process against the instance in $DAGSTER_HOME, so the runs, the
partitions and their lineage show in the UI afterwards (`make ui`). A book is four runs: style,
book-level references, all pages in one step, then the PDF and ledger. Only the book's real
pages are ever requested.
"""

import argparse
import sys
import time
from pathlib import Path

import dagster as dg

from bookbug_assets.partitions import books_partitions, page_slots_partitions, style_names
from bookbug_assets.stories import Story, StoryError, load_story_file

EXAMPLE_STORY = Path("data/stories/pip-and-the-lantern.yaml")


def _assets(defs: dg.Definitions, *names: str) -> list:
    """The named assets and their standalone checks, so the checks run in the same run."""
    wanted = set(names)
    chosen = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition) and {k.path[-1] for k in a.keys} & wanted]
    return chosen + [c for c in defs.asset_checks or [] if {k.asset_key.path[-1] for k in c.check_keys} & wanted]


def materialize_book(defs: dg.Definitions, instance: dg.DagsterInstance, story: Story,
                     echo=print, include_style: bool = True, raise_on_error: bool = True,
                     thresholds: dict | None = None,
                     log_level: str = "INFO") -> dict[str, dg.ExecuteInProcessResult]:
    """The same runs the sensor's backfill makes, executed here, one after another.

    `thresholds` overrides the quality gates' QualityThresholds fields for this book (run config,
    as the launchpad would set it), e.g. to render through a provider the gates are not yet
    calibrated for.
    """
    instance.add_dynamic_partitions(books_partitions.name, [story.book_id])
    missing_slots = sorted(set(story.page_keys) - set(instance.get_dynamic_partitions(page_slots_partitions.name)))
    if missing_slots:
        instance.add_dynamic_partitions(page_slots_partitions.name, missing_slots)
    resources = dict(defs.resources or {})
    tags = {"bookbug/book": story.book_id}
    steps: list[tuple[str, tuple[str, ...], dict]] = []
    if include_style:
        steps.append(("style", ("style_dataset", "style_lora"), {"partition_key": story.style}))
    gate = {"config": {"thresholds": thresholds}} if thresholds else None

    def ops(*names: str) -> dict:
        return {"ops": {name: gate for name in names}} if gate else {}

    page_range = {f"dagster/asset_partition_range_{end}": str(dg.MultiPartitionKey({"book": story.book_id, "page": p}))
                  for end, p in (("start", story.page_keys[0]), ("end", story.page_keys[-1]))}
    steps += [
        ("references", ("story", "sprite_sheet", "hero_page"), {
            "partition_key": story.book_id,
            "run_config": ops("sprite_sheet", "hero_page", "sprite_sheet_sprite_sheet_quality",
                              "hero_page_hero_page_quality")}),
        ("pages", ("book_pages",), {"run_config": ops("book_pages"), "tags": page_range}),
        ("pdf", ("book_pdf",), {"partition_key": story.book_id}),
        ("ledger", ("generation_ledger",), {}),
    ]
    results = {}
    for label, names, kwargs in steps:
        started = time.monotonic()
        echo(f"[bookbug] {story.book_id}: {label} ({', '.join(names)}) ...")
        run_tags = {**tags, **kwargs.pop("tags", {})}
        # INFO, not DEBUG, on the console: the page-by-page progress lines stay readable.
        run_config = {**kwargs.pop("run_config", {}), "loggers": {"console": {"config": {"log_level": log_level}}}}
        results[label] = dg.materialize(_assets(defs, *names), instance=instance, resources=resources,
                                        tags=run_tags, raise_on_error=raise_on_error, run_config=run_config,
                                        **kwargs)
        if not results[label].success:
            echo(f"[bookbug] {story.book_id}: {label} FAILED; see the run's log in the UI")
            break
        echo(f"[bookbug] {story.book_id}: {label} done in {time.monotonic() - started:.1f}s")
    return results


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

    from bookbug_assets.definitions import defs

    storage = defs.resources["storage"]
    if args.command == "regenerate":
        from bookbug_assets.assets.book import find_story_file

        try:
            _, story = find_story_file(storage.stories_path, args.book_id, set(style_names(storage.styles_path)))
        except dg.Failure as exc:
            sys.exit(f"error: {exc.description}")
    else:
        story = _load(storage.styles_path, EXAMPLE_STORY if args.command == "demo" else args.story_file)
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    results = materialize_book(defs, instance, story)
    if not all(r.success for r in results.values()):
        return 1
    store = storage.store()
    pdf = store.local_path(f"books/{story.book_id}/{story.book_id}.pdf")
    from bookbug_assets.ledger import Ledger

    rows = [r for r in Ledger(store).rows(story.book_id) if r.run_id in {res.run_id for res in results.values()}]
    paid = [r for r in rows if r.status == "ok"]
    print(f"[bookbug] {len(paid)} new generation(s), {sum(r.cache_hit for r in rows)} cache hit(s), "
          f"${sum(r.cost_usd for r in rows):.2f} in {time.monotonic() - started:.1f}s")
    print(f"[bookbug] PDF: {pdf.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
