"""Fixtures for the local GPU backend tests: offline hub, a tiny captioned dataset, a shared pipeline cache."""

import os
from pathlib import Path

import pytest

# Tiny models are built in memory; nothing may reach for the hub (the tests must pass with no network).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def write_dataset(folder: Path, n: int = 3) -> Path:
    """n small noisy images (two aspect ratios) with captions; one caption carries the [trigger] placeholder."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        size = (80, 64) if i % 2 == 0 else (64, 96)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"bug{i}.png")
        caption = "[trigger] a ladybug with a lantern" if i == 0 else f"a beetle number {i} in a meadow"
        (folder / f"bug{i}.txt").write_text(caption)
    return folder


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models run 10x faster on one thread than on two contending ones (measured on the 2-core runner)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


@pytest.fixture(scope="session")
def pipeline_cache():
    pytest.importorskip("diffusers")
    from bookbug_assets.providers._local_pipelines import PipelineCache

    return PipelineCache()
