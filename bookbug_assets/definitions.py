"""The one entry point: the Dagster layer under defs/, loaded the way dg projects load theirs.

`dg check defs`, `dagster dev -m bookbug_assets.definitions` and the CLI all come here. Importing it
must stay light: no torch (the local family is imported only when a run chooses it).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from bookbug_assets.defs.judge_resource import judge_from_env
from bookbug_assets.defs.resources import folders_for_load, providers_from_env


def build_definitions(data_root: str | None = None, stories_dir: str | None = None,
                      styles_dir: str | None = None) -> dg.Definitions:
    """Every domain under defs/ (its @dg.definitions loaders read the environment, or these folders)."""
    providers_from_env()  # a wrong setting fails here, naming its variable, not wrapped by the loader's error
    judge_from_env()
    with folders_for_load(data_root=data_root, stories_dir=stories_dir, styles_dir=styles_dir):
        loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    # Provider calls are I/O-bound and fanned out inside the page step; a process per step would cost
    # seconds each on a small machine (README "Architecture").
    return dg.Definitions.merge(loaded, dg.Definitions(executor=dg.in_process_executor))


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions()
