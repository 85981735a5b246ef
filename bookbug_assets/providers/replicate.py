"""Replicate: every model of the plan behind `ImageProvider`, through the `replicate` client.

Jobs are predictions created without `Prefer: wait`, so `submit` returns at once with an id the
caller journals; `wait` polls it. The client never retries a POST, and neither do we: the create
is exactly one request and its failures come back typed, for generation.py to retry with backoff.
Outputs are downloaded the moment the prediction succeeds because Replicate deletes them after
about an hour.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import threading
import time
from datetime import datetime
from typing import Any, Callable

import httpx
import replicate
from replicate.exceptions import ReplicateError
from replicate.resource import pydantic as _client_pydantic

from bookbug_assets.providers.base import (
    ProviderSettings,
    ConfigurationError, ImageProvider, ImageRequest, JobFailed, JobGone, JobOutput, ModelCapabilities,
    ProviderError, SafetyRefusal, collect_until,
)
from bookbug_assets.providers.uploads import ReferenceUploads
from bookbug_assets.providers.replicate_models import (
    REPLICATE_MODELS, Redactor, ReplicateModel, fit_size, image_size_of, megapixels, nearest_ratio, ordered_refs,
    sniff_mime, stitch, with_trigger,
)

log = logging.getLogger(__name__)
ReplicateValidationError = _client_pydantic.ValidationError  # the client's models are pydantic v1

# Failure texts of the safety checkers (cog-flux, kontext, lucataco, Gemini E005, BFL moderation).
SAFETY_TEXT = re.compile(r"nsfw|flagged as sensitive|\(E005\)|content polic|content_policy|moderat|safety",
                         re.IGNORECASE)
# A failed prediction is one paid run (status "failed"; "canceled"/"aborted" are JobGone). Only where Replicate itself
# says the run was cut short is a new one likely to fare better: "Prediction interrupted; please retry (code: PA)"
# (a preempted worker) and E6716, a prediction that timed out before it started
# (https://replicate.com/docs/reference/error-codes, https://replicate.com/docs/topics/predictions/lifecycle).
# Every other failure is generic: cog's "Prediction failed for an unknown reason. It might have run out of memory?",
# "CUDA out of memory", E1000 (unknown), E1001 (OOM killed: "reduce the size of your input"), a model's exception.
# The same input may fail the same way again, so it is worth one more run, not five.
TRANSIENT_FAILURE = re.compile(r"interrupted|preempt|please retry|\bE6716\b|timeout starting prediction",
                               re.IGNORECASE)
_THROTTLE_HINT = re.compile(r"~?(\d+(?:\.\d+)?)\s*s\b")
_VERSION_REF = re.compile(r"^([\w.-]+)/([\w.-]+):([0-9a-f]{16,})$")


class _BoundedClient(replicate.Client):
    """replicate.Client whose every request has a time limit.

    replicate 1.0.7 creates predictions and uploads files with `timeout=None`, which httpx reads as "no limit
    at all", not "the client's default": a create that stalls after connecting would hang its page thread
    forever. A timed-out create is a transient error whose job `find_job` then looks for.
    """

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if kwargs.get("timeout", httpx.USE_CLIENT_DEFAULT) is None:
            kwargs["timeout"] = self._timeout
        return super()._request(method, path, **kwargs)


class ReplicateProvider(ImageProvider):
    name = "replicate"

    @classmethod
    def from_settings(cls, settings: ProviderSettings, store=None) -> ReplicateProvider:
        if not settings.replicate_api_token:
            raise ConfigurationError("replicate was chosen but REPLICATE_API_TOKEN is not set")
        return cls(api_token=settings.replicate_api_token,
                   base_url=settings.replicate_base_url or os.environ.get("REPLICATE_BASE_URL"),
                   poll_interval_s=settings.poll_interval_s, store=store)

    def __init__(self, api_token: str, base_url: str | None = None, poll_interval_s: float = 1.0,
                 timeout_s: float = 30.0, store=None):
        if not api_token:
            raise ConfigurationError("replicate needs an API token (REPLICATE_API_TOKEN)")
        self.poll_interval_s = poll_interval_s
        self._pending: dict[str, tuple[dict, float]] = {}  # request key -> (input sent, wall time sent)
        self._clean = Redactor(api_token)
        self._account = hashlib.sha256(f"{base_url or ''}|{api_token}".encode()).hexdigest()[:12]
        self._local = threading.local()
        self._lock = threading.Lock()
        self._versions: dict[str, str] = {}
        self._timeout_s = timeout_s
        self._uploads = ReferenceUploads(self.rate_account(), store)  # store: remembered across runs
        # base_url=None lets the client read REPLICATE_BASE_URL itself, as it always has.
        self._client = _BoundedClient(
            api_token=api_token, base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=5.0),
            event_hooks={"response": [self._remember_retry_after]})
        self._client._client  # noqa: B018 - build the httpx client now, not racily in 12 page threads

    def rate_account(self) -> str:
        return f"replicate:{self._account}"  # one token's create limit (a digest: the token never leaves here)

    def __repr__(self) -> str:  # the token must not show up in a debugger or a log line
        return f"ReplicateProvider(poll_interval_s={self.poll_interval_s})"

    # --- capabilities --------------------------------------------------------------------------

    def models(self) -> list[str]:
        return list(REPLICATE_MODELS)

    def _spec(self, model: str) -> ReplicateModel:
        try:
            return REPLICATE_MODELS[model]
        except KeyError:
            raise ConfigurationError(f"replicate does not serve {model!r}; choose one of "
                                     f"{', '.join(REPLICATE_MODELS)}") from None

    def capabilities(self, model: str) -> ModelCapabilities:
        return self._spec(model).caps

    def cost_usd(self, request: ImageRequest) -> float:
        """The price of this request's image, where it depends on size (4K, per-megapixel models)."""
        spec = self._spec(request.model)
        if spec.price_per_mp is not None:
            w, h = fit_size(request.width, request.height, *spec.size_range)
            return round(spec.price_per_mp * megapixels(w, h), 4)
        if spec.price_4k is not None and max(request.width, request.height) > 2048:
            return spec.price_4k
        return spec.caps.price_usd

    # --- jobs ----------------------------------------------------------------------------------

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        spec = self._spec(request.model)
        self.validate(request)
        refs = ordered_refs(request, reference_bytes, spec.caps.max_references, self.name)
        target = request.model
        if not refs and spec.t2i:
            target, spec = spec.t2i, self._spec(spec.t2i)
        inp = self._build_input(spec, request, refs)
        create: dict[str, Any] = {"input": inp}
        if spec.by_version:
            create["version"] = self._version(target)
        else:
            create["model"] = target
        # Kept until the create answers: if the reply is lost, find_job looks for this exact input.
        self._pending[request.cache_key()] = (inp, time.time())
        prediction = self._call(lambda: self._client.predictions.create(**create), "create prediction")
        self._pending.pop(request.cache_key(), None)
        log.debug("replicate prediction %s created for %s", prediction.id, request.model)
        return prediction.id

    def find_job(self, request: ImageRequest) -> str | None:
        """The newest prediction with exactly the input whose create lost its reply, if Replicate has one.

        Only predictions created since that create was sent (less a minute for clock skew) count: an older one
        with the same input is another request's image, perhaps one a reviewer rejected.
        """
        pending = self._pending.get(request.cache_key())
        if pending is None:
            return None
        inp, sent_at = pending
        page = self._call(lambda: self._client.predictions.list(), "list predictions")
        for prediction in page.results:  # newest first
            if (prediction.input == inp and prediction.status not in ("canceled", "aborted")
                    and _created_since(prediction.created_at, sent_at - 60)):
                self._pending.pop(request.cache_key(), None)
                return prediction.id
        return None

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        prediction, collect_by = self.poll_until_succeeded(job_id, deadline_s, lambda status: ProviderError(
            self.name, f"prediction {job_id} still {status} after {deadline_s:.0f}s; canceled", transient=True))
        return collect_until(lambda: self._collect(prediction), collect_by, self.poll_interval_s, self.name, job_id,
                             lambda s: self.pause(job_id, s))

    def poll_until_succeeded(self, job_id: str, seconds: float, timed_out: Callable[[str], ProviderError], *,
                             poll_s: float | None = None, what: str = "prediction") -> tuple[dict[str, Any], float]:
        """(The prediction once it succeeded, the monotonic time to fetch its output by): the image wait's and the
        judge's poll loop (quality/judge_replicate.py). Past `seconds` it cancels, then returns one that succeeded since
        the last poll (a cancel then does nothing; it is paid), or raises `timed_out(the last status)`."""
        poll_s = self.poll_interval_s if poll_s is None else poll_s
        end, status = time.monotonic() + seconds, "unknown"
        while True:
            try:
                prediction = self._get_prediction(job_id)
            except ProviderError as exc:  # a failed poll says nothing of the job; polling again is free, a job is not
                if isinstance(exc, JobGone) or not exc.transient:
                    raise
                log.info("replicate poll of %s failed (%s); polling again", job_id, exc)
                prediction = None
            if prediction is not None:
                status = prediction.get("status")
                if status == "succeeded":
                    return prediction, end
                if status == "failed":
                    raise _classify_failure(self._clean(prediction.get("error") or "prediction failed"))
                if status in ("canceled", "aborted"):
                    # Canceled by a terminated run, or aborted before starting: nothing to collect.
                    raise JobGone(self.name, f"{what} {job_id} was {status}")
            remaining = end - time.monotonic()
            if remaining <= 0:
                self.cancel(job_id)
                try:
                    last = self._get_prediction(job_id)
                except ProviderError:
                    last = None
                if last is not None and last.get("status") == "succeeded":
                    return last, time.monotonic() + poll_s * 3
                raise timed_out(status)
            self.pause(job_id, min(poll_s, remaining))

    def cancel(self, job_id: str) -> None:
        try:  # raw JSON: the client's model cannot parse every status a cancel may answer with
            self._call(lambda: self._client._request("POST", f"/v1/predictions/{job_id}/cancel"),
                       "cancel prediction")
        except ProviderError as exc:  # best effort: a finished or unknown job needs no cancel
            log.info("replicate cancel of %s: %s", job_id, exc)

    # --- inputs --------------------------------------------------------------------------------

    def _build_input(self, spec: ReplicateModel, request: ImageRequest, refs: list[bytes]) -> dict[str, Any]:
        prompt = request.prompt
        if request.lora is not None:
            prompt = with_trigger(prompt, request.lora.trigger_word)
        inp: dict[str, Any] = {"prompt": prompt, **spec.fixed}
        if spec.seed:
            inp["seed"] = request.seed
        if spec.negative_prompt and request.negative_prompt:
            inp["negative_prompt"] = request.negative_prompt
        w, h = request.width, request.height
        if spec.size == "ratio":
            inp["aspect_ratio"] = nearest_ratio(w, h, spec.ratios)
            if spec.price_4k is not None:  # nano-banana: resolution tier from the longest side
                side = max(w, h)
                inp["resolution"] = "1K" if side <= 1024 else "2K" if side <= 2048 else "4K"
        elif spec.size == "custom":
            inp["aspect_ratio"] = "custom"
            inp["width"], inp["height"] = fit_size(w, h, *spec.size_range)
        else:  # SDXL is trained around one megapixel; larger sizes repeat subjects
            inp["width"], inp["height"] = fit_size(w, h, *spec.size_range, multiple=8, max_pixels=1024 * 1024)
        if refs:
            if spec.refs == "list":
                inp[spec.ref_field] = [self._upload(b) for b in refs]
            elif spec.refs == "single":
                inp[spec.ref_field] = self._upload(stitch(refs))
            elif spec.refs == "pair":
                inp["input_image_1"] = self._upload(refs[0])
                inp["input_image_2"] = self._upload(stitch(refs[1:])) if len(refs) > 1 else inp["input_image_1"]
        if request.lora is not None:
            inp.update(self._lora_input(spec, request))
        return inp

    def _lora_input(self, spec: ReplicateModel, request: ImageRequest) -> dict[str, Any]:
        lora = request.lora
        assert lora is not None
        if not lora.remote_ref:
            raise ConfigurationError(f"LoRA {lora.name!r} has no remote reference a cloud model can load; "
                                     "train it on Replicate/fal or name a Hugging Face path or URL")
        ref = spec.lora_ref(lora.remote_ref)
        version = _VERSION_REF.match(ref)
        if version and spec.lora_field == "lora_weights":
            # flux-dev-lora loads Replicate weights as owner/model/version.
            ref = f"{version.group(1)}/{version.group(2)}/{version.group(3)}"
        elif version:
            raise ConfigurationError(
                f"{request.model} cannot load the Replicate version {ref!r} (hf_lora takes a Hugging Face "
                "path or a weights URL); use black-forest-labs/flux-dev-lora for Replicate-trained LoRAs")
        lo, hi = spec.lora_scale_range
        return {spec.lora_field: ref, "lora_scale": min(hi, max(lo, lora.scale))}

    def _upload(self, data: bytes) -> str:
        """The files API url of these bytes, uploaded once per book (providers/uploads.py)."""
        return self._uploads.url(data, self._upload_once)

    def _upload_once(self, data: bytes) -> tuple[str, str | None]:
        mime = sniff_mime(data)
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(mime, "bin")
        name = f"ref-{hashlib.sha256(data).hexdigest()[:16]}.{ext}"
        uploaded = self._call(lambda: self._client.files.create(io.BytesIO(data), filename=name, content_type=mime),
                              "upload reference")
        return uploaded.urls["get"], uploaded.expires_at

    def _version(self, model: str) -> str:
        """Community models run by version id; the latest is looked up once per process."""
        with self._lock:
            if model in self._versions:
                return self._versions[model]
        found = self._call(lambda: self._client.models.get(model), f"look up {model}")
        if found.latest_version is None:
            raise ProviderError(self.name, f"{model} has no published version")
        with self._lock:
            self._versions[model] = found.latest_version.id
        return found.latest_version.id

    # --- outputs -------------------------------------------------------------------------------

    def _get_prediction(self, job_id: str) -> dict[str, Any]:
        # Raw JSON rather than the client's Prediction model: replicate 1.0.7 cannot parse the
        # "aborted" status a Cancel-After deadline produces.
        response = self._call(lambda: self._client._request("GET", f"/v1/predictions/{job_id}"),
                              f"get prediction {job_id}", not_found=JobGone)
        return response.json()

    def _collect(self, prediction: dict[str, Any]) -> JobOutput:
        output = prediction.get("output")
        urls = [output] if isinstance(output, str) else [u for u in (output or []) if isinstance(u, str)]
        if isinstance(output, list) and not urls:
            # cog-flux drops NSFW-flagged images from the list instead of failing the prediction.
            raise SafetyRefusal(self.name, "every output image was removed by the safety checker")
        if not urls:
            raise ProviderError(self.name, f"prediction {prediction['id']} succeeded without an output",
                                transient=True)
        url = urls[0]
        image = self._download(url, prediction["id"])
        size = image_size_of(image)
        extra: dict[str, Any] = {"prediction_id": prediction["id"], "model": prediction.get("model"),
                                 "metrics": prediction.get("metrics") or {}}
        if size:
            extra["width"], extra["height"] = size
        seed = (prediction.get("input") or {}).get("seed")
        return JobOutput(image=image, mime=sniff_mime(image), remote_url=None if url.startswith("data:") else url,
                         version=prediction.get("version") or prediction.get("model"),
                         seed=seed if isinstance(seed, int) else None, extra=extra)

    def _download(self, url: str, job_id: str) -> bytes:
        if url.startswith("data:"):
            return base64.b64decode(url.partition(",")[2])
        try:
            # A plain client: the API client would send the token to whatever host the output names.
            with httpx.Client(follow_redirects=True, timeout=self._timeout_s) as plain:
                response = plain.get(url)
                response.raise_for_status()
                return response.content
        except httpx.HTTPStatusError as exc:
            status = exc.response.status_code
            if status in (403, 404, 410):
                raise JobGone(self.name, f"output of prediction {job_id} has expired ({status})") from None
            raise ProviderError(self.name, f"downloading output of {job_id}: HTTP {status}",
                                transient=status == 429 or status >= 500, status=status) from None
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, f"downloading output of {job_id}: {self._clean(exc)}",
                                transient=True) from None

    # --- errors --------------------------------------------------------------------------------

    def _remember_retry_after(self, response: httpx.Response) -> None:
        self._local.retry_after = response.headers.get("retry-after")

    def _call(self, fn: Callable[[], Any], what: str, not_found: type[ProviderError] | None = None) -> Any:
        """Run one client call; turn whatever it raises into a typed, token-free ProviderError."""
        self._local.retry_after = None
        try:
            return fn()
        except ReplicateError as exc:
            status = exc.status or 0
            detail = self._clean(exc.detail or exc.title or "")
            if not_found is not None and status == 404:
                raise not_found(self.name, f"{what}: not found ({detail})", status=404) from None
            retry_after = _retry_after(self._local.retry_after, detail) if status == 429 else None
            raise ProviderError(self.name, f"{what}: HTTP {status}: {detail}",
                                transient=status in (408, 409, 429) or status >= 500, status=status,
                                retry_after_s=retry_after) from None
        except httpx.TimeoutException:
            raise ProviderError(self.name, f"{what}: timed out", transient=True) from None
        except httpx.HTTPError as exc:
            raise ProviderError(self.name, f"{what}: {type(exc).__name__}: {self._clean(exc)}",
                                transient=True) from None
        except ReplicateValidationError as exc:
            # An answer the client cannot parse; not transient, since a create may have succeeded.
            raise ProviderError(self.name, f"{what}: unexpected response: {self._clean(exc)}") from None


def _retry_after(header: str | None, detail: str) -> float | None:
    if header:
        try:
            return float(header)
        except ValueError:
            pass
    hint = _THROTTLE_HINT.search(detail)  # "Your rate limit resets in ~30s."
    return float(hint.group(1)) if hint else None


def _created_since(created_at: str | None, since: float) -> bool:
    try:
        return datetime.fromisoformat(str(created_at).replace("Z", "+00:00")).timestamp() >= since
    except ValueError:
        return False  # no usable timestamp: not provably this create's job


def _classify_failure(error: str) -> ProviderError:
    """A prediction whose status is "failed", by its `error` text (see TRANSIENT_FAILURE)."""
    if SAFETY_TEXT.search(error):
        return SafetyRefusal("replicate", error)
    if TRANSIENT_FAILURE.search(error):
        return JobFailed("replicate", f"prediction failed: {error}", transient=True)
    return JobFailed("replicate", f"prediction failed: {error}", retries=1)
