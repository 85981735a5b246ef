"""Reference uploads: one per reference per book, however many page threads and runs ask for it.

The sprite sheet and hero page go with every page's request. Twelve page threads checking a plain dict and then
uploading raced to fill it (the sprite sheet was uploaded 13 times in one book), and the hero page's run and the
pages' run are separate processes under the daemon. So the first thread to ask uploads and the others wait on its
future, and, where the store is given, the upload's URL is remembered with its expiry for later runs.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from typing import Callable

from bookbug_assets.layout import upload_record_path
from bookbug_assets.providers.base import ProviderError

# A remembered upload is reused only while it has this long left: a page's job must start, and the model read its
# inputs, before the file expires (Replicate deletes /v1/files objects at their expires_at).
MIN_REMAINING = timedelta(hours=1)


class ReferenceUploads:
    """sha256 -> URL on one provider account's storage, shared by every thread of the process."""

    def __init__(self, account: str, store=None):
        self._account = account
        self._store = store
        self._lock = threading.Lock()
        self._futures: dict[str, Future[str]] = {}

    def url(self, data: bytes, upload: Callable[[bytes], tuple[str, str | None]]) -> str:
        """The URL of `data`; `upload(data)` -> (url, expires_at ISO or None) runs once, in the first thread."""
        sha = hashlib.sha256(data).hexdigest()
        with self._lock:
            pending = self._futures.get(sha)
            first = pending is None
            if first:
                pending = self._futures[sha] = Future()
        if not first:
            return shared_result(pending)
        try:
            url = self._remembered(sha)
            if url is None:
                url, expires_at = upload(data)
                self._remember(sha, url, expires_at)
        except BaseException as exc:
            with self._lock:
                self._futures.pop(sha, None)  # not kept: the next page to need it tries again
            pending.set_exception(exc)
            raise
        pending.set_result(url)
        return url

    def _remembered(self, sha: str) -> str | None:
        if self._store is None or not self._store.exists(key := upload_record_path(self._account, sha)):
            return None
        record = self._store.read_json(key)
        try:
            expires = datetime.fromisoformat(str(record["expires_at"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            return None
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=timezone.utc)
        return record.get("url") if expires - datetime.now(timezone.utc) > MIN_REMAINING else None

    def _remember(self, sha: str, url: str, expires_at: str | None) -> None:
        if self._store is not None and expires_at:  # no stated expiry: kept for this process only
            self._store.write_json(upload_record_path(self._account, sha), {"url": url, "expires_at": expires_at})


def shared_result(pending: Future) -> str:
    """The result another thread's upload produced; its failure is raised here as a ProviderError of this thread's."""
    try:
        return pending.result()
    except ProviderError as exc:
        raise ProviderError(exc.provider, str(exc).partition(": ")[2], transient=exc.transient, status=exc.status,
                            retry_after_s=exc.retry_after_s) from None
