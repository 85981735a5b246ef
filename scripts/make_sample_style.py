"""Generate the synthetic sample style dataset in data/styles/soft-meadow/ (20 images + captions).

The images are procedural (soft pastel blobs, hills, a sun, simple critters), made by this
script so the repository ships a dataset it has every right to, and so `make demo` needs no
download. They are SYNTHETIC: good enough to exercise the pipeline and a trainer, not art.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

PALETTE = ["#f6eedf", "#f2c6a0", "#a8d5ba", "#7fb7be", "#d99ab5", "#6b705c", "#ffd97d"]
SUBJECTS = ["a small rabbit", "a round owl", "a sleepy fox", "a field mouse", "a little hedgehog"]
PLACES = ["on a green hill", "by a quiet pond", "under a big tree", "in a flower meadow", "near a garden wall"]


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def paint(index: int, size: int = 512) -> tuple[Image.Image, str]:
    rng = random.Random(1000 + index)
    img = Image.new("RGB", (size, size), _rgb(PALETTE[0]))
    draw = ImageDraw.Draw(img)
    horizon = rng.randint(int(size * 0.5), int(size * 0.7))
    for layer in range(3):
        colour = _rgb(PALETTE[2 + (index + layer) % 3])
        y = horizon + layer * size // 12
        draw.ellipse((-size // 3 + rng.randint(-40, 40), y - size // 6, size + size // 3, y + size), fill=colour)
    sun = rng.randint(size // 10, size // 5)
    sx, sy = rng.randint(sun, size - sun), rng.randint(sun, horizon // 2)
    draw.ellipse((sx - sun, sy - sun, sx + sun, sy + sun), fill=_rgb(PALETTE[6]))
    cx, cy = rng.randint(size // 4, 3 * size // 4), horizon + size // 12
    body = rng.randint(size // 10, size // 7)
    critter = _rgb(PALETTE[rng.choice([1, 4, 5])])
    draw.ellipse((cx - body, cy - body, cx + body, cy + body), fill=critter)
    draw.ellipse((cx - body // 2, cy - 2 * body, cx + body // 2, cy - body // 2), fill=critter)
    draw.ellipse((cx - body // 5, cy - 3 * body // 2, cx - body // 10, cy - 7 * body // 5), fill=(40, 40, 40))
    # Watercolour-ish: soften edges, then lay a faint paper grain back on top.
    img = img.filter(ImageFilter.GaussianBlur(radius=size / 170))
    grain = Image.effect_noise((size, size), 12).convert("RGB")
    img = Image.blend(img, grain, 0.04)
    caption = (f"soft watercolor picture-book illustration of {SUBJECTS[index % len(SUBJECTS)]} "
               f"{PLACES[(index // len(SUBJECTS)) % len(PLACES)]}, pastel palette, loose brush edges")
    return img, caption


def main(out_dir: Path, count: int = 20) -> None:
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        img, caption = paint(i)
        img.save(images / f"{i + 1:02d}.png", optimize=True)
        (images / f"{i + 1:02d}.txt").write_text(caption + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "data/styles/soft-meadow"))
