"""The local provider on tiny random FLUX, Kontext and SDXL pipelines (CPU, offline)."""

import hashlib
import io

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from PIL import Image  # noqa: E402

from bookbug_assets.providers._local_pipelines import TINY_RANDOM, fit_to_area, stitch_side_by_side  # noqa: E402
from bookbug_assets.providers.base import (  # noqa: E402
    ConfigurationError,
    ImageRequest,
    JobGone,
    LoraRef,
    ReferenceImage,
)
from bookbug_assets.providers.local_diffusers import LocalDiffusersProvider, model_source  # noqa: E402

pytestmark = pytest.mark.local_gpu


def make_provider(cache, **kwargs) -> LocalDiffusersProvider:
    return LocalDiffusersProvider(model_dir=TINY_RANDOM, device="cpu", num_inference_steps=2,
                                  max_sequence_length=32, pipeline_cache=cache, **kwargs)


def request(model: str, *, width: int = 64, height: int = 64, seed: int = 7, **kwargs) -> ImageRequest:
    return ImageRequest(provider="local", model=model, kind="page", prompt="a ladybug reads under a mushroom",
                        width=width, height=height, seed=seed, **kwargs)


def render(provider, req, refs=None) -> bytes:
    job = provider.submit(req, refs or {})
    return provider.wait(job, req, deadline_s=60).image


def png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def ref_png(size, color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_flux_returns_requested_size_and_is_seeded(pipeline_cache):
    provider = make_provider(pipeline_cache)
    a = render(provider, request("flux-dev", width=96, height=64))
    assert png(a).size == (96, 64) and png(a).format == "PNG"
    assert render(provider, request("flux-dev", width=96, height=64)) == a
    assert render(provider, request("flux-dev", width=96, height=64, seed=8)) != a


def test_size_not_a_multiple_of_the_patch_is_resized_to_the_ask(pipeline_cache):
    provider = make_provider(pipeline_cache)
    assert png(render(provider, request("flux-dev", width=70, height=66))).size == (70, 66)


def test_kontext_stitches_references_and_keeps_the_asked_size(pipeline_cache):
    provider = make_provider(pipeline_cache)
    refs = {"a" * 64: ref_png((64, 64), "red"), "b" * 64: ref_png((32, 48), "blue")}
    req = request("flux-kontext-dev", width=64, height=96, references=(
        ReferenceImage(role="sprite_sheet", sha256="a" * 64, key="k/a"),
        ReferenceImage(role="hero_page", sha256="b" * 64, key="k/b")))
    job = provider.submit(req, refs)
    out = provider.wait(job, req, deadline_s=60)
    # Asked size, not Kontext's silent 1024x1024 default (max_area is passed).
    assert png(out.image).size == (64, 96)
    assert out.extra["generated_size"] == [64, 96]
    assert provider.capabilities("flux-kontext-dev").max_references == 1


def test_kontext_missing_reference_bytes_is_a_configuration_error(pipeline_cache):
    provider = make_provider(pipeline_cache)
    req = request("flux-kontext-dev", references=(ReferenceImage(role="style", sha256="c" * 64, key="k/c"),))
    with pytest.raises(ConfigurationError):
        provider.submit(req, {})


def test_sdxl_returns_requested_size(pipeline_cache):
    provider = make_provider(pipeline_cache)
    out = render(provider, request("sdxl", width=64, height=80, negative_prompt="blurry"))
    assert png(out).size == (64, 80)


def test_pipelines_load_once_and_are_shared(pipeline_cache):
    first = make_provider(pipeline_cache)
    second = make_provider(pipeline_cache)
    assert first.pipeline("flux-dev") is second.pipeline("flux-dev")
    assert first.spec("flux-dev").dtype == "float32"  # float32 on CPU, bf16 on CUDA


def test_capabilities_and_refusals(pipeline_cache):
    provider = make_provider(pipeline_cache)
    assert set(provider.models()) == {"flux-dev", "flux-kontext-dev", "sdxl"}
    assert provider.capabilities("flux-dev").lora_family == "flux1"
    assert provider.capabilities("sdxl").lora_family == "sdxl"
    with pytest.raises(ConfigurationError):
        provider.capabilities("flux-pro")
    sdxl_lora = LoraRef(name="x", family="sdxl", sha256="0" * 64)
    with pytest.raises(ConfigurationError):
        provider.submit(request("flux-dev", lora=sdxl_lora), {})
    flux_lora = LoraRef(name="x", family="flux1", sha256="0" * 64)
    with pytest.raises(ConfigurationError, match="lora_path_resolver"):
        provider.submit(request("flux-dev", lora=flux_lora), {})
    with pytest.raises(JobGone):
        provider.wait("local-unknown", request("flux-dev"), deadline_s=1)
    with pytest.raises(ConfigurationError):
        LocalDiffusersProvider(offload="disk")


def test_lora_hash_is_checked(pipeline_cache, tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not the pinned weights")
    provider = make_provider(pipeline_cache, lora_path_resolver=lambda lora: str(weights))
    lora = LoraRef(name="style", family="flux1", sha256=hashlib.sha256(b"other").hexdigest())
    with pytest.raises(ConfigurationError, match="hash"):
        provider.submit(request("flux-dev", lora=lora), {})


def test_model_dir_resolution(tmp_path):
    (tmp_path / "FLUX.1-dev").mkdir()
    assert model_source(str(tmp_path), "flux") == str(tmp_path / "FLUX.1-dev")
    assert model_source(str(tmp_path), "sdxl") == "stabilityai/stable-diffusion-xl-base-1.0"
    assert model_source(TINY_RANDOM, "flux_kontext") == TINY_RANDOM


def test_stitch_and_fit():
    strip = stitch_side_by_side([Image.new("RGB", (64, 64)), Image.new("RGB", (32, 64))], 64)
    assert strip.size == (96, 64)
    fitted = fit_to_area(strip, 64 * 64, 16)
    assert fitted.width % 16 == 0 and fitted.height % 16 == 0 and fitted.width * fitted.height <= 64 * 64
