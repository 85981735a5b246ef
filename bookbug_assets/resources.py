"""Resources: where things live (BookbugStorage) and which model draws (ImageProviders).

Secrets arrive through Dagster EnvVar (wired in definitions.py), so the UI shows the variable's
name, never its value.
"""


import logging
import os
from pathlib import Path
from typing import Literal, Mapping

import dagster as dg
from pydantic import Field, PrivateAttr, ValidationError

from bookbug_assets.generation import RetryPolicy
from bookbug_assets.providers._local_pipelines import ATTENTION_BACKENDS, OFFLOAD_MODES, QUANTIZE_MODES
from bookbug_assets.providers.base import ConfigurationError, ImageProvider
from bookbug_assets.providers.registry import DEFAULT_MODELS, parse_provider_spec, provider_class
from bookbug_assets.storage import ArtifactStore, LocalArtifactStore

log = logging.getLogger(__name__)


class BookbugStorage(dg.ConfigurableResource):
    """Folders for stories and styles, and the ArtifactStore for everything generated."""

    data_root: str = "data/outputs"
    stories_dir: str = "data/stories"
    styles_dir: str = "data/styles"

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


class LocalGpuSettings(dg.Config):
    """How the local family loads and runs its diffusers pipelines (README "Local GPU"; all optional).

    `model_dir` holds one folder per model named like its hub repo (`FLUX.1-dev/`, ...); `tiny-random` builds
    random tiny models in memory (tests, CI). The rest are `LocalDiffusersProvider`'s speed and memory options.
    """

    # The pipelines' own lists of names, so a wrong value fails when the definitions load, naming its
    # variable, not in the middle of a run. (_local_pipelines imports no torch at module level.)
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

    def provider(self, family: str, store: ArtifactStore | None = None) -> ImageProvider:
        """One provider object per family per run, so a local pipeline loads once.

        `store` lets the local family read a pinned LoRA's weights file by its artifact key; a provider
        built without one (for prices, say) is kept apart. Local pipelines live in the process-wide
        PROCESS_PIPELINES: Dagster copies a resource for every run, and one process may run several.
        """
        key = f"{family}:{'store' if store is not None else 'no store'}"
        if key not in self._built:
            self._built[key] = self._build(family, store)
        return self._built[key]

    def _build(self, family: str, store: ArtifactStore | None) -> ImageProvider:
        cls = provider_class(family)
        if family == "replicate":
            if not self.replicate_api_token:
                raise ConfigurationError("replicate was chosen but REPLICATE_API_TOKEN is not set")
            return cls(api_token=self.replicate_api_token,
                       base_url=self.replicate_base_url or os.environ.get("REPLICATE_BASE_URL"),
                       poll_interval_s=self.poll_interval_s)
        if family == "fal":
            if not self.fal_key:
                raise ConfigurationError("fal was chosen but FAL_KEY is not set")
            return cls(key=self.fal_key, base_url=self.fal_base_url, poll_interval_s=self.poll_interval_s)
        if family == "local":
            resolver = (lambda lora: str(store.local_path(lora.key))) if store is not None else None
            from bookbug_assets.providers._local_pipelines import PROCESS_PIPELINES

            return cls(**self.local.provider_kwargs(), lora_path_resolver=resolver, pipeline_cache=PROCESS_PIPELINES)
        return cls()
