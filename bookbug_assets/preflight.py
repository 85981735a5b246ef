"""Print preflight of a finished book PDF: what a print-on-demand platform checks before it prints.

Per page: the media box is trim + bleed on every side, the trim and bleed boxes are where they
should be, every placed image has >= the spec's `dpi` of effective resolution at the size it is printed,
every font is embedded, and every text run lies inside the safe area (trim inset by the safe
margin). It reads the PDF itself (pypdf) rather than trusting what the builder says it wrote, so
it also catches a PDF assembled by hand or by a future builder.

The content-stream walk is a small interpreter of the operators that place things (q/Q, cm, Do,
BT/Tf/Tm/Td/TD/T*/TL/Tz/Tc/Tw, Tj/TJ/'/"); it ignores everything that only paints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pypdf import PdfReader
from pypdf.generic import ContentStream

from bookbug_assets.pdf import PdfSpec  # the spec the book was built to is the one it is checked against

POINTS_PER_INCH = 72.0
BOX_TOLERANCE_PT = 0.5
# Characters that reach below the baseline; a run without them is measured from the baseline, so
# an all-caps watermark that fits its cap height is not failed for a descent it never draws.
DESCENDERS = set("gjpqy,;()[]{}/|@Q_")


@dataclass
class PagePreflight:
    number: int  # 1-based, the cover is page 1
    label: str
    min_ppi: float | None = None
    images: int = 0
    text_runs: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class PreflightReport:
    pages: list[PagePreflight]
    fonts: dict[str, bool]  # BaseFont -> embedded
    problems: list[str]
    watermarks: list[str] = field(default_factory=list)  # PREVIEW / DRAFT: laid out for print, not to be printed

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def min_ppi(self) -> float | None:
        values = [p.min_ppi for p in self.pages if p.min_ppi is not None]
        return min(values) if values else None

    def markdown(self) -> str:
        rows = ["| page | images | min ppi | text runs | problems |", "|---|---|---|---|---|"]
        for p in self.pages:
            ppi = f"{p.min_ppi:.0f}" if p.min_ppi is not None else "-"
            rows.append(f"| {p.label} | {p.images} | {ppi} | {p.text_runs} | {'; '.join(p.problems) or 'ok'} |")
        return "\n".join(rows)


def _mul(m: list[float], n: list[float]) -> list[float]:
    """m x n for PDF's row-vector 3x3 matrices [a b c d e f]."""
    a, b, c, d, e, f = m
    a2, b2, c2, d2, e2, f2 = n
    return [a * a2 + b * c2, a * b2 + b * d2, c * a2 + d * c2, c * b2 + d * d2,
            e * a2 + f * c2 + e2, e * b2 + f * d2 + f2]


def _apply(m: list[float], x: float, y: float) -> tuple[float, float]:
    return m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]


def _raw(s) -> bytes:
    if hasattr(s, "get_original_bytes"):
        return s.get_original_bytes()
    return bytes(s) if isinstance(s, (bytes, bytearray)) else str(s).encode("latin-1", "replace")


class _Font:
    """Widths and vertical metrics of a simple font (what reportlab and most RIP-ready PDFs use)."""

    def __init__(self, font) -> None:
        font = font.get_object()
        self.name = str(font.get("/BaseFont", "?")).lstrip("/")
        self.subtype = str(font.get("/Subtype", ""))
        self.two_byte = self.subtype == "/Type0"
        descriptor = font
        if self.two_byte:
            descriptor = font["/DescendantFonts"][0].get_object()
        fd = descriptor.get("/FontDescriptor")
        fd = fd.get_object() if fd is not None else {}
        self.embedded = self.subtype == "/Type3" or any(k in fd for k in ("/FontFile", "/FontFile2", "/FontFile3"))
        self.first = int(font.get("/FirstChar", 0))
        self.widths = [float(w) for w in font.get("/Widths", [])]
        self.missing = float(fd.get("/MissingWidth", 0) or 0)
        self.default_width = float(descriptor.get("/DW", 1000)) if self.two_byte else self.missing or 500.0
        self.ascent = float(fd.get("/Ascent", 800) or 800) / 1000
        self.descent = float(fd.get("/Descent", -200) or -200) / 1000

    def width(self, data: bytes) -> float:
        """Advance of `data` in text-space units per 1 pt of font size (glyph widths / 1000)."""
        if self.two_byte:  # CID widths (/W) are rare in our PDFs; the default width is a fair bound
            return len(data) // 2 * self.default_width / 1000
        total = 0.0
        for code in data:
            i = code - self.first
            total += self.widths[i] if 0 <= i < len(self.widths) else self.missing
        return total / 1000


@dataclass
class _State:
    ctm: list[float]
    font: _Font | None = None
    size: float = 0.0
    leading: float = 0.0
    scale: float = 1.0
    char_space: float = 0.0
    word_space: float = 0.0


class _PageWalker:
    def __init__(self, reader: PdfReader, page_number: int, label: str, safe: tuple[float, float, float, float],
                 min_ppi: float, fonts: dict[str, bool]) -> None:
        self.reader = reader
        self.result = PagePreflight(page_number, label)
        self.safe = safe
        self.min_ppi = min_ppi
        self.fonts = fonts
        self._font_cache: dict[int, _Font] = {}

    def _font(self, resources, name) -> _Font | None:
        fonts = resources.get("/Font") if resources else None
        ref = fonts.get(name) if fonts else None
        if ref is None:
            self.result.problems.append(f"text uses font {name} missing from the page resources")
            return None
        key = id(ref.get_object())
        if key not in self._font_cache:
            self._font_cache[key] = _Font(ref)
            font = self._font_cache[key]
            self.fonts[font.name] = self.fonts.get(font.name, True) and font.embedded
            if not font.embedded:
                self.result.problems.append(f"font {font.name} is not embedded")
        return self._font_cache[key]

    def walk(self, content, resources, ctm: list[float], depth: int = 0) -> None:
        if depth > 8:  # a form that draws itself would never end
            return
        ops = ContentStream(content, self.reader).operations
        stack: list[_State] = []
        st = _State(ctm=list(ctm))
        tm = tlm = [1.0, 0, 0, 1.0, 0, 0]
        for operands, op in ops:
            if op == b"q":
                stack.append(_State(**{**st.__dict__, "ctm": list(st.ctm)}))
            elif op == b"Q" and stack:
                st = stack.pop()
            elif op == b"cm":
                st.ctm = _mul([float(v) for v in operands], st.ctm)
            elif op == b"Do":
                self._do(resources, operands[0], st.ctm, depth)
            elif op == b"BT":
                tm = tlm = [1.0, 0, 0, 1.0, 0, 0]
            elif op == b"Tf":
                st.font, st.size = self._font(resources, operands[0]), float(operands[1])
            elif op == b"TL":
                st.leading = float(operands[0])
            elif op == b"Tz":
                st.scale = float(operands[0]) / 100
            elif op == b"Tc":
                st.char_space = float(operands[0])
            elif op == b"Tw":
                st.word_space = float(operands[0])
            elif op == b"Tm":
                tm = tlm = [float(v) for v in operands]
            elif op in (b"Td", b"TD"):
                if op == b"TD":
                    st.leading = -float(operands[1])
                tm = tlm = _mul([1, 0, 0, 1, float(operands[0]), float(operands[1])], tlm)
            elif op in (b"T*", b"'", b'"'):
                tm = tlm = _mul([1, 0, 0, 1, 0, -st.leading], tlm)
                if op != b"T*":
                    tm = self._show(st, tm, [operands[-1]])
            elif op == b"Tj":
                tm = self._show(st, tm, operands)
            elif op == b"TJ":
                tm = self._show(st, tm, list(operands[0]))

    def _do(self, resources, name, ctm: list[float], depth: int) -> None:
        xobjects = resources.get("/XObject") if resources else None
        xobj = xobjects.get(name).get_object() if xobjects and name in xobjects else None
        if xobj is None:
            return
        if xobj.get("/Subtype") == "/Form":
            matrix = [float(v) for v in xobj.get("/Matrix", [1, 0, 0, 1, 0, 0])]
            self.walk(xobj.get_data(), xobj.get("/Resources", resources), _mul(matrix, ctm), depth + 1)
            return
        if xobj.get("/Subtype") != "/Image":
            return
        # The unit square is mapped by the CTM: its column lengths are the printed size in points.
        w_pt, h_pt = math.hypot(ctm[0], ctm[1]), math.hypot(ctm[2], ctm[3])
        if w_pt < 1 or h_pt < 1:
            return
        ppi = min(float(xobj["/Width"]) / (w_pt / POINTS_PER_INCH), float(xobj["/Height"]) / (h_pt / POINTS_PER_INCH))
        self.result.images += 1
        self.result.min_ppi = ppi if self.result.min_ppi is None else min(self.result.min_ppi, ppi)
        if ppi < self.min_ppi - 0.5:
            self.result.problems.append(
                f"image {xobj['/Width']}x{xobj['/Height']} px printed at {w_pt / 72:.2f}x{h_pt / 72:.2f} in "
                f"is {ppi:.0f} ppi (< {self.min_ppi:.0f})")

    def _show(self, st: _State, tm: list[float], items: list) -> list[float]:
        if st.font is None:
            return tm
        advance, text = 0.0, ""
        for item in items:
            if isinstance(item, (int, float)) or type(item).__name__ in ("FloatObject", "NumberObject"):
                advance -= float(item) / 1000 * st.size * st.scale  # TJ kerning, in thousandths of an em
                continue
            data = _raw(item)
            text += str(item)
            advance += (st.font.width(data) * st.size + st.char_space * len(data)
                        + st.word_space * data.count(b" ")) * st.scale
        if not text.strip():
            return _mul([1, 0, 0, 1, advance, 0], tm)
        self.result.text_runs += 1
        low = st.font.descent * st.size if DESCENDERS & set(text) else 0.0
        trm = _mul(tm, st.ctm)
        corners = [_apply(trm, x, y) for x in (0.0, advance) for y in (low, st.font.ascent * st.size)]
        x0, y0, x1, y1 = self.safe
        over = max(max(x0 - x, x - x1, y0 - y, y - y1) for x, y in corners)
        if over > BOX_TOLERANCE_PT:
            snippet = text.strip()[:40]
            self.result.problems.append(f"text {snippet!r} is {over:.1f} pt outside the safe area")
        return _mul([1, 0, 0, 1, advance, 0], tm)


def _box_problems(page, spec: PdfSpec) -> list[str]:
    media_w = (spec.trim_width_in + 2 * spec.bleed_in) * POINTS_PER_INCH
    media_h = (spec.trim_height_in + 2 * spec.bleed_in) * POINTS_PER_INCH
    bleed = spec.bleed_in * POINTS_PER_INCH
    expected = {
        "media box": (0.0, 0.0, media_w, media_h),
        "trim box": (bleed, bleed, media_w - bleed, media_h - bleed),
        "bleed box": (0.0, 0.0, media_w, media_h),
    }
    problems = []
    for name, want in expected.items():
        key = "/" + name.title().replace(" ", "")
        if name != "media box" and key not in page:
            problems.append(f"no {name}")
            continue
        box = getattr(page, name.replace(" ", ""))
        got = tuple(float(v) for v in (box.left, box.bottom, box.right, box.top))
        if any(abs(g - w) > BOX_TOLERANCE_PT for g, w in zip(got, want, strict=True)):
            problems.append(f"{name} is {_fmt(got)} pt, expected {_fmt(want)} pt")
    return problems


def _fmt(box) -> str:
    return "[" + " ".join(f"{v:.1f}" for v in box) + "]"


def preflight_pdf(path: str | Path, spec: PdfSpec, labels: list[str] | None = None) -> PreflightReport:
    """Check every page of the PDF at `path` against `spec`; problems name the page and what is wrong."""
    reader = PdfReader(str(path))
    inset = (spec.bleed_in + spec.safe_margin_in) * POINTS_PER_INCH
    media_w = (spec.trim_width_in + 2 * spec.bleed_in) * POINTS_PER_INCH
    media_h = (spec.trim_height_in + 2 * spec.bleed_in) * POINTS_PER_INCH
    safe = (inset, inset, media_w - inset, media_h - inset)
    fonts: dict[str, bool] = {}
    pages, problems = [], []
    for i, page in enumerate(reader.pages):
        label = labels[i] if labels and i < len(labels) else f"page {i + 1}"
        walker = _PageWalker(reader, i + 1, label, safe, spec.dpi, fonts)
        walker.result.problems.extend(_box_problems(page, spec))
        contents = page.get_contents()
        if contents is not None:
            walker.walk(contents, page.get("/Resources", {}).get_object() if "/Resources" in page else {},
                        [1.0, 0, 0, 1.0, 0, 0])
        if walker.result.images == 0:
            walker.result.problems.append("no image on the page")
        pages.append(walker.result)
        problems.extend(f"{label}: {p}" for p in walker.result.problems)
    if not pages:
        problems.append("the PDF has no pages")
    title = str((reader.metadata or {}).get("/Title") or "")
    watermarks = [mark for mark in ("PREVIEW", "DRAFT") if f"[{mark}]" in title]  # build_book_pdf's title marks
    return PreflightReport(pages=pages, fonts=fonts, problems=problems, watermarks=watermarks)
