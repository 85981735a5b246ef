"""A small JSON-schema subset validator and the output-size rules shared by the
provider fakes.

The model tables (replicate_schemas.py, fal_schemas.py) are written as JSON
schema so that the Replicate fake can hand them out verbatim as
`openapi_schema`. The validator returns neutral `Issue`s; each fake renders
them in its provider's error dialect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Issue:
    kind: str  # additional | required | type | enum | minimum | maximum | max_items | min_items | format
    path: tuple  # e.g. ("image_input", 3); () is the input object itself
    value: Any = None
    expected: Any = None  # type name, enum list, or bound

    def dotted(self, root: str = "input") -> str:
        out = root
        for p in self.path:
            out += f".{p}"
        return out


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _type_ok(expected: str, value: Any) -> bool:
    given = json_type(value)
    if expected == "number":
        return given in ("number", "integer")
    if expected == "integer" and given == "number":
        return float(value).is_integer()
    return given == expected


def _uri_ok(value: str) -> bool:
    return value.startswith(("http://", "https://", "data:"))


def validate(schema: dict, value: Any, path: tuple = (), *, strict: bool = True) -> list[Issue]:
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            if not validate(option, value, path, strict=strict):
                return []
        first = schema["anyOf"][0]
        return validate(first, value, path, strict=strict) or [Issue("type", path, value, first.get("type"))]
    issues: list[Issue] = []
    expected = schema.get("type")
    if expected and not _type_ok(expected, value):
        return [Issue("type", path, value, expected)]
    if "enum" in schema and value not in schema["enum"]:
        return [Issue("enum", path, value, schema["enum"])]
    if expected in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            issues.append(Issue("minimum", path, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            issues.append(Issue("maximum", path, value, schema["maximum"]))
    if expected == "string" and schema.get("format") == "uri" and not _uri_ok(value):
        issues.append(Issue("format", path, value, "uri"))
    if expected == "array":
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            issues.append(Issue("max_items", path, len(value), schema["maxItems"]))
        if "minItems" in schema and len(value) < schema["minItems"]:
            issues.append(Issue("min_items", path, len(value), schema["minItems"]))
        if "items" in schema:
            for i, item in enumerate(value):
                issues += validate(schema["items"], item, path + (i,), strict=strict)
    if expected == "object" and "properties" in schema:
        props = schema["properties"]
        for name in schema.get("required", []):
            if name not in value:
                issues.append(Issue("required", path + (name,), None, name))
        for name, item in value.items():
            if name in props:
                issues += validate(props[name], item, path + (name,), strict=strict)
            elif strict and schema.get("additionalProperties", True) is False:
                issues.append(Issue("additional", path + (name,), item, name))
    return issues


def with_defaults(schema: dict, value: dict) -> dict:
    out = {k: v["default"] for k, v in schema.get("properties", {}).items() if "default" in v}
    out.update(value)
    return out


def obj(properties: dict, required: list[str] | None = None) -> dict:
    """An input object schema; unknown fields are rejected (see the module docs of each fake)."""
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


# --- output sizes --------------------------------------------------------------------------

FLUX1_SIZES = {
    "1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "3:2": (1216, 832),
    "2:3": (832, 1216), "4:5": (896, 1088), "5:4": (1088, 896), "3:4": (896, 1152),
    "4:3": (1152, 896), "9:16": (768, 1344), "9:21": (640, 1536),
}
KONTEXT_SIZES = {
    "1:1": (1024, 1024), "16:9": (1328, 800), "21:9": (1568, 672), "3:2": (1248, 832),
    "2:3": (832, 1248), "4:5": (944, 1104), "5:4": (1104, 944), "3:4": (880, 1184),
    "4:3": (1184, 880), "9:16": (800, 1328), "9:21": (672, 1568),
}
FAL_IMAGE_SIZES = {
    "square_hd": (1024, 1024), "square": (512, 512), "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024), "landscape_4_3": (1024, 768), "landscape_16_9": (1024, 576),
}
_RESOLUTION_MP = {"1K": 1.0, "2K": 4.0, "4K": 16.0}
_RATIO_LIKE_INPUT = {"match_input_image", "match_input", "auto", "custom"}


def _area_size(ratio: str, megapixels: float) -> tuple[int, int]:
    a, b = (float(x) for x in ratio.split(":"))
    w = math.sqrt(megapixels * 1024 * 1024 * a / b)
    h = w * b / a
    return int(round(w / 16) * 16), int(round(h / 16) * 16)


def _megapixels(value: Any, default: float) -> float:
    if isinstance(value, str):
        if value in _RESOLUTION_MP:
            return _RESOLUTION_MP[value]
        head = value.replace("MP", "").strip()
        try:
            return float(head)
        except ValueError:
            return default
    return default


def nominal_size(sizing: dict, inp: dict) -> tuple[int, int]:
    """The size the real model would produce for `inp` (before the fake's output_scale).

    An input image's own size is never fetched: "match the input" counts as 1:1.
    """
    mode = sizing.get("mode", "area")
    if mode == "fal_image_size":
        size = inp.get("image_size", sizing.get("default", "landscape_4_3"))
        if isinstance(size, dict):
            return int(size.get("width", 1024)), int(size.get("height", 1024))
        return FAL_IMAGE_SIZES.get(size, (1024, 1024))
    ratio = inp.get(sizing.get("ratio_field", "aspect_ratio"), sizing.get("default_ar", "1:1"))
    if ("width" in inp or "height" in inp) and (mode == "wh" or ratio == "custom"):
        default_w, default_h = sizing.get("default", (1024, 1024))
        return int(inp.get("width", default_w)), int(inp.get("height", default_h))
    if mode == "wh":
        return tuple(sizing.get("default", (1024, 1024)))  # type: ignore[return-value]
    if ratio in _RATIO_LIKE_INPUT or ":" not in str(ratio):
        ratio = "1:1"
    table = {"flux1": FLUX1_SIZES, "kontext": KONTEXT_SIZES}.get(mode)
    if table and ratio in table:
        w, h = table[ratio]
        if str(inp.get("megapixels", "1")) == "0.25":
            w, h = w // 2, h // 2
        return w, h
    mp = _megapixels(inp.get(sizing.get("resolution_field", "resolution")), sizing.get("megapixels", 1.0))
    return _area_size(ratio, mp)


# Building blocks of the per-model input tables (replicate_schemas, fal_schemas).
STR = {"type": "string"}
URI = {"type": "string", "format": "uri"}
BOOL = {"type": "boolean"}
INT = {"type": "integer"}


def enum(values: list, default=None) -> dict:
    out = {"type": "string", "enum": list(values)}
    if default is not None:
        out["default"] = default
    return out


def rng(kind: str, lo, hi, default=None) -> dict:
    out = {"type": kind, "minimum": lo, "maximum": hi}
    if default is not None:
        out["default"] = default
    return out


def dflt(schema: dict, default) -> dict:
    return {**schema, "default": default}
