"""What the book assets share: records in the store, prompts, seeds, and UI metadata."""

from __future__ import annotations

import base64
import hashlib
import io

import dagster as dg
from PIL import Image

from bookbug_assets.generation import GenerationContext, GenerationRecord
from bookbug_assets.ledger import BudgetGuard, Ledger
from bookbug_assets.providers.base import CharacterToken, ImageRequest, LoraRef, ModelCapabilities, ReferenceImage
from bookbug_assets.resources import ImageProviders
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories.models import Story

NO_TEXT = "No text, letters or words anywhere in the image."


def book_key(book_id: str, name: str) -> str:
    return f"books/{book_id}/{name}"


def load_story(store: ArtifactStore, book_id: str) -> Story:
    key = book_key(book_id, "story.json")
    if not store.exists(key):
        raise dg.Failure(f"book {book_id!r}: no story materialized yet; materialize `story` for this book first",
                         allow_retries=False)
    return Story.model_validate(store.read_json(key)["story"])


def story_sha256(store: ArtifactStore, book_id: str) -> str:
    """The content hash of the story file the book's current `story` materialization was read from."""
    return str(store.read_json(book_key(book_id, "story.json")).get("sha256", ""))


def drawn_for(store: ArtifactStore, book_id: str, references: tuple[ReferenceImage, ...] = ()) -> dict[str, str]:
    """What an image was drawn against: the story version and its reference images. Kept in the image's record,
    so book_pdf can tell a page drawn for an earlier story (a rerun that failed left it behind) from a current one."""
    return {"story": story_sha256(store, book_id), **{ref.role: ref.sha256 for ref in references}}


def load_record(store: ArtifactStore, book_id: str, name: str) -> GenerationRecord:
    key = book_key(book_id, f"{name}.json")
    if not store.exists(key):
        raise dg.Failure(f"book {book_id!r}: {name} is not materialized yet; materialize it first",
                         allow_retries=False)
    return GenerationRecord.model_validate(store.read_json(key))


def derived_seed(story: Story, what: str) -> int:
    """Stable per image, different between images, changed only by the story's seed."""
    return int.from_bytes(hashlib.sha256(f"{story.seed}:{what}".encode()).digest()[:4], "big") % 2**31


def render_size(story: Story, caps: ModelCapabilities, longest: int = 1024) -> tuple[int, int]:
    """The book's aspect at the model's working size; print resolution comes at PDF time."""
    fmt = story.format
    aspect = (fmt.trim_width_in + 2 * fmt.bleed_in) / (fmt.trim_height_in + 2 * fmt.bleed_in)
    side = max(caps.min_size, min(caps.max_size, longest))
    w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    return int(round(w / 16) * 16), int(round(h / 16) * 16)


def style_prefix(profile: dict) -> str:
    trigger = profile.get("trigger_word") or ""
    prefix = profile.get("prompt_prefix") or ""
    return f"{trigger}, {prefix}".strip(", ") if trigger and trigger not in prefix else prefix


def character_lines(story: Story, ids: list[str] | None = None) -> str:
    chosen = [c for c in story.characters if ids is None or c.id in ids]
    return " ".join(f"{c.name}: {c.description}." for c in chosen)


def tokens(story: Story, ids: list[str] | None = None) -> tuple[CharacterToken, ...]:
    return tuple(CharacterToken(id=c.id, name=c.name) for c in story.characters if ids is None or c.id in ids)


def reference(record: GenerationRecord, role: str) -> ReferenceImage:
    return ReferenceImage(role=role, sha256=record.image_sha256, key=record.image_key)


def lora_ref(profile: dict) -> LoraRef | None:
    lora = profile.get("lora")
    return LoraRef.model_validate(lora) if lora else None


def make_request(*, family: str, model: str, caps: ModelCapabilities, story: Story, profile: dict, kind: str,
                 prompt: str, seed_name: str, references: tuple[ReferenceImage, ...], character_ids: list[str] | None,
                 label: str, scene: str) -> ImageRequest:
    width, height = render_size(story, caps)
    # Models that take fewer references get the most important ones (sprite sheet first);
    # the provider stitches several into one image where the model takes exactly one.
    if caps.max_references == 0:
        references = ()
    # The style's LoRA always travels with the request: a model that cannot apply it refuses it
    # (ImageProvider.validate) instead of silently drawing without the style.
    lora = lora_ref(profile)
    return ImageRequest(provider=family, model=model, kind=kind, prompt=prompt, width=width, height=height,
                        seed=derived_seed(story, seed_name), references=references, lora=lora,
                        characters=tokens(story, character_ids), palette=tuple(profile.get("palette", ())),
                        label=label, scene=scene, variant=caps.variant)


def generation_context(context: dg.AssetExecutionContext, store: ArtifactStore, providers: ImageProviders,
                       story: Story, asset: str) -> GenerationContext:
    ledger = Ledger(store)
    return GenerationContext(store=store, ledger=ledger, budget=BudgetGuard(story.book_id, story.budget_usd, ledger),
                             retry=providers.retry_policy(), run_id=context.run.run_id, book_id=story.book_id,
                             asset=asset, logger=context.log)


def thumbnail_md(image_bytes: bytes, alt: str, size: int = 256) -> dg.MetadataValue:
    """A small JPEG inline in markdown: the UI has no image metadata type (dagster#15468)."""
    with Image.open(io.BytesIO(image_bytes)) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        out = io.BytesIO()
        im.save(out, format="JPEG", quality=70)
    return dg.MetadataValue.md(f"![{alt}](data:image/jpeg;base64,{base64.b64encode(out.getvalue()).decode()})")


def image_metadata(store: ArtifactStore, record: GenerationRecord, alt: str) -> dict:
    return {
        "preview": thumbnail_md(store.read_bytes(record.image_key), alt),
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

