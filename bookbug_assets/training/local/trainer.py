"""The local FLUX.1-dev LoRA training loop: cache, train, checkpoint, resume, sample, save.

Runs in-process (tests) or inside the Pipes subprocess (`pipes_entry`); progress goes to a `Reporter`.
Memory order: text encoders and VAE first (encode everything once), text encoders dropped, then the
transformer, so T5-XXL and the 12 B transformer never share the card.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bookbug_assets.providers._local_pipelines import (
    TINY_RANDOM,
    fp8_linear_count,
    quantize_denoiser,
    resolve_attention_backend,
    resolve_device,
    resolve_dtype,
    set_attention_backend,
    torch_dtype,
)
from bookbug_assets.providers._tiny_models import build_tiny_flux_components
from bookbug_assets.training.local.config import LocalTrainingConfig
from bookbug_assets.training.local.data import apply_trigger, build_cache, draw_batch, encode_texts, scan_dataset
from bookbug_assets.training.local.flux_lora import (
    LORA_WEIGHT_NAME,
    add_lora,
    eval_mode,
    lora_effect,
    lora_state_dict,
    make_optimizer,
    save_lora_file,
    training_step,
)

TINY_BASE_SEED = 0  # the provider's default tiny_seed: a LoRA trained on the tiny base applies to its tiny base
# Below this relative change of the prediction the LoRA is reported as having almost no effect (a fresh adapter
# is exactly 0; a trained style LoRA changes the prediction by whole percents).
WEAK_LORA_EFFECT = 1e-3


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; nothing from that point on is saved."""


class Reporter(Protocol):
    def progress(self, step: int, total: int, loss: float, lr: float, elapsed_s: float) -> None: ...
    def sample(self, step: int, paths: list[str]) -> None: ...
    def checkpoint(self, step: int, path: str) -> None: ...
    def log(self, message: str) -> None: ...


class NullReporter:
    def progress(self, step: int, total: int, loss: float, lr: float, elapsed_s: float) -> None:
        pass

    def sample(self, step: int, paths: list[str]) -> None:
        pass

    def checkpoint(self, step: int, path: str) -> None:
        pass

    def log(self, message: str) -> None:
        pass


@dataclass
class TrainingSummary:
    weights_path: str
    sha256: str
    steps: int
    start_step: int
    rank: int
    alpha: float
    final_loss: float
    duration_s: float
    device: str
    attention_backend: str
    trainable_params: int
    gradient_checkpointing: bool = False
    compiled: bool = False
    base_weights: str = ""  # the frozen base's weight format as trained: its dtype, or "fp8" (quantize_base)
    lora_effect: float = float("nan")  # flux_lora.lora_effect on a training sample; ~0 = the LoRA does nothing
    samples: list[str] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)


def diverged(step: int, value: float, out: Path, lr: float) -> TrainingDiverged:
    kept = checkpoint_dirs(out)
    return TrainingDiverged(
        f"training diverged: the loss is {value} by step {step}. The newest checkpoint saved before it is "
        f"{kept[-1].name if kept else 'none'}; a rerun resumes there. Lower learning_rate (now {lr:g}) or "
        f"max_grad_norm, and check the dataset for broken or blank images.")


def weight_format(transformer: Any, dtype: str) -> str:
    """What the base's linear weights really are: "fp8" once torchao has quantized them, else the dtype."""
    return "fp8" if fp8_linear_count(transformer) else dtype


def load_base(config: LocalTrainingConfig, device: str, dtype: str) -> tuple[Any, Any]:
    """(pipeline without transformer on `device`, bare transformer still on the CPU)."""
    import diffusers

    tdtype = torch_dtype(dtype)
    if config.tiny_random or config.base_model == TINY_RANDOM:
        parts = build_tiny_flux_components(TINY_BASE_SEED)
        transformer = parts.pop("transformer")
        pipe = diffusers.FluxPipeline(transformer=None, **parts)
    else:
        pipe = diffusers.FluxPipeline.from_pretrained(config.base_model, transformer=None, torch_dtype=tdtype)
        transformer = diffusers.FluxTransformer2DModel.from_pretrained(
            config.base_model, subfolder="transformer", torch_dtype=tdtype)  # stays on the CPU until then
    if dtype != "float32":  # tiny models are built in float32; casting float32 to itself only logs noise
        pipe.to(dtype=tdtype)
        transformer.to(dtype=tdtype)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, transformer


def use_gradient_checkpointing(config: LocalTrainingConfig, device: str) -> bool:
    """Resolve "auto": checkpoint unless the card clearly holds the un-checkpointed peak.

    Measured on an H200 (LoRA r16, batch 1, 1024 px): 24 GB of bf16 weights + ~26 GiB of activations
    without checkpointing; activations scale with batch x pixels. 8 GiB margin for the VAE, samples, allocator.
    """
    if config.gradient_checkpointing != "auto":
        return bool(config.gradient_checkpointing)
    if not device.startswith("cuda"):
        return False  # CPU runs are the tiny test models
    import torch

    total_gib = torch.cuda.get_device_properties(torch.device(device)).total_memory / 2**30
    need_gib = 24 + 26 * config.batch_size * (max(config.resolutions) / 1024) ** 2 + 8
    return total_gib < need_gib


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    root = output_dir / "checkpoints"
    return sorted(root.glob("step-*")) if root.exists() else []


def save_checkpoint(output_dir: Path, step: int, transformer: Any, optimizer: Any, generator: Any,
                    losses: list[tuple[int, float]], keep: int) -> Path:
    """Adapter, optimizer, RNG and loss history; written to a temp folder and renamed, so a crash mid-write
    never leaves a half checkpoint that resume would pick."""
    import torch
    from safetensors.torch import save_file

    final = output_dir / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in lora_state_dict(transformer).items()},
              str(tmp / "adapter.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(generator.get_state(), tmp / "generator.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "losses": losses}))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in checkpoint_dirs(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, transformer: Any, optimizer: Any, generator: Any) -> tuple[int, list]:
    import torch
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(transformer, load_file(str(path / "adapter.safetensors")), adapter_name="default")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    generator.set_state(torch.load(path / "generator.pt", weights_only=True))
    state = json.loads((path / "state.json").read_text())
    return int(state["step"]), [tuple(x) for x in state["losses"]]


def render_samples(pipe: Any, transformer: Any, embeds: tuple[list, list], *, step: int, output_dir: Path,
                   config: LocalTrainingConfig) -> list[str]:
    """Sample images with the adapter as trained so far; fixed seeds so successive samples compare."""
    import torch

    out = output_dir / "samples"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with eval_mode(transformer):
        for i, (pe, pp) in enumerate(zip(*embeds)):
            image = pipe(prompt_embeds=pe, pooled_prompt_embeds=pp, width=config.sample_resolution,
                         height=config.sample_resolution, num_inference_steps=config.sample_steps,
                         guidance_scale=config.sample_guidance,
                         generator=torch.Generator("cpu").manual_seed(config.seed + i)).images[0]
            path = out / f"step-{step:07d}-{i}.png"
            image.save(path)
            paths.append(str(path))
    return paths


def train_lora(config: LocalTrainingConfig, *, dataset_dir: str, output_dir: str, trigger_word: str,
               reporter: Reporter | None = None) -> TrainingSummary:
    """Train (or resume) a LoRA and write `output_dir/pytorch_lora_weights.safetensors`."""
    import torch

    reporter = reporter or NullReporter()
    started = time.perf_counter()
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    dtype = resolve_dtype("auto", device)
    torch.manual_seed(config.seed)

    pipe, transformer = load_base(config, device, dtype)
    examples = scan_dataset(dataset_dir, trigger_word)
    cache = build_cache(pipe, examples, resolutions=config.resolutions, device=device,
                        max_sequence_length=config.max_sequence_length)
    sample_embeds = encode_texts(pipe, [apply_trigger(p, trigger_word) for p in config.sample_prompts],
                                 device=device, max_sequence_length=config.max_sequence_length)
    reporter.log(f"cached {len(examples)} images in buckets {cache.bucket_keys()}, {len(cache.captions)} captions")
    pipe.text_encoder, pipe.text_encoder_2 = None, None  # everything is encoded; free the card for the transformer
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    quantize_denoiser(transformer, config.quantize_base, device)  # layer by layer on the card: no bf16 peak
    transformer.to(device)
    pipe.register_modules(transformer=transformer)

    backend = resolve_attention_backend(config.attention_backend, device, dtype, training=True)
    set_attention_backend(transformer, backend)
    params = add_lora(transformer, rank=config.rank, alpha=config.alpha, target_modules=config.target_modules)
    checkpointing = use_gradient_checkpointing(config, device)
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    if config.compile and device.startswith("cuda"):
        # After add_lora so the LoRA layers are inside the graphs; graph breaks allowed (peft's dtype casts).
        transformer.compile_repeated_blocks()
    base_weights = weight_format(transformer, dtype)
    reporter.log(f"attention={backend} gradient_checkpointing={checkpointing} compile={config.compile} "
                 f"base weights={base_weights}")
    transformer.train()
    optimizer = make_optimizer(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                               use_8bit=config.use_8bit_adam, device=device)
    generator = torch.Generator("cpu").manual_seed(config.seed)
    start_step, losses = 0, []
    existing = checkpoint_dirs(out) if config.resume else []
    if existing:
        start_step, losses = load_checkpoint(existing[-1], transformer, optimizer, generator)
        reporter.log(f"resumed from {existing[-1].name} at step {start_step}")

    vae_cfg = pipe.vae.config
    shift, scale = (vae_cfg.shift_factor or 0.0), vae_cfg.scaling_factor
    autocast = torch_dtype(dtype) if dtype != "float32" else None
    window = torch.zeros((), device=device)  # loss sum since the last report; read back only then (no per-step sync)
    window_n, samples, last_loss = 0, [], float("nan")
    for step in range(start_step + 1, config.steps + 1):
        lr = config.learning_rate * min(1.0, step / config.warmup_steps) if config.warmup_steps else config.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        latents, embeds, pooled = draw_batch(cache, batch_size=config.batch_size, caption_dropout=config.caption_dropout,
                                             generator=generator, shift_factor=shift, scaling_factor=scale)
        loss = training_step(transformer, optimizer, params, latents, embeds, pooled, generator=generator,
                             guidance=config.guidance_scale, timestep_sampling=config.timestep_sampling,
                             max_grad_norm=config.max_grad_norm, autocast_dtype=autocast)
        window += loss
        window_n += 1
        checkpoint_now = bool(config.checkpoint_every and (step % config.checkpoint_every == 0 or step == config.steps))
        if checkpoint_now and not math.isfinite(float(window)):  # never save diverged weights
            raise diverged(step, float(window), out, lr)
        if step % config.log_every == 0 or step == config.steps:
            last_loss = float(window) / window_n
            if not math.isfinite(last_loss):
                raise diverged(step, last_loss, out, lr)
            losses.append((step, last_loss))
            window.zero_()
            window_n = 0
            reporter.progress(step, config.steps, last_loss, lr, time.perf_counter() - started)
        if checkpoint_now:
            path = save_checkpoint(out, step, transformer, optimizer, generator, losses, config.keep_checkpoints)
            reporter.checkpoint(step, str(path))
        if config.sample_every and (step % config.sample_every == 0 or step == config.steps):
            paths = render_samples(pipe, transformer, sample_embeds, step=step, output_dir=out, config=config)
            samples.extend(paths)
            reporter.sample(step, paths)
    if start_step >= config.steps and losses:
        last_loss = losses[-1][1]
    latents, embeds, pooled = draw_batch(cache, batch_size=1, caption_dropout=0.0,
                                         generator=torch.Generator("cpu").manual_seed(config.seed),
                                         shift_factor=shift, scaling_factor=scale)
    effect = lora_effect(transformer, latents, embeds, pooled, generator=torch.Generator("cpu").manual_seed(1),
                         guidance=config.guidance_scale, autocast_dtype=autocast)
    if effect < WEAK_LORA_EFFECT:
        reporter.log(f"warning: the LoRA changes the model's prediction by only {effect:.2e} (relative): it will "
                     f"barely show. Train longer or with a higher learning_rate, and caption what varies between "
                     f"images so the style is left to the trigger word.")

    alpha = float(config.alpha if config.alpha is not None else config.rank)
    weights = out / LORA_WEIGHT_NAME
    sha = save_lora_file(transformer, str(weights), dtype=config.save_dtype, extra_metadata={
        # kohya-style keys that ComfyUI/A1111 front-ends display; values must be strings.
        "ss_network_dim": str(config.rank), "ss_network_alpha": str(alpha), "ss_base_model_version": "flux1",
        "ss_steps": str(config.steps), "bookbug_trigger_word": trigger_word, "bookbug_base_model":
        TINY_RANDOM if config.tiny_random else config.base_model})
    return TrainingSummary(
        weights_path=str(weights), sha256=sha, steps=config.steps, start_step=start_step, rank=config.rank,
        alpha=alpha, final_loss=last_loss, duration_s=round(time.perf_counter() - started, 3), device=device,
        attention_backend=backend, trainable_params=sum(p.numel() for p in params),
        gradient_checkpointing=checkpointing, compiled=bool(config.compile and device.startswith("cuda")),
        base_weights=base_weights, lora_effect=round(effect, 6), samples=samples, losses=losses)
