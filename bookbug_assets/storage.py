"""ArtifactStore: where image bytes and small JSON records live, addressed by key.

The interface is deliberately narrow (read, write, exists, list, local_path) so that a local
folder and an S3 bucket are interchangeable. Writes are atomic: a reader never sees half a file,
and a failed write never replaces a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

_KEY_RE = re.compile(r"^[A-Za-z0-9_.=-]+(/[A-Za-z0-9_.=-]+)*$")


class UnsafeKeyError(ValueError):
    pass


def check_key(key: str) -> str:
    """Keys are relative, slash-separated and never climb out of the store."""
    if not _KEY_RE.fullmatch(key) or any(part in (".", "..") for part in key.split("/")):
        raise UnsafeKeyError(f"unsafe artifact key {key!r}")
    return key


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_key(sha: str, suffix: str) -> str:
    return f"blobs/{sha[:2]}/{sha}{suffix}"


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write `path` whole or not at all: a hidden temp file beside it (stores never list `.tmp` files), fsynced,
    then renamed over it. A failed or killed write leaves the previous file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the bytes must be on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactStore(ABC):
    """A key -> bytes store with atomic writes."""

    @abstractmethod
    def read_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under `prefix`, sorted."""

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def local_path(self, key: str) -> Path:
        """A local file with the key's bytes (a download cache for remote stores)."""

    @abstractmethod
    def uri(self, key: str) -> str: ...

    def publish_local(self, key: str) -> None:
        """Make a file built at local_path(key) the key's content (a no-op where that path is the store)."""

    def read_json(self, key: str) -> dict:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, value: dict) -> None:
        self.write_bytes(key, json.dumps(value, indent=2, sort_keys=True, default=str).encode())

    def put_blob(self, data: bytes, suffix: str = ".png") -> tuple[str, str]:
        """Store bytes by content hash; returns (sha256, key). Identical bytes are written once."""
        sha = sha256_bytes(data)
        key = blob_key(sha, suffix)
        if not self.exists(key):
            self.write_bytes(key, data)
        return sha, key


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise UnsafeKeyError(f"artifact key {key!r} escapes the store")
        return path

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def write_bytes(self, key: str, data: bytes) -> None:
        with atomic_file(self._path(key)) as handle:
            handle.write(data)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.endswith(".tmp"))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def local_path(self, key: str) -> Path:
        return self._path(key)

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()
