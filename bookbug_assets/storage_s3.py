"""S3ArtifactStore: the ArtifactStore interface on an S3 bucket (AWS, MinIO, R2 through endpoint_url).

The client comes from dagster-aws `S3Resource.get_client()`, so credentials, region, endpoint and
retries (`max_attempts`) are configured the Dagster way and never pass through this module.
A PUT is atomic by nature: readers see the old object or the new one, never half of either.
Paths that need a real file (PDF building reads images from disk) go through `local_path`,
which downloads into a local cache once per object version.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bookbug_assets.storage import ArtifactStore, atomic_file, check_key

_MISSING = {"404", "NoSuchKey", "NotFound"}
# Content-addressed keys never change once written, so a cached copy needs no HEAD request.
_IMMUTABLE_PREFIXES = ("blobs/",)


def _is_missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


def _norm_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{check_key(prefix)}/" if prefix else ""


class S3ArtifactStore(ArtifactStore):
    """Keys live at s3://bucket/<prefix>/<key>; `cache_dir` holds downloads for local_path()."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", cache_dir: str | os.PathLike | None = None):
        if not bucket:
            raise ValueError("S3ArtifactStore needs a bucket name")
        self.client = client
        self.bucket = bucket
        self.prefix = _norm_prefix(prefix)
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "bookbug-s3-cache").resolve()

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):  # same contract as the local store: a missing key is FileNotFoundError
                raise FileNotFoundError(self.uri(key)) from None
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def list(self, prefix: str) -> list[str]:
        """Keys under the folder `prefix`, sorted (folder semantics, like the local store:
        listing `ledger/rows/pip` must not return `ledger/rows/pip-2/...`)."""
        folder = prefix.strip("/")
        full = self.prefix + (f"{check_key(folder)}/" if folder else "")
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
            keys.extend(obj["Key"][len(self.prefix):] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def _cache_path(self, key: str) -> Path:
        # Keyed by bucket+prefix too, so two stores sharing a cache dir never collide.
        scope = hashlib.sha256(f"{self.bucket}/{self.prefix}".encode()).hexdigest()[:12]
        path = (self.cache_dir / scope / check_key(key)).resolve()
        if self.cache_dir not in path.parents:
            raise ValueError(f"artifact key {key!r} escapes the cache")
        return path

    def publish_local(self, key: str) -> None:
        self.write_bytes(key, self._cache_path(key).read_bytes())

    def local_path(self, key: str) -> Path:
        """A local copy of the key's bytes, refreshed when the object's ETag changes.

        For a key that does not exist yet this is the cache path where a caller may build the
        file; it is not uploaded until the caller passes its bytes to write_bytes().
        """
        path = self._cache_path(key)
        if key.startswith(_IMMUTABLE_PREFIXES) and path.is_file():
            return path
        head = self._head(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        if head is None:
            return path
        etag = head.get("ETag", "").strip('"')
        tag_file = path.with_name(path.name + ".etag")
        if path.is_file() and tag_file.is_file() and tag_file.read_text() == etag:
            return path
        with atomic_file(path) as handle:  # concurrent downloads of one key each land whole
            self.client.download_fileobj(self.bucket, self._key(key), handle)
        tag_file.write_text(etag)
        return path

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"
