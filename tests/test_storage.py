import pytest

from bookbug_assets.storage import LocalArtifactStore, UnsafeKeyError


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    store = LocalArtifactStore(tmp_path)
    store.write_bytes("books/a/page.json", b"finished")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        store.write_bytes("books/a/page.json", b"half")
    assert store.read_bytes("books/a/page.json") == b"finished"
    assert [p.name for p in (tmp_path / "books" / "a").iterdir()] == ["page.json"]


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a/../../b", "a//b", "a/./b", "sp ace", ""])
def test_hostile_keys_never_leave_the_root(tmp_path, key):
    store = LocalArtifactStore(tmp_path / "root")
    with pytest.raises(UnsafeKeyError):
        store.write_bytes(key, b"x")


def test_blobs_are_content_addressed(tmp_path):
    store = LocalArtifactStore(tmp_path)
    sha, key = store.put_blob(b"abc", ".png")
    assert key == f"blobs/{sha[:2]}/{sha}.png" and store.put_blob(b"abc", ".png") == (sha, key)
    assert store.list("blobs") == [key]
