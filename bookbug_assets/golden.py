"""Golden books: a fixed set of stories rendered through a chosen provider, scored, compared with
the last accepted run; a drop beyond a threshold fails the run and names the pages.

Each golden story runs through the real book assets (the same runs `cli.materialize_book`
makes, under the book id `golden-<book_id>` so golden books never mix with real ones), which
means the pages pass the same quality gate and every image is cached and in the ledger. The
pages' quality verdicts are the scores. The last accepted scores per provider live in the
ArtifactStore at `golden/<provider>/accepted.json`; a run without regressions (or with
`accept: true`, to bless an intended change) becomes the new baseline.
"""

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from pydantic import Field

from bookbug_assets.checks import load_verdicts
from bookbug_assets.partitions import style_names
from bookbug_assets.providers.registry import parse_provider_spec
from bookbug_assets.resources import BookbugStorage, ImageProviders
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import Story, StoryError, load_story_file
from bookbug_assets.stories.parsing import STORY_SUFFIXES

GOLDEN_PREFIX = "golden-"
METRICS = {"style_distance": 1, "character_similarity": -1}  # +1: higher is worse, -1: lower is worse


class GoldenConfig(dg.Config):
    stories_dir: str = Field("data/golden", description="Folder of golden story files (JSON/YAML).")
    provider: str = Field("preview", description="family or family:model every golden book is rendered with.")
    max_drop: float = Field(0.1, ge=0, description="Largest allowed worsening of a page's score vs the baseline.")
    accept: bool = Field(False, description="Make this run the baseline even if it regressed.")


def golden_story(story: Story, provider_spec: str) -> Story:
    family, model = parse_provider_spec(provider_spec)
    book_id = (GOLDEN_PREFIX + story.book_id)[:64].rstrip("-")
    return story.model_copy(update={"book_id": book_id, "provider": f"{family}:{model}"})


def load_golden_stories(folder: Path, styles: set[str], provider_spec: str) -> list[Story]:
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in STORY_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise dg.Failure(f"no golden stories in {folder}; put a few story files there", allow_retries=False)
    try:
        return [golden_story(load_story_file(p, styles), provider_spec) for p in files]
    except StoryError as exc:
        raise dg.Failure(f"golden story rejected: {exc}", allow_retries=False) from None


def page_scores(store: ArtifactStore, story: Story) -> dict[str, dict]:
    """page-NNN -> the scores its quality verdict recorded (missing pages are absent)."""
    verdicts = load_verdicts(store, story.book_id)
    out = {}
    for key in story.page_keys:
        verdict = verdicts.get(f"page-{key}")
        if verdict is not None:
            out[f"page-{key}"] = {"passed": verdict.passed, "image_sha256": verdict.image_sha256,
                                  **{m: verdict.scores[m] for m in METRICS if m in verdict.scores}}
    return out


def compare(baseline: dict[str, dict[str, dict]], current: dict[str, dict[str, dict]],
            max_drop: float) -> list[str]:
    """Regressions as sentences naming the book and page; empty when nothing got worse."""
    problems = []
    for book, pages in baseline.items():
        now = current.get(book, {})
        for page, before in pages.items():
            after = now.get(page)
            where = f"{book} page {int(page[5:])}"
            if after is None:
                problems.append(f"{where}: not rendered this time")
                continue
            if before.get("passed") and not after.get("passed"):
                problems.append(f"{where}: passed its quality gate before, fails now")
            for metric, worse in METRICS.items():
                if metric in before and metric in after:
                    drop = (after[metric] - before[metric]) * worse
                    if drop > max_drop:
                        problems.append(f"{where}: {metric} {before[metric]:.3f} -> {after[metric]:.3f} "
                                        f"(worse by {drop:.3f} > {max_drop})")
    return problems


def baseline_key(provider_spec: str) -> str:
    family, model = parse_provider_spec(provider_spec)
    return f"golden/{re.sub(r'[^A-Za-z0-9_.=-]', '_', f'{family}_{model}')}/accepted.json"


def _golden_defs(storage: BookbugStorage, image_providers: ImageProviders, stories_dir: Path) -> dg.Definitions:
    """The project's own definitions (assets and checks as wired), reading stories from the golden folder."""
    from bookbug_assets.definitions import build_definitions  # here: definitions imports this module

    defs = build_definitions(data_root=storage.data_root, stories_dir=str(stories_dir), styles_dir=storage.styles_dir)
    # The same storage resource (whatever its class: local or S3) with only the stories folder changed.
    fields = {name: getattr(storage, name) for name in type(storage).model_fields}
    golden_storage = type(storage)(**{**fields, "stories_dir": str(stories_dir)})
    return dg.Definitions(assets=defs.assets, asset_checks=defs.asset_checks, executor=dg.in_process_executor,
                          resources={**defs.resources, "image_providers": image_providers, "storage": golden_storage})


@dg.op(description="Render the golden stories through the chosen provider, score their pages, compare with the "
                   "last accepted run; fail naming the pages whose scores dropped by more than max_drop.")
def golden_regression(context: dg.OpExecutionContext, config: GoldenConfig, storage: BookbugStorage,
                      image_providers: ImageProviders) -> dict:
    from bookbug_assets.cli import materialize_book

    store = storage.store()
    stories = load_golden_stories(Path(config.stories_dir), set(style_names(storage.styles_path)), config.provider)
    work = store.local_path("golden/stories/.keep").parent  # story files the `story` asset reads
    work.mkdir(parents=True, exist_ok=True)
    for s in stories:
        (work / f"{s.book_id}.json").write_text(json.dumps(s.model_dump(mode="json")))
    defs = _golden_defs(storage, image_providers, work)
    current: dict[str, dict[str, dict]] = {}
    for s in stories:
        try:
            materialize_book(defs, context.instance, s, echo=context.log.info)
        except Exception as exc:  # noqa: BLE001 - a failing page is a result to compare, not a crash
            context.log.warning(f"golden book {s.book_id}: {type(exc).__name__}: {str(exc)[:300]}")
        current[s.book_id] = page_scores(store, s)
    key = baseline_key(config.provider)
    baseline = store.read_json(key)["books"] if store.exists(key) else {}
    problems = compare(baseline, current, config.max_drop)
    record = {"run_id": context.run_id, "provider": config.provider, "max_drop": config.max_drop,
              "at": datetime.now(timezone.utc).isoformat(), "books": current, "regressions": problems}
    store.write_json(f"{key.rsplit('/', 1)[0]}/runs/{context.run_id}.json", record)
    table = ["| book | page | passed | style_distance | character_similarity |", "|---|---|---|---|---|"]
    table += [f"| {b} | {int(p[5:])} | {v['passed']} | {v.get('style_distance', '')} | "
              f"{v.get('character_similarity', '')} |" for b, pages in current.items() for p, v in pages.items()]
    context.add_output_metadata({"scores": dg.MetadataValue.md("\n".join(table)), "baseline": store.uri(key),
                                 "regressions": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or
                                                                    "none")})
    if problems and not config.accept:
        raise dg.Failure(f"golden books regressed on {len(problems)} page(s) vs the last accepted run:\n"
                         + "\n".join(problems), allow_retries=False,
                         metadata={"regressions": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))})
    store.write_json(key, record)
    context.log.info(f"golden run accepted as the baseline for {config.provider}"
                     + (" (first run)" if not baseline else ""))
    return {"books": len(current), "pages": sum(len(p) for p in current.values()), "regressions": problems}


@dg.job(description="Golden books regression: fixed stories through a chosen provider, scored and compared with "
                    "the last accepted run.", executor_def=dg.in_process_executor)
def golden_books_job():
    golden_regression()
