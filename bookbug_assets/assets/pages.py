"""book_pages: one partition per page (book x page), fanned out concurrently inside one step.

A whole book is one run and one step (BackfillPolicy.single_run), not twelve processes: the
step renders its pages on a thread pool (provider calls are I/O-bound) and records one
materialization per page as each finishes. Rerunning one page from the UI is the same code
with a one-key range.

Each page passes a quality gate (checks.assess_image). A page that fails is drawn again with a
new seed, up to `max_attempts`, while the book's budget allows; every attempt is a ledger row.
The page's materialization shows the winning attempt and why the others lost, and the step
emits one `page_quality` check evaluation per page partition (an AssetCheckResult cannot name a
partition in a multi-partition step; an AssetCheckEvaluation can). A page that fails its gate
keeps no page record, so book_pdf cannot use it; a reviewer's approval of its exact bytes
(review.py) overrides the gate.
"""


from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import dagster as dg

from bookbug_assets.assets._shared import (
    NO_TEXT, book_key, character_lines, drawn_for, generation_context, image_metadata, load_record, load_story,
    make_request, reference, style_prefix,
)
from bookbug_assets.assets.characters import STYLE_DEP
from bookbug_assets.assets.style import load_style_profile
from bookbug_assets.assets._gate import ImageGateConfig, attempts_markdown, render_with_gate
from bookbug_assets.checks import QualityVerdict, check_evaluation, page_check_spec, quality_reference
from bookbug_assets.generation import GenerationRecord, generate_image
from bookbug_assets.partitions import book_pages_partitions, split_page_key
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.review import load_state, page_target
from bookbug_assets.stories.models import Story


class BookPagesConfig(ImageGateConfig):
    """The pages' quality gate and regeneration (see _gate.render_with_gate)."""


def page_prompt(story: Story, page_no: int, profile: dict) -> str:
    page = story.pages[page_no - 1]
    who = character_lines(story, page.characters) if page.characters else "No characters on this page."
    return (f"{style_prefix(profile)} illustration for page {page_no} of the children's picture book "
            f"'{story.title}'. Scene: {page.scene} {who} Characters look exactly as in the reference sheet; "
            f"match the cover's palette and rendering. Full-bleed art, keep faces away from the edges. {NO_TEXT}")


def render_book_pages(context: dg.AssetExecutionContext, storage: BookbugStorage,
                      image_providers: ImageProviders, page_keys: list[tuple[str, str]],
                      config: BookPagesConfig | None = None):
    """Yield a materialization and a check evaluation per rendered page; raise at the end if any page failed."""
    config = config or BookPagesConfig()
    store = storage.store()
    check_selected = page_check_spec.key in context.selected_asset_check_keys
    by_book: dict[str, list[str]] = defaultdict(list)
    for book_id, page in page_keys:
        by_book[book_id].append(page)
    failures: list[str] = []
    for book_id, pages in by_book.items():
        story = load_story(store, book_id)
        profile = load_style_profile(storage, story.style, context.log)
        family, model = image_providers.choose(story.provider)
        provider = image_providers.provider(family, store)
        caps = provider.capabilities(model)
        refs = (reference(load_record(store, book_id, "sprite_sheet"), "sprite_sheet"),
                reference(load_record(store, book_id, "hero_page"), "hero_page"))
        ctx = generation_context(context, store, image_providers, story, "book_pages")
        ref_bytes = {ref.sha256: store.read_bytes(ref.key) for ref in refs}

        qref = quality_reference(store, storage, story) if config.quality_gate else None
        review = load_state(store, book_id)

        def render(page: str) -> tuple[GenerationRecord, QualityVerdict]:
            number = int(page)
            if not 1 <= number <= len(story.pages):
                raise dg.Failure(f"page slot {page} is past the end of {book_id!r} ({len(story.pages)} pages)",
                                 allow_retries=False)
            target = page_target(number)
            request = make_request(family=family, model=model, caps=caps, story=story, profile=profile,
                                   kind="page", prompt=page_prompt(story, number, profile), seed_name=target,
                                   references=refs, character_ids=story.pages[number - 1].characters,
                                   label=f"page {number}", scene=story.pages[number - 1].scene)
            record, verdict = render_with_gate(
                request, lambda r: generate_image(r, provider, ctx, reference_bytes=ref_bytes,
                                                  partition=f"{book_id}|{page}"),
                store=store, story=story, target=target, partition=f"{book_id}|{page}", kind="page", ctx=ctx,
                config=config, qref=qref, has_characters=bool(story.pages[number - 1].characters), review=review)
            page_record = book_key(book_id, f"pages/{page}.json")
            if verdict.accepted:
                store.write_json(page_record, {**record.model_dump(mode="json"),
                                               "drawn_for": drawn_for(store, book_id, refs)})
            else:
                store.delete(page_record)  # a failed page must not reach book_pdf, not even an older one
            return record, verdict

        workers = max(1, min(image_providers.max_concurrency, len(pages)))
        context.log.info(f"{book_id}: rendering {len(pages)} page(s) with {family}:{model}, {workers} at a time")
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="page")
        futures: dict[Future, str] = {pool.submit(render, page): page for page in sorted(pages)}
        done_count = 0
        try:
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=futures.get):
                    page = futures[future]
                    done_count += 1
                    exc = future.exception()
                    if exc is not None:
                        failures.append(f"{book_id} page {int(page)}: {exc}")
                        context.log.error(f"{book_id} page {int(page)} failed ({done_count}/{len(pages)}): {exc}")
                        continue
                    record, verdict = future.result()
                    number = int(page)
                    partition = str(dg.MultiPartitionKey({"book": book_id, "page": page}))
                    context.log.info(f"{book_id} page {number} done ({done_count}/{len(pages)}) "
                                     f"{'cache hit' if record.cache_hit else f'${record.cost_usd:.3f}'}; "
                                     f"{verdict.description()}")
                    yield dg.AssetMaterialization(
                        asset_key=context.asset_key, partition=partition,
                        metadata={**image_metadata(store, record, f"page {number}"), "book": book_id,
                                  "page": number, "text": story.pages[number - 1].text,
                                  "scene": story.pages[number - 1].scene, "quality": verdict.description(),
                                  "accepted": verdict.accepted, "winning_attempt": verdict.winner,
                                  "attempts_table": dg.MetadataValue.md(attempts_markdown(verdict))},
                        tags={"dagster/data_version": record.image_sha256[:16]})
                    if check_selected:
                        yield check_evaluation(verdict, page_check_spec, partition)
        except BaseException:
            cancelled = ctx.cancel_in_flight()  # the run is being terminated: stop paying for pages
            if cancelled:
                context.log.warning(f"cancelled remote jobs: {', '.join(cancelled)}")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    if failures:
        raise dg.Failure(f"{len(failures)} page(s) failed; the others are kept:\n" + "\n".join(failures))


def build_book_pages(pool: str | None = None) -> dg.AssetsDefinition:
    """book_pages; `pool` is the provider's concurrency pool (definitions.py picks it)."""

    @dg.asset(partitions_def=book_pages_partitions, group_name="book", code_version="2",
              deps=["sprite_sheet", "hero_page", STYLE_DEP], kinds={"python"}, pool=pool,
              backfill_policy=dg.BackfillPolicy.single_run(), output_required=False, check_specs=[page_check_spec],
              description="Every page's illustration, one partition per book x page, drawn against the book's "
                          "sprite sheet and hero page. A book's pages render concurrently in one step; a page that "
                          "fails its quality gate is redrawn with a new seed up to max_attempts within the budget.")
    def book_pages(context: dg.AssetExecutionContext, config: BookPagesConfig, storage: BookbugStorage,
                   image_providers: ImageProviders):
        keys = [split_page_key(k) for k in context.partition_keys]
        yield from render_book_pages(context, storage, image_providers, keys, config)
        if page_check_spec.key in context.selected_asset_check_keys:
            # The check's output must be produced once per step; its per-page results went out as evaluations.
            yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(page_check_spec.key))

    return book_pages
