"""A vision-language judge behind an OpenAI-compatible chat-completions API, spoken with httpx.

The default service is OpenRouter, one OpenAI-compatible endpoint in front of GPT-4o-class, Gemini and Claude
vision models (https://openrouter.ai/docs/api-reference/overview). The same request works against OpenAI's own
`https://api.openai.com/v1` with OpenAI model names, given their prices in the table.

Request (POST {base_url}/chat/completions, `Authorization: Bearer <key>`): `model`, `messages` with a system
message and one user message whose `content` is a list of parts, `{"type": "text", "text": ...}` and
`{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}` (images as data: URLs, page first);
`response_format` `{"type": "json_schema", "json_schema": {"name", "strict": true, "schema"}}` where the model
supports structured outputs (https://openrouter.ai/docs/structured-outputs), else `{"type": "json_object"}`.
Answer: `choices[0].message.content` (the JSON text) or `choices[0].message.refusal` (a model declining,
https://platform.openai.com/docs/guides/structured-outputs#refusals); `usage.cost` is what OpenRouter charged,
in USD credits (https://openrouter.ai/docs/use-cases/usage-accounting). Without `usage.cost` a call is costed at
the table's estimate.

The key is handed in by the caller (from the environment), kept in this object only and sent only in the
Authorization header: it is in no message, log, repr or verdict.
"""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass

import httpx
from PIL import Image

from bookbug_assets.providers.replicate_models import sniff_mime
from bookbug_assets.quality.judge import JudgeReply, JudgeRequest, JudgeUnavailable

OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
MAX_IMAGE_SIDE = 1024  # print-resolution pages are downscaled: the judge sees no more at 2048 px, and pays more
# What one call sends and gets, for the estimate: three images (page, sheet, hero), the prompt with the cards,
# and the answer (a few hundred tokens of JSON; thinking models bill their reasoning as output too).
EST_PROMPT_TOKENS, EST_OUTPUT_TOKENS, EST_IMAGES = 1500, 600, 3


@dataclass(frozen=True)
class JudgeModelPrice:
    """A vision model's list price on the service (USD) and what the estimate assumes."""

    input_per_mtok: float
    output_per_mtok: float
    per_image_usd: float | None  # the service's price per input image; None: images are billed as input tokens
    source: str
    image_tokens: int = 0  # tokens one 1024 px image costs, where images are billed as tokens
    structured_outputs: bool = True  # accepts response_format json_schema (else json_object is sent)
    note: str = ""

    def price_per_call_usd(self) -> float:
        images = (EST_IMAGES * self.per_image_usd if self.per_image_usd is not None
                  else EST_IMAGES * self.image_tokens * self.input_per_mtok / 1e6)
        return round(images + (EST_PROMPT_TOKENS * self.input_per_mtok + EST_OUTPUT_TOKENS * self.output_per_mtok)
                     / 1e6, 6)


# OpenRouter model pages (stored copies read 2026-12); per-image prices as the pages list them ("$/K input imgs").
JUDGE_MODELS: dict[str, JudgeModelPrice] = {
    "openai/gpt-4o-2024-08-06": JudgeModelPrice(
        2.50, 10.0, 3.613 / 1000, "https://openrouter.ai/openai/gpt-4o-2024-08-06",
        note="GPT-4o class: the judge DreamBench++ found closest to people"),
    "openai/gpt-4o-mini": JudgeModelPrice(
        0.15, 0.60, 7.225 / 1000, "https://openrouter.ai/openai/gpt-4o-mini-2024-07-18",
        note="cheap text, dear images: mini spends more tokens per image than GPT-4o"),
    "google/gemini-2.0-flash-001": JudgeModelPrice(
        0.10, 0.40, 0.026 / 1000, "https://openrouter.ai/google/gemini-2.0-flash-001",
        note="structured outputs through OpenRouter UNCONFIRMED for this model"),
    "google/gemini-2.5-flash": JudgeModelPrice(
        0.30, 2.50, None, "https://openrouter.ai/google/gemini-2.5-flash", image_tokens=1032,
        note="no per-image price listed; 1032 tokens per 1024 px image (4 tiles of 258) UNCONFIRMED; "
             "thinking tokens are billed as output"),
}
DEFAULT_JUDGE_MODEL = "openai/gpt-4o-2024-08-06"


class JudgeConfigurationError(ValueError):
    """A judge that cannot be built as asked: an unknown model or no key."""


def image_data_url(data: bytes, max_side: int = MAX_IMAGE_SIDE) -> str:
    """The image as a data: URL the API accepts (PNG, JPEG or WebP), downscaled to `max_side` when larger."""
    mime = sniff_mime(data)
    image = Image.open(io.BytesIO(data))
    if not mime.startswith("image/") or max(image.size) > max_side:
        image = image.convert("RGB")
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, format="PNG")
        data, mime = out.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def chat_request_body(model: str, request: JudgeRequest, structured_outputs: bool, max_tokens: int) -> dict:
    parts: list[dict] = [{"type": "text", "text": request.prompt},
                         {"type": "text", "text": "Image 1: the illustration to judge."},
                         {"type": "image_url", "image_url": {"url": image_data_url(request.image)}}]
    for number, (role, data) in enumerate(request.references, start=2):
        parts += [{"type": "text", "text": f"Image {number}: {role.replace('_', ' ')}."},
                  {"type": "image_url", "image_url": {"url": image_data_url(data)}}]
    response_format = ({"type": "json_schema", "json_schema": {"name": "judge_verdict", "strict": True,
                                                               "schema": request.answer_schema}}
                       if structured_outputs else {"type": "json_object"})
    return {"model": model, "messages": [{"role": "system", "content": request.system},
                                         {"role": "user", "content": parts}],
            "response_format": response_format, "temperature": 0, "max_tokens": max_tokens}


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    text = " ".join(str(message or response.text or response.reason_phrase).split())
    return text[:200]


class ChatCompletionsJudge:
    """JudgeBackend over POST {base_url}/chat/completions. One httpx client, safe to share between threads."""

    family = "openrouter"

    def __init__(self, model: str, api_key: str, *, base_url: str = OPENROUTER_BASE_URL, timeout_s: float = 120.0,
                 max_tokens: int = 2000, transport: httpx.BaseTransport | None = None) -> None:
        if model not in JUDGE_MODELS:
            raise JudgeConfigurationError(f"judge model {model!r} has no price in JUDGE_MODELS; known: "
                                          f"{', '.join(sorted(JUDGE_MODELS))}")
        if not api_key:
            raise JudgeConfigurationError("the judge needs an API key; none was given")
        self.model, self.price = model, JUDGE_MODELS[model]
        self._max_tokens = max_tokens
        self._client = httpx.Client(base_url=base_url.rstrip("/") + "/", transport=transport,
                                    timeout=httpx.Timeout(timeout_s, connect=10.0),
                                    headers={"Authorization": f"Bearer {api_key}"})

    def __repr__(self) -> str:
        return f"ChatCompletionsJudge(model={self.model!r})"

    def close(self) -> None:
        self._client.close()

    def price_per_call_usd(self) -> float:
        return self.price.price_per_call_usd()

    def ask(self, request: JudgeRequest) -> JudgeReply:
        body = chat_request_body(self.model, request, self.price.structured_outputs, self._max_tokens)
        started = time.monotonic()
        try:
            response = self._client.post("chat/completions", json=body)
        except httpx.HTTPError as exc:  # the message names the URL and the error, never the headers
            raise JudgeUnavailable(f"{self.model}: {type(exc).__name__}: {exc}") from None
        latency = time.monotonic() - started
        if response.status_code != 200:
            raise JudgeUnavailable(f"{self.model}: HTTP {response.status_code}: {_error_text(response)}")
        try:
            payload = response.json()
        except ValueError:
            raise JudgeUnavailable(f"{self.model}: the API answered a body that is not JSON") from None
        if not isinstance(payload, dict) or "error" in payload or not payload.get("choices"):
            raise JudgeUnavailable(f"{self.model}: no answer in the response: {_error_text(response)}")
        choice = payload["choices"][0] if isinstance(payload["choices"][0], dict) else {}
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        refusal = message.get("refusal") or None
        if refusal is None and choice.get("finish_reason") == "content_filter":
            refusal = "stopped by the service's content filter"
        content = message.get("content")
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        cost = usage.get("cost")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or cost < 0:
            cost = self.price_per_call_usd()
        return JudgeReply(text=content if isinstance(content, str) else None,
                          refusal=str(refusal) if refusal is not None else None,
                          cost_usd=float(cost), latency_s=latency)
