"""FakeReplicate: a local stand-in for api.replicate.com that the real
`replicate==1.0.7` client talks to unchanged.

Pointing the client at it::

    with FakeReplicate() as server:
        client = server.client()   # == replicate.Client(api_token=server.api_token, base_url=server.url)
                                   #    with a 0.05 s poll interval
        # Module-level replicate.run()/replicate.predictions: call server.patch_client(monkeypatch).
        # It sets client_env() (REPLICATE_API_TOKEN, REPLICATE_BASE_URL, REPLICATE_POLL_INTERVAL)
        # and clears replicate.default_client's cached httpx clients, which otherwise keep the
        # base URL and token of the first request made in the process.
        # A subprocess only needs client_env() in its environment.

Output URLs and FileOutput: replicate 1.0.7 wraps only `https:` and `data:` strings in
`FileOutput`. Over plain http (the default) `client.run()` therefore returns plain URL
strings. Use `FakeReplicate(tls=True)` (serves https with a bundled test CA; client_env()
then adds SSL_CERT_FILE, which must be in the environment before the client makes its
first request) or `output_mode="data"` (outputs as data: URIs) when the code under test
relies on `FileOutput.read()`.

Fidelity notes (deliberate, documented choices):
- Unknown input fields give 422 (`strict_inputs=True`). The real API may silently ignore
  them; strictness here catches typos in our own code.
- Community models (lucataco/flux-dev-lora, stability-ai/sdxl, the trainer, trained
  destinations) must be run by version (`owner/name:<version>`); by-name gives 404.
- `Prefer: wait` is honoured but capped at `max_sync_wait_s` (5 s, real: 60 s). When the
  hold runs out the response says "starting", so the client falls back to polling.
- Create requests without `Prefer: wait` always answer "starting", as the real API does.
- Webhooks are recorded in the prediction but never delivered.
- `fail_next_predictions` makes the next created predictions end `failed` with the given `error` texts
  (GENERIC_FAILURE, CUDA_OOM, INTERRUPTED in _replicate_errors), as a model that crashes does.
- Judge models (vision-language models, `judge` in replicate_schemas) answer from what image 1 shows
  (_judge_answers); `judge_script` lists the next answers' kinds ("refusal" fails like a flagged input, E005).
- `upload_latency_s` holds each file upload that long before storing it, so that uploads racing from
  many threads overlap; `uploads` records each stored upload with its sha256.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from ._http import (CreateLimit, DropConnection, FakeHTTPServer, RecordedRequest, Response, iso, json_response,
                    parse_multipart, per_key, pop_knob, random_id, take_count)
from ._replicate_errors import (CUDA_OOM, GENERIC_FAILURE, INTERRUPTED, format_validation_error, http_error, not_found,
                                throttled, unauthenticated)
from ._replicate_jobs import TERMINAL, JobsMixin, _Job, _Model, _page, _public
from ._schema import Issue, validate
from .replicate_schemas import E005, REPLICATE_MODEL_SCHEMAS, lora_input_error, version_id_for

__all__ = ["FakeReplicate", "REPLICATE_MODEL_SCHEMAS", "E005", "GENERIC_FAILURE", "CUDA_OOM", "INTERRUPTED"]


class FakeReplicate(JobsMixin, FakeHTTPServer):
    server_name = "fake-replicate"

    def __init__(self, *, api_token: str = "r8_fake_test_token", username: str = "bookbug",
                 latency_s: Any = 0.0, output_scale: float = 0.25, output_mode: str = "url",
                 tls: bool = False, host: str = "127.0.0.1", port: int = 0,
                 max_sync_wait_s: float = 5.0, strict_inputs: bool = True) -> None:
        super().__init__(host=host, port=port, tls=tls)
        self.api_token = api_token
        self.username = username
        # Fault and timing knobs; plain values or {"owner/name": value, "*": default}.
        self.latency_s = latency_s
        self.never_finish: Any = False
        self.fail_next_creates: Any = []  # status codes, consumed one per create (predictions and trainings)
        self.fail_next_polls: Any = []  # status codes for GET /v1/predictions|trainings/{id} (client retries 429/503/504)
        self.retry_after_s = 1
        self.create_limit: CreateLimit | None = None  # e.g. CreateLimit(5, 60.0): an account's creates per window
        self.refuse_prompts_containing: Any = []
        self.refuse_first_n = 0
        self.fail_next_predictions: Any = []  # error texts, one per created prediction, which ends "failed"
        self.judge_script: list[str] = []  # judge models: the next answers' kinds (_judge_answers.KINDS)
        self.upload_latency_s = 0.0  # each POST /v1/files is held this long before it is stored
        self.output_ttl_s: Any = None
        self.crash_after_create: Any = 0  # int countdown (True == 1)
        self.output_scale = output_scale
        self.output_mode = output_mode  # "url" or "data"
        self.max_sync_wait_s = max_sync_wait_s
        self.sync_timeout_status = "starting"
        self.strict_inputs = strict_inputs
        # Counters and state.
        self.created_predictions: list[dict] = []
        self.created_trainings: list[dict] = []
        self.cancelled: set[str] = set()
        self.jobs: dict[str, _Job] = {}
        self.files: dict[str, dict] = {}
        self.uploads: list[dict] = []  # every stored file upload: {"id", "name", "sha256", "size"}
        self.deliveries: dict[str, tuple[bytes, str, str, float]] = {}  # path -> (bytes, ctype, model, t)
        self.models: dict[str, _Model] = {}
        self.version_specs: dict[str, dict] = {}  # version id -> input/output spec
        for ref, spec in REPLICATE_MODEL_SCHEMAS.items():
            owner, name = ref.split("/")
            model = _Model(owner, name, spec)
            model.versions.append(self._version_json(version_id_for(ref), spec, 0.0))
            self.version_specs[version_id_for(ref)] = spec
            self.models[ref] = model

    # -- public helpers -------------------------------------------------------------------
    def client_env(self) -> dict[str, str]:
        env = {"REPLICATE_API_TOKEN": self.api_token, "REPLICATE_BASE_URL": self.url,
               "REPLICATE_POLL_INTERVAL": "0.05"}
        if self.tls:
            env["SSL_CERT_FILE"] = self.ca_cert_file
        return env

    def client(self, **kwargs: Any):
        import replicate  # only the selftests and callers need the client installed
        client = replicate.Client(api_token=self.api_token, base_url=self.url, **kwargs)
        client.poll_interval = 0.05  # the default 0.5 s makes fake-backed tests needlessly slow
        return client

    def patch_client(self, monkeypatch: Any) -> None:
        """Point the module-level client (replicate.run, replicate.predictions, ...) here.

        replicate.default_client caches its httpx client, base URL and token on first use,
        so a second fake in the same process needs this reset, not just the env vars.
        """
        import replicate
        for key, value in self.client_env().items():
            monkeypatch.setenv(key, value)
        for attr in ("_Client__client", "_Client__async_client"):
            monkeypatch.setattr(replicate.default_client, attr, None)
        monkeypatch.setattr(replicate.default_client, "poll_interval", 0.05)

    def version_id(self, model: str) -> str:
        return self.models[model].versions[-1]["id"]

    def ref(self, model: str) -> str:
        """`owner/name:version` for the latest version, the form community models need."""
        return f"{model}:{self.version_id(model)}"

    def expire_outputs(self) -> None:
        """Make every delivery URL handed out so far 404, as after Replicate's 1-hour cleanup."""
        with self.lock:
            self.deliveries.clear()

    def job(self, job_id: str) -> _Job:
        with self.lock:
            return self._advance(self.jobs[job_id])

    # -- routing ----------------------------------------------------------------------------
    def handle(self, req: RecordedRequest) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if parts[:1] == ["delivery"]:
            return self._delivery(req.path)
        if parts[:1] != ["v1"]:
            return not_found()
        if req.header("Authorization") != f"Bearer {self.api_token}":
            return unauthenticated()
        p, m, n = parts[1:], req.method, len(parts) - 1
        body = req.json if isinstance(req.json, dict) else {}
        if p[:1] == ["predictions"]:
            if m == "POST" and n == 1:
                return self._create_prediction_by_version(req, body)
            if m == "GET" and n == 1:
                return self._list("prediction")
            if m == "GET" and n == 2:
                return self._get_job(p[1], "prediction")
            if m == "POST" and n == 3 and p[2] == "cancel":
                return self._cancel(p[1], "prediction")
        if p[:1] == ["trainings"]:
            if m == "GET" and n == 1:
                return self._list("training")
            if m == "GET" and n == 2:
                return self._get_job(p[1], "training")
            if m == "POST" and n == 3 and p[2] == "cancel":
                return self._cancel(p[1], "training")
        if p[:1] == ["models"]:
            if m == "POST" and n == 1:
                return self._create_model(body)
            ref = "/".join(p[1:3])
            if m == "GET" and n == 3:
                return self._get_model(ref)
            if m == "POST" and n == 4 and p[3] == "predictions":
                return self._create_prediction_by_model(req, ref, body)
            if m == "GET" and n == 4 and p[3] == "versions":
                model = self.models.get(ref)
                return json_response(_page(list(reversed(model.versions)))) if model else not_found()
            if m == "GET" and n == 5 and p[3] == "versions":
                return self._get_version(ref, p[4])
            if m == "POST" and n == 6 and p[3] == "versions" and p[5] == "trainings":
                return self._create_training(ref, p[4], body)
        if p[:1] == ["files"]:
            return self._files(req, p)
        if p == ["account"] and m == "GET":
            return json_response({"type": "user", "username": self.username, "name": self.username,
                                  "github_url": None})
        return not_found()

    # -- models -----------------------------------------------------------------------------
    def _model_json(self, model: _Model) -> dict:
        ref = f"{model.owner}/{model.name}"
        runs = sum(1 for j in self.jobs.values() if j.model == ref)
        return {"url": f"https://replicate.com/{ref}", "owner": model.owner, "name": model.name,
                "description": model.description, "visibility": model.visibility, "github_url": None,
                "paper_url": None, "license_url": None, "run_count": runs, "cover_image_url": None,
                "default_example": None, "latest_version": model.versions[-1] if model.versions else None}

    def _get_model(self, ref: str) -> Response:
        with self.lock:
            model = self.models.get(ref)
            return json_response(self._model_json(model)) if model else not_found()

    def _get_version(self, ref: str, vid: str) -> Response:
        model = self.models.get(ref)
        version = next((v for v in model.versions if v["id"] == vid), None) if model else None
        return json_response(version) if version else not_found()

    def _create_model(self, body: dict) -> Response:
        missing = [k for k in ("owner", "name", "visibility", "hardware") if not body.get(k)]
        if missing:
            return http_error(400, "Bad Request", f"Missing required fields: {', '.join(missing)}")
        ref = f"{body['owner']}/{body['name']}"
        with self.lock:
            if ref in self.models:
                return http_error(409, "Conflict", "A model with that name already exists.")
            model = _Model(body["owner"], body["name"], None, visibility=body["visibility"],
                           description=body.get("description"), hardware=body["hardware"])
            self.models[ref] = model
            return json_response(self._model_json(model), 201)

    # -- creation ---------------------------------------------------------------------------
    def _create_prediction_by_model(self, req: RecordedRequest, ref: str, body: dict) -> Response:
        model = self.models.get(ref)
        if model is None or model.spec is None or not model.spec["official"] or model.spec["kind"] != "prediction":
            return not_found(f"{ref} is not an official model here: run it by version (owner/name:version).")
        return self._create_prediction(req, ref, model.versions[-1]["id"], model.spec, body)

    def _create_prediction_by_version(self, req: RecordedRequest, body: dict) -> Response:
        wanted = str(body.get("version", "")).split(":")[-1]
        for ref, model in self.models.items():
            for version in model.versions:
                if version["id"] == wanted:
                    spec = self.version_specs.get(wanted)
                    if spec and spec["kind"] == "prediction":
                        return self._create_prediction(req, ref, wanted, spec, body)
        return http_error(422, "Invalid version or not permitted",
                          "The specified version does not exist (or perhaps you don't have permission to use it?)")

    def _precheck(self, ref: str, spec: dict, inp: Any) -> Response | None:
        wait = self.create_limit.retry_after() if self.create_limit is not None else None
        if wait is not None:
            return throttled(wait)
        code = pop_knob(self, "fail_next_creates", ref)
        if code is not None:
            return throttled(self.retry_after_s) if code == 429 else http_error(code, "Injected failure",
                                                                             f"Injected HTTP {code}")
        issues = validate(spec["input"], inp if isinstance(inp, dict) else {}, strict=self.strict_inputs)
        cap = spec.get("max_safety_tolerance_with_image")
        if cap is not None and isinstance(inp, dict) and inp.get("input_image") and \
                isinstance(inp.get("safety_tolerance"), int) and inp["safety_tolerance"] > cap:
            issues.append(Issue("maximum", ("safety_tolerance",), inp["safety_tolerance"], cap))
        return json_response(format_validation_error(issues), 422) if issues else None

    def _create_prediction(self, req: RecordedRequest, ref: str, vid: str, spec: dict, body: dict) -> Response:
        inp = body.get("input", {})
        problem = self._precheck(ref, spec, inp)
        if problem:
            return problem
        prompt = str(inp.get("prompt", "")).lower()
        with self.lock:
            judge_kind = self.judge_script.pop(0) if spec.get("judge") is not None and self.judge_script else "ok"
            refused = judge_kind == "refusal" or take_count(self, "refuse_first_n") or any(
                s.lower() in prompt for s in per_key(self.refuse_prompts_containing, ref, []) or [])
            job = _Job(random_id(), "prediction", ref, vid, spec, inp, time.monotonic(),
                       float(per_key(self.latency_s, ref, 0.0) or 0.0), refused=refused,
                       fail_with=None if refused else (lora_input_error(spec, inp, self.url)
                                                       or pop_knob(self, "fail_next_predictions", ref)),
                       webhook=body.get("webhook"), judge_kind=judge_kind)
            self.jobs[job.id] = job
            self.created_predictions.append({"id": job.id, "model": ref, "version": vid, "input": inp})
            crash = take_count(self, "crash_after_create")
        if crash:
            raise DropConnection()
        return self._respond_created(req, job)

    def _create_training(self, ref: str, vid: str, body: dict) -> Response:
        model = self.models.get(ref)
        if model is None or model.spec is None or model.spec["kind"] != "training":
            return not_found()
        if not any(v["id"] == vid for v in model.versions):
            return not_found("Version not found.")
        dest = body.get("destination") or ""
        if dest not in self.models or self.models[dest].spec is not None:
            return not_found("The specified training destination does not exist.")
        inp = body.get("input", {})
        problem = self._precheck(ref, model.spec, inp)
        if problem:
            return problem
        with self.lock:
            job = _Job(random_id(), "training", ref, vid, model.spec, inp, time.monotonic(),
                       float(per_key(self.latency_s, ref, 0.0) or 0.0), destination=dest,
                       webhook=body.get("webhook"))
            self.jobs[job.id] = job
            self.created_trainings.append({"id": job.id, "model": ref, "version": vid, "input": inp,
                                           "destination": dest})
            return json_response(self._job_json(job, force_status="starting"), 201)

    def _respond_created(self, req: RecordedRequest, job: _Job) -> Response:
        prefer = (req.header("Prefer") or "").strip()
        if not prefer.startswith("wait"):
            with self.lock:
                return json_response(self._job_json(job, force_status="starting"), 201)
        hold = 60.0
        if "=" in prefer:
            try:
                hold = float(prefer.split("=", 1)[1])
            except ValueError:
                pass
        deadline = time.monotonic() + min(hold, self.max_sync_wait_s)
        while True:
            with self.lock:
                self._advance(job)
                if job.status in TERMINAL:
                    return json_response(self._job_json(job), 201)
            if time.monotonic() >= deadline:
                with self.lock:
                    return json_response(self._job_json(job, force_status=self.sync_timeout_status), 201)
            time.sleep(0.01)

    def _get_job(self, job_id: str, kind: str) -> Response:
        code = pop_knob(self, "fail_next_polls", "*")
        if code is not None:
            return throttled(self.retry_after_s) if code == 429 else http_error(code, "Injected failure",
                                                                             f"Injected HTTP {code}")
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.kind != kind:
                return not_found()
            return json_response(self._job_json(job))

    def _cancel(self, job_id: str, kind: str) -> Response:
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None or job.kind != kind:
                return not_found()
            self._advance(job)
            if job.status not in TERMINAL:
                job.status, job.canceled_at = "canceled", time.time()
                job.logs += "Canceled.\n"
                self.cancelled.add(job.id)
            return json_response(self._job_json(job))

    def _list(self, kind: str) -> Response:
        with self.lock:
            jobs = [self._job_json(j) for j in self.jobs.values() if j.kind == kind]
        return json_response(_page(list(reversed(jobs))))

    # -- files and deliveries ---------------------------------------------------------------
    def _files(self, req: RecordedRequest, p: list[str]) -> Response:
        if req.method == "POST" and len(p) == 1 and self.upload_latency_s:
            time.sleep(self.upload_latency_s)  # outside the lock: concurrent uploads overlap, as on the real API
        with self.lock:
            if req.method == "POST" and len(p) == 1:
                form = parse_multipart(req.header("Content-Type") or "", req.body)
                if "content" not in form:
                    return http_error(400, "Bad Request", "Missing multipart field 'content'.")
                filename, ctype, data = form["content"]
                meta = form.get("metadata")
                file_id = random_id()
                now = time.time()
                entry = {"id": file_id, "name": filename or "file", "content_type": ctype, "size": len(data),
                         "etag": hashlib.md5(data).hexdigest(),
                         "checksums": {"sha256": hashlib.sha256(data).hexdigest(),
                                       "md5": hashlib.md5(data).hexdigest()},
                         "metadata": json.loads(meta[2]) if meta else {},
                         "created_at": iso(now), "expires_at": iso(now + 86400),
                         "urls": {"get": f"{self.url}/v1/files/{file_id}"}, "_data": data}
                self.files[file_id] = entry
                self.uploads.append({"id": file_id, "name": entry["name"], "sha256": entry["checksums"]["sha256"],
                                     "size": len(data)})
                return json_response(_public(entry), 201)
            if req.method == "GET" and len(p) == 1:
                return json_response(_page([_public(f) for f in reversed(list(self.files.values()))]))
            entry = self.files.get(p[1]) if len(p) > 1 else None
            if entry is None:
                return not_found()
            if req.method == "GET" and len(p) == 2:
                return json_response(_public(entry))
            if req.method == "GET" and len(p) == 3 and p[2] == "download":
                return Response(200, entry["_data"], content_type=entry["content_type"])
            if req.method == "DELETE" and len(p) == 2:
                del self.files[p[1]]
                return Response(204, b"")
        return not_found()

    def _delivery(self, path: str) -> Response:
        with self.lock:
            entry = self.deliveries.get(path)
            if entry is None:
                return Response(404, b"Not Found", content_type="text/plain")
            data, ctype, model, t = entry
            ttl = per_key(self.output_ttl_s, model, None)
            if ttl is not None and time.monotonic() - t > float(ttl):
                return Response(404, b"Not Found", content_type="text/plain")
        return Response(200, data, content_type=ctype)
