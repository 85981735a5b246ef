"""Provider limits across run workers: several run processes, one Dagster instance, one Replicate fake.

In production every run is its own process (or container), so nothing in one process can count another's
provider jobs. What bounds them is Dagster's pools (https://docs.dagster.io/guides/operate/managing-concurrency/
concurrency-pools): the generation steps (sprite sheet, hero page, book_pages) run in the provider's pool, a
step holds one of its slots while it runs (granularity op), and a pages step fans out up to
BOOKBUG_MAX_CONCURRENCY (C) jobs. So across all runs at most P = pool limit K x C predictions are in flight.

This script checks that bound and what it costs, for each K x C given:
  * a temporary DAGSTER_HOME (SQLite, `concurrency.pools.default_limit: K`, granularity op) shared by all;
  * one FakeReplicate in this process (latency L per prediction), which every worker reaches over HTTP;
  * W worker processes started at once, each rendering its B books through `materialize_book` (the CLI's
    book runs: story, references, pages, PDF, ledger) against that instance; the style is made once first.
From the fake's predictions (each in flight from its create until its L seconds are up) it reports the most
in flight at once against P, and the efficiency: jobs x L / P over the provider's busy window (first create
to last finish) and over the wall time from the workers' start (which includes their process start).

    .venv/bin/python benchmarks/provider_limit.py                       # K x C = 1x4, 2x2, 4x1; W=4, B=2, L=1
    .venv/bin/python benchmarks/provider_limit.py --configs 2x2 --workers 2 --books 3 --latency 2
Ends with one line per configuration:
  provider_limit K=<k> C=<c> P=<p> max_in_flight=<n> efficiency=<busy> wall_efficiency=<w> load=<1-min>
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOKEN = "r8_benchmark_token"
MODEL = "black-forest-labs/flux-kontext-pro"
STYLE = "soft-meadow"
# The fake draws random shapes, not the book's characters: gate only on artifacts, so no page is redrawn.
THRESHOLDS = {"max_style_distance": 1.0, "min_character_similarity": 0.0}


def worker_env(home: Path, root: Path, fake_url: str, concurrency: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FAL_KEY", "BOOKBUG_JUDGE")}
    env.update({"DAGSTER_HOME": str(home), "REPLICATE_API_TOKEN": TOKEN, "BOOKBUG_PROVIDER": f"replicate:{MODEL}",
                "BOOKBUG_REPLICATE_BASE_URL": fake_url, "BOOKBUG_MAX_CONCURRENCY": str(concurrency),
                "BOOKBUG_POLL_INTERVAL_S": "0.25", "BOOKBUG_DATA_ROOT": str(root / "out"),
                "BOOKBUG_STORIES_DIR": str(root / "stories"), "BOOKBUG_STYLES_DIR": str(root / "styles"),
                "PYTHONWARNINGS": "ignore"})
    return env


def write_stories(folder: Path, count: int) -> list[Path]:
    import yaml

    base = yaml.safe_load((REPO / "data/stories/pip-and-the-lantern.yaml").read_text())
    paths = []
    for i in range(count):
        path = folder / f"limit-{i:02d}.yaml"
        path.write_text(yaml.safe_dump({**base, "book_id": f"limit-{i:02d}", "seed": 500 + i}))
        paths.append(path)
    return paths


def worker(stories: list[str], style_only: bool) -> int:
    """One run worker: this process's books, one after another, on the instance in DAGSTER_HOME."""
    import dagster as dg

    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.defs.partitions import styles_partitions
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.stories import load_story_file

    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    if style_only:
        instance.add_dynamic_partitions(styles_partitions.name, [STYLE])
        style = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)
                 and {k.path[-1] for k in a.keys} & {"style_dataset", "style_lora"}]
        return 0 if dg.materialize(style, instance=instance, resources=dict(defs.resources),
                                   partition_key=STYLE).success else 1
    for path in stories:
        story = load_story_file(Path(path), {STYLE})
        results = materialize_book(defs, instance, story, echo=lambda *_: None, include_style=False,
                                   log_level="WARNING", thresholds=THRESHOLDS)
        if not all(r.success for r in results.values()):
            print(f"provider_limit worker: {story.book_id} failed", file=sys.stderr)
            return 1
    return 0


def in_flight(spans: list[tuple[float, float]]) -> int:
    """The most spans open at once (a span ending at t is closed before one starting at t opens)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def run_config(pool: int, concurrency: int, workers: int, books: int, latency: float) -> dict:
    from tests.fakes.replicate_server import FakeReplicate

    root = Path(tempfile.mkdtemp(prefix="provider-limit-"))
    home = root / "dagster_home"
    home.mkdir()
    # The pool's limit through the instance's own config (`dagster instance concurrency set replicate K` is the
    # same for one pool); telemetry off; granularity op: a step holds a slot while it runs.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n"
        f"    default_limit: {pool}\n    granularity: op\n")
    (root / "stories").mkdir()
    shutil.copytree(REPO / "data" / "styles" / STYLE, root / "styles" / STYLE)
    paths = write_stories(root / "stories", workers * books)
    script = str(Path(__file__).resolve())
    try:
        with FakeReplicate(api_token=TOKEN, latency_s=latency, output_mode="data", output_scale=1.0) as fake:
            env = worker_env(home, root, fake.url, concurrency)
            subprocess.run([sys.executable, script, "--worker", "--style-only"], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = len(fake.created_predictions)
            started = time.monotonic()
            procs = [subprocess.Popen([sys.executable, script, "--worker",
                                       *map(str, paths[i * books:(i + 1) * books])], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                     for i in range(workers)]
            errors = [p.communicate()[1] for p in procs]
            wall = time.monotonic() - started
            failed = [e for p, e in zip(procs, errors) if p.returncode]
            if failed:
                raise SystemExit("provider_limit: a worker failed:\n" + failed[0][-3000:])
            with fake.lock:
                jobs = [j for j in fake.jobs.values() if j.kind == "prediction"][before:]
                spans = [(j.created, j.created + j.latency) for j in jobs]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    P = pool * concurrency
    busy = max(e for _, e in spans) - min(s for s, _ in spans)
    ideal = len(spans) * latency / P
    return {"K": pool, "C": concurrency, "P": P, "W": workers, "B": books, "L": latency, "jobs": len(spans),
            "expected": workers * books * 14, "max_in_flight": in_flight(spans), "busy": busy, "wall": wall,
            "ideal": ideal, "efficiency": ideal / busy, "wall_efficiency": ideal / wall,
            "ramp": min(s for s, _ in spans) - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["1x4", "2x2", "4x1"],
                        help="pool limit K x page concurrency C, e.g. 2x2")
    parser.add_argument("--workers", type=int, default=4, help="W: run worker processes at once")
    parser.add_argument("--books", type=int, default=2, help="B: books per worker, one after another")
    parser.add_argument("--latency", type=float, default=1.0, help="L: seconds per prediction")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--style-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("stories", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.stories, args.style_only)
    for config in args.configs:
        pool, concurrency = (int(x) for x in config.split("x"))
        load = os.getloadavg()
        r = run_config(pool, concurrency, args.workers, args.books, args.latency)
        after = os.getloadavg()
        print(f"K={r['K']} C={r['C']} W={r['W']} B={r['B']} L={r['L']:g}s: jobs={r['jobs']} (expected "
              f"{r['expected']}) busy_window={r['busy']:.1f}s wall={r['wall']:.1f}s ideal={r['ideal']:.1f}s "
              f"first create {r['ramp']:.1f}s after the workers started")
        print(f"provider_limit K={r['K']} C={r['C']} P={r['P']} max_in_flight={r['max_in_flight']} "
              f"efficiency={r['efficiency']:.3f} wall_efficiency={r['wall_efficiency']:.3f} "
              f"load={load[0]:.2f}->{after[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
