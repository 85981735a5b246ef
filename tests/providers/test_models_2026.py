"""The 2026 multi-reference edit models, each sent through its real client (replicate 1.0.7, fal-client 1.0.3) to the
fakes, which answer an unknown field, a value outside an enum or range, or too many images with the service's 422.

Each test pins the field names and values the real schema documents (tests/fakes/schemas_2026.py has the sources),
so a renamed field in the tables (providers/replicate_models.py, providers/fal_models.py) fails here.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image

from bookbug_assets.providers.base import ImageRequest, ProviderError, ReferenceImage
from bookbug_assets.providers.fal import FalProvider
from bookbug_assets.providers.fal_models import FAL_MODELS
from bookbug_assets.providers.replicate import ReplicateProvider
from bookbug_assets.providers.replicate_models import REPLICATE_MODELS
from tests.fakes.fal_server import FakeFal
from tests.fakes.replicate_server import FakeReplicate

TOKEN = "r8_secret_token_for_tests_0123456789"
KEY = "fal-key-id-0001:fal-secret-for-tests-abcdef"

REPLICATE_2026 = ["google/nano-banana-2", "black-forest-labs/flux-2-flex", "black-forest-labs/flux-2-max",
                  "bytedance/seedream-4.5"]
FAL_2026 = ["fal-ai/nano-banana-2", "fal-ai/nano-banana-2/edit", "fal-ai/flux-2-flex", "fal-ai/flux-2-flex/edit",
            "fal-ai/flux-2-max", "fal-ai/flux-2-max/edit"]


def png(color: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def refs(count: int) -> tuple[tuple[ReferenceImage, ...], dict[str, bytes]]:
    out, data = [], {}
    for i in range(count):
        blob = png((i * 17 % 256, 80, 160))
        sha = hashlib.sha256(blob).hexdigest()
        out.append(ReferenceImage(role=f"ref{i}", sha256=sha, key=f"blobs/{sha}"))
        data[sha] = blob
    return tuple(out), data


def request(provider: str, model: str, *, references=(), width=1024, height=768) -> ImageRequest:
    return ImageRequest(provider=provider, model=model, kind="page", prompt="Pip lights the lantern", width=width,
                        height=height, seed=7, references=references)


@pytest.fixture
def replicate_fake():
    with FakeReplicate(api_token=TOKEN) as server:
        yield server


@pytest.fixture
def replicate(replicate_fake):
    return ReplicateProvider(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)


@pytest.fixture
def fal_fake():
    with FakeFal(fal_key=KEY) as server:
        yield server


@pytest.fixture
def fal(fal_fake):
    return FalProvider(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)


def render(provider, req, data=None):
    job_id = provider.submit(req, data or {})
    return provider.wait(job_id, req, 10.0)


# --- Replicate -----------------------------------------------------------------------------------------------------

EXPECTED_REPLICATE = {  # the exact input each model is sent for a 1024 x 768 page with two references
    "google/nano-banana-2": {"output_format": "png", "aspect_ratio": "4:3", "resolution": "1K"},
    "black-forest-labs/flux-2-flex": {"output_format": "png", "safety_tolerance": 2, "prompt_upsampling": False,
                                      "aspect_ratio": "custom", "width": 1024, "height": 768, "seed": 7},
    "black-forest-labs/flux-2-max": {"output_format": "png", "safety_tolerance": 2, "aspect_ratio": "custom",
                                     "width": 1024, "height": 768, "seed": 7},
    "bytedance/seedream-4.5": {"size": "2K", "sequential_image_generation": "disabled", "max_images": 1,
                               "aspect_ratio": "4:3"},
}
REF_FIELD = {"google/nano-banana-2": "image_input", "black-forest-labs/flux-2-flex": "input_images",
             "black-forest-labs/flux-2-max": "input_images", "bytedance/seedream-4.5": "image_input"}


@pytest.mark.parametrize("model", REPLICATE_2026)
def test_replicate_2026_models_send_their_documented_fields(replicate_fake, replicate, model):
    references, data = refs(2)
    out = render(replicate, request("replicate", model, references=references), data)

    assert Image.open(io.BytesIO(out.image)).size[0] > 0
    created = replicate_fake.created_predictions[-1]
    assert created["model"] == model
    sent = dict(created["input"])
    urls = sent.pop(REF_FIELD[model])
    assert [replicate_fake.files[u.rsplit("/", 1)[1]]["_data"] for u in urls] == [data[r.sha256] for r in references]
    assert sent == {"prompt": "Pip lights the lantern", **EXPECTED_REPLICATE[model]}


@pytest.mark.parametrize("model", REPLICATE_2026)
def test_replicate_2026_models_take_their_full_reference_limit_and_the_fake_refuses_one_more(
        replicate_fake, replicate, model):
    limit = REPLICATE_MODELS[model].caps.max_references
    references, data = refs(limit)
    render(replicate, request("replicate", model, references=references), data)
    assert len(replicate_fake.created_predictions[-1]["input"][REF_FIELD[model]]) == limit

    # One image past the documented limit is the service's 422, whatever the table says.
    spec = REPLICATE_MODELS[model]
    widened = spec.__class__(**{**spec.__dict__, "caps": spec.caps.model_copy(update={"max_references": limit + 1})})
    references, data = refs(limit + 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(REPLICATE_MODELS, model, widened)
        with pytest.raises(ProviderError, match="422"):
            replicate.submit(request("replicate", model, references=references), data)


def test_replicate_2026_sizes_follow_each_models_rules(replicate_fake, replicate):
    render(replicate, request("replicate", "google/nano-banana-2", width=1024, height=4096))
    sent = replicate_fake.created_predictions[-1]["input"]
    assert sent["aspect_ratio"] == "1:4" and sent["resolution"] == "4K"  # Nano Banana 2's extreme ratios
    assert replicate.cost_usd(request("replicate", "google/nano-banana-2", width=1024, height=4096)) == 0.16
    render(replicate, request("replicate", "black-forest-labs/flux-2-max", width=3000, height=2000))
    sent = replicate_fake.created_predictions[-1]["input"]
    assert max(sent["width"], sent["height"]) <= 2048 and sent["width"] % 16 == 0
    assert replicate.cost_usd(request("replicate", "black-forest-labs/flux-2-flex", width=1920, height=1080)) == 0.12
    out = render(replicate, request("replicate", "bytedance/seedream-4.5", width=1024, height=1024))
    assert out.seed is None  # no seed input: renders do not repeat exactly


# --- fal -----------------------------------------------------------------------------------------------------------

EXPECTED_FAL = {  # (endpoint, input less prompt/seed/image_urls) for a 1024 x 768 page with two references
    "fal-ai/nano-banana-2": ("fal-ai/nano-banana-2/edit", {"output_format": "png", "aspect_ratio": "4:3",
                                                           "resolution": "1K"}),
    "fal-ai/nano-banana-2/edit": ("fal-ai/nano-banana-2/edit", {"output_format": "png", "aspect_ratio": "4:3",
                                                                "resolution": "1K"}),
    "fal-ai/flux-2-flex": ("fal-ai/flux-2-flex/edit", {"output_format": "png",
                                                       "image_size": {"width": 1024, "height": 768}}),
    "fal-ai/flux-2-flex/edit": ("fal-ai/flux-2-flex/edit", {"output_format": "png",
                                                            "image_size": {"width": 1024, "height": 768}}),
    "fal-ai/flux-2-max": ("fal-ai/flux-2-max/edit", {"output_format": "png",
                                                     "image_size": {"width": 1024, "height": 768}}),
    "fal-ai/flux-2-max/edit": ("fal-ai/flux-2-max/edit", {"output_format": "png",
                                                          "image_size": {"width": 1024, "height": 768}}),
}


@pytest.mark.parametrize("model", FAL_2026)
def test_fal_2026_endpoints_send_their_documented_fields(fal_fake, fal, model):
    references, data = refs(2)
    out = render(fal, request("fal", model, references=references), data)

    assert Image.open(io.BytesIO(out.image)).size[0] > 0
    submitted = fal_fake.submitted[-1]
    endpoint, expected = EXPECTED_FAL[model]
    assert submitted["endpoint"] == endpoint
    sent = dict(submitted["input"])
    assert len(sent.pop("image_urls")) == 2
    assert sent == {"prompt": "Pip lights the lantern", "seed": 7, **expected}


@pytest.mark.parametrize("model", ["fal-ai/nano-banana-2/edit", "fal-ai/flux-2-flex/edit", "fal-ai/flux-2-max/edit"])
def test_fal_2026_sprite_sheet_goes_to_the_text_to_image_endpoint(fal_fake, fal, model):
    render(fal, request("fal", model))
    assert fal_fake.submitted[-1]["endpoint"] == FAL_MODELS[model].t2i
    assert "image_urls" not in fal_fake.submitted[-1]["input"]


@pytest.mark.parametrize("model", ["fal-ai/nano-banana-2/edit", "fal-ai/flux-2-max/edit"])
def test_fal_2026_endpoints_refuse_one_image_past_their_limit(fal_fake, fal, model):
    spec = FAL_MODELS[model]
    limit = spec.caps.max_references
    render(fal, request("fal", model, references=refs(limit)[0]), refs(limit)[1])
    widened = spec.__class__(**{**spec.__dict__, "caps": spec.caps.model_copy(update={"max_references": limit + 1})})
    references, data = refs(limit + 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(FAL_MODELS, model, widened)
        with pytest.raises(ProviderError, match="image_urls") as refused:  # fal reports it on the request's result
            render(fal, request("fal", model, references=references), data)
    assert fal_fake.submitted[-1]["endpoint"] == model and "422" in str(refused.value)


def test_fal_2026_prices(fal):
    def cost(model, width=1024, height=1024, n_refs=0):
        return fal.cost_usd(request("fal", model, references=refs(n_refs)[0], width=width, height=height))

    # Nano Banana 2: $0.08, 2K at 1.5x, 4K at 2x (fal's llms.txt), whatever the references.
    assert (cost("fal-ai/nano-banana-2/edit", n_refs=2), cost("fal-ai/nano-banana-2", 1536, 1536),
            cost("fal-ai/nano-banana-2", 4096, 4096)) == (0.08, 0.12, 0.16)
    # FLUX.2 [flex]: $0.05 per MP in and out; FLUX.2 [max]: $0.07 first MP, $0.03 each further, inputs included.
    assert cost("fal-ai/flux-2-flex/edit", n_refs=2) == pytest.approx(0.15)
    assert cost("fal-ai/flux-2-flex", 1920, 1080) == pytest.approx(0.10)
    assert cost("fal-ai/flux-2-max/edit", n_refs=2) == pytest.approx(0.13)
    assert cost("fal-ai/flux-2-max", 2048, 2048) == pytest.approx(0.16)
