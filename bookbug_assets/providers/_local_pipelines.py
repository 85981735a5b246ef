"""Pipelines behind the local provider: device and dtype choice, loading, speed options, the cache.

torch, diffusers and transformers are imported inside the functions: the registry imports the provider
module only when the local backend is chosen, and `bookbug_assets.definitions` never pays for torch.
Apart from `_tiny_models` this module imports nothing from the package, so the GPU benchmark can load it
on a machine that has torch but not the Dagster stack.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

# Model source meaning "build random tiny components in memory": no download, no files (tests, CI).
from bookbug_assets.providers.local_options import (  # noqa: F401 - the names live torch-free
    ATTENTION_BACKENDS, OFFLOAD_MODES, PIPELINE_KINDS, QUANTIZE_MODES, TINY_RANDOM,
)

_DIFFUSERS_BACKEND = {"native": "native", "flash": "_native_flash", "efficient": "_native_efficient",
                      "math": "_native_math", "cudnn": "_native_cudnn"}

# FLUX.1-dev's transformer shape: 11.9 B parameters; used by the GPU benchmark.
FLUX_DEV_TRANSFORMER_CONFIG: dict[str, Any] = dict(
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56))


def resolve_device(device: str) -> str:
    """"auto" picks CUDA when present; anything else is passed through to torch."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """bf16 on CUDA (the weights' native precision), float32 on CPU (CPU bf16 kernels are slow or missing)."""
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def resolve_attention_backend(backend: str, device: str, dtype: str, *, training: bool = False,
                              capability: tuple[int, int] | None = None) -> str:
    """Pick an SDPA backend explicitly on CUDA; on CPU the default (math / CPU flash) is all there is.

    Inference on Hopper gets cuDNN attention: on an H200 it was 12 % faster than flash over 28 steps at
    1024x1024 (3.80 vs 4.33 s compiled, benchmarks/RESULTS.md). Training never does: cuDNN's backward crashed.
    `capability` is the card's (major, minor), looked up when not given.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, not {backend!r}")
    if backend == "cudnn" and training:
        raise ValueError("cuDNN attention is for inference only: its backward pass crashes")
    if backend != "auto":
        return backend
    if not device.startswith("cuda"):
        return "native"
    if capability is None:
        import torch

        capability = torch.cuda.get_device_capability(device)
    half = dtype in ("bfloat16", "float16")
    if capability[0] == 9 and half and not training:
        return "cudnn"
    # Flash needs sm80+ and half precision; memory-efficient attention covers the rest (both have a backward).
    return "flash" if capability[0] >= 8 and half else "efficient"


def set_attention_backend(model: Any, backend: str) -> None:
    """Route every attention call of a diffusers model to one named SDPA kernel."""
    if backend == "native":
        return
    import logging

    # diffusers logs an "experimental feature" warning on every call; it is noise in our logs.
    logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)
    model.set_attention_backend(_DIFFUSERS_BACKEND[backend])


@dataclass(frozen=True)
class PipelineSpec:
    """Everything that makes two loaded pipelines different; the cache key."""

    kind: str  # one of PIPELINE_KINDS
    source: str  # hub id, local folder, or TINY_RANDOM
    device: str = "cpu"
    dtype: str = "float32"
    offload: str = "none"
    attention_backend: str = "native"
    compile: bool = False
    compile_scope: str = "blocks"  # "blocks": one graph per repeated block type; "model": the whole transformer
    compile_mode: str | None = None  # torch.compile mode, e.g. "max-autotune-no-cudagraphs"
    fuse_qkv: bool = False
    quantize: str = "none"  # one of QUANTIZE_MODES
    step_cache: float = 0.0  # First Block Cache threshold; 0 = every step runs every block
    seed: int = 0  # only used by TINY_RANDOM, so tests can rebuild the same random base


class PipelineCache:
    """Loaded pipelines by spec. One per process, owned by whoever builds providers and passed in;
    a 24 GB FLUX transformer must be loaded once per run, not once per page."""

    def __init__(self) -> None:
        self._pipes: dict[PipelineSpec, Any] = {}
        self._in_use: dict[PipelineSpec, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, spec: PipelineSpec, build: Callable[[PipelineSpec], Any] | None = None) -> Any:
        with self._lock:
            if spec not in self._pipes:
                self._pipes[spec] = (build or load_pipeline)(spec)
            return self._pipes[spec]

    def in_use(self, spec: PipelineSpec) -> threading.Lock:
        """Held while a pipeline draws: its LoRA state and the card are shared by every provider using it."""
        with self._lock:
            return self._in_use.setdefault(spec, threading.Lock())

    def put(self, spec: PipelineSpec, pipe: Any) -> None:
        """Register an already built pipeline (the benchmark's random FLUX.1-dev-shaped one)."""
        with self._lock:
            self._pipes[spec] = pipe

    def clear(self) -> None:
        with self._lock:
            self._pipes.clear()

    def __len__(self) -> int:
        return len(self._pipes)


# Pipelines this process has loaded. Deliberately process-wide: Dagster copies a resource for every run and a CLI
# or test process runs several, so a per-resource cache would load the 24 GB transformer once per run.
PROCESS_PIPELINES = PipelineCache()


def load_pipeline(spec: PipelineSpec) -> Any:
    """Build (TINY_RANDOM) or load a pipeline, place it, and apply the speed options."""
    check_speed_options(spec)
    import diffusers

    cls = {"flux": diffusers.FluxPipeline, "flux_kontext": diffusers.FluxKontextPipeline,
           "sdxl": diffusers.StableDiffusionXLPipeline}[spec.kind]
    dtype = torch_dtype(spec.dtype)
    if spec.source == TINY_RANDOM:
        from bookbug_assets.providers._tiny_models import build_tiny_flux_components, build_tiny_sdxl_components

        parts = build_tiny_sdxl_components(spec.seed) if spec.kind == "sdxl" else build_tiny_flux_components(spec.seed)
        pipe = cls(**parts)
        if spec.dtype != "float32":  # built in float32; casting a float32 model to float32 only logs noise
            pipe.to(dtype=dtype)
    else:
        extra = {"add_watermarker": False} if spec.kind == "sdxl" else {}
        pipe = cls.from_pretrained(spec.source, torch_dtype=dtype, **extra)
    place_pipeline(pipe, spec)
    return pipe


def place_pipeline(pipe: Any, spec: PipelineSpec) -> None:
    """Apply the speed options and move to the device (or set up CPU offload for cards under ~34 GB)."""
    if spec.offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {OFFLOAD_MODES}, not {spec.offload!r}")
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    if spec.fuse_qkv and hasattr(denoiser, "fuse_qkv_projections"):
        denoiser.fuse_qkv_projections()
    # Quantized while still on the CPU, layer by layer onto the card: the bf16 transformer never sits there
    # whole, which is the point on a 24 GB card.
    quantize_denoiser(denoiser, spec.quantize, spec.device)
    if spec.offload == "none" or not spec.device.startswith("cuda"):
        pipe.to(spec.device)
    elif spec.offload == "model":
        pipe.enable_model_cpu_offload(device=spec.device)
    else:
        pipe.enable_sequential_cpu_offload(device=spec.device)
    pipe.set_progress_bar_config(disable=True)
    set_attention_backend(denoiser, spec.attention_backend)
    if spec.step_cache > 0:
        enable_step_cache(denoiser, spec.step_cache)
    if spec.compile:
        compile_denoiser(denoiser, spec.compile_scope, spec.compile_mode)


def check_speed_options(spec: PipelineSpec, capability: tuple[int, int] | None = None) -> None:
    """Refuse combinations that would fail deep inside a run (or silently do nothing) before anything loads."""
    if spec.quantize not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES}, not {spec.quantize!r}")
    if spec.quantize == "fp8":
        if not spec.device.startswith("cuda"):
            raise ValueError("quantize='fp8' needs a CUDA card with fp8 tensor cores (sm89+: Ada, Hopper); "
                             "use 'fp8-weight' to save memory elsewhere")
        if capability is None:
            import torch

            capability = torch.cuda.get_device_capability(spec.device)
        if capability < (8, 9):
            raise ValueError(f"quantize='fp8' needs sm89+ (Ada, Hopper); this card is sm{capability[0]}{capability[1]}")
    if spec.quantize != "none" and spec.offload == "sequential":
        # Sequential offload keeps weights as placeholders between layers; fp8 weights fit a 24 GB card with
        # model offload instead.
        raise ValueError("quantize cannot be combined with offload='sequential'; use offload='model'")
    if spec.quantize != "none" and importlib.util.find_spec("torchao") is None:
        raise ValueError(f"quantize={spec.quantize!r} needs torchao (part of the [local] extra)")
    if spec.step_cache < 0:
        raise ValueError(f"step_cache must be >= 0 (0 = off), not {spec.step_cache}")
    if spec.step_cache > 0 and spec.kind == "sdxl":
        raise ValueError("step_cache (First Block Cache) works on the FLUX transformers, not on SDXL's UNet")
    if spec.step_cache > 0 and spec.compile:
        # The cache decides per step, in Python, whether to run the remaining blocks: a graph break that
        # fullgraph compilation refuses.
        raise ValueError("step_cache cannot be combined with compile; choose one")


def quantize_denoiser(denoiser: Any, mode: str, device: str) -> None:
    """torchao fp8 on the denoiser's linear layers, in place: lossy, like any fp8."""
    if mode == "none":
        return
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig, Float8WeightOnlyConfig, PerRow, quantize_,
    )

    config = (Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()) if mode == "fp8"
              else Float8WeightOnlyConfig())
    # With a CUDA device torchao moves each layer there and quantizes it, one at a time.
    quantize_(denoiser, config, filter_fn=_fp8_friendly_linear,
              device=device if device.startswith("cuda") else None)


def fp8_linear_count(model: Any) -> int:
    """How many of the model's layers hold torchao fp8 weights (0 for a model quantize_denoiser left alone)."""
    return sum(type(getattr(m, "weight", None)).__name__ == "Float8Tensor" for m in model.modules())


def _fp8_friendly_linear(module: Any, fqn: str) -> bool:
    """Linear layers whose sides fp8 matmul kernels accept (multiples of 16); the tiny embedders stay as they are."""
    import torch

    return (isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0
            and module.out_features % 16 == 0)


def enable_step_cache(denoiser: Any, threshold: float) -> None:
    """First Block Cache: skip the remaining blocks on steps whose first-block residual barely changed.

    Lossy: 2-3.5x published at some quality cost; `threshold` ~0.05-0.12 for FLUX.1-dev.
    """
    from diffusers import FirstBlockCacheConfig

    denoiser.enable_cache(FirstBlockCacheConfig(threshold=threshold))


def compile_denoiser(denoiser: Any, scope: str, mode: str | None) -> None:
    """torch.compile in place (the pipeline keeps the same module object, so LoRA loading still works).

    "blocks" compiles each repeated block type once (~15 s warm-up for FLUX.1-dev on an H200); "model"
    compiles the whole transformer, which lets inductor fuse across block boundaries but warms up longer.
    """
    if scope == "blocks":
        denoiser.compile_repeated_blocks(fullgraph=True, mode=mode)
    elif scope == "model":
        denoiser.compile(fullgraph=True, mode=mode)
    else:
        raise ValueError(f"compile scope must be 'blocks' or 'model', not {scope!r}")


def uncompile(denoiser: Any) -> None:
    """Undo compile_denoiser (nn.Module.compile only sets _compiled_call_impl); dynamo's caches stay."""
    for module in denoiser.modules():
        module._compiled_call_impl = None


def with_spec(spec: PipelineSpec, **changes: Any) -> PipelineSpec:
    return replace(spec, **changes)


# ---------------------------------------------------------------------------------------------------
# Reference images for Kontext, which edits exactly one input image.

def stitch_side_by_side(images: list[Any], height: int) -> Any:
    """Scale every reference to one height and paste them left to right (the usual Kontext workaround)."""
    from PIL import Image

    scaled = [im.convert("RGB").resize((max(1, round(im.width * height / im.height)), height), Image.LANCZOS)
              for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in scaled), height), "white")
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width
    return canvas


def fit_to_area(image: Any, max_area: int, multiple: int) -> Any:
    """Resize keeping the aspect ratio so width*height <= max_area, both sides multiples of `multiple`."""
    from PIL import Image

    aspect = image.width / image.height
    width = max(multiple, int((max_area * aspect) ** 0.5) // multiple * multiple)
    height = max(multiple, int((max_area / aspect) ** 0.5) // multiple * multiple)
    return image.resize((width, height), Image.LANCZOS)
