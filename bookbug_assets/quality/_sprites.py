"""Drawing for the synthetic character set: characters made of coloured shapes, and scenes.

Separate from ``synthetic`` only to keep files short; see that module for why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

FAMILIES: dict[str, list[tuple[int, int, int]]] = {
    "warm": [(196, 92, 62), (224, 172, 66), (238, 222, 188), (122, 74, 46), (232, 134, 112), (146, 142, 64)],
    "cool": [(46, 136, 150), (48, 66, 116), (124, 178, 218), (152, 208, 180), (162, 142, 202), (92, 102, 124)],
    "forest": [(70, 120, 60), (150, 180, 80), (100, 70, 50), (210, 190, 120), (180, 90, 60), (60, 90, 100)],
    "candy": [(232, 140, 170), (170, 120, 200), (250, 210, 120), (120, 200, 200), (240, 170, 130), (200, 90, 120)],
}
OUTLINE = (34, 30, 40)
BODY_SHAPES = ("ellipse", "box", "pear", "triangle")
HEAD_SHAPES = ("circle", "square", "wide")
PATTERNS = ("none", "stripes", "dots", "checks", "belly")
EARS = ("none", "round", "pointy", "antenna")
ACCESSORIES = ("none", "hat", "scarf", "bow")

@dataclass(frozen=True)
class CharacterSpec:
    family: str
    body_shape: str
    head_shape: str
    pattern: str
    ears: str
    accessory: str
    body_w: float
    body_h: float
    head_size: float
    body_color: tuple[int, int, int]
    head_color: tuple[int, int, int]
    limb_color: tuple[int, int, int]
    pattern_color: tuple[int, int, int]
    extra_color: tuple[int, int, int]  # ears and accessory


@dataclass(frozen=True)
class Pose:
    arm_left: float = 30.0  # degrees away from hanging straight down
    arm_right: float = 30.0
    leg_spread: float = 10.0
    head_dx: float = 0.0
    tilt: float = 0.0
    flip: bool = False

def _limb(draw: ImageDraw.ImageDraw, start, angle_deg: float, length: float, side: int, colour) -> None:
    a = math.radians(angle_deg)
    end = (start[0] + side * length * math.sin(a), start[1] + length * math.cos(a))
    draw.line([start, end], fill=OUTLINE, width=18)
    draw.line([start, end], fill=colour, width=12)
    draw.ellipse([end[0] - 9, end[1] - 9, end[0] + 9, end[1] + 9], fill=colour, outline=OUTLINE, width=3)


def _body_polygon(shape: str, box: tuple[float, float, float, float]) -> list[tuple[float, float]] | None:
    x0, y0, x1, y1 = box
    cx = (x0 + x1) / 2
    if shape == "triangle":
        return [(cx, y0), (x1, y1), (x0, y1)]
    if shape == "pear":
        w = x1 - x0
        return [(cx - 0.25 * w, y0), (cx + 0.25 * w, y0), (x1, y1 - 0.2 * (y1 - y0)), (x1 - 0.1 * w, y1),
                (x0 + 0.1 * w, y1), (x0, y1 - 0.2 * (y1 - y0))]
    return None


def _pattern_layer(spec: CharacterSpec, size, box) -> Image.Image:
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = box
    c = spec.pattern_color
    if spec.pattern == "stripes":
        for y in np.arange(y0 + 8, y1, 24):
            d.rectangle([x0, y, x1, y + 10], fill=c)
    elif spec.pattern == "dots":
        for y in np.arange(y0 + 14, y1, 28):
            for x in np.arange(x0 + 14, x1, 28):
                d.ellipse([x - 6, y - 6, x + 6, y + 6], fill=c)
    elif spec.pattern == "checks":
        for i, y in enumerate(np.arange(y0, y1, 20)):
            for j, x in enumerate(np.arange(x0, x1, 20)):
                if (i + j) % 2 == 0:
                    d.rectangle([x, y, x + 19, y + 19], fill=c)
    elif spec.pattern == "belly":
        w, h = x1 - x0, y1 - y0
        d.ellipse([x0 + 0.25 * w, y0 + 0.3 * h, x1 - 0.25 * w, y1 - 0.08 * h], fill=c)
    return layer


def draw_character(spec: CharacterSpec, pose: Pose = Pose()) -> Image.Image:
    """The character on a transparent canvas, cropped to its outline."""
    W, H = 300, 360
    img = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    bw, bh = 110 * spec.body_w, 120 * spec.body_h
    cx, cy = W / 2, 215
    box = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
    for side in (-1, 1):  # legs first so the body covers their tops
        _limb(d, (cx + side * bw * 0.22, box[3] - 10), pose.leg_spread, 55, side, spec.limb_color)
    _limb(d, (box[0] + 12, box[1] + 25), pose.arm_left, 60, -1, spec.limb_color)
    _limb(d, (box[2] - 12, box[1] + 25), pose.arm_right, 60, 1, spec.limb_color)

    mask = Image.new("L", (W, H), 0)
    md = ImageDraw.Draw(mask)
    poly = _body_polygon(spec.body_shape, box)
    if poly:
        md.polygon(poly, fill=255)
    elif spec.body_shape == "box":
        md.rounded_rectangle(box, radius=18, fill=255)
    else:
        md.ellipse(box, fill=255)
    fill = Image.new("RGBA", (W, H), spec.body_color + (255,))
    fill.alpha_composite(_pattern_layer(spec, (W, H), box))
    img.paste(fill, (0, 0), mask)
    edge = mask.filter(ImageFilter.MaxFilter(5))
    ring = Image.fromarray(((np.asarray(edge) > 0) & (np.asarray(mask) == 0)).astype(np.uint8) * 255)
    img.paste(Image.new("RGBA", (W, H), OUTLINE + (255,)), (0, 0), ring)

    r = 44 * spec.head_size
    hx, hy = cx + pose.head_dx, box[1] - r * 0.75
    if spec.ears == "round":
        for s in (-1, 1):
            d.ellipse([hx + s * r * 0.75 - 16, hy - r - 12, hx + s * r * 0.75 + 16, hy - r + 20],
                      fill=spec.extra_color, outline=OUTLINE, width=3)
    elif spec.ears == "pointy":
        for s in (-1, 1):
            tri = [(hx + s * r * 0.3, hy - r * 0.7), (hx + s * r * 0.95, hy - r * 0.4), (hx + s * r * 0.8, hy - r - 30)]
            d.polygon(tri, fill=spec.extra_color, outline=OUTLINE, width=3)
    elif spec.ears == "antenna":
        for s in (-1, 1):
            tip = (hx + s * r * 0.7, hy - r - 34)
            d.line([(hx + s * r * 0.3, hy - r * 0.8), tip], fill=OUTLINE, width=4)
            d.ellipse([tip[0] - 9, tip[1] - 9, tip[0] + 9, tip[1] + 9], fill=spec.extra_color, outline=OUTLINE, width=3)
    head_box = [hx - r, hy - r, hx + r, hy + r]
    if spec.head_shape == "square":
        d.rounded_rectangle(head_box, radius=10, fill=spec.head_color, outline=OUTLINE, width=4)
    elif spec.head_shape == "wide":
        d.ellipse([hx - 1.3 * r, hy - 0.8 * r, hx + 1.3 * r, hy + 0.8 * r],
                  fill=spec.head_color, outline=OUTLINE, width=4)
    else:
        d.ellipse(head_box, fill=spec.head_color, outline=OUTLINE, width=4)
    for s in (-1, 1):
        ex, ey = hx + s * r * 0.38, hy - r * 0.1
        d.ellipse([ex - 10, ey - 10, ex + 10, ey + 10], fill=(245, 245, 240), outline=OUTLINE, width=2)
        d.ellipse([ex - 4, ey - 3, ex + 4, ey + 5], fill=OUTLINE)
    d.arc([hx - r * 0.35, hy + r * 0.1, hx + r * 0.35, hy + r * 0.55], 20, 160, fill=OUTLINE, width=3)
    if spec.accessory == "hat":
        top = hy - r * (0.8 if spec.head_shape == "wide" else 1.0)
        d.rectangle([hx - r * 0.55, top - 40, hx + r * 0.55, top + 4], fill=spec.extra_color, outline=OUTLINE, width=3)
        d.rectangle([hx - r * 0.95, top - 2, hx + r * 0.95, top + 8], fill=spec.extra_color, outline=OUTLINE, width=3)
    elif spec.accessory == "scarf":
        d.rounded_rectangle([cx - bw * 0.45, box[1] - 6, cx + bw * 0.45, box[1] + 16], radius=6,
                            fill=spec.extra_color, outline=OUTLINE, width=3)
        d.rectangle([cx + bw * 0.15, box[1] + 10, cx + bw * 0.32, box[1] + 50],
                    fill=spec.extra_color, outline=OUTLINE, width=3)
    elif spec.accessory == "bow":
        bx, by = hx + r * 0.6, hy - r * 0.75
        d.polygon([(bx, by), (bx - 26, by - 16), (bx - 26, by + 16)], fill=spec.extra_color, outline=OUTLINE, width=3)
        d.polygon([(bx, by), (bx + 26, by - 16), (bx + 26, by + 16)], fill=spec.extra_color, outline=OUTLINE, width=3)

    if pose.flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if pose.tilt:
        img = img.rotate(pose.tilt, resample=Image.Resampling.BICUBIC, expand=True)
    return img.crop(img.getbbox())


def _pick_colour(rng: np.random.Generator, family: str | None, strict: bool = False) -> tuple[int, int, int]:
    if family is not None and (strict or rng.random() < 0.5):
        # Backgrounds that reuse the character's palette make localisation honest.
        return tuple(int(v) for v in FAMILIES[family][rng.integers(6)])
    return tuple(int(v) for v in rng.integers(30, 226, size=3))


def background(
    rng: np.random.Generator, size: tuple[int, int], family: str | None = None, strict: bool = False
) -> Image.Image:
    """A varied scene: gradient sky, ground, hills, sun, trees, houses, texture.

    ``strict`` paints only with the family's colours: one book's consistent style.
    """
    w, h = size

    def pick(fam: str | None = family) -> tuple[int, int, int]:
        return _pick_colour(rng, fam, strict)

    top, bottom = np.array(pick()), np.array(pick())
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t).astype(np.uint8).repeat(w, axis=1)
    img = Image.fromarray(sky, "RGB")
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.55, 0.8))
    for _ in range(rng.integers(1, 4)):
        cx, rw = rng.uniform(0, w), rng.uniform(0.2, 0.6) * w
        d.ellipse([cx - rw, horizon - rng.uniform(0.05, 0.25) * h, cx + rw, horizon + 0.3 * h], fill=pick())
    d.rectangle([0, horizon, w, h], fill=pick())
    if rng.random() < 0.6:
        sx, sy, sr = rng.uniform(0, w), rng.uniform(0, 0.3 * h), rng.uniform(0.04, 0.1) * w
        d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], fill=pick(family if strict else None))
    for _ in range(rng.integers(0, 4)):
        x, tw = rng.uniform(0, w), rng.uniform(0.03, 0.08) * w
        if rng.random() < 0.5:  # tree
            d.rectangle([x - tw / 3, horizon - 0.15 * h, x + tw / 3, horizon + 5], fill=pick())
            d.ellipse([x - tw * 1.5, horizon - 0.35 * h, x + tw * 1.5, horizon - 0.1 * h], fill=pick())
        else:  # house
            d.rectangle([x - tw * 1.5, horizon - 0.2 * h, x + tw * 1.5, horizon + 5], fill=pick(),
                        outline=OUTLINE, width=2)
            d.polygon([(x - tw * 1.8, horizon - 0.2 * h), (x, horizon - 0.32 * h), (x + tw * 1.8, horizon - 0.2 * h)],
                      fill=pick(), outline=OUTLINE)
    if rng.random() < 0.3:  # grass tufts: fine texture in the foreground
        col = pick()
        for _ in range(60):
            x, y = rng.uniform(0, w), rng.uniform(horizon, h)
            d.line([(x, y), (x + rng.uniform(-4, 4), y - rng.uniform(5, 12))], fill=col, width=2)
    return img
