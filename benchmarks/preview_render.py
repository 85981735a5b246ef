"""Preview renderer speed: ms per page against a baseline in the same run (a bare Pillow canvas of the same size,
filled and PNG-encoded), so the ratio holds on a loaded machine. Target: under 100 ms per page.

    .venv/bin/python benchmarks/preview_render.py
"""

import io
import os
import time

from PIL import Image

from bookbug_assets.providers.base import CharacterToken, ImageRequest
from bookbug_assets.providers.preview import render_preview


def _request(seed: int) -> ImageRequest:
    return ImageRequest(provider="preview", model="preview", kind="page", prompt="a meadow", width=1024, height=1024,
                        seed=seed, characters=(CharacterToken(id="pip", name="Pip"),), palette=("#88aa55", "#ffeecc"),
                        label="page 1", scene="a meadow at dawn")


def _baseline(seed: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (1024, 1024), (seed % 255, 120, 80)).save(out, format="PNG")
    return out.getvalue()


def _per_call(fn, n: int = 20) -> float:
    fn(0)
    started = time.perf_counter()
    for seed in range(n):
        fn(seed)
    return (time.perf_counter() - started) / n


if __name__ == "__main__":
    preview, base = _per_call(lambda s: render_preview(_request(s))), _per_call(_baseline)
    print(f"preview {preview * 1000:.1f} ms/page, bare PNG {base * 1000:.1f} ms, ratio {preview / base:.2f}, "
          f"target < 100 ms: {'met' if preview < 0.1 else 'MISSED'}; load average {os.getloadavg()[0]:.2f}")
