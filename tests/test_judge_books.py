"""Whole books through the quality judge: the chat-completions fake (tests/fakes/judge_server.py) judges what a
test-only image provider ("scarfpaint") draws, a preview proof with Pip's scarf painted on it.

The provider paints the scarf red on the sprite sheet and hero page, blue on a page's first draw, and red again
on a repair: an edit request (the failed page sent first, role repair_source) or, for a model that takes no
input images, a redraw whose prompt carries the judge's fix. A page named in BLANK is drawn blank.
"""

import io
from collections import Counter
from pathlib import Path

import pytest
import yaml
from PIL import Image, ImageDraw

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.ledger import Ledger
from bookbug_assets.providers.base import ImageProvider, ImageRequest, JobOutput, ModelCapabilities
from bookbug_assets.quality.judge_gate import JUDGE_KIND, REPAIR_ROLE
from bookbug_assets.quality.verdicts import load_verdicts
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE
from tests.fakes.judge_server import FakeChatJudge

FAMILY, PRICE = "scarfpaint", 0.04
JUDGE_SPEC = "openrouter:openai/gpt-4o-2024-08-06"
RED, BLUE = (200, 40, 40), (50, 90, 200)


class ScarfProvider(ImageProvider):
    name = FAMILY
    EDIT_REFERENCES = 4  # 0: a model that takes no input image (repairs go into the prompt)
    BLANK: set[str] = set()  # request labels drawn as a blank image
    requests: list[ImageRequest] = []

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=self.EDIT_REFERENCES, price_usd=PRICE, min_size=64,
                                 max_size=4096)

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        assert all(r.sha256 in reference_bytes for r in request.references)  # the failed page travels too
        ScarfProvider.requests.append(request)
        return f"job-{request.cache_key()[:16]}"

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        from bookbug_assets.providers.preview import render_preview

        if request.label in self.BLANK:
            image = Image.new("RGB", (request.width, request.height), (240, 240, 240))
        else:
            image = Image.open(io.BytesIO(render_preview(request))).convert("RGB")
            repaired = "scarf" in request.prompt and (
                any(r.role == REPAIR_ROLE for r in request.references) or "Correct what" in request.prompt)
            colour = RED if request.kind != "page" or repaired else BLUE
            w, h = image.size
            ImageDraw.Draw(image).rectangle((w * 0.4, h * 0.62, w * 0.6, h * 0.66), fill=colour)  # the scarf
        out = io.BytesIO()
        image.save(out, format="PNG")
        return JobOutput(image=out.getvalue(), version="scarf-1", seed=request.seed)


def _write_story(root: Path, book_id: str, pages: int = 1, budget: float | None = None):
    data = yaml.safe_load(EXAMPLE.read_text())
    pip = {"id": "pip", "name": "Pip", "description": "a small grey field mouse with a red knitted scarf",
           "features": ["red knitted scarf"]}
    data.update(book_id=book_id, characters=[pip], pages=data["pages"][:pages], budget_usd=budget,
                provider=f"{FAMILY}:scarf-v1")
    for page in data["pages"]:
        page["characters"] = ["pip"]
    path = root / "stories" / f"{book_id}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_story_file(path, {"soft-meadow"})


@pytest.fixture
def judged_books(workspace, monkeypatch):
    """(make_defs, fake): definitions loaded from the environment with BOOKBUG_JUDGE set, the key an env var."""
    from bookbug_assets.providers import registry

    monkeypatch.setitem(registry.FAMILIES, FAMILY, f"{__name__}:ScarfProvider")
    monkeypatch.setitem(registry.DEFAULT_MODELS, FAMILY, "scarf-v1")
    monkeypatch.setattr(ScarfProvider, "requests", [])
    monkeypatch.setattr(ScarfProvider, "BLANK", set())
    with FakeChatJudge() as fake:
        monkeypatch.setenv("BOOKBUG_JUDGE", JUDGE_SPEC)
        monkeypatch.setenv("OPENROUTER_API_KEY", fake.api_key)
        monkeypatch.setenv("BOOKBUG_JUDGE_BASE_URL", fake.base_url)

        def make_defs():
            from bookbug_assets.definitions import build_definitions

            return build_definitions(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                                     styles_dir=str(workspace["styles"]))

        yield make_defs, fake


def _run(defs, instance, story):
    return materialize_book(defs, instance, story, echo=lambda *_: None, raise_on_error=False)


def _judge_rows(store, book_id):
    return [r for r in Ledger(store).rows(book_id) if r.kind == JUDGE_KIND]


def test_judge_catches_a_wrong_scarf_repairs_it_by_edit_and_accepts_it(judged_books, workspace, instance):
    make_defs, fake = judged_books
    defs = make_defs()
    story = _write_story(workspace["root"], "scarf-book")
    results = _run(defs, instance, story)
    assert all(r.success for r in results.values()), {k: r.success for k, r in results.items()}
    store = defs.resources["storage"].store()
    page = load_verdicts(store, story.book_id)["page-001"]
    assert page.accepted and page.winner == 2 and len(page.attempts) == 2
    first, second = page.attempts
    assert any("red knitted scarf" in f for f in first.failures) and not second.failures
    assert "repair by edit" in second.change and "scarf" in second.change
    # The repair is an edit request: the failed page first, then the book's references, and the scarf named.
    edit = [r for r in ScarfProvider.requests if r.kind == "page"][1]
    assert edit.references[0].role == REPAIR_ROLE and edit.references[0].sha256 == first.image_sha256
    assert [r.role for r in edit.references[1:]] == ["sprite_sheet", "hero_page"]
    assert "give Pip the red knitted scarf, as on the reference sheet" in edit.prompt
    # The check shows the judge's table and reason; the attempts table shows each attempt's judge reason.
    (evaluation,) = [e for e in results["pages"].get_asset_check_evaluations()]
    table = evaluation.metadata["judge_table"].value
    assert "| pip | yes |" in table and "reason: fake judge" in table
    assert evaluation.metadata["judge"].value == JUDGE_SPEC
    (event,) = results["pages"].get_asset_materialization_events()
    assert "fake judge: what the page shows" in event.materialization.metadata["attempts_table"].value
    # One ledger row per judge call (sheet, hero, two page attempts), with the service's cost and the model.
    rows = _judge_rows(store, story.book_id)
    assert Counter(r.asset for r in rows) == {"sprite_sheet": 1, "hero_page": 1, "book_pages": 2}
    assert all(r.status == "ok" and r.cost_usd == pytest.approx(0.0125) and r.model == "openai/gpt-4o-2024-08-06"
               and r.provider == "openrouter" for r in rows)
    assert len(fake.completions()) == 4 and not fake.rejections
    # The ledger asset counts judge calls apart from the images they judged (two page attempts + 2 references).
    meta = results["finish"].asset_materializations_for_node("generation_ledger")[0].metadata
    assert meta["judge_calls"].value == 4 and meta["paid_generations"].value == 4


def test_judge_rerun_of_an_unchanged_book_costs_nothing_and_asks_nothing(judged_books, workspace, instance):
    make_defs, fake = judged_books
    defs = make_defs()
    story = _write_story(workspace["root"], "rerun-book")
    assert all(r.success for r in _run(defs, instance, story).values())
    ledger = Ledger(defs.resources["storage"].store())
    before, calls = len(ledger.rows(story.book_id)), len(fake.completions())
    assert all(r.success for r in _run(make_defs(), instance, story).values())
    new = ledger.rows(story.book_id)[before:]
    assert len(fake.completions()) == calls  # zero judge calls
    assert sum(r.cost_usd for r in new) == 0 and all(r.cache_hit for r in new)
    assert Counter(r.kind == JUDGE_KIND for r in new)[True] == 4  # each judged attempt: a cached judge row


def test_judge_a_blank_page_never_pays_for_a_judge_call(judged_books, workspace, instance):
    make_defs, fake = judged_books
    ScarfProvider.BLANK = {"page 2"}
    defs = make_defs()
    story = _write_story(workspace["root"], "blank-book", pages=2)
    results = _run(defs, instance, story)
    assert not results["pages"].success  # page 2 failed its gate, three blank draws
    store = defs.resources["storage"].store()
    verdict = load_verdicts(store, story.book_id)["page-002"]
    assert not verdict.accepted and len(verdict.attempts) == 3 and verdict.judge == "not asked"
    assert all(any("blank" in f for f in a.failures) for a in verdict.attempts)
    assert not [r for r in _judge_rows(store, story.book_id) if r.partition.endswith("|002")]
    assert len(fake.completions()) == 4  # sheet, hero, page 1 twice; none for page 2


def test_judge_malformed_answers_are_asked_again_then_fail_the_gate_with_the_reason(judged_books, workspace,
                                                                                    instance):
    make_defs, fake = judged_books
    fake.script = ["malformed", "prose"]  # the sprite sheet's first attempt: both answers unusable
    defs = make_defs()
    story = _write_story(workspace["root"], "malformed-book")
    results = _run(defs, instance, story)
    store = defs.resources["storage"].store()
    sheet = load_verdicts(store, story.book_id)["sprite_sheet"]
    first = sheet.attempts[0]
    assert not first.passed and first.failures == [first.failures[0]]
    assert first.failures[0].startswith("judge error: malformed answer 2 of 2: not valid JSON")
    assert first.judge_reason == first.failures[0].removeprefix("judge error: ")
    # Never a silent pass: the next attempt was drawn afresh (a judge error names nothing to repair) and judged.
    assert sheet.accepted and sheet.winner == 2 and "repair" not in sheet.attempts[1].change
    rows = [r for r in _judge_rows(store, story.book_id) if r.asset == "sprite_sheet"]
    assert [r.status for r in rows] == ["malformed", "malformed", "ok"]
    assert results["references"].success


def test_judge_without_edit_puts_the_fix_in_the_prompt_of_a_new_seed(judged_books, workspace, instance,
                                                                     monkeypatch):
    make_defs, fake = judged_books
    monkeypatch.setattr(ScarfProvider, "EDIT_REFERENCES", 0)
    defs = make_defs()
    story = _write_story(workspace["root"], "prompt-book")
    assert all(r.success for r in _run(defs, instance, story).values())
    first, redraw = [r for r in ScarfProvider.requests if r.kind == "page"]
    assert not redraw.references and redraw.seed != first.seed
    assert redraw.prompt.startswith(first.prompt)
    assert "Correct what the previous attempt got wrong: give Pip the red knitted scarf" in redraw.prompt
    verdict = load_verdicts(defs.resources["storage"].store(), story.book_id)["page-001"]
    assert verdict.accepted and "redraw with the judge's fixes" in verdict.attempts[1].change


def test_judge_calls_are_stopped_by_the_book_budget(judged_books, workspace, instance):
    make_defs, fake = judged_books
    defs = make_defs()
    story = _write_story(workspace["root"], "budget-book", budget=0.05)  # the sheet's image fits; its judge not
    results = _run(defs, instance, story)
    assert not results["references"].success
    store = defs.resources["storage"].store()
    sheet = load_verdicts(store, story.book_id)["sprite_sheet"]
    assert not sheet.accepted and sheet.stopped.startswith("budget:")
    assert sheet.failures[0].startswith("not judged: budget:")
    assert [r.status for r in _judge_rows(store, story.book_id)] == ["budget_stop"]
    assert fake.completions() == []
    assert Ledger(store).spent(story.book_id) <= 0.05


def test_judge_key_never_reaches_logs_metadata_or_files(judged_books, workspace, instance):
    make_defs, fake = judged_books
    defs = make_defs()
    story = _write_story(workspace["root"], "secret-book")
    results = _run(defs, instance, story)
    assert all(r.success for r in results.values())
    assert fake.api_key not in repr(defs.resources["quality_judge"])
    for result in results.values():
        for record in instance.all_logs(result.run_id):
            assert fake.api_key not in str(record)
    for path in workspace["root"].rglob("*"):
        if path.is_file():
            assert fake.api_key.encode() not in path.read_bytes(), path
    assert fake.api_key not in str(instance.get_run_by_id(results["pages"].run_id).run_config)


def test_judge_estimate_includes_the_judge_calls(judged_books, workspace, instance):
    make_defs, fake = judged_books
    defs = make_defs()
    story = _write_story(workspace["root"], "estimate-book", pages=2)
    result = _run(defs, instance, story)["references"]
    (story_event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["story"]]
    line = story_event.materialization.metadata["cost_estimate"].value
    assert f"includes the quality judge {JUDGE_SPEC}" in line
    from bookbug_assets.quality.judge_chat import JUDGE_MODELS

    per_call = JUDGE_MODELS["openai/gpt-4o-2024-08-06"].price_per_call_usd()
    expected = round(4 * PRICE + round(4 * per_call, 4), 4)  # 4 images, each judged once
    assert story_event.materialization.metadata["cost_estimate_usd"].value == pytest.approx(expected)


def test_judge_off_by_default_says_so_once(workspace, defs_for, instance, monkeypatch):
    monkeypatch.delenv("BOOKBUG_JUDGE", raising=False)
    defs = defs_for()
    shutil_copy = (workspace["stories"] / EXAMPLE.name)
    data = yaml.safe_load(EXAMPLE.read_text())
    data["pages"] = data["pages"][:1]
    shutil_copy.write_text(yaml.safe_dump(data))
    story = load_story_file(shutil_copy, {"soft-meadow"})
    results = _run(defs, instance, story)
    assert all(r.success for r in results.values())
    said = [r for r in instance.all_logs(results["references"].run_id)
            if r.user_message.startswith("no quality judge configured")]
    assert len(said) == 1
    assert not _judge_rows(defs.resources["storage"].store(), story.book_id)


@pytest.mark.parametrize("value, problem", [("gpt4", "unknown judge family"),
                                            ("openrouter:no/such-model", "has no judge model"),
                                            ("openrouter:openai/gpt-4o-2024-08-06", "needs an API key")])
def test_judge_a_bad_bookbug_judge_fails_loading_naming_the_variable(workspace, defs_for, monkeypatch, value,
                                                                     problem):
    from bookbug_assets.providers.base import ConfigurationError

    monkeypatch.setenv("BOOKBUG_JUDGE", value)
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    monkeypatch.delenv("BOOKBUG_JUDGE_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="BOOKBUG_JUDGE") as caught:
        defs_for()
    assert problem in str(caught.value)


def test_judge_preview_judges_an_offline_book_for_free(workspace, defs_for, instance, monkeypatch):
    monkeypatch.setenv("BOOKBUG_JUDGE", "preview")
    defs = defs_for()
    data = yaml.safe_load(EXAMPLE.read_text())
    data["pages"] = data["pages"][3:5]  # Olive alone, then Pip and Olive
    path = workspace["stories"] / EXAMPLE.name
    path.write_text(yaml.safe_dump(data))
    story = load_story_file(path, {"soft-meadow"})
    results = _run(defs, instance, story)
    assert all(r.success for r in results.values())
    store = defs.resources["storage"].store()
    verdicts = load_verdicts(store, story.book_id)
    assert {v.judge for v in verdicts.values()} == {"preview:token-reader-v1"}
    assert [r["character"] for r in verdicts["page-002"].judge_table] == ["pip", "olive"]
    assert "preview judge, not a vision model" in verdicts["page-002"].judge_reason
    rows = _judge_rows(store, story.book_id)
    assert len(rows) == 4 and all(r.status == "ok" and r.cost_usd == 0 for r in rows)
