"""The judge on fal: a vision-language model behind fal's OpenRouter vision endpoint, through `fal_client`.

Request (https://fal.ai/docs/model-api-reference/vision-api/openrouter-router): `model` (the OpenRouter id),
`prompt`, `system_prompt`, `image_urls` (the page first, then the references), `reasoning`, `temperature`,
`max_tokens`. Answer: `output` (the text) and `usage` with `prompt_tokens`, `completion_tokens`, `total_tokens`
and `cost` (USD, what fal charged; without it the call is costed at the table's price).

The images go the way the image provider sends its references (providers/fal.py `_reference_url`: uploaded to
fal's storage once per process, or inline data: URIs where uploads are off). The submit is one request on the
provider's authenticated client (fal_client would retry a POST and could queue the call twice); the request id is
journaled (judge_jobs.ask_hosted) before the status is polled by the image provider's own loop
(FalProvider.poll_until_result), within the deadline, with a cancel when it passes. The key stays in the provider's
client and its Redactor.
"""

from __future__ import annotations

from typing import Any

from bookbug_assets.providers.base import JobFailed, ProviderError
from bookbug_assets.providers.fal import _split
from bookbug_assets.quality.judge import JudgeReply, JudgeRequest
from bookbug_assets.quality.judge_jobs import HostedJudge, judge_png, labelled_parts, unfence
from bookbug_assets.quality.judge_models_table import FAL_JUDGE_MODELS, HostedJudgeModel


def fal_arguments(spec: HostedJudgeModel, request: JudgeRequest, image_url) -> dict[str, Any]:
    images = [image_url(judge_png(b)) for b in labelled_parts(request)][: spec.max_images]
    args: dict[str, Any] = {"model": spec.model, "prompt": request.prompt, spec.system_field: request.system,
                            spec.images_field: images, spec.max_tokens_field: spec.max_tokens, **spec.fixed}
    if spec.temperature:
        args["temperature"] = 0
    return args


class FalJudge(HostedJudge):
    """JudgeBackend on fal (judge_jobs.HostedJudge: journal, rate limit, deadline, the answer's cost)."""

    family = "fal"
    models = FAL_JUDGE_MODELS

    def _submit(self, request: JudgeRequest) -> str:
        p, endpoint = self._provider, self.spec.endpoint
        arguments = fal_arguments(self.spec, request, p._reference_url)
        response = p._call(lambda: p._post_once(endpoint, arguments), f"submit judge call to {endpoint}")
        return f"{endpoint}|{response.json()['request_id']}"  # the provider's job id form (providers/fal.py)

    def _wait(self, job_id: str, seconds: float) -> JudgeReply:
        _, request_id = _split(job_id)
        result, _ = self._provider.poll_until_result(
            job_id, seconds, lambda _state: ProviderError(self.family, f"judge request {request_id} gave no answer "
                                                          f"within {self._policy.deadline_s:.0f}s; cancelled"),
            poll_s=self._poll_s, what="judge request")
        return self._reply(result, request_id)

    def _reply(self, result: Any, request_id: str) -> JudgeReply:
        result = result if isinstance(result, dict) else {}
        text = result.get("output")
        if not isinstance(text, str) and result.get("error"):  # the route reports the model's failure here
            raise JobFailed(self.family, f"judge request {request_id} failed: "
                                         f"{self._provider._clean(result['error'])}", retries=1)
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        cost = usage.get("cost")
        if not isinstance(cost, (int, float)) or isinstance(cost, bool) or cost < 0:
            tokens_in, tokens_out = usage.get("prompt_tokens"), usage.get("completion_tokens")
            counted = all(isinstance(t, int) for t in (tokens_in, tokens_out))
            cost = self.spec.cost_usd(tokens_in, tokens_out) if counted else self.price_per_call_usd()
        return JudgeReply(text=unfence(text) if isinstance(text, str) else None, cost_usd=float(cost))
