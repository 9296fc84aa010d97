"""The one serial lane to llama.cpp: every call into a model runs on one engine thread, one
job at a time, in the order the jobs were submitted.

``Lane.submit(fn, progress=..., done=..., error=...)`` queues ``fn(session, cancel, report)``
on the engine thread, where the lane's worker owns the ``Session`` (every model context).
What ``fn`` passes to ``report`` reaches that job's ``progress`` callback, what it returns its
``done`` callback, and an exception its ``error`` callback as ``(kind, one line)`` (kind
"refused" or "failed", see ``describe_error``): each on the GUI thread, and each job's to
its own callbacks only. The returned ``JobHandle`` cancels the job: ``fn`` gets the
``threading.Event`` to check between its steps (llama.cpp's abort callback polls a run's
during a batch).

A background job (checking draft candidates against the target) waits until nothing else
is queued, so that a run or the inspection of a chosen model never waits behind a list.
Runs go through the same lane; their events stream through an ``EventBuffer`` that the run
controller drains on a GUI-thread timer (``app.ui.worker``), never one signal per token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import DecodeLabError, RefusedError

if TYPE_CHECKING:
    from app.core.session import Session

log = logging.getLogger("app.ui.lane")

Report = Callable[[object], None]
JobFn = Callable[["Session", threading.Event, Report], Any]
Done = Callable[[Any], None]
Failed = Callable[[str, str], None]  # kind ("refused" or "failed"), one-line message


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line message) for an exception: kind is "refused" or "failed"."""
    if isinstance(exc, RefusedError):
        return "refused", str(exc)
    if isinstance(exc, DecodeLabError):
        return "failed", str(exc)
    if isinstance(exc, MemoryError):
        return "failed", "out of memory: the model does not fit; try a smaller model or context"
    return "failed", f"unexpected error ({type(exc).__name__}): {exc}"


def _ignore(_x: object) -> None:
    """``report`` of a job nobody follows: nothing crosses threads."""


class JobHandle:
    """One job on the lane. ``cancel()`` sets the event ``fn`` checks; a background job
    cancelled before it was sent to the engine thread is dropped (it never runs and calls
    nothing). ``sent`` turns true when it is handed to the engine thread, ``ended`` just
    before its ``done`` or ``error`` callback runs."""

    def __init__(self, lane: Lane, fn: JobFn, progress: Report | None, done: Done | None,
                 error: Failed | None, background: bool, cancel: threading.Event) -> None:
        self.fn, self.progress, self.done, self.error = fn, progress, done, error
        self.background = background
        self.cancel_event = cancel
        self.sent = False
        self.ended = False
        self._lane = lane

    def cancel(self) -> None:
        self.cancel_event.set()
        self._lane._drop(self)

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class _Engine(QObject):
    """Lives on the engine thread; ``execute`` runs there, one job at a time."""

    reported = Signal(object, object)  # JobHandle, what fn reported
    ended = Signal(object, object, object)  # JobHandle, what fn returned, (kind, message)|None

    def __init__(self) -> None:
        super().__init__()
        from app.core.cost_memory import default_memory
        from app.core.session import Session  # loads llama.cpp: not at import time

        self.session = Session(default_memory())

    @Slot(object)
    def execute(self, job: JobHandle) -> None:
        report = (lambda x: self.reported.emit(job, x)) if job.progress else _ignore
        try:
            out = job.fn(self.session, job.cancel_event, report)
        except Exception as exc:
            kind, message = describe_error(exc)
            if not isinstance(exc, DecodeLabError | RefusedError | MemoryError | OSError):
                log.exception("a job on the engine lane failed")
            if isinstance(exc, MemoryError):
                self.session.close()  # free what was loaded before memory ran out
            self.ended.emit(job, None, (kind, message))
        else:
            self.ended.emit(job, out, None)


class Lane(QObject):
    """The GUI-thread handle of the engine thread: submit jobs, each with its callbacks.

    ``busy`` is true while a job is queued or running (background ones included);
    ``busy_changed`` says when that changes, after the callbacks of the job that ended."""

    busy_changed = Signal(bool)
    _send = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._sent = 0  # sent to the engine thread and not yet ended
        self._waiting: list[JobHandle] = []  # background jobs not yet sent
        self._live: list[JobHandle] = []  # submitted and not ended (to cancel on shutdown)
        self._was_busy = False
        self._thread = QThread()
        self._thread.setObjectName("decodelab-engine")
        self._engine = _Engine()
        self._engine.moveToThread(self._thread)
        self._send.connect(self._engine.execute)
        self._engine.reported.connect(self._reported)
        self._engine.ended.connect(self._ended)
        self._thread.start()

    def submit(self, fn: JobFn, *, progress: Report | None = None, done: Done | None = None,
               error: Failed | None = None, background: bool = False,
               cancel: threading.Event | None = None) -> JobHandle:
        """Queue ``fn(session, cancel, report)``; ``cancel`` is the event it gets (a new
        one if None). A failure without ``error`` is logged."""
        job = JobHandle(self, fn, progress, done, error, background,
                        cancel if cancel is not None else threading.Event())
        self._live.append(job)
        if background:
            self._waiting.append(job)
            self._pump()
        else:
            self._dispatch(job)
        self._update_busy()
        return job

    @property
    def busy(self) -> bool:
        return self._sent > 0 or bool(self._waiting)

    def cancel_all(self) -> None:
        """Cancel every job submitted and not ended (closing the window)."""
        for job in list(self._live):
            job.cancel()

    def shutdown(self, timeout_ms: int = 20000) -> None:
        """Cancel what runs, stop the thread and free the models (call once, on close)."""
        self.cancel_all()
        self._thread.quit()
        if not self._thread.wait(timeout_ms):
            log.error("the engine thread did not stop within %d ms", timeout_ms)
            return
        self._engine.session.close()

    # -- inside ---------------------------------------------------------------------------
    def _dispatch(self, job: JobHandle) -> None:
        self._sent += 1
        job.sent = True
        self._send.emit(job)

    def _pump(self) -> None:
        """Send the next background job if nothing else is on the engine thread."""
        if self._sent == 0 and self._waiting:
            self._dispatch(self._waiting.pop(0))

    def _drop(self, job: JobHandle) -> None:
        if job in self._waiting:
            self._waiting.remove(job)
            self._live.remove(job)
            job.ended = True
            self._update_busy()

    def _update_busy(self) -> None:
        if self.busy != self._was_busy:
            self._was_busy = self.busy
            self.busy_changed.emit(self.busy)

    @Slot(object, object)
    def _reported(self, job: JobHandle, x: object) -> None:
        if job.progress is not None and not job.ended:
            job.progress(x)

    @Slot(object, object, object)
    def _ended(self, job: JobHandle, out: object, failure: tuple[str, str] | None) -> None:
        job.ended = True
        if job in self._live:
            self._live.remove(job)
        try:
            if failure is None:
                if job.done is not None:
                    job.done(out)
            elif job.error is not None:
                job.error(*failure)
            else:
                log.warning("a job on the engine lane failed: %s", failure[1])
        finally:
            self._sent -= 1
            self._pump()
            self._update_busy()
