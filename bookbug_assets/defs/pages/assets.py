"""book_pages: one partition per page (book x page), fanned out concurrently inside one step.

A whole book is one run and one step (BackfillPolicy.single_run), not twelve processes: the
step renders its pages on a thread pool (provider calls are I/O-bound) and records one
materialization per page as each finishes. Rerunning one page from the UI is the same code
with a one-key range.

Each page passes the quality gate (rendering.render_target). A page that fails is drawn again with
a new seed, up to `max_attempts`, while the book's budget allows; every attempt is a ledger row.
The page's materialization shows the winning attempt and why the others lost, and the step
emits one `page_quality` check evaluation per page partition (an AssetCheckResult cannot name a
partition in a multi-partition step; an AssetCheckEvaluation can). A page that fails its gate
keeps no page record, so book_pdf cannot use it; a reviewer's approval of its exact bytes
(review.py) overrides the gate. Nothing is drawn against a sprite sheet or hero page whose gate
failed (rendering.accepted_references). With the quality_judge resource set (BOOKBUG_JUDGE), a page that
passed the weight-free checks is judged in its own thread, and the check shows the judge's table and reason.
"""

from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import dagster as dg

from bookbug_assets.defs.books.references import STYLE_DEP
from bookbug_assets.defs.common import generation_context, image_metadata, user_errors, verdict_metadata
from bookbug_assets.defs.gate_config import ImageGateConfig
from bookbug_assets.defs.judge_resource import QualityJudge
from bookbug_assets.defs.partitions import book_pages_partitions, split_page_key
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders, generation_pool
from bookbug_assets.gate_outcome import page_gate_line
from bookbug_assets.layout import BOOK_TARGETS, load_story_record, page_partition, page_target
from bookbug_assets.quality.gate import attempts_markdown
from bookbug_assets.quality.judge_gate import judge_markdown
from bookbug_assets.quality.verdicts import QualityVerdict, quality_reference
from bookbug_assets.rendering import book_plan, page_request, render_target
from bookbug_assets.review import load_state

PAGE_CHECK = "page_quality"
page_check_spec = dg.AssetCheckSpec(
    PAGE_CHECK, asset="book_pages", blocking=True, partitions_def=book_pages_partitions,
    description="Style distance to the style dataset, character similarity to the sprite sheet, artifacts, size; "
                "with a quality judge configured, its verdict too (identity, features, lettering, safety). "
                "Evaluated per page inside the book_pages step, after up to max_attempts regenerations.")


class BookPagesConfig(ImageGateConfig):
    """The pages' quality gate and regeneration (see quality.gate.render_with_gate)."""


def check_evaluation(verdict: QualityVerdict, partition: str, max_attempts: int | None = None
                     ) -> dg.AssetCheckEvaluation:
    """One evaluation for one page partition: what a step that materializes many partitions can emit."""
    return dg.AssetCheckEvaluation(asset_key=page_check_spec.asset_key, check_name=page_check_spec.name,
                                   passed=verdict.accepted,
                                   metadata={**verdict_metadata(verdict.summary(), verdict.scores),
                                             "judge_table": dg.MetadataValue.md(judge_markdown(
                                                 verdict.judge_table, verdict.judge_reason, verdict.judge))},
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   description=page_gate_line(verdict, int(split_page_key(partition)[1]),
                                                              max_attempts),
                                   blocking=page_check_spec.blocking, partition=partition)


def render_book_pages(context: dg.AssetExecutionContext, storage: BookbugStorage,
                      image_providers: ImageProviders, page_keys: list[tuple[str, str]],
                      config: BookPagesConfig | None = None, quality_judge: QualityJudge | None = None):
    """Yield a materialization and a check evaluation per rendered page; raise at the end if any page failed."""
    config = config or BookPagesConfig()
    store = storage.store()
    with user_errors():
        judge = quality_judge.for_run(context, store, image_providers.settings()) \
            if quality_judge is not None and config.quality_gate else None
    gate = config.settings(judge)
    check_selected = page_check_spec.key in context.selected_asset_check_keys
    by_book: dict[str, list[str]] = defaultdict(list)
    for book_id, page in page_keys:
        by_book[book_id].append(page)
    failures: list[str] = []
    # 1. Each book's plan, references and gate, before anything is drawn (a broken book fails the step at once).
    books: dict[str, tuple] = {}
    for book_id in sorted(by_book):
        with user_errors():
            story_record = load_story_record(store, book_id)
            story = story_record.story
            family, model = image_providers.choose(story.provider)
            plan = book_plan(store, storage.styles_path, story, family, model,
                             image_providers.provider(family, store), context.log, references=BOOK_TARGETS)
            qref = quality_reference(store, storage.styles_path, story) if config.quality_gate else None
        ctx = generation_context(context, store, image_providers, story, "book_pages")
        books[book_id] = (story_record, plan, qref, ctx, load_state(store, book_id), f"{family}:{model}")

    def render(book_id: str, page: str):
        story_record, plan, qref, ctx, review, _ = books[book_id]
        number = int(page)
        if not 1 <= number <= len(story_record.story.pages):
            raise dg.Failure(f"page slot {page} is past the end of {book_id!r} ({len(story_record.story.pages)} "
                             "pages)", allow_retries=False)
        return render_target(plan, page_target(number), page_request(plan, number), ctx, store=store, gate=gate,
                             qref=qref, review=review, story_sha256=story_record.sha256)

    # 2. Every page of every book in the run on one pool: a backfill run that holds one page slot of many books
    # (Dagster splits a many-book backfill by slot) draws them side by side, not one book after another.
    work = [(book_id, page) for book_id in sorted(by_book) for page in sorted(by_book[book_id])]
    workers = max(1, min(image_providers.max_concurrency, len(work)))
    shared = f" (shared by {len(books)} books)" if len(books) > 1 else ""
    for book_id, pages in sorted(by_book.items()):
        context.log.info(f"{book_id}: rendering {len(pages)} page(s) with {books[book_id][5]}, {workers} at a "
                         f"time{shared}")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="page")
    futures: dict[Future, tuple[str, str]] = {pool.submit(render, *item): item for item in work}
    done: dict[str, int] = defaultdict(int)
    cached: dict[str, int] = defaultdict(int)
    try:
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in sorted(finished, key=futures.get):
                book_id, page = futures[future]
                done[book_id] += 1
                progress = f"{done[book_id]}/{len(by_book[book_id])}"
                exc = future.exception()
                if exc is not None:
                    failures.append(f"{book_id} page {int(page)}: {exc}")
                    context.log.error(f"{book_id} page {int(page)} failed ({progress}): {exc}")
                    continue
                record, verdict = future.result()
                quiet = record.cache_hit and verdict.accepted
                cached[book_id] += quiet
                yield from _page_events(context, store, books[book_id][0].story, page, record, verdict,
                                        check_selected, progress, gate.max_attempts, log=not quiet)
    except BaseException:
        # 3. The run is being terminated: stop paying for pages.
        cancelled = [job for entry in books.values() for job in entry[3].cancel_in_flight()]
        if cancelled:
            context.log.warning(f"cancelled remote jobs: {', '.join(cancelled)}")
        # Wait for the pages already drawing (their jobs were just cancelled, so they end soon): a thread left
        # writing after the step has failed would race the rerun for the same files.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    for book_id, count in sorted(cached.items()):
        if count:  # one line, not one per page: every stored line is an event write, and these say nothing new
            context.log.info(f"{book_id}: {count} of {len(by_book[book_id])} page(s) unchanged, kept from the "
                             "cache and accepted ($0)")
    if failures:
        raise dg.Failure(f"{len(failures)} page(s) failed; the others are kept:\n" + "\n".join(failures))


def _page_events(context, store, story, page: str, record, verdict: QualityVerdict, check_selected: bool,
                 progress: str, max_attempts: int, log: bool = True):
    number = int(page)
    partition = page_partition(story.book_id, page)
    outcome = page_gate_line(verdict, number, max_attempts)
    cost = "cache hit" if record.cache_hit else f"${record.cost_usd:.3f}"
    if verdict.accepted:
        if log:
            context.log.info(f"{story.book_id} {outcome} ({progress}, {cost})")
    else:
        context.log.warning(f"{story.book_id} {outcome} ({progress}); not kept for the book")
    # A failed page is still materialized (its image is what a reviewer approves or rejects), but every field
    # says it failed: the book has no record of it, and book_pdf refuses the book naming it.
    yield dg.AssetMaterialization(
        asset_key=context.asset_key, partition=partition,
        metadata={**image_metadata(store, record, f"page {number}"), "book": story.book_id, "page": number,
                  "text": story.pages[number - 1].text, "scene": story.pages[number - 1].scene,
                  "quality": outcome, "accepted": verdict.accepted, "winning_attempt": verdict.winner,
                  # the gate's attempts at this page (each a new image); `requests`: the provider's tries for
                  # the kept one (a create retried after a 5xx), which image_metadata names `attempts`
                  "attempts": len(verdict.attempts), "failed_attempts": sum(not a.passed for a in verdict.attempts),
                  "requests": record.attempts,
                  "in_book": verdict.accepted,
                  "attempts_table": dg.MetadataValue.md(attempts_markdown(verdict))},
        tags={"dagster/data_version": record.image_sha256[:16]})
    if check_selected:
        yield check_evaluation(verdict, partition, max_attempts)


def build_book_pages(pool: str | None = None) -> dg.AssetsDefinition:
    """book_pages; `pool` is the provider's concurrency pool."""

    @dg.asset(partitions_def=book_pages_partitions, group_name="book", code_version="2",
              deps=["sprite_sheet", "hero_page", STYLE_DEP], kinds={"python"}, pool=pool,
              backfill_policy=dg.BackfillPolicy.single_run(), output_required=False, check_specs=[page_check_spec],
              description="Every page's illustration, one partition per book x page, drawn against the book's "
                          "sprite sheet and hero page. A book's pages render concurrently in one step; a page that "
                          "fails its quality gate is redrawn with a new seed up to max_attempts within the budget.")
    def book_pages(context: dg.AssetExecutionContext, config: BookPagesConfig, storage: BookbugStorage,
                   image_providers: ImageProviders, quality_judge: QualityJudge):
        keys = [split_page_key(k) for k in context.partition_keys]
        yield from render_book_pages(context, storage, image_providers, keys, config, quality_judge)
        if page_check_spec.key in context.selected_asset_check_keys:
            # The check's output must be produced once per step; its per-page results went out as evaluations.
            yield dg.Output(None, output_name=context.assets_def.get_output_name_for_asset_check_key(page_check_spec.key))

    return book_pages


@dg.definitions
def page_defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_book_pages(generation_pool())])
