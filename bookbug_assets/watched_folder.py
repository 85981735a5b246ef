"""A folder people drop files into (stories, reviews): listed, read and answered without following a link.

Only regular files directly inside the folder are read. A symbolic link, FIFO, device or socket gets a reason
and is never opened: a link may point anywhere (another user's file, /etc/shadow) and whatever it names would
end up in a book or a reason file; opening a FIFO blocks the reader. A regular file with other hard links is
refused the same way (its content lives elsewhere too). Files are opened relative to the folder with O_NOFOLLOW
and checked again on the open descriptor, so a name swapped for a link after the listing is refused as well.

Hidden names (a leading dot) are not looked at: editors and uploaders keep unfinished files there (vim's
`.name.swp`, rsync's `.name.XXXXXX` until it renames the finished upload). Sub-folders are not uploads.

Reason files go to `<folder>/rejected/`, which must be a real folder inside the watched one: where it is a link
the reason is refused and logged, never written through it. See open(2) for O_NOFOLLOW and O_NONBLOCK:
https://man7.org/linux/man-pages/man2/open.2.html
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

REJECTED_DIR = "rejected"
REASON_SUFFIX = ".reason.txt"
MAX_REASON_BYTES = 8 * 1024  # a reason names the file, its fields and what to fix; never the file itself
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class EntryRefused(Exception):
    """A folder entry that is not read: `problem` says what it is ("a symbolic link") and what to do."""

    def __init__(self, name: str, problem: str):
        self.name, self.problem = name, problem
        super().__init__(f"{name}: not read: {problem}")


@dataclass(frozen=True)
class Entry:
    """One entry of a watched folder as `lstat` saw it; `problem` is why it is not read (None: a regular file)."""

    name: str
    size: int
    mtime_ns: int
    problem: str | None = None

    @property
    def look(self) -> str:
        """What changes when the file is written or touched, without reading it."""
        return f"{self.size}:{self.mtime_ns}"


def kind_problem(info: os.stat_result) -> str | None:
    """Why an entry with this stat is not read, or None for a regular file with one link."""
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return "it is a symbolic link; links are not followed, copy the file itself into the folder"
    if stat.S_ISFIFO(mode):
        return "it is a FIFO (named pipe), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "it is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "it is a socket, not a file"
    if not stat.S_ISREG(mode):
        return "it is not a regular file"
    if info.st_nlink > 1:
        return "it has other hard links, so its content lives outside the folder too; copy the file instead"
    return None


def name_problem(name: str) -> str | None:
    """A file name must be printable UTF-8: it reaches run tags, logs and the UI."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8 text; rename it"
    if not name.isprintable():
        return "its name holds control or invisible characters; rename it"
    return None


def list_entries(folder: Path) -> list[Entry]:
    """The folder's files, oldest first (then by name): the order a bounded batch takes them in."""
    entries: list[Entry] = []
    try:
        scan = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with scan:
        for item in scan:
            if item.name.startswith("."):
                continue
            try:
                info = item.stat(follow_symlinks=False)
            except OSError:  # gone since the listing
                continue
            if stat.S_ISDIR(info.st_mode):
                continue
            problem = name_problem(item.name) or kind_problem(info)
            entries.append(Entry(item.name, info.st_size, info.st_mtime_ns, problem))
    return sorted(entries, key=lambda e: (e.mtime_ns, e.name))


def read_regular(folder: Path, name: str, max_bytes: int) -> bytes:
    """The bytes of `folder/name` if it is a regular file inside the folder; raises EntryRefused otherwise.

    A file over `max_bytes` raises EntryRefused without being read. OSError (no permission, vanished) passes."""
    if "/" in name or name in ("", ".", ".."):
        raise EntryRefused(name, "it is not a file name inside the folder")
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fd = os.open(name, _OPEN_READ, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise EntryRefused(name, kind_problem(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
                                   or "it is a symbolic link") from None
            raise
    finally:
        os.close(dir_fd)
    try:
        info = os.fstat(fd)
        problem = kind_problem(info)
        if problem:
            raise EntryRefused(name, problem)
        if info.st_size > max_bytes:
            raise EntryRefused(name, f"file is {info.st_size:,} bytes; it must be under {max_bytes:,}")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # it grew while being read
            raise EntryRefused(name, f"file is over {max_bytes:,} bytes; it must be under {max_bytes:,}")
        return b"".join(chunks)
    finally:
        os.close(fd)


def reason_file_name(name: str) -> str:
    """The reason file of `name`: readable, and distinct for names that differ only in the characters it replaces
    (`a b.yaml` and `a_b.yaml`, `é.yaml` and `è.yaml` would otherwise share one reason file)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:120] or "unnamed"
    if safe != name:
        safe = f"{safe}~{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
    return safe + REASON_SUFFIX


def _open_rejected(folder: Path, create: bool) -> int | None:
    """A descriptor of <folder>/rejected, refusing a link there (ELOOP) or a file (ENOTDIR); None if absent."""
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if create:
            try:
                os.mkdir(REJECTED_DIR, dir_fd=folder_fd)
            except FileExistsError:
                pass
        try:
            return os.open(REJECTED_DIR, _OPEN_DIR, dir_fd=folder_fd)
        except FileNotFoundError:
            if create:
                raise
            return None
    finally:
        os.close(folder_fd)


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(path.lstat().st_mode)
    except OSError:
        return False


def _clip_reason(reason: str) -> bytes:
    data = (reason + "\n").encode("utf-8", "backslashreplace")
    if len(data) <= MAX_REASON_BYTES:
        return data
    note = b"\n... (reason cut at 8 KB)\n"
    return data[:MAX_REASON_BYTES - len(note)].decode("utf-8", "ignore").encode() + note


def write_reason(folder: Path, name: str, reason: str, log=None) -> Path | None:
    """`<folder>/rejected/<name>.reason.txt`, written whole (temp file, then rename, both inside that folder).

    Never raises: a folder that cannot be written (or a `rejected` that is a link or a file) is logged and the
    rejection still shows in the tick's log."""
    target = reason_file_name(name)
    try:
        dir_fd = _open_rejected(folder, create=True)
    except OSError as exc:
        if log is not None:
            why = "it is a link, not a folder inside the watched one; not writing through it" \
                if _is_link(folder / REJECTED_DIR) else exc.strerror or type(exc).__name__
            log.error(f"cannot write the reason file for {name!r} into {folder / REJECTED_DIR}: {why}")
        return None
    tmp = f".{target}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as handle:
            handle.write(_clip_reason(reason))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        if log is not None:
            log.error(f"cannot write the reason file for {name!r} into {folder / REJECTED_DIR}: "
                      f"{exc.strerror or type(exc).__name__}")
        return None
    finally:
        os.close(dir_fd)
    return folder / REJECTED_DIR / target


def clear_reason(folder: Path, name: str) -> bool:
    """Remove the reason file of `name` (it was accepted since); True if one was there. Never follows a link."""
    try:
        dir_fd = _open_rejected(folder, create=False)
    except OSError:
        return False
    if dir_fd is None:
        return False
    try:
        os.unlink(reason_file_name(name), dir_fd=dir_fd)
        return True
    except OSError:
        return False
    finally:
        os.close(dir_fd)
