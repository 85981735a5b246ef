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
Ideal throughput is P/L jobs per second. Two efficiencies:
  busy   jobs over the provider's busy window (first job start to last job end) / (P/L)
  wall   jobs x L / P over the whole wall time, which includes everything a user waits for after the last
         job: the last books' PDFs and ledger steps (the style run is made once before the clock starts)
Plain baseline, measured in the same run after ours: the same books in the same shape (sprite sheet, then
hero page, then the pages, at most max_concurrency=P at once per book, W books at once) as plain threads
taking the same P-slot semaphore, each job the same L seconds plus the same preview render of the same
request ours made (replayed). `ours/plain` is our wall over the plain wall.

The bench images are the preview renderer's proofs, so the provider is registered as the `preview` family
and its images are marked previews: the gates treat them as they treat `make demo`'s, and no job is a redraw
of a gate failure. `--gated` registers it as a cloud family instead (the gates then judge the proofs as
artwork and redraw some); redraws are counted apart either way (ledger rows that change a first attempt).

Ends with one line:
  backfill_throughput efficiency=<busy> wall_efficiency=<wall> ours/plain=<r> redraws=<n> max_in_flight=<n>
  P=<p> load=<1-min load average>

    .venv/bin/python benchmarks/backfill_throughput.py --pool 4 --latency 0.5
    .venv/bin/python benchmarks/backfill_throughput.py --mode serial
"""

import argparse
import contextlib
import math
import os
import resource
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

FAMILY = "preview"  # --gated: "benchfake"


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
    requests: list[ImageRequest] = []  # every request, in submit order: the plain baseline replays them

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=14, price_usd=0.01, min_size=64, max_size=4096)

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        if self.slots is not None:
            self.slots.acquire()  # wait for a slot before the job exists at the provider
        self.requests.append(request)
        job_id = f"bench-{request.cache_key()[:20]}-{len(self.requests)}"
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


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def instrument_threads(clock) -> None:
    """book_cpu.py's stages, every one on the calling thread's clock: with 20 books at once the process clock
    would count the other books' work. The PDF's page encodes run on its own threads, so they are wrapped too."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from book_cpu import patch_everywhere

    from bookbug_assets import ledger, ledger_table, pdf, preflight
    from bookbug_assets.quality import verdicts

    for name in ("assess_image", "recheck_reference"):
        patch_everywhere(verdicts, name, clock.wrap("quality", getattr(verdicts, name)))
    patch_everywhere(pdf, "build_book_pdf", clock.wrap("pdf", pdf.build_book_pdf))
    pdf._render_image = clock.wrap("pdf", pdf._render_image)
    patch_everywhere(preflight, "preflight_pdf", clock.wrap("preflight", preflight.preflight_pdf))
    for method in ("compact", "compact_all"):
        setattr(ledger.Ledger, method, clock.wrap("ledger", getattr(ledger.Ledger, method)))
    patch_everywhere(ledger_table, "refresh_table", clock.wrap("ledger", ledger_table.refresh_table))


def sampler(meter: Meter, samples: list[tuple[float, int]], stop: threading.Event, every_s: float = 0.05) -> None:
    while not stop.is_set():
        samples.append((time.monotonic(), meter.in_flight))
        stop.wait(every_s)


def plain_backfill(requests: list[ImageRequest], books: int, pages: int, P: int, L: float, workers: int,
                   meter: Meter) -> float:
    """The same jobs in the same per-book shape, with nothing but threads and the P-slot semaphore: the wall
    time any orchestrator of this backfill has to beat. Book i gets the i-th sprite sheet and hero request
    ours made and its pages, so every render is one ours drew."""
    from bookbug_assets.providers.preview import render_preview

    slots = threading.BoundedSemaphore(P)
    by_kind: dict[str, list[ImageRequest]] = {}
    for request in requests:
        by_kind.setdefault(str(request.kind), []).append(request)
    sprites, heroes = by_kind.get("sprite_sheet", []), by_kind.get("hero_page", [])
    page_requests = by_kind.get("page", [])

    def job(request: ImageRequest) -> bytes:
        with slots:
            started = meter.enter()
            time.sleep(L)
            image = render_preview(request)  # ours renders after its L, in wait(): so does this
            meter.leave(started)
        return image

    def book(i: int) -> None:
        job(sprites[i % len(sprites)])
        job(heroes[i % len(heroes)])
        mine = page_requests[i * pages:(i + 1) * pages] or page_requests[:pages]
        with ThreadPoolExecutor(max_workers=P, thread_name_prefix="plain-page") as pool:
            list(pool.map(job, mine))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="plain-book") as pool:
        list(pool.map(book, range(books)))
    return time.monotonic() - started


def redraws_in(store) -> tuple[int, int]:
    """(paid jobs, redraws) from the ledger: a redraw is a row that changed an image's first attempt."""
    from bookbug_assets.ledger import Ledger

    frame = Ledger(store).frame()
    paid = frame.filter(~frame["cache_hit"] & (frame["status"] == "ok"))
    return paid.height, paid.filter(paid["change"] != "").height


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
    parser.add_argument("--gated", action="store_true",
                        help="register the bench provider as a cloud family: the gates judge its proofs as artwork")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain baseline")
    parser.add_argument("--stages", action="store_true",
                        help="split our CPU seconds by stage (book_cpu.py's clocks: quality, pdf, ledger, ...)")
    args = parser.parse_args(argv)
    P, L = args.pool, args.latency
    family = "benchfake" if args.gated else FAMILY
    load_before = os.getloadavg()

    registry.FAMILIES[family] = f"{__name__}:BenchProvider"  # "__main__" when run as a script
    registry.DEFAULT_MODELS[family] = "bench-v1"
    BenchProvider.latency_s = L
    BenchProvider.slots = threading.BoundedSemaphore(P) if args.mode == "shared" else None

    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.defs.partitions import styles_partitions
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
        providers = ImageProviders(default=f"{family}:bench-v1", max_concurrency=P)
        defs = dg.Definitions(assets=base.assets, executor=base.executor,
                              resources={**base.resources, "image_providers": providers})
        stories = [load_story_file(p, {"soft-meadow"}) for p in paths]
        quiet = open(os.devnull, "w")  # noqa: SIM115 - dagster's per-event console lines cost CPU here

        def book(story, include_style=False):
            with contextlib.redirect_stderr(quiet):
                results = materialize_book(defs, dg.DagsterInstance.ephemeral(), story, echo=lambda *_: None,
                                           include_style=include_style, log_level="WARNING")
            if not all(r.success for r in results.values()):
                raise RuntimeError(f"{story.book_id} failed")

        # The style profile is shared by every book: make it once, outside the measurement.
        style_instance = dg.DagsterInstance.ephemeral()
        style_instance.add_dynamic_partitions(styles_partitions.name, ["soft-meadow"])
        with contextlib.redirect_stderr(quiet):
            dg.materialize([a for a in defs.assets if isinstance(a, dg.AssetsDefinition)
                            and {k.path[-1] for k in a.keys} & {"style_dataset", "style_lora"}],
                           instance=style_instance, resources=dict(defs.resources), partition_key="soft-meadow")
        BenchProvider.requests.clear()
        BenchProvider.meter = Meter()

        clock = None
        if args.stages:  # after the style run, so only the books' work is counted
            sys.path.insert(0, str(REPO / "benchmarks"))
            from book_cpu import StageClock

            clock = StageClock()
            instrument_threads(clock)
            BenchProvider.wait = clock.wrap("requests", BenchProvider.wait)  # sleeps cost no CPU
        samples: list[tuple[float, int]] = []
        stop = threading.Event()
        watcher = threading.Thread(target=sampler, args=(BenchProvider.meter, samples, stop), daemon=True)
        watcher.start()
        wall_started, cpu_started = time.monotonic(), process_cpu()
        if args.mode == "shared":
            with ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="book") as pool:
                list(pool.map(book, stories))
        else:
            for story in stories:
                book(story)
        wall, cpu = time.monotonic() - wall_started, process_cpu() - cpu_started
        stop.set()
        watcher.join()
        paid, redraws = redraws_in(defs.resources["storage"].store())
    finally:
        shutil.rmtree(root, ignore_errors=True)

    meter = BenchProvider.meter
    plain_wall, plain_cpu, plain_meter = math.nan, math.nan, Meter()
    if not args.no_plain:
        plain_started = process_cpu()
        plain_wall = plain_backfill(BenchProvider.requests, args.books, args.pages, P, L,
                                    args.workers if args.mode == "shared" else 1, plain_meter)
        plain_cpu = process_cpu() - plain_started
    load_after = os.getloadavg()
    jobs = len(meter.spans)
    busy = max(e for _, e in meter.spans) - min(s for s, _ in meter.spans)
    achieved = jobs / busy
    efficiency = achieved / (P / L)
    t0 = samples[0][0]
    print(f"mode={args.mode} books={args.books} pages={args.pages} P={P} L={L}s workers="
          f"{args.workers if args.mode == 'shared' else 1}")
    expected = args.books * (args.pages + 2)
    wall_efficiency = jobs * L / P / wall
    print(f"jobs={jobs} (expected {expected}: sprite sheet, hero page and {args.pages} pages per book; paid jobs in "
          f"the ledger {paid}, of which redraws {redraws}) busy_window={busy:.1f}s wall={wall:.1f}s "
          f"ideal={jobs * L / P:.1f}s achieved={achieved:.2f}/s ideal_rate={P / L:.2f}/s")
    print(f"busy_efficiency={efficiency:.3f} wall_efficiency={wall_efficiency:.3f} "
          f"(wall includes the last books' PDFs and ledger steps after the last job)")
    cores = len(os.sched_getaffinity(0))
    if clock is not None:
        split = {stage: round(seconds, 1) for stage, seconds in clock.seconds.items()}
        print(f"cpu by stage (CPU-s, all books): {split}, dagster and the rest "
              f"{cpu - sum(clock.seconds.values()):.1f}")
    print(f"cpu: ours {cpu:.1f} CPU-s ({cpu / args.books:.2f} per book; on {cores} cores no schedule beats "
          f"{cpu / cores:.1f}s) plain {plain_cpu:.1f} CPU-s")
    if not args.no_plain:
        print(f"plain: wall={plain_wall:.1f}s jobs={len(plain_meter.spans)} max_in_flight={plain_meter.max_in_flight} "
              f"wall_efficiency={len(plain_meter.spans) * L / P / plain_wall:.3f}; ours/plain={wall / plain_wall:.3f}")
    # Jobs in flight over time: mean per 2 s bucket, so a run of the script shows the shape.
    buckets: dict[int, list[int]] = {}
    for t, n in samples:
        buckets.setdefault(int((t - t0) // 2), []).append(n)
    print("in_flight per 2s: " + " ".join(f"{sum(v) / len(v):.1f}" for _, v in sorted(buckets.items())))
    if args.timeline:
        args.timeline.write_text("t_s,in_flight\n" + "".join(f"{t - t0:.3f},{n}\n" for t, n in samples))
    print(f"backfill_throughput efficiency={efficiency:.3f} wall_efficiency={wall_efficiency:.3f} "
          f"ours/plain={wall / plain_wall:.3f} redraws={redraws} max_in_flight={meter.max_in_flight} P={P} "
          f"load={load_before[0]:.2f}->{load_after[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
