"""The two files a print-on-demand platform takes: the interior (single pages) and the one-piece cover spread.

Both are laid out from the platform's table (print_platforms.py) with pdf.py's drawing helpers, so text, panels,
fonts and watermarks look exactly as in the reading copy (`book_pdf`). Differences that the platforms ask for:

- Interior: the page size and bleed edges of the platform (KDP: trim + 0.125 in wide, + 0.25 in tall, no bleed at
  the gutter, so right- and left-hand pages put the trim box on opposite sides), the gutter margin for the page
  count, blank pages added at the end to reach the platform's page-count rules (never a page dropped), and no
  bookmarks or annotations (KDP refuses both).
- Cover: wrap/bleed + back + (hinge) + spine + (hinge) + front + wrap/bleed; the front is the hero page with the
  title, the back a generated back-cover image with the story's back-cover text, the spine carries title and
  author only from the platform's minimum page count, and the barcode box is painted plain white.
- PDF/X platforms (IngramSpark): images are separated to CMYK through the CMYK output profile the file carries
  (print_colour.py: found at run time, none ships here) and held under the platform's total-ink limit; text is
  100 % K. The file is PDF 1.3 with the PDF/X-1a:2001 keys (GTS_PDFXVersion, Trapped /False) and one OutputIntent
  whose DestOutputProfile is that ICC profile; every page has its TrimBox and BleedBox, and nothing is
  transparent (the watermark is outlined, not translucent). print_pdfx.py reads all of that back, and
  print_ghostscript.py has Ghostscript render the pages and measure the ink. No certified PDF/X validator has
  read the result: run it through the platform's own upload check before paying for a proof.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps, ImageStat
from reportlab import rl_config
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.pdfdoc import PDFArray, PDFDictionary, PDFName, PDFStream, PDFString, PDFZCompress
from reportlab.pdfgen.canvas import Canvas

from bookbug_assets.pdf import (
    _BUILD_LOCK, BOLD, JPEG_QUALITY, MIN_BODY_PT, REGULAR, PdfPage, _draw_text, _fit_panel, _Geom, _Info, _Jpeg,
    _layout, _register_fonts, _render_image, WATERMARK_CAP, watermark_size,
)
from bookbug_assets.pdf_xmp import add_xmp
from bookbug_assets.print_colour import CmykProfile, NoCmykProfile, find_cmyk_profile, separate
from bookbug_assets.print_platforms import (
    CoverSpread, PagePlan, cover_spread, interior_page, pixels, plan_pages, rules,
)
from bookbug_assets.storage import atomic_file

PT = 72.0
PDFX_VERSION = "PDF/X-1a:2001"


@dataclass(frozen=True)
class PrintTargetSpec:
    """What the files are built for: platform, binding, paper and the story's format (trim, bleed, margin, dpi)."""

    platform: str
    binding: str
    paper: str
    trim_width_in: float
    trim_height_in: float
    bleed_in: float = 0.125
    safe_margin_in: float = 0.5
    dpi: int = 300

    @classmethod
    def of(cls, target, fmt) -> "PrintTargetSpec":
        """From a story's `print` (None: generic) and `format`."""
        platform, binding, paper = (target.platform, target.binding, target.paper) if target else \
            ("generic", "paperback", "premium-color")
        return cls(platform, binding, paper, fmt.trim_width_in, fmt.trim_height_in, fmt.bleed_in, fmt.safe_margin_in,
                   fmt.dpi)


@dataclass(frozen=True)
class PrintFile:
    path: Path
    page_count: int
    width_in: float          # of the first page (interior) or the spread (cover)
    height_in: float
    preview: bool
    sha256: str
    pdf_standard: str        # as written: the platform's ("PDF/X-1a:2001": the X keys are in) or its fallback
    plan: PagePlan | None = None
    spread: CoverSpread | None = None
    upscaled: list[str] = field(default_factory=list)


def _jpeg(img: Image.Image, dpi: float) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0, dpi=(dpi, dpi))
    return buf.getvalue()


def _for_platform(jpeg: bytes, profile: CmykProfile | None, max_ink_pct: int | None, dpi: float) -> bytes:
    if profile is None:
        return jpeg
    with Image.open(io.BytesIO(jpeg)) as im:
        return _jpeg(separate(im, profile, max_ink_pct), dpi)


def _output_for(platform: str) -> tuple[CmykProfile | None, str]:
    """The CMYK output profile a PDF/X or CMYK platform's files are separated for and carry, and the standard
    written. With none configured or installed, a platform that also takes plain PDF (KDP) gets its fallback in
    RGB; any other fails with MissingIccProfile, naming the package to install, before anything is drawn."""
    r = rules(platform)
    if r.colour != "CMYK" and not r.pdf_standard.startswith("PDF/X"):
        return None, r.pdf_standard
    try:
        return find_cmyk_profile(), r.pdf_standard
    except NoCmykProfile:
        if r.pdf_fallback is None:
            raise
        return None, r.pdf_fallback


def _box_pt(box) -> tuple[float, ...]:
    return tuple(v * PT for v in box)


def _xmp_for(platform: str, standard: str, xmp: bytes | None) -> bytes | None:
    """The provenance XMP where the platform takes metadata and the standard has metadata streams (PDF 1.4+)."""
    return xmp if rules(platform).xmp_allowed and standard != "PDF/X-1a:2001" else None


def _canvas(buf, size_pt, title: str, author: str, marks: list[str], pdfx: CmykProfile | None,
            xmp: bytes | None) -> Canvas:
    c = Canvas(buf, pagesize=size_pt, invariant=1, pageCompression=1, initialFontName=REGULAR,
               pdfVersion=(1, 3) if pdfx else None)
    c._doc.info = _Info({"GTS_PDFXVersion": PDFX_VERSION, "GTS_PDFXConformance": PDFX_VERSION} if pdfx else {})
    c._doc.info.trapped = "False"  # PDF/X: Trapped must be True or False; nothing here is trapped
    if pdfx:
        # reportlab writes only the catalog keys it knows; OutputIntents is added to this catalog's list.
        catalog = c._doc.Catalog
        catalog.__NoDefault__ = [*catalog.__NoDefault__, "OutputIntents"]
        icc = c._doc.Reference(PDFStream(PDFDictionary({"N": 4}), pdfx.data, filters=[PDFZCompress]))
        c.setCatalogEntry("OutputIntents", PDFArray([PDFDictionary({
            "Type": PDFName("OutputIntent"), "S": PDFName("GTS_PDFX"),
            "OutputConditionIdentifier": PDFString(pdfx.condition_identifier),
            "RegistryName": PDFString("http://www.color.org"), "OutputCondition": PDFString(pdfx.condition),
            "Info": PDFString(pdfx.description), "DestOutputProfile": icc})]))
    if xmp is not None:
        add_xmp(c, xmp)
    c.setTitle(" ".join([*(f"[{m}]" for m in marks), title]))
    c.setAuthor(author)
    c.setCreator("bookbug_assets")
    return c


def _watermark(c: Canvas, geom: _Geom, word: str) -> None:
    """The PREVIEW / DRAFT mark as outlined red letters: pdf.py's mark is 30 % transparent, which PDF/X-1a forbids,
    and a preflight must judge the file by its watermark, not by a transparency the watermark brought in."""
    x0, y0, x1, y1 = geom.safe
    theta = math.atan2(geom.media_h, geom.media_w)
    size = watermark_size(geom, word)  # as pdf.py's mark: inside the safe area along the diagonal
    per_pt, cap = pdfmetrics.stringWidth(word, BOLD, 1), WATERMARK_CAP
    c.saveState()
    c.setStrokeColorCMYK(0, 0.9, 0.9, 0)
    c.setLineWidth(max(1.0, size / 40))
    c.translate((x0 + x1) / 2, (y0 + y1) / 2)
    c.rotate(math.degrees(theta))
    text = c.beginText()
    text.setTextRenderMode(1)  # stroke only
    text.setFont(BOLD, size)
    text.setTextOrigin(-per_pt * size / 2, -cap * size / 2)
    text.textOut(word)
    c.drawText(text)
    c.restoreState()


def _marks(preview: bool, draft: bool) -> list[str]:
    return [m for m, on in (("PREVIEW", preview), ("DRAFT", draft)) if on]


def _save(c: Canvas, buf: io.BytesIO, out_path: Path) -> tuple[bytes, str]:
    c.save()
    data = buf.getvalue()
    with atomic_file(out_path) as handle:
        handle.write(data)
    return data, hashlib.sha256(data).hexdigest()


def _geom(media_in: tuple[float, float], safe_in, dpi: int, bleed_in: float = 0.0) -> _Geom:
    return _Geom(media_in[0] * PT, media_in[1] * PT, bleed_in * PT, _box_pt(safe_in),
                 (pixels(media_in[0], dpi), pixels(media_in[1], dpi)))


# --- interior ------------------------------------------------------------------------------------------------

def build_interior_pdf(*, title: str, author: str, pages: list[PdfPage], spec: PrintTargetSpec, out_path: Path,
                       draft: bool = False, xmp: bytes | None = None) -> PrintFile:
    """The story pages, then the blank pages the platform's page-count rules need, as single pages. `xmp`
    (pdf_xmp.provenance_xmp) goes in where the platform and its standard allow metadata."""
    _register_fonts()
    r = rules(spec.platform)
    missing = [str(p.image) for p in pages if not Path(p.image).is_file()]
    if missing:
        raise FileNotFoundError(f"page images not found: {missing}")
    plan = plan_pages(spec.platform, spec.binding, spec.paper, len(pages), spec.trim_width_in, spec.trim_height_in)
    preview = any(p.is_preview for p in pages)
    marks = _marks(preview, draft)
    profile, standard = _output_for(spec.platform)
    pdfx = profile if standard.startswith("PDF/X") else None
    buf = io.BytesIO()
    upscaled = []
    with _BUILD_LOCK:
        a85, rl_config.useA85 = rl_config.useA85, 0   # ASCII85 would inflate the JPEG streams by 25%
        try:
            first = interior_page(spec.platform, spec.trim_width_in, spec.trim_height_in, 1, plan.total_pages,
                                  spec.bleed_in, spec.safe_margin_in)
            c = _canvas(buf, _box_pt(first.media), title, author, marks, pdfx,
                        _xmp_for(spec.platform, standard, xmp))
            for n in range(1, plan.total_pages + 1):
                ip = interior_page(spec.platform, spec.trim_width_in, spec.trim_height_in, n, plan.total_pages,
                                   spec.bleed_in, spec.safe_margin_in)
                geom = _geom(ip.media, ip.safe, spec.dpi)
                c.setPageSize(_box_pt(ip.media))
                c.setTrimBox(_box_pt(ip.trim))
                c.setBleedBox((0, 0, *_box_pt(ip.media)))
                if n <= len(pages):
                    page = pages[n - 1]
                    label = page.label or f"page {n}"
                    panels = _layout(page, geom, label, None)
                    jpeg, up, placed = _render_image(Path(page.image), geom, panels)
                    if up:
                        upscaled.append(label)
                    c.drawImage(_Jpeg(_for_platform(jpeg, profile, r.total_ink_pct, spec.dpi)), 0, 0, width=geom.media_w,
                                height=geom.media_h)
                    for panel, y0 in placed:
                        _draw_text(c, geom, panel, y0)
                if marks:
                    _watermark(c, geom, " ".join(marks))
                c.showPage()
            data, sha = _save(c, buf, Path(out_path))
        finally:
            rl_config.useA85 = a85
    return PrintFile(path=Path(out_path), page_count=plan.total_pages, width_in=first.media[0],
                     height_in=first.media[1], preview=preview, sha256=sha,
                     pdf_standard=standard, plan=plan, upscaled=upscaled)


# --- cover ---------------------------------------------------------------------------------------------------

def _panel_art(path: Path, size_px: tuple[int, int]) -> Image.Image:
    with Image.open(path) as src:
        img = ImageOps.exif_transpose(src).convert("RGB")
        return ImageOps.fit(img, size_px, method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def _spine_text(c: Canvas, spread: CoverSpread, title: str, author: str, margin_in: float) -> None:
    """Title and author along the spine, reading top to bottom (the US and UK convention)."""
    room = (spread.spine[1] - spread.spine[0] - 2 * margin_in) * PT
    length = (spread.height - 2 * spread.wrap - 1.0) * PT
    text = f"{title}  ·  {author}"
    size = min(0.7 * room, 18.0)
    while size > 5 and pdfmetrics.stringWidth(text, BOLD, size) > length:
        size -= 0.5
    if size <= 5:
        return  # too narrow for legible text: a plain spine is the safe choice
    c.saveState()
    c.setFillColorCMYK(0, 0, 0, 1)
    c.translate((spread.spine[0] + spread.spine[1]) / 2 * PT, spread.height / 2 * PT)
    c.rotate(-90)
    c.setFont(BOLD, size)
    c.drawCentredString(0, -0.35 * size, text)
    c.restoreState()


def back_text_fit_problem(text: str, spec: PrintTargetSpec) -> str | None:
    """Why the back-cover text would not fit above the barcode box, or None."""
    _register_fonts()
    spread = cover_spread(spec.platform, spec.binding, spec.paper, spec.trim_width_in, spec.trim_height_in, 24)
    try:
        _back_panel(text, spread, spec)
    except ValueError as exc:
        return str(exc)
    return None


def _back_panel(text: str, spread: CoverSpread, spec: PrintTargetSpec):
    """The back-cover text panel in the back panel's safe area, above the barcode box."""
    margin = max(rules(spec.platform).safe_margin_in, spec.safe_margin_in)
    x0, y0, x1, y1 = spread.back
    safe = (x0 + margin, max(y0 + margin, spread.barcode[3] + 0.125), x1 - margin, y1 - margin)
    width, height = (safe[2] - safe[0]) * PT, (safe[3] - safe[1]) * PT
    panel = _fit_panel(lambda s: [(REGULAR, s, text)], width, 16, MIN_BODY_PT, height, "top", "back_cover_text")
    return panel, safe


def build_cover_pdf(*, title: str, author: str, front: PdfPage, back: PdfPage, back_text: str | None,
                    spec: PrintTargetSpec, interior_pages: int, out_path: Path, draft: bool = False,
                    xmp: bytes | None = None) -> PrintFile:
    """The cover spread for an interior of `interior_pages` pages (the padded count: it sets the spine)."""
    _register_fonts()
    r = rules(spec.platform)
    profile, standard = _output_for(spec.platform)
    for p in (front, back):
        if not Path(p.image).is_file():
            raise FileNotFoundError(f"cover image not found: {p.image}")
    spread = cover_spread(spec.platform, spec.binding, spec.paper, spec.trim_width_in, spec.trim_height_in,
                          interior_pages)
    W, H = pixels(spread.width, spec.dpi), pixels(spread.height, spec.dpi)
    k = W / spread.width  # px per inch, actual
    art = Image.new("RGB", (W, H), "white")
    # back: from the left edge to the spine; front: from the spine to the right edge (each takes its wrap and hinge)
    s0, s1 = round(spread.spine[0] * k), round(spread.spine[1] * k)
    art.paste(_panel_art(Path(back.image), (s0, H)), (0, 0))
    hero = _panel_art(Path(front.image), (W - s1, H))
    art.paste(hero, (s1, 0))
    if s1 > s0:  # the spine takes the hero's average colour, so a slightly off fold shows no hard edge
        spine = Image.new("RGB", (s1 - s0, H), tuple(round(v) for v in ImageStat.Stat(hero).mean))
        art.paste(spine, (s0, 0))
    # front: title and author panel, laid out like the reading copy's cover, inside the front panel's safe area
    margin = max(r.safe_margin_in, spec.safe_margin_in)
    fx0 = spread.front[0]
    front_media = (spread.width - fx0, spread.height)
    front_safe = (margin, spread.wrap + margin, spread.front[2] - fx0 - margin, spread.front[3] - margin)
    fgeom = _geom(front_media, front_safe, spec.dpi)
    front_panels = _layout(PdfPage(image=front.image, text="", is_preview=front.is_preview), fgeom, "front cover",
                           (title, author))
    front_placed = [(p, fgeom.panel_y0(p, "top")) for p in front_panels]
    back_placed = []
    if back_text:
        panel, bsafe = _back_panel(back_text, spread, spec)
        back_placed = [(panel, bsafe[3] * PT - panel.height, bsafe)]
    draw = ImageDraw.Draw(art)
    for panel, y0_pt, x0_in, x1_in in ([(p, y, fx0 + front_safe[0], fx0 + front_safe[2]) for p, y in front_placed]
                                        + [(p, y, s[0], s[2]) for p, y, s in back_placed]):
        box = (round(x0_in * k), round((spread.height - (y0_pt + panel.height) / PT) * k), round(x1_in * k),
               round((spread.height - y0_pt / PT) * k))
        region = art.crop(box)
        veiled = Image.blend(region, Image.new("RGB", region.size, "white"), 0.78)
        mask = Image.new("L", region.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, region.width - 1, region.height - 1),
                                               radius=round(panel.pad / PT * k), fill=255)
        art.paste(veiled, box[:2], mask)
    bx = spread.barcode
    # the barcode box: plain white, where the platform prints the ISBN barcode
    draw.rectangle((round(bx[0] * k), round((spread.height - bx[3]) * k), round(bx[2] * k),
                    round((spread.height - bx[1]) * k)), fill="white")
    jpeg = _for_platform(_jpeg(art, k), profile, r.total_ink_pct, k)
    preview = front.is_preview or back.is_preview
    marks = _marks(preview, draft)
    pdfx = profile if standard.startswith("PDF/X") else None
    size = (spread.width * PT, spread.height * PT)
    buf = io.BytesIO()
    with _BUILD_LOCK:
        a85, rl_config.useA85 = rl_config.useA85, 0
        try:
            c = _canvas(buf, size, title, author, marks, pdfx, _xmp_for(spec.platform, standard, xmp))
            c.setTrimBox(_box_pt(spread.trim))
            c.setBleedBox((0, 0, *size))
            c.drawImage(_Jpeg(jpeg), 0, 0, width=size[0], height=size[1])
            c.saveState()
            c.translate(fx0 * PT, 0)
            for panel, y0 in front_placed:
                _draw_text(c, fgeom, panel, y0)
            if marks:
                _watermark(c, fgeom, " ".join(marks))
            c.restoreState()
            for panel, y0, bsafe in back_placed:
                bgeom = _Geom(size[0], size[1], 0.0, _box_pt(bsafe), (W, H))
                _draw_text(c, bgeom, panel, y0)
            if spread.spine_text:
                _spine_text(c, spread, title, author, r.spine_text_margin_in)
            c.showPage()
            data, sha = _save(c, buf, Path(out_path))
        finally:
            rl_config.useA85 = a85
    return PrintFile(path=Path(out_path), page_count=1, width_in=spread.width, height_in=spread.height,
                     preview=preview, sha256=sha, pdf_standard=standard, spread=spread)
