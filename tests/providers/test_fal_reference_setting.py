"""BOOKBUG_FAL_UPLOAD_REFERENCES: the setting reaches FalProvider through the ImageProviders resource, so a gateway
without fal's storage API gets references inline as data URIs (fal documents base64 data URIs as file inputs:
https://docs.fal.ai/documentation/model-apis/fal-cdn, "Data URIs"). Against FakeFal, through fal-client."""

import dagster as dg
import pytest

from bookbug_assets.defs.resources import providers_from_env
from bookbug_assets.providers.base import ConfigurationError
from tests.providers.test_fal_provider import HERO, KEY, SPRITE, fake, refs, request, run  # noqa: F401 - fixture


def _fal_from_env(monkeypatch, url: str, upload: str | None):
    monkeypatch.setenv("FAL_KEY", KEY)
    monkeypatch.setenv("BOOKBUG_FAL_BASE_URL", url)
    monkeypatch.setenv("BOOKBUG_POLL_INTERVAL_S", "0.02")
    if upload is None:
        monkeypatch.delenv("BOOKBUG_FAL_UPLOAD_REFERENCES", raising=False)
    else:
        monkeypatch.setenv("BOOKBUG_FAL_UPLOAD_REFERENCES", upload)
    with dg.build_resources({"image_providers": providers_from_env()}) as built:  # EnvVar resolved as in a run
        return built.image_providers.provider("fal")


@pytest.mark.parametrize("off", ["false", "0", "no", "OFF"])
def test_references_travel_inline_when_the_setting_is_off(monkeypatch, fake, off):
    provider = _fal_from_env(monkeypatch, fake.url, off)
    references, data = refs(SPRITE, HERO)
    run(provider, request("fal-ai/flux-2", references=references), data)
    urls = fake.submitted[-1]["input"]["image_urls"]
    assert fake.uploads == [] and len(urls) == 2
    assert all(u.startswith("data:image/png;base64,") for u in urls), urls


def test_references_are_uploaded_by_default(monkeypatch, fake):
    provider = _fal_from_env(monkeypatch, fake.url, None)
    references, data = refs(SPRITE, HERO)
    run(provider, request("fal-ai/flux-2", references=references), data)
    urls = fake.submitted[-1]["input"]["image_urls"]
    assert len(fake.uploads) == 2 and not any(u.startswith("data:") for u in urls)
    assert [fake._local_bytes(u) for u in urls] == [SPRITE, HERO]


def test_a_bad_value_names_the_variable(monkeypatch, fake):
    with pytest.raises(ConfigurationError, match="BOOKBUG_FAL_UPLOAD_REFERENCES='sometimes'"):
        _fal_from_env(monkeypatch, fake.url, "sometimes")
