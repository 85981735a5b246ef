"""A story sensor's per-file state, kept in the artifact store; the Dagster cursor only names it.

Dagster writes a sensor's cursor into every tick row it stores, skipped ticks included (one every 15 s; by
default skipped ticks are kept 7 days and ticks that requested runs forever:
https://docs.dagster.io/guides/deploy/dagster-yaml#data-retention). A cursor holding a fingerprint per file (about
120 bytes each) therefore costs its full size every 15 s, whatever changed.
Here the state lives in one store object per version and the cursor is a pointer of about 150 bytes whatever the
number of files, so the tick rows stay the same size at 10 or 10,000 files.

Each version is a new, numbered, content-addressed object that is never rewritten. That keeps Dagster's own
guarantee: the daemon commits the cursor together with the tick's run requests, and a tick that fails keeps the old
cursor, which still names the old state (the object it read is never deleted by the tick that read it). Only the
last KEEP versions are kept. An older cursor that is only inline JSON is read as it is (and replaced next tick); a
pointer whose object is gone starts afresh, which looks at every file again without rebuilding built books.
"""

from __future__ import annotations

import hashlib
import json

from bookbug_assets.storage import ArtifactStore

STATE_PREFIX = "intake/sensor-state"
KEEP = 8  # versions kept besides the one a tick read: a few ticks of history to look at when something goes wrong


def _pointer(cursor: str | None) -> dict | None:
    if not cursor:
        return None
    try:
        raw = json.loads(cursor)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) and isinstance(raw.get("state"), str) else None


def load_sensor_state(store: ArtifactStore, cursor: str | None, log) -> str | None:
    """The state a cursor stands for: the object a pointer names, an older inline cursor as it is, or None."""
    pointer = _pointer(cursor)
    if pointer is None:
        return cursor  # inline (an older cursor) or empty: the scanner parses it or starts afresh
    try:
        return store.read_bytes(pointer["state"]).decode("utf-8")
    except Exception as exc:  # noqa: BLE001 - a lost state starts afresh; built books are not rebuilt
        log.warning(f"sensor state {pointer['state']} cannot be read ({type(exc).__name__}); every file is looked "
                    "at again (books already built are not rebuilt)")
        return None


def save_sensor_state(store: ArtifactStore, sensor: str, state: str, cursor: str | None, entries: int) -> str:
    """Store `state` as a new version unless the cursor already names these bytes; the new cursor."""
    pointer = _pointer(cursor)
    digest = hashlib.sha256(state.encode("utf-8")).hexdigest()[:16]
    if pointer is not None and pointer["state"].endswith(f"-{digest}.json"):
        return cursor  # nothing changed: the same pointer, no write
    seq = int(pointer.get("seq", 0)) + 1 if pointer is not None else 1
    key = f"{STATE_PREFIX}/{sensor}/{seq:012d}-{digest}.json"
    store.write_bytes(key, state.encode("utf-8"))
    read = pointer["state"] if pointer is not None else None
    for old in store.list(f"{STATE_PREFIX}/{sensor}"):
        name = old.rsplit("/", 1)[-1]
        if old not in (key, read) and name[:12].isdigit() and int(name[:12]) <= seq - KEEP:
            store.delete(old)
    return json.dumps({"state": key, "seq": seq, "entries": entries}, sort_keys=True)
