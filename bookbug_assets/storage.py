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
import secrets
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


# O_EXCL: never open a file someone else made; O_NOFOLLOW: never write through a planted link (what mkstemp does).
_TEMP_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new hidden temp file beside `path`, created with mode 0o666 so the kernel applies the process umask (and
    a directory's default ACL) exactly as for any file the user makes: tempfile.mkstemp's fixed 0600 would leave
    every PDF and image unreadable to anyone else whatever the umask. Asking the kernel beats reading the umask:
    os.umask can only be read by setting it, which races other threads creating files meanwhile."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, _TEMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp file name beside {path}")


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Write `path` whole or not at all: a hidden temp file beside it (stores never list `.tmp` files), fsynced,
    then renamed over it. A failed or killed write leaves the previous file as it was. The file's mode is what
    the process umask gives a new file (0644 under the usual 022), like any file the user writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the bytes must be on disk before the rename makes them visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
