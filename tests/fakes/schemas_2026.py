"""Input schemas of the 2026 multi-reference edit models, as the Replicate and fal fakes enforce them.

Kept apart from replicate_schemas.py / fal_schemas.py (which merge these tables into theirs) so each stays short.
Sources are public model pages; what only a third-party copy states is marked UNCONFIRMED. Entry format: see the
module docs of replicate_schemas.py and fal_schemas.py.
"""

from __future__ import annotations

from ._schema import BOOL, INT, STR, URI, dflt, enum, obj, rng

E005 = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
URI_OUT = {"type": "string", "format": "uri", "title": "Output"}
LIST_OUT = {"type": "array", "items": {"type": "string", "format": "uri"}, "title": "Output"}
OUT_FMT3 = enum(["webp", "jpg", "png"], "webp")
QUALITY = rng("integer", 0, 100, 80)


def _uris(max_items: int) -> dict:
    return {"type": "array", "items": URI, "default": [], "maxItems": max_items}


def _url_list(max_items: int) -> dict:
    return {"type": "array", "items": URI, "minItems": 1, "maxItems": max_items}


def _replicate(inputs: dict, output: dict, sizing: dict) -> dict:
    return {"official": True, "kind": "prediction", "output": output, "nsfw_error": E005, "sizing": sizing,
            "input": obj(inputs, ["prompt"])}


_FLUX2_REPLICATE_RATIOS = ["match_input_image", "custom", "1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4",
                           "4:3"]
_FLUX2_RESOLUTIONS = ["match_input_image", "0.5 MP", "1 MP", "2 MP", "4 MP"]
_FLUX2_MAX = {
    "prompt": STR,
    "input_images": _uris(8),
    "aspect_ratio": enum(_FLUX2_REPLICATE_RATIOS, "1:1"),
    "resolution": enum(_FLUX2_RESOLUTIONS, "1 MP"),
    "width": rng("integer", 256, 2048),
    "height": rng("integer", 256, 2048),
    "safety_tolerance": rng("integer", 1, 5, 2),
    "seed": INT,
    "output_format": OUT_FMT3,
    "output_quality": QUALITY,
}

REPLICATE_2026_SCHEMAS: dict[str, dict] = {
    # https://replicate.com/google/nano-banana-2/versions/2de9ad5b.../api; enum values from
    # https://api.core.today/v1/models/google/nano-banana-2/llms.txt (a copy of Replicate's schema, UNCONFIRMED)
    "google/nano-banana-2": _replicate({
        "prompt": STR,
        "image_input": _uris(14),
        "aspect_ratio": enum(["match_input_image", "1:1", "1:4", "1:8", "2:3", "3:2", "3:4", "4:1", "4:3", "4:5",
                              "5:4", "8:1", "9:16", "16:9", "21:9"], "match_input_image"),
        "resolution": enum(["1K", "2K", "4K"], "1K"),
        "google_search": dflt(BOOL, False),
        "image_search": dflt(BOOL, False),
        "output_format": enum(["jpg", "png"], "jpg"),
    }, URI_OUT, {"mode": "area", "default_ar": "match_input_image"}),
    # https://replicate.com/black-forest-labs/flux-2-max/versions/9c23b0aa.../api
    "black-forest-labs/flux-2-max": _replicate(_FLUX2_MAX, URI_OUT, {"mode": "area"}),
    # Third-party copies of Replicate's schema (https://cinemasetfree.com/guides/generators/black-forest-labs/
    # flux-2-flex): as max, with up to 10 input_images, steps, guidance and prompt_upsampling (default on).
    # Output shape UNCONFIRMED (as flux-2-max).
    "black-forest-labs/flux-2-flex": _replicate({
        **_FLUX2_MAX,
        "input_images": _uris(10),
        "prompt_upsampling": dflt(BOOL, True),
        "steps": rng("integer", 1, 50, 30),
        "guidance": rng("number", 1.5, 10, 4.5),
    }, URI_OUT, {"mode": "area"}),
    # https://replicate.com/bytedance/seedream-4.5/versions/9fe3b828.../api (no 1K; 1-14 images); aspect_ratio
    # values from https://docs.genhub.me/api-reference/seedream-45 (a copy of the same schema, UNCONFIRMED)
    "bytedance/seedream-4.5": _replicate({
        "prompt": STR,
        "image_input": _uris(14),
        "size": enum(["2K", "4K", "custom"], "2K"),
        "aspect_ratio": enum(["match_input_image", "1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9"],
                             "match_input_image"),
        "width": rng("integer", 1024, 4096, 2048),
        "height": rng("integer", 1024, 4096, 2048),
        "sequential_image_generation": enum(["disabled", "auto"], "disabled"),
        "max_images": rng("integer", 1, 15, 1),
        "disable_safety_checker": dflt(BOOL, False),
    }, LIST_OUT, {"mode": "area", "default_ar": "match_input_image", "resolution_field": "size"}),
}


# --- fal ---------------------------------------------------------------------------------------------------------

def _fal_image(style: str, props: dict, required: list[str], sizing: dict) -> dict:
    return {"kind": "image", "style": style, "input": obj(props, required), "sizing": sizing}


# https://fal.ai/docs/model-api-reference/image-generation-api/nano-banana-2 and
# https://fal.ai/models/fal-ai/nano-banana-2/edit/llms.txt. image_urls' limit of 14 is Replicate's (fal's page states
# none). Output: images with file_name, plus description ("nano" style).
_NANO2 = {
    "prompt": STR,
    "num_images": rng("integer", 1, 4, 1),
    "seed": INT,
    "aspect_ratio": enum(["auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16", "4:1",
                          "1:4", "8:1", "1:8"], "auto"),
    "output_format": enum(["jpeg", "png", "webp"], "png"),
    "safety_tolerance": enum(["1", "2", "3", "4", "5", "6"], "4"),
    "sync_mode": dflt(BOOL, False),
    "resolution": enum(["0.5K", "1K", "2K", "4K"], "1K"),
    "limit_generations": dflt(BOOL, True),
    "enable_web_search": dflt(BOOL, False),
    "thinking_level": enum(["minimal", "high"]),
}
_NANO_SIZING = {"mode": "area", "default_ar": "1:1"}

_FAL_PRESETS = ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]


def _fal_image_size(default, extra: tuple[str, ...] = ()) -> dict:
    return {"anyOf": [enum(_FAL_PRESETS + list(extra)),
                      obj({"width": rng("integer", 64, 14142), "height": rng("integer", 64, 14142)},
                          ["width", "height"])],
            "default": default}


# https://fal.ai/models/fal-ai/flux-2-flex/edit/llms.txt, https://fal.ai/models/fal-ai/flux-2-max/edit/llms.txt,
# https://fal.ai/models/fal-ai/flux-2-flex/llms.txt: prompt, image_size (default auto on /edit, landscape_4_3 on
# text-to-image), seed, safety_tolerance "1"-"5", enable_safety_checker, output_format, sync_mode. output_format's
# values are UNCONFIRMED (jpeg/png as FLUX.2 [pro]); image_urls' name and limit of 8 come from public call sites and
# BFL's API limit (UNCONFIRMED on fal). Output: images and seed ("flux" style).
def _bfl_flux2(edit: bool) -> dict:
    props = {
        "prompt": STR,
        "image_size": _fal_image_size("auto", ("auto",)) if edit else _fal_image_size("landscape_4_3"),
        "seed": INT,
        "safety_tolerance": enum(["1", "2", "3", "4", "5"], "2"),
        "enable_safety_checker": dflt(BOOL, True),
        "output_format": enum(["jpeg", "png"], "jpeg"),
        "sync_mode": dflt(BOOL, False),
    }
    if edit:
        props["image_urls"] = _url_list(8)
    return _fal_image("flux", props, ["prompt", "image_urls"] if edit else ["prompt"],
                      {"mode": "fal_image_size", "default": "landscape_4_3"})


FAL_2026_SCHEMAS: dict[str, dict] = {
    "fal-ai/nano-banana-2": _fal_image("nano", _NANO2, ["prompt"], _NANO_SIZING),
    "fal-ai/nano-banana-2/edit": _fal_image("nano", {**_NANO2, "image_urls": _url_list(14)}, ["prompt", "image_urls"],
                                            _NANO_SIZING),
    "fal-ai/flux-2-flex": _bfl_flux2(edit=False),
    "fal-ai/flux-2-flex/edit": _bfl_flux2(edit=True),
    "fal-ai/flux-2-max": _bfl_flux2(edit=False),
    "fal-ai/flux-2-max/edit": _bfl_flux2(edit=True),
}
