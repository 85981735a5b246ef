"""A user's own style, made up for tests: flat "chibi" drawings in a bright palette unlike soft-meadow.

Magenta, cyan and yellow with channels at 0 and 255 on deep purple, as a vector drawing app exports them:
flat fills, dark outlines, anti-aliased edges (drawn at twice the size, then reduced). Seeded, no downloads.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

DEEP_PURPLE = (46, 16, 84)
BRIGHT_FLAT = {"magenta": (255, 0, 255), "cyan": (0, 255, 255), "yellow": (255, 255, 0)}
OUTLINE = (20, 8, 36)
SUBJECTS = ("a round cat", "a tiny robot", "a star bunny", "a sleepy bear", "a happy frog")
PLACES = ("under the moon", "on a cloud", "in a candy garden", "at the night fair")


def chibi_drawing(index: int, size: int = 512) -> Image.Image:
    """One flat drawing: purple sky, a bright ground band, stars, and a big-headed character."""
    rng = random.Random(7000 + index)
    s = 2 * size  # drawn at 2x and reduced: anti-aliased edges like an exported vector drawing
    colours = list(BRIGHT_FLAT.values())
    img = Image.new("RGB", (s, s), DEEP_PURPLE)
    draw = ImageDraw.Draw(img)
    horizon = rng.randint(int(s * 0.62), int(s * 0.78))
    draw.rectangle((0, horizon, s, s), fill=colours[index % 3])
    for _ in range(rng.randint(4, 9)):  # stars and dots
        x, y, r = rng.uniform(0, s), rng.uniform(0, horizon * 0.8), rng.uniform(0.01, 0.035) * s
        draw.ellipse((x - r, y - r, x + r, y + r), fill=rng.choice(colours))
    cx, ground = rng.uniform(0.3, 0.7) * s, horizon + 0.02 * s
    body, head = rng.uniform(0.08, 0.12) * s, rng.uniform(0.16, 0.22) * s
    fill, face = rng.sample(colours, 2)
    w = max(4, s // 160)
    draw.ellipse((cx - body, ground - 2.2 * body, cx + body, ground), fill=fill, outline=OUTLINE, width=w)
    hy = ground - 2.0 * body - head * 0.8
    draw.ellipse((cx - head, hy - head, cx + head, hy + head), fill=face, outline=OUTLINE, width=w)
    for side in (-1, 1):  # ears, big eyes with a white catch-light
        ex = cx + side * head * 0.7
        draw.polygon([(ex - 0.25 * head, hy - 0.7 * head), (ex + 0.25 * head, hy - 0.7 * head),
                      (ex + side * 0.1 * head, hy - 1.35 * head)], fill=fill, outline=OUTLINE)
        px = cx + side * head * 0.38
        draw.ellipse((px - 0.16 * head, hy - 0.1 * head, px + 0.16 * head, hy + 0.26 * head), fill=OUTLINE)
        draw.ellipse((px - 0.06 * head, hy - 0.04 * head, px + 0.03 * head, hy + 0.06 * head), fill=(255, 255, 255))
    return img.resize((size, size), Image.Resampling.LANCZOS)


def chibi_caption(index: int) -> str:
    return (f"flat chibi drawing of {SUBJECTS[index % len(SUBJECTS)]} {PLACES[(index // 5) % len(PLACES)]}, "
            "bright magenta, cyan and yellow on deep purple, bold outlines")


def write_chibi_style(style_dir: Path, count: int = 20) -> Path:
    """A style folder as a user makes one: style.yaml, images/NN.png and images/NN.txt."""
    images = style_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    (style_dir / "style.yaml").write_text(
        "name: Chibi\ndescription: Flat bright chibi drawings (synthetic test style).\nsynthetic: true\n"
        "prompt_prefix: \"flat chibi illustration, bold outlines, bright magenta cyan yellow on deep purple,\"\n"
        "trigger_word: bkbgchibi\ntrainer: none\n")
    for i in range(count):
        chibi_drawing(i).save(images / f"{i + 1:02d}.png")
        (images / f"{i + 1:02d}.txt").write_text(chibi_caption(i) + "\n")
    return style_dir
