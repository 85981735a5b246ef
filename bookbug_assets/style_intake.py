"""Style folders as they arrive: which are new or changed, which are valid, and why the others are not.

A style is a folder under the styles folder (`style.yaml` + `images/` with a caption per image). The style sensor
calls `scan_style_folder` each tick: a folder whose files changed since the last tick is validated here, before any
book uses it, and gets `style.rejected.txt` beside its `style.yaml` when it is not valid (removed again once it is).
Only regular files inside the folder count: a symlinked style folder or style.yaml is refused, not followed.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from bookbug_assets.layout import style_dataset_key, style_profile_key
from bookbug_assets.storage import ArtifactStore, atomic_file
from bookbug_assets.styles import StyleError, dataset_hash, dataset_items, load_style_config, style_names

REASON_FILE = "style.rejected.txt"
MAX_REASON_CHARS = 4000  # a reason names files and fields; it never needs to be long


@dataclass
class StyleScan:
    accepted: list[str] = field(default_factory=list)  # valid and new or changed: build them
    unchanged_built: list[str] = field(default_factory=list)  # valid, and their dataset is already built as it is
    rejected: dict[str, str] = field(default_factory=dict)  # name -> reason
    seen: dict[str, str] = field(default_factory=dict)  # name -> fingerprint, the sensor's next cursor


def folder_fingerprint(style_dir: Path) -> str:
    """What changes when a user edits the style: the names, sizes and modification times of its files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in style_dir.rglob("*") if p.name != REASON_FILE):
        try:
            info = path.lstat()
        except OSError:
            continue
        digest.update(f"{path.relative_to(style_dir)}\0{info.st_mode}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def style_problem(style_dir: Path) -> str | None:
    """Why this folder cannot be a style (the first problem, naming the file), or None when it can."""
    if style_dir.is_symlink() or not style_dir.is_dir():
        return f"{style_dir.name}: a style must be a folder inside the styles folder, not a link"
    config_path = style_dir / "style.yaml"
    try:
        if config_path.exists() and not stat.S_ISREG(config_path.lstat().st_mode):
            return f"{config_path}: must be a regular file (links, FIFOs and devices are not read)"
        load_style_config(style_dir)
        images = style_dir / "images"
        if images.is_symlink():
            return f"{images}: must be a folder inside the style, not a link"
        dataset_items(style_dir)
    except StyleError as exc:
        return str(exc)
    except (OSError, ValueError) as exc:  # an unreadable or undecodable image is that file's problem
        return f"{style_dir}: {type(exc).__name__}: {exc}"
    return None


def dataset_is_built(store: ArtifactStore, style_dir: Path) -> bool:
    """The stored style_dataset is of exactly these files (make demo or an earlier run built it)."""
    key = style_dataset_key(style_dir.name)
    if not store.exists(key):
        return False
    items = dataset_items(style_dir)
    return store.read_json(key).get("dataset_sha256") == dataset_hash(items, load_style_config(style_dir))


def built_styles(store: ArtifactStore, styles: set[str]) -> set[str]:
    """The styles whose style_lora is materialized (its profile is in the store, what every book run reads): a story
    sensor holds back a book in any other style until the style sensor's run has built it."""
    found = set()
    for name in styles:
        try:
            if store.exists(style_profile_key(name)):
                found.add(name)
        except Exception:  # noqa: BLE001 - unknown counts as not built: the book waits a tick, it does not fail
            continue
    return found


def scan_style_folder(styles_dir: Path, seen: dict[str, str], store: ArtifactStore | None = None,
                      log=None) -> StyleScan:
    """Validate every style folder that changed since `seen`; write or clear its reason file."""
    scan = StyleScan(seen=dict(seen))
    for name in style_names(styles_dir):
        style_dir = styles_dir / name
        fingerprint = folder_fingerprint(style_dir)
        if seen.get(name) == fingerprint:
            continue
        scan.seen[name] = fingerprint
        problem = style_problem(style_dir)
        if problem is not None:
            scan.rejected[name] = problem
            _write_reason(style_dir, problem, log)
            continue
        _clear_reason(style_dir)
        if store is not None and dataset_is_built(store, style_dir) and store.exists(style_profile_key(name)):
            scan.unchanged_built.append(name)  # both built (make demo): a book in it need not wait
        else:
            scan.accepted.append(name)
    return scan


def _write_reason(style_dir: Path, reason: str, log) -> None:
    if style_dir.is_symlink():
        return  # never write through a link out of the styles folder
    text = reason if len(reason) <= MAX_REASON_CHARS else reason[:MAX_REASON_CHARS] + " ..."
    try:
        with atomic_file(style_dir / REASON_FILE) as handle:
            handle.write(f"{text}\nFix it and save: the style sensor looks again on its next tick.\n".encode())
    except OSError as exc:
        if log is not None:
            log.error(f"cannot write {style_dir / REASON_FILE}: {exc}")


def _clear_reason(style_dir: Path) -> None:
    path = style_dir / REASON_FILE
    if path.is_file() and not path.is_symlink():
        os.unlink(path)
