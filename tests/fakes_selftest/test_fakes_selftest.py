"""Drive the real `replicate` and `fal_client` libraries against the provider fakes,
so that a change in either client (or in a fake) that breaks the wire protocol
shows up here first rather than as confusing failures in the asset tests."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import zipfile

import fal_client
import httpx
import pytest
import replicate
from PIL import Image
from replicate.exceptions import ModelError, ReplicateError

try:  # works whether or not tests/ is a package
    from tests.fakes.fal_server import FAL_ENDPOINT_SCHEMAS, MODEL_CRASH, RUNNER_DISCONNECTED, FakeFal
    from tests.fakes.replicate_server import (CUDA_OOM, E005, GENERIC_FAILURE, INTERRUPTED, REPLICATE_MODEL_SCHEMAS,
                                              FakeReplicate)
except ImportError:  # pragma: no cover
    from fakes.fal_server import FAL_ENDPOINT_SCHEMAS, MODEL_CRASH, RUNNER_DISCONNECTED, FakeFal
    from fakes.replicate_server import (CUDA_OOM, E005, GENERIC_FAILURE, INTERRUPTED, REPLICATE_MODEL_SCHEMAS,
                                        FakeReplicate)

IMG = "https://example.invalid/ref.png"


@pytest.fixture
def rep():
    with FakeReplicate() as server:
        server.retry_after_s = 0  # the client honours Retry-After; keep retries instant
        yield server


@pytest.fixture
def fal(monkeypatch):
    with FakeFal() as server:
        server.patch_client(monkeypatch)
        yield server


def _zip(n_images: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n_images):
            zf.writestr(f"img_{i}.png", b"png-bytes")
            zf.writestr(f"img_{i}.txt", "a TOK drawing")
        zf.writestr("__MACOSX/._img_0.png", b"junk")
    return buf.getvalue()


# --- Replicate ------------------------------------------------------------------------------

def test_replicate_run_official_model_and_download(rep):
    client = rep.client()
    url = client.run("google/nano-banana-pro",
                     input={"prompt": "a ladybug", "aspect_ratio": "2:3", "output_format": "png"})
    assert isinstance(url, str) and "/delivery/" in url  # http URLs are not wrapped in FileOutput
    img = Image.open(io.BytesIO(httpx.get(url).content))
    w, h = img.size
    assert img.format == "PNG" and abs(w / h - 2 / 3) < 0.02
    again = client.run("google/nano-banana-pro",
                       input={"prompt": "a ladybug", "aspect_ratio": "2:3", "output_format": "png"})
    assert httpx.get(again).content == httpx.get(url).content  # deterministic per (model, input)
    creates = rep.requests_to("POST", "/v1/models/google/nano-banana-pro/predictions")
    assert len(creates) == 2 and creates[0].header("Prefer") == "wait"
    assert all(r.header("Authorization") == f"Bearer {rep.api_token}" for r in rep.requests_to(prefix="/v1/"))


def test_replicate_module_level_client_and_tls_file_output(monkeypatch):
    with FakeReplicate(tls=True) as server:
        server.patch_client(monkeypatch)
        out = replicate.run("black-forest-labs/flux-dev", input={"prompt": "x", "num_outputs": 2,
                                                                 "output_format": "png"})
        assert [type(o).__name__ for o in out] == ["FileOutput", "FileOutput"]
        assert out[0].read().startswith(b"\x89PNG") and str(out[0]).startswith("https://127.0.0.1:")
    with FakeReplicate(output_mode="data") as server:
        out = server.client().run("black-forest-labs/flux-kontext-dev", input={"prompt": "x", "input_image": IMG})
        assert out.url.startswith("data:image/webp;base64,") and out.read()[:4] == b"RIFF"


def test_replicate_community_model_needs_version(rep):
    client = rep.client()
    with pytest.raises(ReplicateError) as err:
        client.run("lucataco/flux-dev-lora", input={"prompt": "x"})
    assert err.value.status == 404
    model = client.models.get("lucataco/flux-dev-lora")
    assert model.latest_version.id == rep.version_id("lucataco/flux-dev-lora")
    schema = model.latest_version.openapi_schema["components"]["schemas"]["Input"]
    assert schema["properties"] == REPLICATE_MODEL_SCHEMAS["lucataco/flux-dev-lora"]["input"]["properties"]
    out = client.run(rep.ref("stability-ai/sdxl"), input={"prompt": "x", "width": 512, "height": 768,
                                                           "negative_prompt": "scary"})
    assert Image.open(io.BytesIO(httpx.get(out[0]).content)).size == (128, 192)


def test_replicate_validation_errors_are_422(rep):
    client = rep.client()
    bad = {"prompt": "x", "image_input": [IMG] * 15, "resolution": "8K", "colour": "red"}
    with pytest.raises(ReplicateError) as err:
        client.run("google/nano-banana-pro", input=bad)
    assert err.value.status == 422 and err.value.title == "Input validation failed"
    assert "Additional property colour is not allowed" in err.value.detail
    assert "at most 14 items" in err.value.detail and "input.resolution" in err.value.detail
    with pytest.raises(ReplicateError, match="Invalid type"):
        client.run("black-forest-labs/flux-dev-lora", input={"prompt": "x", "lora_scale": "strong"})
    with pytest.raises(ReplicateError, match="safety_tolerance"):  # BFL cap once an image is given
        client.run("black-forest-labs/flux-kontext-pro", input={"prompt": "x", "input_image": IMG,
                                                                "safety_tolerance": 5})
    raw = httpx.post(f"{rep.url}/v1/models/google/nano-banana-pro/predictions", json={"input": {"promt": "x"}},
                     headers={"Authorization": f"Bearer {rep.api_token}"})
    assert raw.status_code == 422
    assert {f["type"] for f in raw.json()["invalid_fields"]} == {"additional_property_not_allowed", "required"}
    assert rep.created_predictions == []


def test_replicate_injected_429_and_poll_retry(rep):
    client = rep.client()
    rep.fail_next_creates = [429, 500]
    with pytest.raises(ReplicateError) as err:  # the client never retries POST
        client.predictions.create(model="google/nano-banana-pro", input={"prompt": "x"})
    assert err.value.status == 429
    with pytest.raises(ReplicateError) as err:
        client.predictions.create(model="google/nano-banana-pro", input={"prompt": "x"})
    assert err.value.status == 500
    rep.fail_next_creates = {"google/nano-banana-pro": [429]}
    raw = httpx.post(f"{rep.url}/v1/models/google/nano-banana-pro/predictions", json={"input": {"prompt": "x"}},
                     headers={"Authorization": f"Bearer {rep.api_token}"})
    assert raw.status_code == 429 and raw.headers["Retry-After"] == "0"
    rep.fail_next_polls = [429, 503]
    pred = client.predictions.create(model="google/nano-banana-pro", input={"prompt": "x"})
    pred.wait()  # GETs are retried by the client's RetryTransport
    assert pred.status == "succeeded" and len(rep.created_predictions) == 1


def test_replicate_refusals(rep):
    client = rep.client()
    rep.refuse_prompts_containing = ["monster"]
    with pytest.raises(ModelError) as err:
        client.run("google/nano-banana-pro", input={"prompt": "A MONSTER under the bed"})
    assert str(err.value) == E005 and err.value.prediction.status == "failed"
    with pytest.raises(ModelError, match="All generated images contained NSFW content"):
        client.run("black-forest-labs/flux-dev", input={"prompt": "monster"})
    rep.refuse_prompts_containing = []
    rep.refuse_first_n = 1
    with pytest.raises(ModelError):
        client.run("google/nano-banana-pro", input={"prompt": "kittens"})
    assert client.run("google/nano-banana-pro", input={"prompt": "kittens"}).endswith(".jpg")


def test_replicate_failed_predictions(rep):
    client = rep.client()
    rep.fail_next_predictions = [GENERIC_FAILURE, CUDA_OOM, INTERRUPTED]
    for text in (GENERIC_FAILURE, CUDA_OOM, INTERRUPTED):
        with pytest.raises(ModelError) as err:
            client.run("google/nano-banana-pro", input={"prompt": "kittens"})
        assert str(err.value) == text and err.value.prediction.status == "failed"
        assert f"Error: {text}" in client.predictions.get(err.value.prediction.id).logs
    assert client.run("google/nano-banana-pro", input={"prompt": "kittens"}).endswith(".jpg")  # knob used up
    rep.fail_next_predictions = {"black-forest-labs/flux-dev": [GENERIC_FAILURE]}  # per model
    assert client.run("google/nano-banana-pro", input={"prompt": "kittens"})
    with pytest.raises(ModelError, match="might have run out of memory"):
        client.run("black-forest-labs/flux-dev", input={"prompt": "kittens"})


def test_replicate_latency_cancel_and_crash(rep):
    client = rep.client()
    rep.latency_s = 0.3
    pred = client.predictions.create(model="black-forest-labs/flux-kontext-max",
                                     input={"prompt": "x", "input_image": IMG})
    seen = {pred.status}
    while pred.status not in ("succeeded", "failed", "canceled"):
        time.sleep(0.05)
        pred.reload()
        seen.add(pred.status)
    assert seen >= {"starting", "processing", "succeeded"}
    rep.latency_s, rep.never_finish = 0.0, True
    pred = client.predictions.create(model="google/nano-banana-pro", input={"prompt": "x"})
    pred.reload()
    assert pred.status == "processing"
    pred.cancel()
    assert pred.status == "canceled" and rep.cancelled == {pred.id}
    assert client.predictions.get(pred.id).status == "canceled"
    rep.never_finish = False
    rep.crash_after_create = 1
    with pytest.raises(httpx.TransportError):
        client.predictions.create(model="google/nano-banana-pro", input={"prompt": "lost"})
    lost = rep.created_predictions[-1]
    assert lost["input"]["prompt"] == "lost" and client.predictions.get(lost["id"]).status == "succeeded"


def test_replicate_output_ttl(rep):
    rep.output_ttl_s = 0.2
    url = rep.client().run("google/nano-banana-pro", input={"prompt": "x"})
    assert httpx.get(url).status_code == 200
    time.sleep(0.3)
    assert httpx.get(url).status_code == 404


def test_replicate_files_and_auth(rep, tmp_path):
    client = rep.client()
    f = client.files.create(io.BytesIO(b"hello"), filename="hello.txt", metadata={"k": "v"})
    assert f.size == 5 and f.metadata == {"k": "v"} and client.files.get(f.id).name == "hello.txt"
    ref = tmp_path / "ref.png"
    ref.write_bytes(b"\x89PNG...")
    client.run("google/nano-banana-pro", input={"prompt": "x", "image_input": [ref]})  # Path -> /v1/files
    sent = rep.created_predictions[-1]["input"]["image_input"][0]
    assert sent.startswith(f"{rep.url}/v1/files/")
    assert len(rep.requests_to("POST", "/v1/files")) == 2
    import hashlib
    assert [u["sha256"] for u in rep.uploads] == [hashlib.sha256(b).hexdigest() for b in (b"hello", b"\x89PNG...")]
    bad = replicate.Client(api_token="wrong", base_url=rep.url)
    with pytest.raises(ReplicateError) as err:
        bad.models.get("google/nano-banana-pro")
    assert err.value.status == 401


def test_replicate_training_end_to_end(rep, tmp_path):
    client = rep.client()
    client.models.create(owner="bookbug", name="style", visibility="private", hardware="gpu-t4")
    trainer = client.models.get("ostris/flux-dev-lora-trainer")
    zip_path = tmp_path / "style.zip"
    zip_path.write_bytes(_zip(3))
    training = client.trainings.create(model="ostris/flux-dev-lora-trainer", version=trainer.latest_version.id,
                                       input={"input_images": zip_path, "trigger_word": "BOOKBUG", "steps": 500},
                                       destination="bookbug/style")
    while training.status not in ("succeeded", "failed", "canceled"):
        time.sleep(0.02)
        training.reload()
    assert training.status == "succeeded" and training.destination == "bookbug/style"
    tar = tarfile.open(fileobj=io.BytesIO(httpx.get(training.output["weights"]).content))
    names = tar.getnames()
    path = REPLICATE_MODEL_SCHEMAS["ostris/flux-dev-lora-trainer"]["weights_path_in_tar"]
    assert path in names and "captions/img_2.txt" in names
    weights = tar.extractfile(path).read()
    header = json.loads(weights[8:8 + int.from_bytes(weights[:8], "little")])
    assert header["__metadata__"]["trigger_word"] == "BOOKBUG"
    out = client.run(training.output["version"], input={"prompt": "BOOKBUG fox", "go_fast": False})
    assert len(out) == 1 and client.models.get("bookbug/style").latest_version.id in training.output["version"]
    out = client.run(rep.ref("lucataco/flux-dev-lora"), input={"prompt": "x", "hf_lora": training.output["weights"]})
    assert len(out) == 1
    bad = client.trainings.create(model="ostris/flux-dev-lora-trainer", version=trainer.latest_version.id,
                                  input={"input_images": io.BytesIO(b"not a zip")}, destination="bookbug/style")
    while bad.status not in ("succeeded", "failed"):
        bad.reload()
    assert bad.error == "input_images must be a zip file"
    with pytest.raises(ReplicateError) as err:
        client.trainings.create(model="ostris/flux-dev-lora-trainer", version=trainer.latest_version.id,
                                input={"input_images": IMG}, destination="bookbug/missing")
    assert err.value.status == 404 and len(rep.created_trainings) == 2


def test_replicate_async_run(rep):
    out = asyncio.run(rep.client().async_run("black-forest-labs/flux-2-pro",
                                             input={"prompt": "x", "input_images": [IMG] * 8}))
    assert "/delivery/" in out


# --- fal ---------------------------------------------------------------------------------

def test_fal_subscribe_end_to_end(fal):
    fal.latency_s = 0.3
    updates = []
    result = fal_client.subscribe("fal-ai/flux-lora", {"prompt": "a ladybug", "image_size": "portrait_4_3",
                                                       "loras": [{"path": IMG, "scale": 0.9}]},
                                  with_logs=True, on_queue_update=updates.append, interval=0.05)
    kinds = {type(u).__name__ for u in updates}
    assert {"Queued", "InProgress"} <= kinds
    image = result["images"][0]
    assert result["has_nsfw_concepts"] == [False] and result["prompt"] == "a ladybug"
    assert (image["width"], image["height"]) == (192, 256) and image["content_type"] == "image/jpeg"
    assert httpx.get(image["url"]).content[:2] == b"\xff\xd8"
    nano = fal.client().subscribe("fal-ai/nano-banana-pro/edit", {"prompt": "x", "image_urls": [IMG, IMG]})
    assert set(nano) == {"images", "description"} and nano["images"][0]["file_name"] == "output_0.png"
    assert set(FAL_ENDPOINT_SCHEMAS) >= {"fal-ai/flux-2/edit", "fal-ai/flux-2-pro/edit",
                                         "fal-ai/flux-pro/kontext/multi", "fal-ai/flux-kontext/dev"}
    assert all(r.header("Authorization") == f"Key {fal.fal_key}" for r in fal.requests_to("POST"))


def test_fal_submit_status_result_and_subpath_urls(fal):
    handle = fal_client.submit("fal-ai/flux-pro/kontext", {"prompt": "x", "image_url": IMG})
    assert handle.status_url.endswith(f"/fal-ai/flux-pro/requests/{handle.request_id}/status")
    status = fal_client.status("fal-ai/flux-pro/kontext", handle.request_id, with_logs=True)
    assert type(status).__name__ == "Completed" and status.error is None
    assert fal_client.result("fal-ai/flux-pro/kontext", handle.request_id)["images"]
    wrong = httpx.get(f"{fal.url}/fal-ai/flux-pro/kontext/requests/{handle.request_id}",
                      headers={"Authorization": f"Key {fal.fal_key}"})
    assert wrong.status_code == 405
    assert fal_client.run("fal-ai/flux-2", {"prompt": "x"})["images"] and len(fal.sync_runs) == 1


def test_fal_validation_422(fal):
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.subscribe("fal-ai/flux-pro/kontext/multi", {"prompt": "x", "image_url": IMG})
    assert err.value.status_code == 422
    kinds = {d["type"] for d in err.value.message}
    assert kinds == {"extra_forbidden", "missing"}
    assert len(fal.submitted) == 1  # accepted by the queue, rejected by the app
    fal.validation_stage = "submit"
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.submit("fal-ai/flux-lora", {"prompt": "x", "loras": [{"path": IMG, "weight": 1}]})
    assert err.value.message[0]["loc"] == ["body", "loras", 0, "weight"] and len(fal.submitted) == 1


def test_fal_injected_errors_and_crash(fal):
    fal.fail_next_submits, fal.fail_next_polls = [429, 429], [429]
    assert fal_client.subscribe("fal-ai/flux-2", {"prompt": "x"})["images"]  # the client retries 429
    assert len(fal.requests_to("POST", "/fal-ai/flux-2")) == 3 and len(fal.submitted) == 1
    assert fal.fail_next_polls == []
    fal.fail_next_submits = [500]
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.submit("fal-ai/flux-2", {"prompt": "x"})
    assert err.value.status_code == 500 and err.value.error_type == "internal_error"
    fal.crash_after_submit = 1
    assert fal_client.subscribe("fal-ai/flux-2", {"prompt": "dup"})["images"]
    assert [s["input"]["prompt"] for s in fal.submitted].count("dup") == 2  # a retried submit duplicates


def test_fal_failed_requests(fal):
    fal.fail_next_requests = [MODEL_CRASH, RUNNER_DISCONNECTED]
    crash = fal_client.submit("fal-ai/flux-2", {"prompt": "x"})
    status = crash.status()
    assert type(status).__name__ == "Completed" and status.error_type == "internal_server_error"
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        crash.get()
    assert err.value.status_code == 500 and err.value.message[0]["type"] == "internal_server_error"
    assert "x-fal-retryable" not in {k.lower() for k in err.value.response_headers}
    with pytest.raises(fal_client.FalClientHTTPError) as err:  # the request error dialect
        fal_client.subscribe("fal-ai/flux-2", {"prompt": "x"})
    assert err.value.status_code == 503 and err.value.error_type == "runner_disconnected"
    assert isinstance(err.value.message, str)
    assert fal_client.subscribe("fal-ai/flux-2", {"prompt": "x"})["images"]  # knob used up
    assert len(fal.submitted) == 3


def test_fal_refusals(fal):
    fal.refuse_prompts_containing = ["monster"]
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.subscribe("fal-ai/nano-banana-pro", {"prompt": "a monster"})
    assert err.value.status_code == 422 and err.value.message[0]["type"] == "content_policy_violation"
    handle = fal_client.submit("fal-ai/flux-pro/kontext", {"prompt": "monster", "image_url": IMG})
    assert handle.status().error_type == "content_policy_violation"
    fal.refusal_mode = "nsfw"
    result = fal_client.subscribe("fal-ai/flux-lora", {"prompt": "monster", "output_format": "png"})
    assert result["has_nsfw_concepts"] == [True]
    img = Image.open(io.BytesIO(httpx.get(result["images"][0]["url"]).content))
    assert img.getextrema() == ((0, 0), (0, 0), (0, 0))
    fal.refusal_mode, fal.refuse_prompts_containing, fal.refuse_first_n = "submit", [], 1
    with pytest.raises(fal_client.FalClientHTTPError):
        fal_client.submit("fal-ai/flux-2", {"prompt": "kittens"})
    assert fal_client.subscribe("fal-ai/flux-2", {"prompt": "kittens"})["images"]


def test_fal_cancel_and_ttl(fal):
    fal.never_finish = True
    handle = fal_client.submit("fal-ai/flux-2-pro", {"prompt": "x"})
    time.sleep(0.02)
    assert type(handle.status()).__name__ == "InProgress"
    handle.cancel()
    status = handle.status()
    assert status.error_type == "client_cancelled" and fal.cancelled == {handle.request_id}
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        handle.cancel()
    assert err.value.status_code == 400
    with pytest.raises(fal_client.FalClientTimeoutError):
        fal_client.subscribe("fal-ai/flux-2", {"prompt": "x"}, client_timeout=1.1)
    fal.never_finish, fal.output_ttl_s = False, 0.2
    url = fal_client.subscribe("fal-ai/flux-2", {"prompt": "x"})["images"][0]["url"]
    assert httpx.get(url).status_code == 200
    time.sleep(0.3)
    assert httpx.get(url).status_code == 404


def test_fal_uploads(fal, tmp_path):
    path = tmp_path / "ref.png"
    path.write_bytes(b"\x89PNG-upload")
    url = fal_client.upload_file(path)
    assert httpx.get(url).content == b"\x89PNG-upload"
    via_storage = fal.client().upload(b"abc", "text/plain", file_name="a.txt", repository="fal")
    assert httpx.get(via_storage).content == b"abc"
    assert [u["via"] for u in fal.uploads] == ["cdn", "storage"]
    import hashlib
    assert [u["sha256"] for u in fal.uploads] == [hashlib.sha256(b).hexdigest() for b in (b"\x89PNG-upload", b"abc")]
    img_url = fal_client.upload_image(Image.new("RGB", (8, 8)))
    assert httpx.get(img_url).headers["content-type"] == "image/jpeg"


def test_fal_training(fal):
    good = fal_client.upload(_zip(4), "application/zip", file_name="style.zip")
    result = fal_client.subscribe("fal-ai/flux-lora-fast-training",
                                  {"images_data_url": good, "trigger_word": "BOOKBUG", "is_style": True})
    lora = result["diffusers_lora_file"]
    assert lora["file_name"].endswith(".safetensors") and httpx.get(lora["url"]).status_code == 200
    assert httpx.get(result["config_file"]["url"]).json()["is_style"] is True
    small = fal_client.upload(_zip(2), "application/zip", file_name="small.zip")
    with pytest.raises(fal_client.FalClientHTTPError) as err:
        fal_client.subscribe("fal-ai/flux-lora-fast-training", {"images_data_url": small})
    assert err.value.message[0]["type"] == "archive_file_count_below_minimum"


def test_fal_env_only_in_subprocess_with_tls():
    with FakeFal(tls=True) as server:
        code = ("import fal_client; r = fal_client.subscribe('fal-ai/flux-2', {'prompt': 'x'}); "
                "print(r['images'][0]['url']); print(fal_client.run('fal-ai/flux-2', {'prompt': 'y'})['seed'])")
        env = {**os.environ, **server.client_env()}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"https://127.0.0.1:{server.port}/files/out/")
        assert len(server.submitted) == 1 and len(server.sync_runs) == 1


def test_uploads_with_latency_all_arrive_from_concurrent_clients(rep, fal):
    """Their overlap (the point of the latency) is shown by the providers' upload-race tests, which would
    otherwise not race; timing it here would make CI flaky on a shared machine."""
    from concurrent.futures import ThreadPoolExecutor

    rep.upload_latency_s = fal.upload_latency_s = 0.3
    client = rep.client()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: client.files.create(io.BytesIO(b"ref %d" % i), filename=f"{i}.txt"), range(4)))
    assert len(rep.uploads) == 4 and len({u["sha256"] for u in rep.uploads}) == 4
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: fal_client.upload(b"ref %d" % i, "text/plain", file_name=f"{i}.txt"), range(4)))
    assert len(fal.uploads) == 4 and len({u["sha256"] for u in fal.uploads}) == 4
