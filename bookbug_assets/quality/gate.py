"""The quality gate every generated image passes: render, assess, redraw with a new seed while it fails.

Pages, the sprite sheet and the hero page all go through `render_with_gate`; attempts stop at
`max_attempts` or when the book's budget would be exceeded, and every attempt is a ledger row.
With a quality judge configured (GateSettings.judge), an image that passed the weight-free checks is judged
against the characters' cards and the references too (quality/judge_gate.py); a verdict that names what is
wrong makes the next attempt a repair of that image instead of a fresh draw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bookbug_assets.generation import GenerationContext, cached_record, ledger_row
from bookbug_assets.layout import GenerationRecord
from bookbug_assets.ledger import BudgetExceeded
from bookbug_assets.providers.base import ImageRequest
from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.book_limits import judge_run_limits
from bookbug_assets.quality.judge import JudgeBackend, judge_failures
from bookbug_assets.quality.judge_gate import JudgeSubject, judge_attempt, judge_row, repair_fixes, repair_request
from bookbug_assets.quality.judge_models import JudgeVerdict
from bookbug_assets.quality.verdicts import (
    AttemptSummary, QualityReference, QualityVerdict, assess_stored_image, save_verdict,
)
from bookbug_assets.review import ReviewState, reviewed_request
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story


@dataclass(frozen=True)
class GateSettings:
    """How hard an image is judged and how often it may be redrawn (the assets' run config fills it in)."""

    max_attempts: int = 3
    quality_gate: bool = True
    thresholds: Thresholds = field(default_factory=Thresholds)
    gate_character_on_previews: bool = False
    judge: JudgeBackend | None = None  # the quality judge (off: the weight-free checks alone)
    judge_overrides: dict = field(default_factory=dict)  # judge limits set by the run (JudgeThresholds fields)


def render_with_gate(request: ImageRequest, generate, *, store: ArtifactStore, story: Story, target: str,
                     partition: str, kind: str, ctx: GenerationContext, config: GateSettings,
                     qref: QualityReference | None, has_characters: bool,
                     review: ReviewState, seeds_matter: bool = True, judge_subject: JudgeSubject | None = None,
                     edit_references: int = 0) -> tuple[GenerationRecord, QualityVerdict]:
    """Render `request` until an attempt passes the gate (or is approved), attempts or budget run out.

    Attempt 1 is the request as reviewed (review.reviewed_request); later attempts change the seed, and for a
    model that takes no seed (`seeds_matter` False) the prompt too (attempt_variation), so no redraw is a paid
    repeat of an input the model already drew. `generate(request, change)` records what changed. The winner is the first accepted attempt, else the best failing one (fewest failures).
    Attempts past `max_attempts` are looked at only while they are already in the cache (free).
    A reviewer's approval of an attempt's exact bytes accepts it over the gate.
    With `config.judge` and a `judge_subject`, an image that passed the weight-free checks is judged too; when the
    verdict names what is wrong, the next attempt repairs that image (an edit where the model takes input images,
    `edit_references` > 0; else the fixes in the prompt of a redraw).
    """
    decision = review.targets.get(target)
    approved_sha = decision.image_sha256 if decision and decision.decision == "approve" else None
    judging = config.judge is not None and judge_subject is not None and qref is not None
    judge_limits, judge_note = judge_run_limits(qref.limits, config.judge_overrides) if judging else (None, "")
    tried: list[tuple[GenerationRecord, AttemptSummary, object, JudgeVerdict | None]] = []
    stopped = ""
    attempt = 0
    repair: tuple[GenerationRecord, list[str]] | None = None  # the failed image and the judge's fixes for it
    while True:
        attempt += 1
        attempt_request = reviewed_request(store, story, target, request, attempt, review)
        if not seeds_matter:
            attempt_request = attempt_variation(attempt_request, attempt)
        change = describe_change(request, attempt_request)
        if repair is not None:
            attempt_request, change = repair_request(attempt_request, repair[0], repair[1],
                                                     edit_references=edit_references)
        # max_attempts bounds what is paid for; attempts an earlier run already drew are free and always looked
        # at, so a rerun with fewer attempts cannot swap an accepted attempt 3 for a failing attempt 1.
        if attempt > config.max_attempts and cached_record(store, attempt_request) is None:
            break
        try:
            record = generate(attempt_request, change)
        except BudgetExceeded as exc:
            if not tried:
                raise
            stopped = f"budget: {exc}"
            ctx.ledger.append(ledger_row(ctx, attempt_request, "budget_stop", partition, attempt=attempt,
                                         error=str(exc), change=change))
            break
        judged, repair = None, None
        if qref is None:  # gate off: the first image is taken
            result = None
            passed = True
        else:
            data = store.read_bytes(record.image_key)
            result = assess_stored_image(store, data, record.image_sha256, qref, config.thresholds, kind=kind,
                                         is_preview=record.is_preview, has_characters=has_characters,
                                         size=(record.width, record.height),
                                         gate_character_on_previews=config.gate_character_on_previews)
            passed = result.passed
            if passed and judging:  # the weight-free checks first: a blank or blurred image never pays a judge
                try:
                    judged = judge_attempt(config.judge, ctx, judge_subject, image=data,
                                           image_sha256=record.image_sha256, partition=partition, attempt=attempt,
                                           what=request.label or target)
                except BudgetExceeded as exc:
                    stopped = f"budget: {exc}"
                    ctx.ledger.append(judge_row(ctx, config.judge, "budget_stop", partition, key="",
                                                attempt=attempt, image_sha256=record.image_sha256, error=str(exc)))
                    result = result.model_copy(update={"passed": False,
                                                       "failures": [f"not judged: budget: {exc}"]})
                else:
                    failures = judge_failures(judged, judge_limits)
                    result = result.model_copy(update={"passed": not failures,
                                                       "failures": result.failures + failures})
                    fixes = repair_fixes(judged, judge_subject.cards) if failures else []
                    repair = (record, fixes) if fixes else None
                passed = result.passed
        summary = AttemptSummary(attempt=attempt, seed=record.seed, image_sha256=record.image_sha256,
                                 cost_usd=record.cost_usd, cache_hit=record.cache_hit, passed=passed,
                                 failures=result.failures if result else [], change=change,
                                 judge_reason=judged.reason if judged else "",
                                 judge_cost_usd=judged.cost_usd if judged else 0.0)
        tried.append((record, summary, result, judged))
        if passed or record.image_sha256 == approved_sha or stopped:
            break
    accepted = [t for t in tried if t[1].passed or t[0].image_sha256 == approved_sha]
    record, summary, result, judged = accepted[0] if accepted else min(tried, key=lambda t: len(t[1].failures))
    notes = (result.notes if result else ["quality gate off"]) + ([judge_note] if judged and judge_note else [])
    verdict = QualityVerdict(
        book_id=story.book_id, target=target, passed=summary.passed, accepted=bool(accepted),
        image_sha256=record.image_sha256, image_key=record.image_key, provider=record.provider, model=record.model,
        seed=record.seed, scores={**(result.scores if result else {}), **judge_scores(judged)},
        failures=summary.failures, notes=notes, attempts=[t[1] for t in tried],
        winner=summary.attempt, stopped=stopped, **judge_fields(judged, judging))
    save_verdict(store, verdict)
    return record, verdict


def judge_scores(judged: JudgeVerdict | None) -> dict[str, float]:
    """The judge's 0-4 scores as the verdict's scores (they become the check's float metadata)."""
    if judged is None or judged.answer is None:
        return {}
    answer = judged.answer
    return {"judge_style_match": float(answer.style_match), "judge_scene_match": float(answer.scene_match),
            **{f"judge_identity_{c.id}": float(c.identity) for c in answer.characters}}


def judge_fields(judged: JudgeVerdict | None, judging: bool) -> dict:
    if judged is None:
        return {"judge": "not asked" if judging else ""}
    return {"judge": judged.judge, "judge_reason": judged.reason, "judge_table": judged.table()}


# Composition changes a seedless model reads instead of a new seed; one per redraw, never the same one twice.
VARIATIONS = ("a slightly wider view of the scene", "seen from a lower angle", "the characters placed differently",
              "a closer view of the characters", "seen from a little higher up", "a different arrangement of the scene")


def attempt_variation(request: ImageRequest, attempt: int) -> ImageRequest:
    """Attempt `attempt` (2+) of an image for a model that ignores seeds: the same prompt with one composition
    change added, distinct per attempt (attempt 1 is left as it is, so its cache stays valid)."""
    if attempt <= 1:
        return request
    n = attempt - 2
    variation = VARIATIONS[n % len(VARIATIONS)] + (f" (take {n // len(VARIATIONS) + 2})" if n >= len(VARIATIONS) else "")
    return request.model_copy(update={"prompt": f"{request.prompt} Composition for this attempt: {variation}."})


def describe_change(first: ImageRequest, attempt: ImageRequest) -> str:
    """What an attempt sends differently from the first one, for the ledger ("" when nothing changed)."""
    changed = []
    if attempt.seed != first.seed:
        changed.append(f"seed {attempt.seed}")
    if attempt.prompt != first.prompt:
        extra = attempt.prompt[len(first.prompt):] if attempt.prompt.startswith(first.prompt) else attempt.prompt
        changed.append(f"prompt: {extra.strip()[:120]}")
    if attempt.references != first.references:
        changed.append("references")
    return "; ".join(changed)


def attempts_markdown(verdict: QualityVerdict) -> str:
    """Which attempt won and why each other one lost, for the image's materialization."""
    rows = ["| attempt | seed | cost | cache | result | judge | change |", "|---|---|---|---|---|---|---|"]
    for a in verdict.attempts:
        if a.attempt == verdict.winner:
            outcome = "**won**" + (f" (still failing: {'; '.join(a.failures)})" if a.failures else "")
        elif a.failures:
            outcome = "lost: " + "; ".join(a.failures)
        else:
            outcome = "lost: a better attempt was accepted"
        judge = (a.judge_reason + (f" (${a.judge_cost_usd:.4f})" if a.judge_cost_usd else "")) or "-"
        rows.append(f"| {a.attempt} | {a.seed} | ${a.cost_usd:.3f} | {'yes' if a.cache_hit else 'no'} | {outcome} | "
                    f"{_cell(judge)} | {_cell(a.change) or '-'} |")
    if verdict.stopped:
        rows.append(f"\nRegeneration stopped early: {verdict.stopped}")
    return "\n".join(rows)


def _cell(text: str) -> str:
    """Text that stays inside one markdown table cell."""
    return " ".join(text.replace("|", "/").split())
