"""Book latency against the Replicate fake: our times vs the critical path and a plain baseline of the same calls.

An N-page book (`--pages`, the example story's pages repeated to N) through the real generation path and the
real `replicate` client, against the fake server with a fixed per-job latency L and page concurrency C.
Measured in one run, in this order:
  art         the references run (sprite sheet, hero page) plus the pages run, as the CLI's book runs report
  wall        the whole `materialize_book` call: style, references (with the story), pages, finish runs, i.e.
              what a user of `bookbug book` waits for once the process is up (process start, imports and
              definitions, is printed apart as `start`)
  plain       the same predictions ours created (same inputs, replayed in creation order) made with the plain
              `replicate` client and threads: sprite sheet, then hero page, then the pages C at a time, each
              polled every 0.25 s as ours is and its output decoded; nothing else. What any orchestrator of
              these calls has to beat.
  critical    sprite + hero + ceil(N / C) * L: nothing can do better
  sequential  (--sequential) the same pages one after another (C = 1), fresh seeds so nothing is cached
  judged      (--judge-latency J) the book again, fresh seed, with a quality judge (the chat-completions fake)
              answering in J seconds; each image is judged after its checks, so the ideal is art + 3 x J
Ends with:
  book_latency ours/plain=<art/plain> wall/plain=<r> ratio=<art/critical> L=<s> pages=<n> art=<s> wall=<s>
  plain=<s> critical=<s> start=<s> load=<1-min load average>

    .venv/bin/python benchmarks/book_latency.py --latency 10 --concurrency 12
    .venv/bin/python benchmarks/book_latency.py --latency 2 --pages 24
"""

import argparse
import base64
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_STARTED = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from tests.fakes.replicate_server import FakeReplicate  # noqa: E402

TOKEN = "r8_benchmark_token"
MODEL = "black-forest-labs/flux-kontext-pro"
POLL_S = 0.25


def write_story(folder: Path, seed: int, pages: int) -> Path:
    data = yaml.safe_load((REPO / "data/stories/pip-and-the-lantern.yaml").read_text())
    data["seed"] = seed
    data["pages"] = (data["pages"] * (pages // len(data["pages"]) + 1))[:pages]
    folder.mkdir()
    (folder / "book.yaml").write_text(yaml.safe_dump(data))
    return folder / "book.yaml"


JUDGE_SPEC = "openrouter:openai/gpt-4o-2024-08-06"
# The fake draws random shapes, not the book's characters: the judge is asked, but nothing it says fails an image
# (a redraw would change the work, not the latency being measured).
LOOSE_JUDGE = {"min_identity": 0, "min_style_match": 0, "min_scene_match": 0, "require_features": False,
               "allow_lettering": True, "allow_artifacts": True}


def render(root: Path, fake_url: str, concurrency: int, seed: int, pages: int,
           judged: bool = False) -> dict[str, float]:
    """One book through materialize_book; its runs' times (`art`: references + pages) and the whole call."""
    os.environ.update({"REPLICATE_API_TOKEN": TOKEN, "BOOKBUG_PROVIDER": f"replicate:{MODEL}",
                       "BOOKBUG_REPLICATE_BASE_URL": fake_url, "BOOKBUG_MAX_CONCURRENCY": str(concurrency),
                       "BOOKBUG_POLL_INTERVAL_S": str(POLL_S)})
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.stories import load_story_file

    path = write_story(root / f"stories-{seed}", seed, pages)
    defs = build_definitions(data_root=str(root / f"out-{seed}"), stories_dir=str(path.parent),
                             styles_dir=str(REPO / "data/styles"))
    story = load_story_file(path, {"soft-meadow"})
    timings: dict[str, float] = {}

    def echo(line: str) -> None:
        if " done in " in line:
            label = line.split(": ")[1].split(" done in")[0]
            timings[label] = float(line.rsplit(" ", 1)[1].rstrip("s"))

    started = time.monotonic()
    # The fake draws random shapes, not the book's characters: gate only on artifacts, so no page is redrawn.
    thresholds = {"max_style_distance": 1.0, "min_character_similarity": 0.0, **(LOOSE_JUDGE if judged else {})}
    materialize_book(defs, dg.DagsterInstance.ephemeral(), story, echo=echo, log_level="WARNING",
                     thresholds=thresholds)
    timings["wall"] = time.monotonic() - started
    timings["art"] = timings["references"] + timings["pages"]
    return timings


def plain(fake: FakeReplicate, created: list[dict], concurrency: int) -> float:
    """Replay `created` (sprite sheet, hero page, then pages) with the plain client: create, poll, decode."""
    client = fake.client()

    def one(entry: dict) -> bytes:
        official = fake.models[entry["model"]].spec.get("official") and entry["version"] == fake.version_id(
            entry["model"])
        kind = {"model": entry["model"]} if official else {"version": entry["version"]}
        prediction = client.predictions.create(input=entry["input"], **kind)
        while True:
            prediction = client.predictions.get(prediction.id)
            if prediction.status in ("succeeded", "failed", "canceled"):
                break
            time.sleep(POLL_S)
        if prediction.status != "succeeded":
            raise RuntimeError(f"plain baseline: prediction {prediction.id} {prediction.status}")
        output = prediction.output[0] if isinstance(prediction.output, list) else prediction.output
        return base64.b64decode(str(output).split(",", 1)[1])

    started = time.monotonic()
    one(created[0])  # sprite sheet
    one(created[1])  # hero page, drawn against the sprite sheet
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, created[2:]))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--pages", type=int, default=12, help="pages in the book (the example's, repeated)")
    parser.add_argument("--sequential", action="store_true", help="also render the pages one at a time")
    parser.add_argument("--judge-latency", type=float, default=None, metavar="S",
                        help="also render the book with a quality judge (the chat fake) answering in S seconds: "
                             "each image is judged after its checks, so the ideal cost is 3 x S (sheet, hero, pages)")
    args = parser.parse_args()
    start = time.monotonic() - _STARTED  # interpreter, dagster, the fakes; definitions load inside `wall`
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="book_latency-"))
    try:
        with FakeReplicate(api_token=TOKEN, latency_s=args.latency, output_mode="data", output_scale=1.0) as fake:
            ours = render(root, fake.url, args.concurrency, seed=1, pages=args.pages)
            created = [dict(p) for p in fake.created_predictions]
            if len(created) != args.pages + 2:
                raise SystemExit(f"book_latency: expected {args.pages + 2} predictions, ours made {len(created)}")
            plain_s = plain(fake, created, args.concurrency)
            sequential = (render(root, fake.url, 1, seed=2, pages=args.pages)["art"]
                          if args.sequential else math.nan)
            judged = judged_render(root, fake.url, args) if args.judge_latency is not None else None
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()
    critical = 2 * args.latency + math.ceil(args.pages / args.concurrency) * args.latency
    runs = " ".join(f"{k}={v:.1f}" for k, v in ours.items() if k not in ("art", "wall"))
    print(f"ours, per run: {runs}")
    print(f"book_latency ours/plain={ours['art'] / plain_s:.3f} wall/plain={ours['wall'] / plain_s:.3f} "
          f"ratio={ours['art'] / critical:.3f} L={args.latency:g} pages={args.pages} C={args.concurrency} "
          f"art={ours['art']:.1f} wall={ours['wall']:.1f} plain={plain_s:.1f} critical={critical:.1f} "
          f"start={start:.1f}" + (f" sequential={sequential:.1f}" if args.sequential else "")
          + f" load={load_before[0]:.2f}->{load_after[0]:.2f}")
    if judged is not None:
        ideal = 3 * args.judge_latency
        print(f"book_latency_judge J={args.judge_latency:g} art={judged['art']:.1f} without={ours['art']:.1f} "
              f"overhead={judged['art'] - ours['art']:.1f} ideal_overhead={ideal:.1f} "
              f"judged/unjudged={judged['art'] / ours['art']:.3f} "
              f"judged/(unjudged+3J)={judged['art'] / (ours['art'] + ideal):.3f} calls={judged['calls']:.0f}")


def judged_render(root: Path, fake_url: str, args) -> dict[str, float]:
    """The same book (a new seed, so nothing is cached) with the chat-completions judge fake at latency J."""
    from tests.fakes.judge_server import FakeChatJudge

    with FakeChatJudge(latency_s=args.judge_latency) as judge:
        os.environ.update({"BOOKBUG_JUDGE": JUDGE_SPEC, "OPENROUTER_API_KEY": judge.api_key,
                           "BOOKBUG_JUDGE_BASE_URL": judge.base_url})
        try:
            timings = render(root, fake_url, args.concurrency, seed=3, pages=args.pages, judged=True)
        finally:
            for name in ("BOOKBUG_JUDGE", "OPENROUTER_API_KEY", "BOOKBUG_JUDGE_BASE_URL"):
                os.environ.pop(name, None)
        timings["calls"] = len(judge.completions())
    return timings


if __name__ == "__main__":
    main()
