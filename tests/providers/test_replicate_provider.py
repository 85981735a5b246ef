"""ReplicateProvider against FakeReplicate, through the real replicate 1.0.7 client.

The fake rejects unknown input fields with a 422, so a model that renders here sends the field
names its real schema has.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bookbug_assets.providers.base import (
    ConfigurationError, ImageRequest, JobGone, LoraRef, ProviderError, ReferenceImage, SafetyRefusal,
)
from bookbug_assets.providers.replicate import ReplicateProvider
from bookbug_assets.providers.replicate_models import REPLICATE_MODELS
from tests.fakes.replicate_server import CUDA_OOM, GENERIC_FAILURE, INTERRUPTED, FakeReplicate
from tests.providers.cloud_helpers import (
    assert_a_failed_upload_is_not_remembered, assert_uploaded_once_when_pages_race, errors_and_what_they_left,
    generation_context, png, readme_book_prices, references_with_roles, replicate_job_finishing_at_the_cancel, run,
)

TOKEN = "r8_secret_token_for_tests_0123456789"
SPRITE, HERO, EXTRA = png("red"), png("blue", (48, 64)), png("green")


def refs(*blobs: bytes) -> tuple[tuple[ReferenceImage, ...], dict[str, bytes]]:
    return references_with_roles(blobs, ("sprite_sheet", "hero_page", "style").__getitem__)


def request(model: str, *, references=(), lora=None, prompt="Pip lights the lantern", width=1024, height=768,
            seed=7, **kw) -> ImageRequest:
    return ImageRequest(provider="replicate", model=model, kind="page", prompt=prompt, width=width, height=height,
                        seed=seed, references=references, lora=lora, **kw)


FLUX1_LORA = LoraRef(name="soft-meadow", family="flux1", sha256="ab" * 32,
                     remote_ref="https://example.invalid/soft-meadow.safetensors", trigger_word="SFTMDW", scale=0.9)


@pytest.fixture
def fake():
    with FakeReplicate(api_token=TOKEN) as server:
        yield server


@pytest.fixture
def provider(fake):
    return ReplicateProvider(api_token=TOKEN, base_url=fake.url, poll_interval_s=0.02)


@pytest.mark.parametrize("model", list(REPLICATE_MODELS))
def test_every_model_renders_with_its_own_field_names(fake, provider, model):
    caps = provider.capabilities(model)
    references, data = refs(SPRITE, HERO) if caps.max_references else ((), {})
    lora = FLUX1_LORA if caps.lora_family == "flux1" else None
    job_id, out = run(provider, request(model, references=references, lora=lora), data)

    assert Image.open(io.BytesIO(out.image)).size[0] > 0
    assert out.mime.startswith("image/")
    assert out.extra["prediction_id"] == job_id
    created = fake.created_predictions[-1]
    assert created["model"] == model and out.extra["model"] == model
    sent = created["input"]
    spec = REPLICATE_MODELS[model]
    assert ("seed" in sent) == spec.seed
    if spec.refs == "list":
        assert len(sent[spec.ref_field]) == 2
    elif spec.refs == "single":
        assert isinstance(sent[spec.ref_field], str)
    elif spec.refs == "pair":
        assert sent["input_image_1"] != sent["input_image_2"]
    if lora:
        assert sent[spec.lora_field] == "https://example.invalid/soft-meadow.safetensors"
        assert sent["prompt"].startswith("SFTMDW")


def test_references_go_through_the_files_api_once(fake, provider):
    references, data = refs(SPRITE, HERO)
    for seed in (1, 2):
        run(provider, request("google/nano-banana-pro", references=references, seed=seed), data)
    uploads = fake.requests_to("POST", "/v1/files")
    assert len(uploads) == 2  # sprite + hero, reused by the second page
    sent = fake.created_predictions[-1]["input"]["image_input"]
    assert all(url.startswith(fake.url + "/v1/files/") for url in sent)
    assert [fake.files[url.rsplit("/", 1)[1]]["_data"] for url in sent] == [SPRITE, HERO]


def test_kontext_gets_one_stitched_reference(fake, provider):
    references, data = refs(SPRITE, HERO)
    run(provider, request("black-forest-labs/flux-kontext-pro", references=references), data)
    url = fake.created_predictions[-1]["input"]["input_image"]
    stitched = Image.open(io.BytesIO(fake.files[url.rsplit("/", 1)[1]]["_data"]))
    assert stitched.width > 64 + 48 and stitched.height == 64  # side by side at the taller height
    assert fake.created_predictions[-1]["input"]["safety_tolerance"] <= 2


def test_multi_image_kontext_uses_exactly_two_inputs(fake, provider):
    references, data = refs(SPRITE, HERO, EXTRA)
    run(provider, request("flux-kontext-apps/multi-image-kontext-pro", references=references), data)
    sent = fake.created_predictions[-1]["input"]
    first = fake.files[sent["input_image_1"].rsplit("/", 1)[1]]["_data"]
    second = Image.open(io.BytesIO(fake.files[sent["input_image_2"].rsplit("/", 1)[1]]["_data"]))
    assert first == SPRITE
    assert second.width > 64  # hero and the style reference, stitched
    assert not any(k.startswith("input_image_3") for k in sent)


def test_sizes_map_to_each_models_enum_or_range(fake, provider):
    run(provider, request("google/nano-banana-pro", width=1536, height=2048))
    assert fake.created_predictions[-1]["input"]["aspect_ratio"] == "3:4"
    assert fake.created_predictions[-1]["input"]["resolution"] == "2K"
    run(provider, request("black-forest-labs/flux-2-dev", width=3000, height=2000))
    sent = fake.created_predictions[-1]["input"]
    assert sent["aspect_ratio"] == "custom" and max(sent["width"], sent["height"]) <= 1440
    assert sent["width"] % 16 == 0 and sent["height"] % 16 == 0
    run(provider, request("stability-ai/sdxl", width=2048, height=1024, negative_prompt="scary"))
    sent = fake.created_predictions[-1]["input"]
    assert sent["width"] * sent["height"] <= 1024 * 1024 and sent["negative_prompt"] == "scary"
    assert provider.cost_usd(request("google/nano-banana-pro", width=4096, height=4096)) == 0.30
    assert provider.cost_usd(request("black-forest-labs/flux-2-pro", width=2048, height=2048)) == 0.06  # 4 MP


def test_community_models_run_by_a_version_looked_up_once(fake, provider):
    for seed in (1, 2):
        run(provider, request("lucataco/flux-dev-lora", lora=FLUX1_LORA, seed=seed))
    assert len(fake.requests_to("GET", "/v1/models/lucataco/flux-dev-lora")) == 1
    assert fake.created_predictions[-1]["version"] == fake.version_id("lucataco/flux-dev-lora")
    assert fake.created_predictions[-1]["input"]["lora_scale"] == 0.9


def test_lucataco_refuses_a_replicate_version_lora(provider):
    lora = FLUX1_LORA.model_copy(update={"remote_ref": "bookbug/style:" + "a" * 64})
    with pytest.raises(ConfigurationError, match="flux-dev-lora"):
        provider.submit(request("lucataco/flux-dev-lora", lora=lora), {})


@pytest.mark.parametrize("model", ["black-forest-labs/flux-2-dev", "black-forest-labs/flux-2-pro",
                                   "stability-ai/sdxl", "google/nano-banana-pro"])
def test_a_flux1_lora_on_another_family_is_a_configuration_error(fake, provider, model):
    with pytest.raises(ConfigurationError):
        provider.validate(request(model, lora=FLUX1_LORA))
    with pytest.raises(ConfigurationError):
        provider.submit(request(model, lora=FLUX1_LORA), {})
    assert fake.created_predictions == []


@pytest.mark.parametrize("model,t2i", [("black-forest-labs/flux-kontext-dev", "black-forest-labs/flux-dev"),
                                       ("flux-kontext-apps/multi-image-kontext-pro",
                                        "black-forest-labs/flux-kontext-pro")])
def test_the_sprite_sheet_without_references_goes_to_the_text_to_image_sibling(fake, provider, model, t2i):
    _, out = run(provider, request(model))
    assert fake.created_predictions[-1]["model"] == t2i and out.extra["model"] == t2i


def test_configuration_errors_before_anything_is_paid(fake, provider):
    references, data = refs(SPRITE, HERO, EXTRA)
    with pytest.raises(ConfigurationError, match="at most 0"):
        provider.submit(request("black-forest-labs/flux-dev-lora", references=references), data)
    with pytest.raises(ConfigurationError, match="does not serve"):
        provider.capabilities("someone/unknown")
    references, data = refs(SPRITE)
    with pytest.raises(ConfigurationError, match="missing"):
        provider.submit(request("google/nano-banana-pro", references=references), {})
    assert fake.created_predictions == []


@pytest.mark.parametrize("model,text", [("google/nano-banana-pro", "E005"),
                                        ("black-forest-labs/flux-dev-lora", "NSFW"),
                                        ("lucataco/flux-dev-lora", "NSFW")])
def test_safety_failures_become_safety_refusals(fake, provider, model, text):
    fake.refuse_prompts_containing = ["dragon fire"]
    lora = FLUX1_LORA if "lora" in model else None
    with pytest.raises(SafetyRefusal) as caught:
        run(provider, request(model, prompt="dragon fire everywhere", lora=lora))
    assert text in caught.value.reason and caught.value.provider == "replicate"


def test_create_is_one_post_and_429_comes_back_transient_with_retry_after(fake, provider):
    fake.fail_next_creates = [429]
    fake.retry_after_s = 7
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("google/nano-banana-pro"), {})
    err = caught.value
    assert err.transient and err.status == 429 and err.retry_after_s == 7
    assert len(fake.requests_to("POST", "/v1/models/google/nano-banana-pro/predictions")) == 1
    provider.submit(request("google/nano-banana-pro"), {})  # the caller's retry succeeds
    assert len(fake.created_predictions) == 1


def test_5xx_on_create_is_transient_and_422_carries_the_servers_detail(fake, provider, monkeypatch):
    fake.fail_next_creates = [500]
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("google/nano-banana-pro"), {})
    assert caught.value.transient and caught.value.status == 500
    spec = REPLICATE_MODELS["google/nano-banana-pro"]
    monkeypatch.setitem(REPLICATE_MODELS, "google/nano-banana-pro",
                        type(spec)(**{**spec.__dict__, "fixed": {**spec.fixed, "bogus_field": 1}}))
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("google/nano-banana-pro"), {})
    assert not caught.value.transient and caught.value.status == 422 and "bogus_field" in str(caught.value)


def test_failed_polls_are_retried_within_the_wait(fake, provider):
    job_id = provider.submit(request("google/nano-banana-pro"), {})
    fake.fail_next_polls = [500, 502]
    assert provider.wait(job_id, request("google/nano-banana-pro"), 10).image


def test_a_job_that_never_finishes_is_cancelled_at_the_deadline(fake, provider):
    fake.never_finish = True
    job_id = provider.submit(request("black-forest-labs/flux-2-pro"), {})
    with pytest.raises(ProviderError) as caught:
        provider.wait(job_id, request("black-forest-labs/flux-2-pro"), deadline_s=0.3)
    assert caught.value.transient and not isinstance(caught.value, JobGone)
    assert job_id in fake.cancelled
    with pytest.raises(JobGone):  # resuming the journaled id now says: submit afresh
        provider.wait(job_id, request("black-forest-labs/flux-2-pro"), deadline_s=1)


def test_expired_outputs_and_unknown_jobs_are_job_gone(fake, provider):
    fake.output_ttl_s = 0
    with pytest.raises(JobGone, match="expired"):
        run(provider, request("google/nano-banana-pro"))
    with pytest.raises(JobGone):
        provider.wait("doesnotexist", request("google/nano-banana-pro"), 1)


def test_crash_between_create_and_reply_is_transient_and_created_once(fake, provider):
    fake.crash_after_create = 1
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("google/nano-banana-pro"), {})
    assert caught.value.transient
    assert len(fake.created_predictions) == 1


def test_base_url_falls_back_to_replicate_base_url(fake, monkeypatch):
    monkeypatch.setenv("REPLICATE_BASE_URL", fake.url)
    provider = ReplicateProvider(api_token=TOKEN, poll_interval_s=0.02)
    _, out = run(provider, request("black-forest-labs/flux-kontext-max"))
    assert out.image


def test_the_token_never_leaks(fake, provider, caplog):
    errors, texts = errors_and_what_they_left(
        fake, provider, caplog, ReplicateProvider(api_token=TOKEN + "x", base_url=fake.url), "fail_next_creates",
        request("google/nano-banana-pro"), request("google/nano-banana-pro", prompt="dragon"))

    assert all(TOKEN not in t for t in texts)
    assert all(e.__cause__ is None for e in errors)


def test_lost_create_reply_resumes_the_job_it_started_instead_of_paying_twice(fake, provider, tmp_path):
    from bookbug_assets.generation import generate_image

    ctx = generation_context(tmp_path, max_attempts=3)
    fake.crash_after_create = 1
    record = generate_image(request("google/nano-banana-pro"), provider, ctx)
    assert len(fake.created_predictions) == 1, "a second paid prediction was created"
    assert record.job_id == fake.created_predictions[0]["id"]


def test_outputs_are_downloaded_without_the_token(fake, provider):
    fake.output_mode = "url"
    run(provider, request("black-forest-labs/flux-kontext-pro"))
    downloads = [r for r in fake.requests if r.path.startswith("/delivery/")]
    assert downloads and all("authorization" not in {k.lower() for k in r.headers} for r in downloads)


def test_a_flaky_output_download_is_retried_not_paid_again(fake, provider, monkeypatch):
    from tests.fakes._http import intercept

    failures = intercept(fake, monkeypatch, "GET", "/delivery/", 503, "upstream timeout", times=2)
    _, out = run(provider, request("google/nano-banana-pro"))
    assert out.image and len(failures) == 2 and len(fake.created_predictions) == 1


def test_an_output_that_cannot_be_fetched_by_the_deadline_is_not_a_reason_to_pay_again(fake, provider, monkeypatch):
    from bookbug_assets.providers.base import OutputNotCollected
    from tests.fakes._http import intercept

    real_handle = fake.handle
    intercept(fake, monkeypatch, "GET", "/delivery/", 503, "down")
    job_id = provider.submit(request("google/nano-banana-pro"), {})
    with pytest.raises(OutputNotCollected):
        provider.wait(job_id, request("google/nano-banana-pro"), deadline_s=0.5)
    monkeypatch.setattr(fake, "handle", real_handle)
    assert provider.wait(job_id, request("google/nano-banana-pro"), deadline_s=5).image  # the next run fetches it


def test_a_job_finishing_at_the_deadline_is_collected_not_recreated(fake, provider, monkeypatch):
    job_id = provider.submit(request("google/nano-banana-pro"), {})
    cancelled = replicate_job_finishing_at_the_cancel(provider, monkeypatch)
    out = provider.wait(job_id, request("google/nano-banana-pro"), deadline_s=0.3)
    assert out.image and cancelled == [job_id] and len(fake.created_predictions) == 1


def test_a_stalled_create_times_out_instead_of_hanging_the_page(fake, monkeypatch):
    import time

    real_handle = fake.handle

    def stall_creates(req):
        if req.method == "POST" and req.path.endswith("/predictions"):
            time.sleep(3)  # connected, then nothing: replicate 1.0.7 would wait forever (timeout=None)
        return real_handle(req)

    monkeypatch.setattr(fake, "handle", stall_creates)
    provider = ReplicateProvider(api_token=TOKEN, base_url=fake.url, poll_interval_s=0.02, timeout_s=0.5)
    # Without a client time limit the stalled create would answer after 3 s and no error would be raised.
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("google/nano-banana-pro"), {})
    assert caught.value.transient


def test_a_lost_create_is_matched_only_to_a_prediction_made_since_it_was_sent(fake, provider):
    import time

    req = request("google/nano-banana-pro")
    fake.crash_after_create = 1  # created, reply lost: the input waits in _pending for find_job
    with pytest.raises(ProviderError):
        provider.submit(req, {})
    inp, sent_at = provider._pending[req.cache_key()]
    provider._pending[req.cache_key()] = (inp, time.time() + 3600)  # as if this create were sent much later
    assert provider.find_job(req) is None  # the one that exists is older: another request's image
    provider._pending[req.cache_key()] = (inp, sent_at)
    assert provider.find_job(req) == fake.created_predictions[-1]["id"]


# --- issue 17: pay only for attempts that can change the outcome ---------------------------------------------------


@pytest.mark.parametrize("text", [GENERIC_FAILURE, CUDA_OOM])
def test_a_generic_failure_is_not_paid_for_five_times_and_the_ledger_says_failed(fake, provider, tmp_path, text):
    from bookbug_assets.generation import generate_image

    ctx = generation_context(tmp_path)
    fake.fail_next_predictions = [text] * 5  # every prediction the page could create fails the same way
    with pytest.raises(ProviderError):
        generate_image(request("google/nano-banana-pro"), provider, ctx)
    assert len(fake.created_predictions) <= 2, "a generic failure was re-created with identical input, each paid"
    paid = [r for r in ctx.ledger.rows("b") if r.job_id]
    assert len(paid) == len(fake.created_predictions)
    assert all(r.status == "failed" for r in paid), [r.status for r in paid]  # not "timeout"
    assert all(text[:40] in (r.error or "") for r in paid)  # the provider's own words


@pytest.mark.parametrize("text,transient,retries", [(GENERIC_FAILURE, False, 1), (CUDA_OOM, False, 1),
                                                    (INTERRUPTED, True, None)])
def test_a_failed_prediction_is_a_job_failure_classified_by_its_error(fake, provider, text, transient, retries):
    from bookbug_assets.providers.base import JobFailed

    fake.fail_next_predictions = [text]
    with pytest.raises(JobFailed) as caught:
        run(provider, request("google/nano-banana-pro"))
    err = caught.value
    assert err.transient is transient and text in str(err)
    if retries is not None:
        assert err.retries == retries


def test_an_interrupted_prediction_is_created_again_and_collected(fake, provider, tmp_path):
    from bookbug_assets.generation import generate_image

    ctx = generation_context(tmp_path)
    fake.fail_next_predictions = [INTERRUPTED]  # preempted: Replicate itself says "please retry"
    record = generate_image(request("google/nano-banana-pro"), provider, ctx)
    assert record.image_sha256 and len(fake.created_predictions) == 2


@pytest.mark.parametrize("model,per_reference", [("google/nano-banana-pro", True),
                                                 ("black-forest-labs/flux-kontext-pro", False)])
def test_references_are_uploaded_once_however_many_pages_race_for_them(fake, provider, model, per_reference):
    assert_uploaded_once_when_pages_race(fake, provider, lambda **kw: request(model, **kw), refs(SPRITE, HERO),
                                         per_reference)


def test_a_failed_reference_upload_is_not_remembered(fake, provider, monkeypatch):
    kontext = "black-forest-labs/flux-kontext-pro"
    assert_a_failed_upload_is_not_remembered(fake, provider, monkeypatch, "/v1/files",
                                             lambda **kw: request(kontext, **kw), refs(SPRITE),
                                             lambda: fake.created_predictions)


def test_per_megapixel_prices_count_1024_squared_as_one_megapixel(fake, provider, tmp_path):
    """Replicate bills FLUX.2 [pro] per output megapixel, 1 MP = 1024x1024 (see the model table's sources)."""
    from bookbug_assets.generation import generate_image

    ctx = generation_context(tmp_path)
    record = generate_image(request("black-forest-labs/flux-2-pro", width=1024, height=1024), provider, ctx)
    assert record.cost_usd == pytest.approx(0.015)
    (row,) = [r for r in ctx.ledger.rows("b") if r.status == "ok"]
    assert row.cost_usd == pytest.approx(0.015)  # not $0.03: 1024*1024 px is 1 MP, not 1.05 rounded up to 2
    assert provider.cost_usd(request("black-forest-labs/flux-2-pro", width=1920, height=1080)) == 0.03  # 1.98 MP


def test_readme_book_prices_match_the_code():
    """README's Replicate table: each book is 14 images at 1024x1024, priced as cost_usd prices them."""
    provider = ReplicateProvider(api_token=TOKEN)
    checked = 0
    for model, book_usd in readme_book_prices("#### Replicate", "####", r"`([^`]+)`(?: \(default\))?",
                                              r"~?\$(\d+\.\d+)", REPLICATE_MODELS):
        per_page = provider.cost_usd(request(model, width=1024, height=1024))
        assert round(14 * per_page, 2) == pytest.approx(book_usd), model
        checked += 1
    assert checked == len(REPLICATE_MODELS)


def test_pages_stitching_the_same_references_at_once_make_the_picture_once(monkeypatch):
    import threading

    from PIL import Image

    from bookbug_assets.providers import replicate_models

    def png(colour):
        out = io.BytesIO()
        Image.new("RGB", (64, 48), colour).save(out, format="PNG")
        return out.getvalue()

    made = []
    real = replicate_models._stitched_png
    monkeypatch.setattr(replicate_models, "_stitched_png", lambda *a: made.append(1) or real(*a))
    refs = [png("red"), png("navy")]
    start = threading.Barrier(8)
    results = []

    def page():
        start.wait()
        results.append(replicate_models.stitch(refs))

    threads = [threading.Thread(target=page) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and len(set(results)) == 1 and len(results) == 8
    assert Image.open(io.BytesIO(results[0])).size == (64 + 16 + 64, 48)
    replicate_models.stitch([png("green"), png("navy")])  # other references: made anew
    assert len(made) == 2
