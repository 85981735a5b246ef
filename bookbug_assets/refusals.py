"""What a refused or failed request may try next, and what a rerun remembers of it.

A retry is worth paying for only when the model receives something new. Replicate's and fal's nano-banana-pro take
no seed, so a "new seed" retry sends them the very input they just refused: for such models the retries go straight
to softer prompts. A request that was refused to the end, or that failed because of its input, is remembered by its
hash (layout.outcome_path): the next run does not pay for the same answer again unless the user asks for it.
"""

from __future__ import annotations

from datetime import datetime, timezone

from bookbug_assets.layout import outcome_path
from bookbug_assets.providers.base import ImageRequest
from bookbug_assets.storage import ArtifactStore

SOFTENING = "gentle, wholesome children's picture-book illustration, friendly and safe for all ages; "
SOFTER = ("a calm, simple, cheerful picture-book scene for very young children, soft shapes, nothing frightening "
          "or dangerous; ")
SOFTENING_STEPS = (SOFTENING, SOFTER)
RETRY_REFUSED_HINT = ("change something it reads (a review note, the prompt or the provider), or rerun with "
                      "retry-refused (`bookbug ... --retry-refused`, or the run tag bookbug/retry_refused=true)")


def refusal_tries(request: ImageRequest, seeds_matter: bool, retries: int) -> list[tuple[ImageRequest, str]]:
    """Each try of `request` while the provider refuses it, with what that try changed: as asked, a new seed (only
    where the model reads seeds), then each softer prompt; at most `retries` after the first."""
    changes: list[tuple[dict, str]] = [({}, "new seed")] if seeds_matter else []
    changes += [({"prompt": prefix + request.prompt}, f"softened prompt {i}")
                for i, prefix in enumerate(SOFTENING_STEPS, 1)]
    tries, seed = [(request, "")], request.seed
    for update, change in changes[:max(0, retries)]:
        seed = (seed * 7919 + 104729) % 2**32  # changes nothing for a seedless model, keeps the keys apart
        tries.append((request.model_copy(update={"seed": seed, **update}), change))
    return tries


def remember_outcome(store: ArtifactStore, request_key: str, status: str, message: str, run_id: str) -> None:
    store.write_json(outcome_path(request_key), {"status": status, "message": message, "run_id": run_id,
                                                 "at": datetime.now(timezone.utc).isoformat()})


def remembered_outcome(store: ArtifactStore, request: ImageRequest, retry_refused: bool) -> str | None:
    """Why `request` is not sent again (None: send it). With `retry_refused` the memory is dropped instead."""
    path = outcome_path(request.cache_key())
    if not store.exists(path):
        return None
    if retry_refused:
        store.delete(path)
        return None
    outcome = store.read_json(path)
    return (f"{request.label or request.kind}: not sent again: this exact request was {outcome.get('status')} on "
            f"{str(outcome.get('at', ''))[:10]} ({outcome.get('message')}); {RETRY_REFUSED_HINT}")
