"""How a quality verdict reads to a person: what happened to an image, with the true number of attempts.

The verdict lists every attempt its gate looked at (QualityVerdict.attempts); "attempt 1 of 3" alone reads as one
try when it names the kept attempt of three failed ones, so these lines say how many were made and how many failed.
Used by the pages' log lines and metadata and by book_pdf's refusal.
"""

from __future__ import annotations

from bookbug_assets.quality.verdicts import QualityVerdict


def gate_outcome(verdict: QualityVerdict, max_attempts: int | None = None) -> str:
    """One phrase: "passed on attempt 2 of 2 (attempt 1 failed the gate)", "attempt 3 of 3, all failed the gate;
    kept attempt 1, the closest: blank image", "failed the gate, approved by a reviewer (attempt 2 of 3)"."""
    made = len(verdict.attempts) or 1
    failed = [a.attempt for a in verdict.attempts if not a.passed]
    of = f"attempt {made} of {max(made, max_attempts or made)}"
    why = "; ".join(verdict.failures)
    stopped = f"; regeneration stopped: {verdict.stopped}" if verdict.stopped else ""
    if verdict.passed:
        if made == 1:
            return "passed on its first attempt"
        earlier = ", ".join(str(n) for n in failed)
        return (f"passed on attempt {verdict.winner} of {made} (attempt{'s' if len(failed) > 1 else ''} {earlier} "
                f"failed the gate)")
    if verdict.accepted:
        return f"failed the gate, approved by a reviewer (attempt {verdict.winner} of {made})" + \
            (f": {why}" if why else "")
    kept = f"; kept attempt {verdict.winner}, the closest" if made > 1 else ""
    return f"{of}, all failed the gate{kept}" + (f": {why}" if why else "") + stopped


def page_gate_line(verdict: QualityVerdict, number: int, max_attempts: int | None = None) -> str:
    """What the log and book_pdf say about one page's gate."""
    if verdict.accepted:
        return f"page {number} {gate_outcome(verdict, max_attempts)}"
    return f"page {number} failed its quality gate (see its page_quality check): {gate_outcome(verdict, max_attempts)}"
