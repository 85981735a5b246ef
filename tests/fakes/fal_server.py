"""FakeFal: a local stand-in for fal's queue (queue.fal.run), sync runner
(fal.run), storage API (rest.fal.ai) and CDN (v3.fal.media) that the real
`fal-client==1.0.3` talks to unchanged.

Pointing the client at it. fal_client hard-codes https and reads its hosts once,
at import, so in-process tests patch the module instead::

    with FakeFal() as server:
        server.patch_client(monkeypatch)   # sets fal_client.client.QUEUE_URL_FORMAT, RUN_URL_FORMAT,
                                           # REST_URL, CDN_URL and the FAL_KEY env var
        fal_client.subscribe("fal-ai/flux-lora", {...})   # module-level functions work
        fal_client.upload_file(path)                      # token -> CDN upload, both on the fake
        client = server.client()                          # or a fresh SyncClient(key=...)

Without pytest's monkeypatch, `undo = server.patch_client()` patches and returns the undo.
`client_overrides()` is the attribute dict it applies.

For a subprocess (which imports fal_client itself) use `FakeFal(tls=True)` and put
`client_env()` in its environment *before* the import: FAL_KEY, FAL_RUN_HOST and
FAL_QUEUE_RUN_HOST (host:port, the sync runner lives under /run) and SSL_CERT_FILE for
the bundled test CA. Uploads cannot be redirected by environment (REST_URL and CDN_URL
are constants), so a subprocess should send data: URIs (fal_client.encode_file) instead.

Fidelity notes:
- Unknown input fields give 422 (`strict_inputs=True`); the real API may ignore them.
- Validation and refusals surface where the queue reports them: the submit is accepted,
  the status reaches COMPLETED with `error`/`error_type`, and GET result answers 422
  with a `detail` list. `validation_stage="submit"` / `refusal_mode="submit"` move the
  422 to the submit instead. `refusal_mode="nsfw"` returns a black image with
  has_nsfw_concepts=[true] (flux-style endpoints only; nano-banana still answers 422).
- The client retries 429 (and transport errors) on every call, submit included, so
  `crash_after_submit=1` produces a duplicate queued request, as it would in production.
- Request URLs drop endpoint sub-paths (fal-ai/flux-pro/kontext -> fal-ai/flux-pro);
  using the full endpoint id there gives 405, as reported for the real queue.
- Uploads over 100 MB (multipart) are not implemented. Webhooks are recorded only.
- `fail_next_requests` takes `Failure`s (RUNNER_DISCONNECTED, MODEL_CRASH in _fal_errors), one per queued
  submit: that request runs, then fails that way.
- `fail_next_results` / `fail_all_results`: GET result of a COMPLETED request answers that status with a
  plain-text proxy body, as seen from the real queue; `result_fetches` counts those GETs.
- `create_limit` (a CreateLimit): submits over the key's limit answer 429 with Retry-After.
- The judge route (`openrouter/router/vision`) answers from what image 1 shows (_judge_answers);
  `judge_script` lists the next answers' kinds ("refusal": a content_policy_violation), `judge_cost_usd` is usage.cost.
- `upload_latency_s` holds each upload start (storage initiate, CDN upload) that long, so uploads racing
  from many threads overlap; `uploads` records each stored upload with its sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from ._fal_errors import (MODEL_CRASH, RUNNER_DISCONNECTED, Failure, content_policy_detail, model_error, request_error,
                          validation_detail)
from ._fal_jobs import FalJob, FalJobsMixin
from ._http import (CreateLimit, DropConnection, FakeHTTPServer, RecordedRequest, Response, json_response, per_key, pop_knob,
                    random_id, take_count)
from ._schema import validate
from .fal_schemas import FAL_ENDPOINT_SCHEMAS, request_prefix

__all__ = ["FakeFal", "FAL_ENDPOINT_SCHEMAS", "Failure", "MODEL_CRASH", "RUNNER_DISCONNECTED"]
_REQUEST_PATH = re.compile(r"^/(?P<prefix>.+)/requests/(?P<id>[^/]+)(?P<action>/status|/cancel)?$")


class FakeFal(FalJobsMixin, FakeHTTPServer):
    server_name = "fake-fal"

    def __init__(self, *, fal_key: str = "fake-key-id:fake-key-secret", latency_s: Any = 0.0,
                 output_scale: float = 0.25, tls: bool = False, host: str = "127.0.0.1", port: int = 0,
                 max_sync_wait_s: float = 5.0, strict_inputs: bool = True) -> None:
        super().__init__(host=host, port=port, tls=tls)
        self.fal_key = fal_key
        # Knobs; plain values or {"endpoint-id": value, "*": default}.
        self.latency_s = latency_s
        self.never_finish: Any = False
        self.fail_next_submits: Any = []  # status codes, one per submit (sync runs included)
        self.fail_next_polls: Any = []  # status codes for status GETs
        self.fail_next_requests: Any = []  # Failures, one per queued submit: the request runs, then fails so
        self.upload_latency_s = 0.0  # each upload start (storage initiate, CDN upload) is held this long
        self.retry_after_s = 1
        self.create_limit: CreateLimit | None = None  # e.g. CreateLimit(5, 60.0): a key's submits per window
        # Status codes answered by GET result of requests that reached COMPLETED (one per fetch; "always": int).
        self.fail_next_results: Any = []
        self.fail_all_results: int | None = None
        self.result_fetches = 0
        self.refuse_prompts_containing: Any = []
        self.judge_script: list[str] = []  # the judge route: the next answers' kinds (_judge_answers.KINDS)
        self.judge_cost_usd: float | None = 0.0021  # usage.cost of each judge answer (None: omitted)
        self.refuse_first_n = 0
        self.refusal_mode = "result"  # "result" | "submit" | "nsfw"
        self.validation_stage = "result"  # "result" | "submit"
        self.output_ttl_s: Any = None
        self.crash_after_submit: Any = 0  # int countdown (True == 1)
        self.output_scale = output_scale
        self.max_sync_wait_s = max_sync_wait_s
        self.strict_inputs = strict_inputs
        # Counters and state.
        self.submitted: list[dict] = []  # queue submits that created a request
        self.sync_runs: list[dict] = []
        self.cancelled: set[str] = set()
        self.uploads: list[dict] = []
        self.jobs: dict[str, FalJob] = {}
        self.media: dict[str, dict] = {}  # path -> {data, content_type, t, endpoint|ttl}
        self._pending_puts: dict[str, dict] = {}
        # Deterministic per key, so a client that cached a token from another FakeFal still works.
        self.cdn_token = "fakecdn-" + hashlib.sha256(fal_key.encode()).hexdigest()[:24]

    # -- pointing clients at the fake ----------------------------------------------------
    def client_overrides(self) -> dict[str, str]:
        return {"QUEUE_URL_FORMAT": f"{self.url}/", "RUN_URL_FORMAT": f"{self.url}/run/",
                "REST_URL": self.url, "CDN_URL": self.url}

    def patch_client(self, monkeypatch: Any = None) -> Callable[[], None]:
        import fal_client.client as fc
        overrides = self.client_overrides()
        if monkeypatch is not None:
            for name, value in overrides.items():
                monkeypatch.setattr(fc, name, value)
            monkeypatch.setenv("FAL_KEY", self.fal_key)
            return lambda: None
        saved = {name: getattr(fc, name) for name in overrides}
        saved_key = os.environ.get("FAL_KEY")
        for name, value in overrides.items():
            setattr(fc, name, value)
        os.environ["FAL_KEY"] = self.fal_key

        def undo() -> None:
            for name, value in saved.items():
                setattr(fc, name, value)
            if saved_key is None:
                os.environ.pop("FAL_KEY", None)
            else:
                os.environ["FAL_KEY"] = saved_key
        return undo

    def client_env(self) -> dict[str, str]:
        hostport = f"{self.host}:{self.port}"
        env = {"FAL_KEY": self.fal_key, "FAL_RUN_HOST": f"{hostport}/run", "FAL_QUEUE_RUN_HOST": hostport}
        if self.tls:
            env["SSL_CERT_FILE"] = self.ca_cert_file
        return env

    def client(self, **kwargs: Any):
        import fal_client
        return fal_client.SyncClient(key=self.fal_key, **kwargs)

    def async_client(self, **kwargs: Any):
        import fal_client
        return fal_client.AsyncClient(key=self.fal_key, **kwargs)

    def expire_outputs(self) -> None:
        """Make every output and upload URL handed out so far 404."""
        with self.lock:
            self.media.clear()

    def job(self, request_id: str) -> FalJob:
        with self.lock:
            return self._advance(self.jobs[request_id])

    # -- routing -------------------------------------------------------------------------
    def handle(self, req: RecordedRequest) -> Response:
        path, m = req.path, req.method
        if m == "GET" and path.startswith("/files/"):
            return self._serve_media(path)
        if m == "PUT" and path.startswith("/storage/put/"):
            return self._finish_put(path.rsplit("/", 1)[-1], req)
        if m == "POST" and path in ("/files/upload", "/storage/upload/initiate") and self.upload_latency_s:
            time.sleep(self.upload_latency_s)  # outside the lock: concurrent uploads overlap
        if m == "POST" and path == "/files/upload":
            if req.header("Authorization") != f"Bearer {self.cdn_token}":
                return json_response({"detail": "Invalid or expired token"}, 401)
            return self._store_upload(req, req.header("X-Fal-File-Name") or "upload.bin", "cdn")
        if req.header("Authorization") != f"Key {self.fal_key}":
            return request_error(401, "Invalid authentication credentials", "unauthorized")
        if m == "POST" and path == "/storage/auth/token":
            expires = datetime.now(timezone.utc) + timedelta(hours=1)
            return json_response({"token": self.cdn_token, "token_type": "Bearer", "base_url": self.url,
                                  "expires_at": expires.isoformat()})
        if m == "POST" and path == "/storage/upload/initiate":
            return self._initiate_put(req)
        if m == "POST" and path.startswith("/run/"):
            return self._submit(req, path[len("/run/"):], sync=True)
        match = _REQUEST_PATH.match(path)
        if match:
            return self._request_op(req, match["prefix"], match["id"], match["action"] or "")
        if m == "POST":
            return self._submit(req, path.lstrip("/"), sync=False)
        return json_response({"detail": "Not Found"}, 404)

    # -- queue ---------------------------------------------------------------------------
    def _submit(self, req: RecordedRequest, endpoint: str, sync: bool) -> Response:
        spec = FAL_ENDPOINT_SCHEMAS.get(endpoint)
        if spec is None:
            return json_response({"detail": f"Application '{endpoint}' not found"}, 404)
        wait = self.create_limit.retry_after() if self.create_limit is not None else None
        if wait is not None:
            return request_error(429, "Too many requests", "rate_limited", {"Retry-After": str(wait)})
        code = pop_knob(self, "fail_next_submits", endpoint)
        if code is not None:
            return self._injected(code)
        inp = req.json if isinstance(req.json, dict) else {}
        issues = validate(spec["input"], inp, strict=self.strict_inputs)
        if issues and (sync or self.validation_stage == "submit"):
            return model_error(validation_detail(issues))
        prompt = str(inp.get("prompt", "")).lower()
        with self.lock:
            refused = spec["kind"] == "image" and (take_count(self, "refuse_first_n") or any(
                s.lower() in prompt for s in per_key(self.refuse_prompts_containing, endpoint, []) or []))
            if refused and (sync or self.refusal_mode == "submit") and self.refusal_mode != "nsfw":
                return model_error(content_policy_detail(inp.get("prompt")))
            failure = None if sync or refused or issues else pop_knob(self, "fail_next_requests", endpoint)
            judge_kind = self.judge_script.pop(0) if spec["kind"] == "judge" and self.judge_script else "ok"
            job = self._new_job(endpoint, request_prefix(endpoint), spec, inp, refused, issues,
                                req.params.get("fal_webhook"), failure, judge_kind)
            record = {"request_id": job.id, "endpoint": endpoint, "input": inp}
            (self.sync_runs if sync else self.submitted).append(record)
            crash = take_count(self, "crash_after_submit")
        if crash:
            raise DropConnection()
        if sync:
            return self._wait_sync(job)
        with self.lock:
            body = {"status": "IN_QUEUE", **self._urls(job), "logs": None, "metrics": {},
                    "queue_position": self._status_json(job, False).get("queue_position", 0),
                    "gateway_request_id": job.id}
        return json_response(body, 200, {"x-fal-request-id": job.id})

    def _wait_sync(self, job: FalJob) -> Response:
        deadline = time.monotonic() + self.max_sync_wait_s
        while time.monotonic() < deadline:
            with self.lock:
                if self._advance(job).status == "COMPLETED":
                    return self._result(job)
            time.sleep(0.01)
        return request_error(504, "Request timed out", "request_timeout")

    def _request_op(self, req: RecordedRequest, prefix: str, request_id: str, action: str) -> Response:
        with self.lock:
            job = self.jobs.get(request_id)
            if job is not None and prefix != job.prefix:
                return json_response({"detail": "Method Not Allowed"}, 405)
            if action == "/status" and req.method == "GET":
                code = pop_knob(self, "fail_next_polls", job.endpoint if job else "*")
                if code is not None:
                    return self._injected(code)
                if job is None:
                    return json_response({"detail": "Request not found"}, 404)
                return json_response(self._status_json(job, req.params.get("logs") in ("true", "1")), 200,
                                     {"x-fal-request-id": job.id})
            if job is None:
                return json_response({"detail": "Request not found"}, 404)
            if action == "/cancel" and req.method == "PUT":
                self._advance(job)
                if job.status == "COMPLETED":
                    return json_response({"status": "ALREADY_COMPLETED"}, 400)
                job.cancelled = True
                self.cancelled.add(job.id)
                return json_response({"status": "CANCELLATION_REQUESTED"}, 202)
            if action == "" and req.method == "GET":
                self._advance(job)
                if job.status == "COMPLETED":
                    self.result_fetches += 1
                    code = self.fail_all_results or pop_knob(self, "fail_next_results", job.endpoint)
                    if code is not None:  # seen in production: COMPLETED, then the result URL answers 5xx
                        return Response(code, b"upstream connect error or disconnect/reset before headers",
                                        content_type="text/plain")
                return self._result(job)
        return json_response({"detail": "Method Not Allowed"}, 405)

    def _result(self, job: FalJob) -> Response:
        if job.status != "COMPLETED":
            return json_response({"detail": "Request is still in progress"}, 400)
        if job.cancelled:
            return request_error(499, "Request was cancelled by the client", "client_cancelled")
        if job.failure is not None:
            return job.failure.response()
        if job.error_detail is not None:
            return model_error(job.error_detail)
        return json_response(job.result, 200, {"x-fal-request-id": job.id})

    def _injected(self, code: int) -> Response:
        if code == 429:
            return request_error(429, "Too many requests", "rate_limited", {"Retry-After": str(self.retry_after_s)})
        return request_error(code, f"Injected HTTP {code}", "internal_error" if code >= 500 else "bad_request")

    # -- storage and CDN -----------------------------------------------------------------
    def _initiate_put(self, req: RecordedRequest) -> Response:
        body = req.json if isinstance(req.json, dict) else {}
        token = random_id(20)
        name = str(body.get("file_name") or "upload.bin")
        self._pending_puts[token] = {"file_name": name, "content_type": body.get("content_type"),
                                     "lifecycle": req.header("X-Fal-Object-Lifecycle-Preference")}
        return json_response({"upload_url": f"{self.url}/storage/put/{token}",
                              "file_url": f"{self.url}/files/up/{token}/{name}"})

    def _finish_put(self, token: str, req: RecordedRequest) -> Response:
        pending = self._pending_puts.pop(token, None)
        if pending is None:
            return json_response({"detail": "Unknown upload"}, 404)
        self._store_upload(req, pending["file_name"], "storage", token, pending["lifecycle"])
        return Response(200, b"")

    def _store_upload(self, req: RecordedRequest, name: str, via: str, token: str | None = None,
                      lifecycle: str | None = None) -> Response:
        token = token or random_id(20)
        lifecycle = lifecycle or req.header("X-Fal-Object-Lifecycle")
        ttl = None
        if lifecycle:
            try:
                ttl = json.loads(lifecycle).get("expiration_duration_seconds")
            except ValueError:
                ttl = None
        ctype = (req.header("Content-Type") or "application/octet-stream").split(";")[0]
        path = f"/files/up/{token}/{name}"
        with self.lock:
            self.media[path] = {"data": req.body, "content_type": ctype, "t": time.monotonic(), "ttl": ttl}
            self.uploads.append({"url": self.url + path, "file_name": name, "content_type": ctype,
                                 "size": len(req.body), "via": via, "sha256": hashlib.sha256(req.body).hexdigest()})
        return json_response({"access_url": self.url + path, "content_type": ctype, "file_name": name,
                              "file_size": len(req.body)})

    def _serve_media(self, path: str) -> Response:
        with self.lock:
            item = self.media.get(path)
            if item is None:
                return Response(404, b"Not Found", content_type="text/plain")
            ttl = item["ttl"] if "ttl" in item else per_key(self.output_ttl_s, item["endpoint"], None)
            if ttl is not None and time.monotonic() - item["t"] > float(ttl):
                return Response(404, b"Not Found", content_type="text/plain")
        return Response(200, item["data"], content_type=item["content_type"])
