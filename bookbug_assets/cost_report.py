"""What an acceptable image costs, per book and per provider; a book's cost estimate; the ledger's summaries.

Read from the ledger (one row per generation attempt, generation.py: the `cost_report` asset reads the
compacted table, ledger_table.py, never the rows' JSON) and the quality verdicts (one per image,
written by the page renderer and the asset checks) and review states. "Acceptable" means the image
that is in the book now passed its quality gate (or a reviewer approved it over the gate). Quality judge calls are
ledger rows too (`kind` judge): they are counted for the image model whose image they judged, apart from its
generations, and their cost is part of what an acceptable image costs (the A/B columns: ab_report.py).
"""


from __future__ import annotations

import polars as pl
from pydantic import BaseModel

from bookbug_assets.ab_report import (
    SCORE_COLUMNS, SUM_COLUMNS, cost_columns, is_repair, review_counts, score_columns, verdict_scores,
)
from bookbug_assets.ledger import Ledger
from bookbug_assets.ledger_table import LEDGER_PARQUET  # noqa: F401 - where it has always been imported from
from bookbug_assets.quality.judge_gate import JUDGE_KIND
from bookbug_assets.quality.verdicts import load_verdicts
from bookbug_assets.review import load_state
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story

REPORT_PARQUET = "reports/cost_report.parquet"
BOOK_ASSETS = ("sprite_sheet", "hero_page", "book_pages")
COLUMNS = ["images", "attempts", "paid_generations", "free_generations", "cached_generations", "failed_generations",
           "cost_usd", "acceptable_images", "cost_per_acceptable_usd", "mean_latency_s",
           "image_cost_usd", "judge_calls", "judge_cost_usd", "repairs", "repair_cost_usd", "repairs_per_acceptable",
           *SCORE_COLUMNS, "judge"]
FAILED = ["failed", "refused", "timeout", "budget_stop"]
JUDGE_NOT_CALLED = ["cached", "budget_stop"]  # judge rows that asked nothing (a kept verdict, or no budget left)


def paid() -> pl.Expr:
    """Rows a provider billed: a new generation that cost money (a refusal the provider charges for included).
    Free preview renders and cache hits are not paid work, whatever their status."""
    return (pl.col("cost_usd") > 0) & ~pl.col("cache_hit")


def free() -> pl.Expr:
    """New images that cost nothing: the offline preview (or any free model)."""
    return (pl.col("status") == "ok") & (pl.col("cost_usd") <= 0) & ~pl.col("cache_hit")


def is_judge() -> pl.Expr:
    return pl.col("kind").fill_null("") == JUDGE_KIND


def _image_owners(images: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Who drew what: (book, image sha256) -> provider/model, and (book, asset, partition) -> the latest drawer."""
    by_sha = (images.filter(pl.col("image_sha256").is_not_null())
              .group_by("book_id", "image_sha256").agg(pl.col("provider").first(), pl.col("model").first()))
    by_target = (images.sort("ts").group_by("book_id", "asset", "partition")
                 .agg(pl.col("provider").last().alias("target_provider"), pl.col("model").last().alias("target_model")))
    return by_sha, by_target


def split_judge_rows(ledger: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(image rows, judge rows) of `ledger`; each judge row's provider/model become the image provider's whose
    image it judged (its `image_sha256`; else the latest drawer of its target), the judge's own in `judge`."""
    images, judges = ledger.filter(~is_judge()), ledger.filter(is_judge())
    by_sha, by_target = _image_owners(images)
    judges = (judges.with_columns((pl.col("provider") + ":" + pl.col("model")).alias("judge"))
              .drop("provider", "model")
              .join(by_sha, on=["book_id", "image_sha256"], how="left")
              .join(by_target, on=["book_id", "asset", "partition"], how="left")
              .with_columns(pl.coalesce("provider", "target_provider", pl.col("judge").str.split(":").list.first()),
                            pl.coalesce("model", "target_model", pl.col("judge").str.splitn(":", 2)
                                        .struct.field("field_1")))
              .drop("target_provider", "target_model"))
    return images, judges


def _aggregate(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Image rows only (split_judge_rows): what the image provider was asked, did and charged."""
    return (frame.group_by(keys).agg(
        pl.struct("asset", "partition").n_unique().cast(pl.Int64).alias("images"),
        (pl.col("status") != "cached").sum().cast(pl.Int64).alias("attempts"),
        paid().sum().cast(pl.Int64).alias("paid_generations"),
        free().sum().cast(pl.Int64).alias("free_generations"),
        pl.col("cache_hit").sum().cast(pl.Int64).alias("cached_generations"),
        pl.col("status").is_in(FAILED).sum().cast(pl.Int64).alias("failed_generations"),
        pl.col("cost_usd").sum().round(4).alias("cost_usd"),
        pl.col("latency_s").filter(pl.col("status") == "ok").mean().round(2).alias("mean_latency_s"),
        (is_repair() & ~pl.col("status").is_in(["cached", "budget_stop", "skipped"])).sum().cast(pl.Int64)
        .alias("repairs"),
        pl.col("cost_usd").filter(is_repair()).sum().round(4).alias("repair_cost_usd")))


def _judge_aggregate(judges: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    return judges.group_by(keys).agg(
        (~pl.col("status").is_in(JUDGE_NOT_CALLED)).sum().cast(pl.Int64).alias("judge_calls"),
        pl.col("cost_usd").sum().round(4).alias("judge_cost_usd"),
        pl.col("judge").unique().sort().str.join(", ").alias("judge"))


def _verdict_rows(store: ArtifactStore, books: list[str], images: pl.DataFrame) -> pl.DataFrame:
    """Per image in the book now: accepted, its judge sums, and its review counts (ab_report)."""
    by_sha = {(r["book_id"], r["image_sha256"]): (r["provider"], r["model"])
              for r in _image_owners(images)[0].iter_rows(named=True)}
    rows = []
    for book in books:
        verdicts = load_verdicts(store, book)
        for verdict in verdicts.values():
            rows.append({"book_id": book, "provider": verdict.provider, "model": verdict.model,
                         "acceptable_images": int(verdict.accepted), **verdict_scores(verdict),
                         "reviewed": 0, "approved": 0})
        for target, (sha, reviewed, approved) in review_counts(load_state(store, book)).items():
            kept = verdicts.get(target)
            owner = by_sha.get((book, sha)) or ((kept.provider, kept.model) if kept is not None else None)
            if owner is not None:
                rows.append({"book_id": book, "provider": owner[0], "model": owner[1], "acceptable_images": 0,
                             **dict.fromkeys(SUM_COLUMNS, 0), "reviewed": reviewed, "approved": approved})
    schema = {"book_id": pl.Utf8, "provider": pl.Utf8, "model": pl.Utf8, "acceptable_images": pl.Int64,
              **{c: pl.Float64 if c.endswith("_sum") else pl.Int64 for c in SUM_COLUMNS}}
    frame = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return frame.group_by("book_id", "provider", "model").agg(pl.col("acceptable_images", *SUM_COLUMNS).sum())


def _report(images: pl.DataFrame, judges: pl.DataFrame, verdicts: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """One row per `keys` group: image work, the judge's calls on those images, the verdicts' sums; finished."""
    frame = (_aggregate(images, keys).rename({"cost_usd": "image_cost_usd"})
             # full: judge calls whose image has no row here (none to attribute them to) still count their cost
             .join(_judge_aggregate(judges, keys), on=keys, how="full", coalesce=True)
             .join(verdicts.group_by(keys).agg(pl.col("acceptable_images", *SUM_COLUMNS).sum()), on=keys, how="left")
             .with_columns(pl.col("images", "attempts", "paid_generations", "free_generations", "cached_generations",
                                  "failed_generations", "repairs", "judge_calls", "acceptable_images",
                                  *SUM_COLUMNS).fill_null(0),
                           pl.col("image_cost_usd", "repair_cost_usd", "judge_cost_usd").fill_null(0.0),
                           pl.col("judge").fill_null("")))
    frame = frame.with_columns((pl.col("image_cost_usd") + pl.col("judge_cost_usd")).round(4).alias("cost_usd"))
    return score_columns(cost_columns(frame, "cost_usd")).select(*keys, *COLUMNS).sort(keys)


def cost_tables(store: ArtifactStore, ledger: pl.DataFrame | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(per book x provider x model, per provider x model over all books), from `ledger` (the compacted table,
    as the cost_report asset passes it) or, by default, every row as it is now (lists every row file).

    `provider`/`model` are the image model's; the quality judge's calls on its images are counted in its row
    (`judge_calls`, `judge_cost_usd`, the judge named in `judge`), never as its attempts or paid generations, and
    `cost_usd` (image + judge) over `acceptable_images` is what an acceptable image cost, repairs included."""
    ledger = (Ledger(store).frame() if ledger is None else ledger).filter(pl.col("asset").is_in(BOOK_ASSETS))
    images, judges = split_judge_rows(ledger)
    verdicts = _verdict_rows(store, images["book_id"].unique().sort().to_list(), images)
    return (_report(images, judges, verdicts, ["book_id", "provider", "model"]),
            _report(images, judges, verdicts, ["provider", "model"]))


class BookCost(BaseModel):
    """What one book has cost so far, from its ledger rows: shown on the book's own materialization."""

    book_id: str
    cost_usd: float = 0.0  # images and judge calls
    attempts: int = 0
    paid_generations: int = 0
    free_generations: int = 0
    cached_generations: int = 0
    failed_generations: int = 0
    judge_calls: int = 0
    judge_cost_usd: float = 0.0
    acceptable_images: int = 0
    cost_per_acceptable_usd: float | None = None
    by_provider: list[dict] = []

    def line(self) -> str:
        per = self.cost_per_acceptable_usd
        per = "" if per is None else f", ${per:.4f} per acceptable image"
        judge = f", {self.judge_calls} judge call(s) ${self.judge_cost_usd:.2f}" if self.judge_calls else ""
        return (f"{self.book_id} has cost ${self.cost_usd:.2f}: {self.paid_generations} paid generation(s), "
                f"{self.free_generations} free preview render(s), {self.cached_generations} cache hit(s), "
                f"{self.failed_generations} failed{judge}{per}")


def book_cost(store: ArtifactStore, book_id: str) -> BookCost:
    """The cost report's numbers for one book (all its providers together, and per provider x model)."""
    frame = Ledger(store).frame(book_id).filter(pl.col("asset").is_in(BOOK_ASSETS))
    if not frame.height:
        return BookCost(book_id=book_id)
    images, judges = split_judge_rows(frame)
    verdicts = _verdict_rows(store, [book_id], images)
    total = _report(images, judges, verdicts, ["book_id"]).row(0, named=True)
    per = _report(images, judges, verdicts, ["provider", "model"])
    shown = ["provider", "model", "images", "attempts", "paid_generations", "free_generations",
             "cached_generations", "failed_generations", "cost_usd", "judge_calls", "judge_cost_usd",
             "acceptable_images"]
    return BookCost(book_id=book_id, cost_usd=round(total["cost_usd"], 4), acceptable_images=total["acceptable_images"],
                    cost_per_acceptable_usd=total["cost_per_acceptable_usd"], by_provider=per.select(shown).to_dicts(),
                    judge_cost_usd=round(total["judge_cost_usd"], 4),
                    **{k: int(total[k]) for k in ("attempts", "paid_generations", "free_generations",
                                                  "cached_generations", "failed_generations", "judge_calls")})


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
    """The ledger per provider x model as it was called (a quality judge is a row of its own, its calls counted as
    judge calls, not generations)."""
    return (frame.group_by("provider", "model")
            .agg(pl.len().alias("rows"),
                 (paid() & ~is_judge()).sum().alias("paid_generations"),
                 (free() & ~is_judge()).sum().alias("free_generations"),
                 (is_judge() & ~pl.col("status").is_in(JUDGE_NOT_CALLED)).sum().alias("judge_calls"),
                 pl.col("cache_hit").sum().alias("cache_hits"),
                 pl.col("cost_usd").sum().round(4).alias("cost_usd"),
                 pl.col("latency_s").filter(pl.col("status") == "ok").mean().round(2).alias("mean_latency_s"))
            .sort("provider", "model"))


def markdown_table(frame: pl.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    return header + "".join("| " + " | ".join("" if v is None else str(v) for v in row) + " |\n"
                            for row in frame.iter_rows())
