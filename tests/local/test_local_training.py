"""The local FLUX LoRA trainer on tiny random models (CPU, offline): learning, saving, resuming, samples."""

import hashlib
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

from bookbug_assets.providers._local_pipelines import TINY_RANDOM  # noqa: E402
from bookbug_assets.providers._tiny_models import build_tiny_flux_components  # noqa: E402
from bookbug_assets.providers.base import ImageRequest, LoraRef  # noqa: E402
from bookbug_assets.providers.local_diffusers import LocalDiffusersProvider  # noqa: E402
from bookbug_assets.training.local import flux_lora  # noqa: E402
from bookbug_assets.training.local.config import DEFAULT_TARGETS, LocalTrainingConfig  # noqa: E402
from bookbug_assets.training.local.data import apply_trigger, bucket_sizes, nearest_bucket, scan_dataset  # noqa: E402
from bookbug_assets.training.local.trainer import train_lora  # noqa: E402

pytestmark = pytest.mark.local_gpu


def tiny_config(**overrides) -> LocalTrainingConfig:
    base = dict(tiny_random=True, steps=4, rank=4, resolutions=(64,), learning_rate=1e-3, checkpoint_every=2,
                sample_every=0, log_every=1, max_sequence_length=32, save_dtype="float32", caption_dropout=0.2)
    return LocalTrainingConfig(**{**base, **overrides})


def fixed_sample():
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 4, 16, 16, generator=g)
    embeds, pooled = torch.randn(1, 8, 32, generator=g), torch.randn(1, 32, generator=g)
    noise, sigmas = torch.randn(1, 4, 16, 16, generator=g), torch.tensor([0.6])
    return latents, embeds, pooled, noise, sigmas


def tiny_transformer_with_lora(rank=4, alpha=None):
    transformer = build_tiny_flux_components(0)["transformer"]
    params = flux_lora.add_lora(transformer, rank=rank, alpha=alpha)
    return transformer, params


def test_training_lowers_the_loss_on_a_fixed_sample():
    latents, embeds, pooled, _, _ = fixed_sample()
    transformer, params = tiny_transformer_with_lora(rank=8)
    optimizer = flux_lora.make_optimizer(params, lr=3e-2, weight_decay=0.0, use_8bit=True, device="cpu")

    def fixed_draws():
        # training_step draws noise, then sigmas, from its generator: a fresh seed-0 generator is one fixed sample.
        return torch.Generator().manual_seed(0)

    def loss_now() -> float:
        g = fixed_draws()
        noise = torch.randn(latents.shape, generator=g)
        sigmas = flux_lora.sample_sigmas(1, g, "logit_normal")
        with torch.no_grad():
            return float(flux_lora.flow_matching_loss(transformer, latents, embeds, pooled, noise, sigmas))

    before = loss_now()
    losses = [float(flux_lora.training_step(transformer, optimizer, params, latents, embeds, pooled,
                                            generator=fixed_draws())) for _ in range(30)]
    assert losses[0] == pytest.approx(before, rel=1e-5)  # the step's loss is the loss of that sample
    assert loss_now() < 0.6 * before
    assert losses[-1] < losses[10] < losses[0]


def test_save_then_reload_reproduces_outputs(tmp_path):
    from diffusers import FluxPipeline

    latents, embeds, pooled, noise, sigmas = fixed_sample()
    # alpha != rank: the reload is exact only if the adapter metadata (the 2x scale) travels in the header.
    transformer, params = tiny_transformer_with_lora(rank=4, alpha=8)
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        flux_lora.training_step(transformer, optimizer, params, latents, embeds, pooled, generator=generator)
    path = tmp_path / flux_lora.LORA_WEIGHT_NAME
    sha = flux_lora.save_lora_file(transformer, str(path), dtype="float32", extra_metadata={"bookbug_note": "x"})
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()

    pipe = FluxPipeline(**build_tiny_flux_components(0))
    pipe.load_lora_weights(str(path), adapter_name="style")
    with torch.no_grad():
        trained = flux_lora.flow_matching_loss(transformer, latents, embeds, pooled, noise, sigmas)
        reloaded = flux_lora.flow_matching_loss(pipe.transformer, latents, embeds, pooled, noise, sigmas)
        pipe.set_adapters(["style"], adapter_weights=[0.0])
        base = flux_lora.flow_matching_loss(pipe.transformer, latents, embeds, pooled, noise, sigmas)
    assert abs(float(trained) - float(reloaded)) < 1e-5
    assert abs(float(trained) - float(base)) > 1e-4  # the adapter did change the model

    from safetensors import safe_open

    with safe_open(str(path), "pt") as fh:
        keys, meta = list(fh.keys()), fh.metadata()
    assert all(k.startswith("transformer.") and (".lora_A." in k or ".lora_B." in k) for k in keys)
    assert '"transformer.lora_alpha": 8' in meta["lora_adapter_metadata"]


def test_trainer_writes_a_lora_the_provider_uses(tmp_path, tiny_dataset, pipeline_cache):
    config = tiny_config(steps=6, learning_rate=2e-2, sample_every=3, sample_resolution=64, sample_steps=2,
                         checkpoint_every=0)
    summary = train_lora(config, dataset_dir=str(tiny_dataset), output_dir=str(tmp_path / "out"),
                         trigger_word="bbstyle")
    assert summary.steps == 6 and summary.start_step == 0 and summary.rank == 4
    assert [s for s, _ in summary.losses] == [1, 2, 3, 4, 5, 6]
    assert len(summary.samples) == 2 and all(p.endswith(".png") for p in summary.samples)
    assert summary.trainable_params > 0

    provider = LocalDiffusersProvider(model_dir=TINY_RANDOM, device="cpu", num_inference_steps=2,
                                      max_sequence_length=32, pipeline_cache=pipeline_cache,
                                      lora_path_resolver=lambda lora: summary.weights_path)
    lora = LoraRef(name="tiny", family="flux1", sha256=summary.sha256, key="loras/tiny", trigger_word="bbstyle")

    def render(with_lora):
        req = ImageRequest(provider="local", model="flux-dev", kind="page", prompt="bbstyle, a beetle", width=64,
                           height=64, seed=3, lora=lora if with_lora else None)
        out = provider.wait(provider.submit(req, {}), req, deadline_s=60)
        return out.image, out.extra["lora_adapter"]

    styled, adapter = render(True)
    plain, none = render(False)
    assert adapter and none is None
    assert styled != plain
    assert render(True)[0] == styled  # adapter re-enabled after a plain page


def test_resumed_run_continues_from_the_checkpoint_step(tmp_path, tiny_dataset):
    straight = train_lora(tiny_config(steps=6), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path / "a"),
                          trigger_word="bbstyle")
    first = train_lora(tiny_config(steps=4), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path / "b"),
                       trigger_word="bbstyle")
    assert (tmp_path / "b" / "checkpoints" / "step-0000004").is_dir()
    assert len(list((tmp_path / "b" / "checkpoints").iterdir())) == 2  # keep_checkpoints
    resumed = train_lora(tiny_config(steps=6), dataset_dir=str(tiny_dataset), output_dir=str(tmp_path / "b"),
                         trigger_word="bbstyle")
    assert first.start_step == 0 and resumed.start_step == 4
    # Same batches, noise and optimizer state as the uninterrupted run: the same losses and weights.
    assert [s for s, _ in resumed.losses] == [1, 2, 3, 4, 5, 6]
    for (_, a), (_, b) in zip(straight.losses, resumed.losses):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6)
    from safetensors.torch import load_file

    wa, wb = load_file(straight.weights_path), load_file(resumed.weights_path)
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_dataset_captions_trigger_and_buckets(tiny_dataset):
    examples = scan_dataset(tiny_dataset, "bbstyle")
    assert [e.caption for e in examples] == ["bbstyle a ladybug with a lantern", "bbstyle, a beetle number 1 in a meadow",
                                             "bbstyle, a beetle number 2 in a meadow"]
    assert apply_trigger("bbstyle in a field", "bbstyle") == "bbstyle in a field"
    buckets = bucket_sizes(1024, 64)
    assert (1024, 1024) in buckets and all(w % 64 == 0 and h % 64 == 0 for w, h in buckets)
    assert nearest_bucket(1600, 1200, buckets) == (1152, 896) or nearest_bucket(1600, 1200, buckets)[0] > 1024


def test_config_targets_match_the_trainer():
    assert DEFAULT_TARGETS == flux_lora.DEFAULT_TARGET_MODULES
    with pytest.raises(ValueError):
        LocalTrainingConfig(attention_backend="cudnn")  # its backward crashed on an H200


def test_lora_trains_on_fp8_base_weights(tmp_path, tiny_dataset):
    from torchao.quantization import Float8Tensor

    from bookbug_assets.providers._local_pipelines import quantize_denoiser

    # The fixed-sample check of the full-precision test, on a base whose linear weights are fp8.
    latents, embeds, pooled, _, _ = fixed_sample()
    transformer = build_tiny_flux_components(0)["transformer"]
    quantize_denoiser(transformer, "fp8-weight", "cpu")
    assert isinstance(transformer.transformer_blocks[0].attn.to_q.weight, Float8Tensor)
    params = flux_lora.add_lora(transformer, rank=8)
    optimizer = flux_lora.make_optimizer(params, lr=3e-2, weight_decay=0.0, use_8bit=False, device="cpu")
    losses = [float(flux_lora.training_step(transformer, optimizer, params, latents, embeds, pooled,
                                            generator=torch.Generator().manual_seed(0))) for _ in range(20)]
    assert losses[-1] < 0.8 * losses[0]

    # And the trainer end to end: the weights it writes are plain fp32 LoRA tensors any base can load.
    summary = train_lora(tiny_config(quantize_base="fp8-weight"), dataset_dir=str(tiny_dataset),
                         output_dir=str(tmp_path / "fp8"), trigger_word="bbstyle")
    assert summary.steps == 4 and all(math.isfinite(loss) for _, loss in summary.losses)
    assert summary.base_weights == "fp8"  # read off the trained model, not the config
    from diffusers import FluxPipeline

    pipe = FluxPipeline(**build_tiny_flux_components(0))
    pipe.load_lora_weights(summary.weights_path, adapter_name="style")
    assert "style" in pipe.get_list_adapters()["transformer"]


class Log:
    """A trainer reporter that keeps the log lines (the Pipes one sends them to Dagster)."""

    def __init__(self):
        self.lines = []

    def progress(self, *args):
        pass

    def sample(self, *args):
        pass

    def checkpoint(self, *args):
        pass

    def log(self, message):
        self.lines.append(message)


@pytest.mark.parametrize(("log_every", "caught_at"), [(3, 3), (5, 4)])  # at a report, or at a checkpoint
def test_a_diverged_run_stops_before_saving_anything_broken(tmp_path, tiny_dataset, monkeypatch, log_every,
                                                             caught_at):
    from bookbug_assets.training.local import trainer

    real_step = trainer.training_step
    calls = []

    def nan_from_step_3(*args, **kwargs):
        calls.append(1)
        loss = real_step(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 3 else loss

    monkeypatch.setattr(trainer, "training_step", nan_from_step_3)
    out = tmp_path / "out"
    with pytest.raises(trainer.TrainingDiverged, match=f"by step {caught_at}") as err:
        train_lora(tiny_config(steps=6, log_every=log_every, checkpoint_every=2), dataset_dir=str(tiny_dataset),
                   output_dir=str(out), trigger_word="bbstyle")
    assert "step-0000002" in str(err.value) and "learning_rate" in str(err.value)
    assert [p.name for p in trainer.checkpoint_dirs(out)] == ["step-0000002"]  # nothing diverged was saved
    assert not (out / flux_lora.LORA_WEIGHT_NAME).exists()


def test_the_trainer_measures_and_flags_a_lora_that_does_nothing(tmp_path, tiny_dataset):
    trained = train_lora(tiny_config(checkpoint_every=0), dataset_dir=str(tiny_dataset),
                         output_dir=str(tmp_path / "trained"), trigger_word="bbstyle")
    assert trained.lora_effect > 1e-3  # 0.0075 measured after 4 steps at lr 1e-3
    log = Log()
    idle = train_lora(tiny_config(checkpoint_every=0, learning_rate=1e-9), dataset_dir=str(tiny_dataset),
                      output_dir=str(tmp_path / "idle"), trigger_word="bbstyle", reporter=log)
    assert idle.lora_effect < 1e-3
    assert any("barely show" in line for line in log.lines)
