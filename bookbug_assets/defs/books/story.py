"""story: the parsed, validated story of one book, read from the drop folder or the S3 prefix.

It reads the file the story sensor decided owns the book (its run's `bookbug/story_file` or `bookbug/story_key`
tag, or for a backfill of many books the sensor's per-book request record in the store), else the file the book
was last built from (the stored story record), else the oldest file claiming the
book id (bookbug_assets.intake.story_for_book): another file, broken or claiming the same id, never changes it.
"""

from pathlib import Path

import dagster as dg

from bookbug_assets.defs.books.book_style import observe_book_style
from bookbug_assets.defs.common import user_errors
from bookbug_assets.defs.judge_resource import QualityJudge
from bookbug_assets.defs.ledger.assets import estimate_book_cost
from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.intake import story_for_book
from bookbug_assets.intake_s3 import fetch_story_from_s3
from bookbug_assets.layout import StoryRecord, story_key
from bookbug_assets.story_intake import (STORY_FILE_TAG, STORY_KEY_TAG, STORY_SHA_TAG, clear_requested_source,
                                         recorded_source, requested_source)
from bookbug_assets.styles import style_names


@dg.asset(partitions_def=books_partitions, group_name="book", code_version="1", kinds={"python"},
          description="The validated story (pydantic) for one book: the source of truth for everything after it.")
def story(context: dg.AssetExecutionContext, storage: BookbugStorage,
          image_providers: ImageProviders, quality_judge: QualityJudge) -> dg.MaterializeResult:
    book_id = context.partition_key
    known = set(style_names(storage.styles_path))
    store = storage.store()
    recorded = recorded_source(store, book_id)
    tags = dict(context.run.tags)
    requested = requested_source(store, book_id)  # the sensor's choice for this book, one backfill for many books
    if requested and not (tags.get(STORY_FILE_TAG) or tags.get(STORY_KEY_TAG)):
        tag = STORY_KEY_TAG if storage.s3_bucket and storage.s3_stories_prefix else STORY_FILE_TAG
        tags.update({tag: requested[0], STORY_SHA_TAG: requested[1]})
    with user_errors():
        if storage.s3_bucket and storage.s3_stories_prefix:
            key, sha, parsed = fetch_story_from_s3(storage.s3_client(), storage.s3_bucket,
                                                   storage.s3_stories_prefix, book_id, known,
                                                   key_hint=tags.get(STORY_KEY_TAG), recorded=recorded)
            path, source = Path(key), Path(key).name  # its .name is what the metadata shows as source_file
        else:
            found = story_for_book(storage.stories_path, book_id, known, tagged=tags.get(STORY_FILE_TAG),
                                   recorded=recorded)
            # A name in the stories folder, or the absolute path of a file `bookbug book` was given.
            path, source, sha, parsed = storage.stories_path / found.name, found.name, found.sha256, found.story
    if tags.get(STORY_SHA_TAG) and tags[STORY_SHA_TAG] != sha:
        context.log.info(f"{path.name} changed since the sensor took it; building what it holds now (the sensor "
                         "requests its own run for the change)")
    store.write_json(story_key(book_id), StoryRecord(source=source, sha256=sha, story=parsed).model_dump(mode="json"))
    if requested:  # built: the story record says where from now (a later request writes a new record)
        clear_requested_source(store, book_id, requested[0])
    observe_book_style(context, store, book_id, parsed.style)  # the style version its images will be drawn with
    # The first lines of every book run: what this book will cost before anything is paid.
    with user_errors():
        estimate = estimate_book_cost(parsed, image_providers, store, judge=quality_judge.for_run(context))
    context.log.info(estimate.line())
    fmt = parsed.format
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sha[:16]),
        metadata={"title": parsed.title, "source_file": path.name, "pages": len(parsed.pages),
                  "characters": ", ".join(c.name for c in parsed.characters), "style": parsed.style,
                  "trim": f"{fmt.trim_width_in} x {fmt.trim_height_in} in, bleed {fmt.bleed_in} in",
                  "provider_override": parsed.provider or "none",
                  "cost_estimate_usd": dg.MetadataValue.float(estimate.first_pass_usd),
                  "cost_estimate": estimate.line(),
                  "budget_usd": parsed.budget_usd if parsed.budget_usd is not None else "none",
                  "page_text": dg.MetadataValue.md("\n".join(f"{i}. {p.text}" for i, p in
                                                            enumerate(parsed.pages, 1)))})
