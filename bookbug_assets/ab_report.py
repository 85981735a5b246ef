"""The A/B numbers that decide between models: the quality judge's scores, feature hit rate, repairs, reviewers'
satisfaction, and the ranking by cost per acceptable image.

Shared by `cost_report` (per book x provider x model, from the ledger, the verdicts and the review states) and
`provider_experiment` (per candidate, from its cells). Plain polars on plain rows:

- judge scores come from each image's QualityVerdict as the gate kept it (quality/gate.judge_scores: the 0-4
  `judge_identity_<character>`, `judge_style_match`, `judge_scene_match`) and its `judge_table` (one row per
  character, its features as "feature: status, ..."); an image judged by no judge adds nothing to the means;
- a repair is a gate attempt whose ledger `change` says the judge's fixes were sent (quality/judge_gate.
  repair_request: "repair by edit: ..." for a model that edits, "redraw with the judge's fixes: ..." for one that
  cannot);
- satisfaction is the share of reviewed images a reviewer approved (review.ReviewState): every rejection bumped the
  target's revision and was a distinct image, so a target holds `revision` rejected images plus one approved image
  when its latest decision is an approval. Earlier rejected images count for the provider of the target's latest
  reviewed image (a book seldom changes provider between revisions).
"""

from __future__ import annotations

import re

import polars as pl

from bookbug_assets.quality.verdicts import QualityVerdict
from bookbug_assets.review import ReviewState

REPAIR_CHANGES = ("repair by edit", "redraw with the judge's fixes")  # judge_gate.repair_request's change text
MIN_DECISIVE = 10  # acceptable images per candidate below which a ranking is a hint, not a decision
# Wilson score interval at 95 % for the acceptance rate (Wilson 1927; it stays inside 0-1 and is sound at small n
# and at rates near 1, where the normal approximation is not): https://en.wikipedia.org/wiki/
# Binomial_proportion_confidence_interval#Wilson_score_interval
Z95 = 1.96
_FEATURE_STATUS = re.compile(r": (present|absent|unsure)(?=, |$)")

# Sums carried per group; the report's means and rates are computed from them (so per provider over all books
# is a mean over images, not a mean of books' means).
SUM_COLUMNS = ["judged_images", "identity_sum", "identity_n", "style_sum", "scene_sum", "features_present",
               "features_asked", "reviewed", "approved"]
SCORE_COLUMNS = ["judged_images", "mean_identity", "mean_style_match", "mean_scene_match", "feature_hit_rate",
                 "reviewed", "approved", "satisfaction"]


def is_repair() -> pl.Expr:
    """Ledger rows of attempts that carried the judge's fixes (module docstring)."""
    return pl.any_horizontal([pl.col("change").fill_null("").str.starts_with(c) for c in REPAIR_CHANGES])


def verdict_scores(verdict: QualityVerdict) -> dict:
    """One image's judge sums (SUM_COLUMNS' judge part); all zero when no judge answered for it."""
    scores = verdict.scores
    identities = [v for k, v in scores.items() if k.startswith("judge_identity_")]
    judged = "judge_style_match" in scores
    statuses = [s for row in verdict.judge_table for s in _FEATURE_STATUS.findall(str(row.get("features", "")))]
    return {"judged_images": int(judged), "identity_sum": float(sum(identities)), "identity_n": len(identities),
            "style_sum": float(scores.get("judge_style_match", 0.0)),
            "scene_sum": float(scores.get("judge_scene_match", 0.0)),
            "features_present": statuses.count("present") if judged else 0,
            "features_asked": len(statuses) if judged else 0}


def review_counts(state: ReviewState) -> dict[str, tuple[str | None, int, int]]:
    """target -> (the latest reviewed image's sha256, images reviewed, images approved), for reviewed targets."""
    out = {}
    for target, review in state.targets.items():
        approved = int(review.decision == "approve")
        if review.revision + approved:
            out[target] = (review.image_sha256, review.revision + approved, approved)
    return out


def _ratio(num: str, den: str, digits: int) -> pl.Expr:
    return pl.when(pl.col(den) > 0).then((pl.col(num) / pl.col(den)).round(digits)).otherwise(None)


def score_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """The sums (SUM_COLUMNS) as the report's columns (SCORE_COLUMNS): means over judged images, feature hit rate
    (features judged present / features asked), satisfaction (approved / reviewed); None where nothing was
    judged or reviewed."""
    return frame.with_columns(
        _ratio("identity_sum", "identity_n", 2).alias("mean_identity"),
        _ratio("style_sum", "judged_images", 2).alias("mean_style_match"),
        _ratio("scene_sum", "judged_images", 2).alias("mean_scene_match"),
        _ratio("features_present", "features_asked", 3).alias("feature_hit_rate"),
        _ratio("approved", "reviewed", 3).alias("satisfaction"))


def cost_columns(frame: pl.DataFrame, cost: str) -> pl.DataFrame:
    """cost per acceptable image (`cost`: image and judge costs, repairs included) and repairs per acceptable."""
    return frame.with_columns(_ratio(cost, "acceptable_images", 4).alias("cost_per_acceptable_usd"),
                              _ratio("repairs", "acceptable_images", 3).alias("repairs_per_acceptable"))


def _wilson(bound: float) -> pl.Expr:
    """The acceptance rate's Wilson bound (`bound` -1 lower, +1 upper) at Z95."""
    n, k, z2 = pl.col("images").cast(pl.Float64), pl.col("acceptable_images").cast(pl.Float64), Z95 * Z95
    p = k / n
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * (p * (1 - p) / n + z2 / (4 * n * n)).sqrt() / (1 + z2 / n)
    return pl.when(n > 0).then((centre + bound * half).clip(0.0, 1.0)).otherwise(None)


def rank_candidates(summary: pl.DataFrame, key: str, min_acceptable: int = MIN_DECISIVE) -> pl.DataFrame:
    """`summary` (one row per candidate `key`) ranked by cost per acceptable image, cheapest first; ties go to the
    higher mean identity. A candidate with no acceptable image ranks last. `decisive` is false for a candidate
    resting on fewer than `min_acceptable` acceptable images. `cost_per_acceptable_low` / `_high`: the 95 %
    interval of its cost per acceptable image, from the acceptance rate's Wilson interval with the spend per image
    as measured (the acceptance rate is what a few more pages can move; a model's price per image is not)."""
    ranked = summary.sort([pl.col("cost_per_acceptable_usd").is_null(), "cost_per_acceptable_usd",
                           pl.col("mean_identity").is_null(), "mean_identity", key],
                          descending=[False, False, False, True, False])
    spend = pl.col("cost_per_acceptable_usd") * pl.col("acceptable_images") / pl.col("images")
    low, high = _wilson(-1), _wilson(+1)
    return ranked.with_columns(
        pl.int_range(1, ranked.height + 1).alias("rank"),
        (pl.col("acceptable_images") >= min_acceptable).alias("decisive"),
        (spend / high).round(4).alias("cost_per_acceptable_low"),
        pl.when(low > 0).then((spend / low).round(4)).otherwise(None).alias("cost_per_acceptable_high"),
    ).select("rank", key, pl.exclude("rank", key))


def overlap(ranked: pl.DataFrame, key: str) -> str | None:
    """Why the first is not yet shown cheaper than the second, or None: their 95 % intervals of cost per
    acceptable image overlap. A runner-up with no acceptable image is beaten whatever the interval."""
    priced = ranked.filter(pl.col("cost_per_acceptable_usd").is_not_null())
    if priced.height < 2:
        return None
    first, second = priced.row(0, named=True), priced.row(1, named=True)
    if first["cost_per_acceptable_high"] is not None and first["cost_per_acceptable_high"] < \
            second["cost_per_acceptable_low"]:
        return None

    def interval(row: dict) -> str:
        high = row["cost_per_acceptable_high"]
        return f"${row['cost_per_acceptable_low']:.4f}-" + (f"${high:.4f}" if high is not None else "unbounded")

    return (f"{first[key]} ({interval(first)}) and {second[key]} ({interval(second)}) overlap at 95 % "
            "confidence in cost per acceptable image")


def ranking_decides(ranked: pl.DataFrame, key: str) -> bool:
    """Every candidate rests on enough acceptable images and the first is cheaper beyond the intervals."""
    return bool(ranked.height) and bool(ranked["decisive"].all()) and overlap(ranked, key) is None


def ranking_line(ranked: pl.DataFrame, key: str, min_acceptable: int = MIN_DECISIVE) -> str:
    """One line: who ranks first, what the ranking rests on, and whether it decides anything yet."""
    if not ranked.height:
        return "no candidates"
    images, acceptable = int(ranked["images"].sum()), int(ranked["acceptable_images"].sum())
    first = ranked.row(0, named=True)
    per = first["cost_per_acceptable_usd"]
    lead = (f"{first[key]} ranks first at ${per:.4f} per acceptable image" if per is not None
            else "no candidate made an acceptable image")
    rests = f"the ranking rests on {images} image(s), {acceptable} acceptable"
    thin = [f"{r[key]} ({r['acceptable_images']})" for r in ranked.iter_rows(named=True) if not r["decisive"]]
    why = ([f"fewer than {min_acceptable} acceptable images for " + ", ".join(thin)] if thin else []) + \
        [o for o in (overlap(ranked, key),) if o]
    verdict = f"NOT DECISIVE: {'; '.join(why)}; render more pages before choosing" if why else "decisive"
    return f"{lead}; {rests}; {verdict}"
