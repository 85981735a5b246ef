"""Issue 14 item 1: each cloud model that takes a LoRA is sent a reference in a form its loader documents.

Through the real replicate and fal-client libraries against the fakes, which fail a prediction (Replicate: after
it is created, as the predictor does) or answer 422 (fal) for a LoRA string their model cannot load.
"""

from __future__ import annotations

import fal_client
import pytest
from replicate.exceptions import ModelError

from bookbug_assets.providers.base import ConfigurationError, ImageRequest, LoraRef
from bookbug_assets.providers.fal import FalProvider
from bookbug_assets.providers.fal_models import FAL_MODELS
from bookbug_assets.providers.replicate import ReplicateProvider
from bookbug_assets.providers.replicate_models import REPLICATE_MODELS
from bookbug_assets.training.pinning import remote_ref_for
from tests.fakes.fal_server import FakeFal
from tests.fakes._replicate_lora_loaders import LUCATACO_INVALID
from tests.fakes.replicate_server import FakeReplicate

TOKEN = "r8_secret_token_for_tests_0123456789"
KEY = "fal-key-id-0001:fal-secret-for-tests-abcdef"
HF_SOURCE = "hf:alice/meadow-lora/meadow.safetensors"
RESOLVE_URL = "https://huggingface.co/alice/meadow-lora/resolve/main/meadow.safetensors"
REPLICATE_LORA_MODELS = [m for m, spec in REPLICATE_MODELS.items() if spec.lora_field]
FAL_LORA_MODELS = [m for m, spec in FAL_MODELS.items() if spec.lora]


def lora(remote_ref: str | None, family: str = "flux1") -> LoraRef:
    return LoraRef(name="meadow", family=family, sha256="ab" * 32, remote_ref=remote_ref, trigger_word="MDW",
                   scale=0.8)


def request(provider: str, model: str, ref: LoraRef) -> ImageRequest:
    return ImageRequest(provider=provider, model=model, kind="page", prompt="Pip lights the lantern", width=1024,
                        height=768, seed=7, lora=ref)


@pytest.fixture
def replicate_fake():
    with FakeReplicate(api_token=TOKEN) as server:
        yield server


@pytest.fixture
def fal_fake():
    with FakeFal(fal_key=KEY) as server:
        yield server


def test_every_lora_model_is_covered():
    assert set(REPLICATE_LORA_MODELS) == {"black-forest-labs/flux-dev-lora", "lucataco/flux-dev-lora"}
    assert set(FAL_LORA_MODELS) == {"fal-ai/flux-lora", "fal-ai/flux-2/lora"}


def test_an_hf_source_is_pinned_as_its_https_resolve_url():
    assert remote_ref_for(HF_SOURCE) == RESOLVE_URL
    assert remote_ref_for("hf:alice/meadow-lora/styles/v2/meadow.safetensors") == \
        "https://huggingface.co/alice/meadow-lora/resolve/main/styles/v2/meadow.safetensors"


@pytest.mark.parametrize("model", REPLICATE_LORA_MODELS)
def test_a_hugging_face_lora_renders_on_every_replicate_lora_model(replicate_fake, model):
    provider = ReplicateProvider(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)
    req = request("replicate", model, lora(remote_ref_for(HF_SOURCE)))
    out = provider.wait(provider.submit(req, {}), req, 10.0)
    assert out.image
    sent = replicate_fake.created_predictions[-1]["input"]
    assert sent[REPLICATE_MODELS[model].lora_field] == RESOLVE_URL


@pytest.mark.parametrize("model", FAL_LORA_MODELS)
def test_a_hugging_face_lora_renders_on_every_fal_lora_endpoint(fal_fake, model):
    provider = FalProvider(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)
    req = request("fal", model, lora(remote_ref_for(HF_SOURCE), FAL_MODELS[model].caps.lora_family))
    out = provider.wait(provider.submit(req, {}), req, 10.0)
    assert out.image
    assert fal_fake.submitted[-1]["input"]["loras"] == [{"path": RESOLVE_URL, "scale": 0.8}]


def test_a_pin_from_before_the_fix_is_sent_with_its_scheme(replicate_fake):
    """Profiles written earlier hold `huggingface.co/<owner>/<repo>/<file>`; lucataco is sent the https URL."""
    provider = ReplicateProvider(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)
    req = request("replicate", "lucataco/flux-dev-lora", lora("huggingface.co/alice/meadow-lora/meadow.safetensors"))
    assert provider.wait(provider.submit(req, {}), req, 10.0).image
    assert replicate_fake.created_predictions[-1]["input"]["hf_lora"] == RESOLVE_URL


@pytest.mark.parametrize("source", ["hf:alice/meadow-lora/styles/meadow.safetensors",  # not in the top folder
                                    "hf:alice/meadow.lora/meadow.safetensors"])  # the name pattern stops at '.'
def test_a_lora_lucataco_cannot_load_is_refused_before_it_is_paid(replicate_fake, source):
    provider = ReplicateProvider(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)
    with pytest.raises(ConfigurationError, match="lucataco/flux-dev-lora cannot load .*black-forest-labs"):
        provider.submit(request("replicate", "lucataco/flux-dev-lora", lora(remote_ref_for(source))), {})
    assert replicate_fake.created_predictions == []
    req = request("replicate", "black-forest-labs/flux-dev-lora", lora(remote_ref_for(source)))
    assert provider.wait(provider.submit(req, {}), req, 10.0).image  # a URL of any .safetensors file works there


def test_a_fal_lora_without_a_url_is_refused_before_it_is_sent(fal_fake):
    provider = FalProvider(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)
    with pytest.raises(ConfigurationError, match="URL"):
        provider.submit(request("fal", "fal-ai/flux-lora", lora("alice/meadow-lora")), {})
    assert fal_fake.submitted == []


# --- the fakes know each loader's rule ------------------------------------------------------------------


@pytest.mark.parametrize("model,field,value,error", [
    ("lucataco/flux-dev-lora", "hf_lora", "huggingface.co/alice/meadow-lora/meadow.safetensors",
     LUCATACO_INVALID.split(":")[0]),
    ("lucataco/flux-dev-lora", "hf_lora", "https://huggingface.co/alice/meadow-lora/resolve/main/sub/x.safetensors",
     "does not appear to have a file named x.safetensors"),
    ("lucataco/flux-dev-lora", "hf_lora", "https://example.com/lora.safetensors?sig=1", "Invalid lora"),
    ("black-forest-labs/flux-dev-lora", "lora_weights", "huggingface.co/alice/meadow-lora/sub/x.safetensors",
     "Failed to parse HuggingFace URL"),
    ("black-forest-labs/flux-dev-lora", "lora_weights", "https://huggingface.co/alice/meadow-lora/sub/x.safetensors",
     "Weights not found"),
])
def test_the_replicate_fake_fails_a_prediction_whose_lora_its_model_cannot_load(replicate_fake, model, field,
                                                                                 value, error):
    client = replicate_fake.client()
    with pytest.raises(ModelError, match=error):
        client.run(replicate_fake.ref(model), input={"prompt": "x", field: value})
    assert len(replicate_fake.created_predictions) == 1  # created, so paid, then failed


@pytest.mark.parametrize("model,field,value", [
    ("lucataco/flux-dev-lora", "hf_lora", "alice/meadow-lora"),
    ("lucataco/flux-dev-lora", "hf_lora", RESOLVE_URL),
    ("black-forest-labs/flux-dev-lora", "lora_weights", "huggingface.co/alice/meadow-lora/meadow.safetensors"),
    ("black-forest-labs/flux-dev-lora", "lora_weights", "alice/meadow-lora"),
    ("black-forest-labs/flux-dev-lora", "lora_weights", RESOLVE_URL),
])
def test_the_replicate_fake_loads_every_documented_form(replicate_fake, model, field, value):
    assert replicate_fake.client().run(replicate_fake.ref(model), input={"prompt": "x", field: value})


def test_the_fal_fake_answers_422_for_a_lora_path_without_a_scheme(fal_fake, monkeypatch):
    fal_fake.patch_client(monkeypatch)
    client = fal_fake.client()
    bad = client.submit("fal-ai/flux-lora", arguments={
        "prompt": "x", "loras": [{"path": "huggingface.co/alice/meadow-lora/meadow.safetensors"}]})
    with pytest.raises(fal_client.client.FalClientHTTPError) as caught:
        bad.get()  # fal validates queued input when the runner takes it: the result is the 422
    assert caught.value.status_code == 422 and "loras" in str(caught.value)
    handle = client.submit("fal-ai/flux-lora", arguments={"prompt": "x", "loras": [{"path": RESOLVE_URL}]})
    assert handle.get()["images"]
