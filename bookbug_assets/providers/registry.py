"""Provider families and style trainers by name, imported only when chosen (the local family imports torch).

Adding a family is one module (an ImageProvider subclass with its `from_settings`) plus one line in
FAMILIES and one in DEFAULT_MODELS.
"""

from __future__ import annotations

import importlib

from bookbug_assets.providers.base import ConfigurationError, ImageProvider, ProviderSettings
from bookbug_assets.providers.preview import PREVIEW_MODEL

FAMILIES: dict[str, str] = {
    "preview": "bookbug_assets.providers.preview:PreviewProvider",
    "replicate": "bookbug_assets.providers.replicate:ReplicateProvider",
    "fal": "bookbug_assets.providers.fal:FalProvider",
    "local": "bookbug_assets.providers.local_diffusers:LocalDiffusersProvider",
}

TRAINERS: dict[str, str] = {  # style_lora's cloud trainers; `local` trains through Dagster Pipes
    "replicate": "bookbug_assets.training.replicate:ReplicateLoraTrainer",
    "fal": "bookbug_assets.training.fal:FalLoraTrainer",
}

DEFAULT_MODELS: dict[str, str] = {
    "preview": PREVIEW_MODEL,
    "replicate": "google/nano-banana-pro",
    "fal": "fal-ai/nano-banana-pro",
    "local": "flux-dev",
}


def parse_provider_spec(spec: str) -> tuple[str, str]:
    """'replicate:google/nano-banana-pro' -> ('replicate', 'google/nano-banana-pro'); 'fal' -> its default."""
    family, _, model = spec.strip().partition(":")
    if family not in FAMILIES:
        raise ConfigurationError(f"unknown provider family {family!r} in {spec!r}; "
                                 f"choose one of {', '.join(sorted(FAMILIES))}")
    return family, model or DEFAULT_MODELS[family]


def _load(path: str, family: str):
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = " (install the [local] extra: pip install -e '.[local]')" if family == "local" else ""
        raise ConfigurationError(f"provider family {family!r} is unavailable: {exc}{hint}") from exc
    return getattr(module, attr)


def provider_class(family: str) -> type[ImageProvider]:
    return _load(FAMILIES[family], family)


def build_provider(family: str, settings: ProviderSettings, store=None) -> ImageProvider:
    return provider_class(family).from_settings(settings, store)


def build_trainer(trainer: str, settings: ProviderSettings):
    if trainer not in TRAINERS:
        raise ConfigurationError(f"unknown style trainer {trainer!r}; choose one of {', '.join(sorted(TRAINERS))}")
    return _load(TRAINERS[trainer], trainer).from_settings(settings)


def pool_for(family: str) -> str:
    """The Dagster concurrency pool a family's generation steps run in; the local GPU takes one job."""
    return "local_gpu" if family == "local" else family
