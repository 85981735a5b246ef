"""Local FLUX.1-dev LoRA training (peft), run as a Dagster Pipes subprocess by `style_lora`
(the launcher is bookbug_assets.defs.styles.local_training).

Importing this package costs nothing: the config loads on first attribute access, and torch only
inside the subprocess (`python -m bookbug_assets.training.local.pipes_entry`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LocalTrainingConfig", "LocalTrainingResult"]


def __getattr__(name: str) -> Any:
    # Lazy so that `bookbug_assets.training.local.flux_lora` can be loaded on a GPU box without dagster.
    if name in ("LocalTrainingConfig", "LocalTrainingResult"):
        from bookbug_assets.training.local import config

        return getattr(config, name)
    raise AttributeError(name)
