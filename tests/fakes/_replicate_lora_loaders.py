"""The LoRA loaders of the Replicate models that take a LoRA, as FakeReplicate runs them: which strings each
predictor can load, and the error it fails the prediction with (after the prediction was created, so paid).

A model's schema names its loader in `lora_loader` (replicate_schemas.py).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

LUCATACO_INVALID = ("Invalid lora, must be either a: HuggingFace path, Replicate model.tar URL, or a URL to a "
                    ".safetensors file: {}")
_COG_FLUX_HF = r"^(?:https?://)?huggingface\.co/([^/]+)/([^/]+)(?:/([^/]+\.safetensors))?/?$"
_COG_FLUX_OK = (
    _COG_FLUX_HF,
    r"^(?:https?://)?civitai\.com/models/(\d+)(?:/[^/?]+)?/?$",
    r"^((?:https?://)?civitai\.com/api/download/models/.*)$",
    r"^(https?://.*\.safetensors(\?.*)?)$",
    r"^(?:https?://replicate.com/)?([^/]+)/([^/]+)/?$",
    r"^(?:https?://replicate.com/)?([^/]+)/([^/]+)/(?:versions/)?([^/]+)/?$",
    r"^(https?://replicate.delivery/.*\.tar)$",
)


def _cog_flux_error(value: str) -> str | None:
    """replicate/cog-flux weights.py `make_download_url` (commit 51e81e0): the forms lora_weights takes."""
    if re.match(r"^https?://huggingface\.co/", value) and not re.match(_COG_FLUX_HF, value) \
            and urlsplit(value).path.split("/")[3:4] != ["resolve"]:
        # Sent to pget as a plain URL: huggingface.co serves a file's bytes only under /resolve/.
        return "Weights not found at the supplied URL. Please check the URL."
    if value.startswith("data:") or any(re.match(form, value) for form in _COG_FLUX_OK):
        return None
    if "huggingface.co" in value:
        return ("Failed to parse HuggingFace URL. Expected "
                "huggingface.co/<owner>/<model-name>[/<lora-weights-file.safetensors>]")
    if "civitai.com" in value:
        return "Failed to parse CivitAI URL. Expected civitai.com/models/<id>[/<model-name>]"
    return ("Failed to parse URL. Expected either: a Replicate model, a HuggingFace URL, a CivitAI URL or "
            "a .safetensors URL")


def _lucataco_error(value: str) -> str | None:
    """lucataco/cog-flux-dev-lora predict.py (commit 6f11091): the hf_lora branches, in the predictor's order.

    From a huggingface.co URL it loads repo `[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+` and the file named by the last path
    segment; the fake holds no repos, so it fails when that is not the file the URL names (a file in a folder,
    a repo name the pattern cuts short), as diffusers would fail to find it. A scheme-less value was answered
    with the "Invalid lora" text by the live model (GitHub's predict.py would fail in its download step).
    """
    if re.match(r"^[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+$", value):
        return None
    if re.match(r"^https?://replicate.delivery/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/trained_model.tar", value):
        return None
    if re.match(r"^https?://huggingface.co", value):
        slug = re.search(r"^https?://huggingface.co/([a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+)", value)
        if slug is None:
            return "'NoneType' object has no attribute 'group'"
        parts = urlsplit(value).path.split("/")[1:]
        named = parts[2:]
        if named[:1] in (["resolve"], ["blob"]):
            named = named[2:]
        weight_name = value.split("/")[-1]
        if "/".join(parts[:2]) != slug.group(1):
            return f"404 Client Error. Repository Not Found for url: https://huggingface.co/api/models/{slug.group(1)}"
        if "/".join(named) != weight_name:
            return f"{slug.group(1)} does not appear to have a file named {weight_name}."
        return None
    if re.match(r"^https?://civitai.com/api/download/models/[0-9]+\?type=Model&format=SafeTensor", value):
        return None
    if value.endswith(".safetensors") and re.match(r"^https?://", value):
        return None
    return LUCATACO_INVALID.format(value)


def lora_input_error(spec: dict, inp: dict, fake_url: str = "") -> str | None:
    """The error the model's own LoRA loader fails a prediction with for `inp` (after it was paid), or None.

    The fake's own delivery URLs (`<fake_url>/delivery/<id>/<name>`) stand for https://replicate.delivery/.
    """
    loader = spec.get("lora_loader") if isinstance(inp, dict) else None
    if loader == "cog_flux":
        values = [inp.get("lora_weights"), inp.get("extra_lora")]
        check = _cog_flux_error
    elif loader == "lucataco":
        values, check = [inp.get("hf_lora")], _lucataco_error
    else:
        return None
    for value in values:
        if fake_url and isinstance(value, str) and value.startswith(fake_url + "/delivery/"):
            value = "https://replicate.delivery/fake/" + value[len(fake_url + "/delivery/"):]
        problem = check(value) if isinstance(value, str) and value else None
        if problem:
            return problem
    return None
