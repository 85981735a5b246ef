"""Files the stores and the PDF builder write get the mode the process umask gives any new file (not mkstemp's
0600), so a finished book can be shared or served; the write stays atomic."""

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from bookbug_assets.pdf import PdfPage, PdfSpec, build_book_pdf
from bookbug_assets.storage import LocalArtifactStore, atomic_file

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield os.umask
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_store_writes_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    store = LocalArtifactStore(tmp_path)
    store.write_bytes("books/a/page.png", b"png")
    store.write_json("books/a/page.json", {"a": 1})
    sha, key = store.put_blob(b"blob", ".png")
    for k in ("books/a/page.png", "books/a/page.json", key):
        assert mode(store.local_path(k)) == expected, k
    with atomic_file(tmp_path / "ledger" / "rows.parquet") as handle:
        handle.write(b"PAR1")
    assert mode(tmp_path / "ledger" / "rows.parquet") == expected


def test_rewriting_a_file_takes_the_current_umask_and_leaves_no_temp(tmp_path, umask):
    store = LocalArtifactStore(tmp_path)
    umask(0o077)
    store.write_bytes("a.json", b"1")
    umask(0o022)
    store.write_bytes("a.json", b"2")
    assert store.read_bytes("a.json") == b"2" and mode(tmp_path / "a.json") == 0o644
    assert os.listdir(tmp_path) == ["a.json"]


def test_the_book_pdf_is_readable_by_others_under_umask_022(tmp_path, umask):
    umask(0o022)
    art = tmp_path / "art.png"
    Image.new("RGB", (200, 200), (120, 160, 200)).save(art)
    spec = PdfSpec(trim_width_in=4, trim_height_in=4, dpi=100)
    result = build_book_pdf(title="T", author="A", cover=PdfPage(art, "", False), pages=[PdfPage(art, "hi", False)],
                            spec=spec, out_path=tmp_path / "out" / "book.pdf")
    assert mode(result.path) == 0o644
