"""fal's model table: endpoint ids, their input field names, sizes and prices.

A model id is the endpoint a user names (`BOOKBUG_PROVIDER=fal:fal-ai/flux-2`); where fal splits
text-to-image and editing into two endpoints, references route the request to the edit one.
Prices: the FLUX.2 schemas and prices are UNCONFIRMED there.

Per-megapixel prices: fal counts megapixels of 1024 x 1024 px, "rounded up to the nearest megapixel. For example,
a 1024x1024 image will cost $0.05, and a 1920x1080 image will cost $0.10 ($0.05 x 2 megapixels)"
(https://fal.ai/models/fal-ai/flux-2-flex/llms.txt), so a 1024 x 1024 page is 1 MP (`megapixels`). Per-model
sources are in the notes below. fal's FLUX.2 edit endpoints also bill the input images as megapixels ("Input images
counted as processed megapixel", https://fal.ai/models/fal-ai/flux-2-max/edit/llms.txt; "$0.05 per megapixel on
both input and output side", https://fal.ai/models/fal-ai/flux-2-flex/edit/llms.txt). For fal-ai/flux-2/edit and
fal-ai/flux-2-pro/edit that is confirmed only by a third-party list
(https://lumenfall.ai/models/black-forest-labs/flux.2-dev, .../flux.2-pro: "Each reference image is counted
separately (minimum 1 MP each)", UNCONFIRMED on fal's own pages). `cost_usd` counts each reference sent to a
FLUX.2 endpoint as that minimum, 1 MP at the model's per-megapixel (dev) or additional-megapixel (pro) price.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bookbug_assets.providers.base import ModelCapabilities
from bookbug_assets.providers.lora_refs import fal_lora_path
from bookbug_assets.providers.replicate_models import fit_size, megapixels

KONTEXT_RATIOS = ("21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21")
KONTEXT_DEV_RATIOS = KONTEXT_RATIOS + ("4:5", "5:4")
NANO_RATIOS = ("21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16")
NANO2_RATIOS = NANO_RATIOS + ("4:1", "1:4", "8:1", "1:8")


@dataclass(frozen=True)
class FalModel:
    caps: ModelCapabilities
    refs: str = "none"  # "list" (image_urls), "single" (image_url, references stitched), "none"
    ref_field: str = ""
    edit_endpoint: str = ""  # where a request with references goes, if not this endpoint
    # Where a request without references goes, for endpoints that need one: the sprite sheet is
    # drawn before any reference exists, and a whole book must render on every listed model.
    t2i: str = ""
    # "ratio": aspect_ratio enum; "image_size": {width, height}; "resolution_mode": kontext dev's ratio field
    size: str = "image_size"
    ratios: tuple[str, ...] = KONTEXT_RATIOS
    lora: bool = False  # takes loras=[{path, scale}]
    resolution: bool = False  # nano-banana's 1K/2K/4K tier
    fixed: dict = field(default_factory=dict)
    per_mp: bool = False  # caps.price_usd is per output megapixel (1024 x 1024 px), rounded up
    extra_mp_usd: float | None = None  # caps.price_usd covers the first megapixel, then this per MP
    price_4k: float | None = None
    price_2k: float | None = None  # nano-banana-2 bills its 2K tier (longest side 1025-2048 px, as fal.py asks)
    # FLUX.2 edit endpoints bill each input image as processed megapixels too, at least 1 MP each; this is that
    # price per input megapixel (None: inputs are free). References' sizes are not known when a price is asked
    # for, so each counts as its 1 MP minimum: the estimate is a floor for references larger than 1024 x 1024.
    input_mp_usd: float | None = None

    def cost_usd(self, width: int, height: int, inputs: int = 0) -> float:
        if self.price_4k is not None and max(width, height) > 2048:
            return self.price_4k
        if self.price_2k is not None and max(width, height) > 1024:
            return self.price_2k
        mp = megapixels(*fit_size(width, height, 256, self.caps.max_size))
        if self.per_mp:
            price = self.caps.price_usd * mp
        elif self.extra_mp_usd is not None:
            price = self.caps.price_usd + self.extra_mp_usd * (mp - 1)
        else:
            price = self.caps.price_usd
        return round(price + (self.input_mp_usd or 0.0) * inputs, 4)

    def lora_path(self, remote_ref: str) -> str:
        """`loras[].path` for `remote_ref`: a URL fal's runners download (providers/lora_refs.py)."""
        return fal_lora_path(self.caps.model, remote_ref)


def _caps(model: str, **kw) -> ModelCapabilities:
    return ModelCapabilities(model=model, **kw)


_STITCHED = "one image_url: all references are stitched side by side into it"
_KONTEXT_T2I = "fal-ai/flux-pro/kontext/text-to-image"
_KONTEXT_MAX_T2I = "fal-ai/flux-pro/kontext/max/text-to-image"
_PNG = {"output_format": "png"}


def _nano(model: str, edit: bool, family: str = "fal-ai/nano-banana-pro", price: float = 0.15,
          price_4k: float = 0.30, price_2k: float | None = None, ratios: tuple[str, ...] = NANO_RATIOS,
          notes: str = "image_urls up to 14 (edit endpoint); $0.30 at 4K") -> FalModel:
    return FalModel(
        _caps(model, max_references=14, seed_deterministic=False, max_size=4096, price_usd=price, notes=notes),
        refs="list", ref_field="image_urls", edit_endpoint="" if edit else f"{family}/edit",
        t2i=family if edit else "", size="ratio", ratios=ratios, resolution=True,
        price_4k=price_4k, price_2k=price_2k, fixed=_PNG)


# https://fal.ai/models/fal-ai/nano-banana-2/edit/llms.txt: "$0.08 per image ... 2K and 4K outputs will be charged at
# 1.5 times and 2 times the standard rate"; fields: https://fal.ai/docs/model-api-reference/image-generation-api/
# nano-banana-2. The 14-reference limit is Replicate's page for the same model (fal's page states none).
def _nano2(model: str, edit: bool) -> FalModel:
    return _nano(model, edit, family="fal-ai/nano-banana-2", price=0.08, price_4k=0.16, price_2k=0.12,
                 ratios=NANO2_RATIOS, notes="Gemini 3.1 Flash Image; image_urls up to 14 (edit endpoint); "
                                            "$0.08, $0.12 at 2K, $0.16 at 4K")


def _kontext_pro(model: str, price: float, multi: bool, t2i: str) -> FalModel:
    note = "image_urls (experimental multi-reference endpoint)" if multi else _STITCHED
    return FalModel(
        _caps(model, max_references=4, max_size=1568, price_usd=price,
              notes=f"{note}; without references {t2i} draws"),
        refs="list" if multi else "single", ref_field="image_urls" if multi else "image_url", t2i=t2i,
        size="ratio", ratios=KONTEXT_RATIOS, fixed=_PNG)


def _kontext_t2i(model: str, price: float) -> FalModel:
    return FalModel(_caps(model, max_size=1568, price_usd=price, notes="Kontext text-to-image, no references"),
                    size="ratio", ratios=KONTEXT_RATIOS, fixed=_PNG)


def _flux2(model: str, edit_endpoint: str, max_refs: int, price: float, extra: float | None, per_mp: bool,
           notes: str, t2i: str = "", unconfirmed: str = "schema and price UNCONFIRMED") -> FalModel:
    return FalModel(
        _caps(model, max_references=max_refs, max_size=2048, price_usd=price, notes=f"{notes} ({unconfirmed})"),
        refs="list", ref_field="image_urls", edit_endpoint=edit_endpoint, t2i=t2i, per_mp=per_mp,
        extra_mp_usd=extra, fixed=_PNG, input_mp_usd=price if per_mp else extra)


FAL_MODELS: dict[str, FalModel] = {
    m.caps.model: m for m in [
        _nano("fal-ai/nano-banana-pro", edit=False),
        _nano("fal-ai/nano-banana-pro/edit", edit=True),
        _kontext_pro("fal-ai/flux-pro/kontext", 0.04, multi=False, t2i=_KONTEXT_T2I),
        _kontext_pro("fal-ai/flux-pro/kontext/max", 0.08, multi=False, t2i=_KONTEXT_MAX_T2I),
        _kontext_pro("fal-ai/flux-pro/kontext/multi", 0.04, multi=True, t2i=_KONTEXT_T2I),
        _kontext_pro("fal-ai/flux-pro/kontext/max/multi", 0.08, multi=True, t2i=_KONTEXT_MAX_T2I),
        _kontext_t2i(_KONTEXT_T2I, 0.04),
        _kontext_t2i(_KONTEXT_MAX_T2I, 0.08),
        FalModel(
            _caps("fal-ai/flux-kontext/dev", max_references=4, max_size=1568, price_usd=0.025,
                  notes=f"{_STITCHED}; without references fal-ai/flux/dev draws; $0.025 per megapixel "
                        "(UNCONFIRMED: no fal page for this endpoint's price was found)"),
            refs="single", ref_field="image_url", t2i="fal-ai/flux/dev", size="resolution_mode",
            ratios=KONTEXT_DEV_RATIOS, per_mp=True, fixed=_PNG),
        FalModel(
            _caps("fal-ai/flux/dev", max_size=2048, price_usd=0.025,
                  notes="FLUX.1 [dev] text-to-image; $0.025 per megapixel (UNCONFIRMED: third-party lists only, "
                        "e.g. https://www.workflowlab.dev/cost/flux-dev-fal, $0.025 at 1024x1024)"),
            per_mp=True, fixed=_PNG),
        FalModel(
            _caps("fal-ai/flux-lora", lora_family="flux1", max_size=2048, price_usd=0.035,
                  notes="loras=[{path, scale}] (diffusers_lora_file URL or any .safetensors URL); "
                        "$0.035 per megapixel, rounded up (https://fal.ai/models/fal-ai/flux-lora/stream/llms.txt: "
                        "\"$0.035 per megapixels\")"),
            lora=True, per_mp=True, fixed=_PNG),
        _flux2("fal-ai/flux-2", "fal-ai/flux-2/edit", 4, 0.012, None, True,
               "FLUX.2 [dev]; references go to /edit (image_urls up to 4); $0.012 per megapixel (third-party: "
               "https://lumenfall.ai/models/black-forest-labs/flux.2-dev; /edit bills input megapixels too)"),
        _flux2("fal-ai/flux-2/edit", "", 4, 0.012, None, True, "FLUX.2 [dev] edit, image_urls up to 4",
               t2i="fal-ai/flux-2"),
        FalModel(
            _caps("fal-ai/flux-2/lora", lora_family="flux2", max_size=2048, price_usd=0.021,
                  notes="FLUX.2 LoRAs only; $0.021 per megapixel, x1.5 and up for LoRAs over 2 GB "
                        "(https://fal.ai/models/fal-ai/flux-2/lora/llms.txt; schema UNCONFIRMED)"),
            lora=True, per_mp=True, fixed=_PNG),
        _flux2("fal-ai/flux-2-pro", "fal-ai/flux-2-pro/edit", 8, 0.03, 0.015, False,
               "references go to /edit (image_urls up to 8); $0.03 first megapixel + $0.015 each further "
               "(third-party: https://www.runflow.io/models/black-forest-labs/flux-2-pro, 1024x1024 = 1 MP = $0.030, "
               "2048x2048 = 4 MP = $0.075; /edit bills input megapixels too)"),
        # Seedream 4.0 (ByteDance): up to 10 references, $0.03 per image,
        # https://fal.ai/models/fal-ai/bytedance/seedream/v4/edit/llms.txt; its text-to-image sibling draws the
        # sprite sheet (listed beside /edit on https://fal.ai/docs/model-api-reference/image-generation-api/
        # bytedance-seedream-v4; its own schema UNCONFIRMED: the edit one without image_urls).
        FalModel(
            _caps("fal-ai/bytedance/seedream/v4/edit", max_references=10, max_size=4096, price_usd=0.03,
                  notes="image_urls up to 10; $0.03 per image; without references .../v4/text-to-image draws"),
            refs="list", ref_field="image_urls", t2i="fal-ai/bytedance/seedream/v4/text-to-image"),
        FalModel(_caps("fal-ai/bytedance/seedream/v4/text-to-image", max_size=4096, price_usd=0.03,
                       notes="Seedream 4.0 text-to-image (schema UNCONFIRMED)")),
        # Qwen-Image-Edit-Plus: fields from third-party copies of fal's schema only (UNCONFIRMED: seed, and
        # image_size as {width, height}); price UNCONFIRMED (no fal page read). Text-to-image: fal-ai/qwen-image
        # (UNCONFIRMED schema).
        FalModel(
            _caps("fal-ai/qwen-image-edit-plus", max_references=3, price_usd=0.03,
                  notes="image_urls (up to 3, per third-party copies); schema and price UNCONFIRMED"),
            refs="list", ref_field="image_urls", t2i="fal-ai/qwen-image", fixed=_PNG),
        FalModel(_caps("fal-ai/qwen-image", price_usd=0.02, notes="Qwen-Image text-to-image (schema and price "
                                                                    "UNCONFIRMED)"), fixed=_PNG),
        _flux2("fal-ai/flux-2-pro/edit", "", 8, 0.03, 0.015, False, "FLUX.2 [pro] edit, image_urls up to 8",
               t2i="fal-ai/flux-2-pro"),
        # --- 2026 multi-reference edit models (tests/providers/test_models_2026.py) ---
        _nano2("fal-ai/nano-banana-2", edit=False),
        _nano2("fal-ai/nano-banana-2/edit", edit=True),
        # FLUX.2 [flex]: "$0.05 per megapixel on both input and output side" (https://fal.ai/models/fal-ai/flux-2-flex/
        # edit/llms.txt). FLUX.2 [max]: "The first processed megapixel will cost $0.07. Each additional megapixel will
        # cost 0.03. Input images counted as processed megapixel" (https://fal.ai/models/fal-ai/flux-2-max/edit/llms.txt).
        # Reference limits (8) are BFL's API limit as third-party pages state it (UNCONFIRMED on fal).
        *(_flux2(m, e, 8, 0.05, None, True, "FLUX.2 [flex]; references go to /edit (image_urls up to 8); $0.05 per MP "
                 "in and out", t2i=t, unconfirmed="output_format values and the reference limit UNCONFIRMED")
          for m, e, t in (("fal-ai/flux-2-flex", "fal-ai/flux-2-flex/edit", ""),
                          ("fal-ai/flux-2-flex/edit", "", "fal-ai/flux-2-flex"))),
        *(_flux2(m, e, 8, 0.07, 0.03, False, "FLUX.2 [max]; references go to /edit (image_urls up to 8); $0.07 first "
                 "MP + $0.03 each further, inputs included", t2i=t,
                 unconfirmed="output_format values and the reference limit UNCONFIRMED")
          for m, e, t in (("fal-ai/flux-2-max", "fal-ai/flux-2-max/edit", ""),
                          ("fal-ai/flux-2-max/edit", "", "fal-ai/flux-2-max"))),
    ]
}
