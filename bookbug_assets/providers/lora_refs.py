"""The LoRA reference each cloud model is sent, in a form that model's loader documents.

A pinned LoRA keeps one model-independent `remote_ref` (`LoraRef.remote_ref`): a Replicate version
`owner/model:<id>` (a LoRA trained on Replicate) or an https URL (a Hugging Face file as its `resolve` URL,
a fal or any other `.safetensors` URL). Each model's loader takes different strings, and a string it cannot
load fails the prediction after it was paid for, so the model tables (replicate_models, fal_models) pick the
rule here per model and a reference a model cannot load is a ConfigurationError before anything is sent.
"""

from __future__ import annotations

import re

from bookbug_assets.providers.base import ConfigurationError

HF_RESOLVE = "https://huggingface.co/{owner}/{repo}/resolve/{revision}/{path}"
VERSION_REF = re.compile(r"^([\w.-]+)/([\w.-]+):([0-9a-f]{16,})$")
# Pins written before references carried a scheme: "huggingface.co/<owner>/<repo>/<file>", no revision.
_BARE_HF = re.compile(r"^huggingface\.co/([^/]+)/([^/]+)/(.+\.safetensors)$")


def hf_resolve_url(owner: str, repo: str, path: str, revision: str = "main") -> str:
    """The download URL of one file in a Hugging Face repo (https://huggingface.co/docs/hub/en/api)."""
    return HF_RESOLVE.format(owner=owner, repo=repo, revision=revision, path=path)


def canonical_ref(remote_ref: str) -> str:
    """`remote_ref` with an older scheme-less Hugging Face form turned into its https resolve URL."""
    bare = _BARE_HF.match(remote_ref)
    return hf_resolve_url(*bare.groups()) if bare else remote_ref


# black-forest-labs/flux-dev-lora (`lora_weights`) runs replicate/cog-flux, whose `make_download_url`
# (weights.py, https://github.com/replicate/cog-flux/blob/main/weights.py) takes a Replicate model
# `owner/model[/version]`, `huggingface.co/<owner>/<model>[/<file>.safetensors]` (a file in the repo's top
# folder only), `civitai.com/...`, a `replicate.delivery/....tar` or "arbitrary .safetensors URLs from the
# Internet, including signed URLs" (its input description). A version ref passes through: the provider sends it
# as owner/model/version.
_COG_FLUX_FORMS = (
    re.compile(r"^https?://.*\.safetensors(\?.*)?$"),
    re.compile(r"^https?://replicate\.delivery/.*\.tar$"),
    re.compile(r"^https?://huggingface\.co/[^/]+/[^/]+(?:/[^/]+\.safetensors)?/?$"),
    re.compile(r"^https?://civitai\.com/(?:models/\d+(?:/[^/?]+)?/?|api/download/models/.*)$"),
)


def cog_flux_lora_weights(model: str, remote_ref: str) -> str:
    ref = canonical_ref(remote_ref)
    if VERSION_REF.match(ref) or any(form.match(ref) for form in _COG_FLUX_FORMS):
        return ref
    raise ConfigurationError(f"{model} cannot load the LoRA {ref!r}: lora_weights takes a Replicate model, a "
                             "Hugging Face file or an https URL of a .safetensors file or .tar")


# lucataco/flux-dev-lora (`hf_lora`), predict.py of https://github.com/lucataco/cog-flux-dev-lora: a Hugging Face
# repo `owner/name`, `https://replicate.delivery/<a>/<b>/trained_model.tar`, a `https://huggingface.co/...` URL,
# a CivitAI download URL, or a URL ending in `.safetensors`; anything else fails the prediction ("Invalid lora,
# must be either a: HuggingFace path, Replicate model.tar URL, or a URL to a .safetensors file"). From a
# huggingface.co URL it loads the repo named by `[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+` (a dot cuts the name short)
# and, with diffusers from the repo's default branch, the file named by the URL's last path segment; so only a
# top-folder file of a repo so named, on `main`, is the file it loads.
_LUCATACO_HF = re.compile(r"^https?://huggingface\.co/[A-Za-z0-9_-]+/[A-Za-z0-9_-]+/"
                          r"(?:(?:resolve|blob)/main/)?[^/?#]+\.safetensors$")
_LUCATACO_FORMS = (
    _LUCATACO_HF,
    re.compile(r"^https?://replicate\.delivery/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/trained_model\.tar$"),
    re.compile(r"^https?://civitai\.com/api/download/models/[0-9]+\?type=Model&format=SafeTensor"),
)


def lucataco_hf_lora(model: str, remote_ref: str) -> str:
    ref = canonical_ref(remote_ref)
    if VERSION_REF.match(ref):
        return ref  # the provider refuses it with its own message (hf_lora cannot load a Replicate version)
    if re.match(r"^https?://huggingface\.co/", ref):
        if _LUCATACO_HF.match(ref):
            return ref
        raise ConfigurationError(
            f"{model} cannot load the Hugging Face LoRA {ref!r}: it loads only a .safetensors file in the top "
            "folder, on the main branch, of a repo whose owner and name use letters, digits, '_' and '-'; "
            "use black-forest-labs/flux-dev-lora for this LoRA")
    if any(form.match(ref) for form in _LUCATACO_FORMS[1:]) or re.match(r"^https?://[^?#]+\.safetensors$", ref):
        return ref
    raise ConfigurationError(f"{model} cannot load the LoRA {ref!r}: hf_lora takes a Hugging Face file, a "
                             "Replicate trained_model.tar URL or an https URL ending in .safetensors")


# fal's LoRA endpoints (fal-ai/flux-lora, fal-ai/flux-2/lora): `loras[].path` is "URL or the path to the LoRA
# weights" (https://fal.ai/models/fal-ai/flux-lora/api), with URL examples only (a CivitAI download URL, a
# .safetensors URL, a Hugging Face resolve URL); fal's runners download it, so it is sent as a URL.
def fal_lora_path(model: str, remote_ref: str) -> str:
    ref = canonical_ref(remote_ref)
    if ref.startswith(("https://", "http://")):
        return ref
    raise ConfigurationError(f"{model} loads LoRAs from a URL, not {ref!r} (train the LoRA on fal, or "
                             "point the style at hf:<owner>/<repo>/<file>.safetensors or an https URL)")
