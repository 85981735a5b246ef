"""The local provider's speed options: attention choice per card, fp8 quantization, First Block Cache (CPU, tiny)."""

import hashlib
import io

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bookbug_assets.providers._local_pipelines import (  # noqa: E402
    TINY_RANDOM,
    PipelineSpec,
    check_speed_options,
    resolve_attention_backend,
)
from bookbug_assets.providers.base import ConfigurationError, ImageRequest, LoraRef  # noqa: E402
from bookbug_assets.providers.local_diffusers import LocalDiffusersProvider  # noqa: E402

pytestmark = pytest.mark.local_gpu

HOPPER, AMPERE, TURING, ADA = (9, 0), (8, 0), (7, 5), (8, 9)


def provider(cache, **kwargs) -> LocalDiffusersProvider:
    return LocalDiffusersProvider(model_dir=TINY_RANDOM, device="cpu", num_inference_steps=4,
                                  max_sequence_length=32, pipeline_cache=cache, **kwargs)


def render(p: LocalDiffusersProvider, lora: LoraRef | None = None):
    req = ImageRequest(provider="local", model="flux-dev", kind="page", prompt="a ladybug reads by lantern light",
                       width=64, height=64, seed=3, lora=lora)
    return p.wait(p.submit(req, {}), req, deadline_s=60)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float)


@pytest.mark.parametrize(("capability", "dtype", "training", "expected"), [
    (HOPPER, "bfloat16", False, "cudnn"),  # inference on Hopper: measured 12 % faster than flash
    (HOPPER, "bfloat16", True, "flash"),  # never cuDNN for a backward pass
    (AMPERE, "bfloat16", False, "flash"),
    (ADA, "float16", False, "flash"),
    (HOPPER, "float32", False, "efficient"),  # flash and cuDNN need half precision
    (TURING, "float16", False, "efficient"),
])
def test_auto_attention_backend_per_card(capability, dtype, training, expected):
    assert resolve_attention_backend("auto", "cuda", dtype, training=training, capability=capability) == expected


def test_attention_backend_refusals():
    assert resolve_attention_backend("auto", "cpu", "float32") == "native"
    assert resolve_attention_backend("math", "cuda", "bfloat16", capability=HOPPER) == "math"
    with pytest.raises(ValueError, match="inference only"):
        resolve_attention_backend("cudnn", "cuda", "bfloat16", training=True, capability=HOPPER)
    with pytest.raises(ValueError, match="attention_backend"):
        resolve_attention_backend("sage", "cuda", "bfloat16", capability=HOPPER)


@pytest.mark.parametrize(("changes", "capability", "message"), [
    (dict(quantize="fp8"), None, "CUDA card"),
    (dict(quantize="fp8", device="cuda"), AMPERE, "sm80"),
    (dict(quantize="int3"), None, "quantize must be"),
    (dict(step_cache=0.1, compile=True), None, "compile"),
    (dict(step_cache=0.1, kind="sdxl"), None, "SDXL"),
    (dict(step_cache=-1.0), None, ">= 0"),
    (dict(quantize="fp8-weight", offload="sequential"), None, "sequential"),
])
def test_speed_option_combinations_refused_before_loading(changes, capability, message):
    spec = PipelineSpec(**{**dict(kind="flux", source=TINY_RANDOM), **changes})
    with pytest.raises(ValueError, match=message):
        check_speed_options(spec, capability=capability)


def test_fp8_allowed_on_ada_and_hopper():
    for capability in (ADA, HOPPER):
        check_speed_options(PipelineSpec(kind="flux", source=TINY_RANDOM, device="cuda", quantize="fp8"),
                            capability=capability)


def test_provider_turns_a_refused_option_into_a_configuration_error(pipeline_cache):
    with pytest.raises(ConfigurationError, match="fp8"):
        render(provider(pipeline_cache, quantize="fp8"))  # this CPU has no fp8 tensor cores
    with pytest.raises(ConfigurationError, match="quantize"):
        provider(pipeline_cache, quantize="nf4")


@pytest.fixture(scope="module")
def style_lora_file(tmp_path_factory):
    import torch

    from bookbug_assets.providers._tiny_models import build_tiny_flux_components
    from bookbug_assets.training.local import flux_lora

    transformer = build_tiny_flux_components(0)["transformer"]
    params = flux_lora.add_lora(transformer, rank=4)
    with torch.no_grad():
        for p in params:
            p.normal_(0.0, 0.3)
    path = tmp_path_factory.mktemp("lora") / "style.safetensors"
    sha = flux_lora.save_lora_file(transformer, str(path), dtype="float32")
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()
    return path, LoraRef(name="style", family="flux1", sha256=sha, key="loras/style")


def test_fp8_weights_render_close_to_full_precision_and_take_a_lora(pipeline_cache, style_lora_file):
    from torchao.quantization import Float8Tensor

    plain = render(provider(pipeline_cache))
    fp8 = provider(pipeline_cache, quantize="fp8-weight")
    quantized = render(fp8)
    assert quantized.extra["quantize"] == "fp8-weight"
    assert isinstance(fp8.pipeline("flux-dev").transformer.transformer_blocks[0].attn.to_q.weight, Float8Tensor)
    diff = np.abs(pixels(quantized.image) - pixels(plain.image)).mean()
    assert 0 < diff < 8, diff  # lossy, but the same picture (0.6 of 255 measured)

    # A style LoRA still applies on top of fp8 base weights (peft wraps the torchao linear).
    path, lora = style_lora_file
    with_lora = provider(pipeline_cache, quantize="fp8-weight", lora_path_resolver=lambda _: str(path))
    styled = render(with_lora, lora)
    assert styled.extra["lora_adapter"] and styled.image != quantized.image


def test_first_block_cache_skips_the_remaining_blocks(pipeline_cache):
    def full_block_runs(p: LocalDiffusersProvider) -> tuple[int, bytes]:
        # The last block's inner projection runs only when the block really computes; a hook on the block itself
        # would fire for cached steps too (the cache swaps the block's forward, not its __call__).
        calls = []
        last = p.pipeline("flux-dev").transformer.single_transformer_blocks[-1].proj_out
        handle = last.register_forward_hook(lambda *_: calls.append(1))
        try:
            image = render(p).image
            return len(calls), image
        finally:
            handle.remove()

    full, plain = full_block_runs(provider(pipeline_cache))
    cached, approx = full_block_runs(provider(pipeline_cache, step_cache=10.0))
    strict, exact = full_block_runs(provider(pipeline_cache, step_cache=1e-6))
    assert full == 4  # one per step
    assert cached < full and approx != plain  # steps skipped: faster, and lossy
    assert strict == 4 and exact == plain  # a threshold nothing passes changes nothing
    assert pixels(approx).shape == (64, 64, 3)


def test_lossy_options_change_the_variant_exact_ones_do_not(pipeline_cache):
    assert provider(pipeline_cache).capabilities("flux-dev").variant == ""
    assert provider(pipeline_cache, fuse_qkv=True, attention_backend="math").capabilities("flux-dev").variant == ""
    assert provider(pipeline_cache, quantize="fp8-weight").capabilities("flux-dev").variant == "quantize=fp8-weight"
    assert provider(pipeline_cache, step_cache=0.1).capabilities("flux-kontext-dev").variant == "step_cache=0.1"


def test_compiled_pipelines_match_eager_and_switch_loras(pipeline_cache, style_lora_file):
    """torch.compile (inductor on the CPU here) with fused QKV or fp8 weights, then a LoRA on and off again."""
    path, lora = style_lora_file

    def three_pages(**options):
        p = provider(pipeline_cache, lora_path_resolver=lambda _: str(path), **options)
        return [pixels(render(p, lo).image) for lo in (None, lora, None)]

    plain, styled, plain_again = three_pages()
    assert np.abs(styled - plain).mean() > 1  # the LoRA changes the picture
    compiled = three_pages(compile=True, fuse_qkv=True)  # fused QKV is unfused for the LoRA, then recompiled
    for got, want in zip(compiled, (plain, styled, plain_again), strict=True):
        assert np.abs(got - want).max() <= 2
    fp8 = three_pages(compile=True, quantize="fp8-weight")
    assert np.abs(fp8[0] - plain).mean() < 8 and np.abs(fp8[1] - styled).mean() < 8  # lossy, same pictures
    assert np.abs(fp8[1] - fp8[0]).mean() > 1 and np.array_equal(fp8[2], fp8[0])


@pytest.mark.parametrize(("model", "options"), [
    ("flux-kontext-dev", dict(quantize="fp8-weight")),
    ("flux-kontext-dev", dict(step_cache=10.0)),
    ("sdxl", dict(quantize="fp8-weight")),
])
def test_options_work_for_every_model_they_claim(pipeline_cache, model, options):
    from bookbug_assets.providers.base import ReferenceImage

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, format="PNG")
    refs = (ReferenceImage(role="sprite_sheet", sha256="a" * 64, key="k/a"),) if model != "sdxl" else ()
    p = provider(pipeline_cache, **options)
    req = ImageRequest(provider="local", model=model, kind="page", prompt="a beetle", width=64, height=80, seed=5,
                       references=refs)
    out = p.wait(p.submit(req, {"a" * 64: buf.getvalue()}), req, deadline_s=60)
    assert Image.open(io.BytesIO(out.image)).size == (64, 80)
    assert p.capabilities(model).variant  # and it is a lossy variant
