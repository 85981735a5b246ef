"""Train a style LoRA with the trainer a style names, paying at most once per dataset.

A finished training is cached by (dataset hash, trainer, steps, rank); an unfinished one is
journaled by job id before waiting, so a restarted step resumes it. The weights are kept in
the ArtifactStore (remote copies expire) and the LoraRef pins them by hash.

Local training runs in a subprocess the Dagster layer starts (Pipes): it hands that in as
`run_local(config, dataset_dir, output_dir, trigger_word) -> LocalTrainingResult`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from bookbug_assets.ledger import Ledger, LedgerRow
from bookbug_assets.providers.base import LoraRef, ProviderSettings
from bookbug_assets.providers.local_options import TINY_RANDOM
from bookbug_assets.providers.registry import build_trainer
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.styles import StyleConfig

TRAINER_MODELS = {"replicate": "ostris/flux-dev-lora-trainer", "fal": "fal-ai/flux-lora-fast-training",
                  "local": "local/flux-dev-lora-peft"}


@dataclass(frozen=True)
class TrainedStyle:
    lora: LoraRef
    metadata: dict


# Tiny random models train at 64 px on short prompts (tests, CI): the real recipe's 512-1024 px buckets
# would only make a CPU run slow without testing anything more.
TINY_TRAINING = dict(resolutions=(64,), max_sequence_length=32, sample_resolution=64, sample_steps=2,
                     sample_every=0, checkpoint_every=0, save_dtype="float32")


def local_training_config(settings, config: StyleConfig):
    """The local trainer's settings for a style: its steps and rank, and from `settings` (the local GPU options:
    flux_dev, model_dir, device, train_quantize_base) the base model the provider renders with and the device."""
    from bookbug_assets.providers.local_diffusers import model_source
    from bookbug_assets.training.local.config import LocalTrainingConfig

    base = settings.flux_dev or model_source(settings.model_dir, "flux")  # the base the provider renders with
    tiny = base == TINY_RANDOM
    return LocalTrainingConfig(steps=config.training_steps, rank=config.lora_rank, device=settings.device,
                               base_model=base, tiny_random=tiny, quantize_base=settings.train_quantize_base,
                               **(TINY_TRAINING if tiny else {}))


def train_style_lora(store: ArtifactStore, settings: ProviderSettings, local_settings, config: StyleConfig,
                     manifest: dict, styles_dir: Path, *, run_id: str, log, deadline_s: float,
                     run_local: Callable | None = None) -> TrainedStyle:
    """The style's LoRA from its trainer: `local_settings` are the local GPU options (local_training_config),
    `run_local` the Pipes launcher for trainer `local`, `deadline_s` how long a cloud training may take."""
    style = manifest["style"]
    trainer = config.trainer
    local_config = local_training_config(local_settings, config) if trainer == "local" else None
    # A LoRA belongs to the base it was trained on and that base's precision. The base is named only when it is
    # not FLUX.1-dev: moving the model folder must not retrain, and earlier hashes stay valid.
    base_parts = []
    if local_config is not None and local_config.tiny_random:
        base_parts.append(TINY_RANDOM)
    if local_config is not None and local_config.quantize_base != "none":
        base_parts.append(local_config.quantize_base)
    base = "".join(f":{part}" for part in base_parts)
    job_hash = hashlib.sha256(f"{manifest['dataset_sha256']}:{trainer}:{config.training_steps}:"
                              f"{config.lora_rank}{base}".encode()).hexdigest()
    done_key = f"styles/{style}/trained/{job_hash}.json"
    if store.exists(done_key):
        cached = store.read_json(done_key)
        log.info(f"style {style}: reusing the LoRA trained earlier for this exact dataset ({done_key})")
        return TrainedStyle(LoraRef.model_validate(cached["lora"]), {**cached["metadata"], "cache_hit": True})

    started = time.monotonic()
    if local_config is not None:
        out_dir = store.local_path(f"styles/{style}/local_training/{job_hash[:16]}/weights.safetensors").parent
        out_dir.mkdir(parents=True, exist_ok=True)
        result = run_local(local_config, str(styles_dir / style / "images"), str(out_dir), config.trigger_word)
        weights = Path(result.weights_path).read_bytes()
        remote_ref, cost, job_id = None, 0.0, f"local-{job_hash[:12]}"
        extra = {"final_loss": result.final_loss, "resumed_from_step": result.start_step,
                 "base_model": local_config.base_model, "device": str(result.metadata.get("device", "")),
                 "base_weights": str(result.metadata.get("base_weights", "")),
                 "lora_effect": float(result.metadata.get("lora_effect", float("nan")))}
    else:
        client = build_trainer(trainer, settings)
        journal = f"journal/training-{job_hash}.json"
        if store.exists(journal):
            job_id = store.read_json(journal)["job_id"]
            log.info(f"resuming {trainer} training {job_id}; not starting a second paid one")
        else:
            zip_bytes = store.read_bytes(manifest["zip_key"])
            job_id = client.submit(zip_bytes, config.trigger_word, config.training_steps, config.lora_rank,
                                   destination=f"bookbug-style-{style}")
            store.write_json(journal, {"job_id": job_id, "trainer": trainer, "style": style})
        trained = client.wait(job_id, deadline_s=deadline_s)
        weights = trained.weights if trained.weights is not None else Path(trained.weights_path).read_bytes()
        remote_ref, cost = trained.remote_ref, trained.cost_usd
        extra = {"remote_ref": remote_ref or "", "remote_duration_s": trained.duration_s}
        store.delete(journal)

    sha, key = store.put_blob(weights, ".safetensors")
    lora = LoraRef(name=f"{style}-{sha[:8]}", family="flux1", sha256=sha, key=key, remote_ref=remote_ref,
                   trigger_word=config.trigger_word, scale=1.0)
    duration = round(time.monotonic() - started, 2)
    Ledger(store).append(LedgerRow(run_id=run_id, asset="style_lora", partition=style, kind="training",
                                   provider=trainer, model=TRAINER_MODELS[trainer], seed=0, request_key=job_hash,
                                   job_id=job_id, image_sha256=sha, status="ok", cost_usd=cost,
                                   latency_s=duration, lora=lora.name))
    metadata = {"trainer": trainer, "trainer_model": TRAINER_MODELS[trainer], "weights_sha256": sha,
                "weights": store.uri(key), "steps": config.training_steps, "rank": config.lora_rank,
                "trigger_word": config.trigger_word, "cost_usd": cost, "training_duration_s": duration,
                "job_id": job_id, **extra}
    store.write_json(done_key, {"lora": lora.model_dump(), "metadata": metadata})
    return TrainedStyle(lora, metadata)
