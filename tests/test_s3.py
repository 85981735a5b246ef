"""S3: the ArtifactStore backend, a whole book on it, and the S3 story sensor, against a moto server.

The moto server is a real HTTP S3 endpoint on 127.0.0.1, reached through dagster-aws S3Resource
with endpoint_url, exactly as MinIO or R2 would be.
"""

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import yaml

pytest.importorskip("moto", reason="moto[server] is not installed (dev extra)")
from dagster_aws.s3 import S3Resource  # noqa: E402

from bookbug_assets.defs.resources import BookbugStorage  # noqa: E402
from bookbug_assets.storage import UnsafeKeyError  # noqa: E402
from bookbug_assets.storage_s3 import S3ArtifactStore  # noqa: E402
from tests.conftest import EXAMPLE  # noqa: E402

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    server = Path(sys.executable).with_name("moto_server")
    if not server.exists():
        pytest.skip("moto_server is not installed next to this Python (pip install 'moto[server]')")
    port = _free_port()
    proc = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"moto_server exited with {proc.returncode}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("moto_server did not answer within 30 s")
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def s3(moto_endpoint):
    return S3Resource(endpoint_url=moto_endpoint, **CREDS)


@pytest.fixture
def bucket(s3):
    name = f"bookbug-{uuid.uuid4().hex[:10]}"
    s3.get_client().create_bucket(Bucket=name)
    return name


class S3BookbugStorage(BookbugStorage):
    """Test-only: BookbugStorage with its artifacts in S3 (the shape the s3_* fields would take)."""

    s3_endpoint_url: str
    s3_bucket: str
    s3_prefix: str = "outputs"

    def store(self):
        client = S3Resource(endpoint_url=self.s3_endpoint_url, **CREDS).get_client()
        return S3ArtifactStore(client, self.s3_bucket, self.s3_prefix, cache_dir=Path(self.data_root) / "s3-cache")


# --- the store ---------------------------------------------------------------------------------

def test_s3_store_round_trip(s3, bucket, tmp_path):
    store = S3ArtifactStore(s3.get_client(), bucket, "outputs/", cache_dir=tmp_path / "cache")
    store.write_bytes("books/pip/story.json", b'{"a": 1}')
    store.write_json("books/pip-2/story.json", {"b": 2})
    assert store.read_json("books/pip/story.json") == {"a": 1}
    assert store.exists("books/pip/story.json") and not store.exists("books/pip/nope.json")
    # Folder semantics: listing books/pip must not return books/pip-2.
    assert store.list("books/pip") == ["books/pip/story.json"]
    assert store.list("books") == ["books/pip-2/story.json", "books/pip/story.json"]
    assert store.uri("books/pip/story.json") == f"s3://{bucket}/outputs/books/pip/story.json"
    with pytest.raises(FileNotFoundError):
        store.read_bytes("books/pip/nope.json")

    sha, key = store.put_blob(b"\x89PNG fake", ".png")
    assert key == f"blobs/{sha[:2]}/{sha}.png" and store.read_bytes(key) == b"\x89PNG fake"
    assert store.put_blob(b"\x89PNG fake", ".png") == (sha, key)

    # local_path downloads once and refreshes when the object changes.
    path = store.local_path("books/pip/story.json")
    assert path.read_bytes() == b'{"a": 1}' and (tmp_path / "cache") in path.parents
    store.write_bytes("books/pip/story.json", b'{"a": 3}')
    assert store.local_path("books/pip/story.json").read_bytes() == b'{"a": 3}'
    assert store.local_path(key).read_bytes() == b"\x89PNG fake"

    store.delete("books/pip/story.json")
    store.delete("books/pip/story.json")  # idempotent, like the local store
    assert not store.exists("books/pip/story.json")
    for hostile in ("../x", "/etc/passwd", "a/../../b", "a//b", "", "a\\b", "books/\x00"):
        with pytest.raises(UnsafeKeyError):
            store.write_bytes(hostile, b"x")
    with pytest.raises(UnsafeKeyError):
        S3ArtifactStore(s3.get_client(), bucket, "../up")
    client = s3.get_client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert all(k.startswith("outputs/") for k in keys), keys


def test_whole_book_on_s3(s3, bucket, moto_endpoint, workspace, instance):
    from bookbug_assets.defs.book_runs import materialize_book
    from bookbug_assets.definitions import build_definitions
    from bookbug_assets.ledger import Ledger
    from bookbug_assets.stories import load_story_file

    shutil.copy(EXAMPLE, workspace["stories"] / EXAMPLE.name)
    base = build_definitions(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                             styles_dir=str(workspace["styles"]))
    storage = S3BookbugStorage(data_root=str(workspace["outputs"]), stories_dir=str(workspace["stories"]),
                               styles_dir=str(workspace["styles"]), s3_endpoint_url=moto_endpoint, s3_bucket=bucket)
    defs = dg.Definitions(assets=base.assets, sensors=base.sensors, executor=base.executor,
                          resources={**base.resources, "storage": storage})
    story = load_story_file(workspace["stories"] / EXAMPLE.name, {"soft-meadow"})

    started = time.monotonic()
    results = materialize_book(defs, instance, story, echo=lambda *_: None)
    first_s = time.monotonic() - started
    assert all(r.success for r in results.values())
    store = storage.store()
    book = f"books/{story.book_id}"
    assert store.exists(f"{book}/story.json")
    assert sorted(store.list(f"{book}/pages")) == [f"{book}/pages/{k}.json" for k in story.page_keys]
    assert store.exists("ledger/generation_ledger.parquet")
    page_events = results["pages"].get_asset_materialization_events()
    assert len(page_events) == 12
    assert page_events[0].materialization.metadata["image_uri"].value.startswith(f"s3://{bucket}/outputs/blobs/")
    # Nothing generated lands on local disk except the download cache.
    local = [p for p in workspace["outputs"].rglob("*") if p.is_file() and "s3-cache" not in p.parts]
    assert local == [], local

    ledger = Ledger(store)
    before = len(ledger.rows(story.book_id))
    again = materialize_book(defs, instance, story, echo=lambda *_: None)
    assert all(r.success for r in again.values())
    new_rows = ledger.rows(story.book_id)[before:]
    assert len(new_rows) == 14 and all(r.cache_hit and r.cost_usd == 0 for r in new_rows)
    print(f"whole book on S3: first {first_s:.1f}s")

    # book_pdf must hand the finished PDF to the store (see the S3 integration notes).
    assert store.exists(f"{book}/{story.book_id}.pdf"), \
        "book_pdf built the PDF in the local cache only; it must also store.write_bytes() it"


# --- the S3 story sensor -----------------------------------------------------------------------

def _upload(client, bucket, name, body: bytes, prefix="stories/"):
    client.put_object(Bucket=bucket, Key=f"{prefix}{name}", Body=body)


def _story_bytes(**changes) -> bytes:
    data = yaml.safe_load(EXAMPLE.read_text())
    data.update(changes)
    return yaml.safe_dump(data).encode()


@pytest.fixture
def sensor_env(s3, bucket, workspace, defs_for, instance):
    from bookbug_assets.defs.intake.s3_sensor import build_s3_story_sensor

    from tests.test_sensors import mark_style_built

    mark_style_built(workspace)  # as if the style sensor had built soft-meadow: books in it are not held back
    defs = defs_for()
    sensor = build_s3_story_sensor(bucket, "stories/")

    def tick(cursor=None):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                          resources={"storage": defs.resources["storage"], "s3": s3})
        data = sensor.evaluate_tick(context)  # with the daemon's checks (asset_selection for backfill requests)
        return dg.SensorResult(run_requests=data.run_requests, skip_reason=data.skip_message, cursor=data.cursor,
                               dynamic_partitions_requests=data.dynamic_partitions_requests)

    return tick, s3.get_client()


def _story_ids(result):
    out = []
    for request in result.run_requests:
        keys = {(apk.asset_key.to_user_string(), apk.partition_key)
                for apk in request.asset_graph_subset.iterate_asset_partitions()}
        out.append({p for a, p in keys if a == "story"})
    return out


def test_s3_sensor_new_unchanged_changed_and_malformed(sensor_env, bucket, instance):
    tick, client = sensor_env
    _upload(client, bucket, "pip.yaml", EXAMPLE.read_bytes())
    first = tick()
    assert _story_ids(first) == [{"pip-and-the-lantern"}]
    request = first.run_requests[0]
    assert request.tags["bookbug/story_key"] == "stories/pip.yaml"
    pages = {apk.partition_key for apk in request.asset_graph_subset.iterate_asset_partitions()
             if apk.asset_key.to_user_string() == "book_pages"}
    assert len(pages) == 12
    adds = {r.partitions_def_name: sorted(r.partition_keys) for r in first.dynamic_partitions_requests}
    assert adds["books"] == ["pip-and-the-lantern"] and len(adds["page_slots"]) == 12

    for add in first.dynamic_partitions_requests:  # what the daemon does with the tick's result
        instance.add_dynamic_partitions(add.partitions_def_name, list(add.partition_keys))

    unchanged = tick(first.cursor)
    assert not unchanged.run_requests and unchanged.skip_reason
    # Re-uploading identical bytes (same ETag) is not a change either.
    _upload(client, bucket, "pip.yaml", EXAMPLE.read_bytes())
    assert not tick(first.cursor).run_requests

    _upload(client, bucket, "pip.yaml", _story_bytes(title="Pip and the Lantern, revised"))
    _upload(client, bucket, "bad.json", b'{"book_id": "x", ')
    _upload(client, bucket, "notes.txt", b"hello")
    _upload(client, bucket, "nested/deep.yaml", EXAMPLE.read_bytes())  # not a direct upload: ignored
    changed = tick(first.cursor)
    assert _story_ids(changed) == [{"pip-and-the-lantern"}]
    assert changed.run_requests[0].tags["bookbug/reason"] == "story changed"
    reasons = {o["Key"]: json.loads(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
               for o in client.list_objects_v2(Bucket=bucket, Prefix="stories/rejected/")["Contents"]}
    assert set(reasons) == {"stories/rejected/bad.json.reason.json", "stories/rejected/notes.txt.reason.json"}
    assert "invalid JSON" in reasons["stories/rejected/bad.json.reason.json"]["reason"]
    assert "unsupported extension" in reasons["stories/rejected/notes.txt.reason.json"]["reason"]
    assert client.head_object(Bucket=bucket, Key="stories/bad.json"), "a rejected upload is never deleted"
    # Reason objects are not uploads, and rejections are not re-reported.
    later = tick(changed.cursor)
    assert not later.run_requests and later.skip_reason


def test_s3_sensor_rejects_oversized_and_claimed_ids_without_downloading(sensor_env, bucket):
    tick, client = sensor_env
    _upload(client, bucket, "a.yaml", EXAMPLE.read_bytes())
    _upload(client, bucket, "b.yaml", EXAMPLE.read_bytes())
    _upload(client, bucket, "huge.json", b" " * 1_200_000)
    _upload(client, bucket, "escape.json", json.dumps({**yaml.safe_load(EXAMPLE.read_text()),
                                                        "book_id": "../../etc"}).encode())
    result = tick()
    assert _story_ids(result) == [{"pip-and-the-lantern"}]
    rejected = {o["Key"].rsplit("/", 1)[1]: json.loads(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
                for o in client.list_objects_v2(Bucket=bucket, Prefix="stories/rejected/")["Contents"]}
    assert "already used by a.yaml" in rejected["b.yaml.reason.json"]["reason"]
    assert "must be under" in rejected["huge.json.reason.json"]["reason"]
    assert "book_id" in rejected["escape.json.reason.json"]["reason"]
    # Fixing a rejected upload (new ETag) is picked up on the next tick.
    fixed = {**yaml.safe_load(EXAMPLE.read_text()), "book_id": "escape-fixed"}
    _upload(client, bucket, "escape.json", json.dumps(fixed).encode())
    assert _story_ids(tick(result.cursor)) == [{"escape-fixed"}]


def _state(workspace, cursor):
    """The S3 sensor's state: in the store, named by the cursor."""
    from bookbug_assets.sensor_state import load_sensor_state
    from bookbug_assets.storage import LocalArtifactStore

    return json.loads(load_sensor_state(LocalArtifactStore(workspace["outputs"]), cursor, None))


def test_s3_sensor_catches_an_upload_in_the_same_second_as_the_mark(sensor_env, bucket, workspace):
    # S3 stamps LastModified to the second and get_objects keeps only strictly newer objects: an
    # upload landing in the same second as the cursor's mark must still be seen.
    tick, client = sensor_env
    _upload(client, bucket, "one.yaml", _story_bytes(book_id="one"))
    first = tick()
    _upload(client, bucket, "two.yaml", _story_bytes(book_id="two"))
    stamp = client.head_object(Bucket=bucket, Key="stories/two.yaml")["LastModified"]
    cursor = _state(workspace, first.cursor)
    cursor["since"] = stamp.isoformat()  # the mark another object of that second would have set
    assert _story_ids(tick(json.dumps(cursor))) == [{"two"}]


def test_fetch_story_from_s3(s3, bucket, workspace):
    from bookbug_assets.intake_s3 import StoryNotFound, fetch_story_from_s3

    client = s3.get_client()
    _upload(client, bucket, "pip.yaml", EXAMPLE.read_bytes())
    _upload(client, bucket, "other.yaml", _story_bytes(book_id="other"))
    _upload(client, bucket, "bad.json", b"{")
    key, sha, story = fetch_story_from_s3(client, bucket, "stories", "other", {"soft-meadow"})
    assert key == "stories/other.yaml" and story.book_id == "other" and len(sha) == 64
    key, _, story = fetch_story_from_s3(client, bucket, "stories/", "pip-and-the-lantern", {"soft-meadow"},
                                        key_hint="stories/pip.yaml")
    assert key == "stories/pip.yaml" and len(story.pages) == 12
    with pytest.raises(StoryNotFound, match="no valid story"):
        fetch_story_from_s3(client, bucket, "stories/", "missing-book", {"soft-meadow"})


def test_an_upload_listed_late_with_an_earlier_timestamp_is_still_picked_up(sensor_env, bucket, instance):
    """S3 stamps LastModified when an upload begins: a slow one can appear after the mark moved past it."""
    import json
    from datetime import datetime, timedelta, timezone

    tick, client = sensor_env
    _upload(client, bucket, "slow.yaml", _story_bytes(book_id="slow-book"))
    # The cursor of a tick that ran while slow.yaml was still uploading and saw a faster, later upload.
    later = (datetime.now(timezone.utc) + timedelta(seconds=60)).isoformat()
    result = tick(json.dumps({"since": later, "etags": {}, "books": {}}))
    assert _story_ids(result) == [{"slow-book"}]


# --- issue 14 item 7: one parser, one bounded batch -----------------------------------------------------------

def _reasons(client, bucket):
    listing = client.list_objects_v2(Bucket=bucket, Prefix="stories/rejected/").get("Contents", [])
    return {o["Key"].rsplit("/", 1)[1]: json.loads(client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
            for o in listing}


def test_a_5000_digit_integer_is_that_uploads_rejection_not_a_failing_tick(sensor_env, bucket):
    tick, client = sensor_env
    _upload(client, bucket, "huge-int.yaml", EXAMPLE.read_text().replace("seed: 2024", "seed: " + "9" * 5000)
            .encode())
    _upload(client, bucket, "huge-int.json", json.dumps({**yaml.safe_load(EXAMPLE.read_text()), "book_id": "j"})
            .replace('"seed": 2024', '"seed": ' + "9" * 5000).encode())
    _upload(client, bucket, "good.yaml", _story_bytes(book_id="good-book"))
    result = tick()
    assert _story_ids(result) == [{"good-book"}]
    reasons = _reasons(client, bucket)
    for name in ("huge-int.yaml", "huge-int.json"):
        assert "5000 digits long is too large" in reasons[f"{name}.reason.json"]["reason"]
        assert "9" * 100 not in reasons[f"{name}.reason.json"]["reason"]


def test_a_flood_of_uploads_is_taken_in_bounded_batches_oldest_first(sensor_env, bucket):
    from bookbug_assets.story_intake import MAX_FILES_PER_TICK

    tick, client = sensor_env
    flood = MAX_FILES_PER_TICK + 6
    for i in range(flood):
        _upload(client, bucket, f"flood-{i:03d}.yaml", _story_bytes(book_id=f"flood-{i:03d}"))
    _upload(client, bucket, "late.yaml", _story_bytes(book_id="late-story"))
    cursor, books, ticks = None, [], 0
    while ticks <= flood:
        result = tick(cursor)
        ticks += 1
        taken = [ids for ids in _story_ids(result)]
        if not taken:
            break
        assert 1 <= len(taken) <= MAX_FILES_PER_TICK
        books += [b for ids in taken for b in ids]
        cursor = result.cursor
    assert ticks >= 3 and sorted(books) == sorted([f"flood-{i:03d}" for i in range(flood)] + ["late-story"])


def test_doubled_slashes_get_a_reason_and_hidden_keys_are_not_uploads(sensor_env, bucket):
    tick, client = sensor_env
    client.put_object(Bucket=bucket, Key="stories//pip.yaml", Body=EXAMPLE.read_bytes())
    client.put_object(Bucket=bucket, Key="stories/.hidden.yaml", Body=EXAMPLE.read_bytes())
    result = tick()
    assert not result.run_requests
    reasons = _reasons(client, bucket)
    assert len(reasons) == 1
    (reason,) = reasons.values()
    assert "empty path segment" in reason["reason"] and "stories/pip.yaml" in reason["reason"]


def test_a_rejected_upload_waits_for_its_style_and_its_reason_goes_once_accepted(sensor_env, bucket, workspace):
    tick, client = sensor_env
    _upload(client, bucket, "chibi.yaml", _story_bytes(book_id="chibi-book", style="chibi"))
    first = tick()
    assert not first.run_requests and "chibi.yaml.reason.json" in _reasons(client, bucket)
    shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "chibi")
    from tests.test_sensors import mark_style_built

    mark_style_built(workspace, "chibi")
    second = tick(first.cursor)
    assert _story_ids(second) == [{"chibi-book"}] and _reasons(client, bucket) == {}


def test_fetch_reads_the_owner_never_a_duplicate_or_a_broken_upload(s3, bucket):
    from bookbug_assets.intake_s3 import fetch_story_from_s3

    client = s3.get_client()
    _upload(client, bucket, "pip.yaml", EXAMPLE.read_bytes())
    time.sleep(1.1)  # S3 stamps LastModified to the second: aaa.yaml is the later upload
    _upload(client, bucket, "aaa.yaml", _story_bytes(title="Hijacked"))
    _upload(client, bucket, "deep.yaml", b"book_id: " + b"[" * 1000 + b"]" * 1000)
    _, _, story = fetch_story_from_s3(client, bucket, "stories/", "pip-and-the-lantern", {"soft-meadow"})
    assert story.title != "Hijacked"  # the first upload owns the id, as in the sensor
    key, _, story = fetch_story_from_s3(client, bucket, "stories/", "pip-and-the-lantern", {"soft-meadow"},
                                        recorded=("pip.yaml", "x"))
    assert key == "stories/pip.yaml"


# --- issue 13 item 6 and issue 16: one backfill per tick, a bounded cursor, books wait for their style -------------

def test_s3_one_backfill_for_every_upload_and_each_book_reads_its_own_key(sensor_env, bucket, workspace):
    from bookbug_assets.story_intake import requested_source
    from bookbug_assets.storage import LocalArtifactStore

    tick, client = sensor_env
    for i in range(4):
        _upload(client, bucket, f"up-{i}.yaml", _story_bytes(book_id=f"up-{i}"))
    result = tick()
    assert len(result.run_requests) == 1 and _story_ids(result) == [{f"up-{i}" for i in range(4)}]
    assert "bookbug/story_key" not in result.run_requests[0].tags
    store = LocalArtifactStore(workspace["outputs"])
    assert [requested_source(store, f"up-{i}")[0] for i in range(4)] == [f"stories/up-{i}.yaml" for i in range(4)]


def test_s3_state_forgets_deleted_uploads_and_the_cursor_stays_small(sensor_env, bucket, workspace):
    tick, client = sensor_env
    for i in range(6):
        _upload(client, bucket, f"k-{i}.yaml", _story_bytes(book_id=f"k-{i}"))
    first = tick()
    assert len(_state(workspace, first.cursor)["etags"]) == 6
    for i in range(4):
        client.delete_object(Bucket=bucket, Key=f"stories/k-{i}.yaml")
    second = tick(first.cursor)
    state = _state(workspace, second.cursor)
    assert sorted(state["etags"]) == ["stories/k-4.yaml", "stories/k-5.yaml"]
    assert sorted(state["books"]) == ["k-4", "k-5"] and len(second.cursor) < 200


def test_s3_a_book_whose_style_is_not_built_waits_for_it(sensor_env, bucket, workspace):
    from tests.test_sensors import mark_style_built

    tick, client = sensor_env
    shutil.copytree(workspace["styles"] / "soft-meadow", workspace["styles"] / "chibi")
    _upload(client, bucket, "chibi.yaml", _story_bytes(book_id="chibi-book", style="chibi"))
    first = tick()
    assert not first.run_requests and _reasons(client, bucket) == {}
    assert not tick(first.cursor).run_requests
    mark_style_built(workspace, "chibi")
    assert _story_ids(tick(first.cursor)) == [{"chibi-book"}]
