"""The judge on Replicate: a vision-language model from REPLICATE_JUDGE_MODELS, through the `replicate` client.

The images go up through Replicate's files API as the image provider sends its references (providers/replicate.py,
one upload per image per process, the sprite sheet and hero page remembered with their expiry); a model with one
`image` field gets them side by side (`stitch`) and a sentence saying so. The prediction is created by model name
(official models need no version, https://replicate.com/changelog/2025-01-29-official-models) without
`Prefer: wait`, its id journaled (judge_jobs.ask_hosted), then polled by the image provider's own loop
(ReplicateProvider.poll_until_succeeded) until it ends or the deadline passes (a cancel then). Language models
stream their answer as a list of text pieces (output schema `x-cog-array-display: concatenate`) or return one
string; the pieces are joined. The cost is the prediction's token counts
(`metrics.input_token_count`, `output_token_count`) at the table's price, else the table's estimate.

The token lives in the provider's client only: errors pass through its Redactor, and repr names the model only.
"""

from __future__ import annotations

from typing import Any

from bookbug_assets.providers.base import ProviderError
from bookbug_assets.providers.replicate_models import stitch
from bookbug_assets.quality.judge import JudgeReply, JudgeRequest
from bookbug_assets.quality.judge_jobs import SIDE_BY_SIDE_NOTE, HostedJudge, judge_png, labelled_parts, unfence
from bookbug_assets.quality.judge_models_table import REPLICATE_JUDGE_MODELS, HostedJudgeModel


def replicate_input(spec: HostedJudgeModel, request: JudgeRequest, upload) -> dict[str, Any]:
    """The prediction input for `request`: the model's own field names, images as uploaded URLs, page first."""
    images = [judge_png(b) for b in labelled_parts(request)]
    prompt = request.prompt
    if spec.images == "single":
        prompt = SIDE_BY_SIDE_NOTE + prompt
        images_value: Any = upload(stitch(images))
    else:
        images_value = [upload(b) for b in images[: spec.max_images]]
    inp: dict[str, Any] = {"prompt": prompt, spec.system_field: request.system, spec.images_field: images_value,
                           spec.max_tokens_field: spec.max_tokens, **spec.fixed}
    if spec.temperature:
        inp["temperature"] = 0
    return inp


def prediction_text(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, list) and all(isinstance(piece, str) for piece in output):
        return "".join(output)
    return None


class ReplicateJudge(HostedJudge):
    """JudgeBackend on Replicate (judge_jobs.HostedJudge: journal, rate limit, deadline, the answer's cost)."""

    family = "replicate"
    models = REPLICATE_JUDGE_MODELS

    def _submit(self, request: JudgeRequest) -> str:
        p = self._provider
        inp = replicate_input(self.spec, request, p._upload)
        prediction = p._call(lambda: p._client.predictions.create(model=self.model, input=inp),
                             f"create judge prediction on {self.model}")
        return prediction.id

    def _wait(self, job_id: str, seconds: float) -> JudgeReply:
        prediction, _ = self._provider.poll_until_succeeded(
            job_id, seconds, lambda _status: ProviderError(self.family, f"judge prediction {job_id} gave no answer "
                                                           f"within {self._policy.deadline_s:.0f}s; canceled"),
            poll_s=self._poll_s, what="judge prediction")
        return self._reply(prediction)

    def _reply(self, prediction: dict) -> JudgeReply:
        text = prediction_text(prediction.get("output"))  # None: judge.py calls it an empty answer, asks again
        metrics = prediction.get("metrics") or {}
        tokens_in, tokens_out = metrics.get("input_token_count"), metrics.get("output_token_count")
        counted = all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in (tokens_in, tokens_out))
        cost = self.spec.cost_usd(tokens_in, tokens_out) if counted else self.spec.price_per_call_usd()
        return JudgeReply(text=unfence(text), cost_usd=cost)
