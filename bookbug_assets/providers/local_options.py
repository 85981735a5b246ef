"""The local family's option names, without torch: the Dagster resource checks its settings against these
when the definitions load, so a wrong value fails naming its variable, not in the middle of a run."""

TINY_RANDOM = "tiny-random"

PIPELINE_KINDS = ("flux", "flux_kontext", "sdxl")
OFFLOAD_MODES = ("none", "model", "sequential")
# Names accepted for `attention_backend`. cuDNN attention is offered for inference only: its backward
# pass crashed with an illegal memory access on an H200 (seen on an H200 during this project's benchmark runs), so the trainer refuses it.
ATTENTION_BACKENDS = ("auto", "native", "flash", "efficient", "math", "cudnn")
# torchao quantization of the denoiser's linear layers. "fp8": fp8 weights *and* fp8 matmuls on dynamically
# scaled activations (sm89+: Ada, Hopper), the fast path; "fp8-weight": fp8 weights computed in the
# pipeline's dtype, any device: half the transformer's memory (12 GB instead of 24 GB for FLUX.1-dev), no speed-up.
QUANTIZE_MODES = ("none", "fp8", "fp8-weight")
