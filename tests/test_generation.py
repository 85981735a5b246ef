"""The one generation path: cache, journal/resume, retries, refusals, budget, cancellation."""

import threading

import pytest

from bookbug_assets.generation import (
    GenerationContext, GenerationFailed, RetryPolicy, generate_image, journal_path,
)
from bookbug_assets.ledger import BudgetExceeded, BudgetGuard, Ledger
from bookbug_assets.providers.base import (
    ImageProvider, ImageRequest, JobOutput, ModelCapabilities, ProviderError, SafetyRefusal,
)
from bookbug_assets.providers.preview import render_preview
from bookbug_assets.storage import LocalArtifactStore


class ScriptedProvider(ImageProvider):
    """An in-memory provider whose failures are scripted per call."""

    name = "scripted"

    def __init__(self, price=0.04, submit_errors=(), wait_errors=()):
        self.price = price
        self.submit_errors = list(submit_errors)
        self.wait_errors = list(wait_errors)
        self.submitted: list[str] = []
        self.cancelled: list[str] = []
        self.waited: list[str] = []

    def capabilities(self, model):
        return ModelCapabilities(model=model, max_references=2, price_usd=self.price)

    def submit(self, request, reference_bytes):
        if self.submit_errors:
            raise self.submit_errors.pop(0)
        job_id = f"job-{len(self.submitted) + 1}"
        self.submitted.append(job_id)
        return job_id

    def wait(self, job_id, request, deadline_s):
        self.waited.append(job_id)
        if self.wait_errors:
            error = self.wait_errors.pop(0)
            if error is not None:
                raise error
        return JobOutput(image=render_preview(request.model_copy(update={"provider": "preview"})), version="v1")

    def cancel(self, job_id):
        self.cancelled.append(job_id)


def request(**kw) -> ImageRequest:
    base = dict(provider="scripted", model="m", kind="page", prompt="a mouse with a lantern", width=128,
                height=128, seed=7, label="page 1")
    return ImageRequest(**{**base, **kw})


@pytest.fixture
def ctx(tmp_path):
    store = LocalArtifactStore(tmp_path)
    return GenerationContext(store=store, ledger=Ledger(store), book_id="b", run_id="r1", sleep=lambda s: None,
                             retry=RetryPolicy(max_attempts=4, base_delay_s=0.01))


def test_second_identical_request_is_a_free_cache_hit(ctx):
    provider = ScriptedProvider()
    first = generate_image(request(), provider, ctx)
    second = generate_image(request(), provider, ctx)
    assert len(provider.submitted) == 1
    assert second.cache_hit and second.cost_usd == 0 and second.image_sha256 == first.image_sha256
    assert [r.status for r in ctx.ledger.rows("b")] == ["ok", "cached"]
    assert ctx.ledger.spent("b") == pytest.approx(0.04)
    assert generate_image(request(seed=8), provider, ctx).image_sha256 != first.image_sha256


def test_journaled_job_is_resumed_not_paid_twice(ctx):
    """A step that died while waiting left its job id in the journal; the retry resumes it."""
    provider = ScriptedProvider()
    req = request()
    ctx.store.write_json(journal_path(req.cache_key()), {"job_id": "job-from-crashed-run", "provider": "scripted"})
    record = generate_image(req, provider, ctx)
    assert provider.submitted == [] and provider.waited == ["job-from-crashed-run"]
    assert record.job_id == "job-from-crashed-run"
    assert not ctx.store.exists(journal_path(req.cache_key()))


def test_job_id_is_journaled_before_waiting(ctx):
    seen = {}

    class Spy(ScriptedProvider):
        def wait(self, job_id, req, deadline_s):
            seen["journal"] = ctx.store.read_json(journal_path(req.cache_key()))
            return super().wait(job_id, req, deadline_s)

    generate_image(request(), Spy(), ctx)
    assert seen["journal"]["job_id"] == "job-1"


def test_create_is_retried_on_429_and_5xx_only(ctx):
    busy = [ProviderError("scripted", "429", transient=True, status=429, retry_after_s=0.01),
            ProviderError("scripted", "502", transient=True, status=502)]
    provider = ScriptedProvider(submit_errors=busy)
    generate_image(request(), provider, ctx)
    assert provider.submitted == ["job-1"]
    bad = ScriptedProvider(submit_errors=[ProviderError("scripted", "422 unknown field", status=422)])
    with pytest.raises(ProviderError, match="422"):
        generate_image(request(seed=99), bad, ctx)
    assert bad.submitted == []


def test_refusal_tries_new_seed_then_softened_prompt_then_fails_with_reason(ctx):
    refusal = SafetyRefusal("scripted", "flagged as sensitive (E005)")
    provider = ScriptedProvider(wait_errors=[refusal, None])
    record = generate_image(request(), provider, ctx)
    assert record.seed != 7 and record.refusals == ["flagged as sensitive (E005)"]
    assert generate_image(request(), provider, ctx).cache_hit  # original request now cached

    always = ScriptedProvider(wait_errors=[refusal] * 3)
    with pytest.raises(GenerationFailed, match="scripted:m refused .* 3 times.*E005"):
        generate_image(request(seed=11), always, ctx)
    statuses = [r.status for r in ctx.ledger.rows("b") if r.seed != 7]
    assert statuses.count("refused") >= 3


def test_a_model_without_seeds_gets_the_softened_prompt_at_the_first_retry(ctx):
    class NoSeeds(ScriptedProvider):
        prompts: list[str] = []

        def capabilities(self, model):
            return ModelCapabilities(model=model, price_usd=self.price, seed_deterministic=False)

        def submit(self, req, reference_bytes):
            self.prompts.append(req.prompt)
            return super().submit(req, reference_bytes)

    provider = NoSeeds(wait_errors=[SafetyRefusal("scripted", "flagged as sensitive (E005)"), None])
    generate_image(request(), provider, ctx)
    assert provider.prompts[0] == "a mouse with a lantern"
    assert provider.prompts[1] != provider.prompts[0] and provider.prompts[1].endswith("a mouse with a lantern")


def test_budget_stops_before_the_call_that_would_exceed_it(ctx):
    ctx.budget = BudgetGuard("b", 0.10, ctx.ledger)
    provider = ScriptedProvider(price=0.04)
    generate_image(request(seed=1), provider, ctx)
    generate_image(request(seed=2), provider, ctx)
    with pytest.raises(BudgetExceeded, match="over its budget of \\$0.10"):
        generate_image(request(seed=3), provider, ctx)
    assert len(provider.submitted) == 2
    generate_image(request(seed=1), provider, ctx)  # cached images are free and always allowed


def test_interrupt_while_waiting_cancels_the_remote_job(ctx):
    class Hang(ScriptedProvider):
        def wait(self, job_id, req, deadline_s):
            raise KeyboardInterrupt  # what a terminated run looks like inside the step

    provider = Hang()
    with pytest.raises(KeyboardInterrupt):
        generate_image(request(), provider, ctx)
    assert provider.cancelled == ["job-1"]


def test_concurrent_pages_share_one_budget(ctx):
    ctx.budget = BudgetGuard("b", 0.20, ctx.ledger)
    provider = ScriptedProvider(price=0.04)
    errors = []

    def one(seed):
        try:
            generate_image(request(seed=seed), provider, ctx)
        except BudgetExceeded as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(s,)) for s in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(provider.submitted) == 5 and len(errors) == 7
    assert ctx.ledger.spent("b") <= 0.20 + 1e-9


def test_lost_jobs_are_counted_bounded_and_charged(ctx):
    from bookbug_assets.providers.base import JobGone

    ctx.budget = BudgetGuard("b", 1.00, ctx.ledger)
    gone = [JobGone("scripted", "output expired (410)") for _ in range(10)]
    provider = ScriptedProvider(price=0.04, wait_errors=gone)
    with pytest.raises(JobGone):
        generate_image(request(), provider, ctx)
    assert len(provider.submitted) == ctx.retry.max_attempts
    lost = [r for r in ctx.ledger.rows("b") if r.status == "lost"]
    assert len(lost) == 4 and ctx.ledger.spent("b") == pytest.approx(0.16)


def test_one_page_failing_cancels_only_its_own_job(ctx):
    class Broken(ScriptedProvider):
        def wait(self, job_id, req, deadline_s):
            if req.seed == 1:
                raise ValueError("a bug while waiting")
            return super().wait(job_id, req, deadline_s)

    provider = Broken()
    ctx._in_flight["job-of-another-page"] = provider
    with pytest.raises(ValueError):
        generate_image(request(seed=1), provider, ctx)
    assert provider.cancelled == ["job-1"] and not ctx.terminating


def test_a_terminating_run_starts_no_new_job(ctx):
    from bookbug_assets.generation import RunStopping

    provider = ScriptedProvider()
    ctx.cancel_in_flight()
    with pytest.raises(RunStopping):
        generate_image(request(), provider, ctx)
    assert provider.submitted == []


def test_output_that_is_not_an_image_is_never_cached(ctx):
    class HtmlError(ScriptedProvider):
        def wait(self, job_id, req, deadline_s):
            return JobOutput(image=b"<html>502 Bad Gateway</html>")

    with pytest.raises(ProviderError, match="not an image"):
        generate_image(request(), HtmlError(), ctx)
    assert not ctx.store.list("cache") and not ctx.store.list("blobs")


def test_a_finished_job_whose_download_failed_stays_journaled_and_is_collected_next_run(ctx):
    from bookbug_assets.providers.base import OutputNotCollected

    req = request()
    provider = ScriptedProvider(wait_errors=[OutputNotCollected("scripted", "CDN down")])
    with pytest.raises(OutputNotCollected):
        generate_image(req, provider, ctx)
    assert provider.submitted == ["job-1"]  # no second paid job for a download problem
    assert ctx.store.read_json(journal_path(req.cache_key()))["job_id"] == "job-1"
    record = generate_image(req, provider, ctx)  # the next run
    assert provider.submitted == ["job-1"] and provider.waited == ["job-1", "job-1"] and record.job_id == "job-1"
    assert [r.cost_usd for r in ctx.ledger.rows("b")] == [0.0, 0.04]  # paid once, counted once


def test_a_resumed_job_counts_against_the_budget(ctx):
    ctx.budget = BudgetGuard("b", 0.10, ctx.ledger)
    provider = ScriptedProvider(price=0.04)
    resumed = request(seed=1)
    ctx.store.write_json(journal_path(resumed.cache_key()), {"job_id": "job-from-crashed-run", "provider": "scripted"})
    generate_image(resumed, provider, ctx)
    generate_image(request(seed=2), provider, ctx)
    with pytest.raises(BudgetExceeded):  # 0.04 resumed + 0.04 + 0.04 > 0.10
        generate_image(request(seed=3), provider, ctx)


def test_a_job_created_as_the_run_stops_is_cancelled(ctx):
    from bookbug_assets.generation import RunStopping

    class StopsDuringCreate(ScriptedProvider):
        def submit(self, req, reference_bytes):
            job_id = super().submit(req, reference_bytes)
            ctx.cancel_in_flight()  # the terminate arrives while the create reply is on its way
            return job_id

    provider = StopsDuringCreate()
    with pytest.raises(RunStopping):
        generate_image(request(), provider, ctx)
    assert provider.cancelled == ["job-1"] and provider.waited == []
