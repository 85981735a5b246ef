"""The quality judge inside the gate: a judge call is a generation like an image, and a named fault is repaired.

`judge_attempt` asks the judge about one attempt's image the way generation.py asks for an image: the verdict is
kept by its request hash (judge.judge_image, layout.judge_cache_key), so a rerun of an unchanged book asks nothing;
every call first reserves its table price against the book's budget (BudgetExceeded stops it like an image), is
tried again while the judge is unreachable (backoff with jitter, as image creates), and leaves a ledger row
(`kind = judge`, the judge's family and model, cost, latency; a cache hit leaves a `cached` row at $0). The gate
calls it only after the weight-free checks passed, so a blank or blurred image never pays for a judge call; each
page's gate runs in that page's thread, so judge calls overlap like the pages' renders.

`repair_fixes` turns a failing verdict's named differences into instructions ("give Pip the red knitted scarf,
as on the reference sheet"; "remove the lettering (the word MOON on the sign)"), and `repair_request` makes the
next attempt from them: for a model that takes input images (ModelCapabilities.max_references > 0: Kontext, Nano
Banana Pro edit, FLUX.2 edit) an edit of the failed image, sent first, with the book's references after it;
for one that takes none, the instructions added to the prompt of a redraw with a new seed.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from bookbug_assets.generation import GenerationContext
from bookbug_assets.layout import GenerationRecord
from bookbug_assets.ledger import LedgerRow
from bookbug_assets.providers.base import ImageRequest, ReferenceImage
from bookbug_assets.quality.judge import (
    JudgeBackend, JudgeReply, JudgeRequest, JudgeUnavailable, judge_image, judge_key, parse_answer,
)
from bookbug_assets.quality.judge_models import CharacterCard, JudgeVerdict

JUDGE_KIND = "judge"  # LedgerRow.kind of a judge call
REPAIR_ROLE = "repair_source"  # ReferenceImage.role of the failed image an edit starts from
UNAVAILABLE_TRIES = 3  # an unreachable judge is asked this often before the verdict is a judge error


@dataclass(frozen=True)
class JudgeSubject:
    """What one target is judged against: reference images by role, in the order the judge sees them after the
    image itself, the characters' cards, the scene and the style."""

    references: tuple[tuple[str, bytes], ...]
    cards: tuple[CharacterCard, ...]
    scene: str
    style: str


def judge_row(ctx: GenerationContext, backend: JudgeBackend, status: str, partition: str, *, key: str,
              attempt: int, image_sha256: str, **kw) -> LedgerRow:
    """A judge call's ledger row: `attempt` is the image attempt judged, `image_sha256` the bytes judged."""
    return LedgerRow(run_id=ctx.run_id, book_id=ctx.book_id, asset=ctx.asset, partition=partition, kind=JUDGE_KIND,
                     provider=backend.family, model=backend.model, seed=0, request_key=key, status=status,
                     attempt=attempt, image_sha256=image_sha256, **kw)


class MeteredJudge:
    """A JudgeBackend whose every call is budgeted, retried while unreachable and written to the ledger."""

    def __init__(self, inner: JudgeBackend, ctx: GenerationContext, *, key: str, partition: str, attempt: int,
                 image_sha256: str, what: str) -> None:
        self.inner, self.ctx = inner, ctx
        self.family, self.model = inner.family, inner.model
        self._row = dict(key=key, attempt=attempt, image_sha256=image_sha256)
        self.partition, self.what = partition, what
        self.calls = 0
        self._rng = random.Random(key)

    def price_per_call_usd(self) -> float:
        return self.inner.price_per_call_usd()

    def ask(self, request: JudgeRequest) -> JudgeReply:
        ctx, price = self.ctx, self.inner.price_per_call_usd()
        if ctx.budget is not None:
            ctx.budget.reserve(price, f"judging {self.what}")  # BudgetExceeded: the gate stops, as for an image
        for n in range(1, UNAVAILABLE_TRIES + 1):
            started = time.monotonic()
            self.calls += 1
            try:
                reply = self.inner.ask(request)
            except JudgeUnavailable as exc:
                ctx.ledger.append(self._ledger("unavailable", error=str(exc)[:300],
                                               latency_s=round(time.monotonic() - started, 3)))
                if n == UNAVAILABLE_TRIES or ctx.terminating:
                    if ctx.budget is not None:
                        ctx.budget.release(price)  # nothing was answered, so nothing was billed
                    raise
                ctx.sleep(ctx.retry.delay(n, None, self._rng))
                continue
            if ctx.budget is not None:  # the reservation was the table price; the service says what it charged
                if reply.cost_usd > price:
                    ctx.budget.charge(reply.cost_usd - price)
                else:
                    ctx.budget.release(price - reply.cost_usd)
            if reply.refusal is not None:
                status, error = "refused", reply.refusal[:300]
            else:
                answer, problem = parse_answer(reply.text, request.cards)
                status, error = ("ok", None) if answer is not None else ("malformed", problem[:300])
            latency = reply.latency_s or time.monotonic() - started
            ctx.ledger.append(self._ledger(status, error=error, cost_usd=reply.cost_usd, latency_s=round(latency, 3)))
            return reply
        raise AssertionError("unreachable")

    def _ledger(self, status: str, **kw) -> LedgerRow:
        return judge_row(self.ctx, self, status, self.partition, change=f"judge call {self.calls}", **self._row, **kw)


def judge_attempt(backend: JudgeBackend, ctx: GenerationContext, subject: JudgeSubject, *, image: bytes,
                  image_sha256: str, partition: str, attempt: int, what: str) -> JudgeVerdict:
    """The judge's verdict on one attempt's image (module docstring). Raises BudgetExceeded before a call the
    book's budget cannot take."""
    refs = dict(subject.references)
    key = judge_key(backend, image=image, references=refs, cards=subject.cards, scene=subject.scene,
                    style=subject.style)
    metered = MeteredJudge(backend, ctx, key=key, partition=partition, attempt=attempt, image_sha256=image_sha256,
                           what=what)
    verdict = judge_image(metered, ctx.store, image=image, references=refs, cards=subject.cards,
                          scene=subject.scene, style=subject.style)
    if verdict.cache_hit:
        ctx.ledger.append(judge_row(ctx, backend, "cached", partition, key=key, attempt=attempt,
                                    image_sha256=image_sha256, cache_hit=True))
    return verdict


# --- repair instead of reroll -----------------------------------------------------------------------------------

def repair_fixes(verdict: JudgeVerdict, cards: tuple[CharacterCard, ...]) -> list[str]:
    """What to change in the image, one instruction per named fault; [] when the verdict names none an edit can
    fix (a judge error, a safety concern, a missing scene: those are redrawn from scratch)."""
    answer = verdict.answer
    if answer is None or answer.safety_concerns:
        return []
    names = {c.id: c.name for c in cards}
    fixes = []
    for judged in answer.characters:
        name = names.get(judged.id, judged.id)
        if not judged.present:
            fixes.append(f"add {name} as on the reference sheet")
            continue
        absent = [f.feature for f in judged.features if f.status == "absent"]
        fixes += [f"give {name} the {feature}, as on the reference sheet" for feature in absent]
        fixes += [f"make {name} match the reference sheet: {d}" for d in judged.differences
                  if not any(feature.lower() in d.lower() for feature in absent)]
    fixes += [f"remove the lettering ({what})" for what in answer.artifacts.lettering]
    fixes += [f"fix the {what}" for what in answer.artifacts.found() if not what.startswith("lettering")]
    return fixes


def repair_request(request: ImageRequest, failed: GenerationRecord, fixes: list[str], *,
                   edit_references: int) -> tuple[ImageRequest, str]:
    """The next attempt built from `fixes` (repair_fixes) and what it changes, for the ledger and attempts table.

    `request` is the attempt as it would otherwise be drawn (its new seed, the reviewer's notes); `edit_references`
    the model's max_references: 0 means it cannot take the failed image, so the fixes go into the prompt instead."""
    instruction = "; ".join(fixes)
    if edit_references <= 0:
        prompt = f"{request.prompt} Correct what the previous attempt got wrong: {instruction}."
        return request.model_copy(update={"prompt": prompt}), f"redraw with the judge's fixes: {instruction}"
    source = ReferenceImage(role=REPAIR_ROLE, sha256=failed.image_sha256, key=failed.image_key)
    references = (source, *request.references)[:edit_references]
    others = " The other images are the book's references; keep the characters exactly as they show them." \
        if len(references) > 1 else ""
    prompt = (f"Edit image 1, the previous attempt at this illustration: {instruction}. Keep everything else as it "
              f"is: the scene, the composition and the style.{others} No text, letters or words anywhere in the "
              "image.")
    return request.model_copy(update={"prompt": prompt, "references": references}), f"repair by edit: {instruction}"


def judge_markdown(verdict_table: list[dict], reason: str, judge: str) -> str:
    """The judge's table per character and its reason, for a check's metadata."""
    if not judge:
        return "no quality judge configured"
    rows = ["| character | present | identity | features | differences |", "|---|---|---|---|---|"]
    rows += [f"| {r['character']} | {'yes' if r['present'] else 'no'} | {r['identity']}/4 | {r['features']} | "
             f"{r['differences']} |" for r in verdict_table]
    return "\n".join([f"judge: {judge}", "", *(rows if verdict_table else []), "", f"reason: {reason}"])
