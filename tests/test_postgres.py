"""A whole book on a Postgres-backed Dagster instance, against a real PostgreSQL started here.

PostgreSQL refuses to run as root, so when the tests run as root (CI does) the server runs as
`nobody` through runuser. The production config in deploy/dagster.yaml is loaded against the
same database, so its storage block is proven, not just parsed.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.conftest import EXAMPLE, REPO

pytestmark = pytest.mark.slow


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    pytest.importorskip("dagster_postgres", reason="dagster-postgres is not installed (dev extra)")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; .ci/run installs `postgresql`")
    as_user: list[str] = []
    # A world-traversable directory of its own: pytest's tmp dirs are private to root.
    base = Path(tempfile.mkdtemp(prefix="bookbug-pg-"))
    base.chmod(0o755)
    if os.geteuid() == 0:
        if not shutil.which("runuser"):
            pytest.skip("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(base, "nobody", "nogroup" if _group_exists("nogroup") else None)
    data, sock, log = base / "data", base / "sock", base / "server.log"
    port = _free_port()

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=timeout, cwd=base)

    made = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
               "--no-sync")
    if made.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"initdb failed: {made.stderr[-500:]}")
    run("mkdir", "-p", str(sock))
    started = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                  f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    if started.returncode != 0:
        detail = log.read_text()[-1000:] if log.exists() else started.stderr
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(f"pg_ctl start failed: {detail}")
    yield {"host": "127.0.0.1", "port": port, "user": "postgres", "db": "postgres"}
    run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    shutil.rmtree(base, ignore_errors=True)


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _pg_env(pg: dict) -> dict[str, str]:
    # The variables deploy/dagster.yaml reads; trust auth, so the password is a placeholder.
    return {"DAGSTER_PG_USERNAME": pg["user"], "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
            "DAGSTER_PG_HOST": pg["host"], "DAGSTER_PG_DB": pg["db"], "DAGSTER_PG_PORT": str(pg["port"]),
            "BOOKBUG_S3_BUCKET": "bookbug-test"}


def _postgres_storage(pg: dict) -> dict:
    return {"postgres": {"postgres_db": {"username": pg["user"], "password": "", "hostname": pg["host"],
                                         "db_name": pg["db"], "port": pg["port"],
                                         "scheme": "postgresql+psycopg2"}}}


def test_whole_book_on_a_postgres_instance(postgres, workspace, tmp_path):
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.stories import load_story_file

    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    defs = build_definitions(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                             styles_dir=str(workspace["styles"]))
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})
    started = time.monotonic()
    with dg.instance_for_test(overrides={"storage": _postgres_storage(postgres)}, temp_dir=str(tmp_path)) as inst:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

        assert isinstance(inst.run_storage, PostgresRunStorage)
        assert isinstance(inst.event_log_storage, PostgresEventLogStorage)
        results = materialize_book(defs, inst, story, echo=lambda *_: None)
        assert all(r.success for r in results.values())
        run_ids = {r.run_id for r in results.values()}
    elapsed = time.monotonic() - started

    # A fresh instance on the same database sees everything: it lives in Postgres, not in memory.
    with dg.instance_for_test(overrides={"storage": _postgres_storage(postgres)},
                              temp_dir=str(tmp_path)) as fresh:
        stored = {r.run_id: r.status for r in fresh.get_runs()}
        assert run_ids <= set(stored) and all(stored[i] == dg.DagsterRunStatus.SUCCESS for i in run_ids)
        assert fresh.get_dynamic_partitions("books") == [story.book_id]
        pages = fresh.get_materialized_partitions(dg.AssetKey("book_pages"))
        assert len(pages) == 12 and all(p.startswith(f"{story.book_id}|") for p in pages)
        for name in ("story", "sprite_sheet", "hero_page", "book_pdf"):
            assert fresh.get_materialized_partitions(dg.AssetKey(name)) == {story.book_id}, name
    print(f"whole book on Postgres in {elapsed:.1f}s")


def test_the_production_config_loads_on_this_postgres(postgres, tmp_path, monkeypatch):
    """deploy/dagster.yaml: schema-valid, its storage opens the real database, and the launcher
    and compute-log configs validate against their classes (which would call AWS to start)."""
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_aws.ecs import EcsRunLauncher
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_postgres import PostgresRunStorage

    for name, value in _pg_env(postgres).items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(REPO / "deploy"), "dagster.yaml")
    for cls, block in ((EcsRunLauncher, config["run_launcher"]), (S3ComputeLogManager, config["compute_logs"])):
        checked = process_config(cls.config_type(), block["config"])
        assert checked.success, (cls.__name__, checked.errors)
    assert config["concurrency"]["pools"]["default_limit"] == 1

    # Open the production storage block itself (env vars resolved) on the test database.
    home = tmp_path / "home"
    home.mkdir()
    raw = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    (home / "dagster.yaml").write_text(yaml.safe_dump({"storage": raw["storage"],
                                                        "telemetry": {"enabled": False}}))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        instance.get_runs(limit=1)
    finally:
        instance.dispose()
