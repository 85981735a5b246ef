"""Fault injection without cloud fakes: a killed run worker, a store outage, 1000 malformed stories,
hostile ids and paths, and secrets that must never reach logs, metadata or files.

The paid provider here is a test-only ImageProvider ("fakepaid", $0.04 an image, latency from
FAKEPAID_LATENCY_S) registered through `providers.registry.FAMILIES`; the real providers are
not touched.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookbug_assets.providers.base import ImageProvider, ImageRequest, JobOutput, ModelCapabilities
from bookbug_assets.storage import LocalArtifactStore, UnsafeKeyError
from tests.conftest import EXAMPLE, REPO

PRICE = 0.04
FAKE_FAMILY = "fakepaid"
FAKE_SPEC = f"{FAKE_FAMILY}:fake-v1"


class FakePaidProvider(ImageProvider):
    """Deterministic, priced, slow on demand; counts every job it is asked to create."""

    name = FAKE_FAMILY
    submits: Counter = Counter()
    lock = threading.Lock()
    on_submit = None  # test hook: called with the running submit count

    def capabilities(self, model: str) -> ModelCapabilities:
        return ModelCapabilities(model=model, max_references=14, price_usd=PRICE, min_size=64, max_size=4096)

    def submit(self, request: ImageRequest, reference_bytes: dict[str, bytes]) -> str:
        with FakePaidProvider.lock:
            FakePaidProvider.submits[request.cache_key()] += 1
            count = sum(FakePaidProvider.submits.values())
        if FakePaidProvider.on_submit:
            FakePaidProvider.on_submit(count)
        return f"job-{request.cache_key()[:16]}"  # a journaled id stays valid across processes

    def wait(self, job_id: str, request: ImageRequest, deadline_s: float) -> JobOutput:
        from bookbug_assets.providers.preview import render_preview

        time.sleep(float(os.environ.get("FAKEPAID_LATENCY_S", "0")))
        # The preview's proof (the style's palette, full size) so quality gates see a plausible page.
        return JobOutput(image=render_preview(request), version="fake-1", seed=request.seed)


@pytest.fixture
def fakepaid(monkeypatch):
    from bookbug_assets.providers import registry

    monkeypatch.setitem(registry.FAMILIES, FAKE_FAMILY, f"{__name__}:FakePaidProvider")
    monkeypatch.setitem(registry.DEFAULT_MODELS, FAKE_FAMILY, "fake-v1")
    FakePaidProvider.submits = Counter()
    FakePaidProvider.on_submit = None
    return FakePaidProvider


def _story(workspace):
    from bookbug_assets.stories import load_story_file

    return load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})


def _defs(workspace, storage, max_concurrency=4):
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.defs.resources import ImageProviders

    base = build_definitions(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                             styles_dir=str(workspace["styles"]))
    providers = ImageProviders(default=FAKE_SPEC, max_concurrency=max_concurrency, max_attempts=2)
    return dg.Definitions(assets=base.assets, executor=base.executor,
                          resources={**base.resources, "storage": storage, "image_providers": providers})


def _paid_by_key(store) -> Counter:
    from bookbug_assets.ledger import Ledger

    return Counter(r.request_key for r in Ledger(store).rows() if r.status == "ok")

# --- 1. the run worker killed with SIGKILL in the middle of a book ------------------------------

WORKER = """
import sys
sys.path.insert(0, {repo!r})
import dagster as dg
from bookbug_assets.providers import registry
registry.FAMILIES["fakepaid"] = "tests.test_faults:FakePaidProvider"
registry.DEFAULT_MODELS["fakepaid"] = "fake-v1"
from bookbug_assets.defs.book_runs import materialize_book
from bookbug_assets.definitions import build_definitions
from bookbug_assets.stories import load_story_file
defs = build_definitions(data_root={outputs!r}, stories_dir={stories!r}, styles_dir={styles!r})
story = load_story_file(__import__("pathlib").Path({story!r}), {{"soft-meadow"}})
results = materialize_book(defs, dg.DagsterInstance.ephemeral(), story)
sys.exit(0 if all(r.success for r in results.values()) else 1)
"""


def test_sigkill_mid_book_then_rerun_pays_only_for_missing_pages(workspace, tmp_path):
    from bookbug_assets.generation import cache_key_path
    from bookbug_assets.ledger import Ledger

    (workspace["stories"] / EXAMPLE.name).write_bytes(EXAMPLE.read_bytes())
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(repo=str(REPO), outputs=str(workspace["outputs"]),
                                    stories=str(workspace["stories"]), styles=str(workspace["styles"]),
                                    story=str(workspace["stories"] / EXAMPLE.name)))
    env = {**os.environ, "BOOKBUG_PROVIDER": FAKE_SPEC, "BOOKBUG_MAX_CONCURRENCY": "2",
           "FAKEPAID_LATENCY_S": "0.4", "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    store = LocalArtifactStore(workspace["outputs"])
    ledger = Ledger(store)

    worker = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pages_paid = [r for r in ledger.rows() if r.asset == "book_pages" and r.status == "ok"] \
            if (workspace["outputs"] / "ledger").exists() else []
        if len(pages_paid) >= 4 or worker.poll() is not None:
            break
        time.sleep(0.05)
    assert worker.poll() is None, f"worker ended before it could be killed: {worker.stderr.read()[-2000:]}"
    os.killpg(worker.pid, signal.SIGKILL)  # the run worker and anything it started
    worker.wait()

    story = _story(workspace)
    rows_at_kill = ledger.rows()
    page_keys = {r.partition: r.request_key for r in rows_at_kill if r.asset == "book_pages"}
    done_at_kill = {k for k in page_keys.values() if store.exists(cache_key_path(k))}
    assert 4 <= len(done_at_kill) < 12, "the kill must land in the middle of the pages"
    journaled = list(store.list("journal"))  # jobs created but not collected when the worker died
    # A kill between writing a temp file and renaming it leaves that hidden temp file behind: harmless, since the
    # store never lists or reads one. What must never exist is a torn final file.
    assert not [k for k in store.list("") if k.endswith(".tmp")]
    for path in Path(workspace["outputs"]).rglob("*"):
        if path.suffix == ".json":
            json.loads(path.read_text())  # a torn JSON file would not parse
        elif path.suffix == ".png":
            assert path.read_bytes().endswith(b"IEND\xaeB`\x82"), f"torn image {path}"

    rerun = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    new_rows = [r for r in ledger.rows() if r not in rows_at_kill]
    paid_now = {r.request_key for r in new_rows if r.status == "ok"}
    all_page_keys = {r.request_key for r in ledger.rows() if r.asset == "book_pages"}
    assert len(all_page_keys) == 12
    # The rerun paid for exactly the pages that had no image, and nothing else.
    assert paid_now == all_page_keys - done_at_kill, (sorted(paid_now), sorted(done_at_kill))
    assert not any(r.status == "ok" and r.asset in ("sprite_sheet", "hero_page") for r in new_rows)
    assert max(_paid_by_key(store).values()) == 1, "no image was paid for twice"
    assert store.list("journal") == [], "resumed jobs are cleared from the journal"
    assert store.exists(f"books/{story.book_id}/{story.book_id}.pdf")
    print(f"killed with {len(done_at_kill)}/12 pages done and {len(journaled)} job(s) in flight; "
          f"rerun paid for {len(paid_now)} page(s)")

# --- 2. the artifact store unavailable for a while ----------------------------------------------

class FlakyStore(LocalArtifactStore):
    """A local store that raises OSError for the next `outage` calls once an outage is started."""

    outage = 0
    failed = 0
    failed_ops: list[tuple[str, str]] = []
    lock = threading.Lock()

    def _maybe_fail(self, op: str, key: str) -> None:
        with FlakyStore.lock:
            if FlakyStore.outage > 0:
                FlakyStore.outage -= 1
                FlakyStore.failed += 1
                FlakyStore.failed_ops.append((op, key))
                raise OSError(f"injected: artifact store unavailable ({op} {key})")

    def read_bytes(self, key):
        return self._maybe_fail("read", key) or super().read_bytes(key)

    def write_bytes(self, key, data):
        return self._maybe_fail("write", key) or super().write_bytes(key, data)

    def exists(self, key):
        return self._maybe_fail("exists", key) or super().exists(key)


def test_store_outage_fails_cleanly_and_a_rerun_completes_the_book(workspace, fakepaid, instance):
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.defs.resources import BookbugStorage

    class FlakyStorage(BookbugStorage):
        def store(self):
            return FlakyStore(self.data_root)

    (workspace["stories"] / EXAMPLE.name).write_bytes(EXAMPLE.read_bytes())
    storage = FlakyStorage(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                           styles_dir=str(workspace["styles"]))
    defs = _defs(workspace, storage=storage, max_concurrency=2)
    story = _story(workspace)

    def start_outage(count):
        if count == 5:  # sprite sheet, hero page, then the third page's job: the store goes away
            FlakyStore.outage = 12

    FlakyStore.outage, FlakyStore.failed, FlakyStore.failed_ops = 0, 0, []
    fakepaid.on_submit = start_outage
    with pytest.raises(Exception) as failed:  # the run fails; it does not hang or corrupt
        materialize_book(defs, instance, story, echo=lambda *_: None)
    assert FlakyStore.failed > 0, "the outage happened"
    FlakyStore.outage = 0  # the store comes back
    chain, exc = [], failed.value
    while exc is not None and len(chain) < 10:
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    assert "injected: artifact store unavailable" in "\n".join(chain)
    assert not list(workspace["outputs"].rglob("*.tmp"))
    for record in workspace["outputs"].rglob("*.json"):
        json.loads(record.read_text())  # nothing half-written

    fakepaid.on_submit = None
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert all(r.success for r in again.values())
    store = storage.store()
    assert store.exists(f"books/{story.book_id}/{story.book_id}.pdf")
    submitted_twice = {k: n for k, n in FakePaidProvider.submits.items() if n > 1}
    recorded_twice = {k: n for k, n in _paid_by_key(store).items() if n > 1}
    assert not recorded_twice, "the ledger never records one image as paid twice"
    # The one known gap (generation.py): a job created while the store is down cannot be journaled,
    # so the rerun creates it again. Every repeat must be such a job, and nothing else repeats.
    unjournaled = {key.removeprefix("journal/").removesuffix(".json") for op, key in FlakyStore.failed_ops
                   if op == "write" and key.startswith("journal/")}
    assert set(submitted_twice) <= unjournaled, (submitted_twice, FlakyStore.failed_ops)
    print(f"outage: {FlakyStore.failed} failed store calls; jobs created twice: {len(submitted_twice)}")

# --- 3. 1000 generated malformed story files through the folder sensor's scan ------------------

_EXAMPLE = yaml.safe_load(EXAMPLE.read_text())
_REQUIRED = ["book_id", "title", "characters", "pages", "style"]
_JUNK = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))


@st.composite
def malformed_story(draw) -> tuple[str, bytes]:
    """A file that must be rejected: junk bytes, junk text, or the example broken in one place."""
    kind = draw(st.sampled_from(["bytes", "text", "json-scalar", "drop", "retype", "bad-id", "pages",
                                 "unknown-char", "ext"]))
    name = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=12))
    data = json.loads(json.dumps(_EXAMPLE))
    if kind == "bytes":
        return f"{name}.yaml", b"\x00" + draw(st.binary(max_size=300))
    if kind == "text":
        text = draw(st.text(max_size=200))
        return f"{name}.json", ("{" + text).encode("utf-8", "surrogatepass")
    if kind == "json-scalar":
        return f"{name}.json", json.dumps(draw(st.one_of(st.integers(), st.text(max_size=20),
                                                        st.lists(st.integers(), max_size=4)))).encode()
    if kind == "drop":
        del data[draw(st.sampled_from(_REQUIRED))]
    elif kind == "retype":
        data[draw(st.sampled_from(["title", "characters", "pages"]))] = draw(
            st.one_of(st.none(), st.integers(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
    elif kind == "bad-id":
        data["book_id"] = draw(st.text(min_size=0, max_size=80).filter(
            lambda s: not __import__("re").fullmatch(r"[a-z0-9-]{1,64}", s)))
    elif kind == "pages":
        data["pages"] = draw(st.sampled_from([[], data["pages"] * 50]))
    elif kind == "unknown-char":
        data["pages"][draw(st.integers(0, 11))]["characters"] = ["nobody-" + name]
    elif kind == "ext":
        return f"{name}.{draw(st.sampled_from(['txt', 'png', 'md', 'yaml~']))}", yaml.safe_dump(data).encode()
    as_json = draw(st.booleans())
    return (f"{name}.json", json.dumps(data).encode()) if as_json else (f"{name}.yaml",
                                                                         yaml.safe_dump(data).encode())


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(files=st.lists(malformed_story(), min_size=10, max_size=10, unique_by=lambda f: f[0]))
def test_1000_malformed_story_files_each_get_a_reason(tmp_path_factory, files):
    from bookbug_assets.intake import scan_story_folder

    folder = tmp_path_factory.mktemp("inbox")
    styles = REPO / "data" / "styles"
    for name, data in files:
        (folder / name).write_bytes(data)
    warnings: list[str] = []
    log = type("Log", (), {"warning": lambda self, m: warnings.append(m)})()
    stories, rejected, state = scan_story_folder(folder, styles, {}, log)
    assert stories == [], [s.book_id for s in stories]
    assert sorted(n for n, _ in rejected) == sorted(n for n, _ in files)
    for name, reason in rejected:
        assert reason.startswith(name) and len(reason) > len(name) + 2, reason
    assert set(state) == {n for n, _ in files}

# --- 4. hostile ids and paths never write outside the data root ---------------------------------

HOSTILE = ["../escape", "../../etc/passwd", "/etc/passwd", "a/../../b", "books/../../x", "./x", "a//b", "",
           "books/\x00x", "a\\..\\b", "..", "books/..", "~/x", "books/pip/../../../x", " ../x", "%2e%2e/x",
           "books/" + "x" * 10 + "/../../../y"]


def _snapshot(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40),
                     st.lists(st.sampled_from(["..", ".", "", "a", "books", "/", "\\", "x.json"]), max_size=6)
                     .map("/".join)))
def test_hostile_keys_never_leave_the_data_root(tmp_path_factory, key):
    sandbox = tmp_path_factory.mktemp("sandbox")
    root = sandbox / "data"
    root.mkdir()
    before = _snapshot(sandbox)
    store = LocalArtifactStore(root)
    try:
        store.write_bytes(key, b"x")
    except (UnsafeKeyError, IsADirectoryError, NotADirectoryError, FileExistsError):
        pass
    outside = {p for p in _snapshot(sandbox) - before if root not in p.parents}
    assert not outside, f"key {key!r} wrote {outside}"


def test_symlinks_and_hostile_story_names_stay_inside(workspace, tmp_path):
    from bookbug_assets.intake import scan_story_folder, write_rejection

    outside = tmp_path / "outside"
    outside.mkdir()
    root = workspace["outputs"]
    (root / "books").mkdir(parents=True)
    (root / "books" / "evil").symlink_to(outside, target_is_directory=True)
    store = LocalArtifactStore(root)
    with pytest.raises(UnsafeKeyError):
        store.write_bytes("books/evil/story.json", b"{}")
    assert list(outside.iterdir()) == []

    for name in ("..", "...json", "a b;rm -rf.yaml", "x" * 200 + ".json"):
        where = write_rejection(workspace["stories"], name, "reason")
        assert where.parent == workspace["stories"] / "rejected"
    hostile = {**_EXAMPLE, "book_id": "../../etc"}
    (workspace["stories"] / "escape.json").write_text(json.dumps(hostile))
    stories, rejected, _ = scan_story_folder(workspace["stories"], workspace["styles"], {},
                                             type("L", (), {"warning": lambda *a: None})())
    assert not stories and "book_id" in dict(rejected)["escape.json"]

    with pytest.raises(UnsafeKeyError):
        store.write_json("books/../../etc/story.json", {})


def test_a_hostile_partition_key_fails_without_writing(workspace, defs_for, instance):
    from bookbug_assets.defs.book_runs import _assets

    defs = defs_for()
    instance.add_dynamic_partitions("books", ["..%2f..%2fetc"])
    before = _snapshot(workspace["root"])
    result = dg.materialize(_assets(defs, "story"), instance=instance, resources=dict(defs.resources),
                            partition_key="..%2f..%2fetc", raise_on_error=False)
    assert not result.success
    assert {p for p in _snapshot(workspace["root"]) - before if workspace["outputs"] not in p.parents} == set()

# --- 5. secrets never in logs, metadata or files ------------------------------------------------

SECRET, FAL_SECRET = "r8_secretDoNotLeak0123456789abcdef", "fal-key-id:fal-secretDoNotLeak9876"


def test_secrets_never_reach_logs_metadata_or_files(workspace, monkeypatch, tmp_path, capfd):
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions

    monkeypatch.setenv("REPLICATE_API_TOKEN", SECRET)
    monkeypatch.setenv("FAL_KEY", FAL_SECRET)
    monkeypatch.setenv("BOOKBUG_PROVIDER", "preview")  # keys set, yet nothing may leave the machine
    (workspace["stories"] / EXAMPLE.name).write_bytes(EXAMPLE.read_bytes())
    defs = build_definitions(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                             styles_dir=str(workspace["styles"]))
    providers = defs.resources["image_providers"]
    assert SECRET not in repr(providers)  # the resource holds EnvVar("REPLICATE_API_TOKEN"), not the value
    (home := tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        results = materialize_book(defs, instance, _story(workspace), echo=print)
        assert all(r.success for r in results.values())
        dumped = [repr(r.dagster_run) for r in instance.get_run_records()]
        dumped += [repr(e) for r in instance.get_run_records() for e in instance.all_logs(r.dagster_run.run_id)]
        dumped += [repr(instance.get_latest_materialization_event(k)) for k in instance.get_asset_keys()]
        text = "\n".join(dumped)  # run configs and tags, every event, all metadata
        assert "fal-secret" not in text and "r8_secret" not in text
    out, err = capfd.readouterr()
    assert "fal-secret" not in out + err and "r8_secret" not in out + err
    for path in list(workspace["outputs"].rglob("*")) + list(home.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            assert SECRET.encode() not in data and b"fal-secretDoNotLeak" not in data, path
