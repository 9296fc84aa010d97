"""Compare: two or more tracks on the Run tab's models, prompt and settings, side by side.

The tracks run one after another on the engine lane through ``app.core.compare.compare``
(same settings and seed; the baseline always first, as the reference); with "Repeats" above
1 the whole order runs that many times, interleaved, the baseline included, and each track
shows its median run and the range of its paired speedups. Each column streams its answer
with the token highlighting of the Run tab and ends with its numbers; where an answer parts
from the baseline, the first differing token is highlighted in both answers with the
baseline's top-2 margin there (a near tie is rounding, not a bug). Above the columns, the
verdict (``verdict.judge``: no best within noise, and which track drafted nothing and why).
Below, one tokens/s curve per track over time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPoint, QRect, QSize, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QLayoutItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QWidget,
)

from app.core.compare import Comparison, compare
from app.core.labels import track_label
from app.core.tracks import working
from app.ui.compare_columns import DIFF_BG, DIFF_FG, TrackColumn, difference_note
from app.ui.jobs import (
    ContextProvider,
    JobView,
    RunContext,
    hint,
    splitter,
    track_colour,
    track_name,
)
from app.ui.lane import Lane
from app.ui.pacer import Pacer
from app.ui.plots import LEGEND_BRUSH, _plot
from app.ui.state import WorkbenchState
from app.ui.token_view import legend_html

# Base rates; the pacer stretches them while the GUI thread takes more than its budget of
# the runs it is comparing (app.ui.pacer).
DRAIN_MS = 50
PLOT_INTERVAL = 0.25
# Three runs a track: the fewest with a median and a spread to judge noise by.
DEFAULT_REPEATS = 3
MAX_REPEATS = 10
EMPTY = ("Choose the tracks to compare and press Compare. They run one after another on the "
         "models, prompt and settings of the Run tab, with the same seed; the baseline is "
         "always included as the reference for speed and for the answer. With repeats, the "
         "whole order runs again (baseline included) and each track shows its median.")


class FlowLayout(QLayout):
    """Widgets left to right, wrapping at the right edge: every combination of sources is a
    track, so the list asks for height as it grows, never for a wider window."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 10) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._gap = spacing

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:
        return self.minimumSize()

    def minimumSize(self) -> QSize:
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _place(self, rect: QRect, move: bool) -> int:
        """Lay the items out in ``rect`` (only measure unless ``move``); the height used."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, line = area.x(), area.y(), 0
        for item in self._items:
            hint = item.sizeHint()
            if line and x + hint.width() > area.right() + 1:
                x, y, line = area.x(), y + line + self._gap // 2, 0
            if move:
                item.setGeometry(QRect(QPoint(x, y), hint))
            x += hint.width() + self._gap
            line = max(line, hint.height())
        return y + line - rect.y() + m.bottom()


class CompareView(JobView):
    comparison_ended = Signal(object, object)  # Comparison, RunContext
    NOUN = "comparison"

    def __init__(self, lane: Lane, state: WorkbenchState, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(lane, state, context, parent)
        self.columns: dict[str, TrackColumn] = {}
        self.curves: dict[str, Any] = {}
        self.comparison: Comparison | None = None
        self.context: RunContext | None = None
        self.pacer = Pacer(DRAIN_MS, PLOT_INTERVAL)
        self._runs_begun = 0  # runs of the comparison under way, counted as they start
        self._repeats = 1
        self._available: dict[str, str | None] = {}
        self.timer = QTimer(self)
        self.timer.setInterval(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        self._build()
        self.show_availability()

    def _build(self) -> None:
        layout = self._frame()
        box = QGroupBox("Tracks to compare")
        flow = FlowLayout(box)
        self.checks: dict[str, QCheckBox] = {}
        self.summaries: dict[str, str] = {}
        for t in working():
            check = QCheckBox(track_label(t.id))
            check.setToolTip(t.summary)
            self.checks[t.id] = check
            self.summaries[t.id] = t.summary
            flow.addWidget(check)
        base = self.checks["baseline"]
        base.setChecked(True)
        base.setEnabled(False)
        base.setToolTip("always included: the reference for speed and for the answer")
        layout.addWidget(box)
        row = QHBoxLayout()
        self.repeats = QSpinBox()
        self.repeats.setRange(1, MAX_REPEATS)
        self.repeats.setValue(DEFAULT_REPEATS)
        self.repeats.setToolTip(
            "how many times the tracks run, interleaved (baseline, A, B, baseline, A, B, …), "
            "so that a slow minute of the machine hits every track alike; each track shows "
            "its median run and the range of its speedups. With 1 run, only a difference of "
            "more than 10 % counts as more than noise.")
        repeats_label = QLabel("Repeats")
        repeats_label.setBuddy(self.repeats)
        self.start_button = QPushButton("Compare")
        self.start_button.setObjectName("RunButton")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(repeats_label)
        row.addWidget(self.repeats)
        row.addWidget(self.start_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(self._status_row(row))
        self.verdict = QLabel("")
        self.verdict.setObjectName("Verdict")
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verdict.hide()
        layout.addWidget(self.verdict)
        # The Run tab's legend, once for all columns, with the difference marker added.
        # Dark text on the yellow marker in either theme (light text on it is unreadable).
        self.legend = hint(legend_html() + f" &nbsp; <span style='background:{DIFF_BG};"
                           f"color:{DIFF_FG};text-decoration:underline'>&nbsp;first "
                           "difference from the baseline&nbsp;</span>")
        layout.addWidget(self.legend)

        self.strip = QWidget()
        self.strip_layout = QHBoxLayout(self.strip)
        self.strip_layout.setContentsMargins(0, 0, 0, 0)
        self.scroller = QScrollArea()
        self.scroller.setWidget(self.strip)
        self.scroller.setWidgetResizable(True)
        self.plot = _plot("tokens / s over time, one curve per track", "tok/s",
                          "seconds since prefill")
        self.plot.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=LEGEND_BRUSH,
                            colCount=4)  # one row: a column legend hides behind a short plot
        self.split = splitter(Qt.Orientation.Vertical, self.scroller, self.plot, [520, 240])
        self._place_body(layout, self.split, EMPTY)
        self.legend.hide()

    # -- state ------------------------------------------------------------------------------
    def show_availability(self) -> None:
        self.set_available(self.state.short_reasons())

    def set_available(self, available: dict[str, str | None]) -> None:
        """Enable the tracks that can run on the current models (reason as tooltip)."""
        self._available = available
        for tid, check in self.checks.items():
            if tid == "baseline":
                continue
            reason = available.get(tid)
            check.setEnabled(reason is None and not self.active)
            check.setToolTip(self.summaries[tid] + (f"\n\nUnavailable: {reason}" if reason else ""))
            if reason is not None:
                check.setChecked(False)

    def chosen(self) -> list[str]:
        return [tid for tid, c in self.checks.items() if c.isChecked()]

    def choose(self, tracks: list[str]) -> None:
        for tid, c in self.checks.items():
            if tid != "baseline":
                c.setChecked(tid in tracks and c.isEnabled())

    # -- running ----------------------------------------------------------------------------
    def run_main_action(self) -> bool:
        """What Ctrl+Enter does on this tab: start the comparison."""
        return self.start()

    def start(self) -> bool:
        """Start the comparison of the checked tracks; False (and why) if it cannot."""
        ctx = self._context()
        if ctx is None:
            return False
        tracks = self.chosen()
        if len(tracks) < 2:
            self.status.setText("Check at least one track besides the baseline.")
            return False
        self.context = ctx
        self._reset(tracks)
        columns = dict(self.columns)
        repeats = self._repeats = self.repeats.value()
        self._runs_begun = 0

        r = ctx.request

        def job(session: Any, cancel: Any, progress: Any) -> Comparison:
            def sink(track: str) -> Any:
                feed = columns[track].new_run()  # before the progress: its run streams here
                progress(track)
                return feed.put

            return compare(session, r.target, r.draft, r.prompt, tracks, r.settings, sink,
                           cancel, repeats=repeats)

        if not self._begin(job, "loading the model…", len(self.columns) * repeats):
            return False
        self.pacer.begin(self.timer)
        return True

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.repeats.setEnabled(not running)
        if running:
            for tid, c in self.checks.items():
                if tid != "baseline":
                    c.setEnabled(False)
        else:
            self.set_available(self._available)
        super()._set_running(running)

    def _reset(self, tracks: list[str]) -> None:
        for col in self.columns.values():
            col.setParent(None)
            col.deleteLater()
        self.columns.clear()
        self.plot.clear()  # the curves, and their legend entries with them
        self.curves.clear()
        order = ["baseline", *[t for t in tracks if t != "baseline"]]
        for tid in order:
            col = TrackColumn(tid)
            self.columns[tid] = col
            self.strip_layout.addWidget(col, 1)
            self.curves[tid] = self.plot.plot([], [], pen=pg.mkPen(track_colour(tid), width=2),
                                              name=track_label(tid), skipFiniteCheck=True)
        self.comparison = None
        self.verdict.setText("")
        self.verdict.hide()
        self._show_body()
        self.legend.show()

    def drain(self, every: bool = False) -> None:
        self.pacer.pace(self.timer)
        grew = [col.drain() for col in self.columns.values()]
        if every or (any(grew) and self.pacer.plot_due()):
            self._update_plot()

    def _update_plot(self) -> None:
        for tid, col in self.columns.items():
            t = col.metrics.throughput
            self.curves[tid].setData(np.asarray(t.t), np.asarray(t.cumulative))

    def _progress(self, track: object) -> None:
        if track not in self.columns:
            return
        total = len(self.columns) * self._repeats
        self.progress.setValue(self._runs_begun)
        self._runs_begun += 1
        rep = (self._runs_begun - 1) // len(self.columns) + 1
        again = f" (repeat {rep} of {self._repeats})" if self._repeats > 1 else ""
        self.status.setText(f"{self._runs_begun} / {total} · running "
                            f"{track_label(str(track))}{again}…")
        self.columns[str(track)].state.setText(f"running{again}…")

    def _finished(self, comparison: Comparison) -> None:
        self.timer.stop()
        self.drain(every=True)
        self.show_comparison(comparison, live=True)
        cancelled = self.runner.cancelled or any(
            r.result.stop_reason == "cancelled" for r in comparison.runs)
        self.progress.setValue(self.progress.maximum())
        done = len(comparison.runs)
        times = f" × {comparison.repeats} repeats" if comparison.repeats > 1 else ""
        self.status.setText(f"cancelled after {self._runs_begun} of "
                            f"{len(self.columns) * self._repeats} runs"
                            if cancelled else f"done: {done} tracks{times} (kept in History)")
        self._end()
        if self.context is not None and comparison.runs:
            self.comparison_ended.emit(comparison, self.context)

    def _failed(self, kind: str, message: str) -> None:
        self.timer.stop()
        self.drain(every=True)
        super()._failed(kind, message)

    # -- showing ----------------------------------------------------------------------------
    def show_comparison(self, comparison: Comparison, live: bool = False,
                        title: str = "") -> None:
        """Fill the columns from a finished comparison (``live``: they streamed already)."""
        if not live:
            self._reset([r.result.track for r in comparison.runs])
        if not live or comparison.repeats > 1:  # with repeats: each track's median run
            for run in comparison.runs:
                self.columns[run.result.track].show_run(run)
            self._update_plot()
        if not live:
            self.status.setText(title)
        self.comparison = comparison
        runs = comparison.runs
        base = next((r for r in runs if r.result.track == "baseline"), None)
        for run in runs:
            self.columns[run.result.track].show_result(run, base)
        if len(runs) > 1:
            verdict = comparison.verdict
            self.verdict.setText(verdict.text)
            self.verdict.setToolTip(
                "a track is best only when it beats the baseline and every other track "
                "beyond noise: with repeats, their ranges must not overlap; with one run, "
                "the difference must exceed 10 %")
            self.verdict.show()
        for tid, col in self.columns.items():
            if all(r.result.track != tid for r in runs):
                col.state.setText("not run (the comparison was cancelled)")
        diffs = [r for r in runs if r is not base and r.first_difference is not None]
        for run in diffs:
            note = difference_note(run)
            col = self.columns[run.result.track]
            col.state.setText(col.state.text() + "\n" + note)
            col.mark_difference([run.first_difference or 0], note)
        if base is not None and diffs:
            where = ", ".join(f"token {r.first_difference} ({track_name(r.result.track)})"
                              for r in diffs)
            col = self.columns["baseline"]
            col.state.setText(col.state.text() + f"\nOther answers part from this one at {where}.")
            col.mark_difference(sorted({r.first_difference or 0 for r in diffs}),
                                f"another track's answer differs here: {where}")
