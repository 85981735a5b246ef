"""provider_experiment: the same pages of one book on K providers, same seeds, through the book's gate (the quality
judge included when one is configured), scored, costed and ranked by cost per acceptable image
(bookbug_assets.experiment, ab_report). The experiment has its own budget and ledger account, separate from the
book's.
"""

from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import polars as pl
from pydantic import Field

from bookbug_assets.ab_report import MIN_DECISIVE, ranking_decides, ranking_line
from bookbug_assets.cost_report import cost_tables, markdown_table
from bookbug_assets.defs.common import thumbnail_md, user_errors
from bookbug_assets.defs.gate_config import ImageGateConfig, QualityThresholds
from bookbug_assets.defs.judge_resource import QualityJudge
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.experiment import (
    SCHEMA_OVERRIDES, contact_sheet, empty_row, experiment_cell, first_costs, summary_table,
)
from bookbug_assets.generation import GenerationContext
from bookbug_assets.layout import BOOK_TARGETS, load_story
from bookbug_assets.ledger import BudgetGuard, Ledger, parquet_bytes
from bookbug_assets.ledger_table import ledger_table
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
    max_attempts: int = Field(3, ge=1, le=10, description="Renders per cell, counting the first, while it fails "
                                                          "its gate (redraws and the judge's repairs), as in a book.")
    min_acceptable: int = Field(MIN_DECISIVE, ge=1, description="Acceptable images per candidate below which the "
                                                               "ranking is marked not decisive.")
    thresholds: QualityThresholds = QualityThresholds()


@dg.asset(group_name="experiments", code_version="2", kinds={"parquet", "png"},
          description="Chosen pages of one book rendered by K providers with the same prompts, references and "
                      "seeds, through the book's gate and quality judge; ranked by cost per acceptable image "
                      "(judge and repairs included); table + contact sheet with cost and each cell's judge reason.")
def provider_experiment(context: dg.AssetExecutionContext, config: ProviderExperimentConfig,
                        storage: BookbugStorage, image_providers: ImageProviders,
                        quality_judge: QualityJudge) -> dg.MaterializeResult:
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
    judge = quality_judge.for_run(context, store, image_providers.settings())
    gate = ImageGateConfig(max_attempts=config.max_attempts, thresholds=config.thresholds).settings(judge)
    # What each image and judging first cost: a cell the cache answers is priced at that, not at $0.
    prices = first_costs(pl.concat([ledger.frame(story.book_id), ledger.frame(account)]))

    def cell(page: int, spec: str) -> tuple[dict, bytes | None]:
        try:
            family, model = parse_provider_spec(spec)
            plan = book_plan(store, storage.styles_path, story, family, model,
                             image_providers.provider(family, store), context.log, references=BOOK_TARGETS)
        except Exception as exc:  # noqa: BLE001 - a provider that cannot be set up is a result, not a crash
            row = empty_row(page, spec, spec.partition(":")[0], "")
            return {**row, "error": f"{type(exc).__name__}: {exc}"[:300]}, None
        return experiment_cell(plan, page, spec, gen, qref, gate, name=config.name, prices=prices)

    jobs = [(page, spec) for spec in config.providers for page in config.pages]
    with ThreadPoolExecutor(max_workers=max(1, min(image_providers.max_concurrency, len(jobs)))) as pool:
        results = list(pool.map(lambda job: cell(*job), jobs))
    frame = pl.DataFrame([row for row, _ in results], schema_overrides=SCHEMA_OVERRIDES).sort("page", "provider_spec")
    # Reviewers' verdicts on the books each model made (cost_report's per provider table): cells are not reviewed.
    summary = summary_table(frame, cost_tables(store, ledger_table(store))[1], config.min_acceptable)
    ranking = ranking_line(summary, "provider_spec", config.min_acceptable)
    context.log.info(f"experiment {config.name}: {ranking}")
    cells = {(row["page"], row["provider_spec"]): data for row, data in results}
    sheet = contact_sheet(cells, frame, sorted(config.pages), list(config.providers))
    prefix = f"experiments/{config.name}"
    store.write_bytes(f"{prefix}/comparison.parquet", parquet_bytes(frame))
    store.write_bytes(f"{prefix}/ranking.parquet", parquet_bytes(summary))
    store.write_bytes(f"{prefix}/contact_sheet.png", sheet)
    shown = frame.select("page", "provider_spec", "seed", "style_distance", "character_similarity", "identity",
                         "passed", "attempts", "repairs", "image_cost_usd", "judge_cost_usd", "cost_usd", "cache_hit",
                         "judge_reason", "failures", "error")
    return dg.MaterializeResult(metadata={
        "book": story.book_id, "experiment": config.name, "cells": frame.height,
        "ranking": ranking,
        "decisive": ranking_decides(summary, "provider_spec"),
        "summary": dg.MetadataValue.md(markdown_table(summary)),
        "comparison": dg.MetadataValue.md(markdown_table(shown)),
        "contact_sheet": thumbnail_md(sheet, "contact sheet", size=768),
        "contact_sheet_uri": store.uri(f"{prefix}/contact_sheet.png"),
        "parquet": store.uri(f"{prefix}/comparison.parquet"),
        "ranking_parquet": store.uri(f"{prefix}/ranking.parquet"),
        "cost_usd": dg.MetadataValue.float(round(float(frame["cost_usd"].sum()), 4)),
    })
