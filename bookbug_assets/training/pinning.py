"""Option A: use an existing LoRA. Fetch it once, hash it, pin it; later runs use the pinned copy."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from bookbug_assets.providers.base import LoraRef
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.styles import ExistingLora

HF_RESOLVE = "https://huggingface.co/{repo}/resolve/main/{file}"


def source_url(source: str) -> str | None:
    """An https URL for remote sources; None for a local file."""
    if source.startswith("hf:"):
        parts = source[3:].split("/")
        if len(parts) < 3:
            raise ValueError(f"LoRA source {source!r}: expected hf:<owner>/<repo>/<file>.safetensors")
        return HF_RESOLVE.format(repo="/".join(parts[:2]), file="/".join(parts[2:]))
    if source.startswith(("https://", "http://")):
        return source
    return None


def remote_ref_for(source: str) -> str | None:
    """What a cloud model's LoRA field accepts: an HF path or a URL (a local file has none)."""
    if source.startswith("hf:"):
        return "huggingface.co/" + source[3:]
    return source if source.startswith(("https://", "http://")) else None


def pin_existing_lora(store: ArtifactStore, lora: ExistingLora, name: str, timeout_s: float = 600.0) -> LoraRef:
    pin_key = f"styles/{name}/pinned_lora.json"
    if store.exists(pin_key):
        pinned = LoraRef.model_validate(store.read_json(pin_key))
        if pinned.remote_ref == remote_ref_for(lora.source) and store.exists(pinned.key or ""):
            return pinned.model_copy(update={"scale": lora.scale, "trigger_word": lora.trigger_word})
    url = source_url(lora.source)
    if url is None:
        data = Path(lora.source).expanduser().read_bytes()
    else:
        with httpx.Client(follow_redirects=True, timeout=timeout_s) as client:
            response = client.get(url)
            response.raise_for_status()
            data = response.content
    sha = hashlib.sha256(data).hexdigest()
    if lora.sha256 and lora.sha256 != sha:
        raise ValueError(f"LoRA {lora.source!r}: downloaded sha256 {sha} does not match the pinned {lora.sha256}")
    _, key = store.put_blob(data, ".safetensors")
    pinned = LoraRef(name=f"{name}-{sha[:8]}", family=lora.family, sha256=sha, key=key,
                     remote_ref=remote_ref_for(lora.source), trigger_word=lora.trigger_word, scale=lora.scale)
    store.write_json(pin_key, pinned.model_dump())
    return pinned
