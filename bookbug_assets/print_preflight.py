"""Preflight of the print files against the platform they were made for (print_platforms.py).

It reads the PDFs themselves (pypdf), as a platform's upload check would: every page's media, trim and bleed
boxes against the platform's geometry (KDP's interior bleeds on three edges, so rectos and versos differ), the page
count rules, fonts embedded, images >= the story's dpi where printed, text inside the safe area (preflight.py's
content walker), no annotations or bookmarks, the file size, the spine width against the interior's page count,
the barcode box left plain, and for PDF/X platforms the X keys, the output intent, CMYK-only images, no live
transparency and the total ink of the art. Problems name the page and the rule; notes are what a person should
know but that no source we could confirm makes a rule (a long run of blank pages at the end, for instance).
"""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pypdf import PdfReader

from bookbug_assets.preflight import _PageWalker
from bookbug_assets.print_colour import PROFILE_HINT
from bookbug_assets.print_files import PrintTargetSpec
from bookbug_assets.print_ghostscript import GS_MISSING, ghostscript, render_ink
from bookbug_assets.print_pdfx import pdfx_problems
from bookbug_assets.print_platforms import cover_spread, interior_page, page_limits, rules

PT = 72.0
BOX_TOLERANCE_PT = 0.5
SPINE_TOLERANCE_IN = 0.01
INK_AREA_PX = 8  # ink limits are about areas, not single pixels: coverage is averaged over 8 x 8 pixel blocks


@dataclass
class PrintPreflight:
    what: str                                   # "interior" or "cover"
    pages: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fonts: dict[str, bool] = field(default_factory=dict)
    min_ppi: float | None = None
    max_ink_pct: float | None = None
    watermarks: list[str] = field(default_factory=list)
    pdf_standard: str = ""
    file_mb: float = 0.0
    rendered_max_ink_pct: float | None = None   # Ghostscript's render; None where it is not installed
    checked_by: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def description(self) -> str:
        if self.problems:
            return "; ".join(self.problems[:10])
        if self.watermarks:
            # The layout is what the printer gets; the watermark says this copy is not the one to send.
            return f"print-ready layout, watermarked {' and '.join(self.watermarks)}: not for print"
        return "print-ready"

    def markdown(self) -> str:
        lines = [f"- **{self.what}**: {self.pages} page(s), {self.file_mb:.1f} MB, {self.pdf_standard}",
                 *(f"- problem: {p}" for p in self.problems), *(f"- note: {n}" for n in self.notes),
                 *(f"- checked by {c}" for c in self.checked_by)]
        return "\n".join(lines)


def _box(page, name: str) -> tuple[float, ...] | None:
    key = "/" + name.title().replace(" ", "")
    if name != "media box" and key not in page:
        return None
    b = getattr(page, name.replace(" ", ""))
    return tuple(float(v) for v in (b.left, b.bottom, b.right, b.top))


def _box_problem(page, name: str, want_in) -> str | None:
    got = _box(page, name)
    want = tuple(v * PT for v in want_in)
    if got is None:
        return f"no {name}"
    if any(abs(g - w) > BOX_TOLERANCE_PT for g, w in zip(got, want, strict=True)):
        return (f"{name} is {' x '.join(f'{v / PT:.3f}' for v in (got[2] - got[0], got[3] - got[1]))} in at "
                f"({got[0] / PT:.3f}, {got[1] / PT:.3f}), the platform wants "
                f"{' x '.join(f'{v:.3f}' for v in (want_in[2] - want_in[0], want_in[3] - want_in[1]))} in at "
                f"({want_in[0]:.3f}, {want_in[1]:.3f})")
    return None


def _images(page):
    xobjects = page.get("/Resources", {}).get("/XObject", {}) if "/Resources" in page else {}
    for ref in (xobjects or {}).values():
        obj = ref.get_object()
        if obj.get("/Subtype") == "/Image":
            yield obj


def _ink_pct(xobj) -> float | None:
    """The highest total ink (C+M+Y+K, %) over any 8 x 8 pixel area of a CMYK JPEG image."""
    filters = xobj.get("/Filter")
    if xobj.get("/ColorSpace") != "/DeviceCMYK" or "/DCTDecode" not in (filters if isinstance(filters, list)
                                                                         else [filters]):
        return None
    with Image.open(io.BytesIO(xobj.get_data())) as im:
        small = im.reduce(INK_AREA_PX)
        return float(np.asarray(small, dtype=np.float32).sum(axis=2).max() / 255 * 100)


def _common(reader: PdfReader, path: Path, spec: PrintTargetSpec, report: PrintPreflight,
            labels: list[str]) -> None:
    """What both files are checked for: size, annotations, bookmarks, PDF/X keys, colour, transparency, ink."""
    r = rules(spec.platform)
    report.file_mb = path.stat().st_size / 1e6
    if r.max_file_mb is not None and report.file_mb > r.max_file_mb:
        report.problems.append(f"file is {report.file_mb:.0f} MB, {r.name} takes at most {r.max_file_mb:.0f} MB")
    root = reader.trailer["/Root"]
    if "/Outlines" in root:
        report.problems.append("the PDF has bookmarks (outlines); print platforms refuse them")
    if "/Metadata" in root and not r.xmp_allowed:
        report.problems.append(f"the PDF carries an XMP metadata stream; {r.name} asks for files without metadata "
                               "(the provenance is in the print.json sidecar)")
    info = reader.metadata or {}
    title = str(info.get("/Title") or "")
    report.watermarks = [m for m in ("PREVIEW", "DRAFT") if f"[{m}]" in title]
    version = str(info.get("/GTS_PDFXVersion") or "")
    report.pdf_standard = version or f"PDF {reader.pdf_header.removeprefix('%PDF-')}"
    pdfx = r.pdf_standard.startswith("PDF/X")
    if pdfx and not version and r.pdf_fallback:
        # the build found no CMYK profile and wrote the platform's fallback: judged as that, and said
        pdfx = False
        report.notes.append(f"written as {r.pdf_fallback} in RGB, not {r.pdf_standard}: no CMYK output profile was "
                            f"found ({PROFILE_HINT}); {r.name} takes it and converts the colour itself")
    if pdfx:
        report.problems += pdfx_problems(reader, r.pdf_standard, labels)
        report.checked_by.append("pypdf: PDF/X keys, output intent and its ICC profile, boxes, colour, transparency")
    for page, label in zip(reader.pages, labels):
        if page.get("/Annots"):
            report.problems.append(f"{label}: has annotations; print platforms refuse them")
        for xobj in _images(page):
            if r.colour == "CMYK" and not pdfx and not r.pdf_fallback and xobj.get("/ColorSpace") != "/DeviceCMYK":
                report.problems.append(f"{label}: image in {xobj.get('/ColorSpace')}, {r.name} wants CMYK")
            ink = _ink_pct(xobj)
            if ink is not None:
                report.max_ink_pct = ink if report.max_ink_pct is None else max(report.max_ink_pct, ink)
                if r.total_ink_pct is not None and ink > r.total_ink_pct + 0.5:
                    report.problems.append(f"{label}: total ink {ink:.0f} % (> {r.total_ink_pct} % for {r.name})")
    if r.total_ink_pct is not None:
        _rendered_ink(path, r.total_ink_pct, r.name, report, labels)


def _rendered_ink(path: Path, limit: int, name: str, report: PrintPreflight, labels: list[str]) -> None:
    """The ink of every page as Ghostscript renders it (vector fills and text included), where it is installed."""
    if ghostscript() is None:
        report.notes.append(GS_MISSING)
        return
    try:
        rendered = render_ink(path)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        report.problems.append(str(exc))
        return
    report.checked_by.append("Ghostscript: every page rendered to CMYK, total ink per area")
    report.problems += [f"Ghostscript: {e}" for e in rendered.errors[:5]]
    for label, ink in zip(labels, rendered.max_ink_pct):
        if ink > limit + 0.5:
            report.problems.append(f"{label}: total ink {ink:.0f} % in Ghostscript's render (> {limit} % for {name})")
    if rendered.max_ink_pct:
        report.rendered_max_ink_pct = max(rendered.max_ink_pct)
        report.max_ink_pct = max(report.max_ink_pct or 0.0, report.rendered_max_ink_pct)


def _walk(reader: PdfReader, page, number: int, label: str, safe_in, dpi: int, report: PrintPreflight) -> None:
    walker = _PageWalker(reader, number, label, tuple(v * PT for v in safe_in), dpi, report.fonts)
    contents = page.get_contents()
    if contents is not None:
        walker.walk(contents, page.get("/Resources", {}).get_object() if "/Resources" in page else {},
                    [1.0, 0, 0, 1.0, 0, 0])
    if walker.result.min_ppi is not None:
        report.min_ppi = walker.result.min_ppi if report.min_ppi is None else min(report.min_ppi,
                                                                                  walker.result.min_ppi)
    report.problems.extend(f"{label}: {p}" for p in walker.result.problems)


def preflight_interior(path: str | Path, spec: PrintTargetSpec, content_pages: int) -> PrintPreflight:
    """The interior against its platform; `content_pages` are the story's pages (the rest must be blank)."""
    path = Path(path)
    r = rules(spec.platform)
    reader = PdfReader(str(path))
    n = len(reader.pages)
    report = PrintPreflight("interior", n)
    labels = [f"page {i}" for i in range(1, n + 1)]
    low, high = page_limits(spec.platform, spec.binding, spec.paper, spec.trim_width_in, spec.trim_height_in)
    if not low <= n <= high:
        report.problems.append(f"{n} pages; {r.name} {spec.binding} on {spec.paper} prints {low}-{high}")
    if n % r.page_multiple:
        report.problems.append(f"{n} pages is not a multiple of {r.page_multiple}")
    if n < content_pages:
        report.problems.append(f"{n} pages but the story has {content_pages}: pages were dropped")
    blank = [not list(_images(p)) for p in reader.pages]
    if r.last_page_blank and n and not blank[-1]:
        report.problems.append(f"page {n}: {r.name} wants the last page blank")
    run = next((i for i, b in enumerate(reversed(blank)) if not b), n)
    if run:
        report.notes.append(f"{run} blank page(s) added at the end to meet the page-count rules")
    if r.max_blank_run is not None and run > r.max_blank_run:
        report.notes.append(f"{r.name} may refuse more than {r.max_blank_run} blank pages in a row (UNCONFIRMED for "
                            f"end pages): add story pages, a title page or end papers")
    for i, page in enumerate(reader.pages, 1):
        ip = interior_page(spec.platform, spec.trim_width_in, spec.trim_height_in, i, n, spec.bleed_in,
                           spec.safe_margin_in)
        label = labels[i - 1]
        for name, want in (("media box", (0, 0, *ip.media)), ("trim box", ip.trim), ("bleed box", (0, 0, *ip.media))):
            if problem := _box_problem(page, name, want):
                report.problems.append(f"{label} ({'right' if ip.recto else 'left'}-hand): {problem}")
        _walk(reader, page, i, label, ip.safe, spec.dpi, report)
    _common(reader, path, spec, report, labels)
    return report


def preflight_cover(path: str | Path, spec: PrintTargetSpec, interior_pages: int) -> PrintPreflight:
    """The cover spread against its platform, its spine against an interior of `interior_pages` pages."""
    path = Path(path)
    r = rules(spec.platform)
    reader = PdfReader(str(path))
    report = PrintPreflight("cover", len(reader.pages))
    if len(reader.pages) != 1:
        report.problems.append(f"the cover has {len(reader.pages)} pages; it must be one spread")
    if not reader.pages:
        return report
    page = reader.pages[0]
    spread = cover_spread(spec.platform, spec.binding, spec.paper, spec.trim_width_in, spec.trim_height_in,
                          interior_pages)
    media = _box(page, "media box")
    panels = 2 * spec.trim_width_in + 2 * spread.wrap + 2 * spread.hinge
    spine = media[2] / PT - panels
    if abs(spine - spread.spine_width) > SPINE_TOLERANCE_IN:
        report.problems.append(f"cover: spine is {spine:.4f} in; {interior_pages} pages on {spec.paper} need "
                               f"{spread.spine_width:.4f} in")
    for name, want in (("media box", (0, 0, spread.width, spread.height)), ("trim box", spread.trim),
                       ("bleed box", (0, 0, spread.width, spread.height))):
        if problem := _box_problem(page, name, want):
            report.problems.append(f"cover: {problem}")
    margin = max(r.safe_margin_in, spec.safe_margin_in)
    t = spread.trim
    _walk(reader, page, 1, "cover", (t[0] + margin, t[1] + margin, t[2] - margin, t[3] - margin), spec.dpi, report)
    for xobj in _images(page):
        with Image.open(io.BytesIO(xobj.get_data())) as im:
            k = im.width / spread.width
            b = spread.barcode
            inset = 8  # JPEG ringing at the box's edge is not art in the box
            box = im.convert("RGB").crop((round(b[0] * k) + inset, round((spread.height - b[3]) * k) + inset,
                                          round(b[2] * k) - inset, round((spread.height - b[1]) * k) - inset))
            if np.asarray(box, dtype=np.float32).min() < 225:
                report.problems.append(f"cover: the barcode box ({b[2] - b[0]:g} x {b[3] - b[1]:g} in at the bottom "
                                       "right of the back cover) is not kept clear")
    if not spread.spine_text:
        report.notes.append(f"no spine text: {r.name} prints it from {r.spine_text_min_pages} pages")
    _common(reader, path, spec, report, ["cover"])
    return report
