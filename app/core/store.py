"""The files DecodeLab keeps (history records, window settings, model library, log file):
written atomically, read with bounded nesting, set aside when damaged.

Guarantees:

- ``atomic_write_text``: before and after a crash at any moment ``path`` holds the old or
  the new content in full. On any failure its temp file is removed (a full disk leaves no
  empty ``.tmp``) and an ``OSError`` becomes ``StorageError``: one line naming the file.
- ``sweep_temp`` removes temp files of writers that died: older than ``STALE_TEMP_SECONDS``,
  or (POSIX) whose writer's pid, part of the temp name, is gone.
- ``read_json`` never recurses without bound: nesting deeper than ``MAX_DEPTH`` is a
  ``ValueError``, as are NaN and Infinity.
- ``set_aside`` moves a damaged file out of the way and says where; it never raises.
- ``LogFileHandler``: a log file whose write fails prints one line on stderr and stops,
  instead of a traceback per record.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging.handlers
import os
import re
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import DecodeLabError

MAX_DEPTH = 64  # records nest 4 deep; anything near this is not ours
STALE_TEMP_SECONDS = 60.0
TEMP_SUFFIX = ".tmp"
_REASONS = {
    errno.ENOSPC: "disk full",
    getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOTDIR: "a file is in the way",
    errno.EEXIST: "a file is in the way",
}


class StorageError(DecodeLabError, OSError):
    """A file or folder of DecodeLab's own cannot be written or created (exit code 1).
    Also an ``OSError``, so callers that treat a failed save as a warning still do."""


def reason(exc: OSError) -> str:
    """A short reason for ``exc``: "disk full", "permission denied", … or its strerror."""
    return _REASONS.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__


def ensure_folder(folder: Path) -> Path:
    """Create ``folder`` (and parents) if needed; StorageError naming it if that fails."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder {folder}: {reason(exc)}") from exc
    return folder


# -- writing ---------------------------------------------------------------------------------


def temp_path(path: Path) -> Path:
    """A fresh temp name next to ``path``: hidden, with the writer's pid (see sweep_temp)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def atomic_write_text(path: Path, text: str) -> None:
    """Make ``path`` hold ``text`` (UTF-8), atomically and durably (fsync + os.replace)."""
    data = memoryview(text.encode("utf-8"))
    ensure_folder(path.parent)
    tmp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
        try:
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write {path}: {reason(exc)}") from exc
        raise
    # Make the rename itself durable; not possible (nor needed) on Windows.
    with contextlib.suppress(OSError, AttributeError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _writer_gone(name: str) -> bool:
    # ".<file>.<pid>.<random>.tmp": signal 0 only asks whether the pid exists (POSIX only:
    # on Windows os.kill would end the process).
    parts = name.split(".")
    if os.name != "posix" or len(parts) < 4 or not parts[-3].isdigit():
        return False
    pid = int(parts[-3])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):
        return False
    return False


def sweep_temp(folder: Path, name: str = "") -> int:
    """Remove temp files of dead writers in ``folder`` (only those of file ``name`` if
    given); returns how many. Never raises."""
    now = time.time()
    removed = 0
    try:
        candidates = list(folder.glob(f".{name}*{TEMP_SUFFIX}" if name else f".*{TEMP_SUFFIX}"))
    except OSError:
        return 0
    for p in candidates:
        with contextlib.suppress(OSError):
            if now - p.stat().st_mtime > STALE_TEMP_SECONDS or _writer_gone(p.name):
                p.unlink()
                removed += 1
    return removed


# -- reading ---------------------------------------------------------------------------------

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_KEEP = b'"[]{}'
_DROP = bytes(b for b in range(256) if b not in _KEEP)
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def json_depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest (brackets inside strings ignored)."""
    # In UTF-8 no byte of a multi-byte character is ASCII. Escapes go first (every quote
    # left then delimits a string), then all but quotes and brackets (one C pass), then
    # the strings; what is left is the brackets alone.
    skeleton = _ESCAPE.sub(b"", text.encode("utf-8", "surrogatepass")).translate(None, _DROP)
    brackets = _STRING.sub(b"", skeleton)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number DecodeLab writes")


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` and NaN/Infinity
    (ValueError), checked before parsing so that no RecursionError can happen."""
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"JSON nested {depth} deep (at most {max_depth})")
    return json.loads(text, parse_constant=_no_constant)


def read_json(path: Path, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON document in ``path``: OSError if unreadable, ValueError if not valid."""
    return loads(path.read_text(encoding="utf-8"), max_depth)


# -- damaged files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SetAside:
    """A damaged file that was skipped: why, and where it went (None: it could not move)."""

    file: Path
    reason: str
    moved_to: Path | None

    def __str__(self) -> str:
        where = f"; set aside as {self.moved_to}" if self.moved_to else ""
        return f"{self.file}: {self.reason}{where}"


def set_aside(file: Path, why: str, into: Path | None = None) -> SetAside:
    """Move the damaged ``file`` into folder ``into`` (same name), or when ``into`` is None
    rename it ``<name>.bad-<YYYYmmdd-HHMMSS>`` beside itself. Never raises."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if into is None:
        target = file.with_name(f"{file.name}.bad-{stamp}")
    else:
        target = into / file.name
    try:
        if into is not None:
            into.mkdir(parents=True, exist_ok=True)
        for n in range(1, 100):
            if not target.exists():
                break
            base = f"{file.name}.bad-{stamp}"
            target = (into or file.parent) / (base if n == 1 else f"{base}-{n}")
        os.replace(file, target)
    except OSError as exc:
        return SetAside(file, f"{why} (could not be moved: {reason(exc)})", None)
    return SetAside(file, why, target)


# -- the log file ----------------------------------------------------------------------------


class LogFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that, when a write fails (full disk, unwritable folder), prints
    one line on stderr and stops writing, instead of a traceback for every record."""

    def __init__(self, filename: Path, max_bytes: int, backup_count: int) -> None:
        super().__init__(filename, maxBytes=max_bytes, backupCount=backup_count,
                         encoding="utf-8", delay=True)
        self.failed = False
        self._unsaid: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)
        elif self._unsaid is not None:
            self._say()

    def handleError(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        self.failed = True
        exc = sys.exc_info()[1]
        why = reason(exc) if isinstance(exc, OSError) else str(exc)
        self._unsaid = (f"decodelab: cannot write the log file {self.baseFilename}: {why}; "
                        "logging to it stops\n")
        self._say()
        with contextlib.suppress(Exception):
            stream, self.stream = self.stream, None
            if stream is not None:
                stream.close()

    def close(self) -> None:
        if self._unsaid is not None:
            self._say(now=True)
        super().close()

    def _say(self, now: bool = False) -> None:
        # llama-cpp-python points stderr at the null device while it loads a model, and
        # llama.cpp logs then: keep the line until stderr is a real one again.
        if now or not _stderr_is_null():
            with contextlib.suppress(Exception):
                sys.stderr.write(self._unsaid or "")
                sys.stderr.flush()
            self._unsaid = None


def _stderr_is_null() -> bool:
    try:
        here, null = os.fstat(sys.stderr.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (here.st_dev, here.st_ino) == (null.st_dev, null.st_ino)
