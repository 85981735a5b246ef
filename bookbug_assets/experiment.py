"""The provider experiment's plain parts: one cell (a page on a provider, scored and costed) and the
contact sheet and summary that compare them.

Every cell is an ordinary page request (the book's prompt, references and seed) sent to another
provider through generate_image, so it is cached, journaled and in the ledger like any image; a
cell for the book's own provider is the book's page, free. Each image is scored by the same
assessment as book pages, so the table answers "what does an acceptable page cost on each
provider" on identical inputs.
"""

from __future__ import annotations

import io

import polars as pl
from PIL import Image, ImageDraw, ImageFont

from bookbug_assets.generation import GenerationContext, generate_image
from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.verdicts import QualityReference, assess_image
from bookbug_assets.rendering import BookPlan, page_request
from bookbug_assets.stories.models import page_key

CELL = 256  # contact-sheet thumbnail side, px
CAPTION_H = 44
LABEL_W = 90
HEADER_H = 36


def experiment_cell(plan: BookPlan, page: int, spec: str, gen: GenerationContext, qref: QualityReference,
                    thresholds: Thresholds, *, name: str, gate_character_on_previews: bool = False
                    ) -> tuple[dict, bytes | None]:
    """One page on one provider (the plan's): its row of the comparison table and its image bytes."""
    row = {"page": page, "provider_spec": spec, "provider": plan.family, "model": plan.model, "seed": None,
           "image_sha256": None, "cost_usd": 0.0, "latency_s": None, "cache_hit": False,
           "style_distance": None, "character_similarity": None, "passed": False, "failures": "", "error": None}
    try:
        record = generate_image(page_request(plan, page), plan.provider, gen, reference_bytes=plan.reference_bytes,
                                partition=f"{name}|{spec}|{page_key(page)}")
    except Exception as exc:  # noqa: BLE001 - one provider failing is a result, not a crash
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return row, None
    data = gen.store.read_bytes(record.image_key)
    result = assess_image(data, qref, thresholds, kind="page", is_preview=record.is_preview,
                          has_characters=bool(plan.story.pages[page - 1].characters),
                          size=(record.width, record.height), gate_character_on_previews=gate_character_on_previews)
    row.update(seed=record.seed, image_sha256=record.image_sha256, cost_usd=record.cost_usd,
               latency_s=record.latency_s, cache_hit=record.cache_hit, passed=result.passed,
               style_distance=result.scores.get("style_distance"),
               character_similarity=result.scores.get("character_similarity"), failures="; ".join(result.failures))
    return row, data


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
