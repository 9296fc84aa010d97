"""What crosses from the engine thread to the GUI thread besides a job's result: a run's
events, and the lane for fetching models.

Run events never travel as one signal per token: the engine callback appends them to the
run's ``EventBuffer`` (a list under a lock), which the run controller drains from a
GUI-thread QTimer. A ``RunJob`` is a run on the engine lane (``app.ui.lane``): its request,
its buffer and the event that stops it (the engine checks it between steps, llama.cpp's
abort callback during a batch). Fetching runs on a thread of its own, so a download never
blocks inspecting or running.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import DecodeLabError
from app.core.events import Event, RunRequest, RunResult
from app.ui.lane import Report, describe_error

if TYPE_CHECKING:
    from app.core.session import Session

log = logging.getLogger("app.ui.worker")


class EventBuffer:
    """Events handed from the engine thread to the GUI thread in batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Event] = []

    def put(self, event: Event) -> None:
        with self._lock:
            self._items.append(event)

    def take(self) -> list[Event]:
        with self._lock:
            items, self._items = self._items, []
        return items


@dataclass
class RunJob:
    """A run on the engine lane: ``run`` is the lane's job; it streams into ``buffer`` and
    stops at the next step once ``cancel`` is set."""

    run_id: int
    request: RunRequest
    buffer: EventBuffer = field(default_factory=EventBuffer)
    cancel: threading.Event = field(default_factory=threading.Event)

    def run(self, session: Session, cancel: threading.Event, _report: Report) -> RunResult:
        r = self.request
        return session.run(r.target, r.draft, r.prompt, r.settings, self.buffer.put, cancel)


class FetchWorker(QObject):
    progress = Signal(object)  # FetchProgress
    finished = Signal(str, str)  # name, path
    failed = Signal(str, str, bool)  # name, message, cancelled

    @Slot(str, object)
    def fetch(self, name: str, cancel: threading.Event) -> None:
        from app.core.models import FetchCancelled, fetch

        try:
            path = fetch(name, progress=self.progress.emit, cancel=cancel)
        except FetchCancelled:
            self.failed.emit(name, f"fetching {name} was cancelled", True)
        except Exception as exc:
            if not isinstance(exc, DecodeLabError | LookupError):
                log.exception("fetching %s", name)
            self.failed.emit(name, describe_error(exc)[1], False)
        else:
            self.finished.emit(name, str(path))


class FetchHost(QObject):
    """Fetches pinned models on their own thread (a download never blocks inspection)."""

    progress = Signal(object)
    finished = Signal(str, str)
    failed = Signal(str, str, bool)
    _do_fetch = Signal(str, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane: QThread | None = None
        self.worker: FetchWorker | None = None
        self.active: str | None = None
        self._cancel = threading.Event()

    def fetch(self, name: str) -> bool:
        """Start fetching ``name``; False if a fetch is already going."""
        if self.active is not None:
            return False
        if self.lane is None:
            self.lane = QThread()
            self.lane.setObjectName("decodelab-fetch")
            self.worker = FetchWorker()
            self.worker.moveToThread(self.lane)
            self._do_fetch.connect(self.worker.fetch)
            self.worker.progress.connect(self._relay_progress)
            self.worker.finished.connect(self._relay_finished)
            self.worker.failed.connect(self._relay_failed)
            self.lane.start()
        self.active = name
        self._cancel = threading.Event()
        self._do_fetch.emit(name, self._cancel)
        return True

    def cancel(self) -> None:
        self._cancel.set()

    @Slot(object)
    def _relay_progress(self, progress: object) -> None:
        self.progress.emit(progress)

    @Slot(str, str)
    def _relay_finished(self, name: str, path: str) -> None:
        self.active = None
        self.finished.emit(name, path)

    @Slot(str, str, bool)
    def _relay_failed(self, name: str, message: str, cancelled: bool) -> None:
        self.active = None
        self.failed.emit(name, message, cancelled)

    def shutdown(self, timeout_ms: int = 20000) -> None:
        self._cancel.set()
        if self.lane is not None:
            self.lane.quit()
            if not self.lane.wait(timeout_ms):
                log.error("the fetch thread did not stop within %d ms", timeout_ms)
