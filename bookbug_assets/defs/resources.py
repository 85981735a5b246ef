"""Resources: where things live (BookbugStorage) and which model draws (ImageProviders), built from the
environment when the definitions load.

Secrets arrive as Dagster EnvVar, so the UI shows the variable's name, never its value. Every
other setting is read here too, once: `project_resources()` is what the `@dg.definitions` loader
of this module and `definitions.build_definitions` (tests, golden folders) both call.
"""

import logging
import math
import os
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Literal, Mapping

import dagster as dg
from pydantic import Field, PrivateAttr, ValidationError

from bookbug_assets.generation import RetryPolicy
from bookbug_assets.providers.base import ConfigurationError, ImageProvider, ProviderSettings
from bookbug_assets.providers.local_options import ATTENTION_BACKENDS, OFFLOAD_MODES, QUANTIZE_MODES
from bookbug_assets.providers.registry import DEFAULT_MODELS, build_provider, parse_provider_spec, pool_for
from bookbug_assets.storage import ArtifactStore, LocalArtifactStore

log = logging.getLogger(__name__)


class BookbugStorage(dg.ConfigurableResource):
    """Folders for stories and styles, and the ArtifactStore for everything generated."""

    data_root: str = "data/outputs"
    stories_dir: str = "data/stories"
    styles_dir: str = "data/styles"
    models_dir: str = "data/models"  # the only folder a style's `lora: {source: <path>}` is read from

    # S3 (AWS, MinIO, R2 via s3_endpoint_url): artifacts in s3://s3_bucket/s3_prefix/ when s3_bucket
    # is set; stories read from s3://s3_bucket/s3_stories_prefix when that is set too.
    s3_bucket: str | None = None
    s3_prefix: str = "outputs"
    s3_stories_prefix: str | None = None
    s3_endpoint_url: str | None = None
    s3_region_name: str | None = None

    _s3_store: ArtifactStore | None = PrivateAttr(default=None)

    def s3_client(self):
        from dagster_aws.s3 import S3Resource

        return S3Resource(endpoint_url=self.s3_endpoint_url, region_name=self.s3_region_name).get_client()

    def store(self) -> ArtifactStore:
        if not self.s3_bucket:
            return LocalArtifactStore(self.data_root)
        if self._s3_store is None:  # one boto3 client per resource instance, shared by page threads
            from bookbug_assets.storage_s3 import S3ArtifactStore

            self._s3_store = S3ArtifactStore(self.s3_client(), self.s3_bucket, self.s3_prefix,
                                             cache_dir=Path(self.data_root) / ".s3-cache")
        return self._s3_store

    @property
    def stories_path(self) -> Path:
        return Path(self.stories_dir)

    @property
    def styles_path(self) -> Path:
        return Path(self.styles_dir)

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir)


class LocalGpuSettings(dg.Config):
    """How the local family loads and runs its diffusers pipelines (README "Local GPU"; all optional).

    `model_dir` holds one folder per model named like its hub repo (`FLUX.1-dev/`, ...); `tiny-random` builds
    random tiny models in memory (tests, CI). The rest are `LocalDiffusersProvider`'s speed and memory options.
    """

    # The pipelines' own lists of names (providers.local_options, torch-free), so a wrong value fails when
    # the definitions load, naming its variable, not in the middle of a run.
    model_dir: str | None = None
    flux_dev: str | None = None  # a hub id or folder for one model, overriding model_dir
    flux_kontext: str | None = None
    sdxl: str | None = None
    device: str = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    offload: Literal[OFFLOAD_MODES] = "none"  # CPU offload for cards under ~34 GB
    attention_backend: Literal[ATTENTION_BACKENDS] = "auto"
    compile: bool = False
    compile_scope: Literal["blocks", "model"] = "blocks"
    compile_mode: str | None = None
    fuse_qkv: bool = False
    quantize: Literal[QUANTIZE_MODES] = "none"  # fp8 needs sm89+ (Ada, Hopper)
    step_cache: float = Field(0.0, ge=0.0)  # First Block Cache threshold, 0 = off
    max_sequence_length: int = Field(512, ge=8, le=512)
    num_inference_steps: int | None = Field(None, ge=1)
    # The local trainer's base weights (style_lora with trainer: local): fp8-weight for 24 GB cards.
    train_quantize_base: Literal["none", "fp8-weight"] = "none"

    def provider_kwargs(self) -> dict:
        """LocalDiffusersProvider's keyword arguments (everything but the trainer's setting)."""
        return self.model_dump(exclude={"train_quantize_base"})

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> "LocalGpuSettings":
        """Each field from BOOKBUG_LOCAL_<FIELD> when set; a bad value names its variable."""
        values = {name: environ[f"BOOKBUG_LOCAL_{name.upper()}"] for name in cls.model_fields
                  if environ.get(f"BOOKBUG_LOCAL_{name.upper()}")}
        try:
            return cls(**values)
        except ValidationError as exc:
            wrong = ", ".join(f"BOOKBUG_LOCAL_{str(err['loc'][0]).upper()}={values.get(str(err['loc'][0]))!r} "
                              f"({err['msg']})" for err in exc.errors())
            raise ConfigurationError(f"local GPU settings: {wrong}") from None


class ImageProviders(dg.ConfigurableResource):
    """Chooses and builds the image provider.

    `default` is `auto` (a cloud default when a key is set, else the offline preview) or
    `<family>:<model>`; a story's `provider` field overrides it per book.
    """

    default: str = "auto"
    replicate_api_token: str | None = None
    replicate_base_url: str | None = None
    fal_key: str | None = None
    fal_base_url: str | None = None
    fal_upload_references: bool = True
    local: LocalGpuSettings = LocalGpuSettings()
    max_concurrency: int = 12
    job_deadline_s: float = 600.0
    max_attempts: int = 5
    poll_interval_s: float = 1.0

    _built: dict[str, ImageProvider] = PrivateAttr(default_factory=dict)
    _announced: bool = PrivateAttr(default=False)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, deadline_s=self.job_deadline_s)

    def resolve(self, override: str | None = None) -> tuple[str, str]:
        """(family, model) for a book: story override, then configured default, then auto. Silent."""
        spec = override or self.default
        if spec and spec != "auto":
            return parse_provider_spec(spec)
        if self.replicate_api_token:
            return "replicate", DEFAULT_MODELS["replicate"]
        if self.fal_key:
            return "fal", DEFAULT_MODELS["fal"]
        return "preview", DEFAULT_MODELS["preview"]

    def choose(self, override: str | None = None) -> tuple[str, str]:
        """resolve(), saying once per run when the offline preview stands in for a real model."""
        family, model = self.resolve(override)
        if family == "preview" and not override and self.default == "auto" and not self._announced:
            self._announced = True
            log.warning("No REPLICATE_API_TOKEN or FAL_KEY and no BOOKBUG_PROVIDER set: rendering with the "
                        "offline preview provider; every image and PDF will say PREVIEW.")
        return family, model

    def settings(self) -> ProviderSettings:
        return ProviderSettings(replicate_api_token=self.replicate_api_token,
                                replicate_base_url=self.replicate_base_url, fal_key=self.fal_key,
                                fal_base_url=self.fal_base_url, fal_upload_references=self.fal_upload_references,
                                poll_interval_s=self.poll_interval_s, local=self.local.provider_kwargs(),
                                train_quantize_base=self.local.train_quantize_base)

    def provider(self, family: str, store: ArtifactStore | None = None) -> ImageProvider:
        """One provider object per family per run, so a local pipeline loads once.

        `store` lets the local family read a pinned LoRA's weights file by its artifact key; a provider
        built without one (for prices, say) is kept apart.
        """
        key = f"{family}:{'store' if store is not None else 'no store'}"
        if key not in self._built:
            self._built[key] = build_provider(family, self.settings(), store)
        return self._built[key]


def _env(name: str) -> dg.EnvVar | None:
    """Secrets only as EnvVar (the UI shows the variable's name); absent means 'not configured'."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _number(name: str, default, kind):
    """A numeric setting; unset or empty means the default, anything else must parse (the error names it)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a {'whole number' if kind is int else 'number'}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be a finite number greater than 0")
    return value


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r} must be 1/true/yes/on or 0/false/no/off")


# Folders given to definitions.build_definitions (tests, a second project folder) instead of the environment,
# for the duration of one load: the defs modules' @dg.definitions loaders read them through storage_from_env.
_FOLDERS: ContextVar[dict[str, str]] = ContextVar("bookbug_folders", default={})


@contextmanager
def folders_for_load(**paths: str | None):
    token = _FOLDERS.set({name: path for name, path in paths.items() if path})
    try:
        yield
    finally:
        _FOLDERS.reset(token)


def storage_from_env() -> BookbugStorage:
    """The storage resource: BOOKBUG_* folders and S3 settings, or the folders of the load in progress."""
    given = _FOLDERS.get()
    return BookbugStorage(
        data_root=given.get("data_root") or os.environ.get("BOOKBUG_DATA_ROOT", "data/outputs"),
        stories_dir=given.get("stories_dir") or os.environ.get("BOOKBUG_STORIES_DIR", "data/stories"),
        styles_dir=given.get("styles_dir") or os.environ.get("BOOKBUG_STYLES_DIR", "data/styles"),
        models_dir=given.get("models_dir") or os.environ.get("BOOKBUG_MODELS_DIR", "data/models"),
        s3_bucket=os.environ.get("BOOKBUG_S3_BUCKET") or None,
        s3_prefix=os.environ.get("BOOKBUG_S3_PREFIX", "outputs"),
        s3_stories_prefix=os.environ.get("BOOKBUG_S3_STORIES_PREFIX") or None,
        s3_endpoint_url=os.environ.get("BOOKBUG_S3_ENDPOINT_URL") or None,
        s3_region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    )


def providers_from_env() -> ImageProviders:
    return ImageProviders(
        default=os.environ.get("BOOKBUG_PROVIDER", "auto"),
        replicate_api_token=_env("REPLICATE_API_TOKEN"),
        replicate_base_url=os.environ.get("BOOKBUG_REPLICATE_BASE_URL"),
        fal_key=_env("FAL_KEY"),
        fal_base_url=os.environ.get("BOOKBUG_FAL_BASE_URL"),
        fal_upload_references=_flag("BOOKBUG_FAL_UPLOAD_REFERENCES", True),
        max_concurrency=_number("BOOKBUG_MAX_CONCURRENCY", 12, int),
        poll_interval_s=_number("BOOKBUG_POLL_INTERVAL_S", 1.0, float),
        max_attempts=_number("BOOKBUG_MAX_ATTEMPTS", 5, int),
        job_deadline_s=_number("BOOKBUG_JOB_DEADLINE_S", 600.0, float),
        local=LocalGpuSettings.from_env(os.environ),
    )


def generation_pool() -> str:
    """The concurrency pool the generation steps run in: the default provider's (dagster.yaml sets the limits,
    or `dagster instance concurrency set <pool> <n>`); a story's own provider override keeps this pool."""
    return pool_for(providers_from_env().resolve()[0])


def project_resources(storage: BookbugStorage) -> dict:
    resources: dict = {"storage": storage, "image_providers": providers_from_env()}
    if storage.s3_bucket and storage.s3_stories_prefix:
        from dagster_aws.s3 import S3Resource  # only when configured: the default definitions do no boto3 work

        resources["s3"] = S3Resource(endpoint_url=storage.s3_endpoint_url, region_name=storage.s3_region_name)
    return resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=project_resources(storage_from_env()))
