"""Print preflight: a planted low-resolution page fails, the same page passes once upscaled."""

import io

import pytest
from PIL import Image
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from bookbug_assets.pdf import PdfPage, PdfSpec, build_book_pdf
from bookbug_assets.preflight import preflight_pdf

W = H = 8.75 * 72  # 8.5 in trim + 0.125 in bleed each side, in points
BLEED = 0.125 * 72


def art(path, px: int, colour=(120, 170, 200)):
    image = Image.new("RGB", (px, px), colour)
    for x in range(0, px, max(1, px // 8)):  # some structure, so it is a picture and not a flat fill
        image.paste((240, 200, 90), (x, 0, x + max(1, px // 32), px))
    image.save(path)
    return path


def hand_made_pdf(path, image_px: int, *, font="Helvetica", text_at=(200, 200), boxes=True):
    """A PDF not made by build_book_pdf: what a preflight must catch on its own."""
    canvas = Canvas(str(path), pagesize=(W, H))
    if boxes:
        canvas.setTrimBox((BLEED, BLEED, W - BLEED, H - BLEED))
        canvas.setBleedBox((0, 0, W, H))
    for _ in range(2):
        buffer = io.BytesIO()
        Image.new("RGB", (image_px, image_px), (200, 120, 90)).save(buffer, format="PNG")
        canvas.drawImage(ImageReader(io.BytesIO(buffer.getvalue())), 0, 0, width=W, height=H)
        canvas.setFont(font, 18)
        canvas.drawString(*text_at, "Pip looked up at the moon.")
        canvas.showPage()
    canvas.save()
    return path


def test_a_planted_low_resolution_page_fails_and_passes_after_upscaling(tmp_path):
    low = art(tmp_path / "low.png", 600)  # 600 px across 8.75 in = 69 ppi
    good = art(tmp_path / "good.png", 2700)
    pages = [PdfPage(image=good, text="Page one.", is_preview=False, label="page 1"),
             PdfPage(image=low, text="Page two.", is_preview=False, label="page 2")]
    cover = PdfPage(image=good, text="", is_preview=False, label="cover")

    # Planted: the low-res art placed at full-bleed size as it is, no resampling.
    planted = hand_made_pdf(tmp_path / "planted.pdf", 600, font="Helvetica", text_at=(80, 80))
    report = preflight_pdf(planted, PdfSpec())
    assert not report.passed
    assert any("page 1: image 600x600 px" in p and "69 ppi" in p for p in report.problems), report.problems

    # The builder upscales it (Lanczos) to 300 ppi at the printed size and says which pages it enlarged.
    built = build_book_pdf(title="Low res", author="Test", cover=cover, pages=pages, spec=PdfSpec(),
                           out_path=tmp_path / "book.pdf")
    assert built.upscaled_pages == ["page 2"]
    fixed = preflight_pdf(built.path, PdfSpec(), ["cover", "page 1", "page 2"])
    assert fixed.passed, fixed.problems
    assert fixed.min_ppi == pytest.approx(300, abs=1)
    assert all(fixed.fonts.values()) and fixed.fonts
    assert fixed.watermarks == []
    preview_pages = [PdfPage(image=p.image, text=p.text, is_preview=True, label=p.label) for p in pages]
    preview = build_book_pdf(title="Low res", author="Test", cover=cover, pages=preview_pages, spec=PdfSpec(),
                             out_path=tmp_path / "preview.pdf")
    assert preflight_pdf(preview.path, PdfSpec()).watermarks == ["PREVIEW"]


def test_preflight_names_unembedded_fonts_text_outside_the_safe_area_and_missing_boxes(tmp_path):
    pdf = hand_made_pdf(tmp_path / "bad.pdf", 2700, font="Helvetica", text_at=(12, 300), boxes=False)
    report = preflight_pdf(pdf, PdfSpec(), ["cover", "page 1"])
    problems = "\n".join(report.problems)
    assert "cover: font Helvetica is not embedded" in problems
    assert "outside the safe area" in problems and "'Pip looked up at the moon.'" in problems
    assert "page 1: no trim box" in problems and "no bleed box" in problems
    assert report.fonts == {"Helvetica": False}


def test_wrong_page_size_is_reported(tmp_path):
    pdf = hand_made_pdf(tmp_path / "letter.pdf", 2700)
    report = preflight_pdf(pdf, PdfSpec(trim_width_in=8.0, trim_height_in=10.0))
    assert any("media box" in p and "expected [0.0 0.0 594.0 738.0]" in p for p in report.problems), report.problems
