"""The judge inside the gate, below the Dagster layer: repair instructions, the judge's limits from the book's
sources, and a judge call as a generation (ledger row, budget, retries while unreachable)."""

from __future__ import annotations

import pytest

from bookbug_assets.generation import GenerationContext, RetryPolicy
from bookbug_assets.layout import GenerationRecord
from bookbug_assets.ledger import BudgetGuard, Ledger
from bookbug_assets.providers.base import ImageRequest, ReferenceImage
from bookbug_assets.quality.book_limits import book_limits, judge_run_limits
from bookbug_assets.quality.judge_chat import ChatCompletionsJudge
from bookbug_assets.quality.judge_gate import (
    JUDGE_KIND, REPAIR_ROLE, JudgeSubject, judge_attempt, repair_fixes, repair_request,
)
from bookbug_assets.quality.judge_models import (
    Artifacts, CharacterCard, CharacterJudgement, FeatureCheck, JudgeAnswer, JudgeVerdict,
)
from bookbug_assets.quality.verdicts import QualityVerdict
from bookbug_assets.quality_section import QualitySection
from bookbug_assets.storage import LocalArtifactStore
from tests.fakes.judge_server import FakeChatJudge
from tests.quality.test_judge import BLUE, HERO, PIP, RED, SCENE, SHEET, STYLE, _png

MODEL = "openai/gpt-4o-2024-08-06"


def _verdict(**answer) -> JudgeVerdict:
    pip = CharacterJudgement(id="pip", present=True, identity=2,
                             features=[FeatureCheck(feature="red knitted scarf", status="absent"),
                                       FeatureCheck(feature="big round ears", status="present")],
                             differences=["red knitted scarf is blue", "tail too short"])
    base = dict(characters=[pip], style_match=4, scene_match=4,
                artifacts=Artifacts(anatomy_errors=[], melted_faces=[], duplicated_limbs=[],
                                    lettering=["the word MOON on the sign"]), safety_concerns=[], reason="scarf")
    return JudgeVerdict(judge="fake:judge", judge_version="v", cache_key="k", image_sha256="s", reason="scarf",
                        answer=JudgeAnswer(**{**base, **answer}))


def test_judge_repair_names_each_fault_and_edits_the_failed_image_first():
    fixes = repair_fixes(_verdict(), (PIP,))
    assert fixes == ["give Pip the red knitted scarf, as on the reference sheet",
                     "make Pip match the reference sheet: tail too short",
                     "remove the lettering (the word MOON on the sign)"]
    assert repair_fixes(_verdict(safety_concerns=["a sharp knife"]), (PIP,)) == []  # redrawn, not edited
    sheet, hero = (ReferenceImage(role=r, sha256=r * 4, key=f"k/{r}") for r in ("sprite_sheet", "hero_page"))
    request = ImageRequest(provider="p", model="m", kind="page", prompt="Pip at dusk.", width=512, height=512,
                           seed=7, references=(sheet, hero))
    failed = GenerationRecord.model_construct(image_sha256="f" * 64, image_key="images/failed.png")
    edit, change = repair_request(request, failed, fixes, edit_references=2)
    assert [r.role for r in edit.references] == [REPAIR_ROLE, "sprite_sheet"]  # as many as the model takes
    assert edit.references[0].sha256 == "f" * 64 and edit.seed == 7
    assert edit.prompt.startswith("Edit image 1, the previous attempt at this illustration: give Pip the red")
    assert change.startswith("repair by edit: give Pip")
    redraw, change = repair_request(request, failed, fixes, edit_references=0)
    assert redraw.references == request.references and redraw.prompt.startswith("Pip at dusk. Correct what")
    assert change.startswith("redraw with the judge's fixes")


def test_judge_limits_come_from_the_story_and_style_quality_sections_and_run_config():
    limits = book_limits("soft-meadow", None, QualitySection(min_identity=2, allow_lettering=True), "b",
                         QualitySection(min_identity=4))
    assert limits.judge.min_identity == 4 and limits.judge.allow_lettering
    assert limits.thresholds.min_blur == 40  # the weight-free limits are untouched by the judge's
    chosen, note = judge_run_limits(limits, {"min_style_match": 3})
    assert (chosen.min_identity, chosen.min_style_match, chosen.allow_lettering) == (4, 3, True)
    assert "min_identity 4 (story 'b' quality:)" in note and "min_style_match 3 (run config)" in note
    assert judge_run_limits(book_limits("s", None, None), {}) == (limits.judge.__class__(), "")
    with pytest.raises(ValueError):
        QualitySection(min_identity=5)


def test_judge_verdicts_and_ledger_rows_written_before_the_judge_existed_still_read():
    old = {"book_id": "b", "target": "page-001", "passed": True, "accepted": True, "image_sha256": "s",
           "image_key": "k", "provider": "preview", "model": "m", "seed": 1,
           "attempts": [{"attempt": 1, "seed": 1, "image_sha256": "s", "passed": True}]}
    verdict = QualityVerdict.model_validate(old)
    assert verdict.judge == "" and verdict.attempts[0].judge_reason == ""
    assert verdict.summary()["judge"] == "none configured"


@pytest.fixture
def ctx(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    ledger = Ledger(store)
    return GenerationContext(store=store, ledger=ledger, budget=BudgetGuard("b", 1.0, ledger),
                             retry=RetryPolicy(base_delay_s=0.0), book_id="b", asset="book_pages",
                             sleep=lambda s: None)


SUBJECT = JudgeSubject(references=(("sprite_sheet", SHEET), ("hero_page", HERO)), cards=(PIP,), scene=SCENE,
                       style=STYLE)


def _judge_once(judge, ctx, image):
    return judge_attempt(judge, ctx, SUBJECT, image=image, image_sha256="sha", partition="b|001", attempt=1,
                         what="page 1")


def test_judge_call_is_a_ledger_row_with_cost_and_an_unreachable_judge_is_retried(ctx):
    with FakeChatJudge() as fake:
        judge = ChatCompletionsJudge(MODEL, fake.api_key, base_url=fake.base_url)
        fake.fail_status = [503, 503, 503]
        down = _judge_once(judge, ctx, _png(BLUE))
        assert down.error_kind == "unavailable" and "HTTP 503" in down.error
        assert ctx.budget.spent_usd == 0  # nothing answered, nothing kept against the budget
        verdict = _judge_once(judge, ctx, _png(BLUE))  # not kept: asked again, and answered
        assert verdict.ok and [f.status for f in verdict.answer.character("pip").features] == ["absent", "present"]
        again = _judge_once(judge, ctx, _png(BLUE))
        assert again.cache_hit and len(fake.completions()) == 4  # three 503s and one answer
        judge.close()
    rows = [r for r in ctx.ledger.rows("b") if r.kind == JUDGE_KIND]
    assert [r.status for r in rows] == ["unavailable"] * 3 + ["ok", "cached"]
    assert [r.cost_usd for r in rows] == [0, 0, 0, 0.0125, 0]
    assert ctx.budget.spent_usd == pytest.approx(0.0125)  # the reservation settled at what the service charged
    assert all(r.provider == "openrouter" and r.model == MODEL and r.partition == "b|001" for r in rows)
    assert len({r.request_key for r in rows}) == 1 and rows[0].request_key.startswith("cache/judge/")


def test_judge_lettering_becomes_a_repair_instruction(ctx):
    with FakeChatJudge() as fake:
        judge = ChatCompletionsJudge(MODEL, fake.api_key, base_url=fake.base_url)
        fake.script = ["lettering"]
        verdict = _judge_once(judge, ctx, _png(RED))
        judge.close()
    assert repair_fixes(verdict, (PIP,)) == ["remove the lettering (the word MOON painted on the sign)"]
