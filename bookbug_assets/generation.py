"""The one path every image takes (DESIGN principle 1).

generate_image(request) -> GenerationRecord:
  1. hash the whole request; a cache hit returns the stored image at zero cost;
  2. a journaled job for this request is resumed, never created twice;
  3. otherwise reserve the price against the book's budget, create the job (retrying 429/5xx
     with exponential backoff and jitter, since the clients never retry a POST), and journal
     its id *before* waiting;
  4. wait with a client-side deadline, download the output at once, store it by content hash
     (atomic write), record the cache entry and a ledger row, clear the journal;
  5. a safety refusal retries with something the model reads changed (a new seed where the model takes one, then a
     softened prompt), then fails with the provider's reason;
  6. a request refused to the end, or failed because of its input, is remembered by its hash: a rerun does not
     send it again (it needs a change, or `retry_refused`), and says so.
Every create waits its turn on the provider account's shared rate limiter (providers/rate_limit.py); a 429 is
not one of the image's attempts. If the step is interrupted (run terminated) while waiting, the remote job is
cancelled and its thread stops waiting at once.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from PIL import Image

from bookbug_assets.layout import GenerationRecord, cache_key_path, journal_path
from bookbug_assets.ledger import BudgetGuard, Ledger, LedgerRow
from bookbug_assets.providers.base import (
    ImageProvider, ImageRequest, JobFailed, JobGone, OutputNotCollected, ProviderError, ResultUnobtainable,
    SafetyRefusal, WaitStopped,
)
from bookbug_assets.providers.rate_limit import shared_limiter
from bookbug_assets.refusals import refusal_tries, remember_outcome, remembered_outcome
from bookbug_assets.storage import ArtifactStore

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    deadline_s: float = 600.0  # per job, client side
    refusal_retries: int = 2  # new seed, then softened prompt

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        if retry_after_s is not None:
            return min(self.max_delay_s, retry_after_s) + rng.uniform(0, self.base_delay_s / 2)
        return rng.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)))  # full jitter


@dataclass
class GenerationContext:
    """Everything a generation needs besides the request; one per step."""

    store: ArtifactStore
    ledger: Ledger
    budget: BudgetGuard | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    run_id: str = ""
    book_id: str = ""
    asset: str = ""
    retry_refused: bool = False  # send requests again that the provider refused or failed for their input
    logger: logging.Logger | logging.LoggerAdapter = log
    sleep: callable = time.sleep
    _in_flight: dict[str, ImageProvider] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _terminating: threading.Event = field(default_factory=threading.Event)

    @property
    def terminating(self) -> bool:
        return self._terminating.is_set()

    def cancel_in_flight(self) -> list[str]:
        """The run is being terminated: cancel every remote job this context waits on, start no new one."""
        self._terminating.set()
        with self._lock:
            jobs = list(self._in_flight.items())
            self._in_flight.clear()
        for job_id, provider in jobs:
            provider.stop_waiting(job_id)  # a job that already finished ignores the cancel; its thread must not
            try:
                provider.cancel(job_id)
            except Exception as exc:  # noqa: BLE001 - best effort while shutting down
                self.logger.warning(f"could not cancel {provider.name} job {job_id}: {exc}")
        return [job_id for job_id, _ in jobs]


class GenerationFailed(RuntimeError):
    pass


class RunStopping(GenerationFailed):
    """The run is being terminated: no new paid job may start."""


def ledger_row(ctx: GenerationContext, request: ImageRequest, status: str, partition: str, **kw) -> LedgerRow:
    """The one builder of an image attempt's ledger row (generation and the quality gate both append them)."""
    return LedgerRow(run_id=ctx.run_id, book_id=ctx.book_id, asset=ctx.asset, partition=partition,
                     kind=request.kind, provider=request.provider, model=request.model, seed=request.seed,
                     request_key=request.cache_key(), status=status, is_preview=request.provider == "preview",
                     lora=request.lora.name if request.lora else None, variant=request.variant, width=request.width,
                     height=request.height, **kw)


def cached_record(store: ArtifactStore, request: ImageRequest) -> GenerationRecord | None:
    key = cache_key_path(request.cache_key())
    if not store.exists(key):
        return None
    record = GenerationRecord.model_validate(store.read_json(key))
    return record if store.exists(record.image_key) else None


def generate_image(request: ImageRequest, provider: ImageProvider, ctx: GenerationContext,
                   reference_bytes: dict[str, bytes] | None = None, partition: str = "",
                   change: str = "") -> GenerationRecord:
    """Return the image for `request`, paying for it at most once. `change` says, for the ledger, what this
    request changed against the image's first attempt (the quality gate's redraws)."""
    original_key = request.cache_key()
    what = request.label or request.kind
    hit = cached_record(ctx.store, request)
    if hit is not None:
        ctx.ledger.append(ledger_row(ctx, request, "cached", partition, cache_hit=True, image_sha256=hit.image_sha256,
                                     version=hit.version, job_id=hit.job_id, change=change))
        return hit.model_copy(update={"cache_hit": True, "cost_usd": 0.0})
    skipped = remembered_outcome(ctx.store, request, ctx.retry_refused)
    if skipped is not None:
        ctx.ledger.append(ledger_row(ctx, request, "skipped", partition, error=skipped, change=change))
        raise GenerationFailed(skipped)

    refs = reference_bytes if reference_bytes is not None else {
        ref.sha256: ctx.store.read_bytes(ref.key) for ref in request.references}
    refusals: list[str] = []
    tries = refusal_tries(request, provider.capabilities(request.model).seed_deterministic,
                          ctx.retry.refusal_retries)
    for n, (attempt_request, tried) in enumerate(tries, 1):
        try:
            record = _generate_once(attempt_request, provider, ctx, refs, partition, refusals,
                                    "; ".join(c for c in (change, tried) if c))
            break
        except SafetyRefusal as refusal:
            refusals.append(refusal.reason)
            ctx.logger.warning(f"{provider.name}:{request.model} refused {what} (seed {attempt_request.seed}): "
                               f"{refusal.reason}")
            if n == len(tries):
                message = (f"{provider.name}:{request.model} refused {what} {n} times (as asked"
                           f"{''.join(', ' + c for _, c in tries[1:])}); last reason: {refusal.reason}")
                remember_outcome(ctx.store, original_key, "refused", message, ctx.run_id)
                raise GenerationFailed(message) from None
        except JobFailed as exc:
            if not exc.transient and not isinstance(exc, ResultUnobtainable):  # the input's fault, or twice failed
                remember_outcome(ctx.store, original_key, "failed", f"{what}: {exc}", ctx.run_id)
            raise

    if attempt_request is not request:
        # A rerun of the original request must find the image instead of paying for refusals again.
        ctx.store.write_json(cache_key_path(original_key), record.model_dump(mode="json"))
    return record


@dataclass
class _Job:
    """One image's paid job as it moves through the steps of `_generate_once`."""

    request: ImageRequest
    provider: ImageProvider
    ctx: GenerationContext
    partition: str
    key: str
    price: float
    rng: random.Random
    started: float
    job_id: str | None = None
    attempt: int = 0
    reserved: bool = False
    failed_retries: int = 0
    change: str = ""

    @property
    def what(self) -> str:
        return self.request.label or self.request.kind

    def row(self, status: str, **kw) -> LedgerRow:
        return ledger_row(self.ctx, self.request, status, self.partition, attempt=self.attempt, change=self.change,
                          **kw)


def _generate_once(request: ImageRequest, provider: ImageProvider, ctx: GenerationContext,
                   refs: dict[str, bytes], partition: str, refusals: list[str], change: str) -> GenerationRecord:
    """One request to one image: resume, reserve, submit and journal, wait, collect, record."""
    hit = cached_record(ctx.store, request)
    if hit is not None:
        return hit.model_copy(update={"cache_hit": True, "cost_usd": 0.0})
    provider.validate(request)
    key = request.cache_key()
    job = _Job(request, provider, ctx, partition, key, provider.cost_usd(request), random.Random(key),
               time.monotonic(), change=change)
    _resume(job)  # 1. a job an earlier run created (and was billed for) is collected, never created again
    while True:
        job.attempt += 1
        if job.job_id is None:
            _reserve(job)  # 2. the price against the book's budget, before anything is paid
            if not _submit_and_journal(job, refs):  # 3. create; its id is journaled before any wait
                continue  # a busy service: the create is retried after a backoff
        output = _wait(job)  # 4. until the job ends or the deadline passes
        if output is not None:
            break  # else the job ended without an image in a way a new job may fix
    return _collect_and_record(job, output, refusals)  # 5. + 6.


def _resume(job: _Job) -> None:
    job.job_id = _resume_journal(job.ctx, job.request, job.key)
    if job.job_id is not None and job.ctx.budget is not None:
        job.ctx.budget.charge(job.price)  # the ledger row comes when it is collected


def _reserve(job: _Job) -> None:
    if job.ctx.terminating:
        raise RunStopping(f"{job.what}: the run is stopping; no new job started")
    if job.ctx.budget is not None and not job.reserved:
        job.ctx.budget.reserve(job.price, job.what)
        job.reserved = True


def _submit_and_journal(job: _Job, refs: dict[str, bytes]) -> bool:
    """Create the job and journal its id; False when the create should be retried after the backoff slept."""
    ctx, provider = job.ctx, job.provider
    limiter = shared_limiter(provider.rate_account())
    try:
        limiter.acquire(ctx._terminating, latest=job.started + ctx.retry.deadline_s)
    except InterruptedError:
        raise RunStopping(f"{job.what}: the run is stopping; no new job started") from None
    except TimeoutError as exc:
        _give_up_create(job, f"{provider.name}: {exc}")
        raise GenerationFailed(f"{job.what}: {provider.name}: {exc}") from None
    try:
        job.job_id = provider.submit(job.request, refs)
    except ProviderError as exc:
        if exc.status == 429:
            # Not billed and not this image's fault: every thread waits the server's hint, the attempt is not used up.
            wait_s = limiter.throttled(exc.retry_after_s)
            ctx.logger.info(f"{provider.name} rate limit reached; every create waits {wait_s:.0f}s")
            job.attempt -= 1
            return False
        job.job_id = _find_lost_job(provider, job.request, exc, ctx)
        if job.job_id is None:
            if not exc.transient or job.attempt >= ctx.retry.max_attempts:
                _give_up_create(job, str(exc))
                raise
            wait_s = ctx.retry.delay(job.attempt, exc.retry_after_s, job.rng)
            ctx.logger.info(f"{provider.name} busy ({exc.status or 'error'}); retrying create in {wait_s:.1f}s")
            ctx.sleep(wait_s)
            return False
    limiter.accepted()
    try:
        ctx.store.write_json(journal_path(job.key), {
            "job_id": job.job_id, "provider": provider.name, "model": job.request.model,
            "submitted_at": datetime.now(timezone.utc).isoformat(), "run_id": ctx.run_id})
    except BaseException:
        # An unjournaled job would be paid again by the retry: stop it instead.
        provider.cancel(job.job_id)
        raise
    return True


def _give_up_create(job: _Job, error: str) -> None:
    """No job was created: nothing was paid; the reservation goes back to the budget."""
    if job.reserved:
        job.ctx.budget.release(job.price)
        job.reserved = False
    job.ctx.ledger.append(job.row("failed", error=error))


def _wait(job: _Job):
    """The job's output; None when it ended without one and a new job is worth paying for (it sleeps first)."""
    ctx, provider, job_id = job.ctx, job.provider, job.job_id
    with ctx._lock:
        ctx._in_flight[job_id] = provider
    if ctx.terminating:
        # The run began stopping while this job was being created, after cancel_in_flight took its list:
        # this job was not in it. It stays journaled, so a rerun collects it if the cancel came too late.
        provider.cancel(job_id)
        with ctx._lock:
            ctx._in_flight.pop(job_id, None)
        raise RunStopping(f"{job.what}: the run is stopping; job {job_id} cancelled")
    elapsed = lambda: time.monotonic() - job.started  # noqa: E731
    try:
        return provider.wait(job_id, job.request, ctx.retry.deadline_s)
    except WaitStopped as exc:
        # The run is stopping: the job stays journaled, so a rerun collects it if it finished after all.
        raise RunStopping(f"{job.what}: {exc}") from None
    except SafetyRefusal as exc:
        ctx.store.delete(journal_path(job.key))
        ctx.ledger.append(job.row("refused", job_id=job_id, cost_usd=job.price, error=exc.reason,
                                  latency_s=elapsed()))
        raise
    except OutputNotCollected as exc:
        # Finished and paid for, only its download failed: the journal keeps it for the next run to fetch.
        ctx.ledger.append(job.row("failed", job_id=job_id, error=str(exc), latency_s=elapsed()))
        raise
    except ProviderError as exc:
        # The job failed, timed out, was cancelled or its output expired (JobGone): it was created,
        # so it may have been billed; the ledger and the budget count it, and a new job is a new charge.
        ctx.store.delete(journal_path(job.key))
        # A job the provider says failed (JobFailed) is `failed` with its text, and is worth a new paid job only
        # `exc.retries` times unless its error says it is transient; only a real wait that ran out is `timeout`.
        failed_job = isinstance(exc, JobFailed)
        status = "lost" if isinstance(exc, JobGone) else "failed" if failed_job or not exc.transient else "timeout"
        billed = not failed_job or exc.billed
        if not billed and job.reserved and ctx.budget is not None:
            ctx.budget.release(job.price)  # the provider does not bill this failure (fal: a 5xx)
        ctx.ledger.append(job.row(status, job_id=job_id, cost_usd=job.price if billed else 0.0, error=str(exc),
                                  latency_s=elapsed()))
        retryable = exc.transient or isinstance(exc, JobGone) or (failed_job and job.failed_retries < exc.retries)
        if failed_job and not exc.transient:
            job.failed_retries += 1
        if ctx.terminating or not retryable or job.attempt >= ctx.retry.max_attempts:
            raise
        ctx.logger.warning(f"{provider.name} job {job_id} ended without an image ({exc}); creating a new one")
        job.job_id, job.reserved = None, False
        ctx.sleep(ctx.retry.delay(job.attempt, exc.retry_after_s, job.rng))
        return None
    except BaseException:
        # This page's own failure: stop its job (other pages' jobs are theirs to finish).
        provider.cancel(job_id)
        raise
    finally:
        with ctx._lock:
            ctx._in_flight.pop(job_id, None)


def _collect_and_record(job: _Job, output, refusals: list[str]) -> GenerationRecord:
    """Store the image by content hash, then its cache entry and ledger row; the journal entry goes last."""
    ctx, request = job.ctx, job.request
    suffix = _image_suffix(output.image)
    if suffix is None:  # an error page or a truncated download must never be cached as the picture
        ctx.ledger.append(job.row("failed", job_id=job.job_id, cost_usd=job.price,
                                  error="output is not a readable image"))
        raise ProviderError(job.provider.name,
                            f"job {job.job_id} returned {len(output.image)} bytes that are not an image")
    sha, image_key = ctx.store.put_blob(output.image, suffix)
    latency = round(time.monotonic() - job.started, 3)
    record = GenerationRecord(
        request_key=job.key, image_key=image_key, image_sha256=sha, provider=request.provider, model=request.model,
        version=output.version, seed=output.seed if output.seed is not None else request.seed,
        prompt=request.prompt, width=request.width, height=request.height, job_id=job.job_id,
        remote_url=output.remote_url, cost_usd=job.price, latency_s=latency, attempts=job.attempt + len(refusals),
        refusals=list(refusals), lora=request.lora.name if request.lora else None, variant=request.variant,
        is_preview=request.provider == "preview", created_at=datetime.now(timezone.utc))
    ctx.store.write_json(cache_key_path(job.key), record.model_dump(mode="json"))
    ctx.store.delete(journal_path(job.key))
    ctx.ledger.append(job.row("ok", job_id=job.job_id, image_sha256=sha, version=output.version,
                              cost_usd=job.price, latency_s=latency))
    return record


def _image_suffix(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            return {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}.get(image.format, ".png")
    except Exception:  # noqa: BLE001 - any decoder error means "not an image"
        return None


def _find_lost_job(provider: ImageProvider, request: ImageRequest, exc: ProviderError,
                   ctx: GenerationContext) -> str | None:
    """A create with no HTTP answer (connection dropped, timeout) or a gateway error (502/504: the proxy gave
    up, the API may not have) may still have started a job: look for it."""
    if not exc.transient or exc.status not in (None, 502, 504):
        return None
    try:
        found = provider.find_job(request)
    except ProviderError:
        return None
    if found is not None:
        ctx.logger.warning(f"{provider.name}: the create lost its reply but started job {found}; resuming it")
    return found


def _resume_journal(ctx: GenerationContext, request: ImageRequest, key: str) -> str | None:
    path = journal_path(key)
    if not ctx.store.exists(path):
        return None
    entry = ctx.store.read_json(path)
    if entry.get("provider") != request.provider:
        return None
    ctx.logger.info(f"resuming {entry['provider']} job {entry['job_id']} journaled by run {entry.get('run_id')}; "
                    "not creating a second paid job")
    return entry["job_id"]
