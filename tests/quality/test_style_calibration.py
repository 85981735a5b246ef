"""A style's off-style limit comes from its own images, within the floor and ceiling, and travels with its profile."""

import json

import numpy as np
import pytest
from PIL import Image

from bookbug_assets.quality.style import (
    CALIBRATION_CEILING, CALIBRATION_FACTOR, CALIBRATION_FLOOR, StyleProfile, calibrate_style_limit,
    calibrated_style_profile, style_distance, style_profile,
)
from bookbug_assets.quality.synthetic import random_character, render_page
from tests.synthetic_style import chibi_drawing

from .conftest import hue_rotate

MEADOW = "data/styles/soft-meadow/images"


@pytest.fixture(scope="module")
def chibi():
    return [chibi_drawing(i, size=256) for i in range(20)]


@pytest.fixture(scope="module")
def chibi_profile(chibi):
    return calibrated_style_profile(chibi)


def test_a_tight_flat_style_gets_the_floor(chibi_profile, chibi):
    cal = chibi_profile.calibration
    assert cal.n_images == 20 and cal.folds == 20  # leave-one-out
    assert cal.percentile_distance * CALIBRATION_FACTOR < CALIBRATION_FLOOR
    assert cal.limit == CALIBRATION_FLOOR and cal.bound == "floor"
    assert "leave-one-out" in cal.describe() and "floor" in cal.describe()
    # The style's own images pass its limit; the same drawings with the hues turned do not.
    assert max(style_distance(im, chibi_profile) for im in chibi) < cal.limit
    assert min(style_distance(hue_rotate(im, 120), chibi_profile) for im in chibi[:5]) > cal.limit


def test_a_varied_style_gets_a_wider_limit_than_the_default():
    # Four palette families in one dataset: held-out images are far from a profile of the rest.
    rng = np.random.default_rng(5)
    images = [render_page(random_character(rng, fam), rng, 256, strict=True)
              for fam in ("warm", "cool", "forest", "candy") for _ in range(3)]
    cal = calibrate_style_limit(images)
    assert CALIBRATION_FLOOR < cal.limit <= CALIBRATION_CEILING
    assert cal.limit == pytest.approx(min(cal.percentile_distance * CALIBRATION_FACTOR, CALIBRATION_CEILING))
    profile = style_profile(images)
    new = [render_page(random_character(rng, fam), rng, 256, strict=True) for fam in ("warm", "cool")]
    assert max(style_distance(im, profile) for im in new) < cal.limit


def test_a_style_with_nothing_in_common_is_capped_at_the_ceiling():
    rng = np.random.default_rng(0)
    images = [Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(0, 256, 3))) for _ in range(6)]
    cal = calibrate_style_limit(images)
    assert cal.limit == CALIBRATION_CEILING and cal.bound == "ceiling"
    assert "capped" in cal.describe()


def test_large_datasets_are_held_out_in_folds():
    images = [Image.open(f"{MEADOW}/{i % 20 + 1:02d}.png").resize((96, 96)) for i in range(25)]
    cal = calibrate_style_limit(images)
    assert cal.n_images == 25 and cal.folds == 20 and "20-fold" in cal.describe()


def test_the_calibration_round_trips_with_the_profile(chibi_profile, chibi):
    again = StyleProfile.from_dict(json.loads(json.dumps(chibi_profile.to_dict())))
    cal, back = chibi_profile.calibration, again.calibration
    assert (back.limit, back.bound, back.n_images, back.folds) == (cal.limit, cal.bound, cal.n_images, cal.folds)
    assert back.percentile_distance == pytest.approx(cal.percentile_distance, abs=1e-4)
    assert chibi_profile.to_dict()["calibration"]["method"] == chibi_profile.calibration.describe()
    # A profile stored before calibration existed reads back without one (it is then computed again).
    legacy = {k: v for k, v in chibi_profile.to_dict().items() if k != "calibration"}
    assert StyleProfile.from_dict(legacy).calibration is None


def test_the_held_out_distance_is_the_public_distance(chibi):
    # calibrate_style_limit reuses cached Lab arrays; it must measure what style_distance measures.
    cal = calibrate_style_limit(chibi[:5])
    held_out = [style_distance(chibi[i], style_profile(chibi[:i] + chibi[i + 1:5])) for i in range(5)]
    assert cal.max_distance == pytest.approx(max(held_out), abs=1e-6)
