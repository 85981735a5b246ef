"""The local backend's Dagster-side modules must not import torch (definitions load in every process)."""

import subprocess
import sys


def test_provider_and_launcher_import_without_torch():
    code = (
        "import sys\n"
        "import bookbug_assets.providers._local_pipelines\n"
        "import bookbug_assets.training.local as local\n"
        "import bookbug_assets.defs.styles.local_training, bookbug_assets.training.local.config\n"
        "local.LocalTrainingConfig\n"
        "try:\n"
        "    import bookbug_assets.providers.local_diffusers\n"
        "except Exception:\n"
        "    pass  # without the [local] extra only its construction may fail, never its import\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'peft') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
