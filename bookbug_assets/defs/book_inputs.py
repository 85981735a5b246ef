"""Is a book as its last runs left it? The inputs a book's runs would read, hashed, and the check that the runs
which made the book's current materializations had the very same hash.

`bookbug book` and `bookbug demo` ask this before running an unchanged book again, as `make` asks of a target's
prerequisites and as the UI's "Materialize changed and missing" does: the three runs of an unchanged book would
spend about a fifth of a first run's CPU and write some 130 events to find every page a cache hit, at $0, and
change nothing (benchmarks/book_cpu.py). Everything those runs could read goes into the hash, so a change to any
of them runs the book:

* the code: every source file of this package (a new gate or layout must rerun what the old one made);
* the story as parsed, the run tags (the story file's sha256 among them) and the run's gate limits;
* the style's stored dataset and profile (a retrained LoRA or new captions redraw the book);
* every resource's settings, a secret counted only as set or unset: a new provider, model, judge or endpoint;
* BOOKBUG_* settings read while running (approval, CMYK profile, review folder), and for a printed book the
  CMYK profiles and Ghostscript the print files would find;
* the book's review state (a person's verdict redraws a page).

The check then wants the book's current materializations (sprite sheet, hero page, every page, the PDF and print
files) all made by successful runs carrying that hash, and the files they recorded still in the store: a page a
launchpad run made since, with other settings, or a deleted image, runs the book again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from functools import cache
from pathlib import Path

import dagster as dg

import bookbug_assets
from bookbug_assets.defs.common import BOOK_TAG
from bookbug_assets.layout import (NotMaterialized, load_page_records, load_record, page_partition, pdf_key,
                                   review_state_key, style_dataset_key, style_profile_key)
from bookbug_assets.print_colour import SYSTEM_PROFILES
from bookbug_assets.stories import Story

INPUTS_TAG = "bookbug/inputs_sha256"  # the book_inputs_sha256 of the runs materialize_book made
STAGE_TAG = "bookbug/stage"  # which of a book's runs: style, references, pages, finish
_SECRET_WORDS = ("token", "key", "secret", "password")


def sources_sha256(root: Path) -> str:
    """sha256 over the source and data files under `root`, by relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml", ".json")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def code_sha256() -> str:
    """This package's sources_sha256, read once per process."""
    return sources_sha256(Path(bookbug_assets.__file__).parent)


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def _setting(name: str, value):
    """A resource field as it goes into the hash: an EnvVar by its name and whether it is set, a secret only as
    set or unset (its value is never hashed: a hash of a short secret can be searched for), nested config as
    its fields."""
    if isinstance(value, dg.EnvVar):
        return {"env": value.env_var_name, "set": bool(os.environ.get(value.env_var_name))}
    if _is_secret(name):
        return {"set": bool(value)}
    if isinstance(value, (dg.Config, dg.ConfigurableResource)):
        return {field: _setting(field, getattr(value, field)) for field in type(value).model_fields}
    return value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)


def _resources(resources: dict) -> dict:
    return {name: {"class": type(resource).__qualname__, **(_setting(name, resource) if isinstance(
        resource, dg.ConfigurableResource) else {})} for name, resource in sorted(resources.items())}


def _environment() -> dict:
    return {name: ({"set": bool(value)} if _is_secret(name) else value)
            for name, value in sorted(os.environ.items()) if name.startswith("BOOKBUG_")}


def _file_sha(store, key: str) -> str | None:
    return hashlib.sha256(store.read_bytes(key)).hexdigest() if store.exists(key) else None


def _print_tools(story: Story) -> dict:
    if not story.print:
        return {}
    profiles = [[str(path), path.stat().st_size] for path, *_ in SYSTEM_PROFILES if path.is_file()]
    return {"cmyk_profiles": profiles, "ghostscript": shutil.which("gs")}


def book_inputs_sha256(resources: dict, story: Story, tags: dict[str, str], thresholds: dict | None) -> str:
    """The hash of everything a book's references, pages and finish runs read besides the images they make."""
    store = resources["storage"].store()
    inputs = {
        "code": code_sha256(), "dagster": dg.__version__,
        "story": story.model_dump(mode="json"), "tags": dict(sorted(tags.items())), "thresholds": thresholds or {},
        "style": {key: _file_sha(store, key) for key in (style_dataset_key(story.style),
                                                          style_profile_key(story.style))},
        "review": _file_sha(store, review_state_key(story.book_id)),
        "resources": _resources(resources), "environment": _environment(), "print": _print_tools(story),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _made_by(instance: dg.DagsterInstance, asset: str, partitions: list[str], run_id: str) -> bool:
    """Were the latest materializations of these partitions of `asset` all made by `run_id`?"""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=partitions),
        limit=len(partitions)).records
    return ({r.partition_key for r in records} == set(partitions)
            and all(r.run_id == run_id for r in records))


def book_is_current(instance: dg.DagsterInstance, resources: dict, story: Story, inputs_sha256: str) -> bool:
    """True when the book's current materializations all come from successful runs with these inputs and the
    images, records and PDF they stored are still there (module doc)."""
    runs = instance.get_run_records(dg.RunsFilter(tags={BOOK_TAG: story.book_id, INPUTS_TAG: inputs_sha256},
                                                  statuses=[dg.DagsterRunStatus.SUCCESS]), limit=20)
    by_stage: dict[str, str] = {}
    for record in runs:  # newest first: the latest run of each stage
        by_stage.setdefault(record.dagster_run.tags.get(STAGE_TAG, ""), record.dagster_run.run_id)
    if not {"references", "pages", "finish"} <= by_stage.keys():
        return False
    book = [story.book_id]
    made = [("sprite_sheet", book, "references"), ("hero_page", book, "references"), ("book_pdf", book, "finish"),
            ("book_pages", [page_partition(story.book_id, p) for p in story.page_keys], "pages"),
            *((asset, book, "finish") for asset in (("book_interior", "book_cover") if story.print else ()))]
    if not all(_made_by(instance, asset, partitions, by_stage[stage]) for asset, partitions, stage in made):
        return False
    store = resources["storage"].store()
    try:
        records = [load_record(store, story.book_id, target) for target in ("sprite_sheet", "hero_page")]
        records += list(load_page_records(store, story).values())
    except (NotMaterialized, ValueError, OSError):  # missing or unreadable: the runs will say what is wrong
        return False
    return (len(records) == 2 + len(story.page_keys) and store.exists(pdf_key(story.book_id))
            and all(store.exists(r.image_key) for r in records))
