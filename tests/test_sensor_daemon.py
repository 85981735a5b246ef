"""The live path: `dagster dev`, a story dropped in the folder, the sensor's backfill, a finished book.

Slow (the sensor and the backfill daemon tick every 15-30 s), so it is marked slow; it is the only
test that shows the daemon accepts what the sensor returns and runs exactly the book's pages.
"""

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


def test_dropped_story_becomes_a_book_through_the_daemon(workspace):
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
        shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
        pdf = workspace["outputs"] / "books" / "pip-and-the-lantern" / "pip-and-the-lantern.pdf"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not pdf.exists():
            time.sleep(3)
        assert pdf.exists(), (workspace["root"] / "dev.log").read_text()[-3000:]
        # The PDF lands before the backfill's last run (the ledger) has finished: wait for every run to end.
        finished = {"SUCCESS", "FAILURE", "CANCELED"}
        deadline = time.monotonic() + 90
        while True:
            runs = _graphql(port, "{ runsOrError { ... on Runs { results { status tags { key value } } } } }")
            results = runs["runsOrError"]["results"]
            if all(r["status"] in finished for r in results) or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert all(r["status"] == "SUCCESS" for r in results), results
        ranges = [{t["key"]: t["value"] for t in r["tags"]} for r in results]
        page_runs = [t for t in ranges if t.get("dagster/asset_partition_range_start", "").endswith("|001")]
        assert len(page_runs) == 1, "a book's pages should be one run"
        assert page_runs[0]["dagster/asset_partition_range_end"] == "pip-and-the-lantern|012"
        assert len(results) <= 5, f"{len(results)} runs for one book"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
