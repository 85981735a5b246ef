"""story (the parsed book) and book_pdf (the print-ready book)."""


import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from bookbug_assets.assets._shared import (
    book_key, drawn_for, load_record, load_story, reference, thumbnail_md,
)
from bookbug_assets.generation import GenerationRecord
from bookbug_assets.partitions import books_partitions, style_names
from bookbug_assets.pdf import PdfPage, PdfSpec, build_book_pdf
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.review import approval_status, page_target, refused_images
from bookbug_assets.stories import Story, StoryError, load_story_file
from bookbug_assets.stories.parsing import STORY_SUFFIXES

PAGES_DEP = dg.AssetDep("book_pages", partition_mapping=dg.MultiToSingleDimensionPartitionMapping("book"))


def find_story_file(stories_dir: Path, book_id: str, known_styles: set[str]) -> tuple[Path, Story]:
    """The one file in the drop folder whose story has this book id."""
    matches: list[tuple[Path, Story]] = []
    for path in sorted(stories_dir.glob("*")):
        if path.suffix.lower() not in STORY_SUFFIXES or not path.is_file():
            continue
        try:
            parsed = load_story_file(path, known_styles)
        except StoryError:
            continue  # the sensor already rejected it with a reason file
        if parsed.book_id == book_id:
            matches.append((path, parsed))
    if not matches:
        raise dg.Failure(f"no valid story file in {stories_dir} has book_id {book_id!r}", allow_retries=False)
    if len(matches) > 1:
        raise dg.Failure(f"book_id {book_id!r} is claimed by several files: {', '.join(p.name for p, _ in matches)}",
                         allow_retries=False)
    return matches[0]


@dg.asset(partitions_def=books_partitions, group_name="book", code_version="1", kinds={"python"},
          description="The validated story (pydantic) for one book: the source of truth for everything after it.")
def story(context: dg.AssetExecutionContext, storage: BookbugStorage,
          image_providers: ImageProviders) -> dg.MaterializeResult:
    from bookbug_assets.assets.reports import estimate_book_cost

    book_id = context.partition_key
    known = set(style_names(storage.styles_path))
    if storage.s3_bucket and storage.s3_stories_prefix:
        from bookbug_assets.sensors_s3 import fetch_story_from_s3

        key, sha, parsed = fetch_story_from_s3(storage.s3_client(), storage.s3_bucket, storage.s3_stories_prefix,
                                               book_id, known, key_hint=context.run.tags.get("bookbug/story_key"))
        path = Path(key)  # its .name is what the metadata shows as source_file
    else:
        path, parsed = find_story_file(storage.stories_path, book_id, known)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
    storage.store().write_json(book_key(book_id, "story.json"),
                               {"source": path.name, "sha256": sha, "story": parsed.model_dump(mode="json")})
    # The first lines of every book run: what this book will cost before anything is paid.
    estimate = estimate_book_cost(parsed, image_providers, storage.store())
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


def provenance(story_title: str, records: dict[str, GenerationRecord]) -> dict:
    """What print platforms ask authors to disclose: which images are AI-made, by what, with what."""
    return {
        "title": story_title,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "images": {name: {"ai_generated": not r.is_preview, "preview_render": r.is_preview, "provider": r.provider,
                          "model": r.model, "model_version": r.version, "seed": r.seed, "lora": r.lora,
                          "image_sha256": r.image_sha256} for name, r in records.items()},
    }


@dg.asset(partitions_def=books_partitions, group_name="book", code_version="1", deps=[PAGES_DEP, "hero_page"],
          kinds={"pdf"},
          description="The print-ready book: trim + 0.125 in bleed, 300 DPI art, text in the safe area with an "
                      "embedded font, cover first. Marked PREVIEW when any image is a preview render.")
def book_pdf(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
    book_id = context.partition_key
    store = storage.store()
    parsed = load_story(store, book_id)
    cover = load_record(store, book_id, "hero_page")
    records: dict[str, GenerationRecord] = {"cover": cover}
    missing, stale = [], []
    now = drawn_for(store, book_id, (reference(load_record(store, book_id, "sprite_sheet"), "sprite_sheet"),
                                     reference(cover, "hero_page")))
    for key in parsed.page_keys:
        page_record_key = book_key(book_id, f"pages/{key}.json")
        if not store.exists(page_record_key):
            missing.append(str(int(key)))
            continue
        data = store.read_json(page_record_key)
        if data.get("drawn_for", now) != now:  # records from before the stamp existed are taken as they are
            stale.append(str(int(key)))
        records[f"page-{key}"] = GenerationRecord.model_validate(data)
    if missing:
        raise dg.Failure(f"{book_id}: pages {', '.join(missing)} are not rendered yet; materialize book_pages "
                         f"for them first", allow_retries=False)
    if stale:
        raise dg.Failure(f"{book_id}: pages {', '.join(stale)} were drawn for an earlier version of the story or "
                         f"of its sprite sheet / hero page; materialize book_pages for them first (pages whose "
                         f"picture did not change are free cache hits)", allow_retries=False)
    current = {"hero_page": cover.image_sha256,
               **{page_target(k): records[f"page-{k}"].image_sha256 for k in parsed.page_keys}}
    refused = refused_images(store, book_id, current)
    if refused:
        raise dg.Failure(f"{book_id}: not printing images that were refused: {'; '.join(refused)}. Redraw them "
                         f"(materialize them again, or approve them in data/reviews/{book_id}.yaml)",
                         allow_retries=False)
    spec = PdfSpec.of(parsed.format)
    pages = [PdfPage(image=store.local_path(records[f"page-{k}"].image_key), text=parsed.page(k).text,
                     is_preview=records[f"page-{k}"].is_preview, label=f"page {int(k)}") for k in parsed.page_keys]
    cover_page = PdfPage(image=store.local_path(cover.image_key), text="", is_preview=cover.is_preview, label="cover")
    prov = provenance(parsed.title, records)
    approval = approval_status(store, parsed, required=os.environ.get("BOOKBUG_REQUIRE_APPROVAL") == "1")
    out = store.local_path(book_key(book_id, f"{book_id}.pdf"))
    out.parent.mkdir(parents=True, exist_ok=True)
    result = build_book_pdf(title=parsed.title, author=parsed.author, cover=cover_page, pages=pages, spec=spec,
                            out_path=out, draft=approval.draft,
                            metadata={"bookbug_provenance": json.dumps(prov, sort_keys=True)})
    store.publish_local(book_key(book_id, f"{book_id}.pdf"))
    store.write_json(book_key(book_id, "provenance.json"), prov)
    context.log.info(f"book PDF for {book_id}: {out}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(result.sha256[:16]),
        metadata={"pdf": dg.MetadataValue.path(str(out)), "pages": result.page_count, "preview": result.preview,
                  "draft": approval.draft,
                  "unapproved": ", ".join(approval.unapproved) if approval.required else "approval not required",
                  "page_size_in": f"{result.width_pt / 72:.3f} x {result.height_pt / 72:.3f}",
                  "upscaled_pages": ", ".join(result.upscaled_pages) or "none",
                  "cost_usd": dg.MetadataValue.float(round(sum(r.cost_usd for r in records.values()), 4)),
                  "cover": thumbnail_md(store.read_bytes(cover.image_key), "cover"), "sha256": result.sha256})
