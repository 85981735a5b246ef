"""A book's cost estimate with its quality judge: the images' estimate (cost_report) plus the judge's calls.

First pass: one judge call per image (sprite sheet, hero page, every page), each image judged once when it passes
the weight-free checks. Worst case: every attempt of every image judged, each answer malformed once and asked
again (judge.judge_image asks at most twice). At the judge's table price per call (judge_chat.JUDGE_MODELS, or
the backend's own); a verdict already kept for an image costs nothing, as a cached image does.
"""

from __future__ import annotations

from bookbug_assets.cost_report import CostEstimate

JUDGE_CALLS_PER_ANSWER = 2  # a malformed answer is asked once more


class JudgedCostEstimate(CostEstimate):
    """CostEstimate whose totals include the judge's calls (judge_* fields say how much of them is judging)."""

    judge: str = ""
    judge_price_usd: float = 0.0
    judge_first_pass_usd: float = 0.0
    judge_worst_case_usd: float = 0.0

    def line(self) -> str:
        text = super().line()
        if not self.judge:
            return text
        return (f"{text}; includes the quality judge {self.judge} at ${self.judge_price_usd:.4f} a call: "
                f"${self.judge_first_pass_usd:.2f} first pass, at most ${self.judge_worst_case_usd:.2f}")


def with_judge(estimate: CostEstimate, judge: str, price_per_call_usd: float) -> JudgedCostEstimate:
    """`estimate` with the judge's calls added to both totals."""
    first = round(estimate.images * price_per_call_usd, 4)
    worst = round(estimate.images * estimate.max_attempts * JUDGE_CALLS_PER_ANSWER * price_per_call_usd, 4)
    return JudgedCostEstimate(**{**estimate.model_dump(),
                                 "first_pass_usd": round(estimate.first_pass_usd + first, 4),
                                 "worst_case_usd": round(estimate.worst_case_usd + worst, 4)},
                              judge=judge, judge_price_usd=price_per_call_usd, judge_first_pass_usd=first,
                              judge_worst_case_usd=worst)
