"""The example book, given `print: {platform: kdp, binding: paperback, paper: white}`, writes its KDP interior and
cover on the preview provider, in-process on a throwaway instance, with both per-platform preflights."""

import dagster as dg
import pytest
import yaml
from pypdf import PdfReader

from bookbug_assets.defs.book_runs import _assets, materialize_book
from bookbug_assets.ledger import Ledger
from bookbug_assets.print_colour import MissingIccProfile, find_cmyk_profile
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE

POINTS = 72


@pytest.fixture
def kdp_book(workspace, defs_for, instance):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["print"] = {"platform": "kdp", "binding": "paperback", "paper": "white"}
    data["back_cover_text"] = "Pip the mouse carries a little lantern through the meadow at night."
    path = workspace["stories"] / EXAMPLE.name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    defs = defs_for()
    story = load_story_file(path, {"soft-meadow"})
    results = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert all(r.success for r in results.values())
    # a story that names a print target gets its print files in the book's last run, with its PDF and ledger
    return defs, story, results["finish"]


def test_the_kdp_interior_and_cover_are_written_and_preflighted(kdp_book, workspace, instance):
    defs, story, printed = kdp_book
    assert printed.success
    folder = workspace["outputs"] / "books" / story.book_id / "print"
    interior = PdfReader(folder / "kdp-interior.pdf")
    # 12 story pages, padded with blank pages to KDP's 24-page minimum
    assert len(interior.pages) == 24
    recto, verso = interior.pages[0], interior.pages[1]
    for page in (recto, verso):  # KDP: trim + 0.125 in wide, + 0.25 in tall
        assert float(page.mediabox.width) == pytest.approx(8.625 * POINTS)
        assert float(page.mediabox.height) == pytest.approx(8.75 * POINTS)
    assert float(recto.trimbox.left) == pytest.approx(0) and float(verso.trimbox.left) == pytest.approx(0.125 * POINTS)
    cover = PdfReader(folder / "kdp-cover.pdf").pages[0]
    # KDP: 2 x trim + spine (24 pages x 0.002252 in on white) + 2 x 0.125 in bleed; trim + 0.25 in tall
    assert float(cover.mediabox.width) == pytest.approx((2 * 8.5 + 24 * 0.002252 + 0.25) * POINTS, abs=0.5)
    assert float(cover.mediabox.height) == pytest.approx(8.75 * POINTS)
    try:  # what `pdfinfo` calls the "PDF subtype": PDF/X-1a where a CMYK profile is found, else plain PDF
        find_cmyk_profile()
        subtype = "PDF/X-1a:2001"
    except MissingIccProfile:
        subtype = None
    for pdf in (interior, PdfReader(folder / "kdp-cover.pdf")):
        assert pdf.metadata.get("/GTS_PDFXVersion") == subtype
    checks = {e.check_name: e for e in printed.get_asset_check_evaluations()}
    assert set(checks) == {"book_pdf_preflight", "book_interior_preflight", "book_cover_preflight"}
    for evaluation in checks.values():  # the geometry passes; the preview renders are named as not for print
        assert evaluation.passed, evaluation.description
        assert "watermarked PREVIEW: not for print" in evaluation.description
    meta = printed.asset_materializations_for_node("book_interior")[0].metadata
    assert meta["blank_pages_added"].value == 12 and "at least 24 pages" in meta["padding"].value
    # the back cover went through the generation path: a ledger row, and drawing the cover again is a cache hit
    ledger = Ledger(defs.resources["storage"].store())
    first = [r for r in ledger.rows(story.book_id) if r.asset == "book_cover"]
    assert [r.status for r in first] == ["ok"]
    again = dg.materialize(_assets(defs, "book_cover"), instance=instance, resources=dict(defs.resources),
                           partition_key=story.book_id)
    assert again.success
    rows = [r for r in ledger.rows(story.book_id) if r.asset == "book_cover"]
    assert len(rows) == 2 and rows[-1].cache_hit and rows[-1].cost_usd == 0
