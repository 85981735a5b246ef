"""generation_ledger (every generation, one Parquet table) and cost_report (what an acceptable image costs).

Inside a book's run (tag `bookbug/book`) generation_ledger compacts only that book's new rows (and the
rows of no book), so a book's ledger step costs what its own rows cost, not the project's history
(ledger.py); materialized on its own (the UI, a schedule) it catches up every book. cost_report reads
the table generation_ledger wrote, never the rows' JSON.
"""

import dagster as dg
import polars as pl

from bookbug_assets.cost_report import (
    JUDGE_NOT_CALLED, REPORT_PARQUET, CostEstimate, cost_tables, free, is_judge, markdown_table, paid,
    summary_by_provider,
)
from bookbug_assets.cost_report import estimate_book_cost as _estimate
from bookbug_assets.defs.common import BOOK_TAG
from bookbug_assets.defs.gate_config import ImageGateConfig
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.judge_estimate import with_judge
from bookbug_assets.ledger import Ledger, parquet_bytes
from bookbug_assets.ledger_table import LEDGER_PARQUET, ledger_table, refresh_table
from bookbug_assets.providers.base import ConfigurationError
from bookbug_assets.quality.judge import JudgeBackend, judge_name
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story




@dg.asset(group_name="ledger", code_version="2", kinds={"parquet", "polars"},
          deps=["sprite_sheet", "hero_page", "book_pages"],
          description="Every generation (paid, cached, refused, failed): provider, model, version, seed, cost, "
                      "latency, cache hit. Parquet, one row per generation; columns in README. In a book's run "
                      "it compacts that book's new rows only; on its own, every book's.")
def generation_ledger(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
    store = storage.store()
    ledger = Ledger(store)
    book = context.run.tags.get(BOOK_TAG)
    compacted = [ledger.compact(book), ledger.compact("")] if book else ledger.compact_all()
    refresh = refresh_table(store)
    frame = refresh.frame
    parsed = sum(c.parsed for c in compacted)
    context.log.info(f"ledger: {parsed} new row(s) compacted ({book or 'every book'}), {frame.height} in the table")
    summary = summary_by_provider(frame) if frame.height else frame
    return dg.MaterializeResult(metadata={
        "rows": frame.height,
        "rows_compacted_now": parsed,
        "books_in_table": refresh.books,
        # images billed / drawn free; quality-judge calls are counted apart
        "paid_generations": int(frame.select((paid() & ~is_judge()).sum()).item()) if frame.height else 0,
        "free_generations": int(frame.select((free() & ~is_judge()).sum()).item()) if frame.height else 0,
        "judge_calls": int(frame.select((is_judge() & ~pl.col("status").is_in(JUDGE_NOT_CALLED)).sum()).item())
        if frame.height else 0,
        "cache_hits": int(frame["cache_hit"].sum()) if frame.height else 0,
        "total_cost_usd": dg.MetadataValue.float(round(float(frame["cost_usd"].sum()), 4) if frame.height else 0.0),
        "by_provider": dg.MetadataValue.md(markdown_table(summary) if frame.height else "no generations yet"),
        "parquet": store.uri(LEDGER_PARQUET),
    })


@dg.asset(group_name="ledger", code_version="2", kinds={"parquet", "polars"}, deps=["generation_ledger"],
          description="Cost of an acceptable image, per book and per provider: images, attempts, paid and cached "
                      "generations, image and quality-judge cost, repairs, cost per image that passed its quality "
                      "gate (judge and repairs included), judge scores, feature hit rate, reviewers' approvals.")
def cost_report(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
    store = storage.store()
    by_book, by_provider = cost_tables(store, ledger_table(store))
    store.write_bytes(REPORT_PARQUET, parquet_bytes(by_book))
    context.log.info(f"cost report: {by_book.height} book x provider row(s)")
    return dg.MaterializeResult(metadata={
        "rows": by_book.height,
        "total_cost_usd": dg.MetadataValue.float(float(by_book["cost_usd"].sum()) if by_book.height else 0.0),
        "acceptable_images": int(by_book["acceptable_images"].sum()) if by_book.height else 0,
        "by_book": dg.MetadataValue.md(markdown_table(by_book) if by_book.height else "no generations yet"),
        "by_provider": dg.MetadataValue.md(markdown_table(by_provider) if by_provider.height else "no generations"),
        "parquet": store.uri(REPORT_PARQUET),
    })


def estimate_book_cost(story: Story, providers: ImageProviders, store: ArtifactStore | None = None,
                       max_attempts: int | None = None, judge: JudgeBackend | None = None) -> CostEstimate:
    """What a book will cost before any paid call, at the model the providers resource chooses for it, with the
    quality judge's calls when `judge` is set (judge_estimate.py).

    Called in the first lines of a book's run: the `story` asset (log line + metadata), the first step of
    every sensor-launched backfill, and the CLI before its first materialize.
    """
    family, model = providers.choose(story.provider)
    note = ""
    try:
        price = providers.provider(family).capabilities(model).price_usd
    except ConfigurationError as exc:  # the run would fail on this too; the estimate says why now
        price, note = 0.0, f"price unknown: {exc}"
    estimate = _estimate(story, family, model, price, max_attempts=max_attempts or ImageGateConfig().max_attempts,
                         store=store, note=note)
    return estimate if judge is None else with_judge(estimate, judge_name(judge), judge.price_per_call_usd())
