"""Queue-request state for FakeFal: status progression and the result each
endpoint returns (images in fal's two output shapes, or the trainer's files)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._fal_errors import Failure, content_policy_detail, entry, validation_detail
from ._http import per_key
from ._judge_answers import answer_text, cards_from_text, page_pixels, seen_answer
from ._media import CONTENT_TYPES, render_image, safetensors_bytes, scaled, seed_for, zip_image_names
from ._schema import Issue, nominal_size, with_defaults


@dataclass
class FalJob:
    id: str
    endpoint: str
    prefix: str  # owner/alias part used in request URLs
    spec: dict
    input: dict
    created: float
    latency: float
    refused: bool = False
    issues: list[Issue] = field(default_factory=list)  # validation deferred to the result stage
    webhook: str | None = None
    status: str = "IN_QUEUE"
    cancelled: bool = False
    result: Any = None
    error_detail: list[dict] | None = None
    failure: Failure | None = None  # fail_next_requests: how it fails once it has run
    done_at: float | None = None
    logs: list[dict] = field(default_factory=list)
    judge_kind: str = "ok"  # the judge route: the scripted kind of answer (_judge_answers.answer_text)


class FalJobsMixin:
    """Mixed into FakeFal; relies on its knobs, `url`, `lock`, `media`, `uploads_by_url`."""

    def _log(self, job: FalJob, message: str) -> None:
        job.logs.append({"message": message, "level": "INFO", "source": "user",
                         "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())})

    def _advance(self, job: FalJob) -> FalJob:
        if job.status == "COMPLETED":
            return job
        elapsed = time.monotonic() - job.created
        if job.cancelled:
            job.status, job.done_at = "COMPLETED", time.time()
            return job
        if per_key(self.never_finish, job.endpoint, False) or elapsed < job.latency:
            new = "IN_QUEUE" if elapsed < job.latency / 3 else "IN_PROGRESS"
            if new == "IN_PROGRESS" and job.status != new:
                self._log(job, "Running inference...")
            job.status = new
            return job
        job.status, job.done_at = "COMPLETED", time.time()
        if job.issues:
            job.error_detail = validation_detail(job.issues)
        elif job.failure is not None:
            pass  # _result answers with job.failure
        elif job.refused and (self.refusal_mode != "nsfw" or job.spec["style"] != "flux"):
            job.error_detail = content_policy_detail(job.input.get("prompt"))
        elif job.spec["kind"] == "training":
            self._finish_training(job)
        elif job.spec["kind"] == "judge":
            self._finish_judge(job)
        else:
            job.result = self._render(job, nsfw=job.refused)
        self._log(job, "Completed." if job.error_detail is None and job.failure is None else "Failed.")
        return job

    def _publish(self, job: FalJob, name: str, data: bytes, ctype: str) -> str:
        path = f"/files/out/{job.id}/{name}"
        self.media[path] = {"data": data, "content_type": ctype, "t": time.monotonic(), "endpoint": job.endpoint}
        return self.url + path

    def _render(self, job: FalJob, nsfw: bool) -> dict:
        full = with_defaults(job.spec["input"], job.input)
        ext = str(full.get("output_format", "png"))
        nominal = nominal_size(job.spec["sizing"], full)
        size = scaled(nominal, self.output_scale)
        base_seed = seed_for(job.endpoint, job.input)
        seed = int(full["seed"]) if isinstance(full.get("seed"), int) else int(base_seed[:8], 16)
        images = []
        for i in range(int(full.get("num_images", 1))):
            data = render_image(f"{base_seed}:{i}", size, ext, black=nsfw, nominal=nominal,
                                label=f"{job.endpoint} {full.get('prompt', '')}")
            ctype = CONTENT_TYPES.get(ext, "image/png")
            url = self._publish(job, f"{i}.{ext.replace('jpeg', 'jpg')}", data, ctype)
            image = {"url": url, "width": size[0], "height": size[1], "content_type": ctype}
            if job.spec["style"] == "nano":
                image.update(file_name=f"output_{i}.{ext.replace('jpeg', 'jpg')}", file_size=len(data))
            images.append(image)
        if job.spec["style"] == "nano":
            return {"images": images, "description": ""}
        return {"images": images, "timings": {"inference": round(job.latency, 3)}, "seed": seed,
                "has_nsfw_concepts": [nsfw] * len(images), "prompt": full.get("prompt", "")}

    def _local_bytes(self, url: str) -> bytes | None:
        """Bytes behind a URL this fake served (upload, output, data: URI); None otherwise."""
        if url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1])
        if url.startswith(self.url + "/files/"):
            item = self.media.get(url[len(self.url):])
            return item["data"] if item else b""
        return None

    def _finish_judge(self, job: FalJob) -> None:
        """The vision route's answer about image 1, or its refusal (a 422 content_policy_violation)."""
        if job.judge_kind == "refusal":
            job.error_detail = content_policy_detail(job.input.get("prompt"))
            return
        data = self._local_bytes(str(job.input["image_urls"][0]))
        if not data:
            job.error_detail = [entry(["image_urls", 0], "Failed to download the image.", "file_download_error",
                                      job.input["image_urls"][0])]
            return
        try:
            cards = cards_from_text(str(job.input["prompt"]))
        except ValueError:
            job.error_detail = [entry(["prompt"], "fake judge: the prompt lists no character cards", "value_error",
                                      "")]
            return
        text = answer_text(seen_answer(page_pixels(data), cards), job.judge_kind)
        tokens_in, tokens_out = 1500 + 765 * len(job.input["image_urls"]), max(1, len(text) // 4)
        job.result = {"output": text, "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out,
                                                "total_tokens": tokens_in + tokens_out,
                                                "cost": self.judge_cost_usd}}
        if self.judge_cost_usd is None:
            del job.result["usage"]["cost"]

    def _finish_training(self, job: FalJob) -> None:
        full = with_defaults(job.spec["input"], job.input)
        blob = self._local_bytes(str(full["images_data_url"]))
        if blob is not None:
            names = zip_image_names(blob)
            if names is None:
                job.error_detail = [entry(["images_data_url"], "Failed to extract the archive.",
                                          "invalid_archive", full["images_data_url"])]
                return
            need = job.spec.get("min_images", 1)
            if len(names) < need:
                job.error_detail = [entry(["images_data_url"], f"The archive must contain at least {need} images.",
                                          "archive_file_count_below_minimum", full["images_data_url"],
                                          {"min_count": need, "provided_count": len(names)})]
                return
        weights = safetensors_bytes(16, {"trigger_word": str(full.get("trigger_word") or "")})
        config = json.dumps({"trigger_word": full.get("trigger_word"), "steps": full["steps"],
                             "is_style": full["is_style"]}).encode()
        files = {}
        for key, name, data in (("diffusers_lora_file", "pytorch_lora_weights.safetensors", weights),
                                ("config_file", "config.json", config)):
            url = self._publish(job, name, data, "application/octet-stream")
            files[key] = {"url": url, "content_type": "application/octet-stream", "file_name": name,
                          "file_size": len(data)}
        job.result = {**files, "debug_preprocessed_output": None}

    def _urls(self, job: FalJob) -> dict:
        base = f"{self.url}/{job.prefix}/requests/{job.id}"
        return {"request_id": job.id, "response_url": base, "status_url": f"{base}/status",
                "cancel_url": f"{base}/cancel"}

    def _status_json(self, job: FalJob, with_logs: bool) -> dict:
        self._advance(job)
        out: dict[str, Any] = {"status": job.status, **self._urls(job)}
        logs = list(job.logs) if with_logs else None
        if job.status == "IN_QUEUE":
            now = time.monotonic()
            ahead = [j for j in self.jobs.values() if j.created < job.created and not j.cancelled
                     and j.status != "COMPLETED" and now - j.created < j.latency / 3]
            out["queue_position"] = len(ahead)
        elif job.status == "IN_PROGRESS":
            out["logs"] = logs
        else:
            out.update(logs=logs, metrics={"inference_time": round(job.latency, 3)})
            if job.cancelled:
                out.update(error="Request was cancelled by the client", error_type="client_cancelled")
            elif job.failure is not None:
                out.update(job.failure.status_fields())
            elif job.error_detail:
                out.update(error=job.error_detail[0]["msg"], error_type=job.error_detail[0]["type"])
        return out

    def _new_job(self, endpoint: str, prefix: str, spec: dict, inp: dict, refused: bool,
                 issues: list[Issue], webhook: str | None, failure: Failure | None = None,
                 judge_kind: str = "ok") -> FalJob:
        job = FalJob(str(uuid.uuid4()), endpoint, prefix, spec, inp, time.monotonic(),
                     float(per_key(self.latency_s, endpoint, 0.0) or 0.0), refused=refused,
                     issues=issues, webhook=webhook, failure=failure, judge_kind=judge_kind)
        self.jobs[job.id] = job
        return job
