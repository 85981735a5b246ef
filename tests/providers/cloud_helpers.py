"""What the Replicate and fal provider tests (test_replicate_provider.py, test_fal_provider.py) and their judges'
tests share: test images, references, one submit-and-wait, a generation context, the checks of the reference uploads
(providers/uploads.py serves both services), and a job that finishes just as the deadline cancels it. Each service's
own rules stay in its own test file."""

from __future__ import annotations

import hashlib
import io
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from bookbug_assets.providers.base import ImageProvider, ImageRequest, ProviderError, ReferenceImage, SafetyRefusal
from bookbug_assets.providers.replicate_models import stitch


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def references_with_roles(blobs: tuple[bytes, ...], role_of) -> tuple[tuple[ReferenceImage, ...], dict[str, bytes]]:
    """(The references, their bytes by sha256): blob i under the role `role_of(i)`."""
    out, data = [], {}
    for i, blob in enumerate(blobs):
        sha = hashlib.sha256(blob).hexdigest()
        out.append(ReferenceImage(role=role_of(i), sha256=sha, key=f"blobs/{sha}"))
        data[sha] = blob
    return tuple(out), data


def run(provider: ImageProvider, req: ImageRequest, data: dict[str, bytes] | None = None, deadline_s=10.0):
    job_id = provider.submit(req, data or {})
    return job_id, provider.wait(job_id, req, deadline_s)


def generation_context(tmp_path, max_attempts=5, **retry):
    """A GenerationContext on a local store that does not sleep between attempts; `retry`: more RetryPolicy fields."""
    from bookbug_assets.generation import GenerationContext, RetryPolicy
    from bookbug_assets.ledger import Ledger
    from bookbug_assets.storage import LocalArtifactStore

    store = LocalArtifactStore(tmp_path)
    return GenerationContext(store=store, ledger=Ledger(store), book_id="b", sleep=lambda s: None,
                             retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=0.01, **retry))


def assert_uploaded_once_when_pages_race(fake, provider: ImageProvider, make_request, refs,
                                         per_reference: bool) -> None:
    """Twelve pages submitted at once upload each reference once (`per_reference`), or the one picture a
    single-image model gets stitched from them."""
    references, data = refs
    blobs = [data[r.sha256] for r in references]
    expected = blobs if per_reference else [stitch(blobs)]
    fake.upload_latency_s = 0.3  # every page thread is past the cache check before the first upload is answered
    with ThreadPoolExecutor(12) as pool:
        jobs = list(pool.map(lambda seed: provider.submit(make_request(references=references, seed=seed), data),
                             range(12)))
    assert len(set(jobs)) == 12
    uploaded = sorted(u["sha256"] for u in fake.uploads)
    assert uploaded == sorted(hashlib.sha256(b).hexdigest() for b in expected), "a reference was uploaded twice"


def assert_a_failed_upload_is_not_remembered(fake, provider: ImageProvider, monkeypatch, upload_path: str,
                                             make_request, refs, jobs_created) -> None:
    """An upload that failed (a 503 at `upload_path`) fails the submit as transient; the next submit uploads afresh
    and creates its one job (`jobs_created()`: the fake's list of them)."""
    from tests.fakes._http import intercept

    failures = intercept(fake, monkeypatch, "POST", upload_path, 503, "upstream unavailable", times=1)
    references, data = refs
    with pytest.raises(ProviderError) as caught:
        provider.submit(make_request(references=references), data)
    assert caught.value.transient and len(failures) == 1
    provider.submit(make_request(references=references), data)  # uploads afresh
    assert len(fake.uploads) == 1 and len(jobs_created()) == 1


def errors_and_what_they_left(fake, provider: ImageProvider, caplog, wrong_key: ImageProvider, fail_creates: str,
                              req: ImageRequest, refused: ImageRequest) -> tuple[list[ProviderError], list[str]]:
    """Every kind of error a provider raises, then an image: the errors, and every text a secret must not be in
    (their str and repr, their causes, the provider's repr, the log, the image's metadata). `fail_creates`: the
    fake's knob for failing creates; `refused`: a request with "dragon" in its prompt; `wrong_key`: a provider on the
    same fake with a wrong key."""
    caplog.set_level(logging.DEBUG)
    errors: list[ProviderError] = []
    setattr(fake, fail_creates, [429, 500])
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            provider.submit(req, {})
        errors.append(caught.value)
    fake.refuse_prompts_containing = ["dragon"]
    with pytest.raises(SafetyRefusal) as caught:
        run(provider, refused)
    errors.append(caught.value)
    with pytest.raises(ProviderError) as caught:  # a wrong key: 401, still nothing echoed
        wrong_key.submit(req, {})
    assert caught.value.status == 401 and not caught.value.transient
    errors.append(caught.value)
    fake.never_finish = True
    job_id = provider.submit(req, {})
    with pytest.raises(ProviderError) as caught:
        provider.wait(job_id, req, 0.1)
    errors.append(caught.value)
    fake.never_finish = False
    _, out = run(provider, req.model_copy(update={"seed": 99}))
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(provider), caplog.text,
                                                                  out.model_dump_json(exclude={"image"})]
    texts += [repr(e.__cause__) + repr(e.__context__) for e in errors if e.__cause__]
    return errors, texts


def readme_book_prices(heading: str, end: str, model_cell: str, book_cell: str, models) -> list[tuple[str, float]]:
    """(model, a book's price in USD) for each row of README's price table under `heading` (up to `end`) whose first
    cell matches `model_cell` (group 1: a model of `models`) and whose fifth matches `book_cell` (group 1: dollars)."""
    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = text.split(heading, 1)[1].split(end, 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        model = re.fullmatch(model_cell, cells[0]) if len(cells) >= 5 else None
        book = re.fullmatch(book_cell, cells[4]) if model else None
        if book and model.group(1) in models:
            rows.append((model.group(1), float(book.group(1))))
    return rows


def _cancels_recorded(provider, monkeypatch) -> list[str]:
    cancelled: list[str] = []
    real_cancel = provider.cancel
    monkeypatch.setattr(provider, "cancel", lambda job_id: (cancelled.append(job_id), real_cancel(job_id)))
    return cancelled


def replicate_job_finishing_at_the_cancel(provider, monkeypatch) -> list[str]:
    """Every poll before the deadline's cancel sees the prediction still processing: it finished just before the
    cancel landed. Returns the job ids cancelled."""
    cancelled = _cancels_recorded(provider, monkeypatch)
    real_poll = provider._get_prediction
    monkeypatch.setattr(provider, "_get_prediction",
                        lambda jid: real_poll(jid) if cancelled else {**real_poll(jid), "status": "processing"})
    return cancelled


def fal_job_finishing_at_the_cancel(provider, monkeypatch) -> list[str]:
    """Every status before the deadline's cancel says IN_PROGRESS: the request completed just before the cancel
    landed. Returns the job ids cancelled."""
    from fal_client.client import InProgress

    cancelled = _cancels_recorded(provider, monkeypatch)
    real_call = provider._call

    def call(fn, what, *args, **kwargs):
        if what.startswith("status of") and not cancelled:
            return InProgress(logs=None)
        return real_call(fn, what, *args, **kwargs)

    monkeypatch.setattr(provider, "_call", call)
    return cancelled
