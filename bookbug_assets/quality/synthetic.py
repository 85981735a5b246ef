"""Procedural labelled data for the character metric: no downloads, fully seeded.

Characters are built from coloured shapes and patterns (body, head, limbs,
ears, accessory, body pattern) so that two characters can share a palette yet
differ in the way picture-book characters drift: swapped colours, another
pattern, another head. "Different" pairs are deliberately drawn from the same
palette family, often as a mutated sibling of the reference character, because
a metric that only separates red from blue would tell us nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageFilter

from ._sprites import (
    ACCESSORIES,
    BODY_SHAPES,
    EARS,
    FAMILIES,
    HEAD_SHAPES,
    PATTERNS,
    CharacterSpec,
    Pose,
    background,
    draw_character,
)

__all__ = [
    "FAMILIES",
    "CharacterSpec",
    "Pose",
    "SyntheticPair",
    "auc",
    "background",
    "draw_character",
    "make_pairs",
    "mutate",
    "random_character",
    "random_pose",
    "reference_sheet",
    "render_page",
]


@dataclass(frozen=True)
class SyntheticPair:
    page: Image.Image
    reference: Image.Image
    same: bool
    character: int
    shown: str  # "self", "sibling" (mutated copy) or "other" (same palette family)

def random_character(rng: np.random.Generator, family: str | None = None) -> CharacterSpec:
    family = family or str(rng.choice(sorted(FAMILIES)))
    colours = [tuple(int(v) for v in c) for c in rng.permutation(FAMILIES[family])]
    return CharacterSpec(
        family=family,
        body_shape=str(rng.choice(BODY_SHAPES)),
        head_shape=str(rng.choice(HEAD_SHAPES)),
        pattern=str(rng.choice(PATTERNS)),
        ears=str(rng.choice(EARS)),
        accessory=str(rng.choice(ACCESSORIES)),
        body_w=float(rng.uniform(0.8, 1.2)),
        body_h=float(rng.uniform(0.8, 1.2)),
        head_size=float(rng.uniform(0.8, 1.15)),
        body_color=colours[0],
        head_color=colours[1],
        limb_color=colours[2],
        pattern_color=colours[3],
        extra_color=colours[4],
    )


def mutate(spec: CharacterSpec, rng: np.random.Generator, n_changes: int = 2) -> CharacterSpec:
    """A sibling that keeps the palette family but changes n visible traits."""

    def other(options, current):
        return str(rng.choice([o for o in options if o != current]))

    fam = [tuple(c) for c in FAMILIES[spec.family]]
    changes = {
        "swap_colors": lambda s: replace(s, body_color=s.head_color, head_color=s.body_color),
        "body_color": lambda s: replace(
            s, body_color=fam[int(rng.choice([i for i, c in enumerate(fam) if c not in (s.body_color, s.head_color)]))]
        ),
        "body_shape": lambda s: replace(s, body_shape=other(BODY_SHAPES, s.body_shape)),
        "head_shape": lambda s: replace(s, head_shape=other(HEAD_SHAPES, s.head_shape)),
        "pattern": lambda s: replace(s, pattern=other(PATTERNS, s.pattern)),
        "ears": lambda s: replace(s, ears=other(EARS, s.ears)),
        "accessory": lambda s: replace(s, accessory=other(ACCESSORIES, s.accessory)),
    }
    for name in rng.choice(sorted(changes), size=n_changes, replace=False):
        spec = changes[str(name)](spec)
    return spec


def random_pose(rng: np.random.Generator) -> Pose:
    return Pose(
        arm_left=float(rng.uniform(10, 120)),
        arm_right=float(rng.uniform(10, 120)),
        leg_spread=float(rng.uniform(0, 30)),
        head_dx=float(rng.uniform(-10, 10)),
        tilt=float(rng.uniform(-15, 15)),
        flip=bool(rng.random() < 0.5),
    )

def _finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    # Generated art is never pixel-clean: a little softness and grain.
    img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))
    arr = np.asarray(img).astype(np.int16) + rng.normal(0, 2.5, (img.height, img.width, 1)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def render_page(spec: CharacterSpec, rng: np.random.Generator, size: int = 512, strict: bool = False) -> Image.Image:
    """The character in a random pose, scale and place on a random scene (``strict``: palette-only scene)."""
    page = background(rng, (size, size), spec.family, strict)
    sprite = draw_character(spec, random_pose(rng))
    scale = rng.uniform(0.35, 0.75) * size / sprite.height
    size_px = (max(1, int(sprite.width * scale)), max(1, int(sprite.height * scale)))
    sprite = sprite.resize(size_px, Image.Resampling.LANCZOS)
    x = int(rng.uniform(0, max(1, size - sprite.width)))
    y = int(rng.uniform(0, max(1, size - sprite.height)))
    page.paste(sprite, (x, y), sprite)
    return _finish(page, rng)


def reference_sheet(spec: CharacterSpec, rng: np.random.Generator, size: int = 384, views: int = 1) -> Image.Image:
    """A model sheet: neutral pose(s) on a plain light background."""
    paper = tuple(int(v) for v in rng.integers(236, 253, size=3))
    sheet = Image.new("RGB", (size * views, size), paper)
    for v in range(views):
        pose = Pose(flip=v == 1, arm_left=30 + 40 * v, arm_right=30)
        sprite = draw_character(spec, pose)
        scale = 0.85 * size / max(sprite.size)
        sprite = sprite.resize((int(sprite.width * scale), int(sprite.height * scale)), Image.Resampling.LANCZOS)
        sheet.paste(sprite, (v * size + (size - sprite.width) // 2, (size - sprite.height) // 2), sprite)
    return _finish(sheet, rng)


def make_pairs(
    n_characters: int = 12, positives: int = 2, negatives: int = 2, seed: int = 0, page_size: int = 512
) -> list[SyntheticPair]:
    """Labelled (page, reference) pairs: the reference's character, a mutated sibling, or another character
    from the same palette family."""
    rng = np.random.default_rng(seed)
    families = sorted(FAMILIES)
    pairs: list[SyntheticPair] = []
    for i in range(n_characters):
        spec = random_character(rng, families[i % len(families)])
        ref = reference_sheet(spec, rng, views=1 + int(rng.random() < 0.3))
        for _ in range(positives):
            pairs.append(SyntheticPair(render_page(spec, rng, page_size), ref, True, i, "self"))
        for j in range(negatives):
            kind = "sibling" if j % 2 == 0 else "other"
            other = mutate(spec, rng, 2) if kind == "sibling" else random_character(rng, spec.family)
            pairs.append(SyntheticPair(render_page(other, rng, page_size), ref, False, i, kind))
    return pairs


def auc(scores_pos, scores_neg) -> float:
    """Area under the ROC curve = P(score_pos > score_neg), ties count half (Mann-Whitney U)."""
    pos = np.asarray(list(scores_pos), dtype=np.float64)
    neg = np.asarray(list(scores_neg), dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("auc needs at least one positive and one negative score")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    ranks[order] = np.arange(1, len(allv) + 1)
    # Average ranks over ties, so equal scores are a coin flip, not an order artefact.
    uniq, inv = np.unique(allv, return_inverse=True)
    ranks = (np.bincount(inv, weights=ranks) / np.bincount(inv))[inv]
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))
