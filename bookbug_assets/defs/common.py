"""What the Dagster assets share: a step's generation context, image metadata for the UI, plain failures.

The core raises plain exceptions for a user's mistake (a story not materialized yet, a reference
that failed its gate, a story file that cannot be found); `user_errors` turns them into a
`dg.Failure` that says so and is not retried (a retry would fail the same way).
"""

from __future__ import annotations

import base64
import io
from contextlib import contextmanager

import dagster as dg
from PIL import Image

from bookbug_assets.generation import GenerationContext
from bookbug_assets.intake import StoryNotFound
from bookbug_assets.layout import GenerationRecord, NotMaterialized, thumbnail_key
from bookbug_assets.ledger import BudgetGuard, Ledger
from bookbug_assets.providers.base import ConfigurationError
from bookbug_assets.defs.resources import ImageProviders
from bookbug_assets.rendering import ReferenceNotAccepted
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story

USER_ERRORS = (NotMaterialized, ReferenceNotAccepted, StoryNotFound, ConfigurationError)


@contextmanager
def user_errors():
    """A user's mistake fails the step with its own message, once (no retry: it would fail the same way)."""
    try:
        yield
    except USER_ERRORS as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None


BOOK_TAG = "bookbug/book"  # every book's runs carry it (book_runs.py, the story and review sensors)
RETRY_REFUSED_TAG = "bookbug/retry_refused"  # "true": send again what a provider refused (UI: launchpad tags)


def generation_context(context: dg.AssetExecutionContext, store: ArtifactStore, providers: ImageProviders,
                       story: Story, asset: str) -> GenerationContext:
    ledger = Ledger(store)
    retry_refused = context.run.tags.get(RETRY_REFUSED_TAG, "").strip().lower() in ("1", "true", "yes")
    return GenerationContext(store=store, ledger=ledger, budget=BudgetGuard(story.book_id, story.budget_usd, ledger),
                             retry=providers.retry_policy(), run_id=context.run.run_id, book_id=story.book_id,
                             asset=asset, logger=context.log, retry_refused=retry_refused)


THUMBNAIL_PX = 256


def _thumbnail_jpeg(image_bytes: bytes, size: int) -> bytes:
    with Image.open(io.BytesIO(image_bytes)) as im:
        if im.mode != "RGB":  # converting an RGB image only copies it, a third of the thumbnail's CPU
            im = im.convert("RGB")
        im.thumbnail((size, size))
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=70)
    return out.getvalue()


def _inline_jpeg(jpeg: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/jpeg;base64,{base64.b64encode(jpeg).decode()})")


def thumbnail_md(image_bytes: bytes, alt: str, size: int = THUMBNAIL_PX) -> dg.MetadataValue:
    """A small JPEG inline in markdown: the UI has no image metadata type (dagster#15468)."""
    return _inline_jpeg(_thumbnail_jpeg(image_bytes, size), alt)


def stored_thumbnail_md(store: ArtifactStore, record: GenerationRecord, alt: str) -> dg.MetadataValue:
    """thumbnail_md of a stored image, made once per image: decoding a full-size image for every run's metadata
    was a tenth of an unchanged book's rerun."""
    key = thumbnail_key(record.image_sha256, THUMBNAIL_PX)
    if store.exists(key):
        return _inline_jpeg(store.read_bytes(key), alt)
    jpeg = _thumbnail_jpeg(store.read_bytes(record.image_key), THUMBNAIL_PX)
    store.write_bytes(key, jpeg)
    return _inline_jpeg(jpeg, alt)


def image_metadata(store: ArtifactStore, record: GenerationRecord, alt: str) -> dict:
    return {
        "preview": stored_thumbnail_md(store, record, alt),
        "provider": record.provider,
        "model": record.model,
        "model_version": record.version or "",
        "seed": record.seed,
        "cost_usd": dg.MetadataValue.float(record.cost_usd),
        "cache_hit": record.cache_hit,
        "attempts": record.attempts,
        "lora": record.lora or "none",
        "variant": record.variant or "full precision",
        "latency_s": dg.MetadataValue.float(record.latency_s),
        "image_uri": store.uri(record.image_key),
        "image_sha256": record.image_sha256,
        "size": f"{record.width}x{record.height}",
        "is_preview": record.is_preview,
    }


def verdict_metadata(summary: dict, scores: dict[str, float]) -> dict:
    """A quality verdict as check metadata: its summary plus each score as a float."""
    return {**{f"score/{k}": dg.MetadataValue.float(float(v)) for k, v in scores.items()}, **summary}
