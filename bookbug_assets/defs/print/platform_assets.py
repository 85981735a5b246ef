"""book_interior and book_cover: the two files a print-on-demand platform takes, and their per-platform preflight.

The platform is the story's `print:` (absent: the generic proof). `book_pdf` stays the reading copy. The cover's
back is one more generated image (back_cover.py), drawn through the same generation path as the pages, so it runs
in the provider's pool. The preflight checks fail with ERROR severity for books drawn by real models; on preview
renders they only warn (a preview is never sent to a printer, and `make demo` must not fail on it).
"""

import os

import dagster as dg
from pypdf import PdfReader

from bookbug_assets.back_cover import render_back_cover
from bookbug_assets.defs.common import generation_context, thumbnail_md, user_errors
from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.defs.print.assets import PAGES_DEP
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders, generation_pool
from bookbug_assets.layout import load_story, print_file_key
from bookbug_assets.print_book_files import interior_page_count, print_spec, write_cover, write_interior
from bookbug_assets.print_preflight import PrintPreflight, preflight_cover, preflight_interior
from bookbug_assets.rendering import book_plan


def _approval_required() -> bool:
    return os.environ.get("BOOKBUG_REQUIRE_APPROVAL", "").strip().lower() in ("1", "true", "yes", "on")


def _plain_failure(exc: ValueError) -> dg.Failure:
    # a story the platform cannot print (too many pages, a blurb that does not fit) fails the same way every time
    return dg.Failure(str(exc), allow_retries=False)


def book_interior_asset() -> dg.AssetsDefinition:
    @dg.asset(partitions_def=books_partitions, group_name="book", code_version="1", deps=[PAGES_DEP, "hero_page"],
              kinds={"pdf"},
              description="The interior file for the story's print platform (print: in the story; generic when "
                          "absent): single pages at the platform's size and bleed edges, blank pages added at the "
                          "end to meet its page-count rules. books/<book>/print/<platform>-interior.pdf")
    def book_interior(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
        store = storage.store()
        with user_errors():
            try:
                written = write_interior(store, context.partition_key, approval_required=_approval_required())
            except ValueError as exc:
                raise _plain_failure(exc) from None
        f, plan = written.file, written.file.plan
        context.log.info(f"{written.spec.platform} interior for {context.partition_key}: "
                         f"{store.local_path(written.key)}; {plan.total_pages} pages "
                         f"({plan.blank_pages_added} blank added)")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f.sha256[:16]),
            metadata={"pdf": dg.MetadataValue.path(str(store.local_path(written.key))),
                      "platform": written.spec.platform, "binding": written.spec.binding, "paper": written.spec.paper,
                      "pages": f.page_count, "story_pages": plan.content_pages,
                      "blank_pages_added": plan.blank_pages_added,
                      "padding": "; ".join(plan.reasons) or "none needed",
                      "page_size_in": f"{f.width_in:.3f} x {f.height_in:.3f}", "pdf_standard": f.pdf_standard,
                      "preview": f.preview, "draft": written.approval.draft,
                      "upscaled_pages": ", ".join(f.upscaled) or "none", "sha256": f.sha256})

    return book_interior


def book_cover_asset(pool: str | None) -> dg.AssetsDefinition:
    @dg.asset(partitions_def=books_partitions, group_name="book", code_version="1",
              deps=["book_interior", "hero_page", "sprite_sheet"], kinds={"pdf"}, pool=pool,
              description="The one-piece cover for the story's print platform: back cover (a generated back-cover "
                          "illustration and the story's back_cover_text), spine sized for the interior's page count "
                          "and paper (title and author once the platform allows spine text), front from the hero "
                          "page, bleed all round, barcode box kept clear. books/<book>/print/<platform>-cover.pdf")
    def book_cover(context: dg.AssetExecutionContext, storage: BookbugStorage,
                   image_providers: ImageProviders) -> dg.MaterializeResult:
        book_id = context.partition_key
        store = storage.store()
        with user_errors():
            story = load_story(store, book_id)
            family, model = image_providers.choose(story.provider)
            plan = book_plan(store, storage.styles_path, story, family, model, image_providers.provider(family, store),
                             context.log, references=("sprite_sheet", "hero_page"))
            ctx = generation_context(context, store, image_providers, story, "book_cover")
            back = render_back_cover(plan, ctx, store)
            try:
                written = write_cover(store, book_id, back, interior_page_count(story),
                                      approval_required=_approval_required())
            except ValueError as exc:
                raise _plain_failure(exc) from None
        f, s = written.file, written.file.spread
        paid = "cache hit" if back.cache_hit else f"${back.cost_usd:.3f}"
        context.log.info(f"{written.spec.platform} cover for {book_id}: {store.local_path(written.key)}; spine "
                         f"{s.spine_width:.4f} in; back cover {paid}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(f.sha256[:16]),
            metadata={"pdf": dg.MetadataValue.path(str(store.local_path(written.key))),
                      "platform": written.spec.platform, "size_in": f"{f.width_in:.4f} x {f.height_in:.4f}",
                      "spine_in": dg.MetadataValue.float(s.spine_width), "interior_pages": s.pages,
                      "spine_text": s.spine_text, "pdf_standard": f.pdf_standard, "preview": f.preview,
                      "back_cover": thumbnail_md(store.read_bytes(back.image_key), "back cover"),
                      "back_cover_cost_usd": dg.MetadataValue.float(back.cost_usd),
                      "back_cover_cache_hit": back.cache_hit, "sha256": f.sha256})

    return book_cover


def _result(report: PrintPreflight) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.WARN if "PREVIEW" in report.watermarks else dg.AssetCheckSeverity.ERROR
    return dg.AssetCheckResult(
        passed=report.passed, severity=severity, description=report.description(),
        metadata={"pages": report.pages, "file_mb": dg.MetadataValue.float(report.file_mb),
                  "pdf_standard": report.pdf_standard, "min_ppi": dg.MetadataValue.float(report.min_ppi or 0.0),
                  "max_ink_pct": dg.MetadataValue.float(report.max_ink_pct) if report.max_ink_pct is not None
                  else "RGB file: not measured",
                  "watermarks": ", ".join(report.watermarks) or "none",
                  "fonts_embedded": ", ".join(f"{n}: {'yes' if e else 'NO'}" for n, e in report.fonts.items()),
                  "report": dg.MetadataValue.md(report.markdown())})


@dg.asset_check(asset="book_interior", partitions_def=books_partitions, blocking=False,
                description="The platform's interior rules: page count (minimum, maximum, multiple, last page blank), "
                            "media, trim and bleed boxes of every page (which edges bleed), images >= the story's "
                            "dpi, fonts embedded, text in the safe area and clear of the gutter, no annotations or "
                            "bookmarks, file size; for PDF/X platforms the X keys, output intent, CMYK and ink.")
def book_interior_preflight(context: dg.AssetCheckExecutionContext, storage: BookbugStorage) -> dg.AssetCheckResult:
    story, spec, interior, _ = _print_files(context, storage)
    return _result(preflight_interior(interior, spec, len(story.pages)))


@dg.asset_check(asset="book_cover", partitions_def=books_partitions, blocking=False,
                description="The platform's cover rules: one spread, its size and trim box, the spine width against "
                            "the interior's page count and paper, text in the safe area, the barcode box clear, "
                            "fonts embedded, images >= the story's dpi, file size; PDF/X keys and ink where wanted.")
def book_cover_preflight(context: dg.AssetCheckExecutionContext, storage: BookbugStorage) -> dg.AssetCheckResult:
    story, spec, interior, cover = _print_files(context, storage)
    # the spine must match the interior as written (if someone rebuilt one without the other, this says so)
    pages = len(PdfReader(str(interior)).pages) if interior.is_file() else interior_page_count(story)
    return _result(preflight_cover(cover, spec, pages))


def _print_files(context: dg.AssetCheckExecutionContext, storage: BookbugStorage):
    """(story, print spec, interior path, cover path) of the check's book."""
    store = storage.store()
    with user_errors():
        story = load_story(store, context.partition_key)
    spec = print_spec(story)
    return (story, spec, *(store.local_path(print_file_key(story.book_id, spec.platform, name))
                           for name in ("interior.pdf", "cover.pdf")))


@dg.definitions
def print_platform_defs() -> dg.Definitions:
    """The cover draws its back-cover image in the default provider's pool, read when the definitions load."""
    return dg.Definitions(assets=[book_interior_asset(), book_cover_asset(generation_pool())],
                          asset_checks=[book_interior_preflight, book_cover_preflight])
