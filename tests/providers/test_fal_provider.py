"""FalProvider against FakeFal, through the real fal-client 1.0.3.

The provider is pointed at the fake with its own `base_url` (no library globals patched), except
in the one test that checks the library's default upload path under `patch_client`.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bookbug_assets.providers.base import (
    ConfigurationError, ImageRequest, JobGone, LoraRef, ProviderError, SafetyRefusal,
)
from bookbug_assets.providers.fal import FalProvider
from bookbug_assets.providers.fal_models import FAL_MODELS
from tests.fakes.fal_server import MODEL_CRASH, RUNNER_DISCONNECTED, FakeFal
from tests.providers.cloud_helpers import (
    assert_a_failed_upload_is_not_remembered, assert_uploaded_once_when_pages_race, errors_and_what_they_left,
    fal_job_finishing_at_the_cancel, generation_context, png, readme_book_prices, references_with_roles, run,
)

KEY = "fal-key-id-0001:fal-secret-for-tests-abcdef"
SPRITE, HERO = png("red"), png("blue", (48, 64))


def refs(*blobs: bytes):
    return references_with_roles(blobs, lambda i: f"ref{i}")


def request(model: str, *, references=(), lora=None, prompt="Pip lights the lantern", width=1024, height=768,
            seed=7) -> ImageRequest:
    return ImageRequest(provider="fal", model=model, kind="page", prompt=prompt, width=width, height=height,
                        seed=seed, references=references, lora=lora)


FLUX1_LORA = LoraRef(name="soft-meadow", family="flux1", sha256="ab" * 32,
                     remote_ref="https://example.invalid/soft-meadow.safetensors", trigger_word="SFTMDW", scale=0.8)
FLUX2_LORA = FLUX1_LORA.model_copy(update={"family": "flux2", "name": "flux2-style"})


@pytest.fixture
def fake():
    with FakeFal(fal_key=KEY) as server:
        yield server


@pytest.fixture
def provider(fake):
    return FalProvider(key=KEY, base_url=fake.url, poll_interval_s=0.02)


@pytest.mark.parametrize("model", list(FAL_MODELS))
def test_every_endpoint_renders_with_its_own_field_names(fake, provider, model):
    spec = FAL_MODELS[model]
    references, data = refs(SPRITE, HERO) if spec.caps.max_references else ((), {})
    lora = {"flux1": FLUX1_LORA, "flux2": FLUX2_LORA}.get(spec.caps.lora_family or "")
    job_id, out = run(provider, request(model, references=references, lora=lora), data)

    assert Image.open(io.BytesIO(out.image)).size[0] > 0 and out.mime == "image/png"
    submitted = fake.submitted[-1]
    assert job_id == f"{submitted['endpoint']}|{submitted['request_id']}"
    assert submitted["endpoint"] == ((spec.edit_endpoint or model) if references else (spec.t2i or model))
    sent = submitted["input"]
    assert sent["seed"] == 7
    if spec.refs == "list":
        assert len(sent["image_urls"]) == 2
    elif spec.refs == "single":
        assert isinstance(sent["image_url"], str)
    if lora:
        assert sent["loras"] == [{"path": lora.remote_ref, "scale": 0.8}]
        assert sent["prompt"].startswith("SFTMDW")


@pytest.mark.parametrize("model,t2i", [("fal-ai/flux-pro/kontext", "fal-ai/flux-pro/kontext/text-to-image"),
                                       ("fal-ai/flux-pro/kontext/max/multi",
                                        "fal-ai/flux-pro/kontext/max/text-to-image"),
                                       ("fal-ai/flux-kontext/dev", "fal-ai/flux/dev"),
                                       ("fal-ai/nano-banana-pro/edit", "fal-ai/nano-banana-pro"),
                                       ("fal-ai/flux-2-pro/edit", "fal-ai/flux-2-pro")])
def test_the_sprite_sheet_without_references_goes_to_the_text_to_image_sibling(fake, provider, model, t2i):
    job_id, out = run(provider, request(model))
    assert fake.submitted[-1]["endpoint"] == t2i and job_id.startswith(t2i + "|") and out.version == t2i


def test_text_to_image_stays_on_the_base_endpoint(fake, provider):
    run(provider, request("fal-ai/nano-banana-pro", width=1536, height=2048))
    assert fake.submitted[-1]["endpoint"] == "fal-ai/nano-banana-pro"
    sent = fake.submitted[-1]["input"]
    assert sent["aspect_ratio"] == "3:4" and sent["resolution"] == "2K" and "image_urls" not in sent
    run(provider, request("fal-ai/flux-lora", width=1536, height=1024))
    assert fake.submitted[-1]["input"]["image_size"] == {"width": 1536, "height": 1024}
    assert provider.cost_usd(request("fal-ai/flux-lora", width=1536, height=1024)) == 0.07  # 1.6 MP -> 2


def test_references_are_uploaded_once_and_stitched_for_kontext(fake, provider):
    references, data = refs(SPRITE, HERO)
    run(provider, request("fal-ai/flux-pro/kontext", references=references, seed=1), data)
    run(provider, request("fal-ai/flux-pro/kontext", references=references, seed=2), data)
    assert len(fake.uploads) == 1  # one stitched image, reused by the second page
    stitched = Image.open(io.BytesIO(fake._local_bytes(fake.submitted[-1]["input"]["image_url"])))
    assert stitched.width > 64 + 48
    run(provider, request("fal-ai/nano-banana-pro", references=references), data)
    urls = fake.submitted[-1]["input"]["image_urls"]
    assert [fake._local_bytes(u) for u in urls] == [SPRITE, HERO]


def test_data_uris_instead_of_uploads(fake):
    provider = FalProvider(key=KEY, base_url=fake.url, poll_interval_s=0.02, upload_references=False)
    references, data = refs(SPRITE, HERO)
    run(provider, request("fal-ai/flux-2", references=references), data)
    assert fake.uploads == []
    assert all(u.startswith("data:image/png;base64,") for u in fake.submitted[-1]["input"]["image_urls"])


def test_the_key_never_travels_to_the_signed_storage_url(fake, provider):
    references, data = refs(SPRITE)
    run(provider, request("fal-ai/flux-pro/kontext", references=references), data)
    assert fake.uploads[-1]["via"] == "storage"
    (put,) = fake.requests_to("PUT", "/storage/put/")
    assert put.header("Authorization") is None  # fal_client's own storage route would send `Key ...` here
    (initiate,) = fake.requests_to("POST", "/storage/upload/initiate")
    assert initiate.header("Authorization") == f"Key {KEY}"  # fal's own API still gets it


def test_a_failed_cdn_upload_falls_back_to_storage_without_the_key(fake, monkeypatch):
    from tests.fakes._http import intercept

    fake.patch_client(monkeypatch)
    intercept(fake, monkeypatch, "POST", "/files/upload", 400, "CDN unavailable")
    provider = FalProvider(key=KEY, poll_interval_s=0.02)
    references, data = refs(SPRITE)
    _, out = run(provider, request("fal-ai/flux-kontext/dev", references=references), data)
    assert out.image and fake.uploads[-1]["via"] == "storage"
    assert all(r.header("Authorization") is None for r in fake.requests_to("PUT", "/storage/put/"))


def test_library_default_paths_under_patch_client(fake, monkeypatch):
    fake.patch_client(monkeypatch)
    provider = FalProvider(key=KEY, poll_interval_s=0.02)
    references, data = refs(SPRITE)
    _, out = run(provider, request("fal-ai/flux-kontext/dev", references=references), data)
    assert out.image and fake.uploads[-1]["via"] == "cdn"
    assert fake.submitted[-1]["input"]["resolution_mode"] == "4:3"


@pytest.mark.parametrize("model,lora", [("fal-ai/flux-2/lora", FLUX1_LORA), ("fal-ai/flux-2", FLUX1_LORA),
                                        ("fal-ai/flux-lora", FLUX2_LORA), ("fal-ai/nano-banana-pro", FLUX1_LORA)])
def test_a_lora_of_another_family_is_a_configuration_error(fake, provider, model, lora):
    with pytest.raises(ConfigurationError):
        provider.submit(request(model, lora=lora), {})
    assert fake.submitted == []


def test_a_lora_without_a_url_cannot_be_loaded(fake, provider):
    lora = FLUX1_LORA.model_copy(update={"remote_ref": "bookbug/style:" + "a" * 64})
    with pytest.raises(ConfigurationError, match="URL"):
        provider.submit(request("fal-ai/flux-lora", lora=lora), {})
    references, data = refs(SPRITE, HERO, SPRITE, HERO, SPRITE)
    with pytest.raises(ConfigurationError, match="at most 4"):
        provider.submit(request("fal-ai/flux-2", references=references), data)
    assert fake.submitted == []


@pytest.mark.parametrize("mode", ["result", "submit"])
def test_content_policy_422_is_a_safety_refusal(fake, provider, mode):
    fake.refusal_mode = mode
    fake.refuse_prompts_containing = ["dragon"]
    with pytest.raises(SafetyRefusal) as caught:
        run(provider, request("fal-ai/nano-banana-pro", prompt="a dragon"))
    assert "content_policy_violation" in caught.value.reason


def test_has_nsfw_concepts_is_a_safety_refusal(fake, provider):
    fake.refusal_mode = "nsfw"
    fake.refuse_prompts_containing = ["dragon"]
    with pytest.raises(SafetyRefusal, match="has_nsfw_concepts"):
        run(provider, request("fal-ai/flux-lora", prompt="a dragon", lora=FLUX1_LORA))


def test_submit_is_one_post_and_429_is_transient_with_retry_after(fake, provider):
    fake.fail_next_submits = [429]
    fake.retry_after_s = 3
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("fal-ai/flux-lora"), {})
    assert caught.value.transient and caught.value.status == 429 and caught.value.retry_after_s == 3
    assert len(fake.requests_to("POST", "/fal-ai/flux-lora")) == 1
    fake.fail_next_submits = [503]
    with pytest.raises(ProviderError) as caught:
        provider.submit(request("fal-ai/flux-lora"), {})
    assert caught.value.transient and caught.value.status == 503
    assert fake.submitted == []


def test_validation_errors_carry_the_servers_detail(fake, provider, monkeypatch):
    spec = FAL_MODELS["fal-ai/flux-lora"]
    monkeypatch.setitem(FAL_MODELS, "fal-ai/flux-lora",
                        type(spec)(**{**spec.__dict__, "fixed": {**spec.fixed, "bogus_field": 1}}))
    with pytest.raises(ProviderError) as caught:
        run(provider, request("fal-ai/flux-lora"))
    assert not caught.value.transient and caught.value.status == 422 and "bogus_field" in str(caught.value)


def test_failed_polls_are_retried_within_the_wait(fake, provider):
    job_id = provider.submit(request("fal-ai/flux-2-pro"), {})
    fake.fail_next_polls = [500]
    assert provider.wait(job_id, request("fal-ai/flux-2-pro"), 10).image


def test_a_request_that_never_finishes_is_cancelled_at_the_deadline(fake, provider):
    fake.never_finish = True
    job_id = provider.submit(request("fal-ai/flux-pro/kontext/multi", references=refs(SPRITE)[0]),
                             refs(SPRITE)[1])
    with pytest.raises(ProviderError) as caught:
        provider.wait(job_id, request("fal-ai/flux-pro/kontext/multi"), deadline_s=0.3)
    assert caught.value.transient and not isinstance(caught.value, JobGone)
    assert job_id.rsplit("|", 1)[1] in fake.cancelled
    # fal rebuilds request URLs from owner/alias; the cancel went to fal-ai/flux-pro/requests/...
    assert fake.requests_to("PUT", "/fal-ai/flux-pro/requests/")
    with pytest.raises(JobGone):
        provider.wait(job_id, request("fal-ai/flux-pro/kontext/multi"), deadline_s=1)


def test_a_request_finishing_at_the_deadline_is_collected_not_recreated(fake, provider, monkeypatch):
    job_id = provider.submit(request("fal-ai/flux-lora"), {})
    cancelled = fal_job_finishing_at_the_cancel(provider, monkeypatch)
    out = provider.wait(job_id, request("fal-ai/flux-lora"), deadline_s=0.3)
    assert out.image and cancelled == [job_id] and len(fake.submitted) == 1


def test_expired_outputs_and_unknown_requests_are_job_gone(fake, provider):
    fake.output_ttl_s = 0
    with pytest.raises(JobGone, match="expired"):
        run(provider, request("fal-ai/flux-lora"))
    with pytest.raises(JobGone):
        provider.wait("fal-ai/flux-lora|00000000-0000-0000-0000-000000000000", request("fal-ai/flux-lora"), 1)


def test_the_key_never_leaks(fake, provider, caplog):
    errors, texts = errors_and_what_they_left(
        fake, provider, caplog, FalProvider(key=KEY + "x", base_url=fake.url), "fail_next_submits",
        request("fal-ai/flux-lora"), request("fal-ai/nano-banana-pro", prompt="dragon"))

    secret = KEY.split(":")[1]
    assert all(KEY not in t and secret not in t for t in texts)
    assert all(e.__cause__ is None for e in errors)
    # Output downloads do not carry the key to the CDN.
    assert all(r.header("Authorization") is None for r in fake.requests_to("GET", "/files/"))


def test_a_flaky_output_download_is_retried_not_paid_again(fake, provider, monkeypatch):
    from tests.fakes._http import intercept

    failures = intercept(fake, monkeypatch, "GET", "/files/", 503, "upstream timeout", times=2)
    _, out = run(provider, request("fal-ai/flux-lora"))
    assert out.image and len(failures) == 2 and len(fake.submitted) == 1


# --- issue 17: pay only for attempts that can change the outcome ---------------------------------------------------


def test_a_request_that_failed_is_a_failed_job_not_an_output_to_fetch_until_the_deadline(fake, provider, tmp_path):
    from bookbug_assets.generation import generate_image
    from bookbug_assets.layout import journal_path

    ctx = generation_context(tmp_path, deadline_s=30.0)
    fake.fail_next_requests = [MODEL_CRASH] * 5
    req = request("fal-ai/flux-lora")
    before = len(fake.requests)
    with pytest.raises(ProviderError) as caught:
        generate_image(req, provider, ctx)
    # Counted, not timed: fetching the failed result again until the deadline is hundreds of requests.
    assert len(fake.requests) - before < 40, "the failed request's result was fetched again until the deadline"
    assert type(caught.value).__name__ == "JobFailed" and not caught.value.transient
    assert len(fake.submitted) <= 2
    paid = [r for r in ctx.ledger.rows("b") if r.job_id]
    assert paid and all(r.status == "failed" and "Internal server error" in (r.error or "") for r in paid)
    assert not ctx.store.exists(journal_path(req.cache_key()))  # nothing left for the next run to wait on again


@pytest.mark.parametrize("failure,transient,retries", [(MODEL_CRASH, False, 1), (RUNNER_DISCONNECTED, True, None)])
def test_a_failed_request_is_classified_by_fals_error_payload(fake, provider, failure, transient, retries):
    from bookbug_assets.providers.base import JobFailed

    fake.fail_next_requests = [failure]
    with pytest.raises(JobFailed) as caught:
        run(provider, request("fal-ai/flux-2"))
    assert caught.value.transient is transient and caught.value.status == failure.status
    if retries is not None:
        assert caught.value.retries == retries


def test_a_runner_that_disconnected_is_run_again(fake, provider, tmp_path):
    from bookbug_assets.generation import generate_image

    fake.fail_next_requests = [RUNNER_DISCONNECTED]  # infrastructure, after fal's own queue retries; 5xx is not billed
    record = generate_image(request("fal-ai/flux-2"), provider, generation_context(tmp_path, deadline_s=5.0))
    assert record.image_sha256 and len(fake.submitted) == 2


@pytest.mark.parametrize("model,per_reference", [("fal-ai/flux-2", True), ("fal-ai/flux-pro/kontext", False)])
def test_references_are_uploaded_once_however_many_pages_race_for_them(fake, provider, model, per_reference):
    assert_uploaded_once_when_pages_race(fake, provider, lambda **kw: request(model, **kw), refs(SPRITE, HERO),
                                         per_reference)


def test_a_failed_reference_upload_is_not_remembered(fake, provider, monkeypatch):
    assert_a_failed_upload_is_not_remembered(fake, provider, monkeypatch, "/storage/upload/initiate",
                                             lambda **kw: request("fal-ai/flux-pro/kontext", **kw), refs(SPRITE),
                                             lambda: fake.submitted)


@pytest.mark.parametrize("model,price", [("fal-ai/flux-lora", 0.035), ("fal-ai/flux/dev", 0.025),
                                         ("fal-ai/flux-2", 0.012), ("fal-ai/flux-2/lora", 0.021),
                                         ("fal-ai/flux-2-pro", 0.03)])
def test_per_megapixel_prices_count_1024_squared_as_one_megapixel(fake, provider, tmp_path, model, price):
    """fal: "rounded up to the nearest megapixel ... a 1024x1024 image will cost $0.05" (flux-2-flex pricing)."""
    from bookbug_assets.generation import generate_image

    lora = {"flux1": FLUX1_LORA, "flux2": FLUX2_LORA}.get(FAL_MODELS[model].caps.lora_family or "")
    ctx = generation_context(tmp_path)
    record = generate_image(request(model, width=1024, height=1024, lora=lora), provider, ctx)
    (row,) = [r for r in ctx.ledger.rows("b") if r.status == "ok"]
    assert record.cost_usd == row.cost_usd == pytest.approx(price)  # 1024*1024 px is 1 MP, not 1.05 rounded to 2


def test_megapixels_are_counted_as_fal_counts_them(provider):
    assert provider.cost_usd(request("fal-ai/flux-lora", width=1920, height=1080)) == 0.07  # 1.98 MP -> 2
    assert provider.cost_usd(request("fal-ai/flux-lora", width=512, height=512)) == 0.035  # at least 1 MP
    assert provider.cost_usd(request("fal-ai/flux-2-pro", width=2048, height=2048)) == 0.075  # $0.03 + 3 x $0.015


def test_readme_book_prices_match_the_code(provider):
    """README's fal table: each book is 14 images at 1024x1024 with their references, priced as cost_usd does."""
    checked = 0
    for model, book_usd in readme_book_prices("#### fal", "\n#", r"`([^`]+)`(?: \(\+ `/edit`\))?(?: \(default\))?",
                                              r"\$(\d+\.\d+)", FAL_MODELS):
        # The sprite sheet sends no reference, the hero page the sprite sheet, each of the 12 pages both.
        price = [provider.cost_usd(request(model, width=1024, height=1024, references=refs(*blobs)[0]))
                 for blobs in ((), (SPRITE,), (SPRITE, HERO))]
        assert round(price[0] + price[1] + 12 * price[2], 2) == pytest.approx(book_usd), model
        checked += 1
    assert checked >= 9
