"""An image the gate has measured is not measured again: not by its asset check, not on an unchanged rerun
(issue 13: re-assessing stored verdicts was 13 % of a book's time); a change of limits measures again."""

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.quality import verdicts
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE


def test_a_measured_image_is_not_measured_again_until_its_limits_change(workspace, defs_for, instance, monkeypatch):
    measured: list[str] = []
    real = verdicts.assess_image

    def counting(data, ref, thresholds, **how):
        measured.append(how["kind"])
        return real(data, ref, thresholds, **how)

    monkeypatch.setattr(verdicts, "assess_image", counting)
    path = workspace["stories"] / EXAMPLE.name
    path.write_text(EXAMPLE.read_text())
    defs = defs_for()
    story = load_story_file(path, {"soft-meadow"})
    first = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert all(r.success for r in first.values())
    # each of the 14 images once, though its gate and its check both ask
    assert sorted(measured) == sorted(["sprite_sheet", "hero_page"] + ["page"] * 12)

    measured.clear()
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert all(r.success for r in again.values()) and measured == []

    # other limits are another question: measured again, and the answer kept under it
    looser = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds={"max_clipping": 0.5})
    assert all(r.success for r in looser.values()) and len(measured) >= 12
