"""provider_experiment: the same pages of one book on K providers, same seeds, scored and costed.

Every cell is an ordinary page request (the book's prompt, references and seed) sent to another
provider through generate_image, so it is cached, journaled and in the ledger like any image
(asset `provider_experiment`); a cell for the book's own provider is the book's page, free. The
experiment has its own budget, separate from the book's. Each image is scored by the same gate
as book pages (checks.assess_image), so the table answers "what does an acceptable page cost on
each provider" on identical inputs.
"""


import io
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import polars as pl
from PIL import Image, ImageDraw, ImageFont
from pydantic import Field

from bookbug_assets.assets._shared import (
    load_record, load_story, make_request, reference, thumbnail_md,
)
from bookbug_assets.assets.ledger import markdown_table
from bookbug_assets.assets.pages import page_prompt
from bookbug_assets.assets.style import load_style_profile
from bookbug_assets.checks import QualityThresholds, assess_image, quality_reference
from bookbug_assets.generation import GenerationContext, generate_image
from bookbug_assets.ledger import BudgetGuard, Ledger
from bookbug_assets.providers.registry import parse_provider_spec
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.stories.models import Slug, page_key

CELL = 256  # contact-sheet thumbnail side, px
CAPTION_H = 44
LABEL_W = 90
HEADER_H = 36


class ProviderExperimentConfig(dg.Config):
    book_id: str = Field(description="A book whose story, sprite sheet and hero page are materialized.")
    name: Slug = Field("default", description="Output folder experiments/<name>/ and the budget's name.")
    pages: list[int] = Field(default_factory=lambda: [1, 2, 3], description="1-based page numbers.")
    providers: list[str] = Field(default_factory=lambda: ["preview"],
                                 description="family or family:model, e.g. replicate:google/nano-banana-pro")
    budget_usd: float = Field(5.0, ge=0, description="Stop before the experiment itself costs more.")
    thresholds: QualityThresholds = QualityThresholds()


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def contact_sheet(cells: dict[tuple[int, str], bytes | None], frame: pl.DataFrame, pages: list[int],
                  columns: list[str]) -> bytes:
    """PNG grid: one row per page, one column per provider; each cell's scores and cost under it."""
    width = LABEL_W + CELL * len(columns)
    height = HEADER_H + (CELL + CAPTION_H) * len(pages)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, column in enumerate(columns):
        draw.text((LABEL_W + c * CELL + 6, 10), column[:34], fill="black", font=_font(13))
    rows = {(r["page"], r["provider_spec"]): r for r in frame.iter_rows(named=True)}
    for r, page in enumerate(pages):
        top = HEADER_H + r * (CELL + CAPTION_H)
        draw.text((8, top + CELL // 2), f"page {page}", fill="black", font=_font(15))
        for c, column in enumerate(columns):
            left = LABEL_W + c * CELL
            data, row = cells.get((page, column)), rows[(page, column)]
            if data is not None:
                with Image.open(io.BytesIO(data)) as im:
                    thumb = im.convert("RGB")
                    thumb.thumbnail((CELL - 8, CELL - 8))
                sheet.paste(thumb, (left + 4, top + 4))
            else:
                draw.rectangle((left + 4, top + 4, left + CELL - 4, top + CELL - 4), outline="grey")
                draw.text((left + 12, top + CELL // 2), (row["error"] or "no image")[:36], fill="red", font=_font(12))
            verdict = "PASS" if row["passed"] else "FAIL"
            line1 = f"style {row['style_distance']:.2f}  char {row['character_similarity']:.2f}" \
                if row["style_distance"] is not None else "not scored"
            draw.text((left + 6, top + CELL + 2), line1, fill="black", font=_font(13))
            draw.text((left + 6, top + CELL + 20), f"{verdict}  ${row['cost_usd']:.3f}",
                      fill="darkgreen" if row["passed"] else "darkred", font=_font(13))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()


def summary_table(frame: pl.DataFrame) -> pl.DataFrame:
    return (frame.group_by("provider_spec").agg(
        pl.len().alias("pages"), pl.col("passed").sum().alias("acceptable"),
        pl.col("style_distance").mean().round(3).alias("mean_style_distance"),
        pl.col("character_similarity").mean().round(3).alias("mean_character_similarity"),
        pl.col("cost_usd").sum().round(4).alias("cost_usd"),
        pl.col("latency_s").mean().round(2).alias("mean_latency_s"))
        .with_columns(pl.when(pl.col("acceptable") > 0).then((pl.col("cost_usd") / pl.col("acceptable")).round(4))
                      .otherwise(None).alias("cost_per_acceptable_usd"))
        .sort("provider_spec"))


@dg.asset(group_name="experiments", code_version="1", kinds={"parquet", "png"},
          description="Chosen pages of one book rendered by K providers with the same prompts, references and "
                      "seeds; scored for style, character and artifacts; table + contact sheet with cost.")
def provider_experiment(context: dg.AssetExecutionContext, config: ProviderExperimentConfig,
                        storage: BookbugStorage, image_providers: ImageProviders) -> dg.MaterializeResult:
    store = storage.store()
    story = load_story(store, config.book_id)
    bad = [p for p in config.pages if not 1 <= p <= len(story.pages)]
    if bad or not config.pages or not config.providers:
        raise dg.Failure(f"experiment {config.name!r}: choose pages 1-{len(story.pages)} and at least one provider "
                         f"(got pages {config.pages}, providers {config.providers})", allow_retries=False)
    profile = load_style_profile(storage, story.style, context.log)
    refs = (reference(load_record(store, story.book_id, "sprite_sheet"), "sprite_sheet"),
            reference(load_record(store, story.book_id, "hero_page"), "hero_page"))
    ref_bytes = {ref.sha256: store.read_bytes(ref.key) for ref in refs}
    qref = quality_reference(store, storage, story)
    ledger = Ledger(store)
    # Its own budget and ledger account, "experiment-<name>": reruns see what it already spent, and
    # comparing providers never eats into the book's own budget.
    account = f"experiment-{config.name}"
    budget = BudgetGuard(account, config.budget_usd, ledger)
    gen = GenerationContext(store=store, ledger=ledger, budget=budget, retry=image_providers.retry_policy(),
                            run_id=context.run.run_id, book_id=account, asset="provider_experiment",
                            logger=context.log)
    specs = [(spec, *parse_provider_spec(spec)) for spec in config.providers]

    def cell(page: int, spec: str, family: str, model: str) -> tuple[dict, bytes | None]:
        key = page_key(page)
        row = {"page": page, "provider_spec": spec, "provider": family, "model": model, "seed": None,
               "image_sha256": None, "cost_usd": 0.0, "latency_s": None, "cache_hit": False,
               "style_distance": None, "character_similarity": None, "passed": False, "failures": "", "error": None}
        try:
            provider = image_providers.provider(family, store)
            request = make_request(family=family, model=model, caps=provider.capabilities(model), story=story,
                                   profile=profile, kind="page", prompt=page_prompt(story, page, profile),
                                   seed_name=f"page-{key}", references=refs,
                                   character_ids=story.pages[page - 1].characters, label=f"page {page}",
                                   scene=story.pages[page - 1].scene)
            record = generate_image(request, provider, gen, reference_bytes=ref_bytes,
                                    partition=f"{config.name}|{spec}|{key}")
        except Exception as exc:  # noqa: BLE001 - one provider failing is a result, not a crash
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            return row, None
        data = store.read_bytes(record.image_key)
        result = assess_image(data, qref, config.thresholds, kind="page", is_preview=record.is_preview,
                              has_characters=bool(story.pages[page - 1].characters),
                              size=(record.width, record.height))
        row.update(seed=record.seed, image_sha256=record.image_sha256, cost_usd=record.cost_usd,
                   latency_s=record.latency_s, cache_hit=record.cache_hit, passed=result.passed,
                   style_distance=result.scores.get("style_distance"),
                   character_similarity=result.scores.get("character_similarity"),
                   failures="; ".join(result.failures))
        return row, data

    jobs = [(page, *spec) for spec in specs for page in config.pages]
    with ThreadPoolExecutor(max_workers=max(1, min(image_providers.max_concurrency, len(jobs)))) as pool:
        results = list(pool.map(lambda job: cell(*job), jobs))
    frame = pl.DataFrame([row for row, _ in results], schema_overrides={
        "seed": pl.Int64, "image_sha256": pl.Utf8, "latency_s": pl.Float64, "style_distance": pl.Float64,
        "character_similarity": pl.Float64, "error": pl.Utf8}).sort("page", "provider_spec")
    cells = {(row["page"], row["provider_spec"]): data for row, data in results}
    sheet = contact_sheet(cells, frame, sorted(config.pages), [s for s, _, _ in specs])
    prefix = f"experiments/{config.name}"
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    store.write_bytes(f"{prefix}/comparison.parquet", buffer.getvalue())
    store.write_bytes(f"{prefix}/contact_sheet.png", sheet)
    summary = summary_table(frame)
    shown = frame.select("page", "provider_spec", "seed", "style_distance", "character_similarity", "passed",
                         "cost_usd", "cache_hit", "failures", "error")
    return dg.MaterializeResult(metadata={
        "book": story.book_id, "experiment": config.name, "cells": frame.height,
        "summary": dg.MetadataValue.md(markdown_table(summary)),
        "comparison": dg.MetadataValue.md(markdown_table(shown)),
        "contact_sheet": thumbnail_md(sheet, "contact sheet", size=768),
        "contact_sheet_uri": store.uri(f"{prefix}/contact_sheet.png"),
        "parquet": store.uri(f"{prefix}/comparison.parquet"),
        "cost_usd": dg.MetadataValue.float(round(float(frame["cost_usd"].sum()), 4)),
    })
