"""Shared fixtures: a throwaway data root with the example story and sample style, and defs on it."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "stories" / "pip-and-the-lantern.yaml"


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Path]:
    stories = tmp_path / "stories"
    stories.mkdir()
    styles = tmp_path / "styles"
    shutil.copytree(REPO / "data" / "styles" / "soft-meadow", styles / "soft-meadow")
    return {"root": tmp_path, "stories": stories, "styles": styles, "outputs": tmp_path / "outputs"}


@pytest.fixture
def defs_for(workspace):
    from bookbug_assets.definitions import build_definitions

    def make(**env) -> dg.Definitions:
        return build_definitions(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                                 styles_dir=str(workspace["styles"]))

    return make


@pytest.fixture
def instance():
    # In-memory: 4-5x faster than sqlite for in-process runs (reference/environment.md).
    return dg.DagsterInstance.ephemeral()
