"""Character cards in the story format, and the offline judge reading what the preview renderer drew."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pydantic import ValidationError

from bookbug_assets.providers.base import CharacterToken, ImageRequest
from bookbug_assets.providers.preview import PREVIEW_MODEL, render_preview
from bookbug_assets.quality.judge import judge_failures, judge_image
from bookbug_assets.quality.judge_models import JudgeThresholds, character_cards
from bookbug_assets.quality.judge_preview import PreviewJudge
from bookbug_assets.storage import LocalArtifactStore
from bookbug_assets.stories import Story, load_story_file

REPO = Path(__file__).resolve().parents[2]
PALETTE = ("#f4e9d8", "#e8a87c", "#85cdca", "#41b3a3", "#c38d9e", "#5d5c61")


@pytest.fixture(scope="module")
def story() -> Story:
    return load_story_file(REPO / "data" / "stories" / "pip-and-the-lantern.yaml")


def _draw(story: Story, kind: str, ids: list[str] | None, scene: str = "", palette=PALETTE) -> bytes:
    tokens = tuple(CharacterToken(id=c.id, name=c.name) for c in story.characters if ids is None or c.id in ids)
    return render_preview(ImageRequest(provider="preview", model=PREVIEW_MODEL, kind=kind, prompt=scene or kind,
                                       width=512, height=512, seed=7, characters=tokens, palette=palette,
                                       scene=scene))


@pytest.fixture(scope="module")
def drawn(story):
    return {"sheet": _draw(story, "sprite_sheet", None), "hero": _draw(story, "hero_page", None, story.title),
            "pip": _draw(story, "page", ["pip"], story.pages[0].scene),
            "both": _draw(story, "page", ["pip", "olive"], story.pages[4].scene)}


def _judge(story, drawn, image, ids, tmp_path, sheet=None):
    page = story.pages[4]
    return judge_image(PreviewJudge(), LocalArtifactStore(tmp_path), image=image,
                       references={"sprite_sheet": sheet or drawn["sheet"], "hero_page": drawn["hero"]},
                       cards=character_cards(story, ids), scene=page.scene, style="soft-meadow")


def test_the_example_story_has_character_cards(story):
    cards = character_cards(story, ["olive"])
    assert [c.id for c in cards] == ["olive"] and "green satchel" in cards[0].features
    assert all(c.features for c in story.characters)


@pytest.mark.parametrize("features, message", [
    (["x" * 81], "at most 80 characters"),
    ([""], "at least 1 character"),
    ([f"trait {n}" for n in range(13)], "at most 12 items"),
    (["red scarf\nand a hat"], "one line"),
    (["red\u202escarf"], "bidirectional"),
    (["Red scarf", "red scarf"], "listed twice"),
])
def test_features_are_short_plain_distinct_and_few(story, features, message):
    data = story.model_dump(mode="json")
    data["characters"][0]["features"] = features
    with pytest.raises(ValidationError, match=message):
        Story.model_validate(data)


def test_features_are_optional(story):
    data = story.model_dump(mode="json")
    del data["characters"][0]["features"]
    assert Story.model_validate(data).characters[0].features == []


def test_the_preview_judge_finds_the_tokens_the_page_drew(story, drawn, tmp_path):
    verdict = _judge(story, drawn, drawn["both"], ["pip", "olive"], tmp_path)
    assert verdict.ok and verdict.cost_usd == 0.0 and verdict.judge == "preview:token-reader-v1"
    for c in verdict.answer.characters:
        assert c.present and c.identity == 4
        assert {f.status for f in c.features} == {"unsure"}  # a token shows no scarf: never "present"
    assert verdict.answer.scene_match == 4 and verdict.answer.style_match >= 3
    assert "not a vision model" in verdict.reason
    assert judge_failures(verdict, JudgeThresholds()) == []


def test_the_preview_judge_misses_a_character_the_page_did_not_draw(story, drawn, tmp_path):
    verdict = _judge(story, drawn, drawn["pip"], ["pip", "olive"], tmp_path)
    olive = verdict.answer.character("olive")
    assert verdict.answer.character("pip").present
    assert not olive.present and olive.identity == 0 and {f.status for f in olive.features} == {"absent"}
    assert verdict.answer.scene_match == 2
    assert "judge: olive is not on the page" in judge_failures(verdict, JudgeThresholds())


def test_the_preview_judge_doubts_a_character_missing_from_the_sheet(story, drawn, tmp_path):
    pip_only_sheet = _draw(story, "sprite_sheet", ["pip"])
    verdict = _judge(story, drawn, drawn["both"], ["pip", "olive"], tmp_path, sheet=pip_only_sheet)
    assert verdict.answer.character("pip").identity == 4
    assert verdict.answer.character("olive").identity == 1
    assert any("olive identity 1/4" in f for f in judge_failures(verdict, JudgeThresholds()))


def test_the_preview_judge_sees_nobody_on_a_blank_page_and_an_off_palette_page(story, drawn, tmp_path):
    blank = io.BytesIO()
    Image.new("RGB", (512, 512), (250, 250, 250)).save(blank, format="PNG")
    verdict = _judge(story, drawn, blank.getvalue(), ["pip"], tmp_path)
    assert not verdict.answer.character("pip").present and verdict.answer.scene_match == 0
    off = _draw(story, "page", ["pip"], story.pages[0].scene, palette=("#101060", "#2020a0", "#000000"))
    assert _judge(story, drawn, off, ["pip"], tmp_path).answer.style_match <= 2


def test_the_preview_judge_is_deterministic_and_cached(story, drawn, tmp_path):
    first = _judge(story, drawn, drawn["both"], ["pip", "olive"], tmp_path)
    again = _judge(story, drawn, drawn["both"], ["pip", "olive"], tmp_path)
    assert again.cache_hit and again.answer == first.answer
    elsewhere = _judge(story, drawn, drawn["both"], ["pip", "olive"], tmp_path / "other")
    assert not elsewhere.cache_hit and elsewhere.answer == first.answer
