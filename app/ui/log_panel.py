"""llama.cpp's log (and the app's own) in a panel.

The handler may be called on any thread (llama.cpp logs from the engine thread): it only
appends to a bounded deque under a lock; the panel drains it from a GUI-thread timer that
runs only while the panel is on screen (the deque keeps the last lines meanwhile), so a
hidden log costs a run nothing.
"""

from __future__ import annotations

import collections
import logging
import threading

from PySide6.QtCore import QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

LOGGERS = ("llama.cpp", "app")
MAX_LINES = 5000


class BufferHandler(logging.Handler):
    def __init__(self, maxlen: int = MAX_LINES) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                                            "%H:%M:%S"))
        self._lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self._buffer_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            return
        with self._buffer_lock:
            self._lines.append(line)

    def take(self) -> list[str]:
        with self._buffer_lock:
            lines = list(self._lines)
            self._lines.clear()
        return lines


class LogPanel(QWidget):
    def __init__(self, log_file: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        top = QHBoxLayout()
        self.where = QLabel(f"llama.cpp and DecodeLab log · also written to {log_file}"
                            if log_file else "llama.cpp and DecodeLab log")
        self.where.setObjectName("Hint")
        top.addWidget(self.where, 1)
        clear = QPushButton("Clear")
        top.addWidget(clear)
        layout.addLayout(top)
        self.view = QPlainTextEdit()
        self.view.setObjectName("LogView")
        self.view.setReadOnly(True)
        self.view.setUndoRedoEnabled(False)
        self.view.setMaximumBlockCount(MAX_LINES)
        self.view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        clear.clicked.connect(self.view.clear)
        layout.addWidget(self.view, 1)
        self.handler = BufferHandler()
        for name in LOGGERS:
            logging.getLogger(name).addHandler(self.handler)
        self.timer = QTimer(self)
        self.timer.setInterval(200)
        self.timer.timeout.connect(self.drain)
        self._attached = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._attached:
            self.drain()
            self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.timer.stop()

    def drain(self) -> None:
        lines = self.handler.take()
        if lines:
            self.view.appendPlainText("\n".join(lines))

    def detach(self) -> None:
        """Stop listening (the window closes); idempotent."""
        self._attached = False
        self.timer.stop()
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self.handler)
