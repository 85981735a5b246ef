"""Command line: `bookbug demo | book | regenerate | validate | deliver | archive | restore | books` (-h on each).

`bookbug demo | book <file> | regenerate <book_id> | validate <story file | style folder>... |
deliver | archive | restore <book_id> | books [--all]`.

`demo`, `book` and `regenerate` run a whole book in this process against the instance in $DAGSTER_HOME
(defs/book_runs.py), so the runs, the partitions and their lineage show in the UI afterwards (`make ui`).
`demo` and `book` run nothing for a book whose last runs read the very inputs a new one would (defs/book_inputs.py;
`--force` runs it anyway); `regenerate` always runs.
`validate` runs nothing: it prints every problem the sensors would find, one line each. `deliver`, `archive`,
`restore` and `books` move and list books through their lifecycle (cli/lifecycle.py).

Progress and Dagster's log go to stdout; a failure is one line on stderr and a non-zero exit code, with the
traceback only under --debug (or BOOKBUG_DEBUG=1).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bookbug_assets.cli.errors import CliError, Where, exception_line, print_run_tracebacks, run_failure_line, \
    user_output
from bookbug_assets.cli.instance import open_instance
from bookbug_assets.cli.lifecycle import add_commands, lifecycle_command
from bookbug_assets.cli.thresholds import parse_thresholds

EXAMPLE_STORY = Path("data/stories/pip-and-the-lantern.yaml")
EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks and Dagster's log as it is (also BOOKBUG_DEBUG=1)")
    runs = argparse.ArgumentParser(add_help=False)
    runs.add_argument("--retry-refused", action="store_true",
                      help="send again the requests a provider refused for content (run tag bookbug/retry_refused)")
    unchanged = argparse.ArgumentParser(add_help=False)
    unchanged.add_argument("--force", action="store_true",
                           help="run the book even when nothing it reads changed since its last runs")
    runs.add_argument("--thresholds", action="append", default=[], metavar="FILE|NAME=VALUE[,NAME=VALUE]",
                      help="quality-gate limits for every gated image of this run, over the story's and style's "
                           "quality: settings: a YAML or JSON file of them, or e.g. "
                           "max_style_distance=0.45,max_clipping=0.08 (repeatable; a later one wins)")
    parser = argparse.ArgumentParser(prog="bookbug", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", parents=[common, runs, unchanged], help="render the example book end to end")
    book = sub.add_parser("book", parents=[common, runs, unchanged],
                          help="render one story file end to end (any folder)")
    book.add_argument("story_file", type=Path)
    regen = sub.add_parser("regenerate", parents=[common, runs],
                           help="re-materialize exactly one book's assets and pages")
    regen.add_argument("book_id")
    check = sub.add_parser("validate", parents=[common],
                           help="print every problem a sensor would find in story files or style folders")
    check.add_argument("paths", nargs="+", type=Path, metavar="story-file-or-style-folder")
    add_commands(sub, common)
    return parser


def _debug(args: argparse.Namespace) -> bool:
    return getattr(args, "debug", False) or os.environ.get("BOOKBUG_DEBUG", "").strip().lower() in ("1", "true",
                                                                                                    "yes")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = _debug(args)
    where = Where()
    try:
        with user_output(debug):
            from bookbug_assets.defs.resources import storage_from_env

            storage = storage_from_env()
            where = Where(storage.data_root, storage.s3_bucket, storage.s3_endpoint_url)
            if args.command == "validate":
                return _validate(args.paths, storage)
            if args.command in ("deliver", "archive", "restore", "books"):
                return lifecycle_command(args, storage)
            return _run(args, storage, debug)
    except KeyboardInterrupt:
        print("bookbug: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line (the traceback under --debug)
        if debug:
            raise
        print(f"bookbug: error: {exception_line(exc, where)}", file=sys.stderr)
        return EXIT_FAILED


def _validate(paths: list[Path], storage) -> int:
    """One line per problem on stdout, like a linter's report (it is what was asked for); exit code 1 if any."""
    from bookbug_assets.validation import story_file_problems, style_folder_problems

    store = None if storage.s3_bucket else storage.store()  # the owner of a book id, when it was built here
    failed = False
    for path in paths:
        if path.is_dir():
            problems = style_folder_problems(path)
            what = f"style {path.name!r}"
        else:
            problems = story_file_problems(path, storage.stories_path, storage.styles_path, store)
            what = "story"
        for problem in problems:
            print(problem.line())
        if not problems:
            print(f"ok: {path}: a valid {what}")
        failed = failed or bool(problems)
    return EXIT_FAILED if failed else 0


def check_storage(storage) -> None:
    """Before anything runs: the artifacts can be written where the settings say (the first write is deep in a
    run otherwise, and fails there as a traceback)."""
    root = Path(storage.data_root)  # also the S3 store's local cache
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".bookbug-write-check-"):
            pass
    except OSError as exc:
        raise CliError(f"BOOKBUG_DATA_ROOT={storage.data_root}: cannot write there ({exc.strerror or exc}); set "
                       "BOOKBUG_DATA_ROOT to a folder you can write") from exc
    if storage.s3_bucket:
        from botocore.exceptions import ClientError

        try:
            storage.s3_client().head_bucket(Bucket=storage.s3_bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchBucket"):
                raise CliError(f"BOOKBUG_S3_BUCKET={storage.s3_bucket}: no such bucket; create it or fix the "
                               "name") from exc
            # 403: credentials that may write objects but not list the bucket are still usable; the run will tell.


def _run(args: argparse.Namespace, storage, debug: bool) -> int:
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.defs.common import RETRY_REFUSED_TAG

    thresholds = parse_thresholds(args.thresholds)
    check_storage(storage)
    story, tags = _chosen_story(args, storage)
    _refuse_archived(storage, story.book_id)
    if args.retry_refused:
        tags[RETRY_REFUSED_TAG] = "true"
    instance = open_instance()
    defs = build_definitions()
    started = time.monotonic()
    # `regenerate` always runs: re-materializing is what it is for.
    if_changed = args.command != "regenerate" and not getattr(args, "force", False)
    results = materialize_book(defs, instance, story, tags=tags, raise_on_error=False, thresholds=thresholds or None,
                               if_changed=if_changed)
    failed = next(((label, r) for label, r in results.items() if not r.success), None)
    if failed is not None:
        label, result = failed
        if debug:
            print_run_tracebacks(result)
        raise CliError(run_failure_line(result, label, story.book_id, Where(storage.data_root, storage.s3_bucket,
                                                                            storage.s3_endpoint_url)))
    _summary(storage, instance, story, results, started)
    return 0


def _refuse_archived(storage, book_id: str) -> None:
    """A run would add an archived book's partition back behind its lifecycle state's back: restore it first."""
    from bookbug_assets.lifecycle import load_state

    if load_state(storage.store(), book_id).state == "archived":
        raise CliError(f"book {book_id!r} is archived: `bookbug restore {book_id}` first (its images are kept, so "
                       "the rebuild is cache hits at $0)")


def _chosen_story(args: argparse.Namespace, storage):
    """(story, run tags): the file the command names, validated as the sensor would, and the tags that make the
    `story` asset read that very file (bookbug/story_file, bookbug/story_sha256) or S3 upload."""
    from bookbug_assets.story_intake import STORY_FILE_TAG, STORY_KEY_TAG, STORY_SHA_TAG, recorded_source
    from bookbug_assets.styles import style_names
    from bookbug_assets.validation import given_story, in_folder

    s3_intake = bool(storage.s3_bucket and storage.s3_stories_prefix)
    store = storage.store()
    if args.command == "regenerate":
        recorded = recorded_source(store, args.book_id)
        known = set(style_names(storage.styles_path))
        if s3_intake:
            from bookbug_assets.intake_s3 import fetch_story_from_s3

            key, sha, story = fetch_story_from_s3(storage.s3_client(), storage.s3_bucket, storage.s3_stories_prefix,
                                                  args.book_id, known, recorded=recorded)
            return story, {STORY_KEY_TAG: key, STORY_SHA_TAG: sha}
        from bookbug_assets.intake import story_for_book

        source = story_for_book(storage.stories_path, args.book_id, known, recorded=recorded)
        return source.story, {STORY_FILE_TAG: source.name, STORY_SHA_TAG: source.sha256}
    path = EXAMPLE_STORY if args.command == "demo" else args.story_file
    if s3_intake:
        raise CliError(f"{path}: stories are read from s3://{storage.s3_bucket}/{storage.s3_stories_prefix} "
                       "(BOOKBUG_S3_STORIES_PREFIX); upload the file there, or unset BOOKBUG_S3_STORIES_PREFIX to "
                       "build a local file")
    source = given_story(path, storage.stories_path, storage.styles_path, store)
    # A file in the watched folder is named as the sensor names it; any other file by its absolute path.
    where = path.name if in_folder(path, storage.stories_path) else str(path.resolve())
    return source.story, {STORY_FILE_TAG: where, STORY_SHA_TAG: source.sha256}


def _summary(storage, instance, story, results: dict, started: float) -> None:
    import dagster as dg

    from bookbug_assets.layout import pdf_key
    from bookbug_assets.ledger import Ledger

    store = storage.store()
    pdf = store.local_path(pdf_key(story.book_id))
    runs = {res.run_id for res in results.values()}
    rows = [r for r in Ledger(store).rows(story.book_id) if r.run_id in runs]
    paid = [r for r in rows if r.status == "ok"]
    print(f"[bookbug] {len(paid)} new generation(s), {sum(r.cache_hit for r in rows)} cache hit(s), "
          f"${sum(r.cost_usd for r in rows):.2f} in {time.monotonic() - started:.1f}s")
    print(f"[bookbug] PDF: {pdf.resolve()}")
    for asset in ("book_interior", "book_cover") if story.print else ():
        # The latest materialization: this run's, or an unchanged book's last one.
        latest = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[story.book_id]), limit=1).records
        for record in latest:
            meta = record.asset_materialization.metadata
            print(f"[bookbug] {asset}: {meta['pdf'].value} ({meta['pdf_standard'].value})")
