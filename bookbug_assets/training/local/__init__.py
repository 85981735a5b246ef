"""Local FLUX.1-dev LoRA training (peft), run as a Dagster Pipes subprocess by `style_lora`.

Importing this package costs nothing: the launcher and config load on first attribute access, and
torch only inside the subprocess (`python -m bookbug_assets.training.local.pipes_entry`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalTrainingConfig", "LocalTrainingResult", "run_local_lora_training"]


def __getattr__(name: str) -> Any:
    # Lazy so that `bookbug_assets.training.local.flux_lora` can be loaded on a GPU box without dagster.
    if name in ("LocalTrainingConfig", "LocalTrainingResult"):
        from bookbug_assets.training.local import config

        return getattr(config, name)
    if name == "run_local_lora_training":
        from bookbug_assets.training.local.launcher import run_local_lora_training

        return run_local_lora_training
    raise AttributeError(name)
