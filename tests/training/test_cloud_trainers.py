"""The Replicate and fal LoRA trainers against their fakes, then the trained LoRA in use."""

from __future__ import annotations

import io
import zipfile

import pytest
from PIL import Image

from bookbug_assets.providers.base import ConfigurationError, ImageRequest, JobGone, ProviderError
from bookbug_assets.providers.fal import FalProvider
from bookbug_assets.providers.replicate import ReplicateProvider
from bookbug_assets.training.base import TrainedLora, safetensors_rank, sha256_hex
from bookbug_assets.training.fal import FalLoraTrainer
from bookbug_assets.training.replicate import ReplicateLoraTrainer
from tests.fakes.fal_server import FakeFal
from tests.fakes.replicate_server import FakeReplicate

TOKEN = "r8_trainer_secret_0123456789abcdef"
KEY = "fal-trainer-key-id:fal-trainer-secret-0123456789"
DEST = "bookbug/style-soft-meadow"


def dataset(n: int = 5) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            img = io.BytesIO()
            Image.new("RGB", (32, 32), (40 * i, 120, 200)).save(img, "PNG")
            zf.writestr(f"style_{i}.png", img.getvalue())
            zf.writestr(f"style_{i}.txt", f"a meadow scene {i} in the style of SFTMDW")
    return buf.getvalue()


def page(provider: str, model: str, lora) -> ImageRequest:
    return ImageRequest(provider=provider, model=model, kind="page", prompt="Pip crosses the meadow",
                        width=1024, height=768, seed=3, lora=lora)


@pytest.fixture
def replicate_fake():
    with FakeReplicate(api_token=TOKEN) as server:
        yield server


@pytest.fixture
def fal_fake():
    with FakeFal(fal_key=KEY) as server:
        yield server


def test_replicate_training_then_flux_dev_lora(replicate_fake):
    trainer = ReplicateLoraTrainer(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)
    job_id = trainer.submit(dataset(), "SFTMDW", steps=500, rank=8, destination=DEST)

    models_created = [r for r in replicate_fake.requests_to("POST") if r.path == "/v1/models"]
    assert len(models_created) == 1  # the destination, created when missing
    assert replicate_fake.requests_to("GET", "/v1/models/ostris/flux-dev-lora-trainer")  # version looked up
    created = replicate_fake.created_trainings[-1]
    assert created["destination"] == DEST
    assert created["version"] == replicate_fake.version_id("ostris/flux-dev-lora-trainer")
    assert created["input"]["steps"] == 500 and created["input"]["lora_rank"] == 8
    assert created["input"]["trigger_word"] == "SFTMDW"
    uploaded = replicate_fake.files[created["input"]["input_images"].rsplit("/", 1)[1]]
    assert uploaded["_data"][:2] == b"PK"

    trained = trainer.wait(job_id, deadline_s=10)
    assert isinstance(trained, TrainedLora)
    assert trained.weights and trained.sha256 == sha256_hex(trained.weights)
    assert safetensors_rank(trained.weights) == trained.rank == 8
    new_version = replicate_fake.version_id(DEST)
    assert trained.remote_ref == f"{DEST}:{new_version}"
    assert trained.trigger_word == "SFTMDW" and trained.steps == 500 and trained.family == "flux1"
    assert trained.cost_usd > 0  # how long it took is a benchmark figure, not a test
    assert "weights=" not in repr(trained)

    # Using it: flux-dev-lora loads the destination version; a second training reuses the model.
    provider = ReplicateProvider(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)
    lora = trained.to_lora_ref("soft-meadow", key="loras/soft-meadow.safetensors", scale=0.9)
    req = page("replicate", "black-forest-labs/flux-dev-lora", lora)
    out = provider.wait(provider.submit(req, {}), req, 10)
    sent = replicate_fake.created_predictions[-1]["input"]
    assert sent["lora_weights"] == f"{DEST}/{new_version}" and sent["lora_scale"] == 0.9
    assert sent["prompt"].startswith("SFTMDW") and out.image
    with pytest.raises(ConfigurationError):  # a FLUX.1 LoRA on FLUX.2 is refused before paying
        provider.submit(page("replicate", "black-forest-labs/flux-2-pro", lora), {})
    trainer.submit(dataset(), "SFTMDW", steps=500, rank=8, destination=DEST)
    assert len([r for r in replicate_fake.requests_to("POST") if r.path == "/v1/models"]) == 1


def test_replicate_training_deadline_cancels_and_expired_weights_fail(replicate_fake):
    trainer = ReplicateLoraTrainer(api_token=TOKEN, base_url=replicate_fake.url, poll_interval_s=0.02)
    replicate_fake.never_finish = True
    job_id = trainer.submit(dataset(), "SFTMDW", steps=100, rank=4, destination=DEST)
    with pytest.raises(ProviderError) as caught:
        trainer.wait(job_id, deadline_s=0.2)
    assert caught.value.transient and job_id in replicate_fake.cancelled
    with pytest.raises(JobGone):
        trainer.wait(job_id, deadline_s=1)

    replicate_fake.never_finish = False
    replicate_fake.output_ttl_s = 0
    job_id = trainer.submit(dataset(), "SFTMDW", steps=100, rank=4, destination=DEST)
    with pytest.raises(ProviderError, match="expired") as caught:
        trainer.wait(job_id, deadline_s=10)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(trainer)


def test_replicate_trainer_refuses_bad_inputs_before_paying(replicate_fake):
    trainer = ReplicateLoraTrainer(api_token=TOKEN, base_url=replicate_fake.url)
    with pytest.raises(ConfigurationError):
        trainer.submit(b"not a zip", "SFTMDW", 100, 4, DEST)
    with pytest.raises(ConfigurationError):
        trainer.submit(dataset(), "SFTMDW", 100, 4, destination="a/b/c")
    replicate_fake.fail_next_creates = [429]
    with pytest.raises(ProviderError) as caught:
        trainer.submit(dataset(), "SFTMDW", 100, 4, DEST)
    assert caught.value.transient and caught.value.retry_after_s is not None
    assert replicate_fake.created_trainings == []


def test_fal_training_then_flux_lora(fal_fake):
    trainer = FalLoraTrainer(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)
    job_id = trainer.submit(dataset(), "SFTMDW", steps=800, rank=16)
    submitted = fal_fake.submitted[-1]
    assert submitted["endpoint"] == "fal-ai/flux-lora-fast-training"
    sent = submitted["input"]
    assert sent["is_style"] is True and sent["trigger_word"] == "SFTMDW" and sent["steps"] == 800
    assert fal_fake._local_bytes(sent["images_data_url"])[:2] == b"PK"

    # A restarted step knows only the journaled id: a fresh trainer resumes it.
    resumed = FalLoraTrainer(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)
    trained = resumed.wait(job_id, deadline_s=10)
    assert trained.weights and trained.sha256 == sha256_hex(trained.weights)
    assert trained.remote_ref and trained.remote_ref.endswith(".safetensors")
    assert trained.trigger_word == "SFTMDW" and trained.steps == 800 and trained.rank == 16
    assert trained.cost_usd == pytest.approx(1.6) and len(fal_fake.submitted) == 1

    provider = FalProvider(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)
    lora = trained.to_lora_ref("soft-meadow", scale=1.1)
    req = page("fal", "fal-ai/flux-lora", lora)
    out = provider.wait(provider.submit(req, {}), req, 10)
    sent = fal_fake.submitted[-1]["input"]
    assert sent["loras"] == [{"path": trained.remote_ref, "scale": 1.1}] and out.image
    for model in ("fal-ai/flux-2/lora", "fal-ai/flux-2"):
        with pytest.raises(ConfigurationError):
            provider.submit(page("fal", model, lora), {})


def test_fal_training_failures(fal_fake):
    trainer = FalLoraTrainer(key=KEY, base_url=fal_fake.url, poll_interval_s=0.02)
    job_id = trainer.submit(dataset(2), "SFTMDW", steps=100, rank=16)  # the trainer wants 4 images
    with pytest.raises(ProviderError) as caught:
        trainer.wait(job_id, deadline_s=10)
    assert not caught.value.transient and "at least 4" in str(caught.value)

    fal_fake.never_finish = True
    job_id = trainer.submit(dataset(), "SFTMDW", steps=100, rank=16)
    with pytest.raises(ProviderError) as caught:
        trainer.wait(job_id, deadline_s=0.2)
    assert caught.value.transient
    assert job_id.partition("#")[0].rsplit("|", 1)[1] in fal_fake.cancelled
    assert KEY.split(":")[1] not in str(caught.value) + repr(trainer)
    with pytest.raises(ConfigurationError):
        trainer.submit(b"nope", "SFTMDW", 100, 16)
