"""book_pdf (the print-ready book) and its preflight check."""

import os

import dagster as dg
import polars as pl

from bookbug_assets.cost_report import BookCost, book_cost, markdown_table
from bookbug_assets.defs.common import thumbnail_md, user_errors
from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.layout import load_story, pdf_key
from bookbug_assets.pdf import PdfSpec
from bookbug_assets.preflight import preflight_pdf
from bookbug_assets.print_book import print_book, upscaled_images

PAGES_DEP = dg.AssetDep("book_pages", partition_mapping=dg.MultiToSingleDimensionPartitionMapping("book"))


@dg.asset(partitions_def=books_partitions, group_name="book", code_version="1", deps=[PAGES_DEP, "hero_page"],
          kinds={"pdf"},
          description="The print-ready book: trim + 0.125 in bleed, 300 DPI art, text in the safe area with an "
                      "embedded font, cover first. Marked PREVIEW when any image is a preview render.")
def book_pdf(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
    book_id = context.partition_key
    store = storage.store()
    required = os.environ.get("BOOKBUG_REQUIRE_APPROVAL", "").strip().lower() in ("1", "true", "yes", "on")
    with user_errors():  # a page missing, stale or refused (BookNotReady) says which
        book = print_book(store, book_id, approval_required=required)
    out = store.local_path(book.key)
    result, approval = book.result, book.approval
    cost = book_cost(store, book_id)
    made = "unchanged, kept as it was" if book.reused else "laid out"
    context.log.info(f"book PDF for {book_id} ({made}): {out}; {cost.line()}")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(result.sha256[:16]),
        metadata={"pdf": dg.MetadataValue.path(str(out)), "pages": result.page_count, "preview": result.preview,
                  "rebuilt": not book.reused, "draft": approval.draft,
                  "unapproved": ", ".join(approval.unapproved) if approval.required else "approval not required",
                  "page_size_in": f"{result.width_pt / 72:.3f} x {result.height_pt / 72:.3f}",
                  "upscaled_pages": ", ".join(result.upscaled_pages) or "none",
                  **_cost_metadata(cost),
                  "cover": thumbnail_md(store.read_bytes(book.cover.image_key), "cover"), "sha256": result.sha256})


def _cost_metadata(cost: BookCost) -> dict:
    """The book's cost on its own materialization, so every run that makes the book shows it (the cost_report
    asset has the same numbers for every book)."""
    per = cost.cost_per_acceptable_usd
    return {"cost_usd": dg.MetadataValue.float(cost.cost_usd), "paid_generations": cost.paid_generations,
            "free_generations": cost.free_generations, "cached_generations": cost.cached_generations,
            "failed_generations": cost.failed_generations,
            "cost_per_acceptable_usd": dg.MetadataValue.float(per) if per is not None else "no acceptable image",
            "cost": dg.MetadataValue.md(cost.line() + "\n\n" + (markdown_table(pl.DataFrame(cost.by_provider))
                                                                 if cost.by_provider else "no generations"))}


@dg.asset_check(asset="book_pdf", partitions_def=books_partitions, blocking=False,
                description="Print preflight: page, trim and bleed boxes; every image >= 300 ppi at its printed "
                            "size; fonts embedded; text inside the safe area. Says which pages were upscaled.")
def book_pdf_preflight(context: dg.AssetCheckExecutionContext, storage: BookbugStorage) -> dg.AssetCheckResult:
    book_id = context.partition_key
    store = storage.store()
    with user_errors():
        story = load_story(store, book_id)
    spec = PdfSpec.of(story.format)
    labels = ["cover"] + [f"page {int(k)}" for k in story.page_keys]
    report = preflight_pdf(store.local_path(pdf_key(book_id)), spec, labels)
    upscaled = upscaled_images(store, story)
    description = "print-ready" if report.passed else "; ".join(report.problems[:10])
    if report.passed and report.watermarks:
        # The layout is what the printer gets; the watermark says this copy is not the one to send.
        description = f"print-ready layout, watermarked {' and '.join(report.watermarks)}: not for print"
    return dg.AssetCheckResult(
        passed=report.passed, severity=dg.AssetCheckSeverity.ERROR, description=description,
        metadata={"pages": len(report.pages), "min_ppi": dg.MetadataValue.float(report.min_ppi or 0.0),
                  "watermarks": ", ".join(report.watermarks) or "none",
                  "fonts_embedded": ", ".join(f"{n}: {'yes' if e else 'NO'}" for n, e in report.fonts.items()),
                  "upscaled": dg.MetadataValue.md("\n".join(f"- {u}" for u in upscaled) or "none"),
                  "report": dg.MetadataValue.md(report.markdown())})
