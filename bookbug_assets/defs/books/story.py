"""story: the parsed, validated story of one book, read from the drop folder or the S3 prefix."""

import hashlib
from pathlib import Path

import dagster as dg

from bookbug_assets.defs.books.book_style import observe_book_style
from bookbug_assets.defs.common import user_errors
from bookbug_assets.defs.ledger.assets import estimate_book_cost
from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.intake import fetch_story_from_s3, find_story_file
from bookbug_assets.layout import StoryRecord, story_key
from bookbug_assets.styles import style_names


@dg.asset(partitions_def=books_partitions, group_name="book", code_version="1", kinds={"python"},
          description="The validated story (pydantic) for one book: the source of truth for everything after it.")
def story(context: dg.AssetExecutionContext, storage: BookbugStorage,
          image_providers: ImageProviders) -> dg.MaterializeResult:
    book_id = context.partition_key
    known = set(style_names(storage.styles_path))
    with user_errors():
        if storage.s3_bucket and storage.s3_stories_prefix:
            key, sha, parsed = fetch_story_from_s3(storage.s3_client(), storage.s3_bucket,
                                                   storage.s3_stories_prefix, book_id, known,
                                                   key_hint=context.run.tags.get("bookbug/story_key"))
            path = Path(key)  # its .name is what the metadata shows as source_file
        else:
            path, parsed = find_story_file(storage.stories_path, book_id, known)
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
    store = storage.store()
    store.write_json(story_key(book_id), StoryRecord(source=path.name, sha256=sha, story=parsed).model_dump(mode="json"))
    observe_book_style(context, store, book_id, parsed.style)  # the style version its images will be drawn with
    # The first lines of every book run: what this book will cost before anything is paid.
    estimate = estimate_book_cost(parsed, image_providers, store)
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
