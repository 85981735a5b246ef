"""Choosing a judge by name: `<family>:<model>` (the value of BOOKBUG_JUDGE), or nothing for no judge.

    preview[:token-reader-v1]            the offline judge (judge_preview)
    openrouter[:<model in JUDGE_MODELS>] a vision model over OpenRouter's chat completions (judge_chat)
"""

from __future__ import annotations

from bookbug_assets.quality.judge import JudgeBackend
from bookbug_assets.quality.judge_chat import DEFAULT_JUDGE_MODEL, JUDGE_MODELS, OPENROUTER_BASE_URL, \
    ChatCompletionsJudge, JudgeConfigurationError
from bookbug_assets.quality.judge_preview import PREVIEW_JUDGE_MODEL, PreviewJudge

JUDGE_FAMILIES = {"preview": PREVIEW_JUDGE_MODEL, "openrouter": DEFAULT_JUDGE_MODEL}  # family -> default model


def parse_judge_spec(spec: str, variable: str = "BOOKBUG_JUDGE") -> tuple[str, str] | None:
    """('openrouter', 'openai/gpt-4o-2024-08-06') for 'openrouter:openai/gpt-4o-2024-08-06'; None for no judge
    ('' or 'none'). A bad value raises JudgeConfigurationError naming `variable`."""
    spec = spec.strip()
    if spec.lower() in ("", "none", "off"):
        return None
    family, _, model = spec.partition(":")
    if family not in JUDGE_FAMILIES:
        raise JudgeConfigurationError(f"{variable}={spec!r}: unknown judge family {family!r}; choose one of "
                                      f"{', '.join(sorted(JUDGE_FAMILIES))}, as <family>:<model>")
    model = model or JUDGE_FAMILIES[family]
    known = JUDGE_MODELS if family == "openrouter" else {PREVIEW_JUDGE_MODEL: None}
    if model not in known:
        raise JudgeConfigurationError(f"{variable}={spec!r}: {family} has no judge model {model!r}; choose one of "
                                      f"{', '.join(sorted(known))}")
    return family, model


def build_judge(spec: str, *, api_key: str | None = None, base_url: str | None = None,
                variable: str = "BOOKBUG_JUDGE") -> JudgeBackend | None:
    """The judge `spec` names, or None. The key comes from the caller (who read it from the environment)."""
    parsed = parse_judge_spec(spec, variable)
    if parsed is None:
        return None
    family, model = parsed
    if family == "preview":
        return PreviewJudge()
    if not api_key:
        raise JudgeConfigurationError(f"{variable}={spec!r} needs an API key (OPENROUTER_API_KEY); none is set")
    return ChatCompletionsJudge(model, api_key, base_url=base_url or OPENROUTER_BASE_URL)
