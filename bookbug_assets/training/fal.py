"""Style LoRA training on fal with fal-ai/flux-lora-fast-training.

`is_style: true` turns off the trainer's face masks and auto-captions and ties the trigger word to
every image, which is what a picture-book style needs. The trainer takes no rank input, so the
rank recorded is the one read from the weights file. fal keeps outputs for days, but the weights
are downloaded at once anyway: the pinned copy is what later runs use.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qsl, urlencode

from bookbug_assets.providers.base import ConfigurationError, JobGone, ProviderError, ProviderSettings
from bookbug_assets.providers.fal import FalProvider, _split
from bookbug_assets.training.base import LoraTrainer, TrainedLora, safetensors_rank, sha256_hex

log = logging.getLogger(__name__)

TRAINER_ENDPOINT = "fal-ai/flux-lora-fast-training"
USD_PER_STEP = 0.002  # $2 per 1000 steps, linear in steps (fal model page)


class FalLoraTrainer(LoraTrainer):
    name = "fal"

    @classmethod
    def from_settings(cls, settings: ProviderSettings) -> FalLoraTrainer:
        if not settings.fal_key:
            raise ConfigurationError("style trainer 'fal' needs FAL_KEY")
        return cls(key=settings.fal_key, base_url=settings.fal_base_url, poll_interval_s=settings.poll_interval_s)

    def __init__(self, key: str, base_url: str | None = None, poll_interval_s: float = 5.0, *,
                 rest_url: str | None = None):
        # The image provider owns the client, its base-URL routing, uploads and key-free errors.
        self._provider = FalProvider(key=key, base_url=base_url, poll_interval_s=poll_interval_s,
                                     rest_url=rest_url)
        self.poll_interval_s = poll_interval_s
        self._submitted: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"FalLoraTrainer(poll_interval_s={self.poll_interval_s})"

    def price_usd(self, steps: int) -> float:
        return round(steps * USD_PER_STEP, 4)

    def submit(self, dataset_zip: bytes, trigger_word: str, steps: int, rank: int,
               destination: str | None = None) -> str:
        if not dataset_zip.startswith(b"PK"):
            raise ConfigurationError("the style dataset must be a zip of images")
        url = self._provider.upload(dataset_zip, "application/zip", "style-dataset.zip")
        arguments = {"images_data_url": url, "trigger_word": trigger_word, "steps": steps,
                     "is_style": True, "create_masks": False}
        p = self._provider
        response = p._call(lambda: p._post_once(TRAINER_ENDPOINT, arguments), f"submit to {TRAINER_ENDPOINT}")
        # The parameters ride in the job id: fal's result does not echo them, and a resumed step
        # knows only the journaled id.
        params = urlencode({"steps": steps, "rank": rank, "trigger_word": trigger_word})
        job_id = f"{TRAINER_ENDPOINT}|{response.json()['request_id']}#{params}"
        self._submitted[job_id] = time.monotonic()
        return job_id

    def wait(self, job_id: str, deadline_s: float) -> TrainedLora:
        started = time.monotonic()
        endpoint, request_id = _split(job_id.partition("#")[0])
        p = self._provider
        handle = p._fal.get_handle(endpoint, request_id)
        end = started + deadline_s
        while True:
            try:
                status = p._call(lambda: handle.status(with_logs=False), f"status of {request_id}", job=True)
            except JobGone:
                raise
            except ProviderError as exc:
                if not exc.transient:
                    raise
                status = None
            if status is not None and type(status).__name__ == "Completed":
                if getattr(status, "error_type", None) == "client_cancelled":
                    raise JobGone(self.name, f"training {request_id} was cancelled")
                return self._collect(job_id, handle, request_id, status, started)
            remaining = end - time.monotonic()
            if remaining <= 0:
                self.cancel(job_id)
                raise ProviderError(self.name, f"training {request_id} unfinished after {deadline_s:.0f}s; "
                                               "cancelled", transient=True)
            time.sleep(min(self.poll_interval_s, remaining))

    def cancel(self, job_id: str) -> None:
        self._provider.cancel(job_id.partition("#")[0])

    def _collect(self, job_id: str, handle, request_id: str, status, started: float) -> TrainedLora:
        p = self._provider
        result = p._call(handle.get, f"result of {request_id}", job=True)
        lora_file = result.get("diffusers_lora_file") or {}
        url = lora_file.get("url")
        if not url:
            raise ProviderError(self.name, f"training {request_id} finished without diffusers_lora_file")
        weights = p.download(url, request_id)
        params = dict(parse_qsl(job_id.partition("#")[2]))
        steps = int(params.get("steps") or 1000)
        rank = safetensors_rank(weights) or int(params.get("rank") or 16)
        metrics = getattr(status, "metrics", None) or {}
        submitted = self._submitted.get(job_id)
        duration = metrics.get("inference_time") or (time.monotonic() - (submitted or started))
        return TrainedLora(weights=weights, sha256=sha256_hex(weights), remote_ref=url,
                           trigger_word=str(params.get("trigger_word") or ""), steps=steps, rank=rank,
                           cost_usd=self.price_usd(steps), duration_s=round(float(duration), 3), family="flux1",
                           provider=self.name, job_id=job_id, weights_url=url)
