"""What the Replicate and fal judges share: a judge call is a paid job like an image, so it is journaled by the hash
of everything it sends before anything waits on it, resumed instead of paid twice, bounded by a deadline, and its
failures sorted into refusals (an answer: the gate fails with it), input errors and outages (no answer).

The journal lives beside the image journal (`journal/judge-<key>.json`, layout.journal_path's folder) and holds only
the job id, the service and the model: never a key or an input.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from bookbug_assets.providers.base import (
    JobFailed, JobGone, OutputNotCollected, ProviderError, SafetyRefusal, WaitStopped,
)
from bookbug_assets.providers.rate_limit import shared_limiter
from bookbug_assets.quality.judge import JudgeReply, JudgeRequest, JudgeUnavailable
from bookbug_assets.quality.judge_chat import JudgeConfigurationError, image_data_url
from bookbug_assets.storage import ArtifactStore, sha256_bytes

log = logging.getLogger(__name__)

# A Markdown code fence around the whole answer: these APIs offer no JSON mode, and models add one unasked.
_FENCE = re.compile(r"^\s*```[A-Za-z]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)
SIDE_BY_SIDE_NOTE = ("The images are placed side by side in one picture, left to right, in the order listed: "
                     "image 1 is the leftmost.\n\n")


class JudgeInputError(JudgeUnavailable):
    """The service refused the request itself (a 422: a field, a size): asking again unchanged fails again."""


def unfence(text: str | None) -> str | None:
    """The answer without a code fence wrapped around all of it; anything else is left for judge.py to check."""
    if text is None:
        return None
    match = _FENCE.match(text)
    return match.group(1) if match else text


def job_key(service: str, model: str, request: JudgeRequest) -> str:
    """The hash of one judge call: who is asked, the images (by content) and the words. Same call, same key."""
    parts = {"service": service, "model": model, "image": sha256_bytes(request.image),
             "references": [[role, sha256_bytes(data)] for role, data in request.references],
             "system": request.system, "prompt": request.prompt}
    return sha256_bytes(json.dumps(parts, sort_keys=True).encode())


class JudgeJournal:
    """Judge job ids by call key, in the artifact store, written before the job is waited on."""

    def __init__(self, store: ArtifactStore):
        self._store = store

    @staticmethod
    def path(key: str) -> str:
        return f"journal/judge-{key}.json"

    def job_id(self, key: str) -> str | None:
        if not self._store.exists(self.path(key)):
            return None
        return self._store.read_json(self.path(key)).get("job_id")

    def record(self, key: str, job_id: str, service: str, model: str) -> None:
        self._store.write_json(self.path(key), {"job_id": job_id, "service": service, "model": model})

    def clear(self, key: str) -> None:
        if self._store.exists(self.path(key)):
            self._store.delete(self.path(key))


@dataclass(frozen=True)
class JobPolicy:
    deadline_s: float = 180.0  # one call, resumed or not, from its first create to its answer
    create_tries: int = 4  # creates of one job through 429s and 5xx (the clients never retry a POST)
    failed_jobs: int = 1  # new jobs after one the service says failed for a passing reason
    base_delay_s: float = 1.0
    max_delay_s: float = 20.0


def ask_hosted(*, service: str, model: str, key: str, journal: JudgeJournal | None, account: str,
               submit: Callable[[], str], wait: Callable[[str, float], JudgeReply], cancel: Callable[[str], None],
               policy: JobPolicy, refusal_cost_usd: float = 0.0,
               sleep: Callable[[float], None] = time.sleep) -> JudgeReply:
    """One judge call: resume the journaled job or create one, journal it, wait for it within the deadline.

    `wait(job_id, seconds)` returns the reply or raises the provider's typed errors (providers/base.py); what each
    one means for the call is decided here, once for both services. A refusal is a paid answer: it is costed at
    `refusal_cost_usd` (the table's estimate), since neither service says what a refused call cost.
    """
    end = time.monotonic() + policy.deadline_s
    rng = random.Random(key)
    job_id = journal.job_id(key) if journal is not None else None
    if job_id is not None:
        log.info("resuming %s judge job %s for %s; not creating a second paid call", service, job_id, model)
    new_jobs = 0
    while True:
        if job_id is None:
            job_id = _create(service, model, submit, account, policy, end, rng, sleep)
            if journal is not None:
                try:
                    journal.record(key, job_id, service, model)
                except BaseException:
                    cancel(job_id)  # an unjournaled job would be paid again by the next run
                    raise
        try:
            reply = wait(job_id, max(0.0, end - time.monotonic()))
        except SafetyRefusal as exc:
            _clear(journal, key)
            return JudgeReply(text=None, refusal=exc.reason, cost_usd=refusal_cost_usd)
        except (WaitStopped, OutputNotCollected) as exc:
            # The run is stopping, or the answer is there but could not be fetched: the job stays journaled, so the
            # next run collects it instead of paying for another.
            raise JudgeUnavailable(f"{service}:{model}: {exc}") from None
        except ProviderError as exc:
            _clear(journal, key)
            again = isinstance(exc, JobGone) or (isinstance(exc, JobFailed) and (
                exc.transient or new_jobs < min(policy.failed_jobs, exc.retries)))
            if not again or time.monotonic() >= end:
                kind = JudgeInputError if isinstance(exc, JobFailed) and exc.retries == 0 else JudgeUnavailable
                raise kind(f"{service}:{model}: {exc}") from None
            log.warning("%s judge job %s ended without an answer (%s); creating a new one", service, job_id, exc)
            new_jobs, job_id = new_jobs + 1, None
            continue
        _clear(journal, key)
        return reply


def _create(service: str, model: str, submit: Callable[[], str], account: str, policy: JobPolicy, end: float,
            rng: random.Random, sleep: Callable[[float], None]) -> str:
    limiter = shared_limiter(account)  # judge creates count against the account's limit, like the images'
    for attempt in range(1, policy.create_tries + 1):
        try:
            limiter.acquire(latest=end)
        except TimeoutError as exc:
            raise JudgeUnavailable(f"{service}:{model}: {exc}") from None
        try:
            job_id = submit()
        except ProviderError as exc:
            if exc.status == 422 or (exc.status is not None and 400 <= exc.status < 500 and exc.status not in (
                    408, 409, 429)):
                raise JudgeInputError(f"{service}:{model}: the request was refused: {exc}") from None
            wait_s = limiter.throttled(exc.retry_after_s) if exc.status == 429 else min(
                policy.max_delay_s, exc.retry_after_s or rng.uniform(0, policy.base_delay_s * 2 ** (attempt - 1)))
            if not exc.transient or attempt == policy.create_tries or time.monotonic() + wait_s >= end:
                raise JudgeUnavailable(f"{service}:{model}: {exc}") from None
            log.info("%s busy creating a judge job (%s); again in %.1fs", service, exc.status or "error", wait_s)
            if exc.status != 429:
                sleep(wait_s)  # a 429's wait is the limiter's, slept by the next acquire
            continue
        limiter.accepted()
        return job_id
    raise JudgeUnavailable(f"{service}:{model}: no job created")  # not reached: the loop returns or raises


def _clear(journal: JudgeJournal | None, key: str) -> None:
    if journal is not None:
        journal.clear(key)


def judge_png(data: bytes) -> bytes:
    """The image as the judge sees it: at most 1024 px a side (judge_chat's rule: it sees no more, and pays more)."""
    return base64.b64decode(image_data_url(data).split(",", 1)[1])


def labelled_parts(request: JudgeRequest) -> list[bytes]:
    """The images in the order the prompt names them: the page (image 1), then the references."""
    return [request.image] + [data for _role, data in request.references]


class HostedJudge:
    """A JudgeBackend on an image service's own client (ReplicateJudge, FalJudge): one model of the service's judge
    table, its calls journaled and rate-limited with the service's image provider. Share one per process: the
    provider's client and uploads are thread-safe. A subclass says `family` and `models` and how to submit and
    wait for one call."""

    family = ""
    models: dict = {}

    def __init__(self, model: str, provider, *, store: ArtifactStore | None = None, policy: JobPolicy = JobPolicy(),
                 poll_interval_s: float | None = None) -> None:
        if model not in self.models:
            raise JudgeConfigurationError(f"{self.family} has no judge model {model!r}; choose one of "
                                          f"{', '.join(sorted(self.models))}")
        self.model, self.spec = model, self.models[model]
        self._provider = provider
        self._journal = JudgeJournal(store) if store is not None else None
        self._policy = policy
        self._poll_s = poll_interval_s if poll_interval_s is not None else provider.poll_interval_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    def price_per_call_usd(self) -> float:
        return self.spec.price_per_call_usd()

    def ask(self, request: JudgeRequest) -> JudgeReply:
        started = time.monotonic()
        reply = ask_hosted(service=self.family, model=self.model, key=job_key(self.family, self.model, request),
                           journal=self._journal, account=self._provider.rate_account(),
                           submit=lambda: self._submit(request), wait=self._wait, cancel=self._provider.cancel,
                           policy=self._policy, refusal_cost_usd=self.price_per_call_usd())
        return JudgeReply(text=reply.text, refusal=reply.refusal, cost_usd=reply.cost_usd,
                          latency_s=round(time.monotonic() - started, 3))

    def _submit(self, request: JudgeRequest) -> str:
        raise NotImplementedError

    def _wait(self, job_id: str, seconds: float) -> JudgeReply:
        raise NotImplementedError
