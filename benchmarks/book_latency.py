"""Book latency against the Replicate fake: our wall time vs the critical path and a sequential baseline.

A 12-page book through the real generation path and the real `replicate` client, against the fake
server with a fixed per-job latency L and page concurrency C. Measured in one run:
  wall        sprite sheet + hero run, then the pages run (what a user waits for the art)
  critical    sprite + hero + ceil(12 / C) * L: nothing can do better
  sequential  the same pages rendered one after another (C = 1), fresh seeds so nothing is cached
Ends with: book_latency ratio=<wall/critical> L=<s> wall=<s> critical=<s> sequential=<s>

    .venv/bin/python benchmarks/book_latency.py --latency 10 --concurrency 12
"""

import argparse
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from tests.fakes.replicate_server import FakeReplicate  # noqa: E402

TOKEN = "r8_benchmark_token"
MODEL = "black-forest-labs/flux-kontext-pro"


def render(root: Path, fake_url: str, concurrency: int, seed: int) -> float:
    os.environ.update({"REPLICATE_API_TOKEN": TOKEN, "BOOKBUG_PROVIDER": f"replicate:{MODEL}",
                       "BOOKBUG_REPLICATE_BASE_URL": fake_url, "BOOKBUG_MAX_CONCURRENCY": str(concurrency),
                       "BOOKBUG_POLL_INTERVAL_S": "0.25"})
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.stories import load_story_file

    data = yaml.safe_load((REPO / "data/stories/pip-and-the-lantern.yaml").read_text())
    data["seed"] = seed
    stories = root / f"stories-{seed}"
    stories.mkdir()
    (stories / "book.yaml").write_text(yaml.safe_dump(data))
    defs = build_definitions(data_root=str(root / f"out-{seed}"), stories_dir=str(stories),
                             styles_dir=str(REPO / "data/styles"))
    story = load_story_file(stories / "book.yaml", {"soft-meadow"})
    timings: dict[str, float] = {}

    def echo(line: str) -> None:
        if " done in " in line:
            label = line.split(": ")[1].split(" done in")[0]
            timings[label] = float(line.rsplit(" ", 1)[1].rstrip("s"))

    # The fake draws random shapes, not the book's characters: gate only on artifacts, so no page is redrawn.
    materialize_book(defs, dg.DagsterInstance.ephemeral(), story, echo=echo,
                     thresholds={"max_style_distance": 1.0, "min_character_similarity": 0.0})
    return timings["references"] + timings["pages"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--pages", type=int, default=12)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="book_latency-"))
    try:
        with FakeReplicate(api_token=TOKEN, latency_s=args.latency, output_mode="data", output_scale=1.0) as fake:
            wall = render(root, fake.url, args.concurrency, seed=1)
            sequential = render(root, fake.url, 1, seed=2)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    critical = 2 * args.latency + math.ceil(args.pages / args.concurrency) * args.latency
    print(f"book_latency ratio={wall / critical:.3f} L={args.latency:g} wall={wall:.1f} "
          f"critical={critical:.1f} sequential={sequential:.1f}")


if __name__ == "__main__":
    main()
