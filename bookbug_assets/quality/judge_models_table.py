"""The vision-language judge models Replicate and fal host, with the input fields each one takes and its price.

Read from the services' model pages (stored copies, December 2026). A price or field marked UNCONFIRMED was not
on the service's own page; the note says where it came from. Replicate bills its official language models per
token and reports the tokens of each prediction in `metrics.input_token_count` / `output_token_count` (Cog docs:
"Official language models have metrics like input_token_count, output_token_count",
https://github.com/replicate/cog/blob/main/docs/python.md), so a call is costed from them at the table's price;
fal's OpenRouter route reports `usage.cost` itself
(https://fal.ai/docs/model-api-reference/vision-api/openrouter-router).
Neither service's models take a JSON schema for the answer here: the prompt asks for JSON and judge.py checks it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bookbug_assets.quality.judge_chat import EST_IMAGES, EST_OUTPUT_TOKENS, EST_PROMPT_TOKENS

FAL_VISION_ENDPOINT = "openrouter/router/vision"  # one fal endpoint in front of OpenRouter's vision models


@dataclass(frozen=True)
class HostedJudgeModel:
    """One judge model on one service: how its input is spelled and what one call costs."""

    service: str  # "replicate" | "fal"
    model: str  # Replicate: owner/name; fal: the OpenRouter model id the endpoint routes to
    images_field: str  # where the page and references go
    images: str  # "list": one URL per image, page first; "single": one picture, the images side by side
    system_field: str
    max_tokens_field: str
    max_tokens: int  # what the judge asks for; the answer is a few hundred tokens of JSON
    input_per_mtok: float  # USD per million input tokens
    output_per_mtok: float
    image_tokens: int  # input tokens one 1024 px image costs (an estimate: the services bill what they count)
    source: str
    endpoint: str = ""  # fal: the endpoint id; Replicate: the model itself
    max_images: int = 16
    fixed: dict = field(default_factory=dict)  # inputs sent on every call
    temperature: bool = True  # takes `temperature` (reasoning models do not)
    unconfirmed: str = ""  # what the pages did not confirm

    def price_per_call_usd(self) -> float:
        """The estimate before a run: the page, the sprite sheet and the hero page, the prompt and the answer."""
        images = EST_IMAGES if self.images == "list" else 1.6  # side by side: one picture, scaled to fit
        return self.cost_usd(round(images * self.image_tokens) + EST_PROMPT_TOKENS, EST_OUTPUT_TOKENS)

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return round((input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6, 6)


_OPENAI = dict(images_field="image_input", images="list", system_field="system_prompt",
               max_tokens_field="max_completion_tokens", max_tokens=2000)
# OpenAI counts a 1024 x 1024 image at high detail as 85 + 4 x 170 = 765 tokens
# (https://platform.openai.com/docs/guides/images-vision#calculating-costs); Replicate's inputs expose no detail level.
_GPT4O_IMAGE = 765

REPLICATE_JUDGE_MODELS: dict[str, HostedJudgeModel] = {m.model: m for m in [
    HostedJudgeModel(
        "replicate", "openai/gpt-4o", **_OPENAI, input_per_mtok=2.50, output_per_mtok=10.0,
        image_tokens=_GPT4O_IMAGE, source="https://replicate.com/openai/gpt-4o",
        unconfirmed="image tokens (OpenAI's count for high detail)"),
    HostedJudgeModel(
        "replicate", "openai/gpt-4.1", **_OPENAI, input_per_mtok=2.00, output_per_mtok=8.0,
        image_tokens=_GPT4O_IMAGE,
        source="https://replicate.com/openai/gpt-4.1/versions/"
               "0957f076d4ffb3be7316382743a98d37ac7504ca3620ed755440a13bab2a66da/api",
        unconfirmed="price (OpenAI's list price; Replicate's page says only 'priced per token'); image tokens"),
    HostedJudgeModel(
        "replicate", "openai/gpt-4.1-mini", **_OPENAI, input_per_mtok=0.40, output_per_mtok=1.60,
        image_tokens=1659,  # 1024 patches of 32 px x 1.62 (OpenAI's patch-based count for the mini models)
        source="https://replicate.com/openai/gpt-4.1-mini/versions/"
               "4579ccfd36b91dc14a148598c78b38b8968975883b7758432628f6af70242e7d/api",
        unconfirmed="price (OpenAI's list price); image tokens"),
    HostedJudgeModel(
        "replicate", "openai/gpt-5", **{**_OPENAI, "max_tokens": 4000}, input_per_mtok=1.25, output_per_mtok=10.0,
        image_tokens=_GPT4O_IMAGE, temperature=False,
        fixed={"reasoning_effort": "minimal", "verbosity": "low"},
        source="https://replicate.com/openai/gpt-5-nano/versions/"
               "3e5e85c2393b64269755bdb0e900971f3d8b8f17736cfc46dc786629311c5030/api",
        unconfirmed="openai/gpt-5's own schema (read from gpt-5-nano's page, same family: no temperature, "
                    "reasoning_effort minimal-high, verbosity); price (OpenAI's list price); image tokens"),
    HostedJudgeModel(
        "replicate", "google/gemini-2.5-flash", images_field="images", images="list",
        system_field="system_instruction", max_tokens_field="max_output_tokens", max_tokens=2000, max_images=10,
        input_per_mtok=0.30, output_per_mtok=2.50, image_tokens=1032, fixed={"thinking_budget": 0},
        source="https://replicate.com/google/gemini-2.5-flash/versions/"
               "a441f4c6a269df821c9013b5676643b707df748e7bba9d789351630862baab62/api",
        unconfirmed="price (Google's list price); image tokens (4 tiles of 258)"),
    HostedJudgeModel(
        "replicate", "anthropic/claude-4-sonnet", images_field="image", images="single",
        system_field="system_prompt", max_tokens_field="max_tokens", max_tokens=2000,
        input_per_mtok=3.0, output_per_mtok=15.0,
        image_tokens=1398,  # "(width px * height px)/750 input tokens", at the 1 MP sent below
        fixed={"max_image_resolution": 1.0}, temperature=False,  # the page lists no temperature input
        source="https://replicate.com/anthropic/claude-4-sonnet/versions/"
               "99e2cf4cf80396d98a55ea0a3a8c998a6e1423e6f57575025f8867683666c1ee/api",
        unconfirmed="price (Anthropic's list price); one `image` only, so the page and references go side by side"),
]}

_FAL = dict(endpoint=FAL_VISION_ENDPOINT, images_field="image_urls", images="list", system_field="system_prompt",
            max_tokens_field="max_tokens", max_tokens=2000, fixed={"reasoning": False})
_FAL_SOURCE = "https://fal.ai/docs/model-api-reference/vision-api/openrouter-router"
_FAL_PRICE = "price (OpenRouter's list price; fal bills 'based on actual token usage' and reports usage.cost)"

FAL_JUDGE_MODELS: dict[str, HostedJudgeModel] = {m.model: m for m in [
    HostedJudgeModel("fal", "google/gemini-2.5-flash", **_FAL, input_per_mtok=0.30, output_per_mtok=2.50,
                     image_tokens=1032, source=_FAL_SOURCE, unconfirmed=_FAL_PRICE + "; image tokens"),
    HostedJudgeModel("fal", "openai/gpt-4o", **_FAL, input_per_mtok=2.50, output_per_mtok=10.0,
                     image_tokens=_GPT4O_IMAGE, source=_FAL_SOURCE,
                     unconfirmed=_FAL_PRICE + "; the endpoint's page names GPT-4o as served, not this exact id"),
    HostedJudgeModel("fal", "openai/gpt-4.1", **_FAL, input_per_mtok=2.00, output_per_mtok=8.0,
                     image_tokens=_GPT4O_IMAGE, source="https://fal.ai/models/openrouter/router/llms.txt",
                     unconfirmed=_FAL_PRICE + "; named in fal's OpenRouter examples (text route)"),
    HostedJudgeModel("fal", "anthropic/claude-sonnet-4.5", **_FAL, input_per_mtok=3.0, output_per_mtok=15.0,
                     image_tokens=1398, source="https://fal.ai/models/openrouter/router/llms.txt",
                     unconfirmed=_FAL_PRICE + "; named in fal's OpenRouter examples (text route)"),
]}

DEFAULT_REPLICATE_JUDGE = "openai/gpt-4o"  # GPT-4o class: the judge DreamBench++ found closest to people
DEFAULT_FAL_JUDGE = "google/gemini-2.5-flash"  # the model fal's own example sends to the vision route
