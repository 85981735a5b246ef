"""The quality gate every generated image passes: render, assess, redraw with a new seed while it fails.

Pages, the sprite sheet and the hero page all go through `render_with_gate`; attempts stop at
`max_attempts` or when the book's budget would be exceeded, and every attempt is a ledger row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bookbug_assets.generation import GenerationContext, cached_record, ledger_row
from bookbug_assets.layout import GenerationRecord
from bookbug_assets.ledger import BudgetExceeded
from bookbug_assets.providers.base import ImageRequest
from bookbug_assets.quality.artifacts import Thresholds
from bookbug_assets.quality.verdicts import (
    AttemptSummary, QualityReference, QualityVerdict, assess_image, save_verdict,
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


def render_with_gate(request: ImageRequest, generate, *, store: ArtifactStore, story: Story, target: str,
                     partition: str, kind: str, ctx: GenerationContext, config: GateSettings,
                     qref: QualityReference | None, has_characters: bool,
                     review: ReviewState, seeds_matter: bool = True) -> tuple[GenerationRecord, QualityVerdict]:
    """Render `request` until an attempt passes the gate (or is approved), attempts or budget run out.

    Attempt 1 is the request as reviewed (review.reviewed_request); later attempts change the seed, and for a
    model that takes no seed (`seeds_matter` False) the prompt too (attempt_variation), so no redraw is a paid
    repeat of an input the model already drew. `generate(request, change)` records what changed. The winner is the first accepted attempt, else the best failing one (fewest failures).
    Attempts past `max_attempts` are looked at only while they are already in the cache (free).
    A reviewer's approval of an attempt's exact bytes accepts it over the gate.
    """
    decision = review.targets.get(target)
    approved_sha = decision.image_sha256 if decision and decision.decision == "approve" else None
    tried: list[tuple[GenerationRecord, AttemptSummary, object]] = []
    stopped = ""
    attempt = 0
    while True:
        attempt += 1
        attempt_request = reviewed_request(store, story, target, request, attempt, review)
        if not seeds_matter:
            attempt_request = attempt_variation(attempt_request, attempt)
        change = describe_change(request, attempt_request)
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
        if qref is None:  # gate off: the first image is taken
            result = None
            passed = True
        else:
            result = assess_image(store.read_bytes(record.image_key), qref, config.thresholds, kind=kind,
                                  is_preview=record.is_preview, has_characters=has_characters,
                                  size=(record.width, record.height),
                                  gate_character_on_previews=config.gate_character_on_previews)
            passed = result.passed
        summary = AttemptSummary(attempt=attempt, seed=record.seed, image_sha256=record.image_sha256,
                                 cost_usd=record.cost_usd, cache_hit=record.cache_hit, passed=passed,
                                 failures=result.failures if result else [])
        tried.append((record, summary, result))
        if passed or record.image_sha256 == approved_sha:
            break
    accepted = [t for t in tried if t[1].passed or t[0].image_sha256 == approved_sha]
    record, summary, result = accepted[0] if accepted else min(tried, key=lambda t: len(t[1].failures))
    verdict = QualityVerdict(
        book_id=story.book_id, target=target, passed=summary.passed, accepted=bool(accepted),
        image_sha256=record.image_sha256, image_key=record.image_key, provider=record.provider, model=record.model,
        seed=record.seed, scores=result.scores if result else {}, failures=summary.failures,
        notes=(result.notes if result else ["quality gate off"]), attempts=[t[1] for t in tried],
        winner=summary.attempt, stopped=stopped)
    save_verdict(store, verdict)
    return record, verdict


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
    rows = ["| attempt | seed | cost | cache | result |", "|---|---|---|---|---|"]
    for a in verdict.attempts:
        if a.attempt == verdict.winner:
            outcome = "**won**" + (f" (still failing: {'; '.join(a.failures)})" if a.failures else "")
        elif a.failures:
            outcome = "lost: " + "; ".join(a.failures)
        else:
            outcome = "lost: a better attempt was accepted"
        rows.append(f"| {a.attempt} | {a.seed} | ${a.cost_usd:.3f} | {'yes' if a.cache_hit else 'no'} | {outcome} |")
    if verdict.stopped:
        rows.append(f"\nRegeneration stopped early: {verdict.stopped}")
    return "\n".join(rows)
