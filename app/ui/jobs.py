"""What the Compare, Sweep and "Will it pay?" views share: the run context taken from the
Run tab, one job at a time on the engine lane, the frame of such a view, and small widget
helpers.

``RunContext`` is a snapshot of the request, models and availability chosen in the Run
tab; the lab builds it (or says why it cannot). ``JobRunner`` submits one job at a time to
the engine lane, with callbacks of that job alone, and re-emits them as its signals.
``JobView`` is the frame the three views are built on: the context line at the top, the
status line with its progress bar, the empty state until there are results, the engine
held in the workbench state while its job runs, and the failure path of its job.
A track's display name is ``app.core.labels.track_label`` (one table of names; re-exported
here for the views).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
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

from app.core.events import RunRequest
from app.core.gguf_info import ModelInfo
from app.core.labels import track_label as track_label  # re-exported for the views
from app.core.tracks import find_track
from app.ui.lane import JobFn, JobHandle, Lane
from app.ui.state import ENGINE_BUSY, WorkbenchState

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




def track_name(track_id: str) -> str:
    """Its name ("Prompt lookup"), or the raw id of a track no longer known."""
    track = find_track(track_id)
    return track.name if track is not None else track_id


@dataclass
class RunContext:
    """The Run tab's choices at the moment a view starts its work: the request (its
    settings' ``track`` is the Run tab's selected track, its draft the chosen one), what is
    known of the models, and which tracks can run on them."""

    request: RunRequest
    target_info: ModelInfo
    draft_info: ModelInfo | None = None
    available: dict[str, bool] = field(default_factory=dict)  # track id -> can run

    def describe(self) -> str:
        r, s = self.request, self.request.settings
        draft = f" · draft {Path(r.draft).name}" if r.draft else ""
        words = " ".join(r.prompt.split())
        words = words if len(words) <= 48 else words[:47] + "…"
        threads = s.threads or "auto"
        return (f"{Path(r.target).name}{draft} · {s.max_tokens} tokens · "
                f"temperature {s.temperature:g} · seed {s.seed} · "
                f"{threads} threads · prompt “{words}”")


ContextProvider = Callable[[], "RunContext | str"]  # a context, or why there is none


class JobRunner(QObject):
    """One job at a time for a view, on the engine lane: start, cancel, and the signals of
    its own job (the lane calls back for that job only)."""

    progressed = Signal(object)
    finished = Signal(object)
    failed = Signal(str, str)  # kind, message
    ended = Signal()  # after finished or failed

    def __init__(self, lane: Lane, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.lane = lane
        self.job: JobHandle | None = None

    @property
    def active(self) -> bool:
        return self.job is not None

    def start(self, fn: JobFn) -> bool:
        if self.job is not None:
            return False
        self.job = self.lane.submit(fn, progress=self.progressed.emit, done=self._finished,
                                    error=self._failed)
        return True

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    @property
    def cancelled(self) -> bool:
        return self.job is not None and self.job.cancelled

    def _finished(self, out: object) -> None:
        self.job = None
        self.finished.emit(out)
        self.ended.emit()

    def _failed(self, kind: str, message: str) -> None:
        self.job = None
        self.failed.emit(kind, message)
        self.ended.emit()


class JobView(QWidget):
    """A view that runs one job at a time on the engine lane, on the Run tab's choices.

    It owns the runner (its progress, result and failure arrive at ``_progress``,
    ``_finished`` and ``_failed``), the context line, the status line with a progress bar
    (shown only while a job with counted steps runs), and the empty state shown until
    ``_show_body``. While its job runs it holds the engine in the workbench state (``NOUN``
    names the job there); it shows which tracks can run from the state's availability
    (``set_available``). ``error`` carries every refusal and failure, also written in the
    status line.
    """

    error = Signal(str)
    NOUN = "job"  # what the view runs: "cancelling the job…", "The job failed: …"
    FAILED = ""  # starts the status line of a failure (not a refusal), if not as above

    def __init__(self, lane: Lane, state: WorkbenchState, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.context_of = context
        self.runner = JobRunner(lane, self)
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
        state.availability_changed.connect(self.show_availability)

    @property
    def active(self) -> bool:
        return self.runner.active

    def show_availability(self) -> None:
        """Show which tracks can run on the state's models (subclasses)."""

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

    def _begin(self, job: JobFn, status: str, steps: int = 0) -> bool:
        """Start ``job`` holding the engine; with ``steps`` the progress bar counts them.
        False (and why) if something else holds the engine."""
        if not self.state.claim(self.NOUN):
            self._refuse(ENGINE_BUSY)
            return False
        self.runner.start(job)
        if steps:
            self.progress.setRange(0, steps)
            self.progress.setValue(0)
            self.progress.show()
        self.status.setText(status)
        self._set_running(True)
        return True

    def cancel(self) -> None:
        if self.active:
            self.runner.cancel()
            self.status.setText(f"cancelling the {self.NOUN}…")

    def _set_running(self, running: bool) -> None:
        """Lock or unlock the view's controls (subclasses)."""

    def _end(self) -> None:
        self.progress.hide()
        self._set_running(False)
        self.state.release(self.NOUN)

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


def when(unix: float) -> str:
    """A saved item's time as History lists it (local time, to the minute)."""
    return datetime.fromtimestamp(unix).strftime("%Y-%m-%d %H:%M")


def fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def fmt_speedup(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"
