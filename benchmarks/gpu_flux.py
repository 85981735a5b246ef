"""GPU benchmark of the local backend on a FLUX.1-dev-shaped model with random weights (no download).

    python benchmarks/gpu_flux.py                 # CUDA: 1024x1024, 28 steps, LoRA r16 at 512 and 1024
    python benchmarks/gpu_flux.py --smoke         # tiny config on CPU, a minute at most: checks the script
    python benchmarks/gpu_flux.py --skip-training --eager-backends "" --variants model:cudnn:512:max-autotune \
        model:cudnn:512:default:fp8 blocks:flash:256
    python benchmarks/gpu_flux.py --skip-inference --train-compile off --train-cases 1024:0 1024:1

Inference: seconds for N denoising steps (transformer + scheduler, 512 text tokens, output kept as latents,
like the reference anchors) with stock diffusers eager (default SDPA choice) next to our provider's set-up
(`place_pipeline`: explicit attention backend, fused QKV, torch.compile, fp8; `--variants` picks which), then one
full `LocalDiffusersProvider` submit/wait (text encoders, VAE decode, PNG). Training: seconds per LoRA r16 step
through the trainer's own `training_step` (bf16 autocast, fp32 adapter, AdamW, cuDNN attention excluded,
forward *and* backward; compiled like the trainer on CUDA), at 512 and 1024, with and without gradient
checkpointing; peak memory for each. Figures measured on an H200 are in benchmarks/RESULTS.md.
Results print as lines and go to --json as they come, so a run cut short still reports what it measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TINY_TRANSFORMER = dict(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                        guidance_embeds=True, axes_dims_rope=(4, 6, 6))
# FLUX.1's VAE shape (16 latent channels, 8x), random weights; only its decode cost matters here.
FLUX_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159,
                use_quant_conv=False, use_post_quant_conv=False)


# The next GPU run's questions, in order (benchmarks/RESULTS.md, "Next GPU run"): the provider's Hopper default
# (cuDNN attention) compiled; whole-model compile with autotuned GEMMs, then with CUDA graphs on top (bf16:
# the <= 3.3 s target); and fp8 matmuls (lossy, not part of the bf16 target).
DEFAULT_VARIANTS = ["blocks:cudnn:512", "model:cudnn:512:max-autotune-no-cudagraphs", "model:cudnn:512:max-autotune",
                    "model:cudnn:512:default:fp8"]


class Report:
    """Collects results, prints each, rewrites the JSON file after each so partial runs still report."""

    def __init__(self, path: str | None, deadline: float) -> None:
        self.path, self.deadline, self.data = path, deadline, {"results": []}

    def note(self, **fields) -> None:
        self.data["results"].append(fields)
        print("RESULT " + json.dumps(fields), flush=True)
        self.flush()

    def flush(self) -> None:
        if self.path:
            Path(self.path).write_text(json.dumps(self.data, indent=2))

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def random_transformer(config: dict, device: str, dtype):
    """Build on the meta device (no memory, no init cost), materialise on `device`, fill with random weights."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(**config).to(dtype)
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.normal_(0.0, 0.02, generator=gen)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)  # RMSNorm scales
    return model.eval()


def build_pipeline(smoke: bool, device: str, dtype):
    """A FluxPipeline around the random transformer; text encoders are narrow stand-ins with FLUX's output widths
    (T5 4096, CLIP pooled 768) so prompts still run through the provider's own encode path."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from bookbug_assets.providers._local_pipelines import FLUX_DEV_TRANSFORMER_CONFIG
    from bookbug_assets.providers._tiny_models import build_tiny_flux_components, build_tiny_tokenizers

    if smoke:
        parts = build_tiny_flux_components(0)
        parts["transformer"] = random_transformer(TINY_TRANSFORMER, device, dtype)
        return FluxPipeline(**parts).to(device=device, dtype=dtype)
    transformer = random_transformer(FLUX_DEV_TRANSFORMER_CONFIG, device, dtype)
    torch.manual_seed(0)
    with torch.device(device):
        vae = AutoencoderKL(**FLUX_VAE).to(dtype).eval()
        clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=64, num_hidden_layers=1,
                                            num_attention_heads=2, vocab_size=600, bos_token_id=0, eos_token_id=1,
                                            pad_token_id=1, projection_dim=768)).to(dtype).eval()
        t5 = T5EncoderModel(T5Config(d_model=4096, d_kv=64, d_ff=64, num_layers=1, num_heads=2, vocab_size=200,
                                     pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)).to(dtype).eval()
    clip_tok, t5_tok = build_tiny_tokenizers()
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=clip, tokenizer=clip_tok,
                        text_encoder_2=t5, tokenizer_2=t5_tok, transformer=transformer)


def time_denoise(pipe, embeds, size: int, steps: int, device: str) -> float:
    """Seconds for `steps` denoising steps at size x size (after a 2-step warm-up that also compiles)."""
    import torch

    pe, pp = embeds
    kwargs = dict(prompt_embeds=pe, pooled_prompt_embeds=pp, height=size, width=size, guidance_scale=3.5,
                  output_type="latent")
    pipe(num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(0), **kwargs)
    sync(device)
    start = time.perf_counter()
    pipe(num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(1), **kwargs)
    sync(device)
    return time.perf_counter() - start


def bench_inference(report: Report, args, device: str, dtype, anchors: dict) -> None:
    """Stock diffusers eager next to our set-ups, same pipeline object, same inputs."""
    import torch

    from bookbug_assets.providers._local_pipelines import (FLUX_DEV_TRANSFORMER_CONFIG, PipelineCache, place_pipeline,
                                                           uncompile)

    pipe = build_pipeline(args.smoke, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    text_len = 32 if args.smoke else 512
    g = torch.Generator("cpu").manual_seed(0)
    inner = pipe.transformer.config.joint_attention_dim
    embeds = ((torch.randn(1, text_len, inner, generator=g) * 0.1).to(device, dtype),
              (torch.randn(1, pipe.transformer.config.pooled_projection_dim, generator=g) * 0.1).to(device, dtype))

    # 1. Stock diffusers, eager, PyTorch's default SDPA selection: the baseline the target is measured against.
    reset_peak(device)
    anchors["stock"] = time_denoise(pipe, embeds, args.size, args.steps, device)
    record_inference(report, args, device, "stock diffusers eager (default SDPA)", anchors["stock"])

    # 2. Our set-up without compile, per attention backend (flash is the provider's CUDA default).
    for backend in (["native"] if device == "cpu" else [b for b in args.eager_backends.split(",") if b]):
        if report.time_left() < 120:
            break
        with guarded(report, f"eager {backend}"):
            place_pipeline(pipe, _spec(device, dtype, attention_backend=backend))
            reset_peak(device)
            record_inference(report, args, device, f"ours eager, attention={backend}",
                             time_denoise(pipe, embeds, args.size, args.steps, device), attention_backend=backend)

    # 3. Our set-ups ("scope:attention:text tokens[:compile mode[:quantize]]"), the first also through the provider.
    # Quantizing rewrites the weights in place, so those variants run last, each on a fresh copy of the same
    # random weights (random_transformer is seeded).
    variants = sorted((parse_variant(v, device) for v in args.variants if args.compile or v.startswith("eager")),
                      key=lambda v: v["quantize"] != "none")
    for i, variant in enumerate(variants):
        if report.time_left() < 150:
            report.note(section="inference", variant=variant["name"], skipped="out of time budget")
            continue
        with guarded(report, f"variant {variant['name']}"):
            uncompile(pipe.transformer)
            torch._dynamo.reset()  # fresh, shape-specialised graphs for each variant
            if variant["quantize"] != "none":
                pipe.transformer = None
                gc.collect()
                pipe.transformer = random_transformer(TINY_TRANSFORMER if args.smoke else FLUX_DEV_TRANSFORMER_CONFIG,
                                                      device, dtype)
            cache = PipelineCache()
            spec = _spec(device, dtype, attention_backend=variant["attention"], compile=variant["scope"] != "eager",
                         compile_scope="blocks" if variant["scope"] == "eager" else variant["scope"],
                         compile_mode=variant["mode"], fuse_qkv=True, quantize=variant["quantize"])
            cache.get(spec, build=lambda s: (place_pipeline(pipe, s), pipe)[1])  # the provider's loader, our pipe
            variant_embeds = (embeds[0][:, : variant["tokens"]], embeds[1])
            started = time.perf_counter()
            reset_peak(device)
            seconds = time_denoise(pipe, variant_embeds, args.size, args.steps, device)
            record_inference(report, args, device, f"ours {variant['name']}, fused qkv", seconds,
                             attention_backend=variant["attention"], text_tokens=variant["tokens"],
                             quantize=variant["quantize"], compile_mode=variant["mode"],
                             warmup_and_compile_s=round(time.perf_counter() - started - seconds, 1))
            if i == 0:
                anchors["ours"] = seconds
                provider_end_to_end(report, args, cache, spec, device, variant["tokens"])
    report.note(section="inference", variant="ratio", stock_s=round(anchors["stock"], 3),
                ours_s=round(anchors.get("ours", float("nan")), 3),
                speedup=round(anchors["stock"] / anchors["ours"], 3) if "ours" in anchors else None,
                note="74.38 TFLOP/step at 1024x1024 with 512 text tokens (reference §3.4)")


def parse_variant(text: str, device: str) -> dict:
    """"model:cudnn:512:max-autotune:fp8" -> its parts; "eager" scope = no compile; mode "default" = torch's."""
    scope, attention, tokens, *rest = text.split(":")
    if scope not in ("eager", "blocks", "model"):
        raise SystemExit(f"variant {text!r}: scope must be eager, blocks or model")
    mode = rest[0] if rest and rest[0] != "default" else None
    quantize = rest[1] if len(rest) > 1 else "none"
    return dict(name=text, scope=scope, attention="native" if device == "cpu" else attention, tokens=int(tokens),
                mode=mode, quantize=quantize)


def record_inference(report: Report, args, device: str, label: str, seconds: float, **extra) -> None:
    report.note(section="inference", variant=label, size=args.size, steps=args.steps, seconds=round(seconds, 3),
                s_per_step=round(seconds / args.steps, 4), peak_gib=peak_gib(device), **extra)


class guarded:
    """Record an exception as a result line and carry on with the next measurement."""

    def __init__(self, report: Report, what: str) -> None:
        self.report, self.what = report, what

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            self.report.note(section="error", what=self.what, error=f"{exc_type.__name__}: {exc}"[:500])
            return True
        return False


def _spec(device: str, dtype, **changes):
    from bookbug_assets.providers._local_pipelines import PipelineSpec

    name = {"torch.bfloat16": "bfloat16", "torch.float32": "float32"}[str(dtype)]
    return PipelineSpec(kind="flux", source="benchmark-random", device=device, dtype=name, **changes)


def provider_end_to_end(report: Report, args, cache, spec, device: str, text_tokens: int) -> None:
    """One page through LocalDiffusersProvider.submit/wait: prompt encode, denoise, VAE decode, PNG."""
    try:
        from bookbug_assets.providers.base import ImageRequest
        from bookbug_assets.providers.local_diffusers import LocalDiffusersProvider
    except ImportError as exc:  # e.g. pydantic missing on the GPU box
        report.note(section="provider", skipped=str(exc))
        return
    provider = LocalDiffusersProvider(flux_dev=spec.source, device=device, dtype=spec.dtype,
                                      attention_backend=spec.attention_backend, compile=spec.compile,
                                      compile_scope=spec.compile_scope, compile_mode=spec.compile_mode,
                                      fuse_qkv=spec.fuse_qkv, quantize=spec.quantize, num_inference_steps=args.steps,
                                      max_sequence_length=text_tokens, pipeline_cache=cache)
    req = ImageRequest(provider="local", model="flux-dev", kind="page", prompt="a ladybug reads under a mushroom",
                       width=max(64, args.size), height=max(64, args.size), seed=1)
    start = time.perf_counter()
    out = provider.wait(provider.submit(req, {}), req, deadline_s=600)
    seconds = time.perf_counter() - start
    report.note(section="provider", variant="submit+wait end to end", size=args.size, steps=args.steps,
                seconds=round(seconds, 3), png_bytes=len(out.image), extra=out.extra, peak_gib=peak_gib(device))


def bench_training(report: Report, args, device: str, dtype) -> None:
    import torch

    from bookbug_assets.providers._local_pipelines import (FLUX_DEV_TRANSFORMER_CONFIG, fp8_linear_count,
                                                           quantize_denoiser, set_attention_backend)
    from bookbug_assets.training.local import flux_lora

    config = TINY_TRANSFORMER if args.smoke else FLUX_DEV_TRANSFORMER_CONFIG
    transformer = random_transformer(config, device, dtype)
    quantize_denoiser(transformer, args.train_quantize_base, device)  # the trainer's quantize_base
    if device != "cpu":
        set_attention_backend(transformer, args.attention)  # and training_step excludes cuDNN on top
    params = flux_lora.add_lora(transformer, rank=16)
    if args.train_compile:
        transformer.compile_repeated_blocks()  # LoRA layers inside; graph breaks allowed (peft's dtype casts)
    transformer.train()
    optimizer = flux_lora.make_optimizer(params, lr=1e-4, weight_decay=1e-4, use_8bit=False, device=device)
    autocast = dtype if device != "cpu" else None
    channels = config["in_channels"] // 4
    vae_factor = 4 if args.smoke else 8
    text_len = 32 if args.smoke else 512
    probe = next(p for n, p in transformer.named_parameters() if "lora_B" in n)
    for size, checkpointing in args.train_cases:
        if report.time_left() < 45:
            report.note(section="training", size=size, skipped="out of time budget")
            continue
        if checkpointing:
            transformer.enable_gradient_checkpointing()
        else:
            transformer.disable_gradient_checkpointing()
        g = torch.Generator("cpu").manual_seed(size)
        latents = torch.randn(args.batch, channels, size // vae_factor, size // vae_factor, generator=g).to(device)
        embeds = (torch.randn(args.batch, text_len, config["joint_attention_dim"], generator=g) * 0.1).to(device)
        pooled = (torch.randn(args.batch, config["pooled_projection_dim"], generator=g) * 0.1).to(device)
        before = probe.detach().clone()
        try:
            reset_peak(device)
            losses = []
            first, first_step = time.perf_counter(), 0.0
            for i in range(args.train_warmup + args.train_steps):
                if i == 1:
                    sync(device)
                    first_step = time.perf_counter() - first  # includes compile when --train-compile
                if i == args.train_warmup:
                    sync(device)
                    start = time.perf_counter()
                losses.append(flux_lora.training_step(transformer, optimizer, params, latents, embeds, pooled,
                                                      generator=g, autocast_dtype=autocast))
            sync(device)
            seconds = (time.perf_counter() - start) / args.train_steps
            moved = float((probe.detach() - before).abs().max())
            report.note(section="training", size=size, rank=16, batch=args.batch,
                        gradient_checkpointing=checkpointing, s_per_step=round(seconds, 4), peak_gib=peak_gib(device),
                        loss=round(float(losses[-1]), 5), loss_finite=bool(torch.isfinite(losses[-1])),
                        lora_B_moved=moved > 0, trainable_params=sum(p.numel() for p in params),
                        attention=args.attention if device != "cpu" else "native (cuDNN excluded)",
                        compiled=args.train_compile, first_step_s=round(first_step, 2),
                        quantized_linears=fp8_linear_count(transformer))
        except torch.OutOfMemoryError as exc:
            report.note(section="training", size=size, gradient_checkpointing=checkpointing, error=f"OOM: {exc}"[:300])
            optimizer.zero_grad(set_to_none=True)
            gc.collect()
            torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU, checks the script end to end")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--attention", default="flash", choices=["flash", "efficient"],
                        help="SDPA backend for training (never cuDNN: its backward crashed on an H200)")
    parser.add_argument("--eager-backends", default="flash,efficient,cudnn",
                        help="comma list of attention backends timed eager with our set-up")
    parser.add_argument("--variants", nargs="*", default=DEFAULT_VARIANTS,
                        help="set-ups scope:attention:text_tokens[:compile mode[:quantize]], scope eager|blocks|model, "
                             "mode default|max-autotune|max-autotune-no-cudagraphs|reduce-overhead, quantize "
                             "none|fp8|fp8-weight; the first is 'ours'")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--skip-inference", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--train-cases", nargs="*", default=None,
                        help="size:checkpointing pairs, e.g. 512:0 1024:1 (default 512:0 1024:0 1024:1)")
    parser.add_argument("--train-compile", choices=["auto", "on", "off"], default="auto",
                        help="regional torch.compile of the LoRA'd blocks; auto = on for CUDA, like the trainer")
    parser.add_argument("--train-quantize-base", choices=["none", "fp8-weight"], default="none",
                        help="fp8 base weights for every training case, like the trainer's quantize_base")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--train-warmup", type=int, default=2)
    parser.add_argument("--budget-s", type=float, default=480, help="stop starting new sections after this")
    parser.add_argument("--json", default=None, help="write results here as they come")
    args = parser.parse_args(argv)

    import torch

    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    args.steps = args.steps or (4 if args.smoke else 28)
    args.size = args.size or (64 if args.smoke else 1024)
    args.train_compile = args.train_compile == "on" or (args.train_compile == "auto" and device == "cuda")
    default_cases = ["64:0", "128:1"] if args.smoke else ["512:0", "1024:0", "1024:1"]
    args.train_cases = [(int(c.split(":")[0]), c.split(":")[1] == "1") for c in (args.train_cases or default_cases)]
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: threads only contend
    report = Report(args.json, time.monotonic() + args.budget_s)
    import diffusers

    report.data["environment"] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "diffusers": diffusers.__version__, "cuda": torch.version.cuda,
        "dtype": str(dtype), "smoke": args.smoke}
    print("ENV " + json.dumps(report.data["environment"]), flush=True)
    anchors: dict[str, float] = {}
    if not args.skip_inference:
        bench_inference(report, args, device, dtype, anchors)
        if device == "cuda":
            torch._dynamo.reset()  # drop compiled graphs before training
            gc.collect()
            torch.cuda.empty_cache()
    if not args.skip_training:
        with guarded(report, "training"):
            bench_training(report, args, device, dtype)
    if anchors.get("ours"):
        print(f"RATIO stock eager {anchors['stock']:.3f} s / ours {anchors['ours']:.3f} s for {args.steps} steps at "
              f"{args.size}x{args.size} = {anchors['stock'] / anchors['ours']:.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
