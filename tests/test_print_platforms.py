"""The platform table against the platforms' own figures (the numbers here are the sources', not the code's)."""

import pytest
import yaml

from bookbug_assets.print_platforms import cover_spread, interior_page, plan_pages, spine_width_in, target_problem
from bookbug_assets.stories.models import Story
from tests.conftest import EXAMPLE


@pytest.mark.parametrize("platform, binding, paper, pages, spine", [
    ("kdp", "paperback", "white", 24, 24 * 0.002252),           # KDP: white 0.002252 in per page
    ("kdp", "paperback", "white", 100, 0.2252),
    ("kdp", "paperback", "cream", 100, 0.25),                    # cream 0.0025 in per page
    ("kdp", "paperback", "premium-color", 24, 24 * 0.002347),   # colour 0.002347 in per page
    ("kdp", "paperback", "premium-color", 100, 0.2347),
    ("lulu", "paperback", "white", 100, 100 / 444 + 0.06),      # Lulu: (pages / 444) + 0.06 in
    ("lulu", "hardcover", "white", 24, 0.25),                   # Lulu casewrap table: 24-84 pages -> 0.25 in
    ("lulu", "hardcover", "white", 100, 0.5),                   # 84-140 pages -> 0.5 in
])
def test_spine_width_follows_the_platform_formula(platform, binding, paper, pages, spine):
    assert spine_width_in(platform, binding, paper, pages) == pytest.approx(spine)


def test_a_kdp_cover_spread_is_bleed_back_spine_front_bleed():
    spread = cover_spread("kdp", "paperback", "white", 8.5, 8.5, 24)
    assert spread.width == pytest.approx(0.125 + 8.5 + 24 * 0.002252 + 8.5 + 0.125)
    assert spread.height == pytest.approx(8.75)
    assert not spread.spine_text  # KDP prints spine text from 79 pages
    assert cover_spread("kdp", "paperback", "white", 8.5, 8.5, 100).spine_text
    x0, y0, x1, y1 = spread.barcode  # 2 x 1.2 in, on the back cover, clear of the spine
    assert (x1 - x0, y1 - y0) == pytest.approx((2.0, 1.2)) and x1 <= spread.spine[0]


def test_kdp_interior_pages_bleed_on_the_outside_edge_only():
    recto = interior_page("kdp", 8.5, 8.5, 1, 24)
    verso = interior_page("kdp", 8.5, 8.5, 2, 24)
    assert recto.media == pytest.approx((8.625, 8.75)) and verso.media == pytest.approx((8.625, 8.75))
    assert recto.trim == pytest.approx((0.0, 0.125, 8.5, 8.625))      # gutter at the left of a right-hand page
    assert verso.trim == pytest.approx((0.125, 0.125, 8.625, 8.625))  # and at the right of a left-hand page
    lulu = interior_page("lulu", 6, 9, 1, 32)                          # Lulu: 6 x 9 -> 6.25 x 9.25 in
    assert lulu.media == pytest.approx((6.25, 9.25))


@pytest.mark.parametrize("platform, paper, story_pages, total", [
    ("kdp", "white", 12, 24),          # KDP paperback minimum 24 pages
    ("kdp", "standard-color", 12, 72),  # standard colour minimum 72
    ("kdp", "white", 25, 26),          # an odd count is padded to even
    ("lulu", "white", 12, 32),         # Lulu paperback minimum 32
    ("ingramspark", "white", 20, 22),  # IngramSpark wants the last page blank: one added, then even
    ("ingramspark", "white", 12, 18),  # padding to its minimum already ends on a blank page
])
def test_pages_are_padded_at_the_end_never_dropped(platform, paper, story_pages, total):
    plan = plan_pages(platform, "paperback", paper, story_pages, 8.5, 8.5)
    assert plan.total_pages == total and plan.blank_pages_added == total - story_pages
    assert plan.reasons


def test_too_many_pages_is_refused_not_cut():
    with pytest.raises(ValueError, match="590 at most"):  # KDP 8.5 x 8.5 on white: at most 590 pages
        plan_pages("kdp", "paperback", "white", 600, 8.5, 8.5)


def test_a_trim_binding_or_paper_the_platform_does_not_offer_is_named():
    assert target_problem("kdp", "hardcover", "white", 8.5, 8.5)[0] == "trim"     # no 8.5 x 8.5 KDP hardcover
    assert target_problem("kdp", "hardcover", "standard-color", 6, 9)[0] == "paper"
    assert target_problem("kdp", "paperback", "white", 9, 12)[0] == "trim"       # past the custom range
    assert target_problem("kdp", "paperback", "white", 8.5, 8.5) is None


def _story(**extra) -> dict:
    return {**yaml.safe_load(EXAMPLE.read_text()), **extra}


def test_the_story_refuses_a_print_target_naming_the_field():
    with pytest.raises(ValueError, match=r"format\.trim_width_in x format\.trim_height_in: Amazon KDP hardcover"):
        Story.model_validate(_story(print={"platform": "kdp", "binding": "hardcover", "paper": "white"}))
    with pytest.raises(ValueError, match=r"print\.paper"):
        Story.model_validate(_story(print={"platform": "kdp", "binding": "paperback", "paper": "glossy"}))
    story = Story.model_validate(_story(print={"platform": "kdp", "binding": "paperback", "paper": "white"}))
    assert story.print.platform == "kdp" and Story.model_validate(_story()).print is None


def test_back_cover_text_is_plain_and_short():
    assert Story.model_validate(_story(back_cover_text="A mouse.\nA lantern.")).back_cover_text
    for bad in ("bad \x1b[31m text", "x" * 601):
        with pytest.raises(ValueError, match="back_cover_text"):
            Story.model_validate(_story(back_cover_text=bad))
