"""The provider experiment's plain parts: one cell (a page on a provider, through the book's gate, scored and
costed) and the contact sheet and ranked summary that compare them.

Every cell is an ordinary page request (the book's prompt, references and seed) sent to another provider through
the same gate as a book page (quality/gate.render_with_gate): the weight-free checks, the quality judge when one is
configured, redraws and the judge's repairs up to max_attempts, each attempt cached, journaled and in the ledger
like any image. So the table answers "what does an acceptable page cost on each provider, judge calls and repairs
included" on identical inputs. A cell for the book's own provider is the book's page from the cache: it is priced
at what it cost when first drawn (first_costs), so the book's own model is not ranked as free.
"""

from __future__ import annotations

import io
import re

import polars as pl
from PIL import Image, ImageDraw, ImageFont

from bookbug_assets.ab_report import (
    MIN_DECISIVE, REPAIR_CHANGES, SUM_COLUMNS, cost_columns, rank_candidates, score_columns, verdict_scores,
)
from bookbug_assets.cost_report import is_judge
from bookbug_assets.generation import GenerationContext, generate_image
from bookbug_assets.layout import GenerationRecord, page_target
from bookbug_assets.providers.base import ImageRequest
from bookbug_assets.quality.gate import GateSettings, render_with_gate
from bookbug_assets.quality.verdicts import QualityReference, QualityVerdict
from bookbug_assets.rendering import BookPlan, judge_subject, page_request
from bookbug_assets.review import ReviewState
from bookbug_assets.stories.models import page_key

CELL = 256  # contact-sheet thumbnail side, px
CAPTION_H = 62
LABEL_W = 90
HEADER_H = 36
NO_JUDGE = "no judge"  # a cell's judge reason with no quality judge configured
SCHEMA_OVERRIDES = {"seed": pl.Int64, "image_sha256": pl.Utf8, "latency_s": pl.Float64, "style_distance": pl.Float64,
                    "character_similarity": pl.Float64, "error": pl.Utf8, "identity": pl.Float64,
                    "style_match": pl.Float64, "scene_match": pl.Float64}


def empty_row(page: int, spec: str, provider: str, model: str, partition: str = "") -> dict:
    """A cell's comparison row before (or without: `error`) an image."""
    return {"page": page, "provider_spec": spec, "provider": provider, "model": model, "partition": partition,
            "seed": None, "image_sha256": None, "cost_usd": 0.0, "latency_s": None, "cache_hit": False,
            "style_distance": None, "character_similarity": None, "passed": False, "failures": "", "error": None,
            "attempts": 0, "repairs": 0, "image_cost_usd": 0.0, "judge_cost_usd": 0.0, "judge": "",
            "judge_reason": NO_JUDGE, "identity": None, "style_match": None, "scene_match": None,
            **dict.fromkeys(("judged_images", "identity_sum", "identity_n", "style_sum", "scene_sum",
                             "features_present", "features_asked"), 0)}


def first_costs(history: pl.DataFrame) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """What each image cost when it was first drawn (image sha256 -> $) and what its latest judging cost (sha256,
    judge -> $, a retried malformed answer included), from ledger rows: a cell that is a cache hit now is priced
    at what it cost then, so the book's own provider is not ranked as free."""
    drawn = history.filter(~is_judge() & ~pl.col("cache_hit") & pl.col("image_sha256").is_not_null())
    images = dict(drawn.group_by("image_sha256").agg(pl.col("cost_usd").max()).iter_rows())
    judged = (history.filter(is_judge() & ~pl.col("cache_hit") & pl.col("image_sha256").is_not_null())
              .with_columns((pl.col("provider") + ":" + pl.col("model")).alias("judge"))
              .group_by("image_sha256", "judge", "request_key").agg(pl.col("cost_usd").sum(), pl.col("ts").max())
              .sort("ts").group_by("image_sha256", "judge").agg(pl.col("cost_usd").last()))
    return images, {(sha, judge): cost for sha, judge, cost in judged.iter_rows()}


def verdict_row(row: dict, verdict: QualityVerdict, record: GenerationRecord,
                prices: tuple[dict[str, float], dict[tuple[str, str], float]]) -> dict:
    """The cell's row from the gate's verdict: every attempt's image and judge cost (cache hits at first cost)."""
    image_price, judge_price = prices
    image_cost = sum(a.cost_usd if not a.cache_hit else image_price.get(a.image_sha256, 0.0)
                     for a in verdict.attempts)
    judge_cost = sum(a.judge_cost_usd or (judge_price.get((a.image_sha256, verdict.judge), 0.0)
                                          if a.judge_reason else 0.0) for a in verdict.attempts)
    sums = verdict_scores(verdict)
    judged = bool(sums["judged_images"])
    return {**row, "seed": record.seed, "image_sha256": record.image_sha256,
            "cost_usd": round(sum(a.cost_usd + a.judge_cost_usd for a in verdict.attempts), 6),
            "latency_s": record.latency_s, "cache_hit": record.cache_hit, "passed": verdict.accepted,
            "style_distance": verdict.scores.get("style_distance"),
            "character_similarity": verdict.scores.get("character_similarity"),
            "failures": "; ".join(verdict.failures), "attempts": len(verdict.attempts),
            "repairs": sum(a.change.startswith(REPAIR_CHANGES) for a in verdict.attempts),
            "image_cost_usd": round(image_cost, 6), "judge_cost_usd": round(judge_cost, 6),
            "judge": verdict.judge if verdict.judge not in ("", "not asked") else "",
            "judge_reason": verdict.judge_reason or (f"not asked: {(verdict.failures or ['-'])[0]}"[:200]
                                                     if verdict.judge == "not asked" else NO_JUDGE),
            "identity": round(sums["identity_sum"] / sums["identity_n"], 2) if sums["identity_n"] else None,
            "style_match": sums["style_sum"] if judged else None, "scene_match": sums["scene_sum"] if judged else None,
            **sums}


def experiment_cell(plan: BookPlan, page: int, spec: str, gen: GenerationContext, qref: QualityReference,
                    gate: GateSettings, *, name: str,
                    prices: tuple[dict[str, float], dict[tuple[str, str], float]] = ({}, {})
                    ) -> tuple[dict, bytes | None]:
    """One page on one provider (the plan's) through the book's gate (quality/gate.render_with_gate: redraws and
    the judge's repairs up to `gate.max_attempts`): its row of the comparison table and the kept image's bytes.

    The gate keeps its verdict under the experiment's account (`<account>/cells/<provider>`), never the book's."""
    partition = f"{name}|{spec}|{page_key(page)}"
    row = empty_row(page, spec, plan.family, plan.model, partition)
    target = page_target(page)
    story = plan.story.model_copy(update={"book_id": f"{gen.book_id}/cells/{_slug(spec)}"})

    def generate(request: ImageRequest, change: str = "") -> GenerationRecord:
        refs = dict(plan.reference_bytes or {})
        for ref in request.references:  # a repair sends the failed attempt too
            if ref.sha256 not in refs:
                refs[ref.sha256] = gen.store.read_bytes(ref.key)
        return generate_image(request, plan.provider, gen, reference_bytes=refs, partition=partition, change=change)

    try:
        record, verdict = render_with_gate(
            page_request(plan, page), generate, store=gen.store, story=story, target=target, partition=partition,
            kind="page", ctx=gen, config=gate, qref=qref, has_characters=bool(plan.story.pages[page - 1].characters),
            review=ReviewState(book_id=story.book_id), seeds_matter=plan.caps.seed_deterministic,
            judge_subject=judge_subject(plan, target) if gate.judge is not None else None,
            edit_references=plan.caps.max_references)
    except Exception as exc:  # noqa: BLE001 - one provider failing is a result, not a crash
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return row, None
    return verdict_row(row, verdict, record, prices), gen.store.read_bytes(record.image_key)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "provider"


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def contact_sheet(cells: dict[tuple[int, str], bytes | None], frame: pl.DataFrame, pages: list[int],
                  columns: list[str]) -> bytes:
    """PNG grid: one row per page, one column per provider; each cell's caption (cell_caption) under it."""
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
            for n, line in enumerate(cell_caption(row)):
                colour = "black" if n != 1 else ("darkgreen" if row["passed"] else "darkred")
                draw.text((left + 6, top + CELL + 2 + 19 * n), line, fill=colour, font=_font(13 if n < 2 else 11))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()


def cell_caption(row: dict) -> list[str]:
    """The lines under a cell: weight-free scores; verdict, cost (image + judge, as first paid), attempts and
    repairs; the judge's reason ("no judge" when none is configured)."""
    scores = (f"style {row['style_distance']:.2f}  char {row['character_similarity']:.2f}"
              if row["style_distance"] is not None and row["character_similarity"] is not None else "not scored")
    if row.get("identity") is not None:
        scores += f"  id {row['identity']:.1f}/4"
    cost = row["image_cost_usd"] + row["judge_cost_usd"]
    tries = f"  {row['attempts']} try" + ("" if row["attempts"] == 1 else "s") if row["attempts"] else ""
    repairs = f", {row['repairs']} repair" + ("" if row["repairs"] == 1 else "s") if row["repairs"] else ""
    reason = row["judge_reason"] or NO_JUDGE
    return [scores, f"{'PASS' if row['passed'] else 'FAIL'}  ${cost:.3f}{tries}{repairs}",
            ("judge: " + reason if reason != NO_JUDGE else reason)[:44]]


def summary_table(frame: pl.DataFrame, satisfaction: pl.DataFrame | None = None,
                  min_acceptable: int = MIN_DECISIVE) -> pl.DataFrame:
    """One row per candidate: images, acceptable, weight-free and judge scores, feature hit rate, repairs, what it
    cost (image + judge, cache hits at what they first cost; `cost_usd` what this run paid), cost per acceptable
    image, and reviewers' satisfaction with the books this model made (`satisfaction`: cost_report's per provider
    x model table; an experiment's own cells are not reviewed). Ranked: ab_report.rank_candidates."""
    summary = (frame.group_by("provider_spec", "provider", "model").agg(
        pl.len().alias("images"), pl.col("passed").sum().cast(pl.Int64).alias("acceptable_images"),
        pl.col("style_distance").mean().round(3).alias("mean_style_distance"),
        pl.col("character_similarity").mean().round(3).alias("mean_character_similarity"),
        pl.col("image_cost_usd").sum().round(4), pl.col("judge_cost_usd").sum().round(4),
        pl.col("cost_usd").sum().round(4), pl.col("latency_s").mean().round(2).alias("mean_latency_s"),
        pl.col("attempts", "repairs").sum(), pl.col("judge").filter(pl.col("judge") != "").unique().sort()
        .str.join(", "), *(pl.col(c).sum() for c in SUM_COLUMNS if c not in ("reviewed", "approved"))))
    reviews = (satisfaction.select("provider", "model", "reviewed", "approved") if satisfaction is not None
               else pl.DataFrame(schema={"provider": pl.Utf8, "model": pl.Utf8, "reviewed": pl.Int64,
                                         "approved": pl.Int64}))
    summary = (summary.join(reviews, on=["provider", "model"], how="left")
               .with_columns(pl.col("reviewed", "approved").fill_null(0),
                             (pl.col("image_cost_usd") + pl.col("judge_cost_usd")).round(4).alias("total_cost_usd")))
    summary = score_columns(cost_columns(summary, "total_cost_usd"))
    return rank_candidates(summary.select(
        "provider_spec", "images", "acceptable_images", "cost_per_acceptable_usd", "total_cost_usd",
        "image_cost_usd", "judge_cost_usd", "cost_usd", "attempts", "repairs", "repairs_per_acceptable",
        "mean_identity", "mean_style_match", "mean_scene_match", "feature_hit_rate", "judged_images",
        "mean_style_distance", "mean_character_similarity", "mean_latency_s", "reviewed", "approved",
        "satisfaction", "judge"), "provider_spec", min_acceptable)
