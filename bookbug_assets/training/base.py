"""What a LoRA training produces, and the interface every trainer implements.

Like image jobs, a training is split into `submit` (one create call, returns the job id) and
`wait` (poll, then download the weights at once): the caller journals the id in between, so a
restarted step resumes the same paid training instead of starting another.
"""

from __future__ import annotations

import hashlib
import json
import struct
from abc import ABC, abstractmethod

from pydantic import BaseModel, ConfigDict, Field

from bookbug_assets.providers.base import LoraFamily, LoraRef


class TrainedLora(BaseModel):
    """A finished training: the weights (kept by us, remote copies expire) and where it came from."""

    model_config = ConfigDict(frozen=True)

    weights: bytes | None = Field(default=None, repr=False)  # the .safetensors file
    weights_path: str | None = None  # or where it was written, when the caller asked for a file
    sha256: str
    # Replicate: the destination version "owner/model:version"; fal: the diffusers_lora_file URL.
    remote_ref: str | None = None
    trigger_word: str
    steps: int
    rank: int
    cost_usd: float
    duration_s: float
    family: LoraFamily = "flux1"
    provider: str = ""
    job_id: str = ""
    weights_url: str | None = None  # the download URL used; Replicate deletes it after about an hour

    def to_lora_ref(self, name: str, key: str | None = None, scale: float = 1.0) -> LoraRef:
        """The pinned reference image requests carry (`key`: where the weights file is stored)."""
        return LoraRef(name=name, family=self.family, sha256=self.sha256, key=key, remote_ref=self.remote_ref,
                       trigger_word=self.trigger_word, scale=scale)


class LoraTrainer(ABC):
    name: str = "base"

    @abstractmethod
    def submit(self, dataset_zip: bytes, trigger_word: str, steps: int, rank: int,
               destination: str | None = None) -> str:
        """Upload the dataset and start one training; return its id without waiting."""

    @abstractmethod
    def wait(self, job_id: str, deadline_s: float) -> TrainedLora:
        """Block until the training ends (or `deadline_s` seconds pass: cancel, transient error)."""

    def cancel(self, job_id: str) -> None:  # noqa: B027 - optional
        """Cancel a remote training; best effort."""

    @abstractmethod
    def price_usd(self, steps: int) -> float:
        """What a training of `steps` steps is expected to cost, for the budget check before submit."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safetensors_rank(data: bytes) -> int | None:
    """The LoRA rank read from a safetensors header (first lora_A / lora_down matrix), if any.

    fal's trainer takes no rank input, so the file itself is the honest source.
    """
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
    except (struct.error, ValueError):
        return None
    for name, entry in header.items():
        if name != "__metadata__" and ("lora_A" in name or "lora_down" in name):
            shape = entry.get("shape") or []
            if len(shape) == 2:
                return int(shape[0])
    return None
