"""Issue 14 item 9, local sources: only a regular file inside the models folder that is a LoRA of its family."""

from __future__ import annotations

import os

import pytest

from bookbug_assets.training.lora_file import MAX_HEADER_BYTES
from bookbug_assets.training.lora_source import LoraSourceError, load_lora_source, read_local_lora
from tests.training.lora_files import (
    FLUX2_SHAPED_LORA, FLUX_LORA, KOHYA_FLUX_LORA, NOT_A_LORA, SDXL_LORA, with_header_length,
)


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "meadow.safetensors").write_bytes(FLUX_LORA)
    return folder


@pytest.fixture
def secret(tmp_path):
    """A file elsewhere on the machine, like /etc/shadow or one in the home folder."""
    path = tmp_path / "home" / "secret.txt"
    path.parent.mkdir()
    path.write_text("root:$6$hash:19000:0:99999:7:::\n")
    return path


def refused(source: str, models, family: str = "flux1", **kw) -> str:
    with pytest.raises(LoraSourceError) as caught:
        load_lora_source(source, family, models, **kw)
    return str(caught.value)


def test_a_lora_in_the_models_folder_is_read_by_relative_or_absolute_path(models):
    assert load_lora_source("meadow.safetensors", "flux1", models) == FLUX_LORA
    assert load_lora_source(str(models / "meadow.safetensors"), "flux1", models) == FLUX_LORA
    (models / "kohya.safetensors").write_bytes(KOHYA_FLUX_LORA)
    assert load_lora_source("kohya.safetensors", "flux1", models) == KOHYA_FLUX_LORA
    (models / "sdxl.safetensors").write_bytes(SDXL_LORA)
    assert load_lora_source("sdxl.safetensors", "sdxl", models) == SDXL_LORA


def test_a_file_outside_the_models_folder_is_refused(models, secret):
    assert "outside the models folder" in refused(str(secret), models)
    assert "outside the models folder" in refused("../home/secret.txt", models)
    assert "outside the models folder" in refused("/etc/passwd", models)


def test_a_link_out_of_the_models_folder_is_refused(models, secret):
    (models / "leak.safetensors").symlink_to(secret)
    assert "link that leads outside the models folder" in refused("leak.safetensors", models)
    (models / "sub").symlink_to(secret.parent, target_is_directory=True)
    assert "link that leads outside" in refused("sub/secret.txt", models)


def test_a_link_that_stays_inside_the_models_folder_is_read(models):
    (models / "current.safetensors").symlink_to(models / "meadow.safetensors")
    assert load_lora_source("current.safetensors", "flux1", models) == FLUX_LORA


def test_a_fifo_is_refused_without_blocking(models):
    os.mkfifo(models / "pipe.safetensors")
    assert "is a FIFO, not a regular file" in refused("pipe.safetensors", models)


def test_a_folder_and_a_missing_file_are_refused(models):
    (models / "dir.safetensors").mkdir()
    assert "is a folder" in refused("dir.safetensors", models)
    assert "no such file" in refused("gone.safetensors", models)


def test_without_a_models_folder_a_local_source_is_refused(tmp_path):
    assert "BOOKBUG_MODELS_DIR" in refused("meadow.safetensors", tmp_path / "nowhere")


@pytest.mark.parametrize("content,reason", [
    (b"root:$6$hash:19000:0:99999:7:::\n", "not a safetensors file"),
    (b"", "not a safetensors file"),
    (with_header_length(MAX_HEADER_BYTES + 1), f"at most {MAX_HEADER_BYTES}"),
    (with_header_length(2 ** 63), "header length field"),
    (with_header_length(4096, b'{"a": 1}'), "the file has"),  # longer than the file
    (with_header_length(8, b"not json"), "header is not JSON"),
    (with_header_length(2, b"[]"), "not a JSON object"),
    (NOT_A_LORA, "no lora_A/lora_B"),
    (FLUX_LORA + b"trailing", "the file has"),
])
def test_a_file_that_is_not_a_lora_is_refused(models, content, reason):
    (models / "x.safetensors").write_bytes(content)
    message = refused("x.safetensors", models)
    assert reason in message and message.startswith("x.safetensors is not")


@pytest.mark.parametrize("content,family,reason", [
    (SDXL_LORA, "flux1", "not a flux1 LoRA"),
    (FLUX2_SHAPED_LORA, "flux1", "single-stream block 40"),
    (FLUX_LORA, "sdxl", "not an sdxl LoRA"),
])
def test_a_lora_of_another_model_is_refused(models, content, family, reason):
    (models / "x.safetensors").write_bytes(content)
    assert reason in refused("x.safetensors", models, family)


def test_a_file_over_the_size_cap_is_refused_before_it_is_read(models):
    with pytest.raises(LoraSourceError, match="over the 64-byte cap"):
        read_local_lora("meadow.safetensors", "flux1", models, max_bytes=64)
