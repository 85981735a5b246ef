"""Backfill throughput: 20 books x 12 pages against a fake provider with pool limit P and latency L.

Every image of every book (sprite sheet, hero page, 12 pages) goes through the real path:
`materialize_book` -> assets -> generate_image -> provider. The provider is a test-only
ImageProvider registered through `providers.registry.FAMILIES`: each job takes L seconds and
returns the preview's proof image. A sampler records jobs in flight every 50 ms.

The provider allows P jobs at once, the way a pool limit of P would. Two ways to honour it:
  shared  (default) W books run at once (threads, one ephemeral instance each; W=20 like the
          deploy config's max_concurrent_runs) and take their
          provider jobs from one set of P slots: the pool's slots are held per *job*, so a book's
          sprite sheet, another book's pages and a third book's tail all share the P slots.
  serial  one book at a time with max_concurrency=P and no shared slots: what a Dagster pool of
          limit 1 on the page step (granularity op) gives across run workers. It stays within P
          but leaves slots idle while a book waits on its sequential steps.
Ideal throughput is P/L jobs per second; efficiency = achieved / ideal, where achieved counts
jobs over the provider's busy window (first job start to last job end).

Ends with one line:
  backfill_throughput efficiency=<achieved/(P/L)> max_in_flight=<n> P=<p>

    .venv/bin/python benchmarks/backfill_throughput.py --pool 4 --latency 0.5
    .venv/bin/python benchmarks/backfill_throughput.py --mode serial
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
import yaml  # noqa: E402

from bookbug_assets.providers import registry  # noqa: E402
from bookbug_assets.providers.base import ImageProvider, ImageRequest, JobOutput, ModelCapabilities  # noqa: E402

FAMILY = "benchfake"


class Meter:
    """Jobs in flight now, the most ever, and every job's (start, end)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.spans: list[tuple[float, float]] = []

    def enter(self) -> float:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return time.monotonic()

    def leave(self, started: float) -> None:
        with self.lock:
            self.in_flight -= 1
            self.spans.append((started, time.monotonic()))


class BenchProvider(ImageProvider):
    """Fake provider: a job is in flight from submit until its L seconds are up."""

    name = FAMILY
    meter: Meter = Meter()
    latency_s = 0.5
    slots: threading.BoundedSemaphore | None = None  # the pool's P slots (shared mode)
    _started: dict[str, float] = {}

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=14, price_usd=0.01, min_size=64, max_size=4096)

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        if self.slots is not None:
            self.slots.acquire()  # wait for a slot before the job exists at the provider
        job_id = f"bench-{request.cache_key()[:20]}"
        self._started[job_id] = self.meter.enter()
        return job_id

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        from bookbug_assets.providers.preview import render_preview

        started = self._started.pop(job_id)
        time.sleep(max(0.0, self.latency_s - (time.monotonic() - started)))
        self.meter.leave(started)
        if self.slots is not None:
            self.slots.release()
        return JobOutput(image=render_preview(request), version="bench-1", seed=request.seed)


def sampler(meter: Meter, samples: list[tuple[float, int]], stop: threading.Event, every_s: float = 0.05) -> None:
    while not stop.is_set():
        samples.append((time.monotonic(), meter.in_flight))
        stop.wait(every_s)


def write_stories(folder: Path, books: int, pages: int) -> list[Path]:
    base = yaml.safe_load((REPO / "data" / "stories" / "pip-and-the-lantern.yaml").read_text())
    paths = []
    for i in range(books):
        story = {**base, "book_id": f"bench-{i:02d}", "seed": 1000 + i,
                 "pages": (base["pages"] * ((pages // len(base["pages"])) + 1))[:pages]}
        path = folder / f"bench-{i:02d}.yaml"
        path.write_text(yaml.safe_dump(story))
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=20)
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--pool", type=int, default=4, help="P: provider jobs allowed at once")
    parser.add_argument("--latency", type=float, default=0.5, help="L: seconds per job")
    parser.add_argument("--mode", choices=["shared", "serial"], default="shared")
    parser.add_argument("--workers", type=int, default=20,
                        help="books in flight at once in shared mode, like max_concurrent_runs (default 20)")
    parser.add_argument("--timeline", type=Path, help="write jobs-in-flight samples (t,in_flight) as CSV")
    args = parser.parse_args(argv)
    P, L = args.pool, args.latency

    registry.FAMILIES[FAMILY] = f"{__name__}:BenchProvider"  # "__main__" when run as a script
    registry.DEFAULT_MODELS[FAMILY] = "bench-v1"
    BenchProvider.latency_s = L
    BenchProvider.slots = threading.BoundedSemaphore(P) if args.mode == "shared" else None

    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.defs.resources import ImageProviders
    from bookbug_assets.stories import load_story_file

    root = Path(tempfile.mkdtemp(prefix="bookbug-backfill-"))
    try:
        stories_dir = root / "stories"
        stories_dir.mkdir()
        shutil.copytree(REPO / "data" / "styles" / "soft-meadow", root / "styles" / "soft-meadow")
        paths = write_stories(stories_dir, args.books, args.pages)
        base = build_definitions(data_root=str(root / "outputs"), stories_dir=str(stories_dir),
                                 styles_dir=str(root / "styles"))
        providers = ImageProviders(default=f"{FAMILY}:bench-v1", max_concurrency=P)
        defs = dg.Definitions(assets=base.assets, executor=base.executor,
                              resources={**base.resources, "image_providers": providers})
        stories = [load_story_file(p, {"soft-meadow"}) for p in paths]
        quiet = open(os.devnull, "w")  # noqa: SIM115 - dagster's per-event console lines cost CPU here

        def book(story, include_style=False):
            with contextlib.redirect_stderr(quiet):
                results = materialize_book(defs, dg.DagsterInstance.ephemeral(), story, echo=lambda *_: None,
                                           include_style=include_style)
            if not all(r.success for r in results.values()):
                raise RuntimeError(f"{story.book_id} failed")

        # The style profile is shared by every book: make it once, outside the measurement.
        with contextlib.redirect_stderr(quiet):
            dg.materialize([a for a in defs.assets if isinstance(a, dg.AssetsDefinition)
                            and {k.path[-1] for k in a.keys} & {"style_dataset", "style_lora"}],
                           instance=dg.DagsterInstance.ephemeral(), resources=dict(defs.resources),
                           partition_key="soft-meadow")

        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        watcher = threading.Thread(target=sampler, args=(BenchProvider.meter, samples, stop), daemon=True)
        watcher.start()
        wall_started = time.monotonic()
        if args.mode == "shared":
            with ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="book") as pool:
                list(pool.map(book, stories))
        else:
            for story in stories:
                book(story)
        wall = time.monotonic() - wall_started
        stop.set()
        watcher.join()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    meter = BenchProvider.meter
    jobs = len(meter.spans)
    busy = max(e for _, e in meter.spans) - min(s for s, _ in meter.spans)
    achieved = jobs / busy
    efficiency = achieved / (P / L)
    t0 = samples[0][0]
    print(f"mode={args.mode} books={args.books} pages={args.pages} P={P} L={L}s workers="
          f"{args.workers if args.mode == 'shared' else 1}")
    print(f"jobs={jobs} busy_window={busy:.1f}s wall={wall:.1f}s achieved={achieved:.2f}/s ideal={P / L:.2f}/s "
          f"wall_efficiency={jobs / wall / (P / L):.3f} (includes the last PDFs after the last job)")
    # Jobs in flight over time: mean per 2 s bucket, so a run of the script shows the shape.
    buckets: dict[int, list[int]] = {}
    for t, n in samples:
        buckets.setdefault(int((t - t0) // 2), []).append(n)
    print("in_flight per 2s: " + " ".join(f"{sum(v) / len(v):.1f}" for _, v in sorted(buckets.items())))
    if args.timeline:
        args.timeline.write_text("t_s,in_flight\n" + "".join(f"{t - t0:.3f},{n}\n" for t, n in samples))
    print(f"backfill_throughput efficiency={efficiency:.3f} max_in_flight={meter.max_in_flight} P={P}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
