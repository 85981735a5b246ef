"""What an acceptable image costs, per book and per provider; a book's cost estimate; the ledger's summaries.

Read from the ledger (one row per generation attempt, generation.py: the `cost_report` asset reads the
compacted table, ledger_table.py, never the rows' JSON) and the quality verdicts (one per image,
written by the page renderer and the asset checks). "Acceptable" means the image
that is in the book now passed its quality gate (or a reviewer approved it over the gate).
"""


from __future__ import annotations

import polars as pl
from pydantic import BaseModel

from bookbug_assets.ledger import Ledger
from bookbug_assets.ledger_table import LEDGER_PARQUET  # noqa: F401 - where it has always been imported from
from bookbug_assets.quality.verdicts import load_verdicts
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story

REPORT_PARQUET = "reports/cost_report.parquet"
BOOK_ASSETS = ("sprite_sheet", "hero_page", "book_pages")
COLUMNS = ["images", "attempts", "paid_generations", "free_generations", "cached_generations", "failed_generations",
           "cost_usd", "acceptable_images", "cost_per_acceptable_usd", "mean_latency_s"]
FAILED = ["failed", "refused", "timeout", "budget_stop"]


def paid() -> pl.Expr:
    """Rows a provider billed: a new generation that cost money (a refusal the provider charges for included).
    Free preview renders and cache hits are not paid work, whatever their status."""
    return (pl.col("cost_usd") > 0) & ~pl.col("cache_hit")


def free() -> pl.Expr:
    """New images that cost nothing: the offline preview (or any free model)."""
    return (pl.col("status") == "ok") & (pl.col("cost_usd") <= 0) & ~pl.col("cache_hit")


def _acceptable(store: ArtifactStore, books: list[str]) -> pl.DataFrame:
    rows = [{"book_id": b, "provider": v.provider, "model": v.model}
            for b in books for v in load_verdicts(store, b).values() if v.accepted]
    schema = {"book_id": pl.Utf8, "provider": pl.Utf8, "model": pl.Utf8}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return frame.group_by("book_id", "provider", "model").agg(pl.len().cast(pl.Int64).alias("acceptable_images"))


def _aggregate(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return (frame.group_by(keys).agg(
        pl.struct("asset", "partition").n_unique().cast(pl.Int64).alias("images"),
        (pl.col("status") != "cached").sum().cast(pl.Int64).alias("attempts"),
        paid().sum().cast(pl.Int64).alias("paid_generations"),
        free().sum().cast(pl.Int64).alias("free_generations"),
        pl.col("cache_hit").sum().cast(pl.Int64).alias("cached_generations"),
        pl.col("status").is_in(FAILED).sum().cast(pl.Int64).alias("failed_generations"),
        pl.col("cost_usd").sum().round(4).alias("cost_usd"),
        pl.col("latency_s").filter(pl.col("status") == "ok").mean().round(2).alias("mean_latency_s")))


def cost_tables(store: ArtifactStore, ledger: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per book x provider x model, per provider x model over all books), from `ledger` (the compacted table,
    as the cost_report asset passes it) or, by default, every row as it is now (lists every row file)."""
    ledger = (Ledger(store).frame() if ledger is None else ledger).filter(pl.col("asset").is_in(BOOK_ASSETS))
    keys = ["book_id", "provider", "model"]
    by_book = _aggregate(ledger, keys)
    accepted = _acceptable(store, by_book["book_id"].unique().to_list())
    by_book = (by_book.join(accepted, on=keys, how="left")
               .with_columns(pl.col("acceptable_images").fill_null(0)))
    by_provider = _aggregate(ledger, ["provider", "model"]).join(
        accepted.group_by("provider", "model").agg(pl.col("acceptable_images").sum()), on=["provider", "model"],
        how="left").with_columns(pl.col("acceptable_images").fill_null(0))

    def finish(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        per = (pl.when(pl.col("acceptable_images") > 0)
               .then((pl.col("cost_usd") / pl.col("acceptable_images")).round(4)).otherwise(None))
        return frame.with_columns(per.alias("cost_per_acceptable_usd")).select(*keys, *COLUMNS).sort(keys)

    return finish(by_book, keys), finish(by_provider, ["provider", "model"])


class BookCost(BaseModel):
    """What one book has cost so far, from its ledger rows: shown on the book's own materialization."""

    book_id: str
    cost_usd: float = 0.0
    attempts: int = 0
    paid_generations: int = 0
    free_generations: int = 0
    cached_generations: int = 0
    failed_generations: int = 0
    acceptable_images: int = 0
    cost_per_acceptable_usd: float | None = None
    by_provider: list[dict] = []

    def line(self) -> str:
        per = self.cost_per_acceptable_usd
        per = "" if per is None else f", ${per:.4f} per acceptable image"
        return (f"{self.book_id} has cost ${self.cost_usd:.2f}: {self.paid_generations} paid generation(s), "
                f"{self.free_generations} free preview render(s), {self.cached_generations} cache hit(s), "
                f"{self.failed_generations} failed{per}")


def book_cost(store: ArtifactStore, book_id: str) -> BookCost:
    """The cost report's numbers for one book (all its providers together, and per provider x model)."""
    frame = Ledger(store).frame(book_id).filter(pl.col("asset").is_in(BOOK_ASSETS))
    if not frame.height:
        return BookCost(book_id=book_id)
    total = _aggregate(frame.with_columns(pl.lit(book_id).alias("book_id")), ["book_id"]).row(0, named=True)
    accepted = sum(1 for v in load_verdicts(store, book_id).values() if v.accepted)
    per = _aggregate(frame, ["provider", "model"]).sort("provider", "model")
    return BookCost(book_id=book_id, cost_usd=round(total["cost_usd"], 4), acceptable_images=accepted,
                    cost_per_acceptable_usd=round(total["cost_usd"] / accepted, 4) if accepted else None,
                    by_provider=per.drop("mean_latency_s").to_dicts(),
                    **{k: int(total[k]) for k in ("attempts", "paid_generations", "free_generations",
                                                  "cached_generations", "failed_generations")})


class CostEstimate(BaseModel):
    book_id: str
    provider: str
    model: str
    images: int
    price_usd: float
    first_pass_usd: float
    worst_case_usd: float
    max_attempts: int
    budget_usd: float | None
    spent_usd: float
    note: str = ""

    def line(self) -> str:
        budget = "no budget" if self.budget_usd is None else f"budget ${self.budget_usd:.2f}"
        text = (f"cost estimate for {self.book_id}: {self.images} images x ${self.price_usd:.3f} "
                f"({self.provider}:{self.model}) = ${self.first_pass_usd:.2f} if every image passes first time, "
                f"at most ${self.worst_case_usd:.2f} with {self.max_attempts} quality attempts each; "
                f"{budget}, ${self.spent_usd:.2f} spent so far; cached images cost nothing")
        return text + (f" ({self.note})" if self.note else "")


def estimate_book_cost(story: Story, family: str, model: str, price_usd: float, *, max_attempts: int,
                       store: ArtifactStore | None = None, note: str = "") -> CostEstimate:
    """What a book will cost before any paid call: its images at the chosen model's declared price."""
    images = 2 + len(story.pages)  # sprite sheet + hero page + one per page
    spent = Ledger(store).spent(story.book_id) if store is not None else 0.0
    return CostEstimate(book_id=story.book_id, provider=family, model=model, images=images, price_usd=price_usd,
                        first_pass_usd=round(images * price_usd, 4),
                        worst_case_usd=round(images * price_usd * max_attempts, 4), max_attempts=max_attempts,
                        budget_usd=story.budget_usd, spent_usd=spent, note=note)


def summary_by_provider(frame: pl.DataFrame) -> pl.DataFrame:
    return (frame.group_by("provider", "model")
            .agg(pl.len().alias("rows"),
                 paid().sum().alias("paid_generations"),
                 free().sum().alias("free_generations"),
                 pl.col("cache_hit").sum().alias("cache_hits"),
                 pl.col("cost_usd").sum().round(4).alias("cost_usd"),
                 pl.col("latency_s").filter(pl.col("status") == "ok").mean().round(2).alias("mean_latency_s"))
            .sort("provider", "model"))


def markdown_table(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |\n"
                            for row in frame.iter_rows())
