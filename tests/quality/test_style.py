import json

import numpy as np
import pytest
from PIL import Image

from bookbug_assets.quality import (
    StyleProfile,
    Thresholds,
    assess,
    dominant_palette,
    style_components,
    style_distance,
    style_profile,
)
from bookbug_assets.quality.synthetic import random_character, render_page

from .conftest import hue_rotate


@pytest.fixture(scope="module")
def profile(book):
    return style_profile(book["profile_pages"])


@pytest.fixture(scope="module")
def off_palette_pages():
    rng = np.random.default_rng(7)
    return [render_page(random_character(rng, fam), rng, 768, strict=True) for fam in ("cool", "candy", "forest")]


def test_on_palette_closer_than_off_palette(book, profile, off_palette_pages):
    on = [style_distance(p, profile) for p in book["new_pages"]]
    off = [style_distance(p, profile) for p in off_palette_pages]
    hue = [style_distance(hue_rotate(p, 120), profile) for p in book["new_pages"]]
    assert max(on) < min(off)
    assert max(on) < min(hue)
    limit = Thresholds().max_style_distance
    assert max(on) < limit < min(hue)


def test_distance_range_and_self(book, profile):
    for p in book["profile_pages"]:
        assert 0.0 <= style_distance(p, profile) < 0.2
    c = style_components(book["new_pages"][0], profile)
    assert 0.0 <= c["histogram"] <= 1.0 and 0.0 <= c["coverage"] <= 1.0


def test_off_palette_page_fails_assess(book, profile):
    ok = assess(book["new_pages"][0], style=profile)
    bad = assess(hue_rotate(book["new_pages"][0], 120), style=profile)
    assert ok.passed, ok.reasons
    assert any(r.startswith("off-style: style distance") for r in bad.reasons)


def test_profile_round_trips_through_json(book, profile):
    again = StyleProfile.from_dict(json.loads(json.dumps(profile.to_dict())))
    page = book["new_pages"][1]
    assert style_distance(page, again) == pytest.approx(style_distance(page, profile), abs=1e-3)


def test_dominant_palette_orders_by_share():
    img = Image.new("RGB", (200, 100), (200, 40, 40))
    img.paste((40, 60, 200), (140, 0, 200, 100))  # 30 % blue
    pal = dominant_palette(img, k=2)
    assert len(pal) == 2 and all(len(h) == 7 and h.startswith("#") for h in pal)
    r, g, b = (int(pal[0][i: i + 2], 16) for i in (1, 3, 5))
    assert r > 150 and b < 90  # the red covers 70 %
    r2, g2, b2 = (int(dominant_palette([img, img], k=6)[0][i: i + 2], 16) for i in (1, 3, 5))
    assert abs(r2 - r) + abs(g2 - g) + abs(b2 - b) <= 6


def test_profile_is_deterministic(book):
    a = style_profile(book["profile_pages"][:2])
    b = style_profile(book["profile_pages"][:2])
    assert np.array_equal(a.palette, b.palette)
