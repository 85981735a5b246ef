"""sprite_sheet and hero_page: the references every page of a book is drawn against, and their checks.

Both pass the same quality gate as pages (quality/gate.py): a blank or broken sheet is redrawn with a new
seed within the budget, so a book is not stopped by one bad draw. Their blocking checks then re-assess the
kept image with the check's own thresholds; pages refuse to draw against one that failed (rendering.book_plan).
"""

import dagster as dg

from bookbug_assets.defs.books.book_style import BOOK_STYLE
from bookbug_assets.defs.common import (
    generation_context, image_metadata, user_errors, verdict_metadata,
)
from bookbug_assets.defs.gate_config import ImageGateConfig, ReferenceCheckConfig
from bookbug_assets.defs.judge_resource import QualityJudge
from bookbug_assets.defs.partitions import books_partitions
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders, generation_pool
from bookbug_assets.gate_outcome import gate_outcome
from bookbug_assets.layout import load_story_record
from bookbug_assets.quality.gate import attempts_markdown
from bookbug_assets.quality.verdicts import quality_reference, recheck_reference, sheet_reference
from bookbug_assets.rendering import book_plan, reference_request, render_target
from bookbug_assets.review import approved_sha, load_state

STYLE_DEP = dg.AssetDep(BOOK_STYLE)  # the book's own style only (book_style.py says why not style_lora itself)


class ReferenceImageConfig(ImageGateConfig):
    """The sprite sheet's or hero page's quality gate and regeneration."""


def _render(context: dg.AssetExecutionContext, storage: BookbugStorage, image_providers: ImageProviders,
            config: ReferenceImageConfig, target: str, quality_judge: QualityJudge) -> dg.MaterializeResult:
    book_id = context.partition_key
    store = storage.store()
    with user_errors():
        judge = quality_judge.for_run(context, store, image_providers.settings()) if config.quality_gate else None
        story_record = load_story_record(store, book_id)
        story = story_record.story
        family, model = image_providers.choose(story.provider)
        plan = book_plan(store, storage.styles_path, story, family, model, image_providers.provider(family, store),
                         context.log, references=("sprite_sheet",) if target == "hero_page" else ())
        qref = None
        if config.quality_gate:
            # The sheet is judged on its own (no character to compare with yet); the hero against the sheet.
            qref = quality_reference(store, storage.styles_path, story) if target == "hero_page" else \
                sheet_reference(store, storage.styles_path, story)
    ctx = generation_context(context, store, image_providers, story, target)
    # Attempt 1 is the request as reviewed (a rejection: new seed + the reviewer's note); failures redraw.
    record, verdict = render_target(plan, target, reference_request(plan, target), ctx, store=store,
                                    gate=config.settings(judge), qref=qref, review=load_state(store, book_id),
                                    story_sha256=story_record.sha256)
    context.log.info(f"{target} for {book_id}: {family}:{model} seed {record.seed} "
                     f"{'cache hit' if record.cache_hit else f'${record.cost_usd:.3f}'}; {target} {gate_outcome(verdict)}")
    return dg.MaterializeResult(data_version=dg.DataVersion(record.image_sha256[:16]),
                                metadata={**image_metadata(store, record, target), "book": book_id,
                                          "prompt": record.prompt, "quality": f"{target} {gate_outcome(verdict)}",
                                          "accepted": verdict.accepted, "winning_attempt": verdict.winner,
                                          "attempts": len(verdict.attempts),
                                          "attempts_table": dg.MetadataValue.md(attempts_markdown(verdict))})


def build_reference_assets(pool: str | None = None) -> list[dg.AssetsDefinition]:
    """sprite_sheet and hero_page; `pool` is the provider's concurrency pool."""

    @dg.asset(partitions_def=books_partitions, group_name="book", code_version="2", deps=["story", STYLE_DEP],
              kinds={"python"}, pool=pool,
              description="Character reference sheet: every character in several poses, in the book's style. "
                          "Pages and the hero image are drawn against it.")
    def sprite_sheet(context: dg.AssetExecutionContext, config: ReferenceImageConfig, storage: BookbugStorage,
                     image_providers: ImageProviders, quality_judge: QualityJudge) -> dg.MaterializeResult:
        return _render(context, storage, image_providers, config, "sprite_sheet", quality_judge)

    @dg.asset(partitions_def=books_partitions, group_name="book", code_version="2", deps=[sprite_sheet, STYLE_DEP],
              kinds={"python"}, pool=pool,
              description="The cover / hero illustration, drawn against the sprite sheet; fixes the book's look.")
    def hero_page(context: dg.AssetExecutionContext, config: ReferenceImageConfig, storage: BookbugStorage,
                  image_providers: ImageProviders, quality_judge: QualityJudge) -> dg.MaterializeResult:
        return _render(context, storage, image_providers, config, "hero_page", quality_judge)

    return [sprite_sheet, hero_page]


def _reference_check(context: dg.AssetCheckExecutionContext, storage: BookbugStorage, config: ReferenceCheckConfig,
                     target: str) -> dg.AssetCheckResult:
    book_id = context.partition_key
    store = storage.store()
    with user_errors():
        story = load_story_record(store, book_id).story
        verdict = recheck_reference(store, storage.styles_path, story, target, config.thresholds.gate(),
                                    gate_character_on_previews=config.thresholds.gate_character_on_previews,
                                    approved_sha=approved_sha(load_state(store, book_id), target))
    return dg.AssetCheckResult(passed=verdict.accepted, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=verdict_metadata(verdict.summary(), verdict.scores),
                               description=verdict.description())


@dg.asset_check(asset="sprite_sheet", partitions_def=books_partitions, blocking=True,
                description="Artifacts (blank, blur, grid, clipping) and size of the character reference sheet; "
                            "style distance reported. Blocking: pages drawn against a broken sheet are wasted.")
def sprite_sheet_quality(context: dg.AssetCheckExecutionContext, storage: BookbugStorage,
                         config: ReferenceCheckConfig) -> dg.AssetCheckResult:
    return _reference_check(context, storage, config, "sprite_sheet")


@dg.asset_check(asset="hero_page", partitions_def=books_partitions, blocking=True,
                description="Style distance, character similarity to the sprite sheet, artifacts and size of the "
                            "cover. Blocking: every page uses it as a reference.")
def hero_page_quality(context: dg.AssetCheckExecutionContext, storage: BookbugStorage,
                      config: ReferenceCheckConfig) -> dg.AssetCheckResult:
    return _reference_check(context, storage, config, "hero_page")


@dg.definitions
def reference_defs() -> dg.Definitions:
    """The references run in the default provider's pool, read when the definitions load. (A module with a
    @dg.definitions loader contributes only what the loader returns: the checks are listed here too.)"""
    return dg.Definitions(assets=build_reference_assets(generation_pool()),
                          asset_checks=[sprite_sheet_quality, hero_page_quality])
