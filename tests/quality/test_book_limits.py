"""Which limit a book's images are judged with: run config > story > style.yaml > calibrated default."""

import io
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pytest
from PIL import Image

from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.book_limits import JUDGE_FIELDS, LIMIT_FIELDS, book_limits, run_limits
from bookbug_assets.quality.style import calibrated_style_profile
from bookbug_assets.quality.verdicts import QualityReference, assess_image
from bookbug_assets.quality_section import QualitySection
from bookbug_assets.stories.models import Story
from bookbug_assets.styles import StyleError, dataset_hash, dataset_items, load_style_config
from tests.synthetic_style import chibi_drawing, write_chibi_style

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def profile():
    return calibrated_style_profile([chibi_drawing(i, size=256) for i in range(8)])


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_the_sections_name_exactly_the_gate_fields():
    from bookbug_assets.defs.gate_config import QualityThresholds

    limits = set(LIMIT_FIELDS)
    assert limits == {f.name for f in fields(Thresholds)} - {"explicit"}
    judge = set(JUDGE_FIELDS)  # the quality judge's limits travel in the same sections
    assert set(QualitySection.model_fields) == limits | judge | {"gate_character_on_previews"}
    assert set(QualityThresholds.model_fields) == limits | judge | {"gate_character_on_previews"}


def test_precedence_run_config_then_story_then_style_then_calibrated(profile):
    style = QualitySection(max_style_distance=0.5, max_clipping=0.2, min_blur=10)
    story = QualitySection(max_clipping=0.1, gate_character_on_previews=True)
    limits = book_limits("chibi", profile, style, "my-book", story)
    t, preview_character, sources = run_limits(limits, Thresholds(min_blur=20.0, explicit=frozenset({"min_blur"})),
                                               None)
    assert (t.min_blur, sources["min_blur"]) == (20.0, "run config")
    assert (t.max_clipping, sources["max_clipping"]) == (0.1, "story 'my-book' quality:")
    assert (t.max_style_distance, sources["max_style_distance"]) == (0.5, "style 'chibi' style.yaml quality:")
    assert (t.max_grid, "max_grid" in sources) == (Thresholds().max_grid, False)
    assert preview_character is True
    # Unset everywhere: the style distance limit is the style's own calibration.
    t, preview_character, sources = run_limits(book_limits("chibi", profile, None), Thresholds(explicit=frozenset()),
                                               False)
    assert t.max_style_distance == profile.calibration.limit
    assert sources["max_style_distance"].startswith("calibrated for style 'chibi': 95th percentile")
    assert preview_character is False and sources["gate_character_on_previews"] == "run config"


def test_a_run_config_value_equal_to_the_default_still_wins(profile):
    limits = book_limits("chibi", profile, QualitySection(max_style_distance=0.55))
    t, _, sources = run_limits(limits, Thresholds(max_style_distance=0.30, explicit=frozenset({"max_style_distance"})),
                               None)
    assert t.max_style_distance == 0.30 and sources["max_style_distance"] == "run config"
    # A Thresholds built in code sets what differs from the defaults.
    assert Thresholds(min_blur=1e9).set_fields() == {"min_blur"} and not Thresholds().set_fields()


def test_the_verdict_notes_say_which_limit_and_where_from(profile):
    limits = book_limits("chibi", profile, QualitySection(max_grid=20))
    ref = QualityReference(profile, None, limits=limits)
    image = _png(chibi_drawing(3))
    real = assess_image(image, ref, Thresholds(explicit=frozenset()), kind="page", is_preview=False,
                        has_characters=False)
    assert real.passed, real.failures
    (note,) = [n for n in real.notes if n.startswith("limits: ")]
    assert f"max_style_distance {profile.calibration.limit:.3g} (calibrated for style 'chibi'" in note
    assert "max_grid 20 (style 'chibi' style.yaml quality:)" in note
    preview = assess_image(image, ref, Thresholds(explicit=frozenset()), kind="page", is_preview=True,
                           has_characters=False)
    assert "style_distance" in preview.scores
    assert any(n.startswith("style distance reported, not gated: a preview paints") for n in preview.notes)
    assert not any("max_style_distance" in n for n in preview.notes)


def test_a_soft_style_lowers_the_blur_limit_and_a_sharp_one_keeps_it(profile):
    soft = replace(profile, calibration=replace(profile.calibration, blur_p5=6.4))  # soft-meadow's own images
    t, _, sources = run_limits(book_limits("soft-meadow", soft, None), Thresholds(), None)
    assert t.min_blur == pytest.approx(3.2) and "its own images are soft" in sources["min_blur"]
    blank = replace(profile, calibration=replace(profile.calibration, blur_p5=0.5))
    assert run_limits(book_limits("x", blank, None), Thresholds(), None)[0].min_blur == 2.0
    sharp = replace(profile, calibration=replace(profile.calibration, blur_p5=260.0))
    t, _, sources = run_limits(book_limits("chibi", sharp, None), Thresholds(), None)
    assert t.min_blur == Thresholds().min_blur and "min_blur" not in sources


def test_an_off_style_real_render_fails_the_calibrated_limit(profile):
    ref = QualityReference(profile, None, limits=book_limits("chibi", profile, None))
    other = Image.open(REPO / "data/styles/soft-meadow/images/01.png")
    result = assess_image(_png(other), ref, Thresholds(), kind="page", is_preview=False, has_characters=False)
    assert any(f.startswith("off-style") for f in result.failures)


def test_style_yaml_quality_section_loads_and_does_not_change_the_dataset(tmp_path):
    style_dir = write_chibi_style(tmp_path / "chibi", count=5)
    before = dataset_hash(dataset_items(style_dir), load_style_config(style_dir))
    with (style_dir / "style.yaml").open("a") as f:
        f.write("quality:\n  max_style_distance: 0.45\n  max_clipping: 0.08\n")
    config = load_style_config(style_dir)
    assert config.quality.values() == {"max_style_distance": 0.45, "max_clipping": 0.08}
    # Tuning the gate must not retrain a LoRA nor make the style's books stale.
    assert dataset_hash(dataset_items(style_dir), config) == before


def test_a_bad_quality_field_is_one_line_naming_file_and_field(tmp_path):
    style_dir = tmp_path / "s"
    shutil.copytree(REPO / "data/styles/soft-meadow", style_dir)
    with (style_dir / "style.yaml").open("a") as f:
        f.write("quality:\n  max_clipping: 2\n  max_clip: 0.1\n")
    with pytest.raises(StyleError) as err:
        load_style_config(style_dir)
    message = str(err.value)
    assert "\n" not in message and str(style_dir / "style.yaml") in message
    assert "quality.max_clipping:" in message and "quality.max_clip:" in message


def test_a_story_can_carry_its_own_limits():
    story = Story.model_validate({
        "book_id": "b", "title": "T", "style": "chibi", "characters": [{"id": "a", "name": "A", "description": "d"}],
        "pages": [{"text": "x", "scene": "y", "characters": ["a"]}], "quality": {"min_blur": 5}})
    assert story.quality.values() == {"min_blur": 5}
    with pytest.raises(ValueError, match="quality"):
        Story.model_validate({**story.model_dump(), "quality": {"max_style_distance": 3}})
