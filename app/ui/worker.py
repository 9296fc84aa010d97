"""The one serial lane to llama.cpp, and the lane for fetching models.

``EngineHost`` (GUI thread) owns a ``QThread`` and an ``EngineWorker`` living on it; the
worker owns the ``Session`` (every model context) and does all inspection, loading, prefill
and decoding, one job at a time, in the order asked. Requests go to the worker through
queued signals; its results come back through queued signals that the host relays from a
GUI-thread slot (so tests and widgets only ever see GUI-thread emissions).

Run events never travel as one signal per token: the engine callback appends them to an
``EventBuffer`` (a list under a lock) which the window drains from a GUI-thread QTimer.
Stopping sets the run's ``threading.Event``: the engine checks it between steps and
llama.cpp's abort callback polls it during a batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.core.errors import DecodeLabError, RefusedError
from app.core.events import Event, RunSettings

log = logging.getLogger("app.ui.worker")


# Inspected models, shared by every worker of the process (a big vocabulary takes seconds
# to read); keyed by resolved path, size and mtime, so a changed file is read again.
_INFO_CACHE: dict[tuple[str, int, int], Any] = {}
_INFO_LOCK = threading.Lock()
INFO_CACHE_SIZE = 32


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
    run_id: int
    target: str
    draft: str | None
    prompt: str
    settings: RunSettings
    buffer: EventBuffer = field(default_factory=EventBuffer)
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass
class Job:
    """Any other work for the lane (a comparison, a sweep, a measurement, saving to the
    history): ``fn(session, cancel, progress)`` runs on the engine thread; ``progress(x)``
    reaches the GUI thread as ``EngineHost.job_progress(job_id, x)``, its return value as
    ``job_finished`` and an exception as ``job_failed``."""

    job_id: int
    fn: Callable[[Any, threading.Event, Callable[[object], None]], object]
    cancel: threading.Event = field(default_factory=threading.Event)


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line message) for an exception: kind is "refused" or "failed"."""
    if isinstance(exc, RefusedError):
        return "refused", str(exc)
    if isinstance(exc, DecodeLabError):
        return "failed", str(exc)
    if isinstance(exc, MemoryError):
        return "failed", "out of memory: the model does not fit; try a smaller model or context"
    return "failed", f"unexpected error ({type(exc).__name__}): {exc}"


class EngineWorker(QObject):
    """Lives on the engine thread; every slot runs there, one at a time."""

    inspected = Signal(str, str, object)  # role, path, ModelInfo
    inspect_failed = Signal(str, str, str)  # role, path, message
    surveyed = Signal(str, object)  # target path, {draft path: Compatibility | str}
    run_started = Signal(int)
    run_finished = Signal(int, object)  # run id, RunResult
    run_failed = Signal(int, str, str)  # run id, kind, message
    job_progress = Signal(int, object)  # job id, anything
    job_finished = Signal(int, object)  # job id, what fn returned
    job_failed = Signal(int, str, str)  # job id, kind, message
    job_done = Signal()

    def __init__(self) -> None:
        super().__init__()
        from app.core.session import Session

        self.session = Session()

    def info(self, path: str) -> Any:
        """ModelInfo of ``path``, cached while the file's size and mtime stay the same."""
        from app.core.gguf_info import inspect_model

        try:
            st = os.stat(path)
            key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
        except OSError:
            return inspect_model(path)  # raises ModelFileError naming the file
        with _INFO_LOCK:
            cached = _INFO_CACHE.get(key)
        if cached is None:
            cached = inspect_model(path)
            with _INFO_LOCK:
                while len(_INFO_CACHE) >= INFO_CACHE_SIZE:  # oldest first (insertion order)
                    del _INFO_CACHE[next(iter(_INFO_CACHE))]
                _INFO_CACHE[key] = cached
        return cached

    @Slot(str, str)
    def inspect(self, role: str, path: str) -> None:
        try:
            info = self.info(path)
        except Exception as exc:
            if not isinstance(exc, DecodeLabError):
                log.exception("inspecting %s", path)
            self.inspect_failed.emit(role, path, describe_error(exc)[1])
        else:
            self.inspected.emit(role, path, info)
        finally:
            self.job_done.emit()

    @Slot(str, object)
    def survey(self, target_path: str, draft_paths: list[str]) -> None:
        from app.core.compat import check_draft

        results: dict[str, Any] = {}
        try:
            target = self.info(target_path)
            for path in draft_paths:
                try:
                    results[path] = check_draft(target, self.info(path))
                except Exception as exc:
                    results[path] = describe_error(exc)[1]
        except Exception as exc:
            log.info("survey skipped: %s", describe_error(exc)[1])
        finally:
            self.surveyed.emit(target_path, results)
            self.job_done.emit()

    @Slot(object)
    def run(self, req: RunJob) -> None:
        self.run_started.emit(req.run_id)
        try:
            result = self.session.run(req.target, req.draft, req.prompt, req.settings,
                                      req.buffer.put, req.cancel)
        except Exception as exc:
            kind, message = describe_error(exc)
            if kind == "failed" and not isinstance(exc, DecodeLabError | MemoryError):
                log.exception("run %d failed", req.run_id)
            if isinstance(exc, MemoryError):
                self.session.close()
            self.run_failed.emit(req.run_id, kind, message)
        else:
            self.run_finished.emit(req.run_id, result)
        finally:
            self.job_done.emit()

    @Slot(object)
    def call(self, job: Job) -> None:
        try:
            out = job.fn(self.session, job.cancel,
                         lambda x: self.job_progress.emit(job.job_id, x))
        except Exception as exc:
            kind, message = describe_error(exc)
            if kind == "failed" and not isinstance(exc, DecodeLabError | MemoryError | OSError):
                log.exception("job %d failed", job.job_id)
            if isinstance(exc, MemoryError):
                self.session.close()
            self.job_failed.emit(job.job_id, kind, message)
        else:
            self.job_finished.emit(job.job_id, out)
        finally:
            self.job_done.emit()


class EngineHost(QObject):
    """The GUI-thread handle of the engine lane: submit jobs, receive results."""

    inspected = Signal(str, str, object)
    inspect_failed = Signal(str, str, str)
    surveyed = Signal(str, object)
    run_started = Signal(int)
    run_finished = Signal(int, object)
    run_failed = Signal(int, str, str)
    job_progress = Signal(int, object)
    job_finished = Signal(int, object)
    job_failed = Signal(int, str, str)
    busy_changed = Signal(bool)

    _do_inspect = Signal(str, str)
    _do_survey = Signal(str, object)
    _do_run = Signal(object)
    _do_call = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pending = 0
        self._was_busy = False
        self._survey_queue: list[tuple[str, str]] = []
        self.current_run: RunJob | None = None
        self.jobs: dict[int, Job] = {}  # submitted and not yet ended
        self._next_job = 0
        self.lane = QThread()
        self.lane.setObjectName("decodelab-engine")
        self.worker = EngineWorker()
        self.worker.moveToThread(self.lane)
        self._do_inspect.connect(self.worker.inspect)
        self._do_survey.connect(self.worker.survey)
        self._do_run.connect(self.worker.run)
        self._do_call.connect(self.worker.call)
        self.worker.inspected.connect(self._relay_inspected)
        self.worker.inspect_failed.connect(self._relay_inspect_failed)
        self.worker.surveyed.connect(self._relay_surveyed)
        self.worker.run_started.connect(self._relay_run_started)
        self.worker.run_finished.connect(self._relay_run_finished)
        self.worker.run_failed.connect(self._relay_run_failed)
        self.worker.job_progress.connect(self._relay_job_progress)
        self.worker.job_finished.connect(self._relay_job_finished)
        self.worker.job_failed.connect(self._relay_job_failed)
        self.worker.job_done.connect(self._job_done)
        self.lane.start()

    # -- submitting -------------------------------------------------------------------------
    def _submit(self) -> None:
        self.pending += 1
        self._update_busy()

    def _update_busy(self) -> None:
        if self.busy != self._was_busy:
            self._was_busy = self.busy
            self.busy_changed.emit(self.busy)

    def inspect(self, role: str, path: str) -> None:
        self._submit()
        self._do_inspect.emit(role, path)

    def survey(self, target_path: str, draft_paths: list[str]) -> None:
        """Check draft candidates against the target, one file per job and only when the
        lane is otherwise idle: inspecting big vocabularies takes seconds, and a run or the
        inspection of a chosen model must not wait behind the whole list."""
        self._survey_queue = [(t, p) for t, p in self._survey_queue if t == target_path]
        queued = {p for _, p in self._survey_queue}
        self._survey_queue += [(target_path, p) for p in draft_paths if p not in queued]
        self._pump()
        self._update_busy()

    def check_pair(self, target_path: str, draft_path: str) -> None:
        """The compatibility of the chosen draft: submitted at once, ahead of the survey."""
        self._survey_queue = [(t, p) for t, p in self._survey_queue if p != draft_path]
        self._submit()
        self._do_survey.emit(target_path, [draft_path])

    def _pump(self) -> None:
        if self.pending == 0 and self._survey_queue:
            target, path = self._survey_queue.pop(0)
            self._submit()
            self._do_survey.emit(target, [path])

    def run(self, req: RunJob) -> None:
        self.current_run = req
        self._submit()
        self._do_run.emit(req)

    def call(self, fn: Callable[[Any, threading.Event, Callable[[object], None]], object]
             ) -> Job:
        """Queue ``fn`` on the lane (see ``Job``); returns the job, whose ``cancel`` stops it."""
        self._next_job += 1
        job = Job(self._next_job, fn)
        self.jobs[job.job_id] = job
        self._submit()
        self._do_call.emit(job)
        return job

    def stop(self) -> None:
        if self.current_run is not None:
            self.current_run.cancel.set()

    def stop_all(self) -> None:
        """Cancel the run and every queued job (closing the window)."""
        self.stop()
        for job in self.jobs.values():
            job.cancel.set()

    @property
    def busy(self) -> bool:
        return self.pending > 0 or bool(self._survey_queue)

    # -- relays (GUI thread) ----------------------------------------------------------------
    @Slot()
    def _job_done(self) -> None:
        self.pending = max(0, self.pending - 1)
        self._pump()
        self._update_busy()

    @Slot(str, str, object)
    def _relay_inspected(self, role: str, path: str, info: object) -> None:
        self.inspected.emit(role, path, info)

    @Slot(str, str, str)
    def _relay_inspect_failed(self, role: str, path: str, message: str) -> None:
        self.inspect_failed.emit(role, path, message)

    @Slot(str, object)
    def _relay_surveyed(self, target: str, results: object) -> None:
        self.surveyed.emit(target, results)

    @Slot(int)
    def _relay_run_started(self, run_id: int) -> None:
        self.run_started.emit(run_id)

    @Slot(int, object)
    def _relay_run_finished(self, run_id: int, result: object) -> None:
        if self.current_run is not None and self.current_run.run_id == run_id:
            self.current_run = None
        self.run_finished.emit(run_id, result)

    @Slot(int, str, str)
    def _relay_run_failed(self, run_id: int, kind: str, message: str) -> None:
        if self.current_run is not None and self.current_run.run_id == run_id:
            self.current_run = None
        self.run_failed.emit(run_id, kind, message)

    @Slot(int, object)
    def _relay_job_progress(self, job_id: int, x: object) -> None:
        self.job_progress.emit(job_id, x)

    @Slot(int, object)
    def _relay_job_finished(self, job_id: int, out: object) -> None:
        self.jobs.pop(job_id, None)
        self.job_finished.emit(job_id, out)

    @Slot(int, str, str)
    def _relay_job_failed(self, job_id: int, kind: str, message: str) -> None:
        self.jobs.pop(job_id, None)
        self.job_failed.emit(job_id, kind, message)

    def shutdown(self, timeout_ms: int = 20000) -> None:
        """Cancel what runs, stop the thread and free the models (call once, on close)."""
        self._survey_queue.clear()
        self.stop_all()
        self.lane.quit()
        if not self.lane.wait(timeout_ms):
            log.error("the engine thread did not stop within %d ms", timeout_ms)
            return
        self.worker.session.close()


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
