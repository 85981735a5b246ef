"""generation_ledger: every generation's row, compacted into one Parquet table."""


import io

import dagster as dg
import polars as pl

from bookbug_assets.ledger import Ledger
from bookbug_assets.resources import BookbugStorage

LEDGER_PARQUET = "ledger/generation_ledger.parquet"


def summary_by_provider(frame: pl.DataFrame) -> pl.DataFrame:
    return (frame.group_by("provider", "model")
            .agg(pl.len().alias("rows"),
                 (pl.col("status") == "ok").sum().alias("paid_generations"),
                 pl.col("cache_hit").sum().alias("cache_hits"),
                 pl.col("cost_usd").sum().round(4).alias("cost_usd"),
                 pl.col("latency_s").filter(pl.col("status") == "ok").mean().round(2).alias("mean_latency_s"))
            .sort("provider", "model"))


def markdown_table(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |\n"
                            for row in frame.iter_rows())


@dg.asset(group_name="ledger", code_version="1", kinds={"parquet", "polars"},
          deps=["sprite_sheet", "hero_page", "book_pages"],
          description="Every generation (paid, cached, refused, failed): provider, model, version, seed, cost, "
                      "latency, cache hit. Parquet, one row per generation; columns in README.")
def generation_ledger(context: dg.AssetExecutionContext, storage: BookbugStorage) -> dg.MaterializeResult:
    store = storage.store()
    frame = Ledger(store).frame()
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    store.write_bytes(LEDGER_PARQUET, buffer.getvalue())
    summary = summary_by_provider(frame) if frame.height else frame
    return dg.MaterializeResult(metadata={
        "rows": frame.height,
        "paid_generations": int((frame["status"] == "ok").sum()) if frame.height else 0,
        "cache_hits": int(frame["cache_hit"].sum()) if frame.height else 0,
        "total_cost_usd": dg.MetadataValue.float(round(float(frame["cost_usd"].sum()), 4) if frame.height else 0.0),
        "by_provider": dg.MetadataValue.md(markdown_table(summary) if frame.height else "no generations yet"),
        "parquet": store.uri(LEDGER_PARQUET),
    })
