"""Dataset for the local LoRA trainer: images with same-named .txt captions, aspect buckets, cached encodings.

Everything the frozen models compute from the data (VAE latents, text embeddings) is computed once
before the first step; the text encoders (T5-XXL alone is 9.5 GB in bf16) can then leave the GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TRIGGER_PLACEHOLDER = "[trigger]"  # ai-toolkit's convention: replaced by the trigger word
# Aspect ratios (w/h) offered per resolution; picture-book pages are mostly 1:1, 4:3 and 3:2.
BUCKET_RATIOS = (1.0, 4 / 3, 3 / 2, 16 / 9, 2.0, 3 / 4, 2 / 3, 9 / 16, 1 / 2)


@dataclass(frozen=True)
class Example:
    image_path: Path
    caption: str


def apply_trigger(text: str, trigger_word: str) -> str:
    """Put the trigger word in: at the placeholder if there is one, else in front (once)."""
    if not trigger_word:
        return text.replace(TRIGGER_PLACEHOLDER, "").strip(" ,")
    if TRIGGER_PLACEHOLDER in text:
        return text.replace(TRIGGER_PLACEHOLDER, trigger_word)
    if trigger_word in text:
        return text
    return f"{trigger_word}, {text}" if text else trigger_word


def scan_dataset(dataset_dir: str | Path, trigger_word: str) -> list[Example]:
    """Every image in the folder (not recursive) with its caption; a missing caption is the trigger alone."""
    root = Path(dataset_dir)
    images = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"no training images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    examples = []
    for path in images:
        txt = path.with_suffix(".txt")
        caption = txt.read_text(encoding="utf-8").strip() if txt.exists() else ""
        examples.append(Example(path, apply_trigger(caption, trigger_word)))
    return examples


def bucket_sizes(resolution: int, multiple: int) -> list[tuple[int, int]]:
    """(width, height) pairs of about resolution**2 pixels, sides multiples of `multiple`."""
    sizes = []
    for ratio in BUCKET_RATIOS:
        w = max(multiple, round(math.sqrt(resolution * resolution * ratio) / multiple) * multiple)
        h = max(multiple, round(math.sqrt(resolution * resolution / ratio) / multiple) * multiple)
        if (w, h) not in sizes:
            sizes.append((w, h))
    return sizes


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket closest in log aspect ratio, so a 2:1 and a 1:2 image are equally far from 1:1."""
    target = math.log(width / height)
    return min(buckets, key=lambda b: abs(math.log(b[0] / b[1]) - target))


def load_image_tensor(path: Path, size: tuple[int, int]) -> Any:
    """Resize to cover the bucket, centre-crop, scale to [-1, 1]; returns (3, H, W) float32."""
    import numpy as np
    import torch
    from PIL import Image

    w, h = size
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = max(w / im.width, h / im.height)
        im = im.resize((max(w, round(im.width * scale)), max(h, round(im.height * scale))), Image.LANCZOS)
        left, top = (im.width - w) // 2, (im.height - h) // 2
        im = im.crop((left, top, left + w, top + h))
        arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


@dataclass
class CachedDataset:
    """Latent distributions by bucket, and one embedding pair per distinct caption."""

    buckets: dict[tuple[int, int], list[tuple[Any, Any, int]]] = field(default_factory=dict)  # (mean, std, caption)
    prompt_embeds: list[Any] = field(default_factory=list)
    pooled_embeds: list[Any] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    empty_caption: int = 0  # index of "" (caption dropout)

    def bucket_keys(self) -> list[tuple[int, int]]:
        return sorted(self.buckets)


def encode_texts(pipe: Any, texts: list[str], *, device: str, max_sequence_length: int) -> tuple[list, list]:
    """T5 sequence embeddings and CLIP pooled vectors, one pair per text, batch dimension 1 each."""
    import torch

    embeds, pooled = [], []
    with torch.no_grad():
        for text in texts:
            pe, pp, _ = pipe.encode_prompt(prompt=text, prompt_2=text, device=device,
                                           max_sequence_length=max_sequence_length)
            embeds.append(pe)
            pooled.append(pp)
    return embeds, pooled


def build_cache(pipe: Any, examples: list[Example], *, resolutions: tuple[int, ...], device: str,
                max_sequence_length: int) -> CachedDataset:
    """Encode every image at every resolution into its bucket, and every caption once."""
    import torch
    from PIL import Image

    vae = pipe.vae
    multiple = max(16, pipe.vae_scale_factor * 2 * 4)  # bucket sides: 64 px for the real 8x VAE
    captions = [""] + sorted({ex.caption for ex in examples})
    embeds, pooled = encode_texts(pipe, captions, device=device, max_sequence_length=max_sequence_length)
    cache = CachedDataset(prompt_embeds=embeds, pooled_embeds=pooled, captions=captions, empty_caption=0)
    with torch.no_grad():
        for ex in examples:
            with Image.open(ex.image_path) as im:
                size = im.size
            for res in resolutions:
                bucket = nearest_bucket(*size, bucket_sizes(res, multiple))
                pixels = load_image_tensor(ex.image_path, bucket).unsqueeze(0).to(device, vae.dtype)
                dist = vae.encode(pixels).latent_dist
                entry = (dist.mean.float(), dist.std.float(), captions.index(ex.caption))
                cache.buckets.setdefault(bucket, []).append(entry)
    return cache


def draw_batch(cache: CachedDataset, *, batch_size: int, caption_dropout: float, generator: Any,
               shift_factor: float, scaling_factor: float) -> tuple[Any, Any, Any]:
    """One batch from one bucket: sampled latents (scaled), prompt embeddings, pooled embeddings.

    All randomness comes from `generator`, so resuming with its saved state replays the same batches.
    """
    import torch

    keys = cache.bucket_keys()
    weights = torch.tensor([len(cache.buckets[k]) for k in keys], dtype=torch.float32)
    bucket = keys[int(torch.multinomial(weights, 1, generator=generator))]
    entries = cache.buckets[bucket]
    picks = torch.randint(len(entries), (batch_size,), generator=generator).tolist()
    drop = (torch.rand(batch_size, generator=generator) < caption_dropout).tolist()
    latents, embeds, pooled = [], [], []
    for i, dropped in zip(picks, drop):
        mean, std, caption = entries[i]
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        latents.append(((mean + std * eps) - shift_factor) * scaling_factor)
        c = cache.empty_caption if dropped else caption
        embeds.append(cache.prompt_embeds[c])
        pooled.append(cache.pooled_embeds[c])
    return torch.cat(latents), torch.cat(embeds), torch.cat(pooled)
