"""Growth table (issue 13, item 7): what grows with active books and with a book's length, with exponents.

  health   the partition-health query of the UI's asset partition view for book_pages (books x page_slots):
           `DagsterInstance.get_status_by_partition` over every cell, the public call that reads the same
           asset status cache the UI's partition status resolves through. First call (builds the cache from
           the event log) and second call (cache up to date), at 100 and 1,000 active books x 32 slots, each
           book with 12 pages materialized, on SQLite and on PostgreSQL (a server started here as
           tests/test_postgres.py does; skipped with the reason when no server binaries are found).
  book     one book of 12 / 32 / 64 pages on the offline preview provider (a SQLite instance, as `make demo`),
           each in its own process: wall and CPU seconds of `materialize_book` and the process's peak RSS
           (ru_maxrss from wait4). A process that only imports and loads the definitions gives the fixed part.
Exponents are least-squares slopes of log(value) on log(size); load averages are printed beside each row.

    .venv/bin/python benchmarks/growth.py                 # everything (about 3 minutes on 2 cores)
    .venv/bin/python benchmarks/growth.py --only health --books 100 1000
Ends with one line: growth health_k_sqlite=<k> health_k_postgres=<k> book_wall_k=<k> book_cpu_k=<k> rss_k=<k>
"""

import argparse
import glob
import json
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SLOTS = 32
PAGES_DONE = 12


def load() -> str:
    return "%.2f %.2f %.2f" % os.getloadavg()


def slope(xs: list[float], ys: list[float]) -> float:
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pairs) < 2:
        return math.nan
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    return sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x, _ in pairs)


# --- partition health -------------------------------------------------------------------------------------

def fill(instance, books: int) -> float:
    """`books` active books x SLOTS slots, each book's first PAGES_DONE pages materialized; seconds taken."""
    import dagster as dg

    from bookbug_assets.defs.partitions import books_partitions, page_slots_partitions
    from bookbug_assets.layout import page_partition

    started = time.monotonic()
    instance.add_dynamic_partitions(page_slots_partitions.name, [f"{i:03d}" for i in range(1, SLOTS + 1)])
    ids = [f"book-{i:05d}" for i in range(books)]
    instance.add_dynamic_partitions(books_partitions.name, ids)
    for book_id in ids:
        for page in range(1, PAGES_DONE + 1):
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key="book_pages", partition=page_partition(book_id, f"{page:03d}")))
    return time.monotonic() - started


def health(instance) -> tuple[float, float, int]:
    """(first call s, second call s, materialized cells) of the UI's partition-health read for book_pages."""
    import dagster as dg

    from bookbug_assets.defs.partitions import book_pages_partitions

    keys = book_pages_partitions.get_partition_keys(dynamic_partitions_store=instance)
    times = []
    for _ in range(2):
        started = time.monotonic()
        status = instance.get_status_by_partition(dg.AssetKey("book_pages"), keys, book_pages_partitions)
        times.append(time.monotonic() - started)
    done = sum(1 for v in (status or {}).values() if v is not None and v.value == "MATERIALIZED")
    return times[0], times[1], done


def health_rows(backend: str, sizes: list[int], storage_for=None) -> list[dict]:
    """`storage_for(name)`: a storage config with a database of its own per size (None: SQLite in a temp dir)."""
    import dagster as dg

    rows = []
    for books in sizes:
        with tempfile.TemporaryDirectory(prefix="growth-health-") as tmp:
            overrides = {"storage": storage_for(f"growth_{books}")} if storage_for else None
            with dg.instance_for_test(temp_dir=tmp, overrides=overrides) as instance:
                fill_s = fill(instance, books)
                first, second, done = health(instance)
        row = {"backend": backend, "books": books, "cells": books * SLOTS, "materialized": done,
               "fill_s": fill_s, "first_s": first, "second_s": second, "load": load()}
        print(f"health {backend}: {books} books x {SLOTS} slots ({row['cells']} cells, {done} materialized): "
              f"first {first:.3f} s, second {second:.3f} s (setup {fill_s:.1f} s) load {row['load']}", flush=True)
        rows.append(row)
    return rows


def start_postgres():
    """A throwaway PostgreSQL server (as tests/test_postgres.py starts one): (storage_for(db name) or None, why
    not, stop)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(shutil.which("initdb")).resolve() if shutil.which("initdb") else None)
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        return None, "dagster-postgres is not installed (dev extra)", lambda: None
    if initdb is None:
        return None, "no PostgreSQL server binaries (initdb, pg_ctl)", lambda: None
    bindir = initdb.parent
    base = Path(tempfile.mkdtemp(prefix="growth-pg-"))
    base.chmod(0o755)
    as_user = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if not shutil.which("runuser"):
            return None, "running as root without runuser", lambda: None
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(base, "nobody")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120, cwd=base)

    data = base / "data"
    made = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    if made.returncode:
        return None, f"initdb failed: {made.stderr[-300:]}", lambda: shutil.rmtree(base, ignore_errors=True)
    run("mkdir", "-p", str(base / "sock"))
    started = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60", "-o",
                  f"-p {port} -k {base / 'sock'} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    if started.returncode:
        return None, f"pg_ctl start failed: {started.stderr[-300:]}", lambda: shutil.rmtree(base, ignore_errors=True)

    def stop() -> None:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)

    def storage_for(name: str) -> dict:
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        connection.close()
        return {"postgres": {"postgres_db": {"username": "postgres", "password": "", "hostname": "127.0.0.1",
                                             "db_name": name, "port": port, "scheme": "postgresql+psycopg2"}}}

    return storage_for, "", stop


# --- one book per process ---------------------------------------------------------------------------------

def book_child(pages: int, root: Path) -> None:
    """In the child: one `pages`-page book on the preview provider; prints its wall and CPU as JSON."""
    import dagster as dg
    import yaml

    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.stories import load_story_file

    stories = root / "stories"
    stories.mkdir(parents=True)
    defs = build_definitions(data_root=str(root / "out"), stories_dir=str(stories),
                             styles_dir=str(REPO / "data/styles"))
    result = {"pages": pages, "wall_s": 0.0, "cpu_s": 0.0}
    if pages:
        data = yaml.safe_load((REPO / "data/stories/pip-and-the-lantern.yaml").read_text())
        data["pages"] = (data["pages"] * (pages // len(data["pages"]) + 1))[:pages]
        (stories / "book.yaml").write_text(yaml.safe_dump(data))
        story = load_story_file(stories / "book.yaml", {"soft-meadow"})
        (root / "instance").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "instance")) as instance:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu, started = usage.ru_utime + usage.ru_stime, time.monotonic()
            results = materialize_book(defs, instance, story, echo=lambda *_: None, log_level="WARNING")
            usage = resource.getrusage(resource.RUSAGE_SELF)
            result.update(wall_s=time.monotonic() - started, cpu_s=usage.ru_utime + usage.ru_stime - cpu)
        if not all(r.success for r in results.values()):
            raise SystemExit(f"growth: the {pages}-page book failed")
    print("GROWTH " + json.dumps(result))


def book_rows(sizes: list[int]) -> list[dict]:
    rows = []
    env = {k: v for k, v in os.environ.items()
           if k not in ("REPLICATE_API_TOKEN", "FAL_KEY", "BOOKBUG_PROVIDER", "BOOKBUG_JUDGE")}
    env["PYTHONWARNINGS"] = "ignore"
    for pages in [0, *sizes]:
        root = Path(tempfile.mkdtemp(prefix="growth-book-"))
        try:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--book-child", str(pages),
                                     str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        line = next((x for x in out.splitlines() if x.startswith("GROWTH ")), None)
        if proc.returncode or line is None:
            raise SystemExit(f"growth: the {pages}-page child failed (exit {proc.returncode})")
        row = {**json.loads(line[7:]), "rss_mb": usage.ru_maxrss / 1024, "load": load()}
        what = "imports + definitions only" if not pages else f"{pages}-page book"
        print(f"book {what}: wall {row['wall_s']:.1f} s, CPU {row['cpu_s']:.1f} s, peak RSS {row['rss_mb']:.0f} MB "
              f"load {row['load']}", flush=True)
        rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["health", "book"])
    parser.add_argument("--books", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--pages", type=int, nargs="+", default=[12, 32, 64])
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--book-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.book_child:
        book_child(int(args.book_child[0]), Path(args.book_child[1]))
        return 0
    for variable in ("REPLICATE_API_TOKEN", "FAL_KEY", "BOOKBUG_PROVIDER", "BOOKBUG_JUDGE"):
        os.environ.pop(variable, None)
    k = {}
    if args.only in (None, "health"):
        sqlite = health_rows("sqlite", args.books)
        k["health_k_sqlite"] = slope([r["cells"] for r in sqlite], [r["first_s"] for r in sqlite])
        k["health_k_postgres"] = math.nan
        if not args.no_postgres:
            storage_for, why, stop = start_postgres()
            try:
                if storage_for is None:
                    print(f"health postgres: skipped ({why})")
                else:
                    pg = health_rows("postgres", args.books, storage_for)
                    k["health_k_postgres"] = slope([r["cells"] for r in pg], [r["first_s"] for r in pg])
            finally:
                stop()
    if args.only in (None, "book"):
        books = book_rows(args.pages)
        fixed, sized = books[0], books[1:]
        k["book_wall_k"] = slope([r["pages"] for r in sized], [r["wall_s"] for r in sized])
        k["book_cpu_k"] = slope([r["pages"] for r in sized], [r["cpu_s"] for r in sized])
        k["rss_k"] = slope([r["pages"] for r in sized], [r["rss_mb"] for r in sized])
        k["rss_over_fixed_k"] = slope([r["pages"] for r in sized],
                                      [max(r["rss_mb"] - fixed["rss_mb"], 1e-3) for r in sized])
    print("growth " + " ".join(f"{name}={value:.2f}" for name, value in k.items()) + f" load={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
