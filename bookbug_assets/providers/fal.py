"""fal.ai: the plan's fal endpoints behind `ImageProvider`, through `fal_client`'s queue API.

A job id is "<endpoint>|<request_id>": `cancel` gets no request, and fal's request URLs are built
from the endpoint's app id. Status, result and cancel go through the client's request handle.
The submit is the exception: fal_client retries a POST on 429 and on transport errors, which can
queue (and bill) the same picture twice, so the one create request is sent on the client's own
authenticated connection and its errors come back typed for generation.py to retry.

Base URLs: fal_client reads its hosts once at import and hard-codes https. `base_url` (queue, and
sync runs under /run) and the optional `rest_url` (storage API; defaults to base_url) rebase every
request this provider's client makes, so a gateway or a local fake works without touching the
library's globals. Uploads then use fal's storage API (initiate + PUT): the CDN upload path opens
connections of its own that cannot be rebased per client.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from typing import Any, Callable

import fal_client
import fal_client.client as fal_internals
import httpx
from fal_client import FalClientHTTPError
from fal_client.client import Completed

from bookbug_assets.providers.base import (
    ConfigurationError, ImageProvider, ImageRequest, JobFailed, JobGone, JobOutput, ModelCapabilities,
    OutputNotCollected, ProviderError, ProviderSettings, ResultUnobtainable, SafetyRefusal, collect_until,
)
from bookbug_assets.providers.fal_errors import CONTENT_POLICY, describe, job_failure
from bookbug_assets.providers.fal_models import FAL_MODELS, FalModel
from bookbug_assets.providers.uploads import ReferenceUploads
from bookbug_assets.providers.replicate_models import (
    Redactor, fit_size, image_size_of, nearest_ratio, ordered_refs, sniff_mime, stitch, with_trigger,
)

log = logging.getLogger(__name__)

_SEP = "|"


class _Rebase(httpx.BaseTransport):
    """Sends requests meant for fal's hosts to configured base URLs instead."""

    def __init__(self, routes: Callable[[], list[tuple[str, str]]]):
        self._routes = routes
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        for old, new in self._routes():
            if url.startswith(old):
                request.url = httpx.URL(new + url[len(old):])
                request.headers["Host"] = request.url.netloc.decode("ascii")
                break
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


class FalProvider(ImageProvider):
    name = "fal"

    @classmethod
    def from_settings(cls, settings: ProviderSettings, store=None) -> FalProvider:
        if not settings.fal_key:
            raise ConfigurationError("fal was chosen but FAL_KEY is not set")
        return cls(key=settings.fal_key, base_url=settings.fal_base_url, poll_interval_s=settings.poll_interval_s,
                   upload_references=settings.fal_upload_references)

    def __init__(self, key: str, base_url: str | None = None, poll_interval_s: float = 1.0, *,
                 rest_url: str | None = None, upload_references: bool = True,
                 timeout_s: float = 60.0):
        if not key:
            raise ConfigurationError("fal needs an API key (FAL_KEY)")
        self.poll_interval_s = poll_interval_s
        self.upload_references = upload_references
        self._clean = Redactor(key)
        self._account = hashlib.sha256(f"{base_url or ''}|{key}".encode()).hexdigest()[:12]
        self._lock = threading.Lock()
        self._uploads = ReferenceUploads(self.rate_account())
        self._timeout = httpx.Timeout(timeout_s, connect=10.0)
        self._fal = fal_client.SyncClient(key=key, default_timeout=timeout_s)
        self._rebased = bool(base_url or rest_url)
        if self._rebased:
            base = (base_url or "").rstrip("/")
            rest = (rest_url or base).rstrip("/")

            def routes() -> list[tuple[str, str]]:  # read at call time: the constants may be patched
                pairs = [(fal_internals.QUEUE_URL_FORMAT, base, "/"), (fal_internals.RUN_URL_FORMAT, base, "/run/"),
                         (fal_internals.REST_URL + "/", rest, "/")]
                return [(old, target + suffix) for old, target, suffix in pairs if target]

            # fal_client builds its httpx client lazily in a cached property; seeding that property
            # gives this instance its own transport without touching the module's globals.
            self._fal.__dict__["_client"] = httpx.Client(
                transport=_Rebase(routes), headers={"Authorization": f"Key {key}",
                                                    "User-Agent": fal_internals.USER_AGENT},
                timeout=self._timeout, follow_redirects=True)
        self._fal._client  # noqa: B018 - build it now, not racily in a dozen page threads
        self._download_client: httpx.Client | None = None

    def rate_account(self) -> str:
        return f"fal:{self._account}"  # one key's create limit (a digest: the key itself never leaves here)

    def __repr__(self) -> str:
        return f"FalProvider(poll_interval_s={self.poll_interval_s}, rebased={self._rebased})"

    # --- capabilities --------------------------------------------------------------------------

    def models(self) -> list[str]:
        return list(FAL_MODELS)

    def _spec(self, model: str) -> FalModel:
        try:
            return FAL_MODELS[model]
        except KeyError:
            raise ConfigurationError(f"fal does not serve {model!r}; choose one of {', '.join(FAL_MODELS)}") from None

    def capabilities(self, model: str) -> ModelCapabilities:
        return self._spec(model).caps

    def cost_usd(self, request: ImageRequest) -> float:
        """The price of this request's image where it depends on size (per-megapixel endpoints, 4K) and, on FLUX.2
        edit endpoints, on the references it sends (each billed as input megapixels)."""
        spec = self._spec(request.model)
        refs = min(len(request.references), spec.caps.max_references) if spec.refs != "none" else 0
        inputs = (1 if spec.refs == "single" else refs) if refs else 0
        return spec.cost_usd(request.width, request.height, inputs)

    # --- jobs ----------------------------------------------------------------------------------

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        spec = self._spec(request.model)
        self.validate(request)
        refs = ordered_refs(request, reference_bytes, spec.caps.max_references, self.name)
        if not refs and spec.t2i:
            spec = self._spec(spec.t2i)
        endpoint = spec.edit_endpoint if refs and spec.edit_endpoint else spec.caps.model
        arguments = self._build_input(spec, request, refs)
        response = self._call(lambda: self._post_once(endpoint, arguments), f"submit to {endpoint}")
        request_id = response.json()["request_id"]
        log.debug("fal request %s queued on %s", request_id, endpoint)
        return f"{endpoint}{_SEP}{request_id}"

    def _post_once(self, endpoint: str, arguments: dict[str, Any]) -> httpx.Response:
        response = self._fal._client.post(fal_internals.QUEUE_URL_FORMAT + endpoint, json=arguments,
                                          timeout=self._timeout)
        fal_internals._raise_for_status(response)
        return response

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        endpoint, request_id = _split(job_id)
        try:
            result, collect_by = self.poll_until_result(job_id, deadline_s, lambda state: ProviderError(
                self.name, f"request {request_id} still {state} after {deadline_s:.0f}s; cancelled", transient=True))
        except OutputNotCollected as exc:
            # fal keeps a result as long as the request: a result URL that keeps failing after COMPLETED will not
            # recover by resuming it in every later run for the whole deadline.
            raise ResultUnobtainable(self.name, f"request {request_id} completed, but its result could not be "
                                     f"fetched: {exc.cause}; the request is paid, and a rerun creates a new one",
                                     retries=0, status=exc.status) from None
        return collect_until(lambda: self._output(result, endpoint, request_id), collect_by, self.poll_interval_s,
                             self.name, job_id, lambda s: self.pause(job_id, s))

    def poll_until_result(self, job_id: str, seconds: float, timed_out: Callable[[str], ProviderError], *,
                          poll_s: float | None = None, what: str = "request") -> tuple[Any, float]:
        """(The result of the COMPLETED request, the monotonic time to use it by): the image wait's and the judge's
        poll loop (quality/judge_fal.py). Past `seconds` it cancels, then takes a request that completed since the
        last poll (a cancel then does nothing; it is paid), or raises `timed_out(the last state)`."""
        endpoint, request_id = _split(job_id)
        handle = self._fal.get_handle(endpoint, request_id)
        poll_s = self.poll_interval_s if poll_s is None else poll_s
        end, state = time.monotonic() + seconds, "unknown"

        def status_of() -> Any:
            return self._call(lambda: handle.status(with_logs=False), f"status of {request_id}", job=True)

        while True:
            try:
                status = status_of()
            except ProviderError as exc:
                if isinstance(exc, (JobGone, SafetyRefusal)) or not exc.transient:
                    raise
                log.info("fal status of %s failed (%s); polling again", request_id, exc)  # polling is free
                status = None
            if isinstance(status, Completed):
                return self._result(handle, job_id, status, end, poll_s, what), end
            if status is not None:
                state = type(status).__name__
            remaining = end - time.monotonic()
            if remaining <= 0:
                self.cancel(job_id)
                try:
                    last = status_of()
                except ProviderError:
                    last = None
                if isinstance(last, Completed) and last.error_type != "client_cancelled":
                    collect_by = time.monotonic() + poll_s * 3
                    return self._result(handle, job_id, last, collect_by, poll_s, what), collect_by
                raise timed_out(state)
            self.pause(job_id, min(poll_s, remaining))

    def _result(self, handle: Any, job_id: str, status: Completed, end: float, poll_s: float, what: str) -> Any:
        """A COMPLETED request's result, in bounded tries with backoff (OutputNotCollected when they run out)."""
        _, request_id = _split(job_id)
        if status.error_type == "client_cancelled":
            raise JobGone(self.name, f"{what} {request_id} was cancelled")
        failed = bool(status.error or status.error_type)  # its result URL answers with the failure
        return collect_until(lambda: self._call(handle.get, f"result of {request_id}", job=True, failed=failed),
                             end, poll_s, self.name, job_id, lambda s: self.pause(job_id, s))

    def cancel(self, job_id: str) -> None:
        endpoint, request_id = _split(job_id)
        try:
            self._call(lambda: self._fal.cancel(endpoint, request_id), f"cancel {request_id}")
        except ProviderError as exc:  # best effort: a finished request cannot be cancelled
            log.info("fal cancel of %s: %s", request_id, exc)

    # --- inputs --------------------------------------------------------------------------------

    def _build_input(self, spec: FalModel, request: ImageRequest, refs: list[bytes]) -> dict[str, Any]:
        prompt = request.prompt
        if request.lora is not None:
            prompt = with_trigger(prompt, request.lora.trigger_word)
        args: dict[str, Any] = {"prompt": prompt, "seed": request.seed, **spec.fixed}
        w, h = request.width, request.height
        if spec.size == "ratio":
            args["aspect_ratio"] = nearest_ratio(w, h, spec.ratios)
        elif spec.size == "resolution_mode":
            args["resolution_mode"] = nearest_ratio(w, h, spec.ratios)
        else:
            width, height = fit_size(w, h, 256, spec.caps.max_size)
            args["image_size"] = {"width": width, "height": height}
        if spec.resolution:
            side = max(w, h)
            args["resolution"] = "1K" if side <= 1024 else "2K" if side <= 2048 else "4K"
        if refs:
            if spec.refs == "list":
                args[spec.ref_field] = [self._reference_url(b) for b in refs]
            elif spec.refs == "single":
                args[spec.ref_field] = self._reference_url(stitch(refs))
        if request.lora is not None:
            lora = request.lora
            if not lora.remote_ref or not lora.remote_ref.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"fal loads LoRAs from a URL; LoRA {lora.name!r} has {lora.remote_ref!r} (train it on fal, "
                    "or point the style at a .safetensors URL)")
            args["loras"] = [{"path": spec.lora_path(lora.remote_ref), "scale": min(4.0, max(-4.0, lora.scale))}]
        return args

    def _reference_url(self, data: bytes) -> str:
        """A URL for these bytes, uploaded once per process (providers/uploads.py), or inline when so configured."""
        mime = sniff_mime(data)
        if not self.upload_references:
            # Data URIs as inputs: https://docs.fal.ai/documentation/model-apis/fal-cdn (only URLs suit every model)
            return fal_client.encode(data, mime)
        name = f"ref-{hashlib.sha256(data).hexdigest()[:16]}.{mime.rsplit('/', 1)[-1]}"
        # No expiry is stated for fal storage URLs, so an upload is not remembered past this process.
        return self._uploads.url(data, lambda d: (self.upload(d, mime, name), None))

    def upload(self, data: bytes, content_type: str, file_name: str) -> str:
        """Put bytes on fal's storage and return a URL an endpoint can read (used by the trainer too).

        fal's CDN first (fal_client's default), then fal's storage route, which is done here rather than
        by fal_client: the client PUTs the bytes to the signed upload URL, a third-party storage host, with
        the same HTTP client that carries `Authorization: Key`, so the key would travel with them.
        """
        if not self._rebased:  # fal_client has the CDN host built in: a test server cannot stand in for it
            try:
                return self._call(lambda: self._fal.upload(data, content_type, file_name, repository="fal_v3",
                                                           fallback_repository=[]), f"upload {file_name}")
            except ProviderError as exc:
                log.warning("fal CDN upload of %s failed (%s); using fal storage", file_name, exc)
        return self._call(lambda: self._upload_via_storage(data, content_type, file_name), f"upload {file_name}")

    def _upload_via_storage(self, data: bytes, content_type: str, file_name: str) -> str:
        initiated = self._fal._client.post(fal_internals.REST_URL + "/storage/upload/initiate?storage_type=gcs",
                                           json={"file_name": file_name, "content_type": content_type},
                                           timeout=self._timeout)
        fal_internals._raise_for_status(initiated)
        target = initiated.json()
        put = self._keyless_client().put(target["upload_url"], content=data, headers={"Content-Type": content_type})
        if put.status_code >= 400:
            raise ProviderError(self.name, f"upload {file_name}: storage answered HTTP {put.status_code}",
                                transient=put.status_code == 429 or put.status_code >= 500, status=put.status_code)
        return target["file_url"]

    def _keyless_client(self) -> httpx.Client:
        """For hosts that are not fal's API (output CDN, signed storage URLs): the key must not travel there."""
        with self._lock:
            if self._download_client is None:
                self._download_client = httpx.Client(timeout=self._timeout, follow_redirects=True)
            return self._download_client

    # --- outputs -------------------------------------------------------------------------------

    def _output(self, result: dict, endpoint: str, request_id: str) -> JobOutput:
        """The image of a fetched result. (`failed` in _result: the status said the request ended in an error,
        so an HTTP error from its result is that error, not a fetch to try again; a 4xx is its outcome anyway.)"""
        if any(result.get("has_nsfw_concepts") or []):
            raise SafetyRefusal(self.name, "has_nsfw_concepts: the safety checker blanked the image")
        images = result.get("images") or []
        if not images or not images[0].get("url"):
            raise ProviderError(self.name, f"request {request_id} completed without an image", transient=True)
        url = images[0]["url"]
        image = self.download(url, request_id)
        extra: dict[str, Any] = {"request_id": request_id, "endpoint": endpoint}
        size = image_size_of(image)
        if size:
            extra["width"], extra["height"] = size
        if result.get("timings"):
            extra["timings"] = result["timings"]
        seed = result.get("seed")
        return JobOutput(image=image, mime=sniff_mime(image), remote_url=None if url.startswith("data:") else url,
                         version=endpoint, seed=seed if isinstance(seed, int) else None, extra=extra)

    def download(self, url: str, request_id: str) -> bytes:
        if url.startswith("data:"):
            return base64.b64decode(url.split(",", 1)[1])
        try:
            response = self._keyless_client().get(url)  # outputs live on fal's CDN
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, f"downloading output of {request_id}: {type(exc).__name__}",
                                transient=True) from None
        if response.status_code in (403, 404, 410):
            raise JobGone(self.name, f"output of request {request_id} has expired ({response.status_code})")
        if response.status_code >= 400:
            raise ProviderError(self.name, f"downloading output of {request_id}: HTTP {response.status_code}",
                                transient=response.status_code == 429 or response.status_code >= 500,
                                status=response.status_code)
        return response.content

    # --- errors --------------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], what: str, job: bool = False, failed: bool | None = None) -> Any:
        """Run one client call; turn whatever it raises into a typed, key-free ProviderError.

        `failed` is set only for the result of a finished request: True where its status reported an error, so
        that an HTTP error is how the request failed (JobFailed), not a fetch worth repeating.
        """
        try:
            return fn()
        except FalClientHTTPError as exc:
            raise self._http_error(exc, what, job, failed) from None
        except httpx.TimeoutException:
            raise ProviderError(self.name, f"{what}: timed out", transient=True) from None
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, f"{what}: {type(exc).__name__}: {self._clean(exc)}",
                                transient=True) from None

    def _http_error(self, exc: FalClientHTTPError, what: str, job: bool,
                    failed: bool | None = None) -> ProviderError:
        status = exc.status_code
        entries = exc.message if isinstance(exc.message, list) else []
        detail = self._clean(describe(exc.message))
        if exc.error_type == CONTENT_POLICY or any(
                isinstance(e, dict) and e.get("type") == CONTENT_POLICY for e in entries):
            return SafetyRefusal(self.name, f"{CONTENT_POLICY}: {detail}")
        if job and status == 404:
            return JobGone(self.name, f"{what}: not found", status=404)
        if job and exc.error_type == "client_cancelled":
            return JobGone(self.name, f"{what}: the request was cancelled", status=status)
        if failed is not None and (failed or 400 <= status < 500):  # a result that is the request's failure
            return job_failure(self.name, f"{what}: HTTP {status}: {detail}", status, exc, entries)
        retry_after = None
        headers = {k.lower(): v for k, v in (exc.response_headers or {}).items()}
        if status == 429 and headers.get("retry-after"):
            try:
                retry_after = float(headers["retry-after"])
            except ValueError:
                retry_after = None
        return ProviderError(self.name, f"{what}: HTTP {status}: {detail}",
                             transient=status in (408, 409, 429) or status >= 500, status=status,
                             retry_after_s=retry_after)


def _split(job_id: str) -> tuple[str, str]:
    endpoint, sep, request_id = job_id.rpartition(_SEP)
    if not sep or not endpoint:
        raise JobGone("fal", f"not a fal job id: {job_id!r}")
    return endpoint, request_id
