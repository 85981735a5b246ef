"""Golden books, the plain parts: the fixed stories, their pages' scores, and the comparison with the last
accepted run (the job that renders them is bookbug_assets.defs.golden).

The pages' quality verdicts are the scores. The last accepted scores per provider live in the
ArtifactStore at `golden/<provider>/accepted.json`; a run without regressions (or with
`accept: true`, to bless an intended change) becomes the new baseline.
"""

from __future__ import annotations

import re
from pathlib import Path

from bookbug_assets.layout import book_targets, page_number
from bookbug_assets.providers.registry import parse_provider_spec
from bookbug_assets.quality.verdicts import load_verdicts
from bookbug_assets.storage import ArtifactStore
from bookbug_assets.stories import Story, StoryError, load_story_file
from bookbug_assets.stories.parsing import STORY_SUFFIXES

GOLDEN_PREFIX = "golden-"
METRICS = {"style_distance": 1, "character_similarity": -1}  # +1: higher is worse, -1: lower is worse


class GoldenError(ValueError):
    """The golden folder holds no stories, or one of them is not a valid story."""


def golden_story(story: Story, provider_spec: str) -> Story:
    family, model = parse_provider_spec(provider_spec)
    book_id = (GOLDEN_PREFIX + story.book_id)[:64].rstrip("-")
    return story.model_copy(update={"book_id": book_id, "provider": f"{family}:{model}"})


def load_golden_stories(folder: Path, styles: set[str], provider_spec: str) -> list[Story]:
    files = sorted(p for p in folder.glob("*") if p.suffix.lower() in STORY_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise GoldenError(f"no golden stories in {folder}; put a few story files there")
    try:
        return [golden_story(load_story_file(p, styles), provider_spec) for p in files]
    except StoryError as exc:
        raise GoldenError(f"golden story rejected: {exc}") from None


def page_scores(store: ArtifactStore, story: Story) -> dict[str, dict]:
    """page-NNN -> the scores its quality verdict recorded (missing pages are absent)."""
    verdicts = load_verdicts(store, story.book_id)
    out = {}
    for target in book_targets(story)[2:]:
        verdict = verdicts.get(target)
        if verdict is not None:
            out[target] = {"passed": verdict.passed, "image_sha256": verdict.image_sha256,
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
            where = f"{book} page {page_number(page)}"
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


def golden_runs_key(provider_spec: str, run_id: str) -> str:
    return f"{baseline_key(provider_spec).rsplit('/', 1)[0]}/runs/{run_id}.json"


def scores_table(current: dict[str, dict[str, dict]]) -> str:
    table = ["| book | page | passed | style_distance | character_similarity |", "|---|---|---|---|---|"]
    table += [f"| {b} | {page_number(p)} | {v['passed']} | {v.get('style_distance', '')} | "
              f"{v.get('character_similarity', '')} |" for b, pages in current.items() for p, v in pages.items()]
    return "\n".join(table)

