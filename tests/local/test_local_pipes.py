"""A local LoRA run through a real Dagster Pipes subprocess, inside an asset materialized on an ephemeral instance."""

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("peft")

import dagster as dg  # noqa: E402

from bookbug_assets.defs.styles.local_training import run_local_lora_training
from bookbug_assets.training.local import LocalTrainingConfig, LocalTrainingResult  # noqa: E402

pytestmark = pytest.mark.local_gpu


def test_pipes_run_reports_progress_samples_and_metadata(tmp_path, tiny_dataset):
    config = LocalTrainingConfig(tiny_random=True, steps=4, rank=4, resolutions=(64,), checkpoint_every=2,
                                 sample_every=2, sample_resolution=64, sample_steps=2, log_every=1,
                                 max_sequence_length=32, learning_rate=1e-3)
    results: list[LocalTrainingResult] = []

    @dg.asset
    def tiny_style_lora(context: dg.AssetExecutionContext, pipes_subprocess_client: dg.PipesSubprocessClient):
        result = run_local_lora_training(
            context, pipes_subprocess_client, dataset_dir=str(tiny_dataset), output_dir=str(tmp_path / "lora"),
            trigger_word="bbstyle", config=config,
            env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})  # one thread: tiny models on a 2-core runner
        results.append(result)
        return dg.MaterializeResult(metadata={"sha256": result.sha256, "final_loss": result.final_loss,
                                              "steps": result.steps}, data_version=dg.DataVersion(result.sha256))

    instance = dg.DagsterInstance.ephemeral()
    outcome = dg.materialize([tiny_style_lora], instance=instance,
                             resources={"pipes_subprocess_client": dg.PipesSubprocessClient()})
    assert outcome.success
    (result,) = results
    assert result.steps == 4 and result.start_step == 0 and result.rank == 4
    assert [s for s, _ in result.losses] == [1, 2, 3, 4]  # one progress message per step (log_every=1)
    assert len(result.samples) == 2
    assert result.metadata["trainable_params"] > 0 and result.metadata["device"] == "cpu"
    assert result.metadata["loss_curve"][-1][0] == 4

    mat = outcome.asset_materializations_for_node("tiny_style_lora")[0]
    assert mat.metadata["sha256"].value == result.sha256
    logs = [e.message for e in instance.all_logs(outcome.run_id) if e.message]
    assert any("step 4/4" in m for m in logs), "Pipes log lines reach the run's event log"
