"""Golden books: a fixed set of stories rendered through a chosen provider, scored, compared with the last
accepted run; a drop beyond a threshold fails the run and names the pages (scores: bookbug_assets.golden).

Each golden story runs through the real book assets (the same runs `bookbug book` makes, under the book id
`golden-<book_id>` so golden books never mix with real ones): the pages pass the same quality gate and every
image is cached and in the ledger.
"""

import json
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
from pydantic import Field

from bookbug_assets.defs.book_runs import BookGraph, materialize_book
from bookbug_assets.defs.judge_resource import QualityJudge
from bookbug_assets.defs.resources import BookbugStorage, ImageProviders
from bookbug_assets.golden import (
    GoldenError, baseline_key, compare, golden_runs_key, load_golden_stories, page_scores, scores_table,
)
from bookbug_assets.styles import style_names


class GoldenConfig(dg.Config):
    stories_dir: str = Field("data/golden", description="Folder of golden story files (JSON/YAML).")
    provider: str = Field("preview", description="family or family:model every golden book is rendered with.")
    max_drop: float = Field(0.1, ge=0, description="Largest allowed worsening of a page's score vs the baseline.")
    accept: bool = Field(False, description="Make this run the baseline even if it regressed.")


@dg.op(description="Render the golden stories through the chosen provider, score their pages, compare with the "
                   "last accepted run; fail naming the pages whose scores dropped by more than max_drop.")
def golden_regression(context: dg.OpExecutionContext, config: GoldenConfig, storage: BookbugStorage,
                      image_providers: ImageProviders) -> dict:
    store = storage.store()
    try:
        stories = load_golden_stories(Path(config.stories_dir), set(style_names(storage.styles_path)),
                                      config.provider)
    except GoldenError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    work = store.local_path("golden/stories/.keep").parent  # story files the `story` asset reads
    work.mkdir(parents=True, exist_ok=True)
    for s in stories:
        (work / f"{s.book_id}.json").write_text(json.dumps(s.model_dump(mode="json")))
    # The same storage resource (whatever its class: local or S3) with only the stories folder changed.
    fields = {name: getattr(storage, name) for name in type(storage).model_fields}
    golden_storage = type(storage)(**{**fields, "stories_dir": str(work)})
    # No quality judge: golden scores are the weight-free ones, comparable run to run and free.
    graph = BookGraph.assemble({"storage": golden_storage, "image_providers": image_providers,
                                "quality_judge": QualityJudge()})
    current: dict[str, dict[str, dict]] = {}
    for s in stories:
        try:
            materialize_book(graph, context.instance, s, echo=context.log.info)
        except Exception as exc:  # noqa: BLE001 - a failing page is a result to compare, not a crash
            context.log.warning(f"golden book {s.book_id}: {type(exc).__name__}: {str(exc)[:300]}")
        current[s.book_id] = page_scores(store, s)
    key = baseline_key(config.provider)
    baseline = store.read_json(key)["books"] if store.exists(key) else {}
    problems = compare(baseline, current, config.max_drop)
    record = {"run_id": context.run_id, "provider": config.provider, "max_drop": config.max_drop,
              "at": datetime.now(timezone.utc).isoformat(), "books": current, "regressions": problems}
    store.write_json(golden_runs_key(config.provider, context.run_id), record)
    regressions = dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")
    context.add_output_metadata({"scores": dg.MetadataValue.md(scores_table(current)), "baseline": store.uri(key),
                                 "regressions": regressions})
    if problems and not config.accept:
        raise dg.Failure(f"golden books regressed on {len(problems)} page(s) vs the last accepted run:\n"
                         + "\n".join(problems), allow_retries=False, metadata={"regressions": regressions})
    store.write_json(key, record)
    context.log.info(f"golden run accepted as the baseline for {config.provider}"
                     + (" (first run)" if not baseline else ""))
    return {"books": len(current), "pages": sum(len(p) for p in current.values()), "regressions": problems}


@dg.job(description="Golden books regression: fixed stories through a chosen provider, scored and compared with "
                    "the last accepted run.", executor_def=dg.in_process_executor)
def golden_books_job():
    golden_regression()
