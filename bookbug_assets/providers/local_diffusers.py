"""The local provider: FLUX.1-dev, FLUX.1 Kontext dev and SDXL through diffusers on this machine's GPU (or CPU).

No cloud, no per-image price. Pipelines come from a `PipelineCache` (one load per process, shared by passing
the same cache to every provider built in that process); generation runs synchronously inside `submit`
and the PNG waits in memory until `wait` collects it, so the submit/wait journal of `generation.py`
works unchanged. torch and diffusers are imported lazily: constructing the provider costs nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from bookbug_assets.providers._local_pipelines import (
    ATTENTION_BACKENDS,
    OFFLOAD_MODES,
    QUANTIZE_MODES,
    TINY_RANDOM,
    PROCESS_PIPELINES,
    PipelineCache,
    PipelineSpec,
    check_speed_options,
    fit_to_area,
    resolve_attention_backend,
    resolve_device,
    resolve_dtype,
    stitch_side_by_side,
)
from bookbug_assets.providers.base import (
    ProviderSettings,
    ConfigurationError,
    ImageProvider,
    ImageRequest,
    JobGone,
    JobOutput,
    LoraRef,
    ModelCapabilities,
)


@dataclass(frozen=True)
class _LocalModel:
    kind: str  # PipelineSpec.kind
    lora_family: str
    max_references: int
    steps: int
    guidance: float
    notes: str


# Defaults follow each model's published recommendation (FLUX.1-dev 28 steps / guidance 3.5, Kontext 2.5,
# SDXL base ~30 steps with real classifier-free guidance 5).
LOCAL_MODELS: dict[str, _LocalModel] = {
    "flux-dev": _LocalModel("flux", "flux1", 0, 28, 3.5, "FLUX.1 [dev] on the local GPU; style LoRA via diffusers"),
    "flux-kontext-dev": _LocalModel(
        "flux_kontext", "flux1", 1, 28, 2.5,
        "FLUX.1 Kontext [dev]: one reference image; several are stitched side by side into one"),
    "sdxl": _LocalModel("sdxl", "sdxl", 0, 30, 5.0, "SDXL base 1.0 with negative prompt and real CFG"),
}


# Hub ids, also the sub-folder names looked for under `model_dir` (a `huggingface-cli download --local-dir`
# of each repo, or a `save_pretrained` copy).
HUB_IDS = {"flux": "black-forest-labs/FLUX.1-dev", "flux_kontext": "black-forest-labs/FLUX.1-Kontext-dev",
           "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}


def model_source(model_dir: str | None, kind: str) -> str:
    """`model_dir/<repo name>` when that folder exists, TINY_RANDOM when model_dir is TINY_RANDOM, else the hub id."""
    if model_dir == TINY_RANDOM:
        return TINY_RANDOM
    if model_dir:
        folder = os.path.join(model_dir, HUB_IDS[kind].split("/")[-1])
        if os.path.isdir(folder):
            return folder
    return HUB_IDS[kind]


class LocalDiffusersProvider(ImageProvider):
    """Serve `flux-dev`, `flux-kontext-dev` and `sdxl` from diffusers pipelines on this machine.

    Each model's source is its explicit argument, else `model_dir/<repo name>` if present, else the hub id;
    `TINY_RANDOM` (as a source or as model_dir) builds random tiny models offline, for tests.
    `lora_path_resolver(lora)` returns a local weights file; `lora_loader(lora)` returns the file's bytes.
    """

    name = "local"

    @classmethod
    def from_settings(cls, settings: ProviderSettings, store=None) -> LocalDiffusersProvider:
        # Pipelines live in the process-wide PROCESS_PIPELINES: Dagster copies a resource for every run, and
        # one process may run several; a pinned LoRA's weights are read from the store by artifact key.
        resolver = (lambda lora: str(store.local_path(lora.key))) if store is not None else None
        return cls(**settings.local, lora_path_resolver=resolver, pipeline_cache=PROCESS_PIPELINES)

    def __init__(
        self,
        *,
        model_dir: str | None = None,
        flux_dev: str | None = None,
        flux_kontext: str | None = None,
        sdxl: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        offload: str = "none",
        attention_backend: str = "auto",
        compile: bool = False,
        compile_scope: str = "blocks",
        compile_mode: str | None = None,
        fuse_qkv: bool = False,
        quantize: str = "none",
        step_cache: float = 0.0,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        max_sequence_length: int = 512,
        lora_path_resolver: Callable[[LoraRef], str] | None = None,
        lora_loader: Callable[[LoraRef], bytes] | None = None,
        pipeline_cache: PipelineCache | None = None,
        tiny_seed: int = 0,
    ) -> None:
        if importlib.util.find_spec("torch") is None or importlib.util.find_spec("diffusers") is None:
            # Fail when the provider is chosen, with the fix, not at the first page.
            raise ConfigurationError("the local provider needs the [local] extra: pip install -e '.[local]'")
        if offload not in OFFLOAD_MODES:
            raise ConfigurationError(f"offload must be one of {OFFLOAD_MODES}, not {offload!r}")
        if attention_backend not in ATTENTION_BACKENDS:
            raise ConfigurationError(f"attention_backend must be one of {ATTENTION_BACKENDS}")
        if quantize not in QUANTIZE_MODES:
            raise ConfigurationError(f"quantize must be one of {QUANTIZE_MODES}, not {quantize!r}")
        explicit = {"flux": flux_dev, "flux_kontext": flux_kontext, "sdxl": sdxl}
        self._sources = {kind: explicit[kind] or model_source(model_dir, kind) for kind in explicit}
        self._device, self._dtype = device, dtype
        self._offload, self._attention, self._fuse_qkv = offload, attention_backend, fuse_qkv
        self._compile, self._compile_scope, self._compile_mode = compile, compile_scope, compile_mode
        self._quantize, self._step_cache = quantize, step_cache
        self._steps, self._guidance = num_inference_steps, guidance_scale
        self._max_sequence_length = max_sequence_length
        self._lora_path_resolver, self._lora_loader = lora_path_resolver, lora_loader
        self._cache = pipeline_cache if pipeline_cache is not None else PipelineCache()
        self._tiny_seed = tiny_seed
        self._results: dict[str, JobOutput] = {}

    # -- interface ------------------------------------------------------------------------------

    def models(self) -> list[str]:
        return list(LOCAL_MODELS)

    def capabilities(self, model: str) -> ModelCapabilities:
        entry = LOCAL_MODELS.get(model)
        if entry is None:
            raise ConfigurationError(f"local provider serves {sorted(LOCAL_MODELS)}, not {model!r}")
        tiny = self._sources[entry.kind] == TINY_RANDOM
        # Tiny random models are for tests: pages render at 128 px at most, so a whole book runs in seconds.
        return ModelCapabilities(
            model=model, max_references=entry.max_references, lora_family=entry.lora_family,
            requires_reference=False, seed_deterministic=True, min_size=64 if tiny else 256,
            max_size=128 if tiny else 2048,
            price_usd=0.0, notes=entry.notes, variant=self._variant())

    def _variant(self) -> str:
        """The lossy options in force; exact ones (attention kernel, compile, fused QKV) leave it empty."""
        lossy = {"quantize": self._quantize, "step_cache": self._step_cache}
        return ",".join(f"{k}={v}" for k, v in lossy.items() if v not in ("none", 0, 0.0))

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        self.validate(request)
        if request.lora is not None and self._lora_path_resolver is None and self._lora_loader is None:
            raise ConfigurationError("local provider got a LoRA but has no lora_path_resolver or lora_loader")
        output = self.generate(request, reference_bytes)
        job_id = f"local-{uuid.uuid4().hex}"
        self._results[job_id] = output
        return job_id

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        output = self._results.pop(job_id, None)
        if output is None:
            # The image lived in this process's memory only; a restarted step must submit again.
            raise JobGone(self.name, f"job {job_id} is not in this process (local jobs do not survive a restart)")
        return output

    def cancel(self, job_id: str) -> None:
        self._results.pop(job_id, None)

    # -- generation -----------------------------------------------------------------------------

    def spec(self, model: str) -> PipelineSpec:
        """The cache key for a model under this provider's settings; refuses options this machine cannot run."""
        entry = LOCAL_MODELS[model]
        device = resolve_device(self._device)
        dtype = resolve_dtype(self._dtype, device)
        spec = PipelineSpec(
            kind=entry.kind, source=self._sources[entry.kind], device=device, dtype=dtype, offload=self._offload,
            attention_backend=resolve_attention_backend(self._attention, device, dtype), compile=self._compile,
            compile_scope=self._compile_scope, compile_mode=self._compile_mode, fuse_qkv=self._fuse_qkv,
            quantize=self._quantize, step_cache=self._step_cache, seed=self._tiny_seed)
        try:
            check_speed_options(spec)
        except ValueError as exc:
            raise ConfigurationError(f"local provider, {model}: {exc}") from exc
        return spec

    def pipeline(self, model: str) -> Any:
        """The loaded pipeline for a model (loads it on first use)."""
        return self._cache.get(self.spec(model))

    def generate(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> JobOutput:
        import torch

        entry = LOCAL_MODELS[request.model]
        spec = self.spec(request.model)
        started = time.perf_counter()
        pipe = self._cache.get(spec)
        # FLUX packs 2x2 latent patches: sides must be multiples of 2 * VAE factor (16 for the real VAE).
        multiple = pipe.vae_scale_factor * (2 if entry.kind != "sdxl" else 1)
        width = max(multiple, request.width // multiple * multiple)
        height = max(multiple, request.height // multiple * multiple)
        steps = self._steps or entry.steps
        guidance = entry.guidance if self._guidance is None else self._guidance
        prompt = request.prompt
        if request.lora is not None and request.lora.trigger_word and request.lora.trigger_word not in prompt:
            prompt = f"{request.lora.trigger_word}, {prompt}"
        kwargs: dict[str, Any] = dict(
            prompt=prompt, width=width, height=height, num_inference_steps=steps, guidance_scale=guidance,
            # A CPU generator gives the same starting noise on any device.
            generator=torch.Generator("cpu").manual_seed(request.seed))
        if entry.kind == "sdxl":
            kwargs["negative_prompt"] = request.negative_prompt or None
        else:
            kwargs["max_sequence_length"] = self._max_sequence_length
        if entry.kind == "flux_kontext":
            # Without max_area Kontext rescales the output to 1024x1024 whatever was asked.
            kwargs.update(max_area=width * height, _auto_resize=False,
                          image=self._reference_image(request, reference_bytes, width * height, multiple))
        # FluxPipeline names a cache context around each transformer call; FluxKontextPipeline (diffusers 0.42)
        # does not, and First Block Cache refuses to run without one. One "cond" context for the whole call is
        # what FluxPipeline amounts to without true CFG; the pipeline resets the cache state when it ends.
        cache_context = (pipe.transformer.cache_context("cond") if spec.step_cache > 0 and entry.kind == "flux_kontext"
                         else contextlib.nullcontext())
        with self._cache.in_use(spec), cache_context:  # one pipeline, one card: its generations run one at a time
            lora_name = self._apply_lora(pipe, request.lora)
            image = pipe(**kwargs).images[0]
        if image.size != (request.width, request.height):
            from PIL import Image

            image = image.resize((request.width, request.height), Image.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return JobOutput(
            image=buf.getvalue(), mime="image/png", version=f"{spec.kind}:{spec.source}", seed=request.seed,
            extra={"device": spec.device, "dtype": spec.dtype, "steps": steps, "guidance_scale": guidance,
                   "attention_backend": spec.attention_backend, "quantize": spec.quantize,
                   "step_cache": spec.step_cache, "lora_adapter": lora_name,
                   "generated_size": [width, height], "seconds": round(time.perf_counter() - started, 3)})

    def _reference_image(self, request: ImageRequest, reference_bytes: dict[str, bytes], max_area: int,
                         multiple: int) -> Any:
        if not request.references:
            return None
        from PIL import Image

        images = []
        for ref in request.references:
            data = reference_bytes.get(ref.sha256)
            if data is None:
                raise ConfigurationError(f"reference {ref.role} ({ref.sha256[:12]}) was not handed to submit")
            images.append(Image.open(io.BytesIO(data)).convert("RGB"))
        height = max(im.height for im in images)
        joined = images[0] if len(images) == 1 else stitch_side_by_side(images, height)
        # Bounded by the output's area: a stitched strip of three 1024px sheets would otherwise triple the
        # reference tokens (and Kontext's cost grows with them).
        return fit_to_area(joined, max_area, multiple)

    # -- LoRA -----------------------------------------------------------------------------------

    def _apply_lora(self, pipe: Any, lora: LoraRef | None) -> str | None:
        """Make exactly `lora` (or nothing) active on the pipeline; keeps one style adapter loaded."""
        loaded = sorted({name for names in pipe.get_list_adapters().values() for name in names})
        if lora is None:
            if loaded:
                pipe.disable_lora()
            return None
        name = f"lora_{lora.sha256[:16]}"
        if name not in loaded:
            if loaded:
                pipe.delete_adapters(loaded)
            denoiser = getattr(pipe, "transformer", None)
            if denoiser is not None and any(getattr(m, "fused_projections", False) for m in denoiser.modules()):
                # A fused to_qkv would silently bypass LoRA weights on to_q/to_k/to_v.
                denoiser.unfuse_qkv_projections()
            with tempfile.TemporaryDirectory(prefix="bookbug-lora-") as tmp:
                pipe.load_lora_weights(self._lora_file(lora, tmp), adapter_name=name)
        pipe.enable_lora()
        pipe.set_adapters([name], adapter_weights=[lora.scale])
        return name

    def _lora_file(self, lora: LoraRef, tmp_dir: str) -> str:
        """A local path to the pinned weights, checked against the pinned hash."""
        if self._lora_path_resolver is not None:
            path = self._lora_path_resolver(lora)
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, "sha256").hexdigest()
        else:
            data = self._lora_loader(lora)
            digest = hashlib.sha256(data).hexdigest()
            # From a path diffusers also reads the adapter metadata (alpha) in the header; a dict loses it.
            path = os.path.join(tmp_dir, "pytorch_lora_weights.safetensors")
            with open(path, "wb") as fh:
                fh.write(data)
        if digest != lora.sha256:
            raise ConfigurationError(f"LoRA {lora.name!r}: weights hash {digest[:12]} != pinned {lora.sha256[:12]}")
        return path
