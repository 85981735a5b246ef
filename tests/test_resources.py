"""ImageProviders' local settings: read from BOOKBUG_LOCAL_*, checked when the definitions load (no torch needed)."""

import hashlib
import json

import pytest

from bookbug_assets.rendering import make_request
from bookbug_assets.providers.base import ConfigurationError, ImageRequest, ModelCapabilities
from bookbug_assets.defs.resources import LocalGpuSettings
from bookbug_assets.stories import load_story_file
from tests.conftest import EXAMPLE


def test_settings_come_from_their_variables():
    settings = LocalGpuSettings.from_env({"BOOKBUG_LOCAL_COMPILE": "true", "BOOKBUG_LOCAL_QUANTIZE": "fp8-weight",
                                          "BOOKBUG_LOCAL_STEP_CACHE": "0.08", "BOOKBUG_LOCAL_DEVICE": ""})
    assert settings.compile is True and settings.quantize == "fp8-weight" and settings.step_cache == 0.08
    assert settings.device == "auto"  # an empty variable is an unset one
    assert "train_quantize_base" not in settings.provider_kwargs()  # the trainer's, not the provider's


@pytest.mark.parametrize(("name", "value"), [
    ("BOOKBUG_LOCAL_STEP_CACHE", "fast"), ("BOOKBUG_LOCAL_STEP_CACHE", "-0.1"), ("BOOKBUG_LOCAL_QUANTIZE", "int3"),
    ("BOOKBUG_LOCAL_OFFLOAD", "disk"), ("BOOKBUG_LOCAL_ATTENTION_BACKEND", "sage"),
    ("BOOKBUG_LOCAL_MAX_SEQUENCE_LENGTH", "1024"),
])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(ConfigurationError, match=f"{name}='{value}'"):
        LocalGpuSettings.from_env({name: value})


def test_definitions_refuse_a_bad_local_setting(monkeypatch, tmp_path):
    from bookbug_assets.definitions import build_definitions

    monkeypatch.setenv("BOOKBUG_LOCAL_QUANTIZE", "nf4")
    with pytest.raises(ConfigurationError, match="BOOKBUG_LOCAL_QUANTIZE"):
        build_definitions(data_root=str(tmp_path), stories_dir=str(tmp_path), styles_dir=str(tmp_path))


def test_an_empty_variant_keeps_the_old_cache_key_and_a_variant_changes_it():
    request = ImageRequest(provider="local", model="flux-dev", kind="page", prompt="a mouse", width=64, height=64,
                           seed=1)
    before_the_field = {k: v for k, v in request.model_dump(mode="json").items() if k != "variant"}
    old_key = hashlib.sha256(json.dumps(before_the_field, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert request.cache_key() == old_key  # books cached before variants existed stay cached
    lossy = request.model_copy(update={"variant": "quantize=fp8-weight"})
    assert lossy.cache_key() != request.cache_key()


def test_a_book_request_carries_the_providers_variant():
    story = load_story_file(EXAMPLE, {"soft-meadow"})
    caps = ModelCapabilities(model="flux-dev", variant="quantize=fp8")
    request = make_request(family="local", model="flux-dev", caps=caps, story=story, profile={}, kind="page",
                           prompt="p", seed_name="page-001", references=(), character_ids=None, label="page 1",
                           scene="")
    assert request.variant == "quantize=fp8"


def test_the_local_trainer_trains_on_the_base_the_provider_renders_with(tmp_path):
    from bookbug_assets.styles import StyleConfig
    from bookbug_assets.training.run import local_training_config

    style = StyleConfig(name="s", trainer="local", training_steps=10, lora_rank=4)
    (tmp_path / "FLUX.1-dev").mkdir()
    from_dir = local_training_config(LocalGpuSettings(model_dir=str(tmp_path), train_quantize_base="fp8-weight"),
                                     style)
    assert from_dir.base_model == str(tmp_path / "FLUX.1-dev") and from_dir.quantize_base == "fp8-weight"
    assert from_dir.resolutions == (512, 768, 1024) and not from_dir.tiny_random
    explicit = local_training_config(LocalGpuSettings(model_dir=str(tmp_path), flux_dev="me/my-flux"), style)
    assert explicit.base_model == "me/my-flux"
    tiny = local_training_config(LocalGpuSettings(model_dir="tiny-random", device="cpu"), style)
    assert tiny.tiny_random and tiny.resolutions == (64,) and tiny.device == "cpu"


@pytest.mark.parametrize(("value", "expected"), [("", 12), ("  ", 12), ("4", 4)])
def test_numeric_settings_treat_empty_as_unset(monkeypatch, tmp_path, value, expected):
    from bookbug_assets.definitions import build_definitions

    monkeypatch.setenv("BOOKBUG_MAX_CONCURRENCY", value)
    defs = build_definitions(data_root=str(tmp_path), stories_dir=str(tmp_path), styles_dir=str(tmp_path))
    assert defs.resources["image_providers"].max_concurrency == expected


@pytest.mark.parametrize(("name", "value"), [("BOOKBUG_MAX_CONCURRENCY", "twelve"), ("BOOKBUG_MAX_ATTEMPTS", "0"),
                                             ("BOOKBUG_POLL_INTERVAL_S", "1s")])
def test_a_bad_number_names_its_variable(monkeypatch, tmp_path, name, value):
    from bookbug_assets.definitions import build_definitions

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"{name}='{value}'"):
        build_definitions(data_root=str(tmp_path), stories_dir=str(tmp_path), styles_dir=str(tmp_path))
