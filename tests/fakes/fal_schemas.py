"""Input schemas of the fal endpoints bookbug uses, as FakeFal enforces them.

Sources: shared reference providers.md §4 (copies of fal's llms.txt / API docs).
The FLUX.2 schemas (§4.5) were not retrievable there and are a best guess built from
the FLUX.1 endpoints plus `image_urls` on the edit variants: UNCONFIRMED.

Each entry:
- kind: "image" or "training"
- style: "flux" (images + seed + has_nsfw_concepts + prompt + timings) or
  "nano" (images with file_name + description), the two output shapes fal uses
- input: JSON schema
- sizing: see _schema.nominal_size
"""

from __future__ import annotations

from ._schema import BOOL, INT, STR, URI, dflt, enum, obj, rng
from .schemas_2026 import FAL_2026_SCHEMAS

def url_list(max_items: int | None = None) -> dict:
    out = {"type": "array", "items": URI, "minItems": 1}
    if max_items is not None:
        out["maxItems"] = max_items
    return out


IMAGE_SIZE = {
    "anyOf": [
        enum(["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]),
        obj({"width": rng("integer", 64, 14142), "height": rng("integer", 64, 14142)}, ["width", "height"]),
    ],
    "default": "landscape_4_3",
}
# `path`: "URL or the path to the LoRA weights" (https://fal.ai/models/fal-ai/flux-lora/api), downloaded by fal's
# runner; its examples are URLs only (a CivitAI download, a .safetensors URL, a Hugging Face resolve URL), so a
# string without a scheme (`huggingface.co/owner/repo/file.safetensors`) is answered 422 here.
LORA_ITEM = obj({"path": URI, "scale": rng("number", -4, 4, 1.0)}, ["path"])
KONTEXT_RATIOS = ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"]
NANO_RATIOS = ["auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"]
TOLERANCE6 = enum(["1", "2", "3", "4", "5", "6"], "2")

_COMMON = {
    "prompt": STR,
    "seed": INT,
    "sync_mode": dflt(BOOL, False),
    "num_images": rng("integer", 1, 4, 1),
}
_KONTEXT_PRO = {
    **_COMMON,
    "guidance_scale": rng("number", 1, 20, 3.5),
    "output_format": enum(["jpeg", "png"], "jpeg"),
    "safety_tolerance": TOLERANCE6,
    "enhance_prompt": dflt(BOOL, False),
    "aspect_ratio": enum(KONTEXT_RATIOS),
}
_NANO = {
    **_COMMON,
    "aspect_ratio": enum(NANO_RATIOS, "1:1"),
    "output_format": enum(["png", "jpeg", "webp"], "png"),
    "safety_tolerance": enum(["1", "2", "3", "4", "5", "6"], "4"),
    "resolution": enum(["1K", "2K", "4K"], "1K"),
    "limit_generations": dflt(BOOL, False),
    "enable_web_search": dflt(BOOL, False),
}
_FLUX1 = {
    **_COMMON,
    "image_size": IMAGE_SIZE,
    "num_inference_steps": rng("integer", 1, 50, 28),
    "guidance_scale": rng("number", 0, 35, 3.5),
    "enable_safety_checker": dflt(BOOL, True),
    "output_format": enum(["jpeg", "png"], "jpeg"),
    "acceleration": enum(["none", "regular"], "none"),
}
_FLUX2 = {  # UNCONFIRMED, see module docs
    **_COMMON,
    "image_size": IMAGE_SIZE,
    "num_inference_steps": rng("integer", 4, 50, 28),
    "guidance_scale": rng("number", 0, 20, 2.5),
    "enable_safety_checker": dflt(BOOL, True),
    "output_format": enum(["jpeg", "png", "webp"], "png"),
    "acceleration": enum(["none", "regular", "high"], "regular"),
}
_FLUX2_PRO = {  # UNCONFIRMED, see module docs
    **_COMMON,
    "image_size": IMAGE_SIZE,
    "safety_tolerance": enum(["1", "2", "3", "4", "5"], "2"),
    "enable_safety_checker": dflt(BOOL, True),
    "output_format": enum(["jpeg", "png"], "jpeg"),
}
_SEEDREAM = {
    **_COMMON,
    "num_images": rng("integer", 1, 6, 1),
    "max_images": rng("integer", 1, 6, 1),
    "image_size": {**IMAGE_SIZE, "anyOf": [enum(["square_hd", "square", "portrait_4_3", "portrait_16_9",
                                                  "landscape_4_3", "landscape_16_9", "auto", "auto_2K", "auto_4K"]),
                                            IMAGE_SIZE["anyOf"][1]], "default": {"width": 2048, "height": 2048}},
    "enable_safety_checker": dflt(BOOL, True),
    "enhance_prompt_mode": enum(["standard", "fast"], "standard"),
}
_QWEN = {
    **_COMMON,
    "image_size": IMAGE_SIZE,
    "negative_prompt": STR,
    "num_inference_steps": rng("integer", 2, 100, 50),
    "guidance_scale": rng("number", 0, 20, 4),
    "enable_safety_checker": dflt(BOOL, True),
    "output_format": enum(["jpeg", "png"], "png"),
}
_KONTEXT_SIZING = {"mode": "kontext", "default_ar": "match_input_image"}
_NANO_SIZING = {"mode": "area", "default_ar": "1:1"}
_IMAGE_SIZE_SIZING = {"mode": "fal_image_size", "default": "landscape_4_3"}
_SEEDREAM_SIZING = {"mode": "fal_image_size", "default": "square_hd"}


def _image(style: str, props: dict, required: list[str], sizing: dict) -> dict:
    return {"kind": "image", "style": style, "input": obj(props, required), "sizing": sizing}


FAL_ENDPOINT_SCHEMAS: dict[str, dict] = {
    "fal-ai/nano-banana-pro": _image("nano", _NANO, ["prompt"], _NANO_SIZING),
    "fal-ai/nano-banana-pro/edit": _image(
        "nano", {**_NANO, "aspect_ratio": enum(NANO_RATIOS, "auto"), "image_urls": url_list(14)},
        ["prompt", "image_urls"], _NANO_SIZING),
    "fal-ai/flux-pro/kontext": _image("flux", {**_KONTEXT_PRO, "image_url": URI}, ["prompt", "image_url"],
                                      _KONTEXT_SIZING),
    "fal-ai/flux-pro/kontext/max": _image("flux", {**_KONTEXT_PRO, "image_url": URI}, ["prompt", "image_url"],
                                          _KONTEXT_SIZING),
    # Kontext [pro]/[max] text-to-image: the same model without a reference (a sprite sheet from nothing).
    "fal-ai/flux-pro/kontext/text-to-image": _image("flux", _KONTEXT_PRO, ["prompt"], _KONTEXT_SIZING),
    "fal-ai/flux-pro/kontext/max/text-to-image": _image("flux", _KONTEXT_PRO, ["prompt"], _KONTEXT_SIZING),
    "fal-ai/flux/dev": _image("flux", _FLUX1, ["prompt"], _IMAGE_SIZE_SIZING),
    "fal-ai/flux-pro/kontext/multi": _image("flux", {**_KONTEXT_PRO, "image_urls": url_list()},
                                            ["prompt", "image_urls"], _KONTEXT_SIZING),
    "fal-ai/flux-pro/kontext/max/multi": _image("flux", {**_KONTEXT_PRO, "image_urls": url_list()},
                                                ["prompt", "image_urls"], _KONTEXT_SIZING),
    "fal-ai/flux-kontext/dev": _image("flux", {
        **_COMMON,
        "image_url": URI,
        "num_inference_steps": rng("integer", 10, 50, 28),
        "guidance_scale": rng("number", 1, 20, 2.5),
        "enable_safety_checker": dflt(BOOL, True),
        "output_format": enum(["jpeg", "png"], "jpeg"),
        "acceleration": enum(["none", "regular", "high"], "none"),
        "resolution_mode": enum(["auto", "match_input"] + KONTEXT_RATIOS + ["4:5", "5:4"], "match_input"),
    }, ["prompt", "image_url"], {**_KONTEXT_SIZING, "ratio_field": "resolution_mode"}),
    "fal-ai/flux-lora": _image("flux", {**_FLUX1, "loras": dflt({"type": "array", "items": LORA_ITEM}, [])},
                               ["prompt"], _IMAGE_SIZE_SIZING),
    "fal-ai/flux-2": _image("flux", _FLUX2, ["prompt"], _IMAGE_SIZE_SIZING),
    "fal-ai/flux-2/edit": _image("flux", {**_FLUX2, "image_urls": url_list(4)}, ["prompt", "image_urls"],
                                 _IMAGE_SIZE_SIZING),
    "fal-ai/flux-2/lora": _image("flux", {**_FLUX2, "loras": dflt({"type": "array", "items": LORA_ITEM}, [])},
                                 ["prompt"], _IMAGE_SIZE_SIZING),
    "fal-ai/flux-2-pro": _image("flux", _FLUX2_PRO, ["prompt"], _IMAGE_SIZE_SIZING),
    "fal-ai/flux-2-pro/edit": _image("flux", {**_FLUX2_PRO, "image_urls": url_list(8)},
                                     ["prompt", "image_urls"], _IMAGE_SIZE_SIZING),
    # https://fal.ai/models/fal-ai/bytedance/seedream/v4/edit/llms.txt (text-to-image: the same without image_urls,
    # UNCONFIRMED). Output: images and seed.
    "fal-ai/bytedance/seedream/v4/edit": _image("flux", {**_SEEDREAM, "image_urls": url_list(10)},
                                                ["prompt", "image_urls"], _SEEDREAM_SIZING),
    "fal-ai/bytedance/seedream/v4/text-to-image": _image("flux", _SEEDREAM, ["prompt"], _SEEDREAM_SIZING),
    # Qwen-Image-Edit-Plus / Qwen-Image: third-party copies of fal's schema (UNCONFIRMED, seed assumed).
    "fal-ai/qwen-image-edit-plus": _image("flux", {**_QWEN, "image_urls": url_list()}, ["prompt", "image_urls"],
                                          _IMAGE_SIZE_SIZING),
    "fal-ai/qwen-image": _image("flux", _QWEN, ["prompt"], _IMAGE_SIZE_SIZING),
    "fal-ai/flux-lora-fast-training": {
        "kind": "training", "style": "training", "sizing": {},
        "min_images": 4,
        "input": obj({
            "images_data_url": URI,
            "trigger_word": STR,
            "steps": rng("integer", 1, 10000, 1000),
            "is_style": dflt(BOOL, False),
            "create_masks": dflt(BOOL, True),
            "is_input_format_already_preprocessed": dflt(BOOL, False),
            "data_archive_format": STR,
        }, ["images_data_url"]),
    },
}


FAL_ENDPOINT_SCHEMAS.update(FAL_2026_SCHEMAS)  # the 2026 multi-reference edit models


# fal's OpenRouter vision route (https://fal.ai/docs/model-api-reference/vision-api/openrouter-router): one endpoint,
# the model named in the input. Output: {"output": text, "usage": {prompt_tokens, completion_tokens, total_tokens,
# cost}}. The fake serves the models in quality/judge_models_table.FAL_JUDGE_MODELS; another id answers 422.
FAL_JUDGE_ROUTED_MODELS = ["google/gemini-2.5-flash", "openai/gpt-4o", "openai/gpt-4.1", "anthropic/claude-sonnet-4.5"]
FAL_ENDPOINT_SCHEMAS["openrouter/router/vision"] = {
    "kind": "judge", "style": "judge", "sizing": {},
    "input": obj({
        "image_urls": url_list(),
        "prompt": STR,
        "system_prompt": STR,
        "model": enum(FAL_JUDGE_ROUTED_MODELS),
        "reasoning": dflt(BOOL, False),
        "temperature": rng("number", 0, 2, 1),
        "max_tokens": rng("integer", 1, 1_000_000),
    }, ["image_urls", "prompt", "model"]),
}


def request_prefix(endpoint_id: str) -> str:
    """fal's request URLs keep only owner/alias (plus a namespace), dropping sub-paths:
    fal-ai/flux-pro/kontext -> fal-ai/flux-pro (mirrors fal_client.AppId)."""
    parts = endpoint_id.split("/")
    keep = 3 if parts[0] in ("workflows", "comfy") else 2
    return "/".join(parts[:keep])
