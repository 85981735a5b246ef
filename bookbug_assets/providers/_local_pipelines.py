"""Pipelines behind the local provider: device and dtype choice, loading, offline tiny models, the cache.

torch, diffusers and transformers are imported inside the functions: the lead's registry imports the
provider module only when the local backend is chosen, and `bookbug_assets.definitions` never pays
for torch. This module imports nothing from the package either, so the GPU benchmark can load it on a
machine that has torch but not the Dagster stack.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any, Callable

# Model source meaning "build random tiny components in memory": no download, no files (tests, CI).
TINY_RANDOM = "tiny-random"

PIPELINE_KINDS = ("flux", "flux_kontext", "sdxl")
OFFLOAD_MODES = ("none", "model", "sequential")
# Names accepted for `attention_backend`. cuDNN attention is offered for inference only: its backward
# pass crashed with an illegal memory access on an H200 (reference notes §3.6), so the trainer refuses it.
ATTENTION_BACKENDS = ("auto", "native", "flash", "efficient", "math", "cudnn")
_DIFFUSERS_BACKEND = {"native": "native", "flash": "_native_flash", "efficient": "_native_efficient",
                      "math": "_native_math", "cudnn": "_native_cudnn"}

# FLUX.1-dev's transformer shape (reference §2.4: 11.9 B parameters); used by the GPU benchmark.
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


def resolve_attention_backend(backend: str, device: str, dtype: str) -> str:
    """Pick an SDPA backend explicitly on CUDA; on CPU the default (math / CPU flash) is all there is."""
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, not {backend!r}")
    if backend != "auto":
        return backend
    if not device.startswith("cuda"):
        return "native"
    import torch

    # Flash needs sm80+ and half precision; memory-efficient attention covers the rest (both have a backward).
    major, _ = torch.cuda.get_device_capability()
    return "flash" if major >= 8 and dtype in ("bfloat16", "float16") else "efficient"


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
    seed: int = 0  # only used by TINY_RANDOM, so tests can rebuild the same random base


class PipelineCache:
    """Loaded pipelines by spec. One per process, owned by whoever builds providers and passed in;
    a 24 GB FLUX transformer must be loaded once per run, not once per page."""

    def __init__(self) -> None:
        self._pipes: dict[PipelineSpec, Any] = {}
        self._lock = threading.Lock()

    def get(self, spec: PipelineSpec, build: Callable[[PipelineSpec], Any] | None = None) -> Any:
        with self._lock:
            if spec not in self._pipes:
                self._pipes[spec] = (build or load_pipeline)(spec)
            return self._pipes[spec]

    def put(self, spec: PipelineSpec, pipe: Any) -> None:
        """Register an already built pipeline (the benchmark's random FLUX.1-dev-shaped one)."""
        with self._lock:
            self._pipes[spec] = pipe

    def clear(self) -> None:
        with self._lock:
            self._pipes.clear()

    def __len__(self) -> int:
        return len(self._pipes)


def load_pipeline(spec: PipelineSpec) -> Any:
    """Build (TINY_RANDOM) or load a pipeline, place it, and apply the speed options."""
    import diffusers

    cls = {"flux": diffusers.FluxPipeline, "flux_kontext": diffusers.FluxKontextPipeline,
           "sdxl": diffusers.StableDiffusionXLPipeline}[spec.kind]
    dtype = torch_dtype(spec.dtype)
    if spec.source == TINY_RANDOM:
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
    """Move to the device (or set up CPU offload for cards smaller than the ~34 GB bf16 FLUX pipeline)."""
    if spec.offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {OFFLOAD_MODES}, not {spec.offload!r}")
    if spec.offload == "none" or not spec.device.startswith("cuda"):
        pipe.to(spec.device)
    elif spec.offload == "model":
        pipe.enable_model_cpu_offload(device=spec.device)
    else:
        pipe.enable_sequential_cpu_offload(device=spec.device)
    pipe.set_progress_bar_config(disable=True)
    denoiser = getattr(pipe, "transformer", None) or pipe.unet
    set_attention_backend(denoiser, spec.attention_backend)
    if spec.fuse_qkv and hasattr(denoiser, "fuse_qkv_projections"):
        denoiser.fuse_qkv_projections()
    if spec.compile:
        compile_denoiser(denoiser, spec.compile_scope, spec.compile_mode)


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
# Tiny random models, built offline (reference §2): tokenizers from in-memory vocabularies.

def _byte_unicode_symbols() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes (GPT-2's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = 0
    symbols = {}
    for b in range(256):
        if b in keep:
            symbols[b] = chr(b)
        else:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def build_tiny_tokenizers() -> tuple[Any, Any]:
    """A CLIP BPE tokenizer (bytes only, no merges) and a T5 unigram tokenizer (letters and digits)."""
    from transformers import CLIPTokenizer, T5Tokenizer

    clip_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for sym in _byte_unicode_symbols():
        clip_vocab.setdefault(sym, len(clip_vocab))
        clip_vocab.setdefault(sym + "</w>", len(clip_vocab))
    clip = CLIPTokenizer(vocab=clip_vocab, merges=[], model_max_length=77)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789"
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in chars] + [("▁" + c, -3.5) for c in chars]
    t5 = T5Tokenizer(vocab=pieces, extra_ids=100, model_max_length=512)
    return clip, t5


def build_tiny_flux_components(seed: int = 0) -> dict[str, Any]:
    """FLUX.1 components small enough to run a 64x64 image on a CPU in well under a second.

    The VAE has three blocks (scale factor 4), so a 64x64 image is 16x16 latents = 64 packed tokens.
    """
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    latent_channels = 4
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4 * latent_channels, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 6, 6))
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(8, 8, 8), layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=2, sample_size=64, use_quant_conv=False,
        use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)
    torch.manual_seed(seed + 2)
    clip = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=600, hidden_act="gelu", projection_dim=32))
    torch.manual_seed(seed + 3)
    t5 = T5EncoderModel(T5Config(
        d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        vocab_size=200, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    clip_tok, t5_tok = build_tiny_tokenizers()
    # Constructors leave modules in training mode (T5's dropout would make every call random); from_pretrained
    # would have put them in eval mode.
    for module in (transformer, vae, clip, t5):
        module.eval()
    return dict(transformer=transformer, vae=vae, text_encoder=clip, tokenizer=clip_tok, text_encoder_2=t5,
                tokenizer_2=t5_tok, scheduler=FlowMatchEulerDiscreteScheduler())


def build_tiny_sdxl_components(seed: int = 0) -> dict[str, Any]:
    """SDXL components after diffusers' own pipeline tests, with offline tokenizers."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=80,  # 6 size/crop ids x 8 + text_encoder_2's 32-d projection
        cross_attention_dim=64, norm_num_groups=4)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(8, 8), in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=2, sample_size=64)
    config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=600, hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(config)
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(config)
    clip_tok, _ = build_tiny_tokenizers()
    for module in (unet, vae, text_encoder, text_encoder_2):
        module.eval()  # see build_tiny_flux_components
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=clip_tok,
                tokenizer_2=clip_tok, scheduler=scheduler, add_watermarker=False)


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
