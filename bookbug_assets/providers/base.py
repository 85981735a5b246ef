"""The provider interface: one request shape, one result shape, declared capabilities.

Every image in bookbug_assets goes through `generation.generate_image`, which only sees this
interface. A provider is a family (preview, replicate, fal, local) that serves several models;
each model declares what it accepts so the page renderer can adapt (stitch references into one
image for a single-reference model, drop to prompt + LoRA where no reference is taken).

Jobs are split into `submit` and `wait` so the caller can journal the job id between the two:
a retried or restarted step resumes the job instead of paying for a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

ImageKind = Literal["sprite_sheet", "hero_page", "page", "experiment", "style_sample"]
LoraFamily = Literal["flux1", "flux2", "sdxl"]


class ReferenceImage(BaseModel):
    """An input image, addressed by content hash; `key` is its ArtifactStore key."""

    model_config = ConfigDict(frozen=True)

    role: str  # "sprite_sheet", "hero_page", "style"...
    sha256: str
    key: str


class LoraRef(BaseModel):
    """A pinned LoRA: weights identified by hash, plus where a remote model can fetch them."""

    model_config = ConfigDict(frozen=True)

    name: str
    family: LoraFamily
    sha256: str
    key: str | None = None  # ArtifactStore key of the weights file
    remote_ref: str | None = None  # Replicate version / HF path / URL a cloud model can load
    trigger_word: str = ""
    scale: float = 1.0


class CharacterToken(BaseModel):
    """What the preview renderer needs to draw a character recognisably on every page."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str


class ImageRequest(BaseModel):
    """A provider-neutral request. Its hash is the cache key: change anything, pay again."""

    model_config = ConfigDict(frozen=True)

    provider: str
    model: str
    kind: ImageKind
    prompt: str
    negative_prompt: str = ""
    width: int = Field(ge=64, le=8192)
    height: int = Field(ge=64, le=8192)
    seed: int = Field(ge=0, lt=2**32)
    references: tuple[ReferenceImage, ...] = ()
    lora: LoraRef | None = None
    # Hints the preview renderer draws from; cloud models only see the prompt.
    characters: tuple[CharacterToken, ...] = ()
    palette: tuple[str, ...] = ()
    label: str = ""
    scene: str = ""
    variant: str = ""  # ModelCapabilities.variant of the provider that draws it

    def cache_key(self) -> str:
        """sha256 of the whole request; references and LoRA enter by content hash."""
        payload = self.model_dump(mode="json")
        if not payload["variant"]:
            payload.pop("variant")  # requests from before the field existed keep their keys (and cache)
        for ref in payload["references"]:
            ref.pop("key")  # where the bytes live does not change the picture
        if payload["lora"]:
            payload["lora"].pop("key")
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


class ModelCapabilities(BaseModel):
    """What a model accepts, and what one image costs."""

    model_config = ConfigDict(frozen=True)

    model: str
    max_references: int = 0
    lora_family: LoraFamily | None = None  # LoRAs of this family only; None = no LoRA input
    requires_reference: bool = False
    seed_deterministic: bool = True
    min_size: int = 256
    max_size: int = 2048
    price_usd: float = 0.0  # per output image
    notes: str = ""
    # Provider settings that change the picture for the same request (lossy speed options such as fp8 weights):
    # requests carry it, so switching them never returns the other setting's cached images.
    variant: str = ""


class JobOutput(BaseModel):
    """The finished job, bytes already downloaded (remote outputs expire)."""

    image: bytes
    mime: str = "image/png"
    remote_url: str | None = None
    version: str | None = None
    seed: int | None = None
    extra: dict = Field(default_factory=dict)


class ProviderError(RuntimeError):
    """A provider call failed. `transient` errors (429, 5xx, timeouts) are worth retrying."""

    def __init__(self, provider: str, message: str, *, transient: bool = False, status: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.transient = transient
        self.status = status
        self.retry_after_s = retry_after_s


class SafetyRefusal(ProviderError):
    """The provider's safety filter refused the prompt or the output."""

    def __init__(self, provider: str, reason: str):
        super().__init__(provider, f"safety refusal: {reason}")
        self.reason = reason


class JobGone(ProviderError):
    """A journaled job id the provider no longer knows; the caller submits afresh."""


class JobFailed(ProviderError):
    """The job ran and the provider reports that it failed (Replicate's status `failed`, a fal request that completed
    with an error). The message carries the provider's own text; the attempt is a `failed` one, not a `timeout`.

    `transient` only where the error itself says a new job may well succeed (interrupted, preempted, the service's
    own "please retry"). Otherwise `retries` is how many new jobs, at most, are worth paying for: 1 for a generic
    failure, which may have been the machine's; 0 for one the input caused.
    """

    def __init__(self, provider: str, message: str, *, transient: bool = False, retries: int = 0,
                 status: int | None = None, billed: bool = True):
        super().__init__(provider, message, transient=transient, status=status)
        self.retries = retries
        self.billed = billed  # False where the provider documents that such a failure is not charged


class OutputNotCollected(ProviderError):
    """The job finished, so it is paid for, but its output could not be fetched in the tries allowed.

    Not a reason to pay for a new job: the caller keeps the job journaled, so the next run fetches it
    (outputs stay downloadable for an hour on both services). `cause` is the last fetch's error.
    """

    def __init__(self, provider: str, message: str, *, cause: ProviderError | None = None):
        super().__init__(provider, message, status=cause.status if cause else None)
        self.cause = cause


class ConfigurationError(ValueError):
    """A request the chosen model cannot serve (wrong LoRA family, too many references)."""


class ResultUnobtainable(JobFailed):
    """The provider says the job finished, but its result cannot be had: the result request kept failing.

    The job is paid either way. Its journal entry is cleared (resuming it would only fail again, for the whole
    deadline, in every later run) and the image fails with the provider's status and body. Not remembered as
    a deterministic failure: the request itself was fine, so a rerun may create it again.
    """


class WaitStopped(ProviderError):
    """The run is stopping: this thread stopped waiting for the job (cancelled, or finished remotely)."""


RESULT_TRIES = 8  # fetches of a finished job's result before it counts as unobtainable
RESULT_MAX_DELAY_S = 15.0  # backoff cap between those fetches: with a 1 s poll, 8 tries span about a minute


def collect_until(collect: Callable[[], JobOutput], end: float, poll_s: float, provider: str,
                  job_id: str, pause: Callable[[float], None] = time.sleep, tries: int = RESULT_TRIES) -> JobOutput:
    """Fetch a finished job's output, retrying transient failures (CDN 5xx, timeouts) with exponential backoff,
    at most `tries` times and not past `end` (monotonic); then OutputNotCollected, carrying the last error."""
    for attempt in range(1, tries + 1):
        try:
            return collect()
        except (SafetyRefusal, JobGone, JobFailed, WaitStopped):  # the job's own outcome, or the run stopping
            raise
        except ProviderError as exc:
            if not exc.transient:
                raise
            delay = min(RESULT_MAX_DELAY_S, poll_s * 2 ** (attempt - 1), end - time.monotonic())
            if attempt == tries or delay <= 0:
                raise OutputNotCollected(provider, f"job {job_id} finished but its output could not be fetched "
                                                   f"in {attempt} tries ({exc})", cause=exc) from None
            log.info("%s: fetching the output of %s failed (%s); trying again in %.1fs", provider, job_id, exc, delay)
            pause(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ProviderSettings:
    """Everything a family may need to build its provider or trainer: keys, endpoints, local options.

    Filled in by the Dagster layer from the environment (keys arrive there as EnvVar, resolved only
    when a run starts); each family's `from_settings` takes what it needs and says what is missing.
    """

    replicate_api_token: str | None = None
    replicate_base_url: str | None = None
    fal_key: str | None = None
    fal_base_url: str | None = None
    fal_upload_references: bool = True  # off: references travel inline (a gateway without fal's storage API)
    poll_interval_s: float = 1.0
    local: dict = field(default_factory=dict)  # LocalDiffusersProvider's keyword arguments
    train_quantize_base: str = "none"


class ImageProvider(ABC):
    """A family of models behind one API. Subclasses are small: build the input, parse the output."""

    name: str = "base"

    @classmethod
    def from_settings(cls, settings: ProviderSettings, store=None) -> ImageProvider:
        """The provider as configured; `store` lets a family read a pinned LoRA's weights by artifact key."""
        return cls()

    @abstractmethod
    def capabilities(self, model: str) -> ModelCapabilities:
        """Raise ConfigurationError for a model this provider does not serve."""

    @abstractmethod
    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        """Start a job and return its id. Must not wait for the image."""

    @abstractmethod
    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        """Block until the job ends; download the output bytes at once."""

    def cancel(self, job_id: str) -> None:  # noqa: B027 - optional for synchronous providers
        """Cancel a remote job; best effort."""

    def stop_waiting(self, job_id: str) -> None:
        """The run is stopping: the thread waiting on `job_id` stops at its next pause (WaitStopped).

        A cancel alone is not enough: a job that already finished answers the cancel with "already completed"
        and its thread would go on fetching its result for the rest of the deadline.
        """
        self.__dict__.setdefault("_stopped_jobs", set()).add(job_id)

    def pause(self, job_id: str, seconds: float) -> None:
        """Sleep between polls of `job_id`, in short slices, so stop_waiting takes effect within a fraction of a second."""
        stopped = self.__dict__.setdefault("_stopped_jobs", set())
        end = time.monotonic() + seconds
        while True:
            if job_id in stopped:
                raise WaitStopped(self.name, f"stopped waiting for job {job_id}: the run is stopping")
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.2))

    def rate_account(self) -> str:
        """Whose create limit this provider's jobs count against (one RateLimiter per account and process)."""
        return self.name

    def find_job(self, request: ImageRequest) -> str | None:
        """After a create whose answer was lost (the connection dropped): the job it started, if any.

        Providers whose API can list recent jobs override this, so a retry resumes that job
        instead of paying for a second one; None means "cannot tell".
        """
        return None

    def models(self) -> list[str]:
        return []

    def cost_usd(self, request: ImageRequest) -> float:
        """What this request will be billed; per-megapixel or 4K pricing overrides this."""
        return self.capabilities(request.model).price_usd

    def validate(self, request: ImageRequest) -> ModelCapabilities:
        """Refuse, before anything is paid, what this model cannot do."""
        caps = self.capabilities(request.model)
        if request.lora is not None:
            if caps.lora_family is None:
                raise ConfigurationError(f"{self.name}:{request.model} takes no LoRA, but style LoRA "
                                         f"{request.lora.name!r} was configured")
            if caps.lora_family != request.lora.family:
                raise ConfigurationError(
                    f"LoRA {request.lora.name!r} was trained for {request.lora.family}; "
                    f"{self.name}:{request.model} is a {caps.lora_family} model")
        if caps.requires_reference and not request.references:
            raise ConfigurationError(f"{self.name}:{request.model} needs a reference image")
        return caps
