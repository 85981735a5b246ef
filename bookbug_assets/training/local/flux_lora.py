"""The torch core of the FLUX.1 LoRA trainer: adapter set-up, one flow-matching step, the weights file.

Plain functions with explicit arguments and no imports from the rest of the package, so the GPU
benchmark times exactly this step on a machine without the Dagster stack.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any, Iterable

# diffusers' FLUX.1 default targets (train_dreambooth_lora_flux.py): attention and feed-forward of the
# double-stream blocks; the `attn.to_*` suffixes also hit the 38 single-stream blocks. 44.8 M params at r16.
DEFAULT_TARGET_MODULES = (
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.add_q_proj",
    "attn.add_v_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
)
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # the file name diffusers' load_lora_weights looks for


def add_lora(transformer: Any, *, rank: int, alpha: float | None = None,
             target_modules: Iterable[str] = DEFAULT_TARGET_MODULES, adapter_name: str = "default") -> list[Any]:
    """Freeze the transformer, add a peft LoRA adapter, return its trainable parameters (kept in fp32).

    B starts at zero (gaussian init of A only), so step 0 reproduces the base model exactly.
    """
    from peft import LoraConfig

    transformer.requires_grad_(False)
    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, init_lora_weights="gaussian",
                        target_modules=list(target_modules))
    transformer.add_adapter(config, adapter_name=adapter_name)
    params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in params:
        # fp32 master weights: bf16 cannot hold lr=1e-4 updates to O(1e-2) values.
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


def sdpa_without_cudnn():
    """Let SDPA pick among flash, memory-efficient and math only.

    PyTorch's cuDNN attention crashed in the backward pass (illegal memory access) on an H200 with a
    FLUX.1-sized model (seen in this project's H200 runs). The flags are global, so they also hold in the autograd
    thread where gradient checkpointing recomputes the forward.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def pack_latents(latents: Any) -> Any:
    """(B, C, H, W) latents -> (B, H/2 * W/2, 4C) tokens, FLUX's 2x2 patch packing."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def latent_image_ids(h: int, w: int, device: Any, dtype: Any) -> Any:
    """(row, col) position ids of the packed tokens; first coordinate 0 marks the target image."""
    import torch

    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def sample_sigmas(batch: int, generator: Any, scheme: str) -> Any:
    """Noise levels in (0, 1): logit-normal (ai-toolkit's 'sigmoid' default) or uniform (diffusers' 'none')."""
    import torch

    if scheme == "logit_normal":
        return torch.sigmoid(torch.randn(batch, generator=generator))
    if scheme == "uniform":
        return torch.rand(batch, generator=generator)
    raise ValueError(f"unknown timestep sampling {scheme!r}")


def flow_matching_loss(transformer: Any, latents: Any, prompt_embeds: Any, pooled_embeds: Any, noise: Any,
                       sigmas: Any, *, guidance: float = 1.0, autocast_dtype: Any = None) -> Any:
    """Rectified-flow loss: x_t = (1 - s) x0 + s e, the transformer predicts the velocity e - x0 at timestep s."""
    import torch

    pred, target = velocity_prediction(transformer, latents, prompt_embeds, pooled_embeds, noise, sigmas,
                                       guidance=guidance, autocast_dtype=autocast_dtype)
    return torch.nn.functional.mse_loss(pred.float(), target)


def velocity_prediction(transformer: Any, latents: Any, prompt_embeds: Any, pooled_embeds: Any, noise: Any,
                        sigmas: Any, *, guidance: float = 1.0, autocast_dtype: Any = None) -> tuple[Any, Any]:
    """(the transformer's packed velocity prediction at x_t, the packed target e - x0)."""
    import torch

    device = latents.device
    b, _, h, w = latents.shape
    s = sigmas.view(b, 1, 1, 1)
    x0 = latents.float()
    noisy = (1.0 - s) * x0 + s * noise
    # Packing is a permutation, so comparing packed prediction and packed target is the same loss.
    target = pack_latents(noise - x0)
    model_dtype = autocast_dtype or next(transformer.parameters()).dtype
    guidance_t = torch.full((b,), guidance, device=device) if transformer.config.guidance_embeds else None
    with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        pred = transformer(
            hidden_states=pack_latents(noisy).to(model_dtype),
            encoder_hidden_states=prompt_embeds.to(model_dtype),
            pooled_projections=pooled_embeds.to(model_dtype),
            timestep=sigmas.to(model_dtype),  # FLUX takes t/1000 = sigma
            img_ids=latent_image_ids(h, w, device, model_dtype),
            txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=device, dtype=model_dtype),
            guidance=guidance_t,
            return_dict=False,
        )[0]
    return pred, target


def lora_effect(transformer: Any, latents: Any, prompt_embeds: Any, pooled_embeds: Any, *, generator: Any,
                guidance: float = 1.0, autocast_dtype: Any = None) -> float:
    """How much the adapter changes the prediction on one sample at sigma 0.5: |with - without| / |without|.

    A LoRA that trained but changes nothing (a wrong learning rate, captions that leave nothing to the trigger
    word) is a common silent failure of LoRA trainers; this number makes it visible. 0 = no effect at all.
    """
    import torch

    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    sigmas = torch.full((latents.shape[0],), 0.5, device=latents.device)
    args = (transformer, latents, prompt_embeds, pooled_embeds, noise, sigmas)
    was_training = transformer.training
    transformer.eval()
    try:
        with torch.no_grad():
            with_lora = velocity_prediction(*args, guidance=guidance, autocast_dtype=autocast_dtype)[0].float()
            transformer.disable_adapters()
            try:
                base = velocity_prediction(*args, guidance=guidance, autocast_dtype=autocast_dtype)[0].float()
            finally:
                transformer.enable_adapters()
    finally:
        transformer.train(was_training)
    return float((with_lora - base).norm() / base.norm().clamp_min(1e-12))


def training_step(
    transformer: Any,
    optimizer: Any,
    params: list[Any],
    latents: Any,
    prompt_embeds: Any,
    pooled_embeds: Any,
    *,
    generator: Any,
    guidance: float = 1.0,
    timestep_sampling: str = "logit_normal",
    max_grad_norm: float = 1.0,
    autocast_dtype: Any = None,
) -> Any:
    """One LoRA step on already scaled latents (B, C, H, W); returns the loss tensor (no host sync).

    Noise and sigmas come from `generator`, a CPU generator, so a resumed run draws the same numbers as
    an uninterrupted one. Forward and backward run without cuDNN attention.
    """
    import torch

    noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents.device)
    sigmas = sample_sigmas(latents.shape[0], generator, timestep_sampling).to(latents.device)
    with sdpa_without_cudnn():
        loss = flow_matching_loss(transformer, latents, prompt_embeds, pooled_embeds, noise, sigmas,
                                  guidance=guidance, autocast_dtype=autocast_dtype)
        loss.backward()
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def make_optimizer(params: list[Any], *, lr: float, weight_decay: float, use_8bit: bool, device: str) -> Any:
    """AdamW; bitsandbytes' 8-bit AdamW when asked for, on CUDA, and importable (it has no CPU kernels)."""
    import importlib.util

    import torch

    if use_8bit and device.startswith("cuda") and importlib.util.find_spec("bitsandbytes") is not None:
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, eps=1e-8)
    return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, eps=1e-8)


def lora_state_dict(transformer: Any, adapter_name: str = "default") -> dict[str, Any]:
    """The adapter's tensors under peft's plain module paths (`...attn.to_q.lora_A.weight`)."""
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(transformer, adapter_name=adapter_name)


def save_lora_file(transformer: Any, path: str, *, dtype: str = "bfloat16", adapter_name: str = "default",
                   extra_metadata: dict[str, str] | None = None) -> str:
    """Write diffusers-format LoRA safetensors (`transformer.` key prefix) and return its sha256.

    The header carries `lora_adapter_metadata` (the flattened peft LoraConfig, as diffusers'
    save_lora_weights writes it): without it a reload loses alpha/rank. diffusers-format
    keys also load in ComfyUI. Saved from the adapter alone, never via save_pretrained
    of the adapted model, which would write base_layer keys that reload with re-initialised weights.
    """
    import torch
    from safetensors.torch import save_file

    torch_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[dtype]
    tensors = {f"transformer.{k}": v.detach().to(torch_dtype).contiguous().cpu()
               for k, v in lora_state_dict(transformer, adapter_name).items()}
    config = transformer.peft_config[adapter_name].to_dict()
    config = {f"transformer.{k}": sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    metadata = {"format": "pt", "lora_adapter_metadata": json.dumps(config, indent=2, sort_keys=True, default=str)}
    metadata.update(extra_metadata or {})
    save_file(tensors, path, metadata=metadata)
    return file_sha256(path)


def file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextlib.contextmanager
def eval_mode(module: Any):
    """Sampling mid-training: eval mode and no autograd, restored afterwards."""
    import torch

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)
