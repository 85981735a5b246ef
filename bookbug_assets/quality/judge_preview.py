"""The offline judge: reads what the preview renderer drew. It is not a vision model and says so in every reason.

A preview page draws each character as a token whose fill colour derives from the character's id alone
(providers/preview.character_token_style), so "is Pip on the page" is "is Pip's token colour on the page", and
"is it the Pip of the reference sheet" is "is that colour on the sheet too". Features cannot be seen on a token:
they are answered "unsure" (never "present"). Style is the weight-free palette distance to the hero page
(quality/style.py). Scene match counts the expected tokens found. The proof's own lettering (caption, name
labels, initials) is not reported. Deterministic and free, so the judge path runs in offline tests and demos.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bookbug_assets.providers.preview import character_token_style
from bookbug_assets.quality.judge import JudgeReply, JudgeRequest
from bookbug_assets.quality.judge_models import Artifacts, CharacterJudgement, FeatureCheck, JudgeAnswer
from bookbug_assets.quality.style import style_distance, style_profile

PREVIEW_JUDGE_MODEL = "token-reader-v1"
READ_SIDE = 256  # nearest-neighbour downscale: keeps the tokens' flat fill colours exact
TOKEN_TOLERANCE = 10  # per channel: the fill survives PNG exactly, anti-aliased edges do not count
MIN_TOKEN_FRACTION = 0.002  # a page token covers ~3 % of the page; specks of a similar colour are not a token
STYLE_STEPS = (0.10, 0.20, 0.30, 0.45)  # style distance above each step costs one point of style_match


def _pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    scale = READ_SIDE / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.NEAREST)
    return np.asarray(image).astype(np.int16)


def token_fraction(pixels: np.ndarray, character_id: str) -> float:
    """Share of the image in the fill colour of `character_id`'s preview token."""
    colour = character_token_style(character_id)[1]  # the token's fill colour
    close = np.abs(pixels - np.array(colour, dtype=np.int16)).max(axis=-1) <= TOKEN_TOLERANCE
    return float(close.mean())


def style_match_score(distance: float) -> int:
    return 4 - sum(distance > step for step in STYLE_STEPS)


class PreviewJudge:
    """Deterministic, free; for the offline default and tests. Serves the JudgeBackend protocol."""

    family = "preview"
    model = PREVIEW_JUDGE_MODEL

    def price_per_call_usd(self) -> float:
        return 0.0

    def ask(self, request: JudgeRequest) -> JudgeReply:
        return JudgeReply(text=self.answer(request).model_dump_json())

    def answer(self, request: JudgeRequest) -> JudgeAnswer:
        page = _pixels(request.image)
        refs = dict(request.references)
        sheet = _pixels(refs["sprite_sheet"]) if "sprite_sheet" in refs else None
        judged = []
        for card in request.cards:
            present = token_fraction(page, card.id) >= MIN_TOKEN_FRACTION
            on_sheet = sheet is None or token_fraction(sheet, card.id) >= MIN_TOKEN_FRACTION
            identity = (4 if on_sheet else 1) if present else 0
            judged.append(CharacterJudgement(
                id=card.id, present=present, identity=identity,
                features=[FeatureCheck(feature=f, status="unsure" if present else "absent") for f in card.features],
                differences=[] if on_sheet or not present else ["its token is not on the reference sheet"]))
        found = sum(c.present for c in judged)
        scene = 4 if not judged else (4 * found) // len(judged)
        style_role = next((r for r in ("hero_page", "sprite_sheet") if r in refs), None)
        if style_role is None:
            style, style_note = 4, "no reference to compare the style with"
        else:
            profile = style_profile(Image.open(io.BytesIO(refs[style_role])).convert("RGB"))
            distance = style_distance(Image.open(io.BytesIO(request.image)).convert("RGB"), profile)
            style, style_note = style_match_score(distance), f"style distance {distance:.2f} to the {style_role}"
        reason = (f"preview judge, not a vision model: {found} of {len(judged)} character tokens found; "
                  f"features and lettering not checked; {style_note}")
        return JudgeAnswer(characters=judged, style_match=style, scene_match=scene,
                           artifacts=Artifacts(anatomy_errors=[], melted_faces=[], duplicated_limbs=[], lettering=[]),
                           safety_concerns=[], reason=reason)
