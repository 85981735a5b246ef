"""Choosing a judge by name: `<family>:<model>` (the value of BOOKBUG_JUDGE), or nothing for no judge.

    preview[:token-reader-v1]            the offline judge (judge_preview)
    openrouter[:<model in JUDGE_MODELS>] a vision model over OpenRouter's chat completions (judge_chat)
    replicate[:<owner/model>]            a vision model on Replicate (judge_replicate, REPLICATE_JUDGE_MODELS)
    fal[:<model>]                        a vision model behind fal's OpenRouter vision endpoint (judge_fal);
                                         also fal:openrouter/router/vision[:<model>], the endpoint spelled out
"""

from __future__ import annotations

from dataclasses import replace

from bookbug_assets.providers.base import ProviderSettings
from bookbug_assets.quality.judge import JudgeBackend
from bookbug_assets.quality.judge_chat import DEFAULT_JUDGE_MODEL, JUDGE_MODELS, OPENROUTER_BASE_URL, \
    ChatCompletionsJudge, JudgeConfigurationError
from bookbug_assets.quality.judge_models_table import DEFAULT_FAL_JUDGE, DEFAULT_REPLICATE_JUDGE, \
    FAL_JUDGE_MODELS, FAL_VISION_ENDPOINT, REPLICATE_JUDGE_MODELS
from bookbug_assets.quality.judge_preview import PREVIEW_JUDGE_MODEL, PreviewJudge

JUDGE_FAMILIES = {"preview": PREVIEW_JUDGE_MODEL, "openrouter": DEFAULT_JUDGE_MODEL,  # family -> default model
                  "replicate": DEFAULT_REPLICATE_JUDGE, "fal": DEFAULT_FAL_JUDGE}
_KNOWN = {"preview": {PREVIEW_JUDGE_MODEL: None}, "openrouter": JUDGE_MODELS, "replicate": REPLICATE_JUDGE_MODELS,
          "fal": FAL_JUDGE_MODELS}
_KEYS = {"openrouter": "OPENROUTER_API_KEY", "replicate": "REPLICATE_API_TOKEN", "fal": "FAL_KEY"}


def _families() -> str:
    return ", ".join(f"{family} (e.g. {family}:{default})" for family, default in sorted(JUDGE_FAMILIES.items()))


def parse_judge_spec(spec: str, variable: str = "BOOKBUG_JUDGE") -> tuple[str, str] | None:
    """('openrouter', 'openai/gpt-4o-2024-08-06') for 'openrouter:openai/gpt-4o-2024-08-06'; None for no judge
    ('' or 'none'). A bad value raises JudgeConfigurationError naming `variable` and the known families."""
    spec = spec.strip()
    if spec.lower() in ("", "none", "off"):
        return None
    family, _, model = spec.partition(":")
    family = family.strip().lower()
    if family not in JUDGE_FAMILIES:
        raise JudgeConfigurationError(f"{variable}={spec!r}: unknown judge family {family!r}; known families: "
                                      f"{_families()}; or none")
    model = model.strip()
    if family == "fal" and (model == FAL_VISION_ENDPOINT or model.startswith(FAL_VISION_ENDPOINT + ":")):
        model = model[len(FAL_VISION_ENDPOINT) + 1:]  # the endpoint spelled out: what follows is the model
    model = model or JUDGE_FAMILIES[family]
    if model not in _KNOWN[family]:
        raise JudgeConfigurationError(f"{variable}={spec!r}: {family} has no judge model {model!r}; choose one of "
                                      f"{', '.join(sorted(_KNOWN[family]))} (known families: {_families()})")
    return family, model


def build_judge(spec: str, *, api_key: str | None = None, base_url: str | None = None,
                variable: str = "BOOKBUG_JUDGE", providers: ProviderSettings | None = None,
                store=None) -> JudgeBackend | None:
    """The judge `spec` names, or None. Keys come from the caller (who read them from the environment): `api_key`
    (and `base_url`) for the chosen family, or, for replicate and fal, `providers` (the image providers' settings:
    token or key, base URL, poll interval). `store` keeps the replicate/fal judges' job journal, so a resumed call
    is not paid twice."""
    parsed = parse_judge_spec(spec, variable)
    if parsed is None:
        return None
    family, model = parsed
    if family == "preview":
        return PreviewJudge()
    settings = providers or ProviderSettings()
    if family == "replicate":
        settings = replace(settings, replicate_api_token=settings.replicate_api_token or api_key,
                           replicate_base_url=settings.replicate_base_url or base_url)
    elif family == "fal":
        settings = replace(settings, fal_key=settings.fal_key or api_key,
                           fal_base_url=settings.fal_base_url or base_url)
    key = {"openrouter": api_key, "replicate": settings.replicate_api_token, "fal": settings.fal_key}[family]
    if not key:
        raise JudgeConfigurationError(f"{variable}={spec!r} needs an API key ({_KEYS[family]}); none is set")
    if family == "openrouter":
        return ChatCompletionsJudge(model, key, base_url=base_url or OPENROUTER_BASE_URL)
    if family == "replicate":
        from bookbug_assets.providers.replicate import ReplicateProvider  # the client loads only when chosen
        from bookbug_assets.quality.judge_replicate import ReplicateJudge
        return ReplicateJudge(model, ReplicateProvider.from_settings(settings, store=store), store=store)
    from bookbug_assets.providers.fal import FalProvider
    from bookbug_assets.quality.judge_fal import FalJudge
    return FalJudge(model, FalProvider.from_settings(settings), store=store)
