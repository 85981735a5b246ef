"""The story sensor at 10 / 100 / 1,000 files (issue 13 items 6 and 7), the previous sensor measured in the same run.

For each size, a fresh folder of N valid stories (distinct book ids) is drained tick after tick, as the daemon does
it (each tick's new partitions are added before the next tick), first by the previous sensor and then by the
current one, each on its own folder, store and in-memory instance:

- previous: the per-file state inline in the Dagster cursor, one backfill request per story;
- current:  the state in the artifact store with a pointer cursor (bookbug_assets.sensor_state), one backfill
            request per tick for every story the tick took.

Per size and sensor: ticks to drain, backfills requested, the mean and slowest drain tick, the tick once nothing
changes (what runs every 15 s for the rest of the day), the cursor's bytes, and the bytes Dagster keeps in a tick
row (the cursor plus the serialized run requests it reserves, dagster._daemon.sensor); the ratio current/previous.
Both sensors share the scan (bookbug_assets.intake.scan_folder_tick) and its budget of 20 files or about 3 s a
tick; `--max-files 1000` lifts the budget to show one tick over every file. Prints the load average.

    .venv/bin/python benchmarks/sensor_growth.py                      # 10, 100, 1000 files
    .venv/bin/python benchmarks/sensor_growth.py --sizes 1000 --max-files 1000
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
import yaml
from dagster._serdes import serialize_value

from bookbug_assets.definitions import build_definitions
from bookbug_assets.defs.intake.sensors import BOOK_SELECTION, book_run_request, story_folder_sensor
from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
from bookbug_assets.defs.resources import BookbugStorage
from bookbug_assets.intake import FolderCursor, scan_folder_tick
from bookbug_assets.layout import style_profile_key
from bookbug_assets.storage import LocalArtifactStore
from bookbug_assets.story_intake import STORY_FILE_TAG, STORY_SHA_TAG, TickBudget
from bookbug_assets.styles import style_names

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "data" / "stories" / "pip-and-the-lantern.yaml"
TICKS_PER_DAY = 24 * 3600 // 15  # minimum_interval_seconds=15


@dg.sensor(name="story_folder_sensor", asset_selection=BOOK_SELECTION)
def previous_story_sensor(context: dg.SensorEvaluationContext, storage: BookbugStorage) -> dg.SensorResult:
    """The sensor before issue 13 item 6: inline cursor, one backfill per story (its tail, as it was)."""
    folder = storage.stories_path
    scan = scan_folder_tick(folder, set(style_names(storage.styles_path)), FolderCursor.parse(context.cursor,
                            context.log), context.log, store=storage.store(), budget=TickBudget())
    existing_books = set(context.instance.get_dynamic_partitions(books_partitions.name))
    existing_slots = set(context.instance.get_dynamic_partitions(page_slots_partitions.name))
    stories = [a.source.story for a in scan.accepted]
    new_books = sorted({s.book_id for s in stories} - existing_books)
    new_slots = sorted({k for s in stories for k in s.page_keys} - existing_slots)
    graph = context.repository_def.asset_graph
    run_requests = []
    for item in scan.accepted:
        if item.built:
            continue
        request = book_run_request(graph, item.source.story, "new story")
        run_requests.append(request.with_replaced_attrs(tags={**request.tags, STORY_FILE_TAG: item.source.name,
                                                              STORY_SHA_TAG: item.source.sha256}))
    partition_requests = ([books_partitions.build_add_request(new_books)] if new_books else []) + \
        ([page_slots_partitions.build_add_request(new_slots)] if new_slots else [])
    if not run_requests and not partition_requests:
        return dg.SensorResult(skip_reason="no new or changed stories", cursor=scan.cursor.dumps())
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests,
                           cursor=scan.cursor.dumps())


def make_folder(root: Path, n: int) -> dg.Definitions:
    stories, styles, outputs = root / "stories", root / "styles", root / "outputs"
    stories.mkdir(parents=True)
    shutil.copytree(REPO / "data" / "styles" / "soft-meadow", styles / "soft-meadow")
    base = yaml.safe_load(EXAMPLE.read_text())
    stamp = time.time_ns() - 3600 * 10**9  # settled an hour ago, oldest first in name order
    for i in range(n):
        path = stories / f"story-{i:04d}.yaml"
        path.write_text(yaml.safe_dump({**base, "book_id": f"story-{i:04d}"}))
        os.utime(path, ns=(stamp + i * 10**6, stamp + i * 10**6))
    # The style is built (its style_lora profile is in the store), so no book waits for it.
    LocalArtifactStore(outputs).write_json(style_profile_key("soft-meadow"), {"style": "soft-meadow", "lora": None})
    return build_definitions(data_root=str(outputs), stories_dir=str(stories), styles_dir=str(styles))


def one_tick(sensor, defs, instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"storage": defs.resources["storage"]})
    started = time.perf_counter()
    data = sensor.evaluate_tick(context)
    seconds = time.perf_counter() - started
    # What the daemon keeps in the tick row: the cursor and the run requests it reserves before submitting them.
    stored = len(data.cursor or "") + sum(len(serialize_value(r)) for r in data.run_requests)
    for request in data.dynamic_partitions_requests:  # the daemon adds them before the next tick
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return data, seconds, stored


def drain(sensor, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        defs, instance = make_folder(Path(tmp), n), dg.DagsterInstance.ephemeral()
        cursor, ticks, backfills, books, times, stored = None, 0, 0, 0, [], []
        while True:
            data, seconds, size = one_tick(sensor, defs, instance, cursor)
            taken = sum(len({p.partition_key for p in r.asset_graph_subset.iterate_asset_partitions()
                             if p.asset_key.to_user_string() == "story"}) for r in data.run_requests)
            cursor = data.cursor
            if not taken:
                break
            ticks, backfills, books = ticks + 1, backfills + len(data.run_requests), books + taken
            times.append(seconds)
            stored.append(size)
        idle = [one_tick(sensor, defs, instance, cursor) for _ in range(3)]
        assert books == n, (books, n)
        return {"ticks": ticks, "backfills": backfills, "mean_s": statistics.mean(times), "max_s": max(times),
                "idle_s": statistics.median(t for _, t, _ in idle), "cursor_b": len(cursor or ""),
                "max_tick_b": max(stored), "idle_tick_b": idle[-1][2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--max-files", type=int, default=None, help="files a tick may take (default: the sensor's)")
    args = parser.parse_args()
    if args.max_files:
        TickBudget.__init__.__defaults__ = (args.max_files, 600.0, time.monotonic)
    print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"budget {TickBudget().max_files} files / {TickBudget().seconds:.0f} s a tick")
    fields = ["ticks", "backfills", "mean_s", "max_s", "idle_s", "cursor_b", "max_tick_b", "idle_tick_b"]
    print(f"{'files':>6} {'sensor':>9} " + " ".join(f"{f:>11}" for f in fields) + "   load")
    for n in args.sizes:
        rows = {"previous": drain(previous_story_sensor, n), "current": drain(story_folder_sensor, n)}
        for name, row in rows.items():
            print(f"{n:>6} {name:>9} " + " ".join(f"{row[f]:>11.3f}" if f.endswith("_s") else f"{row[f]:>11}"
                                                 for f in fields) + f"   {os.getloadavg()[0]:.2f}")
        ratio = {f: rows["current"][f] / rows["previous"][f] if rows["previous"][f] else float("nan") for f in fields}
        print(f"{n:>6} {'cur/prev':>9} " + " ".join(f"{ratio[f]:>11.3f}" for f in fields))
        idle_day = {k: v["idle_tick_b"] * TICKS_PER_DAY / 1e6 for k, v in rows.items()}
        print(f"{'':>6} idle tick rows a day at one tick per 15 s: previous {idle_day['previous']:.1f} MB, "
              f"current {idle_day['current']:.2f} MB")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
