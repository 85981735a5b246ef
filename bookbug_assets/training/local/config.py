"""Settings and result of a local FLUX.1-dev LoRA training run (no torch here: the Dagster side imports it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Kept in step with flux_lora.DEFAULT_TARGET_MODULES (which must not import pydantic); a test checks it.
DEFAULT_TARGETS = (
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
    "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)


class LocalTrainingConfig(BaseModel):
    """A FLUX.1-dev LoRA run. Defaults follow ai-toolkit's 24 GB FLUX example and diffusers' dreambooth script
    (rank 16 = alpha, lr 1e-4, AdamW, 5 % caption dropout, logit-normal timesteps), the published FLUX LoRA recipes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_model: str = "black-forest-labs/FLUX.1-dev"  # hub id or a local diffusers folder
    tiny_random: bool = False  # build tiny random FLUX components offline instead (tests, CI)
    steps: int = Field(1000, ge=1)
    rank: int = Field(16, ge=1)
    alpha: float | None = None  # None = rank: scale 1, nothing lost if a loader ignores the metadata
    learning_rate: float = Field(1e-4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    resolutions: tuple[int, ...] = (512, 768, 1024)  # every image is cached in a bucket at each
    batch_size: int = Field(1, ge=1)
    caption_dropout: float = Field(0.05, ge=0, le=1)
    timestep_sampling: Literal["logit_normal", "uniform"] = "logit_normal"
    guidance_scale: float = 1.0  # fed to the guidance embedding while training (kohya/diffusers README use 1)
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    # "auto": off when the card holds the un-checkpointed peak (measured 45-50 GiB at 1024 px, batch 1, H200),
    # on for smaller cards; checkpointing halves that peak for ~1.4x the step time.
    gradient_checkpointing: bool | Literal["auto"] = "auto"
    compile: bool = True  # CUDA only: regional torch.compile, ~45 s once, then 0.59 -> 0.42 s/step at 1024 (H200)
    use_8bit_adam: bool = True  # used only where bitsandbytes imports and the device is CUDA
    # fp8 base weights (torchao), like kohya's --fp8_base: the frozen FLUX.1-dev transformer takes ~12 GB instead of
    # 24, so r16 training fits a 24 GB card with checkpointing. Lossy for the base, the LoRA itself stays fp32.
    quantize_base: Literal["none", "fp8-weight"] = "none"
    # Never cuDNN: its SDPA backward crashed on an H200.
    attention_backend: Literal["auto", "flash", "efficient", "math", "native"] = "auto"
    max_sequence_length: int = Field(512, ge=8, le=512)
    device: str = "auto"
    checkpoint_every: int = Field(250, ge=0)  # 0 = no intermediate checkpoints
    keep_checkpoints: int = Field(2, ge=1)
    resume: bool = True  # continue from the newest checkpoint in output_dir
    sample_every: int = Field(250, ge=0)  # 0 = no sample images
    sample_prompts: tuple[str, ...] = ("[trigger] a small ladybug reading a book under a mushroom, picture book page",)
    sample_steps: int = Field(20, ge=1)
    sample_resolution: int = 512
    sample_guidance: float = 3.5
    save_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    log_every: int = Field(10, ge=1)
    seed: int = 42

    @model_validator(mode="after")
    def _check(self) -> "LocalTrainingConfig":
        if not self.resolutions:
            raise ValueError("resolutions must name at least one size")
        return self


class LocalTrainingResult(BaseModel):
    """What the launcher hands back to the `style_lora` asset."""

    weights_path: str  # diffusers-format safetensors, loadable by load_lora_weights and ComfyUI
    sha256: str
    steps: int
    start_step: int  # > 0 when the run resumed from a checkpoint
    rank: int
    alpha: float
    final_loss: float
    duration_s: float
    samples: list[str] = Field(default_factory=list)  # sample image paths, newest last
    losses: list[tuple[int, float]] = Field(default_factory=list)  # (step, loss) as reported
    metadata: dict[str, Any] = Field(default_factory=dict)  # plain values, ready for MaterializeResult
