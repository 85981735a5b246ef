"""A bright flat palette (magenta, cyan, yellow on deep purple) is a style, not clipping; lost detail still is."""

import io

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from bookbug_assets.providers.base import CharacterToken, ImageRequest
from bookbug_assets.providers.preview import render_preview
from bookbug_assets.quality import Thresholds, assess, clipping
from tests.synthetic_style import BRIGHT_FLAT, DEEP_PURPLE, chibi_drawing

from .conftest import oversaturate

BRIGHT_PALETTE = ("#2e1054", "#ff00ff", "#00ffff", "#ffff00")  # deep purple first: the preview's sky


@pytest.fixture(scope="module")
def drawings():
    return [chibi_drawing(i) for i in range(6)]


def _grain(image: Image.Image, sigma: float) -> Image.Image:
    a = np.asarray(image).astype(np.float32) + np.random.default_rng(0).normal(0, sigma, (image.height, image.width, 1))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def test_the_palette_really_is_pinned(drawings):
    # The point of the fixture: most coloured pixels have a channel at 0 or 255.
    a = np.asarray(drawings[0]).reshape(-1, 3)
    pinned = ((a <= 1) | (a >= 254)).any(-1) & (np.ptp(a, axis=-1) >= 48)
    assert pinned.mean() > 0.3
    assert set(BRIGHT_FLAT.values()) <= {tuple(int(v) for v in c) for c in np.unique(a, axis=0)}
    assert DEEP_PURPLE == (46, 16, 84)


@pytest.mark.parametrize("variant", ["flat", "grain", "jpeg", "soft"])
def test_flat_bright_drawings_are_not_clipped(drawings, variant):
    make = {"flat": lambda im: im, "grain": lambda im: _grain(im, 2.5), "jpeg": lambda im: _jpeg(im, 75),
            "soft": lambda im: _jpeg(im.filter(ImageFilter.GaussianBlur(0.8)), 90)}[variant]
    for drawing in drawings:
        image = make(drawing)
        report = assess(image)
        assert clipping(image) < 0.01
        assert not any(r.startswith("clipped") for r in report.reasons), report.reasons


def test_a_preview_sprite_sheet_in_the_bright_palette_passes():
    request = ImageRequest(provider="preview", model="storyboard-v1", kind="sprite_sheet", prompt="sheet",
                           width=1536, height=1024, seed=1, palette=BRIGHT_PALETTE, label="sprite sheet",
                           characters=(CharacterToken(id="mimi", name="Mimi"), CharacterToken(id="bolt", name="Bolt")))
    sheet = Image.open(io.BytesIO(render_preview(request))).convert("RGB")
    assert np.mean(np.all(np.asarray(sheet) == (255, 0, 255), axis=-1)) > 0.1  # the ground is pure magenta
    report = assess(sheet, expected_size=(1536, 1024))
    assert clipping(sheet) < 0.01
    assert not any(r.startswith("clipped") for r in report.reasons), report.reasons


def test_over_saturating_a_textured_page_is_still_clipping(book):
    # The planted defect the check exists for: the texture survives in one channel, the others are cut off.
    for page in book["new_pages"]:
        assert clipping(page) < 0.01
        assert clipping(oversaturate(page)) > 0.15


def test_a_saturated_channel_with_texture_around_it_counts():
    rng = np.random.default_rng(3)
    a = np.zeros((256, 256, 3))
    a[..., 0] = 300  # red pushed past the range: every pixel pinned at 255
    a[..., 1] = 90 + rng.normal(0, 12, (256, 256))  # texture kept in green
    image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    assert clipping(image) > 0.9
    flat = Image.new("RGB", (256, 256), (255, 90, 0))  # the same colour, flat: chosen, not clipped
    assert clipping(flat) == 0.0


def test_thin_lines_between_pinned_colours_are_edges_not_clipping():
    base = Image.new("RGB", (1024, 1024), (0, 255, 255))
    from PIL import ImageDraw

    draw = ImageDraw.Draw(base)
    rng = np.random.default_rng(0)
    for _ in range(150):
        x, y = rng.uniform(0, 1024, 2)
        dx, dy = rng.uniform(-200, 200, 2)
        draw.line((x, y, x + dx, y + dy), fill=(255, 0, 255) if rng.random() < 0.5 else (20, 8, 36), width=3)
    art = base.resize((512, 512), Image.Resampling.LANCZOS)
    assert clipping(art) < 0.01


def test_a_bright_gradient_fill_is_not_clipping():
    t = np.linspace(0, 1, 512)[None, :, None]
    fill = np.repeat((1 - t) * np.array([255, 0, 255]) + t * np.array([46, 0, 84]), 512, axis=0)
    assert clipping(Image.fromarray(fill.astype(np.uint8))) == 0.0


def test_saturating_flat_art_further_passes_the_gate(drawings):
    # Pushing a flat drawing further changes its colours but cuts no detail it had: only the anti-aliasing
    # ripples along its edges (amplified x3) can count, far under the limit.
    for drawing in drawings[:3]:
        assert clipping(ImageEnhance.Color(drawing).enhance(3)) < Thresholds().max_clipping / 2


def _proof(palette, seed: int, kind: str, characters: int) -> Image.Image:
    tokens = (CharacterToken(id="mimi", name="Mimi"), CharacterToken(id="bolt", name="Bolt"))[:characters]
    request = ImageRequest(provider="preview", model="storyboard-v1", kind=kind, prompt="p", width=1024, height=1024,
                           seed=seed, characters=tokens, palette=palette, label=f"page {seed}",
                           scene="Mimi on a cyan hill under a huge yellow moon.")
    return Image.open(io.BytesIO(render_preview(request))).convert("RGB")


def test_sparse_flat_proofs_show_no_grid():
    # A proof is a few edges on flat colour: its spectrum ripples down to nulls, which must not read as a grid.
    from bookbug_assets.quality import grid_periodicity

    palettes = (BRIGHT_PALETTE, ("#2e1054", "#6de685", "#cc03d4", "#2a1050"), ("#f4e9d8", "#e8a87c", "#85cdca"))
    worst = max(grid_periodicity(_proof(palette, seed, kind, 1 + seed % 2))
                for palette in palettes for seed in range(6) for kind in ("page", "hero_page"))
    assert worst < Thresholds().max_grid * 2 / 3  # a margin: proofs reached 16 before the mean baseline
