"""The one place that wires Definitions. Importing this module must stay light: no torch."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from bookbug_assets.assets.book import book_pdf, story
from bookbug_assets.assets.characters import build_reference_assets
from bookbug_assets.assets.experiments import provider_experiment
from bookbug_assets.assets.ledger import generation_ledger
from bookbug_assets.assets.pages import build_book_pages
from bookbug_assets.assets.reports import cost_report
from bookbug_assets.assets.style import build_style_assets
from bookbug_assets.checks import book_pdf_preflight, hero_page_quality, sprite_sheet_quality
from bookbug_assets.golden import golden_books_job
from bookbug_assets.providers.base import ConfigurationError
from bookbug_assets.providers.registry import pool_for
from bookbug_assets.resources import BookbugStorage, ImageProviders, LocalGpuSettings
from bookbug_assets.sensors import story_folder_sensor
from bookbug_assets.sensors_review import review_sensor


def _env(name: str) -> dg.EnvVar | None:
    """Secrets only as EnvVar (the UI shows the variable's name); absent means 'not configured'."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _number(name: str, default, kind):
    """A numeric setting; unset or empty means the default, anything else must parse (the error names it)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a {'whole number' if kind is int else 'number'}") from None
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r} must be greater than 0")
    return value


def build_definitions(data_root: str | None = None, stories_dir: str | None = None,
                      styles_dir: str | None = None) -> dg.Definitions:
    storage = BookbugStorage(
        data_root=data_root or os.environ.get("BOOKBUG_DATA_ROOT", "data/outputs"),
        stories_dir=stories_dir or os.environ.get("BOOKBUG_STORIES_DIR", "data/stories"),
        styles_dir=styles_dir or os.environ.get("BOOKBUG_STYLES_DIR", "data/styles"),
        s3_bucket=os.environ.get("BOOKBUG_S3_BUCKET") or None,
        s3_prefix=os.environ.get("BOOKBUG_S3_PREFIX", "outputs"),
        s3_stories_prefix=os.environ.get("BOOKBUG_S3_STORIES_PREFIX") or None,
        s3_endpoint_url=os.environ.get("BOOKBUG_S3_ENDPOINT_URL") or None,
        s3_region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    )
    sensors = [story_folder_sensor, review_sensor]
    resources = {"storage": storage}
    if storage.s3_bucket and storage.s3_stories_prefix:
        # Imported only when configured: the default definitions stay free of boto3 work.
        from dagster_aws.s3 import S3Resource

        from bookbug_assets.sensors_s3 import build_s3_story_sensor

        sensors.append(build_s3_story_sensor(storage.s3_bucket, storage.s3_stories_prefix))
        resources["s3"] = S3Resource(endpoint_url=storage.s3_endpoint_url, region_name=storage.s3_region_name)
    providers = ImageProviders(
        default=os.environ.get("BOOKBUG_PROVIDER", "auto"),
        replicate_api_token=_env("REPLICATE_API_TOKEN"),
        replicate_base_url=os.environ.get("BOOKBUG_REPLICATE_BASE_URL"),
        fal_key=_env("FAL_KEY"),
        fal_base_url=os.environ.get("BOOKBUG_FAL_BASE_URL"),
        max_concurrency=_number("BOOKBUG_MAX_CONCURRENCY", 12, int),
        poll_interval_s=_number("BOOKBUG_POLL_INTERVAL_S", 1.0, float),
        max_attempts=_number("BOOKBUG_MAX_ATTEMPTS", 5, int),
        local=LocalGpuSettings.from_env(os.environ),
    )
    # Generation steps run in their provider's pool (limits: dagster.yaml default, or
    # `dagster instance concurrency set <pool> <n>`); a story's own provider override keeps this pool.
    pool = pool_for(providers.resolve()[0])
    return dg.Definitions(
        assets=[*build_style_assets(Path(storage.styles_dir)), story, *build_reference_assets(pool),
                build_book_pages(pool), book_pdf, generation_ledger, cost_report, provider_experiment],
        asset_checks=[sprite_sheet_quality, hero_page_quality, book_pdf_preflight],
        sensors=sensors,
        jobs=[golden_books_job],
        resources={**resources, "image_providers": providers},
        # Provider calls are I/O-bound and fanned out inside the page step; a process per step
        # would cost seconds each on a small machine (README "Architecture").
        executor=dg.in_process_executor,
    )


defs = build_definitions()
