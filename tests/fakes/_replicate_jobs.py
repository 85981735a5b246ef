"""Prediction/training state for FakeReplicate: status progression, output
rendering, the trainer's result, and the JSON the API returns for each job."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field
from typing import Any

from ._http import iso, per_key
from ._judge_answers import answer_text, cards_from_text, page_pixels, seen_answer
from ._media import CONTENT_TYPES, render_image, safetensors_bytes, scaled, seed_for, trainer_tar, zip_image_names
from ._schema import nominal_size, with_defaults
from .replicate_schemas import E005, TRAINED_DESTINATION_SCHEMA, openapi_schema, version_id_for

TERMINAL = ("succeeded", "failed", "canceled")


@dataclass
class _Job:
    id: str
    kind: str  # prediction | training
    model: str
    version: str
    spec: dict
    input: dict
    created: float
    latency: float
    refused: bool = False
    fail_with: str | None = None  # the `error` text it fails with (fail_next_predictions)
    destination: str | None = None
    webhook: str | None = None
    canceled_at: float | None = None
    done_at: float | None = None
    status: str = "starting"
    output: Any = None
    error: str | None = None
    logs: str = ""
    judge_kind: str = "ok"  # judge models: the scripted kind of answer (_judge_answers.answer_text)
    tokens: tuple[int, int] | None = None  # judge models: (input, output) tokens, reported in metrics


@dataclass
class _Model:
    owner: str
    name: str
    spec: dict | None
    versions: list[dict] = field(default_factory=list)  # newest last
    visibility: str = "public"
    description: str | None = None
    hardware: str | None = None


class JobsMixin:
    """Mixed into FakeReplicate; relies on its knobs, `lock`, `url`, `models`, `jobs`."""

    def _version_json(self, vid: str, spec: dict, created: float) -> dict:
        return {"id": vid, "created_at": iso(created or 1.7e9), "cog_version": "0.14.12",
                "openapi_schema": openapi_schema(spec)}

    # -- lifecycle --------------------------------------------------------------------------
    def _advance(self, job: _Job) -> _Job:
        if job.status in TERMINAL:
            return job
        elapsed = time.monotonic() - job.created
        if per_key(self.never_finish, job.model, False) or elapsed < job.latency:
            job.status = "starting" if elapsed < job.latency / 3 else "processing"
            job.logs = "Loading model...\n" if job.status == "starting" else "Loading model...\nRunning...\n"
            return job
        job.done_at = time.time()
        if job.refused:
            job.status, job.error = "failed", job.spec.get("nsfw_error") or E005
        elif job.fail_with is not None:
            job.status, job.error = "failed", job.fail_with
        elif job.kind == "training":
            self._finish_training(job)
        elif job.spec.get("judge") is not None:
            self._finish_judge(job)
        else:
            job.status, job.output = "succeeded", self._render_outputs(job)
        job.logs += "Done.\n" if job.status == "succeeded" else f"Error: {job.error}\n"
        return job

    def _render_outputs(self, job: _Job) -> Any:
        full = with_defaults(job.spec["input"], job.input)
        fmt = str(full.get("output_format", "png")).replace("jpeg", "jpg")
        nominal = nominal_size(job.spec["sizing"], full)
        count = int(full.get("num_outputs", 1)) if job.spec["output"].get("type") == "array" else 1
        urls = []
        for i in range(count):
            seed = seed_for(job.model, job.input) + f":{i}"
            data = render_image(seed, scaled(nominal, self.output_scale), fmt, nominal=nominal,
                                label=f"{job.model} {full.get('prompt', '')}")
            urls.append(self._publish(job, f"out-{i}.{fmt}", data, CONTENT_TYPES.get(fmt, "image/png")))
        return urls if job.spec["output"].get("type") == "array" else urls[0]

    def _finish_judge(self, job: _Job) -> None:
        """A judge model's answer about image 1 (the first URL, or the left of one side-by-side picture)."""
        where = job.spec["judge"]
        sent = job.input.get(where["images"])
        urls = [sent] if isinstance(sent, str) else list(sent or [])
        data = self._local_bytes(str(urls[0])) if urls else None
        if not data:
            job.status, job.error = "failed", "Failed to load the input image"
            return
        try:
            cards = cards_from_text(str(job.input.get("prompt", "")))
        except ValueError:
            cards = None
        if cards is None:
            job.status, job.error = "failed", "fake judge: the prompt lists no character cards"
            return
        text = answer_text(seen_answer(page_pixels(data, where["side_by_side"]), cards), job.judge_kind)
        job.tokens = (1500 + 765 * len(urls), max(1, len(text) // 4))
        pieces = [text[i:i + 40] for i in range(0, len(text), 40)]  # streamed tokens, concatenated by the client
        job.status, job.output = "succeeded", pieces if job.spec["output"].get("type") == "array" else text

    def _publish(self, job: _Job, name: str, data: bytes, ctype: str) -> str:
        if self.output_mode == "data":
            return f"data:{ctype};base64,{base64.b64encode(data).decode()}"
        path = f"/delivery/{job.id}/{name}"
        self.deliveries[path] = (data, ctype, job.model, time.monotonic())
        return self.url + path

    def _finish_training(self, job: _Job) -> None:
        full = with_defaults(job.spec["input"], job.input)
        names: list[str] = []
        source = full.get("input_images")
        if source and not full.get("skip_training_and_use_pretrained_hf_lora_url"):
            blob = self._local_bytes(str(source))
            names = zip_image_names(blob) if blob is not None else ["image_0.jpg"]
            if names is None:
                job.status, job.error = "failed", "input_images must be a zip file"
                return
        weights = safetensors_bytes(int(full["lora_rank"]), {"trigger_word": str(full["trigger_word"])})
        tar = trainer_tar(weights, names, str(full["trigger_word"]), job.spec["weights_path_in_tar"])
        new_vid = version_id_for(job.destination or "", job.id)
        dest = self.models[job.destination or ""]
        dest.versions.append(self._version_json(new_vid, TRAINED_DESTINATION_SCHEMA, time.time()))
        self.version_specs[new_vid] = TRAINED_DESTINATION_SCHEMA
        url = self._publish(job, "trained_model.tar", tar, "application/x-tar")
        job.status, job.output = "succeeded", {"version": f"{job.destination}:{new_vid}", "weights": url}

    def _local_bytes(self, url: str) -> bytes | None:
        """Bytes behind a URL this fake served (upload or data: URI); None for anything else."""
        if url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1])
        if url.startswith(self.url + "/v1/files/"):
            entry = self.files.get(url[len(self.url + "/v1/files/"):].split("/")[0])
            return entry["_data"] if entry else b""
        if url.startswith(self.url + "/delivery/"):
            entry = self.deliveries.get(url[len(self.url):])
            return entry[0] if entry else b""
        return None

    def _job_json(self, job: _Job, force_status: str | None = None) -> dict:
        self._advance(job)
        status = force_status or job.status
        terminal = status in TERMINAL
        kind = "predictions" if job.kind == "prediction" else "trainings"
        out = {"id": job.id, "model": job.model, "version": job.version, "status": status,
               "input": job.input, "output": job.output if terminal else None, "logs": job.logs,
               "error": job.error if terminal else None, "data_removed": False,
               "metrics": ({"predict_time": round(job.latency, 3)} | (
                   {"input_token_count": job.tokens[0], "output_token_count": job.tokens[1]} if job.tokens else {})
                   if terminal else {}),
               "created_at": iso(time.time() - (time.monotonic() - job.created)),
               "started_at": iso(time.time()) if status != "starting" else None,
               "completed_at": iso(job.done_at or job.canceled_at) if terminal else None,
               "urls": {"get": f"{self.url}/v1/{kind}/{job.id}", "cancel": f"{self.url}/v1/{kind}/{job.id}/cancel",
                        "web": f"https://replicate.com/p/{job.id}"}}
        if job.kind == "prediction":
            out["source"] = "api"
            if job.webhook:
                out["webhook"] = job.webhook
        else:
            out["destination"] = job.destination
        return out


def _page(results: list) -> dict:
    return {"next": None, "previous": None, "results": results}


def _public(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_")}
