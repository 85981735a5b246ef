"""Option A: use an existing LoRA. Fetch it once, check and hash it, pin it; later runs use the pinned copy.

Where a source may come from and what it must be: lora_source.py and lora_file.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bookbug_assets.providers.base import LoraRef
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.styles import ExistingLora, StyleError
from bookbug_assets.training.lora_source import FetchPolicy, LoraSourceError, load_lora_source, source_url

# Pins written before sources were checked (lora_source.py) lack this mark and are fetched and checked again.
PIN_CHECK = "lora-source-v1"


def remote_ref_for(source: str) -> str | None:
    """The model-independent reference a cloud model is given (providers/lora_refs.py picks each model's form):
    the https URL of an hf:/https source; None for a local file, which no cloud model can reach."""
    return source_url(source)


def pin_existing_lora(store: ArtifactStore, lora: ExistingLora, name: str, models_dir: Path,
                      policy: FetchPolicy = FetchPolicy()) -> LoraRef:
    """The style's LoRA, pinned by hash. `models_dir` is the only folder a local source may be read from."""
    where = f"styles/{name}/style.yaml"
    pin_key = f"styles/{name}/pinned_lora.json"
    try:
        remote_ref = remote_ref_for(lora.source)
        if store.exists(pin_key):
            stored = store.read_json(pin_key)
            pinned = LoraRef.model_validate(stored)
            if (stored.get("checked") == PIN_CHECK and stored.get("source") == lora.source
                    and pinned.remote_ref == remote_ref and pinned.family == lora.family
                    and store.exists(pinned.key or "")):
                return pinned.model_copy(update={"scale": lora.scale, "trigger_word": lora.trigger_word})
        data = load_lora_source(lora.source, lora.family, models_dir, policy)
    except LoraSourceError as exc:
        raise StyleError(f"{where}: lora.source: {exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    if lora.sha256 and lora.sha256.lower() != sha:
        raise StyleError(f"{where}: lora.sha256: the LoRA's sha256 is {sha}, not the pinned {lora.sha256}")
    _, key = store.put_blob(data, ".safetensors")
    pinned = LoraRef(name=f"{name}-{sha[:8]}", family=lora.family, sha256=sha, key=key, remote_ref=remote_ref,
                     trigger_word=lora.trigger_word, scale=lora.scale)
    store.write_json(pin_key, {**pinned.model_dump(), "checked": PIN_CHECK, "source": lora.source})
    return pinned
