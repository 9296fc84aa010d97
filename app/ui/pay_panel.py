"""Will it pay? The predicted speedup of speculation for each K on this machine, and why.

Measure times the loaded target's batches (and the draft's step) on the engine lane, a few
seconds (``app.core.predict.will_it_pay``); the prediction for K = 1…16 then follows from
the acceptance chance, which the user can change without measuring again (``predict`` is
pure). After a run or a comparison, the prediction at that run's observed acceptance and K
stands next to the speedup it really had.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.events import RunResult
from app.core.predict import (
    DEFAULT_ALPHA,
    PayReport,
    observed_alpha,
    predict,
    proposed_lengths,
    will_it_pay,
)
from app.core.tracks import BY_ID
from app.ui.jobs import (
    ContextProvider,
    JobView,
    fmt_speedup,
    hint,
    number_item,
    read_only_table,
    splitter,
)
from app.ui.plots import BLUE, GREY, LEGEND_BRUSH, _plot
from app.ui.worker import EngineHost

EMPTY = ("Press Measure to time what drafting and verifying cost on this machine for the "
         "Run tab's target (and draft): it takes a few seconds. The predicted speedup for "
         "each K then follows from the acceptance you expect, with the reason in plain words.")
COLUMNS = ("K", "tokens / round", "verify cost", "draft cost", "predicted", "at 99 %",
           "pays from")
SOURCES = (("lookup", "prompt lookup (Track 8)"), ("draft", "draft model (Track 1)"))


class PayPanel(JobView):
    NOUN = "measurement"
    FAILED = "Measuring failed: "

    def __init__(self, host: EngineHost, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(host, context, parent)
        self.report: PayReport | None = None
        self.measured_for: tuple[str, str | None, str] | None = None
        self.last_run: tuple[RunResult, float | None] | None = None
        self._build()

    def _build(self) -> None:
        layout = self._frame()
        row = QHBoxLayout()
        self.source = QComboBox()
        for key, label in SOURCES:
            self.source.addItem(label, key)
        self.alpha = QDoubleSpinBox()
        self.alpha.setRange(0.0, 1.0)
        self.alpha.setSingleStep(0.05)
        self.alpha.setDecimals(2)
        self.alpha.setValue(DEFAULT_ALPHA)
        self.alpha.setToolTip("the chance that a drafted token is accepted")
        self.alpha_source = "assumed"
        self.use_observed = QPushButton("Use the last run's acceptance")
        self.use_observed.setEnabled(False)
        self.measure_button = QPushButton("Measure")
        self.measure_button.setObjectName("RunButton")
        self.measure_button.setToolTip("time the target's batches and the draft's step: a few "
                                       "seconds on the engine")
        for label, w in (("Drafts from", self.source), ("acceptance", self.alpha)):
            row.addWidget(QLabel(label))
            row.addWidget(w)
        row.addWidget(self.use_observed)
        row.addStretch(1)
        row.addWidget(self.measure_button)
        layout.addLayout(row)
        layout.addLayout(self._status_row())  # the progress bar stays hidden: no steps

        self.recommendation = QLabel("")
        self.recommendation.setObjectName("Verdict")
        self.explanation = hint("")
        self.explanation.setObjectName("Explanation")
        self.versus = hint("")
        self.versus.setObjectName("Explanation")
        self.table = read_only_table(COLUMNS)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.plot = _plot("predicted speedup by K", "× baseline", "K (drafts per round)")
        self.plot.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=LEGEND_BRUSH)
        self.curve = self.plot.plot([], [], pen=pg.mkPen(BLUE, width=2), symbol="o",
                                    symbolSize=6, symbolBrush=BLUE, name="at this acceptance")
        self.high = self.plot.plot([], [], pen=pg.mkPen(GREY, width=1.5,
                                                        style=Qt.PenStyle.DashLine),
                                   name="at 99 % acceptance")
        self.best = self.plot.plot([], [], pen=None, symbol="star", symbolSize=20,
                                   symbolBrush="#f5b700", symbolPen="#8a6d00",
                                   name="recommended K")
        self.measured = self.plot.plot([], [], pen=None, symbol="d", symbolSize=13,
                                       symbolBrush="#c62828", name="last run, measured")
        self.plot.addItem(pg.InfiniteLine(1.0, angle=0, pen=pg.mkPen("#c62828", width=1,
                                          style=Qt.PenStyle.DotLine),
                                          label="break-even", labelOpts={"position": 0.5}))
        self.plot.getAxis("bottom").setTicks([[(k, str(k)) for k in (1, 2, 4, 6, 8, 10, 12, 14,
                                                                      16)]])
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        for label_widget in (self.recommendation, self.explanation, self.versus):
            top_layout.addWidget(label_widget)
        top_layout.addWidget(self.table, 1)
        self.split = splitter(Qt.Orientation.Horizontal, top, self.plot, [640, 620])
        self._place_body(layout, self.split, EMPTY)

        self.measure_button.clicked.connect(self.measure)
        self.alpha.valueChanged.connect(self._alpha_edited)
        self.use_observed.clicked.connect(self._use_observed)

    def set_available(self, available: dict[str, str | None]) -> None:
        """Offer the draft model only when Track 1 can run on the current pair."""
        model = self.source.model()
        for i in range(self.source.count()):
            track = self.source.itemData(i)
            reason = available.get(track, "no model")
            model.item(i).setEnabled(reason is None)  # type: ignore[attr-defined]
        if available.get(self.source.currentData(), "x") is not None:
            for i in range(self.source.count()):
                if available.get(self.source.itemData(i), "x") is None:
                    self.source.setCurrentIndex(i)
                    break

    def follow(self, track: str) -> bool:
        """Draft from what ``track`` drafts with: the draft model for every track that uses
        one, else prompt lookup. False (nothing changed) if the track does not speculate,
        that source cannot run on these models, or a measurement is running."""
        t = BY_ID.get(track)
        if t is None or not t.speculates or self.active:
            return False
        index = self.source.findData("draft" if t.uses_draft else "lookup")
        if not self.source.model().item(index).isEnabled():  # type: ignore[attr-defined]
            return False
        self.source.setCurrentIndex(index)
        return True

    # -- measuring ---------------------------------------------------------------------------
    def measure(self) -> bool:
        ctx = self._context()
        if ctx is None:
            return False
        source = self.source.currentData()
        if ctx.available.get(source) is False:
            self.status.setText(f"{BY_ID[source].label} cannot run on these models.")
            return False
        s = replace(ctx.settings, track=source, experts=None)
        draft_path = ctx.draft_path if source == "draft" else None
        alpha = self.alpha.value()

        def job(session: Any, cancel: Any, progress: Any) -> PayReport:
            session.check(ctx.target_path, draft_path, s)
            target = session.load_target(ctx.target_path, s)
            draft = session.load_draft(draft_path, s) if draft_path else None
            return will_it_pay(target, draft, alpha=alpha, source=source)

        self.measured_for = (ctx.target_path, draft_path, source)
        self._begin(job, "measuring batches of the target"
                    + (" and the draft's step…" if draft_path else "…"))
        return True

    def _set_running(self, running: bool) -> None:
        self.measure_button.setEnabled(not running)
        super()._set_running(running)

    def _finished(self, report: PayReport) -> None:
        self._end()
        costs = report.costs
        spent = f" in {costs.seconds_spent:.1f} s" if costs is not None else ""
        self.status.setText(f"measured{spent} with {self.source.currentText()}")
        self.report = report
        if report.costs is not None:
            self._repredict()  # the acceptance as chosen now, and how it was chosen
        else:
            self._show()

    # -- acceptance ----------------------------------------------------------------------------
    def _alpha_edited(self) -> None:
        self.alpha_source = "given"
        self._repredict()

    def _use_observed(self) -> None:
        seen = observed_alpha(self.last_run[0].events) if self.last_run else None
        if seen is not None:
            self.alpha.blockSignals(True)
            self.alpha.setValue(seen)
            self.alpha.blockSignals(False)
            self.alpha_source = "observed"
            self._repredict()

    def _repredict(self) -> None:
        r = self.report
        if r is not None and r.costs is not None:
            self.report = predict(r.costs, self.alpha.value(), r.source, self.alpha_source,
                                  lookup_lengths=self._lookup_lengths())
            self._show()

    def _lookup_lengths(self) -> list[int] | None:
        """How long lookup's drafts really were in the last lookup run, if any."""
        if self.last_run is None or not BY_ID[self.last_run[0].track].uses_lookup:
            return None
        return proposed_lengths(self.last_run[0].events)

    # -- showing -------------------------------------------------------------------------------
    def _show(self) -> None:
        r = self.report
        if r is None:
            return
        self._show_body()
        what = "the draft model" if r.source == "draft" else "prompt lookup"
        if not r.predictions:
            self.recommendation.setText(f"Do not speculate with {what} here.")
        elif r.recommended_k:
            pred = r.predictions[r.recommended_k - 1]
            self.recommendation.setText(f"Recommended: K = {r.recommended_k} with {what} — "
                                        f"about {pred.speedup:.2f}× baseline")
        else:
            self.recommendation.setText(f"Speculating with {what} will not pay at "
                                        f"{r.alpha:.0%} acceptance: keep the baseline")
        self.explanation.setText(r.explanation)
        self._fill_table(r)
        ks = np.asarray([p.k for p in r.predictions], dtype=float)
        self.curve.setData(ks, np.asarray([p.speedup for p in r.predictions]))
        self.high.setData(ks, np.asarray([p.speedup_at_high_alpha for p in r.predictions]))
        if r.recommended_k:
            self.best.setData([r.recommended_k], [r.predictions[r.recommended_k - 1].speedup])
        else:
            self.best.setData([], [])
        self._compare_last()

    def _fill_table(self, r: PayReport) -> None:
        self.table.setRowCount(len(r.predictions))
        for row, p in enumerate(r.predictions):
            be = p.break_even_alpha
            cells = (str(p.k), f"{p.expected_tokens:.2f}", f"{p.verify_steps:.2f} steps",
                     f"{p.draft_steps:.2f} steps", fmt_speedup(p.speedup),
                     fmt_speedup(p.speedup_at_high_alpha),
                     "never" if be is None else f"{be:.0%}")
            for c, text in enumerate(cells):
                item = number_item(text)
                if p.k == r.recommended_k:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.table.setItem(row, c, item)

    def set_measured(self, result: RunResult, speedup: float | None) -> None:
        """A run ended: keep it to set its prediction next to what it measured."""
        if not BY_ID[result.track].speculates:
            return
        self.last_run = (result, speedup)
        self.follow(result.track)  # measure what was just run
        seen = observed_alpha(result.events)
        self.use_observed.setEnabled(seen is not None)
        if seen is not None:
            self.use_observed.setText(f"Use the last run's acceptance ({seen:.0%})")
        self._compare_last()

    def _compare_last(self) -> None:
        self.measured.setData([], [])
        if self.last_run is None:
            self.versus.setText("")
            return
        result, measured = self.last_run
        track = BY_ID[result.track]
        source = "draft" if track.uses_draft else "lookup"
        k = int(result.effective.get("draft_max") or result.settings.get("draft_max") or 0)
        seen = observed_alpha(result.events)
        got = (f"measured {measured:.2f}× baseline" if measured is not None
               else "no measured speedup (run the baseline on this prompt, or compare)")
        head = f"Last run — {track.label}, K = {k}: {got}"
        r = self.report
        if seen is None:
            self.versus.setText(f"{head}. Nothing was drafted, so there is no acceptance to "
                                "predict from.")
            return
        if r is None or r.costs is None or not 1 <= k <= len(r.predictions):
            self.versus.setText(head + (". Measure to set the prediction next to it."
                                        if r is None else "."))
            return
        if r.source != source:
            self.versus.setText(f"{head}. Measure with the "
                                f"{'draft model' if source == 'draft' else 'prompt lookup'} "
                                "to compare it with a prediction.")
            return
        lengths = proposed_lengths(result.events) if source == "lookup" else None
        pred = predict(r.costs, seen, source, "observed", lookup_lengths=lengths).predictions[k - 1]
        self.versus.setText(f"{head}; predicted {pred.speedup:.2f}× at its observed "
                            f"{seen:.0%} acceptance.")
        if measured is not None:
            self.measured.setData([k], [measured])
