"""The offline default: a deterministic storyboard proof.

No key, no GPU, no network. The same request always gives the same bytes, so the cache, the
ledger and the PDF behave exactly as they do with a paid model. Each character is drawn as one
token (shape + colour + initials, all derived from its id) that stays the same on every page, which
is what a proof needs to check layout and who appears where.

The proof is laid out for the page it will be printed on (pdf.py): its caption and page label sit inside
the safe area, on the opposite side from where the book's text panel goes (pages: text at the bottom, which the
proof keeps as calm flat ground so the PDF's calmer-band rule puts it there; the cover: title at the top), and
the character tokens and their name labels sit in the band between, which no text panel reaches. The image
carries no PREVIEW stamp: the PDF stamps every page of a book that holds a preview (pdf._draw_watermark), as
text inside the safe area that preflight reads, so a proof is marked once, and on the cover and any real page
as well.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import re
from functools import lru_cache
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from bookbug_assets.providers.base import (
    CharacterToken, ConfigurationError, ImageProvider, ImageRequest, JobOutput, ModelCapabilities,
)

PREVIEW_MODEL = "storyboard-v1"
DEFAULT_PALETTE = ("#f4e9d8", "#e8a87c", "#85cdca", "#41b3a3", "#c38d9e", "#5d5c61")
SHAPES = ("circle", "square", "triangle", "triangle-down", "diamond", "pentagon", "hexagon", "star", "cross")
MARKS = ("plain", "ring", "halo")  # an inner white ring, or an outer dotted halo: 27 silhouettes with the shapes
HUES = 24  # 15 degrees apart
# Fractions of the image kept clear at every edge: the 0.5 in safe margin plus 0.125 in bleed of an 8.5 in page is
# 7.1% of it; 10% also covers a 6 in page (the proof does not know the trim it will be printed at).
SAFE_INSET = 0.10
# Where the tokens stand (centre, fraction of the height): clear of a text panel, which pdf._layout caps at 40%
# of the safe height (above 58.6% of an 8.5 in page for a bottom panel, below 41.4% for the cover's title).
PAGE_TOKEN_Y, COVER_TOKEN_Y = 0.40, 0.60
INK, LABEL_BG = (30, 30, 30), (255, 255, 255)
_CAPS = ModelCapabilities(model=PREVIEW_MODEL, max_references=14, lora_family=None, seed_deterministic=True,
                          min_size=64, max_size=4096, price_usd=0.0,
                          notes="Offline storyboard proof; the book's PDF says PREVIEW on every page.")


class TokenStyle(NamedTuple):
    shape: str
    color: tuple[int, int, int]
    initials: str
    mark: str


class PlacedToken(NamedTuple):
    token: CharacterToken
    cx: float
    cy: float
    r: float


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _hex(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def character_initials(character_id: str) -> str:
    """Up to two characters from the id: "pig-2" -> "P2", "big-bad-wolf" -> "BW", "pip" -> "Pi"."""
    parts = [p for p in re.split(r"[-_\s]+", character_id) if p] or ["?"]
    if len(parts) > 1 and parts[-1].isdigit():
        return parts[0][0].upper() + parts[-1]
    if len(parts) > 1:
        return (parts[0][0] + parts[-1][0]).upper()
    return parts[0][:2].title()


def character_token_style(character_id: str) -> TokenStyle:
    """Shape, mark, colour and initials of a character's token: a function of its id alone, so every page agrees
    (a page's request names only the characters on it, so the whole cast cannot be consulted).

    27 silhouettes (9 shapes x 3 marks) x 24 hues: two characters get the same silhouette with odds of 1 in 27 a
    pair, and then still differ in hue (23 in 24), initials and name label."""
    digest = hashlib.sha256(character_id.encode()).digest()
    hue = (int.from_bytes(digest[1:3], "big") % HUES) / HUES
    # value <= 0.8: no channel reaches 255, which the artifact check counts as clipping
    r, g, b = colorsys.hsv_to_rgb(hue, 0.5 + (digest[3] % 3) * 0.12, 0.62 + (digest[4] % 3) * 0.09)
    return TokenStyle(SHAPES[digest[0] % len(SHAPES)], (round(r * 255), round(g * 255), round(b * 255)),
                      character_initials(character_id), MARKS[digest[5] % len(MARKS)])


def _regular(n: int, cx: float, cy: float, r: float, start_deg: float) -> list[tuple[float, float]]:
    angles = [math.radians(start_deg + 360 * i / n) for i in range(n)]
    return [(cx + r * math.cos(a), cy - r * math.sin(a)) for a in angles]


def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        return _regular(4, cx, cy, r * 1.15, 45)
    if shape == "triangle":
        return _regular(3, cx, cy, r * 1.1, 90)
    if shape == "triangle-down":
        return _regular(3, cx, cy, r * 1.1, 270)
    if shape == "diamond":
        return _regular(4, cx, cy, r * 1.1, 90)
    if shape == "pentagon":
        return _regular(5, cx, cy, r, 90)
    if shape == "hexagon":
        return _regular(6, cx, cy, r, 0)
    if shape == "star":
        return [(cx + (r if i % 2 == 0 else r * 0.5) * math.cos(math.radians(90 + 36 * i)),
                 cy - (r if i % 2 == 0 else r * 0.5) * math.sin(math.radians(90 + 36 * i))) for i in range(10)]
    a = r * 0.38  # cross: a plus sign of arms 2a wide
    return [(cx - a, cy - r), (cx + a, cy - r), (cx + a, cy - a), (cx + r, cy - a), (cx + r, cy + a), (cx + a, cy + a),
            (cx + a, cy + r), (cx - a, cy + r), (cx - a, cy + a), (cx - r, cy + a), (cx - r, cy - a), (cx - a, cy - a)]


def draw_token(draw: ImageDraw.ImageDraw, token: CharacterToken, cx: float, cy: float, r: float,
               label_width: float) -> tuple[float, float, float, float]:
    """The token and, under it, its name on a white label no wider than `label_width`; returns the label's box."""
    style = character_token_style(token.id)
    width = max(2, int(r / 12))
    if style.mark == "halo":
        for i in range(16):  # dotted, so it never reads as part of the shape
            a = math.radians(i * 360 / 16)
            x, y, d = cx + 1.2 * r * math.cos(a), cy + 1.2 * r * math.sin(a), max(2.0, r / 14)
            draw.ellipse((x - d, y - d, x + d, y + d), fill=INK)
    outlines = [(1.0, style.color, INK)] + ([(0.72, None, (255, 255, 255))] if style.mark == "ring" else [])
    for scale, fill, line in outlines:
        if style.shape == "circle":
            draw.ellipse((cx - r * scale, cy - r * scale, cx + r * scale, cy + r * scale), fill=fill, outline=line,
                         width=width)
        else:
            draw.polygon(_polygon(style.shape, cx, cy, r * scale), fill=fill, outline=line, width=width)
    draw.text((cx, cy), style.initials, fill=(255, 255, 255), font=_font(max(10, int(r * 0.62))), anchor="mm",
              stroke_width=max(1, int(r / 16)), stroke_fill=INK)
    size = max(10, int(r * 0.36))
    limit = label_width
    while size > 10 and _font(size).getlength(token.name) > limit - size:
        size -= 1
    font = _font(size)
    text_w = min(font.getlength(token.name), limit - size)
    top = cy + r * 1.32
    box = (cx - text_w / 2 - size / 2, top, cx + text_w / 2 + size / 2, top + size * 1.4)
    draw.rounded_rectangle(box, radius=size / 3, fill=LABEL_BG, outline=INK, width=1)
    draw.text((cx, top + size * 0.7), token.name, fill=INK, font=font, anchor="mm")
    return box


def token_layout(request: ImageRequest) -> list[PlacedToken]:
    """Where each character's token goes: one row per character on a sprite sheet (three poses), else one row in
    the band no text panel covers."""
    w, h = request.width, request.height
    tokens = list(request.characters)
    if request.kind == "sprite_sheet":
        top = _header_height(request)
        rows = max(1, len(tokens))
        row_h = (h - top) / rows
        r = min(w / 8, row_h / 3.4)
        return [PlacedToken(t, w * (col + 0.5) / 3, top + row_h * (row + 0.42), r)
                for row, t in enumerate(tokens) for col in range(3)]
    if not tokens:
        return []
    span = w * (1 - 2 * SAFE_INSET)
    r = min(0.085 * min(w, h), span / (len(tokens) * 2.6))
    cy = h * (COVER_TOKEN_Y if request.kind == "hero_page" else PAGE_TOKEN_Y)
    return [PlacedToken(t, w * SAFE_INSET + span * (i + 0.5) / len(tokens), cy, r) for i, t in enumerate(tokens)]


def _header_font(request: ImageRequest) -> ImageFont.ImageFont:
    return _font(max(12, min(request.width, request.height) // 40))


def _header_lines(request: ImageRequest) -> list[str]:
    """The label line, then the scene wrapped to the safe width (at most three lines)."""
    font = _header_font(request)
    width = request.width * (1 - 2 * SAFE_INSET) - 2 * font.size
    label = " - ".join(x for x in (request.label, "storyboard proof") if x)
    words, lines, line = (request.scene or request.prompt).split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines += [line] if line else []
    if len(lines) > 3:
        lines = lines[:3]
        lines[2] = lines[2].rstrip(".,;") + " ..."
    return [label, *lines] if request.kind != "sprite_sheet" else [label]


def _header_height(request: ImageRequest) -> float:
    return (len(_header_lines(request)) * 1.3 + 0.8) * _header_font(request).size + request.height * SAFE_INSET


def _draw_header(draw: ImageDraw.ImageDraw, request: ImageRequest, at_bottom: bool) -> None:
    """The label and scene caption on a white card inside the safe area."""
    font = _header_font(request)
    lines = _header_lines(request)
    w, h = request.width, request.height
    card_h = (len(lines) * 1.3 + 0.8) * font.size
    y0 = h * (1 - SAFE_INSET) - card_h if at_bottom else h * SAFE_INSET
    x0, x1 = w * SAFE_INSET, w * (1 - SAFE_INSET)
    draw.rounded_rectangle((x0, y0, x1, y0 + card_h), radius=font.size / 2, fill=LABEL_BG, outline=INK, width=1)
    for n, line in enumerate(lines):
        draw.text((x0 + font.size, y0 + font.size * (0.4 + 1.3 * n)), line, fill=(20, 20, 20), font=font)


def render_preview(request: ImageRequest) -> bytes:
    """Draw the storyboard proof for `request`; deterministic in the request's content."""
    rng = random.Random(request.cache_key())
    w, h = request.width, request.height
    palette = [_hex(c) for c in (request.palette or DEFAULT_PALETTE)]
    image = Image.new("RGB", (w, h), palette[0])
    draw = ImageDraw.Draw(image)
    placed = token_layout(request)

    # Background: sky and flat ground in the style's palette, so the proof reads as "this style". The ground starts
    # where the tokens stand and stays flat: on a page it is where the book's text goes.
    cy = h * (COVER_TOKEN_Y if request.kind == "hero_page" else PAGE_TOKEN_Y)
    r = placed[0].r if placed and request.kind != "sprite_sheet" else 0.085 * min(w, h)
    horizon = int(cy + r * rng.uniform(0.7, 1.0)) if request.kind != "sprite_sheet" else int(h * rng.uniform(0.55, 0.7))
    draw.rectangle((0, horizon, w, h), fill=palette[1 % len(palette)])
    for _ in range(6):
        color = palette[rng.randrange(len(palette))]
        x, y, rr = rng.uniform(0, w), rng.uniform(0, horizon * 0.8), rng.uniform(0.03, 0.1) * min(w, h)
        draw.ellipse((x - rr, y - rr * 0.6, x + rr, min(horizon, y + rr * 0.6)), fill=color)

    label_width = (w * (1 - 2 * SAFE_INSET) / max(1, len(request.characters))) * 0.95
    for token, cx, ty, tr in placed:
        draw_token(draw, token, cx, ty, tr, label_width=label_width if request.kind != "sprite_sheet" else w / 3 * 0.9)
    # The cover's title panel is at the top (pdf._layout), so its caption goes to the bottom.
    _draw_header(draw, request, at_bottom=request.kind == "hero_page")

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
