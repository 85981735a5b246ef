"""The back cover's illustration: one more image of the book, drawn like the others (cached, journaled, costed).

It is drawn against the sprite sheet and the hero page, so it matches the front; its request is built the way
rendering.reference_request builds the hero page's, and it goes through generation.generate_image. The provider
interface knows no "back cover" kind, so it travels as a `page` (what the preview renderer and the ledger file it
under); its label and seed name say "back cover", so its cache key and seed are its own.
"""

from __future__ import annotations

from bookbug_assets.generation import GenerationContext, generate_image
from bookbug_assets.layout import GenerationRecord, record_key
from bookbug_assets.providers.base import ImageRequest
from bookbug_assets.rendering import NO_TEXT, BookPlan, character_lines, make_request, style_prefix
from bookbug_assets.storage import ArtifactStore

BACK_COVER_TARGET = "back_cover"  # its seed name and the name its record is kept under (layout.record_key)


def back_cover_prompt(plan: BookPlan) -> str:
    story = plan.story
    last = story.pages[-1].scene
    return (f"{style_prefix(plan.profile)} back cover illustration for the children's picture book '{story.title}': "
            f"a calm, simple scene from the story's world after its last page ({last}). The characters look exactly "
            f"as in the reference sheet and the cover. {character_lines(story)} Keep the top half and the lower "
            f"right corner plain and quiet (sky, grass, soft texture): words and a barcode go there. {NO_TEXT}")


def back_cover_request(plan: BookPlan) -> ImageRequest:
    """The back cover, drawn against the plan's references (sprite sheet and hero page)."""
    story = plan.story
    return make_request(family=plan.family, model=plan.model, caps=plan.caps, story=story, profile=plan.profile,
                        kind="page", prompt=back_cover_prompt(plan), seed_name=BACK_COVER_TARGET,
                        references=plan.references, character_ids=None, label="back cover",
                        scene=story.back_cover_text or story.title)


def render_back_cover(plan: BookPlan, ctx: GenerationContext, store: ArtifactStore) -> GenerationRecord:
    """Draw (or take from the cache) the back cover and keep its record beside the hero page's."""
    record = generate_image(back_cover_request(plan), plan.provider, ctx, reference_bytes=plan.reference_bytes,
                            partition=plan.story.book_id)
    store.write_json(record_key(plan.story.book_id, BACK_COVER_TARGET), record.model_dump(mode="json"))
    return record
