"""Route llama.cpp's log into Python logging, and remember the last errors.

``verbose=False`` hides real errors while letting warnings through; our own callback sends
everything to the ``llama.cpp`` logger (the GUI shows it in a panel, the app writes a log
file) and keeps the recent error lines so that a failed load can say why.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import threading

import llama_cpp

logger = logging.getLogger("llama.cpp")

# ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the last line).
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_CONT = 5
_lock = threading.Lock()
_errors: collections.deque[str] = collections.deque(maxlen=8)
_partial: list[str] = []
_level = [logging.INFO]
_installed: list[object] = []


def _on_log(level: int, text: bytes | None, _user_data: ctypes.c_void_p) -> None:
    if not text:
        return
    message = text.decode("utf-8", errors="replace")
    with _lock:
        if level != _CONT and not _partial:
            _level[0] = _LEVELS.get(level, logging.DEBUG)
        # Pieces without a newline are continued by the next message.
        _partial.append(message)
        if not message.endswith("\n"):
            return
        line = "".join(_partial).rstrip()
        _partial.clear()
        py_level = _level[0]
    if py_level >= logging.ERROR:
        _errors.append(line)
    # An exception escaping a ctypes callback prints a traceback per llama.cpp line; the
    # log handlers report their own failures (once: store.LogFileHandler).
    with contextlib.suppress(Exception):
        logger.log(py_level, line)


def install() -> None:
    """Install the callback once per process (idempotent)."""
    with _lock:
        if _installed:
            return
        callback = llama_cpp.llama_log_callback(_on_log)
        _installed.append(callback)  # keep it alive: llama.cpp holds only the pointer
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def last_error() -> str | None:
    with _lock:
        return _errors[-1] if _errors else None
