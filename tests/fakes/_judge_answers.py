"""What the fake judges answer, shared by every fake that serves a vision-language judge model (the Replicate and
fal fakes, and judge_server's chat fake).

The fake reads the character cards from the prompt as a model would (the JSON after "as cards (JSON):") and looks
at image 1, the page: its background is the colour along its border, and the character's region is everything
unlike it. A nearly uniform page shows nobody. A feature naming a colour ("red knitted scarf") is present only if
that colour covers a visible part of the region; when it does not, the difference names the feature and the
colour the region shows instead ("red knitted scarf: no red seen; blue where it should be"). Features without a
colour are present on any non-blank page.

`answer_text(answer, kind)` turns the answer into what the model writes for each scripted kind: ok, fenced (in a
Markdown code fence), malformed (cut off), prose (no JSON), wrong_type (identity as a string), wrong_features (a
card feature left out), lettering, safety. `refusal` is each service's own business (a failed prediction, a 422).
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
from PIL import Image

COLOURS = {"red": (200, 40, 40), "green": (60, 150, 60), "yellow": (230, 200, 50), "blue": (50, 90, 200),
           "brown": (130, 85, 50), "orange": (240, 140, 40), "pink": (240, 150, 180), "purple": (130, 60, 160),
           "grey": (128, 128, 128), "white": (245, 245, 245), "black": (20, 20, 20)}
COLOUR_DISTANCE = 60.0  # how near a pixel must be to a named colour to count as it
REGION_SHARE = 0.01  # of the character's region: a scarf is a small part of a character, a speck is not a scarf
BACKGROUND_DISTANCE = 40.0
CARDS_MARK = "as cards (JSON):"
KINDS = ("ok", "fenced", "malformed", "prose", "wrong_type", "wrong_features", "lettering", "safety", "refusal")


def cards_from_text(text: str) -> list[dict]:
    """The cards the judge prompt lists (quality/judge.JUDGE_PROMPT), as the model reads them."""
    start = text.index(CARDS_MARK) + len(CARDS_MARK)
    return json.JSONDecoder().raw_decode(text[start:].lstrip())[0]


def page_pixels(data: bytes, side_by_side: bool = False) -> np.ndarray:
    """Image 1 as float RGB, at most 128 px a side; from a side-by-side picture, its leftmost image."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if side_by_side:
        image = image.crop((0, 0, _first_gutter(np.asarray(image)), image.height))
    image.thumbnail((128, 128))
    return np.asarray(image).astype(np.float64)


def _first_gutter(pixels: np.ndarray, min_width: int = 8) -> int:
    """Where the first white gutter begins (providers/replicate_models.stitch puts 16 px of white between images)."""
    white = (pixels >= 250).all(axis=(0, 2))
    run = 0
    for x, is_white in enumerate(white):
        run = run + 1 if is_white else 0
        if run >= min_width and x - run + 1 > 0:
            return x - run + 1
    return pixels.shape[1]


def _nearest_colour(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda name: float(np.linalg.norm(rgb - np.array(COLOURS[name]))))


def seen_answer(pixels: np.ndarray, cards: list[dict]) -> dict:
    """The answer a careful judge would give about what the page shows (see the module docstring)."""
    flat = pixels.reshape(-1, 3)
    blank = float(flat.std(axis=0).max()) < 4.0
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    background = np.median(border, axis=0)
    region = flat[np.linalg.norm(flat - background, axis=-1) > BACKGROUND_DISTANCE]
    if len(region) == 0:
        blank = True
    characters = []
    for card in cards:
        features, differences = [], []
        for feature in card["features"]:
            colour = next((c for c in COLOURS if re.search(rf"\b{c}\b", feature.lower())), None)
            if blank:
                status = "absent"
            elif colour is None:
                status = "present"
            else:
                near = np.linalg.norm(region - np.array(COLOURS[colour]), axis=-1) < COLOUR_DISTANCE
                status = "present" if near.mean() >= REGION_SHARE else "absent"
                if status == "absent":
                    seen = _dominant_other(region, colour)
                    differences.append(f"{feature}: no {colour} seen; {seen} where it should be")
            features.append({"feature": feature, "status": status})
        characters.append({"id": card["id"], "present": not blank,
                           "identity": 0 if blank else max(1, 4 - len(differences)),
                           "features": features, "differences": [] if blank else differences})
    return {"characters": characters, "style_match": 0 if blank else 4, "scene_match": 0 if blank else 4,
            "artifacts": {"anatomy_errors": [], "melted_faces": [], "duplicated_limbs": [], "lettering": []},
            "safety_concerns": [], "reason": "the page is blank" if blank else "fake judge: what the page shows"}


def _dominant_other(region: np.ndarray, missing: str) -> str:
    """The commonest named colour in the region other than the missing one (and the greys of a body)."""
    names = [_nearest_colour(p) for p in region[:: max(1, len(region) // 400)]]
    counts = {n: names.count(n) for n in set(names) if n not in (missing, "grey", "white", "black")}
    return max(counts, key=counts.get) if counts else "nothing of that colour"


def answer_text(answer: dict, kind: str) -> str:
    """What the model writes for a scripted kind (see the module docstring); `refusal` is not text."""
    answer = json.loads(json.dumps(answer))
    if kind == "malformed":
        text = json.dumps(answer)
        return text[: len(text) // 2]
    if kind == "prose":
        return "Sure! The illustration looks lovely and the mouse is clearly Pip."
    if kind == "wrong_type" and answer["characters"]:
        answer["characters"][0]["identity"] = str(answer["characters"][0]["identity"])
    elif kind == "wrong_features" and answer["characters"]:
        answer["characters"][0]["features"] = answer["characters"][0]["features"][1:]
    elif kind == "lettering":
        answer["artifacts"]["lettering"] = ["the word MOON painted on the sign"]
    elif kind == "safety":
        answer["safety_concerns"] = ["the mouse holds a sharp knife"]
    text = json.dumps(answer)
    return f"```json\n{text}\n```" if kind == "fenced" else text
