"""Issue 17 in the generation core: every paid retry changes something, refusals are remembered, a 429 waits
on one shared limiter instead of using up attempts, and a stopping run stops its waiting threads."""

import threading

import pytest

from bookbug_assets.generation import GenerationContext, GenerationFailed, RetryPolicy, RunStopping, generate_image
from bookbug_assets.layout import journal_path, outcome_path
from bookbug_assets.ledger import Ledger
from bookbug_assets.providers.base import (
    ImageRequest, JobFailed, ModelCapabilities, ProviderError, ResultUnobtainable, SafetyRefusal,
)
from bookbug_assets.providers.rate_limit import RateLimiter
from bookbug_assets.quality.gate import attempt_variation, describe_change
from bookbug_assets.refusals import refusal_tries
from bookbug_assets.storage import LocalArtifactStore
from tests.test_generation import ScriptedProvider, request

REFUSED = SafetyRefusal("scripted", "flagged as sensitive (E005)")


class Account(ScriptedProvider):
    """A scripted provider with its own rate-limit account, so tests do not share a limiter."""

    def __init__(self, account: str, seeds: bool = True, **kw):
        super().__init__(**kw)
        self.account, self.seeds = account, seeds
        self.sent: list[tuple[int, str]] = []

    def rate_account(self):
        return self.account

    def capabilities(self, model):
        return ModelCapabilities(model=model, max_references=2, price_usd=self.price, seed_deterministic=self.seeds)

    def submit(self, req, reference_bytes):
        if not self.submit_errors:  # what the model reads: the seed only where it takes one
            self.sent.append((req.seed if self.seeds else 0, req.prompt))
        return super().submit(req, reference_bytes)


@pytest.fixture
def ctx(tmp_path):
    store = LocalArtifactStore(tmp_path)
    return GenerationContext(store=store, ledger=Ledger(store), book_id="b", run_id="r1", sleep=lambda s: None,
                             retry=RetryPolicy(max_attempts=2, base_delay_s=0.01))


def test_refusal_retries_of_a_seedless_model_never_resend_the_same_input(ctx):
    provider = Account("seedless-refusals", seeds=False, wait_errors=[REFUSED] * 3)
    with pytest.raises(GenerationFailed, match="3 times .*softened prompt 1, softened prompt 2"):
        generate_image(request(), provider, ctx)
    assert len(provider.sent) == 3 and len(set(provider.sent)) == 3
    changes = [r.change for r in ctx.ledger.rows("b") if r.status == "refused"]
    assert changes == ["", "softened prompt 1", "softened prompt 2"]


def test_a_seed_taking_model_tries_a_new_seed_first():
    tries = refusal_tries(request(), seeds_matter=True, retries=2)
    assert [change for _, change in tries] == ["", "new seed", "softened prompt 1"]
    assert tries[1][0].prompt == tries[0][0].prompt and tries[1][0].seed != tries[0][0].seed


def test_gate_redraws_of_a_seedless_model_change_the_prompt_and_say_so():
    first = request()
    redraws = [attempt_variation(first.model_copy(update={"seed": 100 + n}), n) for n in range(2, 10)]
    assert attempt_variation(first, 1) is first
    assert len({r.prompt for r in redraws}) == len(redraws) and all(r.prompt != first.prompt for r in redraws)
    assert "Composition for this attempt" in describe_change(first, redraws[0])


def test_a_refused_request_is_not_paid_for_again_on_rerun(ctx):
    provider = Account("remembered-refusal", wait_errors=[REFUSED] * 3)
    with pytest.raises(GenerationFailed):
        generate_image(request(), provider, ctx)
    paid = len(provider.submitted)
    with pytest.raises(GenerationFailed, match="not sent again.*retry-refused"):
        generate_image(request(), provider, ctx)  # the rerun
    assert len(provider.submitted) == paid
    assert ctx.ledger.rows("b")[-1].status == "skipped" and ctx.ledger.rows("b")[-1].cost_usd == 0

    ctx.retry_refused = True  # the user asks for it: sent again, and the memory goes when it succeeds
    generate_image(request(), provider, ctx)
    assert len(provider.submitted) == paid + 1 and not ctx.store.exists(outcome_path(request().cache_key()))


def test_a_failure_caused_by_the_input_is_remembered_but_a_lost_result_is_not(ctx):
    bad_input = JobFailed("scripted", "prediction failed: input image too small", retries=0)
    provider = Account("remembered-failure", wait_errors=[bad_input])
    with pytest.raises(JobFailed):
        generate_image(request(seed=1), provider, ctx)
    with pytest.raises(GenerationFailed, match="not sent again"):
        generate_image(request(seed=1), provider, ctx)
    assert provider.submitted == ["job-1"]

    lost = ResultUnobtainable("scripted", "request r completed, but its result could not be fetched", retries=0)
    provider = Account("lost-result", wait_errors=[lost])
    with pytest.raises(ResultUnobtainable):
        generate_image(request(seed=2), provider, ctx)
    row = [r for r in ctx.ledger.rows("b") if r.seed == 2][-1]
    assert row.status == "failed" and row.cost_usd > 0  # paid either way, and said so
    assert not ctx.store.exists(journal_path(request(seed=2).cache_key()))  # not resumed for ever
    generate_image(request(seed=2), provider, ctx)  # not remembered: a rerun may try again
    assert len(provider.submitted) == 2


def test_429s_wait_on_the_shared_limiter_and_use_no_attempt(ctx):
    throttled = [ProviderError("scripted", "429", transient=True, status=429, retry_after_s=0.02)] * 4
    provider = Account("busy-account", submit_errors=throttled)
    record = generate_image(request(), provider, ctx)  # max_attempts is 2; four 429s do not use them up
    assert record.job_id == "job-1" and provider.submitted == ["job-1"]
    assert [r.status for r in ctx.ledger.rows("b")] == ["ok"]  # a 429 is not billed, so no failed rows


def test_the_limiter_closes_for_every_thread_until_the_hint_passes():
    now = [0.0]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(clock=lambda: now[0], sleep=sleep)
    assert limiter.acquire() == 0
    assert limiter.throttled(58.0) == 58.0  # the server's hint, not capped at a shorter wait
    assert limiter.acquire() == pytest.approx(58.0)
    assert limiter.acquire() == pytest.approx(limiter.spacing_s)  # the next thread keeps the learnt spacing
    limiter.throttled(120.0)
    with pytest.raises(TimeoutError):  # a turn after the job's deadline fails at once instead of sleeping
        limiter.acquire(latest=now[0] + 60)
    stop = threading.Event()
    stop.set()
    with pytest.raises(InterruptedError):
        limiter.acquire(stop=stop)


def test_a_stopping_run_stops_a_thread_that_polls_a_finished_job(ctx):
    """A finished job ignores the cancel; its thread must still stop instead of polling to the deadline."""

    class FinishedButStuck(Account):
        def wait(self, job_id, req, deadline_s):
            self.waited.append(job_id)
            while True:
                self.pause(job_id, 0.05)  # polling a result that keeps failing

    provider = FinishedButStuck("stuck-result")
    ctx.retry = RetryPolicy(deadline_s=3600)
    outcome: list[BaseException] = []

    def page():
        try:
            generate_image(request(), provider, ctx)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    thread = threading.Thread(target=page)
    thread.start()
    while not provider.waited:
        thread.join(0.01)
    assert ctx.cancel_in_flight() == ["job-1"]
    thread.join(30)
    assert not thread.is_alive() and isinstance(outcome[0], RunStopping)
    assert ctx.store.exists(journal_path(request().cache_key()))  # kept: a rerun collects it if it finished


def test_a_finished_job_answering_its_result_is_not_waited_on(ctx):
    """Sanity: the stop only affects the job it was asked for."""
    provider = Account("unrelated")
    provider.stop_waiting("job-99")
    assert generate_image(request(), provider, ctx).job_id == "job-1"


def test_flux2_edit_prices_count_each_reference_as_input_megapixels():
    from bookbug_assets.providers.base import ReferenceImage
    from bookbug_assets.providers.fal import FalProvider

    provider = FalProvider(key="fal-id:price-test", base_url="http://127.0.0.1:9")  # prices only: never called
    refs = tuple(ReferenceImage(role=r, sha256=c * 64, key=f"blobs/{c}") for r, c in (("sprite", "a"), ("hero", "b")))
    page = dict(provider="fal", kind="page", prompt="Pip", width=1024, height=1024, seed=1)
    assert provider.cost_usd(ImageRequest(model="fal-ai/flux-2", **page)) == pytest.approx(0.012)
    assert provider.cost_usd(ImageRequest(model="fal-ai/flux-2", references=refs, **page)) == pytest.approx(0.036)
    assert provider.cost_usd(ImageRequest(model="fal-ai/flux-2-pro", references=refs, **page)) == pytest.approx(0.06)
    assert provider.cost_usd(ImageRequest(model="fal-ai/flux-lora", references=refs, **page)) == pytest.approx(0.035)
