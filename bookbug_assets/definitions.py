"""The one place that wires Definitions. Importing this module must stay light: no torch."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from bookbug_assets.assets.book import book_pdf, story
from bookbug_assets.assets.characters import hero_page, sprite_sheet
from bookbug_assets.assets.experiments import provider_experiment
from bookbug_assets.assets.ledger import generation_ledger
from bookbug_assets.assets.pages import book_pages
from bookbug_assets.assets.reports import cost_report
from bookbug_assets.assets.style import build_style_assets
from bookbug_assets.checks import book_pdf_preflight, hero_page_quality, sprite_sheet_quality
from bookbug_assets.golden import golden_books_job
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.sensors import story_folder_sensor
from bookbug_assets.sensors_review import review_sensor


def _env(name: str) -> dg.EnvVar | None:
    """Secrets only as EnvVar (the UI shows the variable's name); absent means 'not configured'."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def build_definitions(data_root: str | None = None, stories_dir: str | None = None,
                      styles_dir: str | None = None) -> dg.Definitions:
    storage = BookbugStorage(
        data_root=data_root or os.environ.get("BOOKBUG_DATA_ROOT", "data/outputs"),
        stories_dir=stories_dir or os.environ.get("BOOKBUG_STORIES_DIR", "data/stories"),
        styles_dir=styles_dir or os.environ.get("BOOKBUG_STYLES_DIR", "data/styles"),
    )
    providers = ImageProviders(
        default=os.environ.get("BOOKBUG_PROVIDER", "auto"),
        replicate_api_token=_env("REPLICATE_API_TOKEN"),
        replicate_base_url=os.environ.get("BOOKBUG_REPLICATE_BASE_URL"),
        fal_key=_env("FAL_KEY"),
        fal_base_url=os.environ.get("BOOKBUG_FAL_BASE_URL"),
        max_concurrency=int(os.environ.get("BOOKBUG_MAX_CONCURRENCY", "12")),
        poll_interval_s=float(os.environ.get("BOOKBUG_POLL_INTERVAL_S", "1.0")),
    )
    return dg.Definitions(
        assets=[*build_style_assets(Path(storage.styles_dir)), story, sprite_sheet, hero_page, book_pages, book_pdf,
                generation_ledger, cost_report, provider_experiment],
        asset_checks=[sprite_sheet_quality, hero_page_quality, book_pdf_preflight],
        sensors=[story_folder_sensor, review_sensor],
        jobs=[golden_books_job],
        resources={"storage": storage, "image_providers": providers},
        # Provider calls are I/O-bound and fanned out inside the page step; a process per step
        # would cost seconds each on a small machine (README "Architecture").
        executor=dg.in_process_executor,
    )


defs = build_definitions()
