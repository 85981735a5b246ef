"""Style LoRA training on Replicate with ostris/flux-dev-lora-trainer.

The trainer pushes a new version to a destination model, which must exist first; its own version
id changes over time, so it is looked up at run time rather than pinned. The `weights` tar in the
training output is deleted with the rest of the API data after about an hour, so `wait` downloads
it at once and keeps the safetensors inside.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from datetime import datetime
from typing import Any

from bookbug_assets.providers.base import ConfigurationError, JobGone, ProviderError, ProviderSettings
from bookbug_assets.providers.replicate import ReplicateProvider
from bookbug_assets.training.base import LoraTrainer, TrainedLora, safetensors_rank, sha256_hex

log = logging.getLogger(__name__)

TRAINER_MODEL = "ostris/flux-dev-lora-trainer"
# H100 per-second rate (UNCONFIRMED: no public pricing page found); about $1.5-2 per 1000 steps.
H100_USD_PER_S = 0.001528
USD_PER_STEP_ESTIMATE = 0.002
WEIGHTS_IN_TAR = "output/flux_train_replicate/lora.safetensors"


class ReplicateLoraTrainer(LoraTrainer):
    name = "replicate"

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> ReplicateLoraTrainer:
        if not settings.replicate_api_token:
            raise ConfigurationError("style trainer 'replicate' needs REPLICATE_API_TOKEN")
        return cls(api_token=settings.replicate_api_token, base_url=settings.replicate_base_url,
                   poll_interval_s=settings.poll_interval_s)

    def __init__(self, api_token: str, base_url: str | None = None, poll_interval_s: float = 5.0,
                 hardware: str = "cpu", visibility: str = "private"):
        # The image provider already owns the client, the token-free error mapping and version lookup.
        self._provider = ReplicateProvider(api_token=api_token, base_url=base_url, poll_interval_s=poll_interval_s)
        self._client = self._provider._client
        self._call = self._provider._call
        self.poll_interval_s = poll_interval_s
        self.hardware = hardware  # Replicate picks the hardware of a fine-tune itself
        self.visibility = visibility
        self._params: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"ReplicateLoraTrainer(poll_interval_s={self.poll_interval_s})"

    def price_usd(self, steps: int) -> float:
        return round(steps * USD_PER_STEP_ESTIMATE, 4)

    def submit(self, dataset_zip: bytes, trigger_word: str, steps: int, rank: int,
               destination: str | None = None) -> str:
        if not destination or destination.count("/") > 1:
            raise ConfigurationError("a Replicate training needs a destination model 'owner/name' (or 'name')")
        if not dataset_zip.startswith(b"PK"):
            raise ConfigurationError("the style dataset must be a zip of images")
        if "/" not in destination:  # a bare name goes under the token's own account
            account = self._call(self._client.accounts.current, "look up the account")
            destination = f"{account.username}/{destination}"
        self._ensure_destination(destination)
        version = self._provider._version(TRAINER_MODEL)
        upload = self._call(lambda: self._client.files.create(
            io.BytesIO(dataset_zip), filename="style-dataset.zip", content_type="application/zip"),
            "upload training dataset")
        training_input = {
            "input_images": upload.urls["get"],
            "trigger_word": trigger_word,
            "steps": steps,
            "lora_rank": rank,
            # Styles need the trigger word on every caption and more caption dropout than faces.
            "autocaption_suffix": f"in the style of {trigger_word}",
            "caption_dropout_rate": 0.1,
        }
        training = self._call(lambda: self._client.trainings.create(
            model=TRAINER_MODEL, version=version, input=training_input, destination=destination),
            "create training")
        self._params[training.id] = {"trigger_word": trigger_word, "steps": steps, "rank": rank}
        return training.id

    def wait(self, job_id: str, deadline_s: float) -> TrainedLora:
        end = time.monotonic() + deadline_s
        status = "unknown"
        while True:
            try:
                training = self._call(lambda: self._client._request("GET", f"/v1/trainings/{job_id}"),
                                      f"get training {job_id}", not_found=JobGone).json()
            except JobGone:
                raise
            except ProviderError as exc:
                if not exc.transient:  # a failed poll is retried; the training keeps running
                    raise
                training = None
            if training is not None:
                status = training["status"]
                if status == "succeeded":
                    return self._collect(job_id, training)
                if status == "failed":
                    raise ProviderError(self.name, f"training {job_id} failed: "
                                                   f"{self._provider._clean(training.get('error') or 'no detail')}")
                if status in ("canceled", "aborted"):
                    raise JobGone(self.name, f"training {job_id} was {status}")
            remaining = end - time.monotonic()
            if remaining <= 0:
                self.cancel(job_id)
                raise ProviderError(self.name, f"training {job_id} still {status} after {deadline_s:.0f}s; "
                                               "canceled", transient=True)
            time.sleep(min(self.poll_interval_s, remaining))

    def cancel(self, job_id: str) -> None:
        try:
            self._call(lambda: self._client._request("POST", f"/v1/trainings/{job_id}/cancel"), "cancel training")
        except ProviderError as exc:
            log.info("replicate cancel of training %s: %s", job_id, exc)

    def _ensure_destination(self, destination: str) -> None:
        owner, name = destination.split("/")
        try:
            self._call(lambda: self._client.models.get(destination), f"look up {destination}", not_found=JobGone)
            return
        except JobGone:
            pass
        try:
            self._call(lambda: self._client.models.create(
                owner=owner, name=name, visibility=self.visibility, hardware=self.hardware,
                description="bookbug style LoRA"), f"create model {destination}")
        except ProviderError as exc:
            if exc.status != 409:  # 409: another step created it a moment ago, which is just as good
                raise
        log.info("created Replicate destination model %s", destination)

    def _collect(self, job_id: str, training: dict[str, Any]) -> TrainedLora:
        output = training.get("output") or {}
        weights_url = output.get("weights")
        version = output.get("version")
        if not weights_url:
            raise ProviderError(self.name, f"training {job_id} succeeded without weights")
        try:
            tar_bytes = self._provider._download(weights_url, job_id)
        except JobGone:
            raise ProviderError(self.name, f"the weights of training {job_id} have expired; the LoRA lives on "
                                           f"as {version}, but its file can no longer be kept") from None
        weights = _safetensors_from_tar(tar_bytes)
        params = self._params.get(job_id) or {}
        inp = training.get("input") or {}
        steps = int(params.get("steps") or inp.get("steps") or 1000)
        rank = safetensors_rank(weights) or int(params.get("rank") or inp.get("lora_rank") or 16)
        predict_time = (training.get("metrics") or {}).get("predict_time")
        duration = predict_time or _elapsed(training.get("started_at") or training.get("created_at"),
                                            training.get("completed_at"))
        cost = round(predict_time * H100_USD_PER_S, 4) if predict_time else self.price_usd(steps)
        return TrainedLora(weights=weights, sha256=sha256_hex(weights), remote_ref=version,
                           trigger_word=str(params.get("trigger_word") or inp.get("trigger_word") or "TOK"),
                           steps=steps, rank=rank, cost_usd=cost, duration_s=round(float(duration or 0.0), 3),
                           family="flux1", provider=self.name, job_id=job_id, weights_url=weights_url)


def _safetensors_from_tar(tar_bytes: bytes) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".safetensors")]
            members.sort(key=lambda m: m.name != WEIGHTS_IN_TAR)  # the trainer's own path first
            if not members:
                raise ProviderError("replicate", "the trained weights tar holds no .safetensors file")
            extracted = tar.extractfile(members[0])
            assert extracted is not None
            return extracted.read()
    except tarfile.TarError as exc:
        raise ProviderError("replicate", f"the trained weights are not a tar: {exc}") from None


def _elapsed(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    try:
        parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
        return max(0.0, (parse(end) - parse(start)).total_seconds())
    except ValueError:
        return 0.0
