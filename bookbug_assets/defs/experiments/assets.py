"""provider_experiment: the same pages of one book on K providers, same seeds, scored and costed
(bookbug_assets.experiment). The experiment has its own budget and ledger account, separate from the book's.
"""

import io
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import polars as pl
from pydantic import Field

from bookbug_assets.cost_report import markdown_table
from bookbug_assets.defs.common import thumbnail_md, user_errors
from bookbug_assets.defs.gate_config import QualityThresholds
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.experiment import contact_sheet, experiment_cell, summary_table
from bookbug_assets.generation import GenerationContext
from bookbug_assets.layout import BOOK_TARGETS, load_story
from bookbug_assets.ledger import BudgetGuard, Ledger
from bookbug_assets.providers.registry import parse_provider_spec
from bookbug_assets.quality.verdicts import quality_reference
from bookbug_assets.rendering import book_plan
from bookbug_assets.stories.models import Slug


class ProviderExperimentConfig(dg.Config):
    book_id: str = Field(description="A book whose story, sprite sheet and hero page are materialized.")
    name: Slug = Field("default", description="Output folder experiments/<name>/ and the budget's name.")
    pages: list[int] = Field(default_factory=lambda: [1, 2, 3], description="1-based page numbers.")
    providers: list[str] = Field(default_factory=lambda: ["preview"],
                                 description="family or family:model, e.g. replicate:google/nano-banana-pro")
    budget_usd: float = Field(5.0, ge=0, description="Stop before the experiment itself costs more.")
    thresholds: QualityThresholds = QualityThresholds()


@dg.asset(group_name="experiments", code_version="1", kinds={"parquet", "png"},
          description="Chosen pages of one book rendered by K providers with the same prompts, references and "
                      "seeds; scored for style, character and artifacts; table + contact sheet with cost.")
def provider_experiment(context: dg.AssetExecutionContext, config: ProviderExperimentConfig,
                        storage: BookbugStorage, image_providers: ImageProviders) -> dg.MaterializeResult:
    store = storage.store()
    with user_errors():
        story = load_story(store, config.book_id)
        bad = [p for p in config.pages if not 1 <= p <= len(story.pages)]
        if bad or not config.pages or not config.providers:
            raise dg.Failure(f"experiment {config.name!r}: choose pages 1-{len(story.pages)} and at least one "
                             f"provider (got pages {config.pages}, providers {config.providers})", allow_retries=False)
        qref = quality_reference(store, storage.styles_path, story)
    ledger = Ledger(store)
    # Its own budget and ledger account, "experiment-<name>": reruns see what it already spent, and
    # comparing providers never eats into the book's own budget.
    account = f"experiment-{config.name}"
    gen = GenerationContext(store=store, ledger=ledger, budget=BudgetGuard(account, config.budget_usd, ledger),
                            retry=image_providers.retry_policy(), run_id=context.run.run_id, book_id=account,
                            asset="provider_experiment", logger=context.log)
    thresholds = config.thresholds.gate()

    def cell(page: int, spec: str) -> tuple[dict, bytes | None]:
        try:
            family, model = parse_provider_spec(spec)
            plan = book_plan(store, storage.styles_path, story, family, model,
                             image_providers.provider(family, store), context.log, references=BOOK_TARGETS)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot be set up is a result, not a crash
            return {"page": page, "provider_spec": spec, "provider": spec.partition(":")[0], "model": "",
                    "seed": None, "image_sha256": None, "cost_usd": 0.0, "latency_s": None, "cache_hit": False,
                    "style_distance": None, "character_similarity": None, "passed": False, "failures": "",
                    "error": f"{type(exc).__name__}: {exc}"[:300]}, None
        return experiment_cell(plan, page, spec, gen, qref, thresholds, name=config.name,
                               gate_character_on_previews=config.thresholds.gate_character_on_previews)

    jobs = [(page, spec) for spec in config.providers for page in config.pages]
    with ThreadPoolExecutor(max_workers=max(1, min(image_providers.max_concurrency, len(jobs)))) as pool:
        results = list(pool.map(lambda job: cell(*job), jobs))
    frame = pl.DataFrame([row for row, _ in results], schema_overrides={
        "seed": pl.Int64, "image_sha256": pl.Utf8, "latency_s": pl.Float64, "style_distance": pl.Float64,
        "character_similarity": pl.Float64, "error": pl.Utf8}).sort("page", "provider_spec")
    cells = {(row["page"], row["provider_spec"]): data for row, data in results}
    sheet = contact_sheet(cells, frame, sorted(config.pages), list(config.providers))
    prefix = f"experiments/{config.name}"
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    store.write_bytes(f"{prefix}/comparison.parquet", buffer.getvalue())
    store.write_bytes(f"{prefix}/contact_sheet.png", sheet)
    shown = frame.select("page", "provider_spec", "seed", "style_distance", "character_similarity", "passed",
                         "cost_usd", "cache_hit", "failures", "error")
    return dg.MaterializeResult(metadata={
        "book": story.book_id, "experiment": config.name, "cells": frame.height,
        "summary": dg.MetadataValue.md(markdown_table(summary_table(frame))),
        "comparison": dg.MetadataValue.md(markdown_table(shown)),
        "contact_sheet": thumbnail_md(sheet, "contact sheet", size=768),
        "contact_sheet_uri": store.uri(f"{prefix}/contact_sheet.png"),
        "parquet": store.uri(f"{prefix}/comparison.parquet"),
        "cost_usd": dg.MetadataValue.float(round(float(frame["cost_usd"].sum()), 4)),
    })
