"""A book's PDF from what is in the store: every page current and accepted, the cover first, provenance beside it.

`print_book` refuses (BookNotReady, naming the pages) a book whose pages are missing, were drawn for
an earlier story or references, or whose very bytes a reviewer rejected or a gate refused; it never
prints around a hole.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from bookbug_assets import pdf as pdf_module
from bookbug_assets import pdf_xmp

from bookbug_assets.layout import (
    GenerationRecord, NotMaterialized, book_targets, load_page_records, load_record, load_story_record, page_number,
    page_target, pdf_inputs_key, pdf_key, provenance_key, record_key,
)
from bookbug_assets.gate_outcome import page_gate_line
from bookbug_assets.pdf import PdfPage, PdfResult, PdfSpec, build_book_pdf
from bookbug_assets.pdf_xmp import provenance_xmp
from bookbug_assets.quality.verdicts import load_verdicts
from bookbug_assets.rendering import drawn_for, reference
from bookbug_assets.review import Approval, approval_status, refused_images
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story


class BookNotReady(NotMaterialized):
    """Some page cannot go into the book yet; the message names the pages and what to do."""


@dataclass(frozen=True)
class PrintedBook:
    result: PdfResult
    approval: Approval
    cover: GenerationRecord
    records: dict[str, GenerationRecord]  # "cover" and page-NNN
    key: str
    reused: bool = False  # the PDF already stored was made from exactly these pages, text and layout


def provenance(story_title: str, records: dict[str, GenerationRecord]) -> dict:
    """What print platforms ask authors to disclose: which images are AI-made, by what, with what."""
    return {
        "title": story_title,
        "generated_at": datetime.now(timezone.utc).isoformat(),
        "images": {name: {"ai_generated": not r.is_preview, "preview_render": r.is_preview, "provider": r.provider,
                          "model": r.model, "model_version": r.version, "seed": r.seed, "lora": r.lora,
                          "image_sha256": r.image_sha256} for name, r in records.items()},
    }


def print_book(store: ArtifactStore, book_id: str, *, approval_required: bool = False) -> PrintedBook:
    # 1. The book now: its story version and references, and every page's accepted record.
    story_record = load_story_record(store, book_id)
    story = story_record.story
    cover = load_record(store, book_id, "hero_page")
    now = drawn_for(story_record.sha256, (reference(load_record(store, book_id, "sprite_sheet"), "sprite_sheet"),
                                          reference(cover, "hero_page")))
    pages = load_page_records(store, story)
    # 2. Refuse a book with a hole, a page from an earlier version, or an image that was refused.
    _check_pages(store, story, pages, now)
    current = {"hero_page": cover.image_sha256, **{t: r.image_sha256 for t, r in pages.items()}}
    refused = refused_images(store, book_id, current)
    if refused:
        raise BookNotReady(f"{book_id}: not printing images that were refused: {'; '.join(refused)}. Redraw them "
                           f"(materialize them again, or approve them in data/reviews/{book_id}.yaml)")
    # 3. Lay it out, cover first; DRAFT while approval is required and missing.
    records: dict[str, GenerationRecord] = {"cover": cover, **pages}
    spec = PdfSpec.of(story.format)
    pdf_pages = [PdfPage(image=store.local_path(pages[page_target(k)].image_key), text=story.page(k).text,
                         is_preview=pages[page_target(k)].is_preview, label=f"page {int(k)}")
                 for k in story.page_keys]
    cover_page = PdfPage(image=store.local_path(cover.image_key), text="", is_preview=cover.is_preview, label="cover")
    prov = provenance(story.title, records)
    approval = approval_status(store, story, required=approval_required)
    key = pdf_key(book_id)
    out = store.local_path(key)
    # 4. An unchanged book keeps the PDF it has: encoding every page again is most of an unchanged rerun's time.
    inputs = pdf_inputs(story, spec, cover_page, pdf_pages, records, draft=approval.draft)
    result = reusable_pdf(store, book_id, out, inputs)
    reused = result is not None
    if result is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = build_book_pdf(title=story.title, author=story.author, cover=cover_page, pages=pdf_pages, spec=spec,
                                out_path=out, draft=approval.draft,
                                metadata={"bookbug_provenance": json.dumps(prov, sort_keys=True)},
                                xmp=provenance_xmp(story.title, story.author, prov))
        # 5. Publish the PDF and its provenance, then what it was made from (last: a crash in between rebuilds).
        store.publish_local(key)
        store.write_json(provenance_key(book_id), prov)
        store.write_json(pdf_inputs_key(book_id), {"inputs": inputs, "result": {**asdict(result),
                                                                              "path": str(result.path)}})
    return PrintedBook(result=result, approval=approval, cover=cover, records=records, key=key, reused=reused)


def _layout_code() -> str:
    """The layout code's own bytes (and its XMP's): a change to how pages are laid out rebuilds every PDF, with no
    version number for anyone to forget to bump."""
    return hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (pdf_module, pdf_xmp))).hexdigest()


def pdf_inputs(story: Story, spec: PdfSpec, cover: PdfPage, pages: list[PdfPage],
               records: dict[str, GenerationRecord], *, draft: bool) -> dict:
    """Everything the PDF's bytes depend on besides the image files themselves, which are named by content hash."""
    return {"layout_code": _layout_code(), "title": story.title, "author": story.author, "spec": repr(spec),
            "draft": draft, "images": {name: r.image_sha256 for name, r in records.items()},
            "pages": [[p.label, p.text, p.is_preview] for p in [cover, *pages]]}


def reusable_pdf(store: ArtifactStore, book_id: str, out: Path, inputs: dict) -> PdfResult | None:
    """The PDF already in the store, when it was made from exactly these inputs and is still the file it was."""
    key = pdf_inputs_key(book_id)
    if not (store.exists(key) and store.exists(pdf_key(book_id))):
        return None
    made = store.read_json(key)
    if made.get("inputs") != inputs:
        return None
    recorded = made["result"]
    if not out.is_file() or hashlib.sha256(out.read_bytes()).hexdigest() != recorded["sha256"]:
        return None  # deleted or changed by hand: make it again
    return PdfResult(**{**recorded, "path": out})


def _check_pages(store: ArtifactStore, story: Story, pages: dict, now: dict[str, str]) -> None:
    missing = [t for t in book_targets(story)[2:] if t not in pages]
    stale = [t for t, r in pages.items() if r.drawn_for and r.drawn_for != now]  # older records carry no stamp
    if missing:
        # A page without a record either failed its gate (its verdict says so, with every attempt) or never ran.
        verdicts = load_verdicts(store, story.book_id)
        failed = [t for t in missing if t in verdicts and not verdicts[t].accepted]
        unrendered = [t for t in missing if t not in failed]
        problems = [page_gate_line(verdicts[t], page_number(t)) for t in failed]
        if unrendered:
            problems.append(f"page{'s' if len(unrendered) > 1 else ''} {_numbers(unrendered)} "
                            f"{'are' if len(unrendered) > 1 else 'is'} not rendered yet; materialize book_pages for "
                            f"{'them' if len(unrendered) > 1 else 'it'} first")
        fix = (f". A failed page goes into the book once an attempt passes (rerun book_pages with other thresholds or "
               f"a changed scene) or a reviewer approves one in data/reviews/{story.book_id}.yaml") if failed else ""
        raise BookNotReady(f"{story.book_id}: " + "; ".join(problems) + fix)
    if stale:
        raise BookNotReady(f"{story.book_id}: pages {_numbers(stale)} were drawn for an earlier version of the story "
                           f"or of its sprite sheet / hero page; materialize book_pages for them first (pages whose "
                           f"picture did not change are free cache hits)")


def _numbers(targets: list[str]) -> str:
    return ", ".join(str(page_number(t)) for t in targets)


def upscaled_images(store: ArtifactStore, story: Story) -> list[str]:
    """Which images were enlarged to reach print resolution, by how much and how (pdf.py: Lanczos)."""
    need_w, need_h = story.format.page_pixels
    out = []
    for target in ["hero_page", *book_targets(story)[2:]]:
        key = record_key(story.book_id, target)
        if not store.exists(key):
            continue
        record = store.read_json(key)
        factor = max(need_w / record["width"], need_h / record["height"])
        if factor > 1:
            label = "cover" if target == "hero_page" else f"page {page_number(target)}"
            out.append(f"{label}: {record['width']}x{record['height']} px upscaled x{factor:.2f} (Lanczos)")
    return out
