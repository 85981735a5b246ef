"""The PDF/X preflight reads the file back: a good IngramSpark interior passes, and each planted fault (RGB art, RGB
vector colour, no output intent, no profile in it, no TrimBox, a transparency group, no Trapped key, ink over the
limit) fails naming the page and the rule. Ghostscript, where installed, renders the pages and measures the ink
on its own."""

import io
import shutil

import pytest
from PIL import Image
from pypdf import PdfReader, PdfWriter
from pypdf.generic import DictionaryObject, NameObject
from reportlab.pdfgen.canvas import Canvas

from bookbug_assets.pdf import PdfPage
from bookbug_assets.print_colour import MissingIccProfile, find_cmyk_profile
from bookbug_assets.print_files import PrintTargetSpec, build_interior_pdf
from bookbug_assets.print_ghostscript import GS_MISSING, redistill_pdfx, render_ink
from bookbug_assets.print_pdfx import pdfx_problems
from bookbug_assets.print_preflight import preflight_interior

PT = 72
SPEC = PrintTargetSpec("ingramspark", "paperback", "premium-color", 8.5, 8.5)
needs_gs = pytest.mark.skipif(shutil.which("gs") is None, reason=GS_MISSING)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    try:
        find_cmyk_profile()
    except MissingIccProfile as exc:
        pytest.skip(f"no CMYK ICC profile here ({exc})")
    folder = tmp_path_factory.mktemp("pdfx")
    pages = []
    for i, colour in enumerate(["#102040", "#f0c040", "#200808"]):  # deep blue and near-black: over 240 % raw
        path = folder / f"art{i}.png"
        Image.new("RGB", (640, 660), colour).save(path)
        pages.append(PdfPage(image=path, text=f"Page {i + 1}.", is_preview=False, label=f"page {i + 1}"))
    return build_interior_pdf(title="Pip", author="Ann", pages=pages, spec=SPEC, out_path=folder / "good.pdf").path


def _changed(good, tmp_path, change):
    writer = PdfWriter(clone_from=str(good))
    change(writer)
    out = tmp_path / "changed.pdf"
    with open(out, "wb") as f:
        writer.write(f)
    return out


def _problems(path) -> list[str]:
    return preflight_interior(path, SPEC, 3).problems


def test_the_written_interior_passes_the_pdfx_preflight(good):
    report = preflight_interior(good, SPEC, 3)
    assert report.passed, report.problems
    assert report.max_ink_pct <= 240


def test_no_output_intent_fails(good, tmp_path):
    path = _changed(good, tmp_path, lambda w: w._root_object.pop(NameObject("/OutputIntents")))
    assert any("no PDF/X output intent" in p for p in _problems(path))


def test_an_output_intent_without_its_icc_profile_fails(good, tmp_path):
    def drop(w):
        w._root_object["/OutputIntents"][0].get_object().pop(NameObject("/DestOutputProfile"))
    assert any("no DestOutputProfile" in p for p in _problems(_changed(good, tmp_path, drop)))


def test_a_page_without_a_trim_box_fails_naming_it(good, tmp_path):
    path = _changed(good, tmp_path, lambda w: w.pages[1].pop(NameObject("/TrimBox")))
    assert any(p.startswith("page 2") and "no TrimBox" in p for p in _problems(path)), _problems(path)


def test_a_transparency_group_fails_naming_the_page(good, tmp_path):
    def group(w):
        w.pages[2][NameObject("/Group")] = DictionaryObject(
            {NameObject("/S"): NameObject("/Transparency"), NameObject("/CS"): NameObject("/DeviceRGB")})
    assert any(p.startswith("page 3") and "transparency group" in p for p in _problems(_changed(good, tmp_path, group)))


def test_a_missing_trapped_key_fails(good, tmp_path):
    def untrap(w):
        w._info.get_object().pop(NameObject("/Trapped"))
    assert any("Trapped" in p for p in _problems(_changed(good, tmp_path, untrap)))


def _rgb_page(path, *, image: bool) -> None:
    """Two pages at IngramSpark's size: page 1 clean CMYK, page 2 with RGB (an image, or a vector fill)."""
    c = Canvas(str(path), pagesize=(8.75 * PT, 8.75 * PT))
    for n in (1, 2):
        c.setTrimBox((9, 9, 8.625 * PT, 8.625 * PT))
        c.setBleedBox((0, 0, 8.75 * PT, 8.75 * PT))
        c.setFillColorCMYK(0, 0, 0, 1)
        c.rect(100, 100, 50, 50, fill=1, stroke=0)
        if n == 2 and image:
            buf = io.BytesIO()
            Image.new("RGB", (300, 300), "#c04020").save(buf, "JPEG")
            from reportlab.lib.utils import ImageReader
            c.drawImage(ImageReader(io.BytesIO(buf.getvalue())), 200, 200, 100, 100)
        elif n == 2:
            c.setFillColorRGB(0.8, 0.2, 0.1)
            c.rect(200, 200, 100, 100, fill=1, stroke=0)
        c.showPage()
    c.save()


@pytest.mark.parametrize("image, rule", [(True, "image in /DeviceRGB"), (False, "RGB colour")])
def test_rgb_art_or_rgb_vector_colour_fails_naming_the_page(tmp_path, image, rule):
    path = tmp_path / "rgb.pdf"
    _rgb_page(path, image=image)
    problems = _problems(path)
    assert any(p.startswith("page 2") and rule in p for p in problems), problems
    assert not any(p.startswith("page 1") and "RGB" in p for p in problems)


def _over_inked_vector(path) -> None:
    """Page 2 carries a 400 % rectangle drawn as a vector: no image holds it, only a render can measure it."""
    c = Canvas(str(path), pagesize=(8.75 * PT, 8.75 * PT))
    for n in (1, 2):
        c.setFillColorCMYK(0.2, 0.1, 0.1, 0.3 if n == 1 else 0)
        if n == 2:
            c.setFillColorCMYK(1, 1, 1, 1)
        c.rect(72, 72, 4 * PT, 4 * PT, fill=1, stroke=0)
        c.showPage()
    c.save()


@needs_gs
def test_ghostscript_measures_the_ink_of_what_it_renders(good, tmp_path):
    pages = render_ink(good)
    assert len(pages.max_ink_pct) == len(PdfReader(str(good)).pages) and not pages.errors
    assert 150 < max(pages.max_ink_pct) <= 240             # the deep art is inked up to the limit, not past it
    assert pages.max_ink_pct[-1] == 0                      # a blank page carries no ink
    path = tmp_path / "vector.pdf"
    _over_inked_vector(path)
    inked = render_ink(path).max_ink_pct
    assert inked[0] == pytest.approx(70, abs=1) and inked[1] == pytest.approx(400, abs=1)


@needs_gs
def test_an_over_inked_vector_fails_the_preflight_through_ghostscript(tmp_path):
    path = tmp_path / "vector.pdf"
    _over_inked_vector(path)
    report = preflight_interior(path, SPEC, 2)
    assert any(p.startswith("page 2: total ink 400 % in Ghostscript's render") for p in report.problems), \
        report.problems
    assert not any(p.startswith("page 1: total ink") for p in report.problems)
    assert report.rendered_max_ink_pct == pytest.approx(400, abs=1)


@needs_gs
def test_ghostscripts_own_pdfx_of_our_file_keeps_the_boxes_and_passes_our_reader(good, tmp_path):
    """An independent PDF/X writer: what Ghostscript makes of our file must keep every box, and our read-back
    checker must accept it (so it is not merely tuned to our own writer)."""
    out = tmp_path / "gs-pdfx.pdf"
    redistill_pdfx(good, out, find_cmyk_profile().path)
    ours, theirs = PdfReader(str(good)), PdfReader(str(out))
    assert theirs.metadata["/GTS_PDFXVersion"] == "PDF/X-3:2002"  # Ghostscript 10.0 writes X-3 only
    assert len(theirs.pages) == len(ours.pages)
    for a, b in zip(ours.pages, theirs.pages):
        for box in ("mediabox", "trimbox", "bleedbox"):
            assert [float(v) for v in getattr(b, box)] == pytest.approx([float(v) for v in getattr(a, box)], abs=0.01)
    labels = [f"page {i}" for i in range(1, len(theirs.pages) + 1)]
    assert pdfx_problems(theirs, "PDF/X-3:2002", labels) == []
    assert max(render_ink(out).max_ink_pct) <= 240
