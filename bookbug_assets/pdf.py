"""Print-ready picture-book PDF assembly (reportlab + Pillow).

Print-on-demand conventions: every page is trim + bleed on all four sides
(IngramSpark/Lulu style), text stays >= 0.5 in inside the trim, images are embedded at >= 300 ppi
effective and fonts are embedded (subset TrueType).
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import reportlab
from PIL import Image, ImageDraw, ImageOps, ImageStat
from reportlab import rl_config
from reportlab.lib.utils import ImageReader, simpleSplit
from reportlab.pdfbase import pdfdoc, pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from bookbug_assets.pdf_xmp import add_xmp
from bookbug_assets.storage import atomic_file

REGULAR, BOLD = "BookbugSans", "BookbugSans-Bold"
JPEG_QUALITY = 92          # visually lossless for painted art; keeps a 13-page book in tens of MB
LEADING = 1.25
PANEL_ALPHA = 0.78         # how much white goes into the text panel behind the words
MIN_BODY_PT = 9.0          # below this picture-book text is unreadable; fail instead of shrinking further
_RESERVED_INFO = {"Title", "Author", "Producer", "CreationDate", "ModDate", "Trapped"}
_BUILD_LOCK = threading.Lock()   # guards the process-wide rl_config.useA85 toggle below


@dataclass(frozen=True)
class PdfSpec:  # all in inches
    trim_width_in: float = 8.5
    trim_height_in: float = 8.5
    bleed_in: float = 0.125
    safe_margin_in: float = 0.5
    dpi: int = 300

    @classmethod
    def of(cls, fmt: Any) -> "PdfSpec":
        """From a story's `format` (stories.models.BookFormat): the one place the two meet."""
        return cls(trim_width_in=fmt.trim_width_in, trim_height_in=fmt.trim_height_in, bleed_in=fmt.bleed_in,
                   safe_margin_in=fmt.safe_margin_in, dpi=fmt.dpi)


@dataclass(frozen=True)
class PdfPage:
    image: Path
    text: str
    is_preview: bool
    label: str = ""


@dataclass(frozen=True)
class PdfResult:
    path: Path
    page_count: int
    width_pt: float
    height_pt: float
    preview: bool
    upscaled_pages: list[str]
    sha256: str


@dataclass(frozen=True)
class _Panel:
    blocks: tuple[tuple[str, float, tuple[str, ...]], ...]   # (font, size, wrapped lines)
    height: float                                            # pt, including padding
    pad: float
    where: str                                               # "top" | "bottom" | "auto"


@dataclass(frozen=True)
class _Geom:
    media_w: float
    media_h: float
    bleed: float
    safe: tuple[float, float, float, float]                  # x0, y0, x1, y1 in pt (PDF, bottom-up)
    px: tuple[int, int]

    @classmethod
    def of(cls, spec: PdfSpec) -> "_Geom":
        if spec.dpi <= 0 or spec.bleed_in < 0 or 2 * spec.safe_margin_in >= min(spec.trim_width_in, spec.trim_height_in):
            raise ValueError(f"unusable PdfSpec {spec}")
        w_in, h_in = spec.trim_width_in + 2 * spec.bleed_in, spec.trim_height_in + 2 * spec.bleed_in
        inset = (spec.bleed_in + spec.safe_margin_in) * 72
        # ceil (minus float fuzz) so effective resolution is never a hair under spec.dpi
        px = (math.ceil(w_in * spec.dpi - 1e-6), math.ceil(h_in * spec.dpi - 1e-6))
        return cls(w_in * 72, h_in * 72, spec.bleed_in * 72, (inset, inset, w_in * 72 - inset, h_in * 72 - inset), px)

    def panel_y0(self, panel: _Panel, where: str) -> float:
        return self.safe[1] if where == "bottom" else self.safe[3] - panel.height

    def panel_px(self, panel: _Panel, y0: float) -> tuple[int, int, int, int]:
        """The panel's pixel box in the (top-down) page image."""
        k = self.px[0] / self.media_w
        return (round(self.safe[0] * k), round((self.media_h - y0 - panel.height) * k),
                round(self.safe[2] * k), round((self.media_h - y0) * k))


@lru_cache(maxsize=1)
def _register_fonts() -> None:
    # Vera ships inside reportlab, so no font file has to travel with the package; TTFont subsets
    # and embeds (FontFile2) automatically, which every print-on-demand preflight demands.
    font_dir = Path(reportlab.__file__).parent / "fonts"
    for name, file in ((REGULAR, "Vera.ttf"), (BOLD, "VeraBd.ttf")):
        pdfmetrics.registerFont(TTFont(name, str(font_dir / file)))


def _fit_panel(make, width: float, s_max: float, s_min: float, max_h: float, where: str, what: str) -> _Panel:
    """Largest size (0.5 pt steps) whose wrapped blocks fit width x max_h; make(size) -> [(font, size, text)]."""
    size = s_max
    while size >= s_min:
        pad = max(6.0, 0.5 * size)
        blocks = tuple((f, s, tuple(simpleSplit(t, f, s, width - 2 * pad))) for f, s, t in make(size))
        height = sum(s * LEADING * len(lines) for _, s, lines in blocks) + 2 * pad
        widest = max((pdfmetrics.stringWidth(l, f, s) for f, s, ls in blocks for l in ls), default=0)
        if height <= max_h and widest <= width - 2 * pad:
            return _Panel(blocks, height, pad, where)
        size -= 0.5
    raise ValueError(f"{what}: text does not fit the safe area even at {s_min} pt; shorten it")


def _layout(page: PdfPage, geom: _Geom, label: str, cover: tuple[str, str] | None) -> list[_Panel]:
    x0, y0, x1, y1 = geom.safe
    w, h = x1 - x0, y1 - y0
    panels = []
    if cover is not None:
        title, author = cover
        panels.append(_fit_panel(lambda s: [(BOLD, s, title), (REGULAR, max(12.0, s * 0.5), author)],
                                 w, 48, 14, 0.4 * h, "top", f"{label} title"))
    if page.text.strip():
        # the cover's own text (a tagline) goes under the title panel; story text takes whichever band is calmer
        panels.append(_fit_panel(lambda s: [(REGULAR, s, page.text.strip())], w, 24, MIN_BODY_PT,
                                 0.4 * h, "bottom" if cover is not None else "auto", label))
    return panels


def _render_image(path: Path, geom: _Geom, panels: list[_Panel]) -> tuple[bytes, bool, list[tuple[_Panel, float]]]:
    """Cover-fit the art to the full-bleed pixel size, bake the panels in, return JPEG bytes."""
    W, H = geom.px
    with Image.open(path) as src:
        img = ImageOps.exif_transpose(src)
        upscaled = max(W / img.width, H / img.height) > 1
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")
            base = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(base, img)
        img = ImageOps.fit(img.convert("RGB"), (W, H), method=Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    placed = []
    for p in panels:
        where = p.where
        if where == "auto":
            # words go where the picture is quietest (least luminance variation); bottom unless top is clearly calmer
            busy = {cand: ImageStat.Stat(img.crop(geom.panel_px(p, geom.panel_y0(p, cand))).convert("L").reduce(8)).stddev[0]
                    for cand in ("bottom", "top")}
            where = "top" if busy["top"] < 0.8 * busy["bottom"] else "bottom"
        py0 = geom.panel_y0(p, where)
        placed.append((p, py0))
        # Baked into the raster rather than drawn with PDF transparency: PDF/X-1a and KDP want
        # flattened transparency, and a baked panel costs nothing extra in the JPEG.
        box = geom.panel_px(p, py0)
        region = img.crop(box)
        veiled = Image.blend(region, Image.new("RGB", region.size, "white"), PANEL_ALPHA)
        mask = Image.new("L", region.size, 0)
        ImageDraw.Draw(mask).rounded_rectangle((0, 0, region.width - 1, region.height - 1),
                                               radius=round(p.pad * W / geom.media_w), fill=255)
        img.paste(veiled, box[:2], mask)
    # 4:4:4 keeps saturated line-art edges crisp; baseline (not progressive) for old print RIPs
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY, subsampling=0, dpi=(W / geom.media_w * 72,) * 2)
    return buf.getvalue(), upscaled, placed


def _draw_text(c: Canvas, geom: _Geom, panel: _Panel, y0: float) -> None:
    # 100% K rather than RGB black: RGB black text prints light/muddy on IngramSpark
    c.setFillColorCMYK(0, 0, 0, 1)
    cx = (geom.safe[0] + geom.safe[2]) / 2
    top = y0 + panel.height - panel.pad
    for font, size, lines in panel.blocks:
        asc, desc = pdfmetrics.getAscent(font, size), pdfmetrics.getDescent(font, size)  # desc < 0
        c.setFont(font, size)
        for line in lines:
            # centre the glyphs' ascent..descent extent inside this line's leading box
            c.drawCentredString(cx, top - asc - (size * LEADING - (asc - desc)) / 2, line)
            top -= size * LEADING


WATERMARK_CAP = 0.75  # a bold capital's height per point of size


def watermark_size(geom: _Geom, word: str) -> float:
    """The largest size at which `word`, rotated along the page diagonal, still sits inside the safe area (so a
    preflight sees no stray text)."""
    x0, y0, x1, y1 = geom.safe
    theta = math.atan2(geom.media_h, geom.media_w)
    per_pt, cap = pdfmetrics.stringWidth(word, BOLD, 1), WATERMARK_CAP
    return 0.9 * min((x1 - x0) / (per_pt * math.cos(theta) + cap * math.sin(theta)),
                     (y1 - y0) / (per_pt * math.sin(theta) + cap * math.cos(theta)))


def _draw_watermark(c: Canvas, geom: _Geom, word: str) -> None:
    # The one PREVIEW mark a proof gets: preview renders carry no stamp of their own (providers/preview.py), so
    # the mark is on every page of the book, as text a preflight reads, and is never drawn twice.
    size = watermark_size(geom, word)
    c.saveState()
    c.setFillColorRGB(0.85, 0.1, 0.1, alpha=0.3)   # previews never go to press, so live transparency is fine
    c.translate(geom.media_w / 2, geom.media_h / 2)
    c.rotate(math.degrees(math.atan2(geom.media_h, geom.media_w)))  # along the page diagonal
    c.setFont(BOLD, size)
    c.drawCentredString(0, -WATERMARK_CAP * size / 2, word)
    c.restoreState()


class _Jpeg(ImageReader):
    """Our JPEG bytes, passed through to the PDF untouched (DCTDecode, no re-encode).

    drawImage names each image XObject by hashing getRGBData(), which for a plain ImageReader
    decodes the full 2625x2625 page (~0.1 s a page, single-threaded); the JPEG bytes' digest is an
    equally unique name and keeps the output deterministic (a temp-file path would not).
    """

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self._key = hashlib.sha256(data).digest()
        self._dataA = None   # no alpha; normally set as a side effect of the decode we skip

    def getRGBData(self):
        return self._key


class _Info(pdfdoc.PDFInfo):
    """reportlab's document-info object with extra custom keys (e.g. /bookbug:provenance)."""

    def __init__(self, extra: dict[str, str]):
        super().__init__()
        self.extra = extra

    def format(self, document):
        d = {"Title": self.title, "Author": self.author, "Producer": self.producer, "Creator": self.creator,
             "Subject": self.subject, "Keywords": self.keywords, **self.extra}
        out = {k: pdfdoc.PDFString(v) for k, v in d.items()}
        out["ModDate"] = out["CreationDate"] = pdfdoc.PDFDate(ts=document._timeStamp, dateFormatter=self._dateFormatter)
        out["Trapped"] = pdfdoc.PDFName(self.trapped)
        return pdfdoc.PDFDictionary(out).format(document)


def _info_keys(metadata: dict[str, str] | None) -> dict[str, str]:
    extra = {}
    for key, value in (metadata or {}).items():
        name = key.lstrip("/")
        if not re.fullmatch(r"[A-Za-z0-9_.:\-]+", name) or name in _RESERVED_INFO:
            raise ValueError(f"metadata key {key!r} is not a usable PDF info key")
        extra[name] = str(value)
    return extra


def _assemble(title: str, author: str, geom: _Geom, extra: dict[str, str], labels: list[str],
              rendered: list, preview: bool, draft: bool, xmp: bytes | None) -> bytes:
    marks = [m for m, on in (("PREVIEW", preview), ("DRAFT", draft)) if on]
    buf = io.BytesIO()
    with _BUILD_LOCK:
        a85, rl_config.useA85 = rl_config.useA85, 0   # ASCII85 would inflate the JPEG streams by 25%
        try:
            # invariant: fixed dates and /ID, so identical inputs give byte-identical PDFs (cache by sha256)
            c = Canvas(buf, pagesize=(geom.media_w, geom.media_h), invariant=1, pageCompression=1,
                       initialFontName=REGULAR,   # else every page references unembedded Helvetica
                       trimBox=(geom.bleed, geom.bleed, geom.media_w - geom.bleed, geom.media_h - geom.bleed),
                       bleedBox=(0, 0, geom.media_w, geom.media_h))
            c._doc.info = _Info(extra)
            c.setTitle(" ".join([*(f"[{m}]" for m in marks), title]))
            c.setAuthor(author)
            c.setCreator("bookbug_assets")
            if xmp:
                add_xmp(c, xmp)
            for i, ((jpeg, _, placed), label) in enumerate(zip(rendered, labels)):
                c.drawImage(_Jpeg(jpeg), 0, 0, width=geom.media_w, height=geom.media_h)
                for panel, y0 in placed:
                    _draw_text(c, geom, panel, y0)
                if marks:
                    _draw_watermark(c, geom, " ".join(marks))
                c.bookmarkPage(f"p{i}")
                c.addOutlineEntry(label, f"p{i}", level=0)
                c.showPage()
            c.save()
        finally:
            rl_config.useA85 = a85
    return buf.getvalue()


def text_fit_problems(*, title: str, author: str, page_texts: list[str], spec: PdfSpec) -> list[tuple[str, str]]:
    """(where, why) for every text that would not fit its page even at the smallest size: the layout build_book_pdf
    will do, without images, so a story that cannot be printed is refused before any image is paid for."""
    _register_fonts()
    geom = _Geom.of(spec)
    problems = []
    for i, (text, cover) in enumerate([("", (title, author)), *((t, None) for t in page_texts)]):
        label = "cover" if i == 0 else f"page {i}"
        try:
            _layout(PdfPage(image=Path(), text=text, is_preview=False, label=label), geom, label, cover)
        except ValueError as exc:
            problems.append(("title" if i == 0 else f"pages[{i - 1}].text", str(exc)))
    return problems


def build_book_pdf(*, title: str, author: str, cover: PdfPage, pages: list[PdfPage], spec: PdfSpec,
                   out_path: Path, draft: bool = False, metadata: dict[str, str] | None = None,
                   xmp: bytes | None = None) -> PdfResult:
    """Cover + pages -> one print-ready PDF at out_path, written atomically; returns what a preflight needs.
    `xmp`: an XMP packet (pdf_xmp.provenance_xmp) for the catalog's /Metadata stream."""
    _register_fonts()
    geom = _Geom.of(spec)
    extra = _info_keys(metadata)
    out_path = Path(out_path)
    all_pages = [cover, *pages]
    labels = [cover.label or "cover"] + [p.label or f"page {i}" for i, p in enumerate(pages, 1)]
    missing = [str(p.image) for p in all_pages if not Path(p.image).is_file()]
    if missing:   # fail before touching anything on disk, so a previous good PDF survives
        raise FileNotFoundError(f"page images not found: {missing}")
    layouts = [_layout(p, geom, lab, (title, author) if i == 0 else None) for i, (p, lab) in enumerate(zip(all_pages, labels))]
    # Resize + JPEG encode dominate the run time and Pillow drops the GIL there, so threads scale with cores.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        rendered = list(pool.map(lambda a: _render_image(Path(a[0].image), geom, a[1]), zip(all_pages, layouts)))
    preview = any(p.is_preview for p in all_pages)
    data = _assemble(title, author, geom, extra, labels, rendered, preview, draft, xmp)

    with atomic_file(out_path) as handle:
        handle.write(data)
    return PdfResult(path=out_path, page_count=len(all_pages), width_pt=geom.media_w, height_pt=geom.media_h,
                     preview=preview, upscaled_pages=[lab for lab, r in zip(labels, rendered) if r[1]],
                     sha256=hashlib.sha256(data).hexdigest())
