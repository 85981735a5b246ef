"""Interior and cover PDFs read back with pypdf: boxes, page counts, PDF/X keys, ink; and the preflight's failures."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas

from bookbug_assets import print_colour
from bookbug_assets.pdf import PdfPage
from bookbug_assets.print_colour import MissingIccProfile, find_cmyk_profile, limit_ink, output_profile_problem
from bookbug_assets.print_files import PrintTargetSpec, build_cover_pdf, build_interior_pdf
from bookbug_assets.print_preflight import preflight_cover, preflight_interior

PT = 72


@pytest.fixture
def cmyk_profile():
    """The CMYK output profile PDF/X files embed: found at run time (none ships with the repository)."""
    try:
        return find_cmyk_profile()
    except MissingIccProfile as exc:
        pytest.skip(f"no CMYK ICC profile here ({exc})")


@pytest.fixture
def art(tmp_path) -> list[PdfPage]:
    pages = []
    for i, colour in enumerate(["#203080", "#f0c040", "#308040"]):
        path = tmp_path / f"art{i}.png"
        Image.new("RGB", (640, 660), colour).save(path)
        pages.append(PdfPage(image=path, text=f"Page {i + 1}: Pip walks on.", is_preview=False, label=f"page {i + 1}"))
    return pages


def _box_in(box) -> tuple[float, ...]:
    return tuple(round(float(v) / PT, 4) for v in (box.left, box.bottom, box.right, box.top))


def test_a_kdp_interior_has_kdp_page_boxes_and_blank_pages_at_the_end(art, tmp_path):
    spec = PrintTargetSpec("kdp", "paperback", "white", 8.5, 8.5)
    result = build_interior_pdf(title="Pip", author="Ann", pages=art, spec=spec, out_path=tmp_path / "i.pdf")
    reader = PdfReader(result.path)
    assert len(reader.pages) == 24 and result.plan.blank_pages_added == 21
    for number, page in enumerate(reader.pages, 1):
        assert _box_in(page.mediabox) == (0, 0, 8.625, 8.75)
        assert _box_in(page.trimbox) == ((0, 0.125, 8.5, 8.625) if number % 2 else (0.125, 0.125, 8.625, 8.625))
        assert _box_in(page.bleedbox) == (0, 0, 8.625, 8.75)
        assert "/Annots" not in page
        assert bool(page.images) == (number <= 3)  # the story's pages first, the blank ones after
    assert "/Outlines" not in reader.trailer["/Root"]  # KDP refuses bookmarks
    report = preflight_interior(result.path, spec, 3)
    assert report.passed, report.problems
    assert any("21 blank page(s) added" in n for n in report.notes)


def test_a_kdp_cover_is_one_spread_sized_for_the_interior(art, tmp_path):
    spec = PrintTargetSpec("kdp", "paperback", "white", 8.5, 8.5)
    result = build_cover_pdf(title="Pip and the Lantern", author="Ann", front=art[0], back=art[1],
                             back_text="A mouse and a lantern.", spec=spec, interior_pages=24,
                             out_path=tmp_path / "c.pdf")
    (page,) = PdfReader(result.path).pages
    width = 0.125 + 8.5 + 24 * 0.002252 + 8.5 + 0.125  # KDP: bleed + back + spine (white) + front + bleed
    assert _box_in(page.mediabox) == pytest.approx((0, 0, width, 8.75), abs=1e-3)
    assert _box_in(page.trimbox) == pytest.approx((0.125, 0.125, width - 0.125, 8.625), abs=1e-3)
    assert "A mouse and a lantern." in page.extract_text()
    assert preflight_cover(result.path, spec, 24).passed
    # the same cover against a 100-page interior: the spine is wrong, and the check says by how much
    wrong = preflight_cover(result.path, spec, 100)
    assert any("spine is 0.0540 in; 100 pages on white need 0.2252 in" in p for p in wrong.problems)


@pytest.mark.parametrize("platform", ["ingramspark", "kdp"])
def test_pdfx_files_carry_an_embedded_cmyk_output_profile(art, tmp_path, cmyk_profile, platform):
    spec = PrintTargetSpec(platform, "paperback", "premium-color", 8.5, 8.5)
    interior = build_interior_pdf(title="Pip", author="Ann", pages=art, spec=spec, out_path=tmp_path / "i.pdf")
    cover = build_cover_pdf(title="Pip", author="Ann", front=art[0], back=art[1], back_text=None, spec=spec,
                            interior_pages=interior.page_count, out_path=tmp_path / "c.pdf")
    for path in (interior.path, cover.path):
        reader = PdfReader(path)
        assert reader.pdf_header == "%PDF-1.3"  # PDF/X-1a:2001 is PDF 1.3
        assert reader.metadata["/GTS_PDFXVersion"] == "PDF/X-1a:2001"
        assert reader.metadata["/Trapped"] == "/False"  # PDF/X wants Trapped True or False, never absent
        (intent,) = [i.get_object() for i in reader.trailer["/Root"]["/OutputIntents"]]
        assert intent["/S"] == "/GTS_PDFX" and intent["/OutputConditionIdentifier"]
        icc = intent["/DestOutputProfile"].get_object()
        assert icc["/N"] == 4 and icc.get_data() == cmyk_profile.data  # the very profile, byte for byte
        assert output_profile_problem(icc.get_data()) is None        # an ICC v2 CMYK printer profile
        for page in reader.pages:
            assert "/TrimBox" in page and "/BleedBox" in page and "/Group" not in page
            for image in page.images:
                assert image.image.mode == "CMYK"
    assert _box_in(PdfReader(interior.path).pages[1].trimbox) == (0.125, 0.125, 8.625, 8.625)  # a left page
    for report in (preflight_interior(interior.path, spec, 3), preflight_cover(cover.path, spec, interior.page_count)):
        assert report.passed, report.problems
        assert report.pdf_standard == "PDF/X-1a:2001" and not any("written as" in n for n in report.notes)
        if platform == "ingramspark":
            assert report.max_ink_pct <= 240


def test_kdp_without_a_cmyk_profile_gets_a_plain_rgb_pdf_and_the_preflight_says_so(art, tmp_path, monkeypatch):
    """KDP also takes plain PDF: a machine without Ghostscript still builds its files, and the report says what
    was written instead of PDF/X-1a and how to get it; IngramSpark, which needs PDF/X, is refused (test above)."""
    monkeypatch.setattr(print_colour, "SYSTEM_PROFILES", ((tmp_path / "none.icc", "ghostscript", "x", "y"),))
    monkeypatch.delenv(print_colour.PROFILE_ENV, raising=False)
    spec = PrintTargetSpec("kdp", "paperback", "premium-color", 8.5, 8.5)
    interior = build_interior_pdf(title="Pip", author="Ann", pages=art, spec=spec, out_path=tmp_path / "i.pdf")
    cover = build_cover_pdf(title="Pip", author="Ann", front=art[0], back=art[1], back_text=None, spec=spec,
                            interior_pages=interior.page_count, out_path=tmp_path / "c.pdf")
    assert interior.pdf_standard == cover.pdf_standard == "PDF"
    for path in (interior.path, cover.path):
        reader = PdfReader(path)
        assert "/GTS_PDFXVersion" not in reader.metadata and "/OutputIntents" not in reader.trailer["/Root"]
        assert {image.image.mode for page in reader.pages for image in page.images} == {"RGB"}
    for report in (preflight_interior(interior.path, spec, 3), preflight_cover(cover.path, spec, interior.page_count)):
        assert report.passed, report.problems
        assert any("written as PDF in RGB, not PDF/X-1a:2001" in n and "ghostscript" in n for n in report.notes)


def test_a_wrong_cmyk_profile_setting_is_refused_even_where_plain_pdf_would_do(art, tmp_path, monkeypatch):
    monkeypatch.setenv(print_colour.PROFILE_ENV, str(tmp_path / "missing.icc"))
    spec = PrintTargetSpec("kdp", "paperback", "premium-color", 8.5, 8.5)
    with pytest.raises(MissingIccProfile, match="BOOKBUG_CMYK_ICC=.*missing.icc: no such file"):
        build_interior_pdf(title="Pip", author="Ann", pages=art, spec=spec, out_path=tmp_path / "i.pdf")


def test_without_a_cmyk_profile_a_pdfx_file_is_refused_naming_the_package(art, tmp_path, monkeypatch):
    monkeypatch.setattr(print_colour, "SYSTEM_PROFILES", ((tmp_path / "none.icc", "ghostscript", "x", "y"),))
    monkeypatch.delenv(print_colour.PROFILE_ENV, raising=False)
    spec = PrintTargetSpec("ingramspark", "paperback", "premium-color", 8.5, 8.5)
    with pytest.raises(MissingIccProfile, match="install the Debian package ghostscript"):
        build_interior_pdf(title="Pip", author="Ann", pages=art, spec=spec, out_path=tmp_path / "i.pdf")
    assert not (tmp_path / "i.pdf").exists()
    rgb = tmp_path / "rgb.icc"
    rgb.write_bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    monkeypatch.setenv(print_colour.PROFILE_ENV, str(rgb))  # an RGB display profile is no printing condition
    with pytest.raises(MissingIccProfile, match="wants a prtr CMYK"):
        build_cover_pdf(title="Pip", author="Ann", front=art[0], back=art[1], back_text=None, spec=spec,
                        interior_pages=24, out_path=tmp_path / "c.pdf")


def test_the_ink_limiter_keeps_every_pixel_under_the_limit_and_leaves_light_ones_alone():
    rng = np.random.default_rng(7)
    cmyk = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    cmyk[0, 0] = (255, 255, 255, 255)   # 400 %: registration black
    cmyk[0, 1] = (40, 30, 20, 10)       # 39 %: untouched
    out = limit_ink(cmyk, 240)
    assert out.astype(int).sum(axis=2).max() <= 240 / 100 * 255
    assert tuple(out[0, 1]) == (40, 30, 20, 10)
    assert out[0, 0, 3] == 255 and out[0, 0, :3].astype(int).sum() <= 240 / 100 * 255 - 255  # K kept full


def test_an_over_inked_page_fails_the_ink_check_and_names_the_page(tmp_path):
    path = tmp_path / "inked.pdf"
    buf = io.BytesIO()
    Image.new("CMYK", (300, 300), (255, 255, 255, 255)).save(buf, "JPEG")  # 400 % ink
    spec = PrintTargetSpec("ingramspark", "paperback", "premium-color", 8.5, 8.5)
    c = Canvas(str(path), pagesize=(8.75 * PT, 8.75 * PT))
    for _ in range(2):
        c.drawImage(_reader(buf.getvalue()), 0, 0, 8.75 * PT, 8.75 * PT)
        c.showPage()
    c.save()
    report = preflight_interior(path, spec, 2)
    assert any(p.startswith("page 1: total ink 400 %") for p in report.problems), report.problems
    assert any("GTS_PDFXVersion is missing" in p for p in report.problems)


def _reader(data: bytes):
    from reportlab.lib.utils import ImageReader

    return ImageReader(io.BytesIO(data))


def test_a_preview_is_laid_out_for_print_but_named_not_for_print(art, tmp_path, cmyk_profile):
    preview = [PdfPage(image=p.image, text=p.text, is_preview=True, label=p.label) for p in art]
    spec = PrintTargetSpec("ingramspark", "paperback", "white", 8.5, 8.5)
    result = build_interior_pdf(title="Pip", author="Ann", pages=preview, spec=spec, out_path=Path(tmp_path / "p.pdf"))
    report = preflight_interior(result.path, spec, 3)
    # the watermark brings no transparency into a PDF/X file, so the geometry passes and the mark is named
    assert report.passed, report.problems
    assert report.description() == "print-ready layout, watermarked PREVIEW: not for print"
