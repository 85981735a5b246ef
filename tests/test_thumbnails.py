"""The UI's thumbnail of a stored image is made once: a rerun reads the small JPEG, not the full image."""

import base64
import io
from datetime import datetime, timezone

from PIL import Image

from bookbug_assets.defs.common import image_metadata
from bookbug_assets.layout import GenerationRecord, thumbnail_key
from bookbug_assets.storage import LocalArtifactStore


class CountingStore(LocalArtifactStore):
    def __init__(self, root):
        super().__init__(root)
        self.reads: list[str] = []

    def read_bytes(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read_bytes(key)


def _record(store) -> GenerationRecord:
    out = io.BytesIO()
    Image.new("RGB", (1024, 768), "#c04020").save(out, "PNG")
    sha, key = store.put_blob(out.getvalue(), ".png")
    return GenerationRecord(request_key="r", image_key=key, image_sha256=sha, provider="preview", model="m", seed=1,
                            prompt="p", width=1024, height=768, created_at=datetime.now(timezone.utc))


def _thumbnail(meta) -> Image.Image:
    data = meta["preview"].value.split("base64,", 1)[1].rstrip(")")
    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_a_thumbnail_is_made_once_and_read_back_after(tmp_path):
    store = CountingStore(tmp_path)
    record = _record(store)
    first = image_metadata(store, record, "page 1")
    assert store.reads == [record.image_key]
    assert store.exists(thumbnail_key(record.image_sha256, 256))
    store.reads.clear()
    again = image_metadata(store, record, "page 1")
    assert store.reads == [thumbnail_key(record.image_sha256, 256)]  # the full image is not decoded again
    assert again["preview"].value == first["preview"].value
    thumb = _thumbnail(again)
    assert thumb.size == (256, 192) and thumb.getpixel((10, 10))[0] > 150
