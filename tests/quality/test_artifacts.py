import json
import re

import numpy as np
import pytest
from PIL import Image

from bookbug_assets.quality import (
    Thresholds,
    assess,
    blur_score,
    clipping,
    grid_peaks,
    grid_periodicity,
    size_check,
    uniformity,
)

from .conftest import add_checker, add_grid, blur, oversaturate


def _kinds(report):
    return {r.split(":")[0] for r in report.reasons}


def test_good_pages_pass(book):
    for page in book["profile_pages"] + book["new_pages"]:
        report = assess(page, expected_size=(768, 768))
        assert report.passed, report.reasons
        assert report.reasons == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("RGB", (768, 768), "white"),
        lambda: Image.new("RGB", (768, 768), "black"),
        # Flat grey with sensor-like grain: still a blank generation.
        lambda: Image.fromarray(
            np.clip(128 + np.random.default_rng(0).normal(0, 6, (768, 768, 3)), 0, 255).astype(np.uint8)
        ),
    ],
    ids=["white", "black", "noisy-grey"],
)
def test_blank_fails(make):
    report = assess(make())
    assert not report.passed
    assert "blank" in _kinds(report)
    assert uniformity(make()) > 0.95


def test_blurred_fails_with_readable_reason(book):
    page = book["new_pages"][0]
    report = assess(blur(page))
    assert not report.passed
    (reason,) = [r for r in report.reasons if r.startswith("blurred")]
    assert re.fullmatch(r"blurred: laplacian variance \d+\.\d < 40", reason), reason
    assert blur_score(blur(page)) < blur_score(page) / 5


@pytest.mark.parametrize("period", [8, 16, 32])
def test_grid_artifacts_fail(book, period):
    page = book["new_pages"][1]
    gridded = add_grid(page, period)
    assert grid_periodicity(page) < Thresholds().max_grid
    peaks = grid_peaks(gridded)
    assert max(peaks, key=peaks.get) in (period, period // 2, 8)  # harmonics land on shorter periods
    report = assess(gridded)
    assert "grid artifacts" in _kinds(report), report.reasons


def test_subtle_checkerboard_fails(book):
    report = assess(add_checker(book["new_pages"][0], 8, 4))
    assert "grid artifacts" in _kinds(report), report.metrics


def test_clipped_fails(book):
    page = book["new_pages"][0]
    assert clipping(page) < 0.01
    report = assess(oversaturate(page))
    assert "clipped" in _kinds(report), report.metrics


def test_paper_white_is_not_clipping():
    img = Image.new("RGB", (256, 256), "white")
    img.paste((0, 0, 0), (0, 0, 128, 256))
    assert clipping(img) == 0.0
    assert clipping(img, include_neutral=True) == 1.0


def test_size_check():
    assert size_check(Image.new("RGB", (1024, 768)), 1024, 768).ok
    assert size_check((2048, 1536), 1024, 768).ok  # larger, same aspect: fine
    small = size_check((512, 384), 1024, 768)
    assert not small.ok and small.reasons == ["too small: 512x384 < 1024x768"]
    wrong = size_check((1024, 1024), 1024, 768)
    assert not wrong.ok and wrong.reasons[0].startswith("wrong aspect")
    assert size_check((1024, 780), 1024, 768, aspect_tol=0.02).ok


def test_assess_reports_size_and_serialises(book):
    report = assess(book["new_pages"][0], expected_size=(1024, 768))
    assert not report.passed
    assert any(r.startswith("wrong aspect") for r in report.reasons)
    assert any(r.startswith("too small") for r in report.reasons)
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d) == {"passed", "reasons", "metrics"}
    assert {"blur", "grid", "uniformity", "clipping", "aspect_error"} <= set(d["metrics"])


def test_accepts_other_modes(book):
    page = book["new_pages"][0]
    for mode in ("RGBA", "L", "P"):
        report = assess(page.convert(mode))
        assert set(report.metrics) >= {"blur", "grid", "uniformity", "clipping"}
    assert assess(page.convert("RGBA")).passed


def test_thresholds_are_configurable(book):
    page = book["new_pages"][0]
    assert not assess(page, thresholds=Thresholds(min_blur=1e9)).passed
