"""book_pages: one partition per page (book x page), fanned out concurrently inside one step.

A whole book is one run and one step (BackfillPolicy.single_run), not twelve processes: the
step renders its pages on a thread pool (provider calls are I/O-bound) and records one
materialization per page as each finishes. Rerunning one page from the UI is the same code
with a one-key range.
"""


from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import dagster as dg

from bookbug_assets.assets._shared import (
    NO_TEXT, book_key, character_lines, generation_context, image_metadata, load_record, load_story, make_request,
    reference, style_prefix,
)
from bookbug_assets.assets.characters import STYLE_DEP
from bookbug_assets.assets.style import load_style_profile
from bookbug_assets.generation import GenerationRecord, generate_image
from bookbug_assets.partitions import book_pages_partitions, split_page_key
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.stories.models import Story


def page_prompt(story: Story, page_no: int, profile: dict) -> str:
    page = story.pages[page_no - 1]
    who = character_lines(story, page.characters) if page.characters else "No characters on this page."
    return (f"{style_prefix(profile)} illustration for page {page_no} of the children's picture book "
            f"'{story.title}'. Scene: {page.scene} {who} Characters look exactly as in the reference sheet; "
            f"match the cover's palette and rendering. Full-bleed art, keep faces away from the edges. {NO_TEXT}")


def render_book_pages(context: dg.AssetExecutionContext, storage: BookbugStorage,
                      image_providers: ImageProviders, page_keys: list[tuple[str, str]]):
    """Yield one AssetMaterialization per rendered page; raise at the end if any page failed."""
    store = storage.store()
    by_book: dict[str, list[str]] = defaultdict(list)
    for book_id, page in page_keys:
        by_book[book_id].append(page)
    failures: list[str] = []
    for book_id, pages in by_book.items():
        story = load_story(store, book_id)
        profile = load_style_profile(storage, story.style, context.log)
        family, model = image_providers.choose(story.provider)
        provider = image_providers.provider(family)
        caps = provider.capabilities(model)
        refs = (reference(load_record(store, book_id, "sprite_sheet"), "sprite_sheet"),
                reference(load_record(store, book_id, "hero_page"), "hero_page"))
        ctx = generation_context(context, store, image_providers, story, "book_pages")
        ref_bytes = {ref.sha256: store.read_bytes(ref.key) for ref in refs}

        def render(page: str) -> GenerationRecord:
            number = int(page)
            if not 1 <= number <= len(story.pages):
                raise dg.Failure(f"page slot {page} is past the end of {book_id!r} ({len(story.pages)} pages)",
                                 allow_retries=False)
            request = make_request(family=family, model=model, caps=caps, story=story, profile=profile,
                                   kind="page", prompt=page_prompt(story, number, profile), seed_name=f"page-{page}",
                                   references=refs, character_ids=story.pages[number - 1].characters,
                                   label=f"page {number}", scene=story.pages[number - 1].scene)
            record = generate_image(request, provider, ctx, reference_bytes=ref_bytes, partition=f"{book_id}|{page}")
            store.write_json(book_key(book_id, f"pages/{page}.json"), record.model_dump(mode="json"))
            return record

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
                    record = future.result()
                    number = int(page)
                    context.log.info(f"{book_id} page {number} done ({done_count}/{len(pages)}) "
                                     f"{'cache hit' if record.cache_hit else f'${record.cost_usd:.3f}'}")
                    yield dg.AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=str(dg.MultiPartitionKey({"book": book_id, "page": page})),
                        metadata={**image_metadata(store, record, f"page {number}"), "book": book_id,
                                  "page": number, "text": story.pages[number - 1].text,
                                  "scene": story.pages[number - 1].scene},
                        tags={"dagster/data_version": record.image_sha256[:16]})
        except BaseException:
            cancelled = ctx.cancel_in_flight()  # the run is being terminated: stop paying for pages
            if cancelled:
                context.log.warning(f"cancelled remote jobs: {', '.join(cancelled)}")
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    if failures:
        raise dg.Failure(f"{len(failures)} page(s) failed; the others are kept:\n" + "\n".join(failures))


@dg.asset(partitions_def=book_pages_partitions, group_name="book", code_version="1",
          deps=["sprite_sheet", "hero_page", STYLE_DEP], kinds={"python"},
          backfill_policy=dg.BackfillPolicy.single_run(), output_required=False,
          description="Every page's illustration, one partition per book x page, drawn against the book's "
                      "sprite sheet and hero page. A book's pages render concurrently in one step.")
def book_pages(context: dg.AssetExecutionContext, storage: BookbugStorage, image_providers: ImageProviders):
    keys = [split_page_key(k) for k in context.partition_keys]
    yield from render_book_pages(context, storage, image_providers, keys)
