"""A book's print files from what is in the store: the interior and the cover spread for the story's platform.

The same readiness rule as the reading copy (print_book.py): every page current and accepted, nothing a reviewer
or a gate refused, DRAFT while approval is required and missing. The sidecar `<platform>-print.json` says what
was padded and sized, and keeps the provenance record (which images are AI-made, by what) that platforms ask
authors to disclose; the PDFs carry it as XMP only where the platform allows metadata (pdf_xmp.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from bookbug_assets.layout import (
    GenerationRecord, load_page_records, load_record, load_story_record, page_target, print_file_key,
)
from bookbug_assets.pdf import PdfPage
from bookbug_assets.pdf_xmp import provenance_xmp
from bookbug_assets.print_book import BookNotReady, _check_pages, provenance
from bookbug_assets.print_files import PrintFile, PrintTargetSpec, build_cover_pdf, build_interior_pdf
from bookbug_assets.print_platforms import plan_pages
from bookbug_assets.rendering import drawn_for, reference
from bookbug_assets.review import Approval, approval_status, refused_images
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story


@dataclass(frozen=True)
class WrittenPrintFile:
    file: PrintFile
    key: str
    spec: PrintTargetSpec
    approval: Approval
    records: dict[str, GenerationRecord]


def print_spec(story: Story) -> PrintTargetSpec:
    """The story's print target (absent: the generic proof) with its format."""
    return PrintTargetSpec.of(story.print, story.format)


def interior_page_count(story: Story) -> int:
    """The interior's page count once padded to the platform's rules (what the cover's spine is sized for)."""
    spec = print_spec(story)
    return plan_pages(spec.platform, spec.binding, spec.paper, len(story.pages), spec.trim_width_in,
                      spec.trim_height_in).total_pages


def _refuse_refused(store: ArtifactStore, book_id: str, current: dict[str, str]) -> None:
    refused = refused_images(store, book_id, current)
    if refused:
        raise BookNotReady(f"{book_id}: not printing images that were refused: {'; '.join(refused)}. Redraw them "
                           f"(materialize them again, or approve them in data/reviews/{book_id}.yaml)")


def _update_sidecar(store: ArtifactStore, story: Story, spec: PrintTargetSpec, part: str, facts: dict,
                    records: dict[str, GenerationRecord]) -> None:
    key = print_file_key(story.book_id, spec.platform, "print.json")
    sidecar = store.read_json(key) if store.exists(key) else {}
    if sidecar.get("target") != asdict(spec):
        sidecar = {}  # another target's leftovers say nothing about these files
    images = {**sidecar.get("provenance", {}).get("images", {}), **provenance(story.title, records)["images"]}
    sidecar.update({"target": asdict(spec), part: facts,
                    "provenance": {**provenance(story.title, records), "images": images}})
    store.write_json(key, sidecar)


def write_interior(store: ArtifactStore, book_id: str, *, approval_required: bool = False) -> WrittenPrintFile:
    story_record = load_story_record(store, book_id)
    story = story_record.story
    hero = load_record(store, book_id, "hero_page")
    now = drawn_for(story_record.sha256, (reference(load_record(store, book_id, "sprite_sheet"), "sprite_sheet"),
                                          reference(hero, "hero_page")))
    pages = load_page_records(store, story)
    _check_pages(store, story, pages, now)   # never prints around a hole or an outdated page
    _refuse_refused(store, book_id, {t: r.image_sha256 for t, r in pages.items()})
    spec = print_spec(story)
    approval = approval_status(store, story, required=approval_required)
    pdf_pages = [PdfPage(image=store.local_path(pages[page_target(k)].image_key), text=story.page(k).text,
                         is_preview=pages[page_target(k)].is_preview, label=f"page {int(k)}")
                 for k in story.page_keys]
    key = print_file_key(book_id, spec.platform, "interior.pdf")
    out = store.local_path(key)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = build_interior_pdf(title=story.title, author=story.author, pages=pdf_pages, spec=spec, out_path=out,
                                draft=approval.draft,
                                xmp=provenance_xmp(story.title, story.author, provenance(story.title, dict(pages))))
    store.publish_local(key)
    plan = result.plan
    _update_sidecar(store, story, spec, "interior", {
        "pages": result.page_count, "story_pages": plan.content_pages, "blank_pages_added": plan.blank_pages_added,
        "padding": list(plan.reasons), "page_size_in": [result.width_in, result.height_in],
        "pdf_standard": result.pdf_standard, "sha256": result.sha256}, dict(pages))
    return WrittenPrintFile(file=result, key=key, spec=spec, approval=approval, records=dict(pages))


def write_cover(store: ArtifactStore, book_id: str, back: GenerationRecord, interior_pages: int, *,
                approval_required: bool = False) -> WrittenPrintFile:
    """The cover for an interior of `interior_pages` pages, with `back` (back_cover.render_back_cover) on the back."""
    story = load_story_record(store, book_id).story
    hero = load_record(store, book_id, "hero_page")
    _refuse_refused(store, book_id, {"hero_page": hero.image_sha256})
    spec = print_spec(story)
    approval = approval_status(store, story, required=approval_required)
    key = print_file_key(book_id, spec.platform, "cover.pdf")
    out = store.local_path(key)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = {"cover": hero, "back_cover": back}
    result = build_cover_pdf(
        title=story.title, author=story.author,
        front=PdfPage(image=store.local_path(hero.image_key), text="", is_preview=hero.is_preview, label="front"),
        back=PdfPage(image=store.local_path(back.image_key), text="", is_preview=back.is_preview, label="back"),
        back_text=story.back_cover_text, spec=spec, interior_pages=interior_pages, out_path=out,
        draft=approval.draft, xmp=provenance_xmp(story.title, story.author, provenance(story.title, records)))
    store.publish_local(key)
    s = result.spread
    _update_sidecar(store, story, spec, "cover", {
        "size_in": [s.width, s.height], "spine_in": s.spine_width, "interior_pages": interior_pages,
        "spine_text": s.spine_text, "barcode_box_in": list(s.barcode), "pdf_standard": result.pdf_standard,
        "sha256": result.sha256}, records)
    return WrittenPrintFile(file=result, key=key, spec=spec, approval=approval, records=records)
