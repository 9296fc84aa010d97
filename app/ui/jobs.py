"""What the Compare, Sweep and "Will it pay?" views share: the run context taken from the
Run tab, one job at a time on the engine lane, the frame of such a view, and small widget
helpers.

``RunContext`` is a snapshot of the models, prompt and settings chosen in the Run tab;
the window builds it (or says why it cannot). ``JobRunner`` submits one ``Job`` to the
engine lane and re-emits only that job's progress, result and failure, on the GUI thread.
``JobView`` is the frame the three views are built on: the context line at the top, the
status line with its progress bar, the empty state until there are results, and the busy
state and the failure path of its job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.events import RunSettings
from app.core.tracks import find_track
from app.ui.worker import EngineHost, Job

BASELINE_COLOUR = "#3a4250"
MOE_COLOUR = "#9467bd"
UNKNOWN_COLOUR = "#555555"  # a track no longer known (an old record of a removed plug-in)


def track_colour(track_id: str) -> str:
    """The track's plot colour, the same in every view: grey for the baseline, purple for
    MoE reduction, a source's ``plot_colour`` for that source alone, and the blend of its
    parts' colours for a combination (so that it differs from each part)."""
    track = find_track(track_id)
    if track is None or track.deprecated:
        return UNKNOWN_COLOUR
    parts = [s.plot_colour for s in track.draft_sources] + [MOE_COLOUR] * track.moe
    return _blend(parts) if parts else BASELINE_COLOUR


def _blend(colours: list[str]) -> str:
    if len(colours) == 1:
        return colours[0]
    qs = [QColor(c) for c in colours]  # any colour Qt reads, not only #rrggbb
    rgb = [(q.red(), q.green(), q.blue()) for q in qs]
    return "#" + "".join(f"{round(sum(ch) / len(rgb)):02x}" for ch in zip(*rgb, strict=True))


def track_label(track_id: str) -> str:
    """Its label ("Track 8: Prompt lookup"), or the raw id of a track no longer known."""
    track = find_track(track_id)
    return track.label if track is not None else track_id


def track_name(track_id: str) -> str:
    """Its name ("Prompt lookup"), or the raw id of a track no longer known."""
    track = find_track(track_id)
    return track.name if track is not None else track_id


@dataclass
class RunContext:
    """The Run tab's choices at the moment a view starts its work."""

    target_path: str
    draft_path: str | None
    prompt: str
    settings: RunSettings  # its ``track`` is the Run tab's selected track
    target_info: Any
    draft_info: Any | None = None
    available: dict[str, bool] = field(default_factory=dict)  # track id -> can run

    def describe(self) -> str:
        draft = f" · draft {Path(self.draft_path).name}" if self.draft_path else ""
        words = " ".join(self.prompt.split())
        words = words if len(words) <= 48 else words[:47] + "…"
        threads = self.settings.threads or "auto"
        return (f"{Path(self.target_path).name}{draft} · {self.settings.max_tokens} tokens · "
                f"temperature {self.settings.temperature:g} · seed {self.settings.seed} · "
                f"{threads} threads · prompt “{words}”")


ContextProvider = Callable[[], "RunContext | str"]  # a context, or why there is none
JobFn = Callable[[Any, threading.Event, Callable[[object], None]], object]  # on the lane


class JobRunner(QObject):
    """One job at a time for a view: start, cancel, and its own signals only."""

    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)  # kind, message
    ended = Signal()  # after finished or failed

    def __init__(self, host: EngineHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.job: Job | None = None
        host.job_progress.connect(self._progress)
        host.job_finished.connect(self._finished)
        host.job_failed.connect(self._failed)

    @property
    def active(self) -> bool:
        return self.job is not None

    def start(self, fn: JobFn) -> bool:
        if self.job is not None:
            return False
        self.job = self.host.call(fn)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    @property
    def cancelled(self) -> bool:
        return self.job is not None and self.job.cancel.is_set()

    def _mine(self, job_id: int) -> bool:
        return self.job is not None and self.job.job_id == job_id

    @Slot(int, object)
    def _progress(self, job_id: int, x: object) -> None:
        if self._mine(job_id):
            self.progressed.emit(x)

    @Slot(int, object)
    def _finished(self, job_id: int, out: object) -> None:
        if self._mine(job_id):
            self.job = None
            self.finished.emit(out)
            self.ended.emit()

    @Slot(int, str, str)
    def _failed(self, job_id: int, kind: str, message: str) -> None:
        if self._mine(job_id):
            self.job = None
            self.failed.emit(kind, message)
            self.ended.emit()


class JobView(QWidget):
    """A view that runs one job at a time on the engine lane, on the Run tab's choices.

    It owns the runner (its progress, result and failure arrive at ``_progress``,
    ``_finished`` and ``_failed``), the context line, the status line with a progress bar
    (shown only while a job with counted steps runs), and the empty state shown until
    ``_show_body``. ``busy_changed`` says when its job starts and ends; ``error`` carries
    every refusal and failure, also written in the status line.
    """

    busy_changed = Signal(bool)
    error = Signal(str)
    NOUN = "job"  # what the view runs: "cancelling the job…", "The job failed: …"
    FAILED = ""  # starts the status line of a failure (not a refusal), if not as above

    def __init__(self, host: EngineHost, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context_of = context
        self.runner = JobRunner(host, self)
        self.runner.progressed.connect(self._progress)
        self.runner.finished.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self.context_line = hint("")
        self.status = hint("")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.hide()
        self.empty = empty_state("")
        self._body: QWidget | None = None

    @property
    def active(self) -> bool:
        return self.runner.active

    # -- layout ---------------------------------------------------------------------------
    def _frame(self) -> QVBoxLayout:
        """The view's layout, with the context line at its top."""
        layout = QVBoxLayout(self)
        layout.addWidget(self.context_line)
        return layout

    def _status_row(self, row: QHBoxLayout | None = None) -> QHBoxLayout:
        """The progress bar and the status line at the end of ``row`` (or of a new row)."""
        row = row if row is not None else QHBoxLayout()
        row.addWidget(self.progress)
        row.addWidget(self.status, 1)
        return row

    def _place_body(self, layout: QVBoxLayout, body: QWidget, empty_text: str) -> None:
        """The empty state saying ``empty_text``, and in its place later ``body``."""
        self.empty.setText(empty_text)
        self._body = body
        layout.addWidget(self.empty, 1)
        layout.addWidget(body, 1)
        body.hide()

    def _show_body(self) -> None:
        self.empty.hide()
        if self._body is not None:
            self._body.show()

    # -- the job ----------------------------------------------------------------------------
    def _context(self) -> RunContext | None:
        """The Run tab's choices to start on; None while a job runs, or (said why) if there
        are none."""
        if self.active:
            return None
        ctx = self.context_of()
        if isinstance(ctx, str):
            self._refuse(ctx)
            return None
        return ctx

    def _refuse(self, text: str) -> None:
        self.status.setText(text)
        self.error.emit(text)

    def _begin(self, job: JobFn, status: str, steps: int = 0) -> None:
        """Start ``job``; with ``steps`` the progress bar counts them."""
        self.runner.start(job)
        if steps:
            self.progress.setRange(0, steps)
            self.progress.setValue(0)
            self.progress.show()
        self.status.setText(status)
        self._set_running(True)

    def cancel(self) -> None:
        if self.active:
            self.runner.cancel()
            self.status.setText(f"cancelling the {self.NOUN}…")

    def _set_running(self, running: bool) -> None:
        """Lock or unlock the view's controls (subclasses), then tell the window."""
        self.busy_changed.emit(running)

    def _end(self) -> None:
        self.progress.hide()
        self._set_running(False)

    def _progress(self, x: Any) -> None:
        """A job's progress report (what it is depends on the view)."""

    def _finished(self, out: Any) -> None:
        self._end()

    def _failed(self, kind: str, message: str) -> None:
        self._end()
        failed = self.FAILED or f"The {self.NOUN} failed: "
        self._refuse(("Refused: " if kind == "refused" else failed) + message)


def read_only_table(columns: tuple[str, ...]) -> QTableWidget:
    """A table with these column titles, no row numbers, not editable."""
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.verticalHeader().hide()
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    return table


def number_item(text: str) -> QTableWidgetItem:
    """A table cell aligned as numbers are: right, centred vertically."""
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def splitter(orientation: Qt.Orientation, first: QWidget, second: QWidget,
             sizes: list[int]) -> QSplitter:
    split = QSplitter(orientation)
    split.addWidget(first)
    split.addWidget(second)
    split.setSizes(sizes)
    return split


def hint(text: str, parent: QWidget | None = None) -> QLabel:
    """A grey, wrapping explanatory line (also the empty states)."""
    label = QLabel(text, parent)
    label.setObjectName("Hint")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


def empty_state(text: str) -> QLabel:
    """A centred sentence saying what to do, shown until there is something to show."""
    label = QLabel(text)
    label.setObjectName("EmptyState")
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    return label


def fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def fmt_speedup(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"
