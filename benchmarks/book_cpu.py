"""CPU seconds per 12-page book, split by stage, with the floor measured in the same run (issue 13, item 1).

CPU time (user + sys of this process, all threads) rather than wall time: it says what a book costs the
orchestrator's machine and moves far less with other work on a shared machine than a stopwatch does.

The example book renders on the offline preview provider (no network, zero latency) on a SQLite instance, as
`make demo` does, then again unchanged twice: as `bookbug book` reruns it (`if_changed`: nothing is run when the
book's inputs hash to what its last runs recorded, defs/book_inputs.py) and forced (`--force`, the sensor's and
`regenerate`'s way: its references, pages and finish runs, every image a cache hit). Stages are measured by wrapping the functions that do each job and
reading the calling thread's CPU clock around them (pages run in threads, so the process clock alone cannot
split them):

  requests   the provider's submit and collect (here: the preview renderer)
  quality    the gates' image assessments and the checks' re-assessments
  pdf        laying out and encoding the reading PDF
  preflight  reading the PDFs back
  ledger     ledger compaction and the project table
  dagster    the rest: Dagster's run machinery, event writes, records, storage, the story

Floor, measured first in the same process:
  run start  one materialization of an asset that does nothing, on a fresh SQLite instance (imports counted
             apart: they are paid once per process)
  encoding   the book's 13 images resized and JPEG-encoded once at print size (pdf._render_image)

    .venv/bin/python benchmarks/book_cpu.py
Ends with: book_cpu first=<s> rerun=<s> rerun/first=<r> forced=<s> forced/first=<r> besides_pdf=<s>
pdf/encoding=<r> load=<1-min load>
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
STAGES = ("requests", "quality", "pdf", "preflight", "ledger")


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class StageClock:
    """Per-stage CPU seconds of the wrapped calls; a call nested in another stage's call counts once, for the
    outer one."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._inside = threading.local()

    def wrap(self, stage: str, fn, cpu=time.thread_time):
        """`cpu`: the calling thread's clock, or process_cpu for a call that fans out to its own thread pool
        (the PDF encodes pages in threads) and runs alone in its step."""
        clock = self

        def timed(*args, **kwargs):
            if getattr(clock._inside, "stage", None):
                return fn(*args, **kwargs)
            clock._inside.stage = stage
            start = cpu()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = cpu() - start
                clock._inside.stage = None
                with clock._lock:
                    clock.seconds[stage] += spent

        timed.__wrapped__ = fn
        return timed

    def reset(self) -> None:
        self.seconds.clear()


def patch_everywhere(owner, name: str, wrapper) -> None:
    """Replace owner.name, and every module's `from ... import name` copy of it, with the wrapper."""
    original = getattr(owner, name)
    setattr(owner, name, wrapper)
    for module in list(sys.modules.values()):
        if module is not None and module is not owner and getattr(module, "__name__", "").startswith("bookbug"):
            if getattr(module, name, None) is original:
                setattr(module, name, wrapper)


def instrument(clock: StageClock) -> None:
    from bookbug_assets import ledger, ledger_table, pdf, preflight
    from bookbug_assets.providers.preview import PreviewProvider
    from bookbug_assets.quality import verdicts

    for method in ("submit", "collect"):
        if hasattr(PreviewProvider, method):
            setattr(PreviewProvider, method, clock.wrap("requests", getattr(PreviewProvider, method)))
    for name in ("assess_image", "recheck_reference"):
        patch_everywhere(verdicts, name, clock.wrap("quality", getattr(verdicts, name)))
    patch_everywhere(pdf, "build_book_pdf", clock.wrap("pdf", pdf.build_book_pdf, process_cpu))
    patch_everywhere(preflight, "preflight_pdf", clock.wrap("preflight", preflight.preflight_pdf, process_cpu))
    for method in ("compact", "compact_all"):
        setattr(ledger.Ledger, method, clock.wrap("ledger", getattr(ledger.Ledger, method)))
    patch_everywhere(ledger_table, "refresh_table", clock.wrap("ledger", ledger_table.refresh_table))


def run_start_floor(root: Path) -> float:
    """CPU of one Dagster run that does nothing, on its own SQLite instance (the second of two: the first pays
    for lazily imported machinery)."""
    import dagster as dg

    @dg.asset
    def nothing() -> None:
        return None

    seconds = []
    for i in range(2):
        (root / f"floor-{i}").mkdir()
        with dg.instance_for_test(temp_dir=str(root / f"floor-{i}")) as instance:
            start = process_cpu()
            dg.materialize([nothing], instance=instance)
            seconds.append(process_cpu() - start)
    return seconds[-1]


def encoding_floor(store, story) -> float:
    """CPU to resize and JPEG-encode the book's images once at print size: what any PDF of it must spend."""
    from bookbug_assets import pdf
    from bookbug_assets.layout import load_page_records, load_record

    geom = pdf._Geom.of(pdf.PdfSpec.of(story.format))
    images = [load_record(store, story.book_id, "hero_page")] + list(load_page_records(store, story).values())
    start = process_cpu()  # one thread, as the PDF's pool of up to 4 would spend it in all
    for record in images:
        pdf._render_image(store.local_path(record.image_key), geom, [])
    return process_cpu() - start


def one_book(defs, instance, story, clock: StageClock, if_changed: bool) -> dict[str, float]:
    from bookbug_assets.defs.book_runs import materialize_book

    clock.reset()
    start = process_cpu()
    results = materialize_book(defs, instance, story, echo=lambda *_: None, log_level="WARNING",
                               if_changed=if_changed)
    total = process_cpu() - start
    failed = [label for label, r in results.items() if not r.success]
    if failed:
        raise SystemExit(f"book_cpu: the book run failed at {', '.join(failed)}")
    stages = {s: clock.seconds.get(s, 0.0) for s in STAGES}
    stages["dagster"] = max(0.0, total - sum(stages.values()))
    stages["total"] = total
    stages["runs"] = len(results)
    return stages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    for variable in ("REPLICATE_API_TOKEN", "FAL_KEY", "BOOKBUG_PROVIDER", "BOOKBUG_JUDGE"):
        os.environ.pop(variable, None)
    root = Path(tempfile.mkdtemp(prefix="book-cpu-"))
    started = process_cpu()
    import dagster as dg

    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.stories import load_story_file

    imports = process_cpu() - started
    try:
        stories = root / "stories"
        stories.mkdir()
        shutil.copy(REPO / "data/stories/pip-and-the-lantern.yaml", stories)
        defs = build_definitions(data_root=str(root / "out"), stories_dir=str(stories),
                                 styles_dir=str(REPO / "data/styles"))
        story = load_story_file(stories / "pip-and-the-lantern.yaml", {"soft-meadow"})
        clock = StageClock()
        instrument(clock)
        run_floor = run_start_floor(root)
        (root / "instance").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "instance")) as instance:
            first = one_book(defs, instance, story, clock, if_changed=True)
            rerun = one_book(defs, instance, story, clock, if_changed=True)
            forced = one_book(defs, instance, story, clock, if_changed=False)
        encoding = encoding_floor(defs.resources["storage"].store(), story)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    # materialize_book's runs: style (first run only: unchanged later), references, pages, finish (PDF, ledger)
    runs, forced_runs = int(first["runs"]), int(forced["runs"])
    print(f"floor: imports {imports:.2f} s (once per process); one empty Dagster run {run_floor:.3f} s "
          f"(x{runs} runs = {run_floor * runs:.2f} s first, x{forced_runs} = {run_floor * forced_runs:.2f} s forced "
          f"rerun); encoding the book's 13 images once {encoding:.2f} s")
    print(f"{'stage':<10} {'first':>8} {'rerun':>8} {'forced':>8}   (rerun: {int(rerun['runs'])} runs)")
    for stage in (*STAGES, "dagster", "total"):
        print(f"{stage:<10} {first[stage]:>8.2f} {rerun[stage]:>8.2f} {forced[stage]:>8.2f}")
    besides_pdf = first["total"] - first["pdf"]
    pdf_ratio = first["pdf"] / encoding if encoding else float("nan")
    load = os.getloadavg()[0]
    print(f"book_cpu first={first['total']:.2f} rerun={rerun['total']:.2f} "
          f"rerun/first={rerun['total'] / first['total']:.3f} forced={forced['total']:.2f} "
          f"forced/first={forced['total'] / first['total']:.3f} besides_pdf={besides_pdf:.2f} "
          f"pdf/encoding={pdf_ratio:.2f} load={load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
