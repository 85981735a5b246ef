"""Dagster side of local LoRA training: start the Pipes subprocess and turn what it reports into a result.

Imports neither torch nor diffusers; those load in the subprocess only. The caller (the `style_lora`
asset) runs under `pool="local_gpu"` so two GPU jobs never share a card.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any, Mapping

import dagster as dg

from bookbug_assets.training.local.config import LocalTrainingConfig, LocalTrainingResult

ENTRY_MODULE = "bookbug_assets.training.local.pipes_entry"


def run_local_lora_training(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    pipes_client: dg.PipesSubprocessClient,
    *,
    dataset_dir: str,
    output_dir: str,
    trigger_word: str,
    config: LocalTrainingConfig,
    python_executable: str | None = None,
    env: Mapping[str, str] | None = None,
    asset_key: str | None = None,
) -> LocalTrainingResult:
    """Train a FLUX.1-dev LoRA on `dataset_dir` (images + same-named .txt captions) into `output_dir`.

    Progress (step, loss, sample image paths) streams into the run's event log while it trains. Raises
    dagster's Pipes error if the subprocess fails, ValueError if the weights on disk do not match the hash
    the subprocess reported. Re-running with the same output_dir resumes from its newest checkpoint
    (when `config.resume`).
    """
    started = time.perf_counter()
    extras: dict[str, Any] = {"config": config.model_dump(mode="json"), "dataset_dir": os.fspath(dataset_dir),
                              "output_dir": os.fspath(output_dir), "trigger_word": trigger_word}
    if asset_key is not None:
        extras["asset_key"] = asset_key
    invocation = pipes_client.run(
        context=context, command=[python_executable or sys.executable, "-m", ENTRY_MODULE], extras=extras,
        env={"PYTHONUNBUFFERED": "1", **(env or {})})
    reported = invocation.get_materialize_result(implicit_materialization=False)
    metadata = {key: value.value for key, value in (reported.metadata or {}).items()}
    messages = invocation.get_custom_messages()
    weights = str(metadata["weights_path"])
    with open(weights, "rb") as fh:
        sha = hashlib.file_digest(fh, "sha256").hexdigest()
    if sha != metadata["sha256"]:
        raise ValueError(f"LoRA weights at {weights} hash to {sha[:12]}, subprocess reported {metadata['sha256'][:12]}")
    losses = [(int(m["step"]), float(m["loss"])) for m in messages if m.get("type") == "progress"]
    samples = [p for m in messages if m.get("type") == "sample" for p in m["paths"]]
    metadata["launcher_duration_s"] = round(time.perf_counter() - started, 3)
    context.log.info(f"local LoRA: {metadata['steps']} steps, final loss {metadata['final_loss']:.5f}, {weights}")
    return LocalTrainingResult(
        weights_path=weights, sha256=sha, steps=int(metadata["steps"]), start_step=int(metadata["start_step"]),
        rank=int(metadata["rank"]), alpha=float(metadata["alpha"]), final_loss=float(metadata["final_loss"]),
        duration_s=float(metadata["duration_s"]), samples=samples or list(metadata.get("samples") or []),
        losses=losses, metadata=metadata)
