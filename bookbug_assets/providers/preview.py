"""The offline default: a deterministic storyboard proof, stamped PREVIEW.

No key, no GPU, no network. The same request always gives the same bytes, so the cache, the
ledger and the PDF behave exactly as they do with a paid model. Each character is drawn as one
token (shape + colour + initial, derived from its id) that stays the same on every page, which
is what a proof needs to check layout and who appears where.
"""

from __future__ import annotations

import hashlib
import io
import random
import textwrap
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from bookbug_assets.providers.base import (
    CharacterToken, ConfigurationError, ImageProvider, ImageRequest, JobOutput, ModelCapabilities,
)

PREVIEW_MODEL = "storyboard-v1"
DEFAULT_PALETTE = ("#f4e9d8", "#e8a87c", "#85cdca", "#41b3a3", "#c38d9e", "#5d5c61")
_SHAPES = ("circle", "square", "triangle", "diamond", "hexagon", "star")
_CAPS = ModelCapabilities(model=PREVIEW_MODEL, max_references=14, lora_family=None, seed_deterministic=True,
                          min_size=64, max_size=4096, price_usd=0.0,
                          notes="Offline storyboard proof; every image says PREVIEW.")


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _hex(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def character_token_style(character_id: str) -> tuple[str, tuple[int, int, int]]:
    """Shape and colour of a character's token: a function of its id alone, so pages agree."""
    digest = hashlib.sha256(character_id.encode()).digest()
    hue_rgb = (64 + digest[1] % 160, 64 + digest[2] % 160, 64 + digest[3] % 160)
    return _SHAPES[digest[0] % len(_SHAPES)], hue_rgb


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    import math

    if shape == "triangle":
        angles, radii = [90, 210, 330], [r] * 3
    elif shape == "diamond":
        angles, radii = [90, 180, 270, 0], [r] * 4
    elif shape == "hexagon":
        angles, radii = list(range(0, 360, 60)), [r] * 6
    else:  # star
        angles = list(range(90, 450, 36))
        radii = [r if i % 2 == 0 else r * 0.45 for i in range(10)]
    return [(cx + rad * math.cos(math.radians(a)), cy - rad * math.sin(math.radians(a)))
            for a, rad in zip(angles, radii, strict=True)]


def draw_token(draw: ImageDraw.ImageDraw, token: CharacterToken, cx: float, cy: float, r: float) -> None:
    shape, color = character_token_style(token.id)
    outline = (30, 30, 30)
    width = max(2, int(r / 12))
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color, outline=outline, width=width)
    elif shape == "square":
        draw.rectangle((cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85), fill=color,
                       outline=outline, width=width)
    else:
        draw.polygon(_polygon(shape, cx, cy, r), fill=color, outline=outline, width=width)
    font = _font(max(10, int(r * 0.9)))
    draw.text((cx, cy), token.name[:1].upper(), fill=(255, 255, 255), font=font, anchor="mm",
              stroke_width=max(1, int(r / 20)), stroke_fill=outline)
    draw.text((cx, cy + r * 1.15), token.name, fill=outline, font=_font(max(10, int(r * 0.35))), anchor="ma")


def render_preview(request: ImageRequest) -> bytes:
    """Draw the storyboard proof for `request`; deterministic in the request's content."""
    rng = random.Random(request.cache_key())
    w, h = request.width, request.height
    palette = [_hex(c) for c in (request.palette or DEFAULT_PALETTE)]
    image = Image.new("RGB", (w, h), palette[0])
    draw = ImageDraw.Draw(image)

    # Background: horizon bands in the style's palette, so the proof reads as "this style".
    horizon = int(h * rng.uniform(0.55, 0.7))
    draw.rectangle((0, horizon, w, h), fill=palette[1 % len(palette)])
    for _ in range(6):
        color = palette[rng.randrange(len(palette))]
        x, y, r = rng.uniform(0, w), rng.uniform(0, horizon), rng.uniform(0.03, 0.12) * min(w, h)
        draw.ellipse((x - r, y - r * 0.6, x + r, y + r * 0.6), fill=color)

    s = min(w, h)
    tokens = list(request.characters)
    if request.kind == "sprite_sheet":
        # One row per character, three poses each: the reference every page is checked against.
        rows = max(1, len(tokens))
        for row, token in enumerate(tokens):
            cy = h * (row + 0.5) / rows
            for col in range(3):
                draw_token(draw, token, w * (col + 0.5) / 3, cy, min(w / 8, h / (3.2 * rows)))
    elif tokens:
        for i, token in enumerate(tokens):
            cx = w * (i + 1) / (len(tokens) + 1)
            draw_token(draw, token, cx, horizon, s * 0.11)

    caption = request.scene or request.prompt
    font = _font(max(12, s // 40))
    lines = textwrap.wrap(caption, width=48)[:4]
    if lines:
        box_h = (len(lines) + 1) * font.size * 1.25
        draw.rectangle((0, 0, w, box_h), fill=(255, 255, 255))
        for n, line in enumerate(lines):
            draw.text((s * 0.03, font.size * 0.6 + n * font.size * 1.25), line, fill=(20, 20, 20), font=font)
    if request.label:
        draw.text((w - s * 0.03, h - s * 0.03), request.label, fill=(20, 20, 20), font=_font(max(12, s // 30)),
                  anchor="rd")

    # The stamp: a preview must never pass for real art, on screen or in print.
    stamp = Image.new("L", (w, h), 0)
    ImageDraw.Draw(stamp).text((w / 2, h / 2), "PREVIEW", fill=110, font=_font(max(16, s // 6)), anchor="mm")
    stamp = stamp.rotate(30, resample=Image.Resampling.BILINEAR)
    image.paste((200, 30, 30), (0, 0), stamp)

    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class PreviewProvider(ImageProvider):
    """Serves the one preview model; synchronous, so `submit` renders and `wait` hands it over."""

    name = "preview"

    def __init__(self) -> None:
        self._done: dict[str, bytes] = {}

    def capabilities(self, model: str) -> ModelCapabilities:
        if model != PREVIEW_MODEL:
            raise ConfigurationError(f"preview provider serves only {PREVIEW_MODEL!r}, not {model!r}")
        return _CAPS

    def models(self) -> list[str]:
        return [PREVIEW_MODEL]

    def validate(self, request: ImageRequest) -> ModelCapabilities:
        # A preview may stand in for a LoRA model: it draws the proof and ignores the weights.
        return self.capabilities(request.model)

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        job_id = "preview-" + request.cache_key()[:16]
        self._done[job_id] = render_preview(request)
        return job_id

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        image = self._done.pop(job_id, None)
        if image is None:  # resumed from a journal in a new process: rendering again is free
            image = render_preview(request)
        return JobOutput(image=image, version=PREVIEW_MODEL, seed=request.seed)
