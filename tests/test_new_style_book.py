"""Issue 16 item 5: a book in a user's own style (20 flat bright drawings, a palette unlike soft-meadow)
finishes offline on the preview renderer without a threshold edit; a style's and a story's `quality:` settings
reach every gated asset, and the run config wins over them."""

import yaml

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.ledger import Ledger
from bookbug_assets.quality.verdicts import load_verdicts, style_quality_profile
from bookbug_assets.stories import load_story_file
from tests.synthetic_style import write_chibi_style

STORY = {
    "book_id": "mimi-under-the-moon", "title": "Mimi Under the Moon", "style": "chibi", "seed": 7,
    "characters": [
        {"id": "mimi", "name": "Mimi", "description": "a round magenta cat with cyan ears"},
        {"id": "bolt", "name": "Bolt", "description": "a tiny yellow robot with a cyan antenna"},
    ],
    "pages": [
        {"text": "Mimi looked up at the moon.", "scene": "Mimi on a cyan hill under a huge yellow moon.",
         "characters": ["mimi"]},
        {"text": "Bolt beeped hello.", "scene": "Bolt waving from a magenta cloud.", "characters": ["bolt"]},
        {"text": "Together they counted stars.", "scene": "Mimi and Bolt lying on the grass pointing at stars.",
         "characters": ["mimi", "bolt"]},
    ],
}
TARGETS = {"sprite_sheet", "hero_page", "page-001", "page-002", "page-003"}


def _book(workspace, story: dict, style_quality: dict | None = None):
    style_dir = write_chibi_style(workspace["styles"] / "chibi")
    if style_quality:
        with (style_dir / "style.yaml").open("a") as f:
            f.write(yaml.safe_dump({"quality": style_quality}))
    path = workspace["stories"] / f"{story['book_id']}.yaml"
    path.write_text(yaml.safe_dump(story, sort_keys=False))
    return load_story_file(path, {"soft-meadow", "chibi"})


def test_a_book_in_a_new_flat_style_finishes_offline_without_a_threshold_edit(workspace, defs_for, instance):
    story = _book(workspace, STORY)
    defs = defs_for()
    results = materialize_book(defs, instance, story, echo=lambda *_: None, raise_on_error=False)
    assert all(r.success for r in results.values()), {k: r.success for k, r in results.items()}
    store = defs.resources["storage"].store()
    verdicts = load_verdicts(store, story.book_id)
    assert set(verdicts) == TARGETS
    for target, verdict in verdicts.items():
        assert verdict.passed and verdict.accepted, verdict.description()
        assert len(verdict.attempts) == 1, [a.failures for a in verdict.attempts]  # no redraws either
    # The bright palette is not clipping, on the sheet or anywhere else.
    assert all(v.scores["clipping"] < 0.01 for v in verdicts.values())
    # Previews: the style distance is reported, and the notes say why it is not gated.
    for target in TARGETS - {"sprite_sheet"}:
        assert "style_distance" in verdicts[target].scores
        assert any(n.startswith("style distance reported, not gated: a preview paints") for n in verdicts[target].notes)
    # The style's own calibration is stored with its profile.
    calibration = style_quality_profile(store, workspace["styles"], "chibi").calibration
    assert calibration.n_images == 20 and calibration.limit >= 0.30 and calibration.blur_p5 > 0
    assert (workspace["outputs"] / "books" / story.book_id / f"{story.book_id}.pdf").is_file()
    assert not any(r.status == "budget_stop" for r in Ledger(store).rows(story.book_id))


def test_style_and_story_settings_reach_every_gated_asset_and_run_config_wins(workspace, defs_for, instance):
    story = _book(workspace, {**STORY, "quality": {"max_uniformity": 0.97}}, style_quality={"max_grid": 18.0})
    defs = defs_for()
    store = defs.resources["storage"].store()
    assert all(r.success for r in materialize_book(defs, instance, story, echo=lambda *_: None).values())
    first = load_verdicts(store, story.book_id)
    assert set(first) == TARGETS
    for verdict in first.values():
        (note,) = [n for n in verdict.notes if n.startswith("limits: ")]
        assert "max_grid 18 (style 'chibi' style.yaml quality:)" in note, note
        assert f"max_uniformity 0.97 (story '{story.book_id}' quality:)" in note, note

    again = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds={"max_grid": 25.0})
    assert all(r.success for r in again.values())
    for verdict in load_verdicts(store, story.book_id).values():
        (note,) = [n for n in verdict.notes if n.startswith("limits: ")]
        assert "max_grid 25 (run config)" in note and "max_uniformity 0.97 (story" in note, note
