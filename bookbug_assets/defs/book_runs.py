"""A whole book run in this process, as the sensor's backfill would run it: style (unless it is current),
book-level references, all pages in one step, then the PDF, print files and ledger in one run; with `if_changed`
none of the book's runs when its last ones had the same inputs (book_inputs.py). Used by
`bookbug book | demo | regenerate` and the golden job.

Runs go to the given instance, so the runs, the partitions and their lineage show in the UI afterwards.
Only the book's real pages are ever requested.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg

# Modules, not their assets: the defs loader collects every Dagster object a module holds at top level, and
# this module must not hold a second copy of assets its domain modules already define.
from bookbug_assets.defs.book_inputs import INPUTS_TAG, STAGE_TAG, book_inputs_sha256, book_is_current
from bookbug_assets.defs.books import references, story as story_module
from bookbug_assets.defs.common import BOOK_TAG, RETRY_REFUSED_TAG
from bookbug_assets.defs.ledger import assets as ledger_assets
from bookbug_assets.defs.pages import assets as page_assets
from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions, styles_partitions
from bookbug_assets.defs.print import assets as print_assets
from bookbug_assets.defs.print import platform_assets
from bookbug_assets.defs.resources import generation_pool
from bookbug_assets.defs.styles import assets as style_assets
from bookbug_assets.layout import page_partition, style_dataset_key, style_profile_key
from bookbug_assets.stories import Story
from bookbug_assets.styles import StyleError, style_inputs_hash


@dataclass(frozen=True)
class BookGraph:
    """The assets, standalone checks and resources a book's runs are made of: from a loaded Definitions, or from
    the repository a running job belongs to (the golden job uses its own code location's assets)."""

    assets: list
    checks: list
    resources: dict

    @classmethod
    def of(cls, defs: dg.Definitions) -> BookGraph:
        return cls([a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)], list(defs.asset_checks or []),
                   dict(defs.resources or {}))

    @classmethod
    def assemble(cls, resources: dict) -> BookGraph:
        """The book slice of the graph from its domains' own factories, bound to `resources` (the golden job runs
        its stories with a storage of its own; loading the whole project again inside a run would be wasteful)."""
        pool = generation_pool()
        assets = [*style_assets.build_style_assets(), story_module.story,
                  *references.build_reference_assets(pool), page_assets.build_book_pages(pool), print_assets.book_pdf,
                  platform_assets.book_interior_asset(), platform_assets.book_cover_asset(pool),
                  ledger_assets.generation_ledger, ledger_assets.cost_report]
        checks = [references.sprite_sheet_quality, references.hero_page_quality, print_assets.book_pdf_preflight,
                  platform_assets.book_interior_preflight, platform_assets.book_cover_preflight]
        return cls(assets, checks, resources)


def _assets(graph: BookGraph | dg.Definitions, *names: str) -> list:
    """The named assets and their standalone checks, so the checks run in the same run."""
    graph = graph if isinstance(graph, BookGraph) else BookGraph.of(graph)
    wanted = set(names)
    chosen = [a for a in graph.assets if {k.path[-1] for k in a.keys} & wanted]
    return chosen + [c for c in graph.checks if {k.asset_key.path[-1] for k in c.check_keys} & wanted]


def _style_is_current(instance: dg.DagsterInstance, graph: BookGraph, style: str) -> bool:
    """True when the style's last materialization was built from the style folder as it is now and its files are
    still in the store: running it again would write the same dataset and profile, at a run's cost."""
    storage = graph.resources.get("storage")
    if storage is None:
        return False
    latest = {}
    for name in ("style_dataset", "style_lora"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[style]), limit=1).records
        if not records:
            return False
        latest[name] = records[0]
    if latest["style_lora"].storage_id < latest["style_dataset"].storage_id:
        return False  # a dataset newer than the profile made from it
    stored = latest["style_dataset"].asset_materialization.metadata.get("inputs_sha256")
    store = storage.store()
    try:
        now = style_inputs_hash(storage.styles_path / style)
    except (StyleError, OSError):
        return False  # the style run says what is wrong, naming the file
    return (stored is not None and stored.value == now and store.exists(style_dataset_key(style))
            and store.exists(style_profile_key(style)))


def _run_stage(graph: BookGraph, instance: dg.DagsterInstance, story: Story, label: str, names: tuple[str, ...],
               kwargs: dict, tags: dict[str, str], raise_on_error: bool, log_level: str,
               echo) -> dg.ExecuteInProcessResult:
    started = time.monotonic()
    echo(f"[bookbug] {story.book_id}: {label} ({', '.join(names)}) ...")
    run_tags = {**tags, STAGE_TAG: label, **kwargs.pop("tags", {})}
    # INFO, not DEBUG, on the console: the page-by-page progress lines stay readable.
    run_config = {**kwargs.pop("run_config", {}), "loggers": {"console": {"config": {"log_level": log_level}}}}
    result = dg.materialize(_assets(graph, *names), instance=instance, resources=graph.resources, tags=run_tags,
                            raise_on_error=raise_on_error, run_config=run_config, **kwargs)
    if result.success:
        echo(f"[bookbug] {story.book_id}: {label} done in {time.monotonic() - started:.1f}s")
    else:
        echo(f"[bookbug] {story.book_id}: {label} FAILED; see the run's log in the UI")
    return result


def materialize_book(defs: BookGraph | dg.Definitions, instance: dg.DagsterInstance, story: Story,
                     echo=print, include_style: bool = True, raise_on_error: bool = True,
                     thresholds: dict | None = None, log_level: str = "INFO",
                     tags: dict[str, str] | None = None,
                     if_changed: bool = False) -> dict[str, dg.ExecuteInProcessResult]:
    """The same runs the sensor's backfill makes, executed here, one after another.

    `thresholds` overrides the quality gates' QualityThresholds fields for this book (run config,
    as the launchpad would set it), e.g. to render through a provider the gates are not yet
    calibrated for. `if_changed`: make none of the book's runs (after the style's, when its folder changed)
    when the book is as runs with these very inputs left it (book_inputs.book_is_current); the result then
    holds no references, pages or finish run.
    """
    instance.add_dynamic_partitions(books_partitions.name, [story.book_id])
    if include_style and story.style not in instance.get_dynamic_partitions(styles_partitions.name):
        instance.add_dynamic_partitions(styles_partitions.name, [story.style])
    missing_slots = sorted(set(story.page_keys) - set(instance.get_dynamic_partitions(page_slots_partitions.name)))
    if missing_slots:
        instance.add_dynamic_partitions(page_slots_partitions.name, missing_slots)
    graph = defs if isinstance(defs, BookGraph) else BookGraph.of(defs)
    tags = {BOOK_TAG: story.book_id, **(tags or {})}  # e.g. bookbug/retry_refused
    run = dict(graph=graph, instance=instance, story=story, raise_on_error=raise_on_error, log_level=log_level,
               echo=echo)
    results = {}
    if include_style and _style_is_current(instance, graph, story.style):
        echo(f"[bookbug] {story.book_id}: style {story.style} is as its last run left it; not run again")
    elif include_style:
        results["style"] = _run_stage(label="style", names=("style_dataset", "style_lora"),
                                      kwargs={"partition_key": story.style}, tags=tags, **run)
        if not results["style"].success:
            return results
    # After the style's run: the book's inputs include the style's stored dataset and profile.
    inputs = book_inputs_sha256(graph.resources, story, tags, thresholds)
    if if_changed and RETRY_REFUSED_TAG not in tags and book_is_current(instance, graph.resources, story, inputs):
        echo(f"[bookbug] {story.book_id}: unchanged since its last runs (same story, style, settings and code; "
             "every image and the PDF in place); nothing run (--force runs it anyway)")
        return results
    gate = {"config": {"thresholds": thresholds}} if thresholds else None

    def ops(*names: str) -> dict:
        return {"ops": {name: gate for name in names}} if gate else {}

    page_range = {f"dagster/asset_partition_range_{end}": page_partition(story.book_id, p)
                  for end, p in (("start", story.page_keys[0]), ("end", story.page_keys[-1]))}
    stages: list[tuple[str, tuple[str, ...], dict]] = [
        ("references", ("story", "sprite_sheet", "hero_page"), {
            "partition_key": story.book_id,
            "run_config": ops("sprite_sheet", "hero_page", "sprite_sheet_sprite_sheet_quality",
                              "hero_page_hero_page_quality")}),
        ("pages", ("book_pages",), {"run_config": ops("book_pages"), "tags": page_range}),
        # One run for the reading copy, the print files and the ledger: a run costs its start and its events
        # whatever it holds, and the unpartitioned ledger assets may share a book partition's run. The ledger
        # does not wait on the PDFs, so a book whose PDF is refused still shows its costs.
        ("finish", ("book_pdf", *(("book_interior", "book_cover") if story.print else ()),
                    "generation_ledger", "cost_report"), {"partition_key": story.book_id}),
    ]
    for label, names, kwargs in stages:
        results[label] = _run_stage(label=label, names=names, kwargs=kwargs, tags={**tags, INPUTS_TAG: inputs},
                                    **run)
        if not results[label].success:
            break
    return results
