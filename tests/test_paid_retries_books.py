"""Issue 17's acceptance, whole books through the fakes and the real clients: a low create limit, a refused page
on rerun, no identical paid requests, one upload per reference, a fal result that never comes."""

import shutil

import pytest

from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.generation import GenerationContext, RetryPolicy, generate_image
from bookbug_assets.layout import journal_path
from bookbug_assets.ledger import Ledger
from bookbug_assets.providers.base import ImageRequest, JobFailed, ResultUnobtainable
from bookbug_assets.providers.fal import FalProvider
from bookbug_assets.storage import LocalArtifactStore
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE
from tests.fakes._http import CreateLimit
from tests.fakes.fal_server import FakeFal
from tests.fakes.replicate_server import FakeReplicate

TOKEN = "r8_paid_retries_token_0123456789"
MODEL = "google/nano-banana-pro"  # takes no seed: every retry must change the prompt
PLUMBING_ONLY = {"max_style_distance": 1.0, "min_character_similarity": 0.0}
NEVER_PASSES = {"max_style_distance": 0.0, "min_character_similarity": 1.0}  # every image is redrawn


def _book(workspace, defs_for, instance, monkeypatch, fake, thresholds, **kw):
    for name, value in {"REPLICATE_API_TOKEN": TOKEN, "BOOKBUG_PROVIDER": f"replicate:{MODEL}",
                        "BOOKBUG_REPLICATE_BASE_URL": fake.url, "BOOKBUG_POLL_INTERVAL_S": "0.05"}.items():
        monkeypatch.setenv(name, value)
    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    defs = defs_for()
    results = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds=thresholds,
                               raise_on_error=False, **kw)
    return defs, story, results


def _paid_inputs(fake):
    return [repr(sorted(p["input"].items())) for p in fake.created_predictions if p["model"] == MODEL]


def test_a_book_finishes_in_one_run_under_a_five_per_window_create_limit(workspace, defs_for, instance,
                                                                          monkeypatch):
    with FakeReplicate(api_token=TOKEN, output_mode="data", output_scale=1.0) as fake:
        fake.create_limit = CreateLimit(5, window_s=2.0)  # 5 a minute, with the minute shrunk for the test
        defs, story, results = _book(workspace, defs_for, instance, monkeypatch, fake, PLUMBING_ONLY)
        assert all(r.success for r in results.values())
        assert fake.create_limit.refused >= 1, "the limit was never reached: the test proves nothing"
        rows = Ledger(defs.resources["storage"].store()).rows(story.book_id)
        assert not [r for r in rows if r.status == "failed"]
        # Each reference is uploaded once for the whole book, not once per page thread.
        uploaded = [u["sha256"] for u in fake.uploads]
        assert len(uploaded) == len(set(uploaded))


def test_redraws_of_a_seedless_model_are_never_identical_paid_requests(workspace, defs_for, instance, monkeypatch):
    with FakeReplicate(api_token=TOKEN, output_mode="data", output_scale=1.0) as fake:
        defs, story, _ = _book(workspace, defs_for, instance, monkeypatch, fake, NEVER_PASSES)
        inputs = _paid_inputs(fake)  # the sprite sheet, then the hero page drawn 3 times (it never passes)
        assert len(inputs) >= 4, "the gate made no redraws"
        assert len(inputs) == len(set(inputs)), "a redraw sent the model an input it had already drawn"
        changes = {r.change for r in Ledger(defs.resources["storage"].store()).rows(story.book_id)
                   if r.status == "ok" and r.attempt}
        assert any("Composition for this attempt" in c for c in changes)


def test_a_refused_page_costs_nothing_on_rerun(workspace, defs_for, instance, monkeypatch):
    with FakeReplicate(api_token=TOKEN, output_mode="data", output_scale=1.0) as fake:
        fake.refuse_prompts_containing = ["striking a match"]  # page 3's scene
        defs, story, results = _book(workspace, defs_for, instance, monkeypatch, fake, PLUMBING_ONLY)
        assert not results["pages"].success
        first = len(fake.created_predictions)
        refused = [p for p in fake.created_predictions if "striking a match" in p["input"]["prompt"]]
        assert len(refused) == 3 and len(set(_paid_inputs(fake))) == first  # as asked, softened twice

        again = materialize_book(defs, instance, story, echo=lambda *_: None, thresholds=PLUMBING_ONLY,
                                 raise_on_error=False)
        assert not again["pages"].success
        assert len(fake.created_predictions) == first, "the rerun paid for the refused page again"
        skipped = [r for r in Ledger(defs.resources["storage"].store()).rows(story.book_id) if r.status == "skipped"]
        assert skipped and "retry-refused" in skipped[0].error

        materialize_book(defs, instance, story, echo=lambda *_: None, thresholds=PLUMBING_ONLY,
                         raise_on_error=False, tags={"bookbug/retry_refused": "true"})
        assert len(fake.created_predictions) == first + 3  # asked for: sent again


def test_a_fal_result_that_keeps_failing_ends_the_image_instead_of_hanging(tmp_path):
    with FakeFal(fal_key="fal-id:paid-retries-secret") as fake:
        fake.fail_all_results = 500  # COMPLETED, then the result URL answers 500
        provider = FalProvider(key=fake.fal_key, base_url=fake.url, poll_interval_s=0.01)
        store = LocalArtifactStore(tmp_path)
        ctx = GenerationContext(store=store, ledger=Ledger(store), book_id="b", retry=RetryPolicy(deadline_s=600))
        req = ImageRequest(provider="fal", model="fal-ai/flux/dev", kind="page", prompt="Pip", width=512,
                           height=512, seed=3, label="page 1")
        with pytest.raises(ResultUnobtainable, match="HTTP 500.*paid"):
            generate_image(req, provider, ctx)
        assert 1 <= fake.result_fetches <= 8, f"{fake.result_fetches} result fetches"
        assert len(fake.submitted) == 1  # not created again by the retry loop
        assert not store.exists(journal_path(req.cache_key()))  # a later run does not resume it for 600 s
        row = Ledger(store).rows("b")[-1]
        assert row.status == "failed" and row.cost_usd > 0 and "paid" in row.error


def test_fal_5xx_failures_are_not_charged_but_4xx_ones_are(tmp_path):
    from tests.fakes._fal_errors import Failure
    from tests.fakes.fal_server import MODEL_CRASH, RUNNER_DISCONNECTED

    with FakeFal(fal_key="fal-id:billing-secret") as fake:
        provider = FalProvider(key=fake.fal_key, base_url=fake.url, poll_interval_s=0.01)
        store = LocalArtifactStore(tmp_path)
        ctx = GenerationContext(store=store, ledger=Ledger(store), book_id="b", sleep=lambda s: None,
                                retry=RetryPolicy(base_delay_s=0.01, deadline_s=30))
        page = dict(provider="fal", model="fal-ai/flux/dev", kind="page", prompt="Pip", width=512, height=512)
        fake.fail_next_requests = [RUNNER_DISCONNECTED]
        generate_image(ImageRequest(seed=1, **page), provider, ctx)  # disconnected (free), then drawn
        fake.fail_next_requests = [MODEL_CRASH, MODEL_CRASH]
        with pytest.raises(JobFailed):
            generate_image(ImageRequest(seed=2, **page), provider, ctx)  # crashed twice: free, and not retried more
        fake.fail_next_requests = [Failure(422, [{"loc": ["body", "prompt"], "msg": "prompt too long",
                                                  "type": "value_error"}])]
        with pytest.raises(JobFailed):
            generate_image(ImageRequest(seed=3, **page), provider, ctx)  # refused its input: charged
        rows = Ledger(store).rows("b")
        by_seed = {s: [(r.status, r.cost_usd) for r in rows if r.seed == s] for s in (1, 2, 3)}
        assert by_seed[1][0] == ("failed", 0.0) and by_seed[1][-1][0] == "ok" and by_seed[1][-1][1] > 0
        assert by_seed[2] == [("failed", 0.0), ("failed", 0.0)]
        assert by_seed[3] == [("failed", pytest.approx(0.025))]  # 512 x 512 rounds up to 1 MP
