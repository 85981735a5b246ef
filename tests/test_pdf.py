"""Print-preflight style checks on bookbug_assets.pdf, read back with pypdf (not with reportlab,
so the test sees what a printer's RIP would see)."""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pypdf = pytest.importorskip("pypdf")
from reportlab.pdfbase.pdfmetrics import getAscent, getDescent, stringWidth  # noqa: E402

from bookbug_assets import pdf as bpdf  # noqa: E402
from bookbug_assets.pdf import PdfPage, PdfSpec, build_book_pdf  # noqa: E402

SPEC = PdfSpec()
MEDIA = (8.5 + 2 * 0.125) * 72          # 630 pt
SAFE = (0.125 + 0.5) * 72               # 45 pt from every media edge
TINY = PdfSpec(trim_width_in=4, trim_height_in=4, bleed_in=0.125, safe_margin_in=0.5, dpi=100)  # fast builds
STORY = "Bug climbed the tallest sunflower in the garden to look for the moon, page {i}."


def _art(path: Path, size: tuple[int, int], seed: int) -> Path:
    """Flat-colour blobs with outlines: compresses like real picture-book art, unlike noise."""
    rnd = random.Random(seed)
    img = Image.new("RGB", size, (150, 190, 235))
    draw = ImageDraw.Draw(img)
    for _ in range(25):
        x, y, r = rnd.randrange(size[0]), rnd.randrange(size[1]), rnd.randrange(size[0] // 20, size[0] // 6)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rnd.randrange(256) for _ in range(3)),
                     outline=(30, 30, 30), width=3)
    img.save(path, compress_level=1)   # fast PNG: the test is about the PDF, not about zlib
    return path


def _fonts_embedded(reader) -> list[str]:
    """Names of fonts used anywhere that lack an embedded TrueType program (FontFile2)."""
    bad = []
    for page in reader.pages:
        for font in (page["/Resources"].get("/Font") or {}).values():
            font = font.get_object()
            desc = [d.get_object() for d in font.get("/DescendantFonts", [])] or [font]
            for d in desc:
                fd = d.get("/FontDescriptor")
                if fd is None or "/FontFile2" not in fd.get_object():
                    bad.append(str(font.get("/BaseFont")))
    return bad


def _image_draws(page) -> list[tuple[int, int, float, float, float, float]]:
    """(px_w, px_h, drawn_w_pt, drawn_h_pt, x, y) for every image XObject painted, via the CTM at `Do`."""
    xobjs = page["/Resources"].get("/XObject") or {}
    ctm, stack, out = [1, 0, 0, 1, 0, 0], [], []
    for operands, op in pypdf.generic.ContentStream(page.get_contents(), page.pdf).operations:
        if op == b"q":
            stack.append(ctm)
        elif op == b"Q":
            ctm = stack.pop()
        elif op == b"cm":
            a, b, c, d, e, f = (float(v) for v in operands)
            A, B, C, D, E, F = ctm
            ctm = [a * A + b * C, a * B + b * D, c * A + d * C, c * B + d * D, e * A + f * C + E, e * B + f * D + F]
        elif op == b"Do":
            x = xobjs[operands[0]].get_object()
            if x["/Subtype"] == "/Image":
                out.append((int(x["/Width"]), int(x["/Height"]), math.hypot(ctm[0], ctm[1]),
                            math.hypot(ctm[2], ctm[3]), ctm[4], ctm[5]))
    return out


def _text_runs(page) -> list[tuple[str, float, float, float, bool, float, float]]:
    """(text, x, y, right_x, upright, glyph_bottom_y, glyph_top_y) for each shown string, in page space."""
    runs = []

    def visit(text, cm, tm, font, size):
        if not text.strip():
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        upright = abs(cm[1]) < 1e-9 and abs(cm[2]) < 1e-9 and abs(tm[1]) < 1e-9 and abs(tm[2]) < 1e-9
        name = bpdf.BOLD if "Bold" in str(font.get("/BaseFont")) else bpdf.REGULAR
        k = cm[0] * tm[0]
        runs.append((text.strip(), x, y, x + stringWidth(text.strip(), name, size) * k, upright,
                     y + getDescent(name, size) * k, y + getAscent(name, size) * k))

    page.extract_text(visitor_text=visit)
    return runs


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    d = tmp_path_factory.mktemp("book")
    # odd pages 1024 px (must be upscaled), even pages 2800 px (already >= 2625), one 3:2 page for cover-fit
    sizes = {i: (1024, 1024) if i % 2 else (2800, 2800) for i in range(13)}
    sizes[4] = (1536, 1024)
    sizes[2], sizes[6] = (2600, 2600), (2625, 2625)   # a hair under the 2625 px target, and exactly on it
    imgs = [_art(d / f"art{i}.png", sizes[i], i) for i in range(13)]
    pages = [PdfPage(imgs[i], STORY.format(i=i), is_preview=False, label=f"page {i}") for i in range(1, 13)]
    out = d / "out" / "book.pdf"
    res = build_book_pdf(title="Bug and the Moon", author="Ada Lovelace", cover=PdfPage(imgs[0], "", False),
                         pages=pages, spec=SPEC, out_path=out,
                         metadata={"bookbug:provenance": json.dumps({"book_id": "b1", "pages": 12})})
    return res, pypdf.PdfReader(out), pages


def test_result_and_boxes(book):
    res, reader, _ = book
    assert res.page_count == len(reader.pages) == 13
    assert (res.width_pt, res.height_pt) == (MEDIA, MEDIA) and not res.preview
    assert res.sha256 == hashlib.sha256(res.path.read_bytes()).hexdigest()
    assert res.upscaled_pages == [f"page {i}" for i in (1, 2, 3, 4, 5, 7, 9, 11)]
    for page in reader.pages:
        assert [float(v) for v in page.mediabox] == [0, 0, MEDIA, MEDIA]
        assert [float(v) for v in page.trimbox] == [9, 9, MEDIA - 9, MEDIA - 9]
        assert [float(v) for v in page.bleedbox] == [0, 0, MEDIA, MEDIA]


def test_images_full_bleed_at_300_ppi(book):
    _, reader, _ = book
    for page in reader.pages:
        draws = _image_draws(page)
        assert len(draws) == 1
        px_w, px_h, w, h, x, y = draws[0]
        assert (x, y, w, h) == pytest.approx((0, 0, MEDIA, MEDIA))
        assert px_w / (w / 72) >= 300 and px_h / (h / 72) >= 300
        img = list(page["/Resources"]["/XObject"].values())[0].get_object()
        filters = img["/Filter"] if isinstance(img["/Filter"], list) else [img["/Filter"]]
        assert filters == ["/DCTDecode"]      # JPEG passed through, not re-encoded Flate or ASCII85-inflated


def test_cover_fit_crops_centre_instead_of_stretching(tmp_path):
    src = Image.new("RGB", (900, 600), (0, 200, 0))
    ImageDraw.Draw(src).rectangle((0, 0, 299, 599), fill=(220, 0, 0))  # left third red
    src.save(tmp_path / "wide.png")
    build_book_pdf(title="T", author="A", cover=PdfPage(tmp_path / "wide.png", "", False), pages=[],
                   spec=TINY, out_path=tmp_path / "b.pdf")
    img = pypdf.PdfReader(tmp_path / "b.pdf").pages[0].images[0].image
    assert img.size == (425, 425)   # (4 + 2 * 0.125) in * 100 dpi
    # centred crop keeps x in [150, 750) of the source, so red covers only the left 25%; a stretch would give 33%
    assert img.getpixel((int(0.3 * img.width), img.height // 2))[1] > 150


def test_text_extractable_inside_safe_area_and_fonts_embedded(book):
    _, reader, pages = book
    assert _fonts_embedded(reader) == []
    cover_text = " ".join(reader.pages[0].extract_text().split())
    assert "Bug and the Moon" in cover_text and "Ada Lovelace" in cover_text
    for n, page in enumerate(reader.pages):
        if n:
            assert STORY.format(i=n) in " ".join(page.extract_text().split())
        runs = _text_runs(page)
        assert runs
        for text, x, y, right, upright, bottom, top in runs:
            # the whole glyph box (ascender to descender, first to last glyph) sits in the live area
            assert upright and SAFE <= x and right <= MEDIA - SAFE + 1e-6, (n, text, x, right)
            assert SAFE <= bottom and top <= MEDIA - SAFE, (n, text, bottom, top)
    assert "PREVIEW" not in reader.metadata["/Title"] and "PREVIEW" not in reader.pages[3].extract_text()


def test_metadata_and_outline(book):
    _, reader, _ = book
    meta = reader.metadata
    assert meta["/Title"] == "Bug and the Moon" and meta["/Author"] == "Ada Lovelace"
    assert json.loads(meta["/bookbug:provenance"]) == {"book_id": "b1", "pages": 12}
    assert [o["/Title"] for o in reader.outline] == ["cover"] + [f"page {i}" for i in range(1, 13)]


def test_deterministic_output(book, tmp_path):
    res, _, pages = book
    again = build_book_pdf(title="Bug and the Moon", author="Ada Lovelace", cover=PdfPage(pages[0].image, "", False),
                           pages=pages[:1], spec=TINY, out_path=tmp_path / "a.pdf")
    twice = build_book_pdf(title="Bug and the Moon", author="Ada Lovelace", cover=PdfPage(pages[0].image, "", False),
                           pages=pages[:1], spec=TINY, out_path=tmp_path / "b.pdf")
    assert again.sha256 == twice.sha256


@pytest.mark.parametrize("preview,draft", [(True, False), (False, True), (True, True)])
def test_preview_and_draft_watermarks(tmp_path, preview, draft):
    art = _art(tmp_path / "a.png", (400, 400), 1)
    res = build_book_pdf(title="Tale", author="A", cover=PdfPage(art, "", False),
                         pages=[PdfPage(art, "one", False), PdfPage(art, "two", preview)],
                         spec=TINY, out_path=tmp_path / "b.pdf", draft=draft)
    reader = pypdf.PdfReader(res.path)
    assert res.preview is preview
    for word, on in (("PREVIEW", preview), ("DRAFT", draft)):
        assert (word in reader.metadata["/Title"]) is on
        for page in reader.pages:   # every page is stamped, not only the preview one
            assert (word in page.extract_text()) is on
    safe = (0.125 + 0.5) * 72
    for page in reader.pages:      # the rotated watermark also starts inside the safe area
        for _, x, y, *_ in _text_runs(page):
            assert safe <= x <= res.width_pt - safe and safe <= y <= res.height_pt - safe


def test_text_panel_moves_to_the_calmer_half(tmp_path):
    img = Image.new("RGB", (600, 600), (140, 200, 240))   # calm sky on top, busy stripes below
    draw = ImageDraw.Draw(img)
    for x in range(0, 600, 8):
        draw.rectangle((x, 300, x + 3, 599), fill=(20, 20, 20))
    img.save(tmp_path / "busy_bottom.png")
    img.transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(tmp_path / "busy_top.png")
    res = build_book_pdf(title="T", author="A", cover=PdfPage(tmp_path / "busy_top.png", "", False),
                         pages=[PdfPage(tmp_path / "busy_bottom.png", "Up here", False),
                                PdfPage(tmp_path / "busy_top.png", "Down here", False)],
                         spec=TINY, out_path=tmp_path / "b.pdf")
    reader = pypdf.PdfReader(res.path)
    assert all(y > res.height_pt / 2 for _, _, y, *_ in _text_runs(reader.pages[1]))
    assert all(y < res.height_pt / 2 for _, _, y, *_ in _text_runs(reader.pages[2]))


def test_rejects_text_that_cannot_fit_and_reserved_metadata(tmp_path):
    art = _art(tmp_path / "a.png", (200, 200), 2)
    with pytest.raises(ValueError, match="does not fit"):
        build_book_pdf(title="T", author="A", cover=PdfPage(art, "", False), pages=[PdfPage(art, "word " * 2000, False)],
                       spec=TINY, out_path=tmp_path / "b.pdf")
    with pytest.raises(ValueError, match="Title"):
        build_book_pdf(title="T", author="A", cover=PdfPage(art, "", False), pages=[], spec=TINY,
                       out_path=tmp_path / "b.pdf", metadata={"/Title": "sneaky"})
    assert list(tmp_path.iterdir()) == [art]


def _failing_builds(tmp_path: Path, art: Path, out: Path, monkeypatch):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    yield FileNotFoundError, dict(pages=[PdfPage(tmp_path / "missing.png", "x", False)])
    yield OSError, dict(pages=[PdfPage(art, "x", False), PdfPage(corrupt, "y", False)])   # fails inside a worker

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(bpdf.os, "replace", boom)   # fails after the temp file is written
    yield OSError, dict(pages=[PdfPage(art, "x", False)])


def test_failed_build_keeps_previous_pdf_and_leaves_no_temp(tmp_path, monkeypatch):
    art = _art(tmp_path / "a.png", (300, 300), 3)
    out_dir = tmp_path / "out"
    out = out_dir / "book.pdf"
    good = build_book_pdf(title="T", author="A", cover=PdfPage(art, "", False), pages=[PdfPage(art, "hi", False)],
                          spec=TINY, out_path=out)
    before = out.read_bytes()
    assert os.listdir(out_dir) == ["book.pdf"] and hashlib.sha256(before).hexdigest() == good.sha256
    for exc, kw in _failing_builds(tmp_path, art, out, monkeypatch):
        with pytest.raises(exc):
            build_book_pdf(title="T2", author="A", cover=PdfPage(art, "", False), spec=TINY, out_path=out, **kw)
        assert out.read_bytes() == before
        assert os.listdir(out_dir) == ["book.pdf"]      # no .book.pdf.*.tmp left behind


def test_unbreakable_word_shrinks_to_fit_the_live_area(tmp_path):
    art = _art(tmp_path / "a.png", (300, 300), 4)
    res = build_book_pdf(title="T", author="A", cover=PdfPage(art, "", False),
                         pages=[PdfPage(art, "Supercalifragilisticexpialidocious", False)], spec=TINY,
                         out_path=tmp_path / "b.pdf")
    safe = (0.125 + 0.5) * 72
    (text, x, _, right, *_), = _text_runs(pypdf.PdfReader(res.path).pages[1])
    assert text == "Supercalifragilisticexpialidocious" and safe <= x and right <= res.width_pt - safe
