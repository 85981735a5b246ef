"""The live path: `dagster dev`, a story dropped in the folder, the sensor's backfill, a finished book.

Slow (the sensor and the backfill daemon tick every 15-30 s), so it is marked slow; it is the only
test that shows the daemon accepts what the sensor returns and runs exactly the book's pages.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["data"]


@contextlib.contextmanager
def dagster_dev(workspace):
    """`dagster dev` on the workspace's folders; yields its port once the webserver answers."""
    home = workspace["root"] / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "BOOKBUG_DATA_ROOT": str(workspace["outputs"]),
           "BOOKBUG_STORIES_DIR": str(workspace["stories"]), "BOOKBUG_STYLES_DIR": str(workspace["styles"]),
           "PYTHONWARNINGS": "ignore"}
    env.pop("BOOKBUG_PROVIDER", None)
    log = (workspace["root"] / "dev.log").open("w")
    # Its own session: `dagster dev` ignores signals from a non-interactive parent otherwise.
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-m", "bookbug_assets.definitions",
                             "-h", "127.0.0.1", "-p", str(port)], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(1)
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


RUNS = "{ runsOrError { ... on Runs { results { status startTime endTime tags { key value } } } } }"


def _wait_for_pdf_and_runs(workspace, port, book_id: str) -> list[dict]:
    """Wait for the book's PDF, then for every run to end; every run, with its tags as a dict."""
    pdf = workspace["outputs"] / "books" / book_id / f"{book_id}.pdf"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not pdf.exists():
        time.sleep(3)
    assert pdf.exists(), (workspace["root"] / "dev.log").read_text()[-3000:]
    # The PDF lands before the backfill's last run (the ledger) has finished: wait for every run to end.
    finished = {"SUCCESS", "FAILURE", "CANCELED"}
    deadline = time.monotonic() + 90
    while True:
        results = _graphql(port, RUNS)["runsOrError"]["results"]
        if all(r["status"] in finished for r in results) or time.monotonic() > deadline:
            break
        time.sleep(2)
    failed = [{t["key"]: t["value"] for t in r["tags"]} | {"status": r["status"]} for r in results
              if r["status"] != "SUCCESS"]
    assert not failed, (failed, (workspace["root"] / "dev.log").read_text()[-4000:])
    return [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in results]


def test_dropped_story_becomes_a_book_through_the_daemon(workspace):
    with dagster_dev(workspace) as port:
        shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
        results = _wait_for_pdf_and_runs(workspace, port, "pip-and-the-lantern")
        ranges = [r["tags"] for r in results]
        page_runs = [t for t in ranges if t.get("dagster/asset_partition_range_start", "").endswith("|001")]
        assert len(page_runs) == 1, "a book's pages should be one run"
        assert page_runs[0]["dagster/asset_partition_range_end"] == "pip-and-the-lantern|012"
        assert len(results) <= 6, f"{len(results)} runs for one book (and its style)"


def test_a_new_style_and_a_story_in_it_become_a_book_style_first(workspace):
    """Issue 16: a user drops a style folder and a story in that style while the UI runs; without a reload the
    style sensor builds the style, the story sensor holds the book until it is built, then the book is made."""
    with dagster_dev(workspace) as port:
        shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "my-style")
        story = yaml.safe_load(EXAMPLE.read_text())
        story.update(book_id="my-first-book", style="my-style", pages=story["pages"][:4])
        (workspace["stories"] / "my-first-book.yaml").write_text(yaml.safe_dump(story))
        results = _wait_for_pdf_and_runs(workspace, port, "my-first-book")
        backfills = _graphql(port, "{ partitionBackfillsOrError { ... on PartitionBackfills { results { "
                                   "timestamp } } } }")["partitionBackfillsOrError"]["results"]
    style_runs = [r for r in results if r["tags"].get("bookbug/style") == "my-style"]
    book_runs = [r for r in results if "dagster/backfill" in r["tags"]]
    assert style_runs and book_runs, [r["tags"] for r in results]
    # The style's profile is what style_lora writes; the book's backfill is requested only once it is there
    # (without the wait both sensors fire on the same tick, seconds before the style run even starts).
    lora = workspace["outputs"] / "styles" / "my-style" / "lora.json"
    assert len(backfills) == 1, backfills
    assert min(b["timestamp"] for b in backfills) > lora.stat().st_mtime, "the book was requested before its style"
