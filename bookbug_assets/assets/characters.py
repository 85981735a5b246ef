"""sprite_sheet and hero_page: the references every page of a book is drawn against.

Both pass the same quality gate as pages (assets/_gate.py): a blank or broken sheet is redrawn with a new
seed within the budget, so a book is not stopped by one bad draw. Their blocking checks then re-assess the
kept image with the check's own thresholds.
"""


import dagster as dg

from bookbug_assets.assets._gate import ImageGateConfig, attempts_markdown, render_with_gate
from bookbug_assets.assets._shared import (
    NO_TEXT, book_key, character_lines, generation_context, image_metadata, load_record, load_story, make_request,
    reference, style_prefix,
)
from bookbug_assets.assets.style import load_style_profile
from bookbug_assets.checks import QualityReference, quality_reference, style_quality_profile
from bookbug_assets.generation import generate_image
from bookbug_assets.partitions import books_partitions
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.review import load_state


class ReferenceImageConfig(ImageGateConfig):
    """The sprite sheet's or hero page's quality gate and regeneration."""


STYLE_DEP = dg.AssetDep("style_lora", partition_mapping=dg.AllPartitionMapping())


def _render(context, storage, image_providers, config: ReferenceImageConfig, *, name: str, prompt_for, references_for,
            label: str):
    book_id = context.partition_key
    store = storage.store()
    story = load_story(store, book_id)
    profile = load_style_profile(storage, story.style, context.log)
    family, model = image_providers.choose(story.provider)
    provider = image_providers.provider(family, store)
    caps = provider.capabilities(model)
    request = make_request(family=family, model=model, caps=caps, story=story, profile=profile, kind=name,
                           prompt=prompt_for(story, profile), seed_name=name, references=references_for(store, book_id),
                           character_ids=None, label=label, scene=story.title if name == "hero_page" else "")
    ctx = generation_context(context, store, image_providers, story, name)
    qref = None
    if config.quality_gate:
        # The sheet is judged on its own (no character to compare with yet); the hero against the sheet.
        qref = (quality_reference(store, storage, story) if name == "hero_page"
                else QualityReference(style_quality_profile(store, storage, story.style), None))
    # Attempt 1 is the request as reviewed (a rejection: new seed + the reviewer's note); failures redraw.
    record, verdict = render_with_gate(
        request, lambda r: generate_image(r, provider, ctx, partition=book_id), store=store, story=story,
        target=name, partition=book_id, kind=name, ctx=ctx, config=config, qref=qref, has_characters=True,
        review=load_state(store, book_id))
    # Kept even when no attempt passed: the blocking check then fails on it, and a reviewer can approve it.
    store.write_json(book_key(book_id, f"{name}.json"), record.model_dump(mode="json"))
    context.log.info(f"{name} for {book_id}: {family}:{model} seed {record.seed} "
                     f"{'cache hit' if record.cache_hit else f'${record.cost_usd:.3f}'}; {verdict.description()}")
    return dg.MaterializeResult(data_version=dg.DataVersion(record.image_sha256[:16]),
                                metadata={**image_metadata(store, record, name), "book": book_id,
                                          "prompt": record.prompt, "quality": verdict.description(),
                                          "accepted": verdict.accepted, "winning_attempt": verdict.winner,
                                          "attempts_table": dg.MetadataValue.md(attempts_markdown(verdict))})


def build_reference_assets(pool: str | None = None) -> list[dg.AssetsDefinition]:
    """sprite_sheet and hero_page; `pool` is the provider's concurrency pool (definitions.py picks it)."""

    @dg.asset(partitions_def=books_partitions, group_name="book", code_version="2", deps=["story", STYLE_DEP],
              kinds={"python"}, pool=pool,
              description="Character reference sheet: every character in several poses, in the book's style. "
                          "Pages and the hero image are drawn against it.")
    def sprite_sheet(context: dg.AssetExecutionContext, config: ReferenceImageConfig, storage: BookbugStorage,
                     image_providers: ImageProviders) -> dg.MaterializeResult:
        def prompt(story, profile):
            return (f"{style_prefix(profile)} character reference sheet for the children's picture book "
                    f"'{story.title}': each character shown full body three times (front, three-quarter, back) on a "
                    f"plain light background, consistent proportions and colours. {character_lines(story)} {NO_TEXT}")

        return _render(context, storage, image_providers, config, name="sprite_sheet", prompt_for=prompt,
                       references_for=lambda store, book: (), label="sprite sheet")


    @dg.asset(partitions_def=books_partitions, group_name="book", code_version="2", deps=[sprite_sheet, STYLE_DEP],
              kinds={"python"}, pool=pool,
              description="The cover / hero illustration, drawn against the sprite sheet; fixes the book's look.")
    def hero_page(context: dg.AssetExecutionContext, config: ReferenceImageConfig, storage: BookbugStorage,
                  image_providers: ImageProviders) -> dg.MaterializeResult:
        def prompt(story, profile):
            return (f"{style_prefix(profile)} cover illustration for the children's picture book '{story.title}'. "
                    f"{story.pages[0].scene} The characters look exactly as in the reference sheet. "
                    f"{character_lines(story)} Leave calm space at the top for the title. {NO_TEXT}")

        return _render(context, storage, image_providers, config, name="hero_page", prompt_for=prompt,
                       references_for=lambda store, book: (reference(load_record(store, book, "sprite_sheet"),
                                                                     "sprite_sheet"),),
                       label="cover")

    return [sprite_sheet, hero_page]
