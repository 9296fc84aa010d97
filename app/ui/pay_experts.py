"""Will fewer experts pay? Track 2's part of the "Will it pay?" tab.

Measure runs ``app.core.expert_pay.measure_experts`` on the engine lane for the Run tab's
target and prompt: the model continues the prompt with its own expert count, then each count
from that down to 1 is loaded and judged on that continuation (agreement with the
reference's next-token choices, KL) and timed (one decode step). The words are
``explain_experts``'; the plot shows speed and agreement, both relative to the reference
(1.0 there), against the expert count; the table the numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from app.core.expert_pay import (
    ExpertReport,
    ExpertRow,
    default_counts,
    explain_experts,
    measure_experts,
)
from app.ui.jobs import (
    ContextProvider,
    JobView,
    fmt_speedup,
    hint,
    number_item,
    read_only_table,
    splitter,
)
from app.ui.lane import Lane
from app.ui.plots import BLUE, GREY, LEGEND_BRUSH, ORANGE, _plot
from app.ui.state import WorkbenchState

FOLLOW = 48  # continuation tokens each count is judged on
EMPTY = ("Fewer experts (Track 2): press Measure experts to see what each expert count gains "
         "in speed and loses in agreement with the model's own choices on the Run tab's "
         "prompt. It loads the model once per count: from seconds to a minute.")
COLUMNS = ("experts", "speed", "step", "agreement", "KL (nats)")


class PayExperts(JobView):
    NOUN = "expert measurement"
    FAILED = "Measuring the experts failed: "

    def __init__(self, lane: Lane, state: WorkbenchState, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(lane, state, context, parent)
        self.report: ExpertReport | None = None
        self._build()

    def _build(self) -> None:
        layout = QVBoxLayout(self)  # the tab's own context line is above: none here
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(hint("Fewer experts: what each count costs in agreement per token it "
                           "gains in speed."), 1)
        self.measure_button = QPushButton("Measure experts")
        self.measure_button.setObjectName("RunButton")
        self.measure_button.setToolTip("load the model with each expert count, judge it on "
                                       "the reference's continuation and time a decode step")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        row.addWidget(self.measure_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        layout.addLayout(self._status_row())

        self.words = hint("")
        self.words.setObjectName("Explanation")
        self.table = read_only_table(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = _plot("relative to the model's own expert count", "× / share",
                          "active experts")
        self.plot.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=LEGEND_BRUSH)
        self.speed_curve = self.plot.plot([], [], pen=pg.mkPen(BLUE, width=2), symbol="o",
                                          symbolSize=6, symbolBrush=BLUE, name="speed (×)")
        self.agree_curve = self.plot.plot([], [], pen=pg.mkPen(ORANGE, width=2), symbol="s",
                                          symbolSize=6, symbolBrush=ORANGE,
                                          name="agreement (share of choices)")
        self.plot.addItem(pg.InfiniteLine(1.0, angle=0, pen=pg.mkPen(
            GREY, width=1, style=Qt.PenStyle.DotLine)))
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.words)
        top_layout.addWidget(self.table, 1)
        self.split = splitter(Qt.Orientation.Horizontal, top, self.plot, [640, 620])
        self._place_body(layout, self.split, EMPTY)

        self.measure_button.clicked.connect(self.measure)
        self.cancel_button.clicked.connect(self.cancel)

    # -- measuring ---------------------------------------------------------------------------
    def run_main_action(self) -> bool:
        return self.measure()

    def measure(self) -> bool:
        ctx = self._context()
        if ctx is None:
            return False
        info = ctx.target_info
        if not info.is_moe:
            self._refuse(f"{info.file_name} is not a Mixture-of-Experts model: there are no "
                         "experts to reduce.")
            return False
        r, s = ctx.request, ctx.request.settings
        path, prompt, counts = str(r.target), r.prompt, default_counts(info)

        def job(_session: Any, cancel: Any, progress: Any) -> ExpertReport:
            # Loads its own model per count: the session's target stays as the Run tab left it.
            return measure_experts(path, prompt, counts, threads=s.threads, follow=FOLLOW,
                                   cancel=cancel, chat=s.chat, system=s.system, n_ctx=s.ctx,
                                   progress=lambda d, t, label: progress((d, t, label)))

        return self._begin(job, "continuing the prompt with the model's own experts…",
                           len(counts) + 1)

    def _set_running(self, running: bool) -> None:
        self.measure_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        super()._set_running(running)

    def _progress(self, x: Any) -> None:
        if isinstance(x, tuple) and len(x) == 3:
            done, total, label = x
            self.progress.setValue(int(done))
            if done < total:
                self.status.setText(f"{done + 1} / {total} · {label}…")

    def _finished(self, report: ExpertReport) -> None:
        self._end()
        self.report = report
        n = len(report.rows)
        head = f"cancelled after {n} counts" if report.cancelled else f"measured {n} counts"
        self.status.setText(f"{head} in {report.seconds_spent:.1f} s "
                            f"({report.positions} tokens, {report.threads} threads)")
        self.show_report(report)

    # -- showing -------------------------------------------------------------------------------
    def show_report(self, r: ExpertReport) -> None:
        self._show_body()
        self.words.setText(explain_experts(r))
        best = r.worth_trying
        self.table.setRowCount(len(r.rows))
        for i, row in enumerate(r.rows):
            for c, text in enumerate(self._cells(r, row)):
                item = number_item(text)
                if best is not None and row.experts == best.experts:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(i, c, item)
        xs = np.asarray([row.experts for row in r.rows], dtype=float)
        self.speed_curve.setData(xs, np.asarray([row.speedup for row in r.rows]))
        # Random weights: their agreement means nothing, so it is not drawn.
        agree = [] if r.random_weights else [row.agreement for row in r.rows]
        self.agree_curve.setData(xs if agree else [], np.asarray(agree))
        step = max(1, len(r.rows) // 16)
        self.plot.getAxis("bottom").setTicks(
            [[(k, str(int(k))) for k in sorted(xs.tolist())[::step]]])

    @staticmethod
    def _cells(r: ExpertReport, row: ExpertRow) -> tuple[str, ...]:
        own = " (own)" if row.experts == r.reference else ""
        return (f"{row.experts} of {r.expert_count}{own}", fmt_speedup(row.speedup),
                f"{1000 * row.step_seconds:.2f} ms",
                f"{100 * row.agreement:.0f} %" + ("" if row.ends_early is None else
                                                  f" · ends at token {row.ends_early + 1}"),
                f"{row.kl:.3f}")
