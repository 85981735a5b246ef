"""Replicate's model table, plus the image helpers both cloud families share.

Each entry says which input fields the model takes (names differ from model to model and the API
answers an unknown field with a 422), how its size is expressed, and what one image costs.
Prices come from the provider reference; most are marked UNCONFIRMED there, so the notes say so.

Per-megapixel prices count whole megapixels of 1024 x 1024 px, rounded up (`megapixels`), so a 1024 x 1024
page is 1 MP. Sources: fal's pricing text for its FLUX.2 endpoints,
https://fal.ai/models/fal-ai/flux-2-flex/llms.txt ("a 1024x1024 image will cost $0.05 ... a 1920x1080 image will
cost $0.10 ($0.05 x 2 megapixels)"), and for Replicate's black-forest-labs/flux-2-pro a third-party price list
only, https://lumenfall.ai/models/black-forest-labs/flux.2-pro ("1 megapixel = 1024x1024 pixels"; "Each reference
image is counted separately (minimum 1 MP each)"). Replicate's own page for that model could not be checked, so its
$0.015/MP stays UNCONFIRMED, and the megapixels of the input images, which that list says are billed too, are not
in `cost_usd` (their sizes are not known when the price is reserved).
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from bookbug_assets.providers.base import ConfigurationError, ImageRequest, ModelCapabilities
from bookbug_assets.providers.lora_refs import cog_flux_lora_weights, lucataco_hf_lora

# --- helpers shared with the fal module ---------------------------------------------------------

RATIOS_11 = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
RATIOS_9 = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
RATIOS_SEEDREAM = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9")
RATIOS_NANO = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
RATIOS_NANO2 = RATIOS_NANO + ("1:4", "4:1", "1:8", "8:1")  # Gemini 3.1 Flash Image adds the extreme ratios


def nearest_ratio(width: int, height: int, choices: tuple[str, ...]) -> str:
    """The enum value closest to width:height, compared on a log scale so 2:1 and 1:2 are symmetric."""
    target = math.log(width / height)

    def distance(choice: str) -> float:
        w, h = (float(x) for x in choice.split(":"))
        return abs(math.log(w / h) - target)

    return min(choices, key=distance)


def fit_size(width: int, height: int, lo: int, hi: int, multiple: int = 16,
             max_pixels: int | None = None) -> tuple[int, int]:
    """Scale (keeping the ratio) into [lo, hi] per side and under max_pixels, rounded to `multiple`."""
    scale = min(1.0, hi / max(width, height))
    if max_pixels:
        scale = min(scale, math.sqrt(max_pixels / (width * height)))
    scale = max(scale, lo / min(width, height))
    w, h = width * scale, height * scale

    def snap(v: float) -> int:  # round down, so the side and pixel limits still hold after snapping
        return int(min(hi, max(lo, math.floor(v / multiple + 1e-9) * multiple)))

    return snap(w), snap(h)


MEGAPIXEL = 1024 * 1024  # pixels: how fal and Replicate count the megapixels they bill


def megapixels(width: int, height: int) -> int:
    """Output megapixels rounded up, at least one: the unit per-MP prices are billed in.

    A megapixel is 1024 x 1024 pixels, not a million: fal's pricing says "rounded up to the nearest megapixel.
    For example, a 1024x1024 image will cost $0.05, and a 1920x1080 image will cost $0.10 ($0.05 x 2 megapixels)"
    (https://fal.ai/models/fal-ai/flux-2-flex/llms.txt); 1920x1080 is 2 MP only in 1024^2 units (1.98, not 2.07).
    """
    return max(1, math.ceil(width * height / MEGAPIXEL))


_STITCHED_KEPT = 8  # a book's pages share one or two stitched reference sets
_stitched: OrderedDict[str, Future] = OrderedDict()
_stitched_lock = threading.Lock()


def stitch(images: list[bytes], max_side: int = 2048, gutter: int = 16) -> bytes:
    """Place images side by side on white, at one height, as one PNG.

    Single-reference models (Kontext) see one picture; the sprite sheet next to the hero page
    still tells them who the characters are and how the book looks.

    Every page of a book stitches the same sprite sheet and hero page, 12 threads at once; the first caller makes
    the picture and the others wait for it (measured: 81 % of the page creates' client time went to stitching,
    which put the creates 2-3 s late at 10 s of provider latency).
    """
    if len(images) == 1:
        return images[0]
    digests = [hashlib.sha256(b).hexdigest() for b in images]
    key = hashlib.sha256(repr((max_side, gutter, digests)).encode()).hexdigest()
    with _stitched_lock:
        made = _stitched.get(key)
        owner = made is None
        if owner:
            made = _stitched[key] = Future()
            while len(_stitched) > _STITCHED_KEPT:
                _stitched.popitem(last=False)
        else:
            _stitched.move_to_end(key)
    if owner:
        try:
            made.set_result(_stitched_png(images, max_side, gutter))
        except BaseException as exc:
            with _stitched_lock:
                _stitched.pop(key, None)
            made.set_exception(exc)
    return made.result()


def _stitched_png(images: list[bytes], max_side: int, gutter: int) -> bytes:
    opened = [Image.open(io.BytesIO(b)).convert("RGB") for b in images]
    height = min(max(im.height for im in opened), max_side)
    scaled = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in opened]
    width = sum(im.width for im in scaled) + gutter * (len(scaled) - 1)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for im in scaled:
        canvas.paste(im, (x, 0))
        x += im.width + gutter
    if max(canvas.size) > max_side:
        factor = max_side / max(canvas.size)
        canvas = canvas.resize((max(1, round(canvas.width * factor)), max(1, round(canvas.height * factor))))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


def sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def with_trigger(prompt: str, trigger_word: str) -> str:
    """A LoRA only shows its style when its trigger word is in the prompt."""
    if not trigger_word or re.search(rf"\b{re.escape(trigger_word)}\b", prompt):
        return prompt
    return f"{trigger_word}, {prompt}"


def image_size_of(data: bytes) -> tuple[int, int] | None:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - the size is informational only
        return None


class Redactor:
    """Removes a secret from any text before it reaches an exception, a log or a file."""

    def __init__(self, secret: str | None):
        # fal keys are "id:secret"; either half alone must not leak either.
        parts = [secret or ""] + [p for p in (secret or "").split(":") if len(p) >= 8]
        self._secrets = sorted({p for p in parts if p}, key=len, reverse=True)

    def __call__(self, text: Any, limit: int = 600) -> str:
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text if len(text) <= limit else text[:limit] + "..."


def ordered_refs(request: ImageRequest, reference_bytes: dict[str, bytes], limit: int,
                  provider: str) -> list[bytes]:
    """The request's references in order (sprite sheet first, as the renderer lists them)."""
    if len(request.references) > limit:
        raise ConfigurationError(f"{provider}:{request.model} takes at most {limit} references, "
                                 f"got {len(request.references)}")
    missing = [r.sha256[:12] for r in request.references if r.sha256 not in reference_bytes]
    if missing:
        raise ConfigurationError(f"reference bytes missing for {', '.join(missing)}")
    return [reference_bytes[r.sha256] for r in request.references]


# --- the Replicate table ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicateModel:
    caps: ModelCapabilities
    # How references travel: "list" (one array field), "single" (stitched into one field),
    # "pair" (input_image_1 + input_image_2, extras stitched into the second), "none".
    refs: str = "none"
    ref_field: str = ""
    # "ratio": aspect_ratio enum; "custom": aspect_ratio=custom + width/height; "wh": width/height.
    size: str = "ratio"
    ratios: tuple[str, ...] = RATIOS_11
    size_range: tuple[int, int] = (256, 1440)
    lora_field: str = ""  # "lora_weights" | "hf_lora"
    lora_scale_range: tuple[float, float] = (-1.0, 3.0)
    by_version: bool = False  # community models are run by version id, looked up at run time
    seed: bool = True
    fixed: dict = field(default_factory=dict)  # inputs sent on every call
    price_per_mp: float | None = None  # billed per output megapixel instead of per image
    price_4k: float | None = None
    negative_prompt: bool = False
    # Where a request without references goes, for models that need one: the sprite sheet is
    # drawn before any reference exists, and a whole book must render on every listed model.
    t2i: str = ""

    def lora_ref(self, remote_ref: str) -> str:
        """`remote_ref` in a form this model's LoRA field loads (providers/lora_refs.py), else ConfigurationError."""
        return _LORA_RULES[self.lora_field](self.caps.model, remote_ref)


# Each LoRA field is one predictor's loader, with its own documented forms.
_LORA_RULES = {"lora_weights": cog_flux_lora_weights, "hf_lora": lucataco_hf_lora}


def _caps(model: str, **kw) -> ModelCapabilities:
    return ModelCapabilities(model=model, **kw)


_KONTEXT_NOTE = "one input_image: all references are stitched side by side into it"

REPLICATE_MODELS: dict[str, ReplicateModel] = {
    m.caps.model: m for m in [
        ReplicateModel(
            _caps("google/nano-banana-pro", max_references=14, seed_deterministic=False, min_size=256,
                  max_size=4096, price_usd=0.15,
                  notes="image_input up to 14 references; no seed input; $0.30 at 4K (UNCONFIRMED)"),
            refs="list", ref_field="image_input", ratios=RATIOS_NANO, seed=False, price_4k=0.30,
            fixed={"output_format": "png"}),
        ReplicateModel(
            _caps("black-forest-labs/flux-kontext-dev", max_references=4, max_size=1568, price_usd=0.025,
                  notes=f"{_KONTEXT_NOTE}; without references flux-dev draws (UNCONFIRMED price)"),
            refs="single", ref_field="input_image", t2i="black-forest-labs/flux-dev",
            fixed={"output_format": "png", "go_fast": False}),
        ReplicateModel(
            _caps("black-forest-labs/flux-kontext-pro", max_references=4, max_size=1568, price_usd=0.04,
                  notes=f"{_KONTEXT_NOTE}; text-to-image without one (BFL list price)"),
            refs="single", ref_field="input_image", ratios=RATIOS_9,
            fixed={"output_format": "png", "safety_tolerance": 2}),
        ReplicateModel(
            _caps("black-forest-labs/flux-kontext-max", max_references=4, max_size=1568, price_usd=0.08,
                  notes=f"{_KONTEXT_NOTE}; text-to-image without one (BFL list price)"),
            refs="single", ref_field="input_image", ratios=RATIOS_9,
            fixed={"output_format": "png", "safety_tolerance": 2}),
        ReplicateModel(
            _caps("flux-kontext-apps/multi-image-kontext-pro", max_references=4, max_size=1568, price_usd=0.04,
                  notes="exactly two inputs: the first reference, then the rest stitched; without "
                        "references flux-kontext-pro draws (UNCONFIRMED price)"),
            refs="pair", ratios=RATIOS_9, t2i="black-forest-labs/flux-kontext-pro",
            fixed={"output_format": "png", "safety_tolerance": 2}),
        ReplicateModel(
            _caps("black-forest-labs/flux-dev", max_size=1536, price_usd=0.025,
                  notes="FLUX.1 [dev] text-to-image; go_fast off so a seed repeats"),
            fixed={"output_format": "png", "go_fast": False, "num_outputs": 1}),
        ReplicateModel(
            _caps("black-forest-labs/flux-dev-lora", lora_family="flux1", max_size=1536, price_usd=0.032,
                  notes="lora_weights (Replicate model/version, HF path or .safetensors URL); go_fast off"),
            lora_field="lora_weights",
            fixed={"output_format": "png", "go_fast": False, "num_outputs": 1}),
        ReplicateModel(
            _caps("lucataco/flux-dev-lora", lora_family="flux1", max_size=1536, price_usd=0.03,
                  notes="hf_lora (HF repo, weights tar or .safetensors URL), scale 0-1; community model "
                        "billed per second (UNCONFIRMED price)"),
            lora_field="hf_lora", lora_scale_range=(0.0, 1.0), by_version=True,
            fixed={"output_format": "png", "num_outputs": 1}),
        ReplicateModel(
            _caps("black-forest-labs/flux-2-dev", max_references=4, max_size=1440, price_usd=0.012,
                  notes="input_images up to 4; custom width/height (UNCONFIRMED price)"),
            refs="list", ref_field="input_images", size="custom", size_range=(256, 1440),
            fixed={"output_format": "png", "go_fast": False}),
        ReplicateModel(
            _caps("black-forest-labs/flux-2-pro", max_references=8, max_size=2048, price_usd=0.015,
                  notes="input_images up to 8; $0.015 per output megapixel of 1024x1024 px (UNCONFIRMED; "
                        "input images may be billed as megapixels too, not counted here)"),
            refs="list", ref_field="input_images", size="custom", size_range=(256, 2048),
            price_per_mp=0.015, fixed={"output_format": "png", "safety_tolerance": 2}),
        ReplicateModel(
            # https://replicate.com/bytedance/seedream-4/versions/e6cff243d7a5e551e1ca2b4bf291413d649c9f1417f9a52c1c0a4fbc36027b83/api
            _caps("bytedance/seedream-4", max_references=10, seed_deterministic=False, max_size=4096,
                  price_usd=0.03,
                  notes="image_input up to 10 references (multi-reference edit); no seed input; size 2K; "
                        "$0.03 per image (UNCONFIRMED on Replicate: fal's price for the same model)"),
            refs="list", ref_field="image_input", ratios=RATIOS_SEEDREAM, seed=False,
            fixed={"size": "2K", "sequential_image_generation": "disabled", "max_images": 1}),
        # --- 2026 multi-reference edit models (sources per entry; tests/providers/test_models_2026.py) ---
        ReplicateModel(
            # https://replicate.com/google/nano-banana-2/versions/2de9ad5b0425fb05efd2cac4ed145259675cfcd7ff80acd99042b460fe1c665e/api
            # (fields); enum values from a third-party copy, https://api.core.today/v1/models/google/nano-banana-2/llms.txt
            _caps("google/nano-banana-2", max_references=14, seed_deterministic=False, min_size=256,
                  max_size=4096, price_usd=0.08,
                  notes="Gemini 3.1 Flash Image; image_input up to 14; no seed input; $0.08, $0.16 at 4K "
                        "(UNCONFIRMED on Replicate: fal's price, which also bills 2K at 1.5x)"),
            refs="list", ref_field="image_input", ratios=RATIOS_NANO2, seed=False, price_4k=0.16,
            fixed={"output_format": "png"}),
        ReplicateModel(
            # Fields: third-party copies of Replicate's schema, https://cinemasetfree.com/guides/generators/
            # black-forest-labs/flux-2-flex; price: a copy of Replicate's price list in a public repo ($0.06 per
            # output megapixel and $0.06 per input megapixel, UNCONFIRMED)
            _caps("black-forest-labs/flux-2-flex", max_references=10, max_size=2048, price_usd=0.06,
                  notes="input_images up to 10; custom width/height; prompt upsampling off so the prompt is "
                        "drawn as written; $0.06 per output MP (UNCONFIRMED; input MP billed too, not counted)"),
            refs="list", ref_field="input_images", size="custom", size_range=(256, 2048), price_per_mp=0.06,
            fixed={"output_format": "png", "safety_tolerance": 2, "prompt_upsampling": False}),
        ReplicateModel(
            # https://replicate.com/black-forest-labs/flux-2-max/versions/9c23b0aaa98765a9676dbdda58b9c9915627751300747bad54cb1c11b135d3ca/api
            _caps("black-forest-labs/flux-2-max", max_references=8, max_size=2048, price_usd=0.06,
                  notes="input_images up to 8; custom width/height; $0.06 per output MP (UNCONFIRMED: "
                        "https://llm-stats.com/models/flux-2-max lists $0.06 an image on Replicate)"),
            refs="list", ref_field="input_images", size="custom", size_range=(256, 2048), price_per_mp=0.06,
            fixed={"output_format": "png", "safety_tolerance": 2}),
        ReplicateModel(
            # https://replicate.com/bytedance/seedream-4.5/versions/9fe3b8282dcb9d9063b05e33210a1432801f7c5a6641db944baefcec4886761a/api
            # (ratio values: third-party copy, https://docs.genhub.me/api-reference/seedream-45)
            _caps("bytedance/seedream-4.5", max_references=14, seed_deterministic=False, max_size=4096,
                  price_usd=0.04,
                  notes="image_input up to 14; no seed input; size 2K (no 1K on 4.5); $0.04 per image "
                        "(UNCONFIRMED: a copy of Replicate's price list in a public repo)"),
            refs="list", ref_field="image_input", ratios=RATIOS_SEEDREAM, seed=False,
            fixed={"size": "2K", "sequential_image_generation": "disabled", "max_images": 1}),
        ReplicateModel(
            _caps("stability-ai/sdxl", max_size=1536, price_usd=0.004,
                  notes="cheap text-only baseline; takes a negative prompt; community model billed per "
                        "second (UNCONFIRMED price)"),
            size="wh", size_range=(512, 1536), by_version=True, negative_prompt=True,
            fixed={"num_outputs": 1}),
    ]
}
