"""`python -m bookbug_assets.training.local.pipes_entry`: the subprocess side of a local LoRA run.

Speaks Dagster Pipes through the light `dagster_pipes` package only (no dagster import): step, loss and
sample images go out as custom messages and log lines while training runs, the weights' path, hash and
figures as the asset materialization at the end. Launched by `launcher.run_local_lora_training`.
"""

from __future__ import annotations

from typing import Any

from bookbug_assets.training.local.config import LocalTrainingConfig


class PipesReporter:
    """Trainer reporter that forwards to an open Pipes context."""

    def __init__(self, pipes: Any) -> None:
        self._pipes = pipes

    def progress(self, step: int, total: int, loss: float, lr: float, elapsed_s: float) -> None:
        self._pipes.report_custom_message({"type": "progress", "step": step, "total": total, "loss": loss,
                                           "lr": lr, "elapsed_s": round(elapsed_s, 3)})
        self._pipes.log.info(f"step {step}/{total} loss {loss:.5f} lr {lr:.2e} ({elapsed_s:.1f}s)")

    def sample(self, step: int, paths: list[str]) -> None:
        self._pipes.report_custom_message({"type": "sample", "step": step, "paths": paths})
        self._pipes.log.info(f"step {step}: sample images {paths}")

    def checkpoint(self, step: int, path: str) -> None:
        self._pipes.report_custom_message({"type": "checkpoint", "step": step, "path": path})

    def log(self, message: str) -> None:
        self._pipes.log.info(message)


def summary_metadata(summary: Any) -> dict[str, dict[str, Any]]:
    """Typed Pipes metadata (the `raw_value`/`type` form `report_asset_materialization` takes)."""
    def typed(value: Any, kind: str) -> dict[str, Any]:
        return {"raw_value": value, "type": kind}

    return {
        "weights_path": typed(summary.weights_path, "path"),
        "sha256": typed(summary.sha256, "text"),
        "steps": typed(summary.steps, "int"),
        "start_step": typed(summary.start_step, "int"),
        "rank": typed(summary.rank, "int"),
        "alpha": typed(summary.alpha, "float"),
        "final_loss": typed(summary.final_loss, "float"),
        "duration_s": typed(summary.duration_s, "float"),
        "device": typed(summary.device, "text"),
        "attention_backend": typed(summary.attention_backend, "text"),
        "trainable_params": typed(summary.trainable_params, "int"),
        "gradient_checkpointing": typed(summary.gradient_checkpointing, "bool"),
        "compiled": typed(summary.compiled, "bool"),
        "base_weights": typed(summary.base_weights, "text"),
        "lora_effect": typed(summary.lora_effect, "float"),
        "samples": typed(summary.samples, "json"),
        "loss_curve": typed([list(x) for x in summary.losses], "json"),
    }


def main() -> None:
    from dagster_pipes import open_dagster_pipes

    from bookbug_assets.training.local.trainer import train_lora

    with open_dagster_pipes() as pipes:
        config = LocalTrainingConfig.model_validate(pipes.get_extra("config"))
        summary = train_lora(
            config, dataset_dir=pipes.get_extra("dataset_dir"), output_dir=pipes.get_extra("output_dir"),
            trigger_word=pipes.get_extra("trigger_word"), reporter=PipesReporter(pipes))
        asset_key = pipes.get_extra("asset_key") if "asset_key" in pipes.extras else None
        # The weights' hash is the data version: same weights, same downstream pages.
        pipes.report_asset_materialization(metadata=summary_metadata(summary), data_version=summary.sha256,
                                           asset_key=asset_key)


if __name__ == "__main__":
    main()
