"""Will it pay? The predicted speedup of speculation for each K on this machine, and why.

Measure times the loaded target's batches (and the draft's step) on the engine lane, a few
seconds (``app.core.predict.will_it_pay``); the prediction for K = 1…16 then follows from
the acceptance chance, which the user can change without measuring again (``predict`` is
pure). After a run or a comparison, the prediction at that run's observed acceptance and K
stands next to the speedup it really had.

The sources to measure are the registry's (``app.core.drafting``): one that costs a model
step (``cost`` "model") is measured with the draft model; a free one is predicted from the
draft lengths it really found in the last run that used it.

The recommendation follows the one verdict's rules (``app.core.verdict``): none when the best
K predicts within noise of the baseline, and the Ks within noise of the recommended one are
named with it. A last run that drafted nothing says so and why.

A track that reduces experts (Track 2) shows ``PayExperts`` (app/ui/pay_experts.py) in
place of the K prediction, or below it when the track also speculates (``moe+lookup``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.drafting.registry import DraftSource, get_source, sources
from app.core.events import RunResult
from app.core.labels import track_label
from app.core.predict import (
    DEFAULT_ALPHA,
    PayReport,
    observed_alpha,
    predict,
    proposed_lengths,
    will_it_pay,
)
from app.core.tracks import Track, find_track
from app.core.verdict import SINGLE_RUN_MARGIN, format_speedup, idle_reason
from app.ui.jobs import (
    ContextProvider,
    JobView,
    RunContext,
    fmt_speedup,
    hint,
    number_item,
    read_only_table,
    splitter,
)
from app.ui.lane import Lane
from app.ui.pay_experts import PayExperts
from app.ui.plots import BLUE, GREY, LEGEND_BRUSH, _plot
from app.ui.state import WorkbenchState

EMPTY = ("Press Measure to time what drafting and verifying cost on this machine for the "
         "Run tab's target (and draft): it takes a few seconds. The predicted speedup for "
         "each K then follows from the acceptance you expect, with the reason in plain words.")
COLUMNS = ("K", "tokens / round", "verify cost", "draft cost", "predicted", "at 99 %",
           "pays from")


def source_text(src: DraftSource) -> str:
    """How the chooser lists a source: "prompt lookup (Track 8)"."""
    return f"{src.label} (Track {src.number})" if src.number else src.label


def source_of(track: Track) -> str | None:
    """The source a track's prediction is about: the first (by priority) that costs a model
    step, which dominates the cost of a combination, else its first; None if it does not
    speculate."""
    picks = track.draft_sources
    return next((s.id for s in picks if s.cost == "model"), picks[0].id if picks else None)


def source_phrase(source_id: str) -> str:
    """The source in a sentence: "the draft model", "prompt lookup"."""
    src = get_source(source_id)
    if src is None:
        return source_id
    return f"the {src.label}" if src.cost == "model" else src.label


class PayPanel(JobView):
    NOUN = "measurement"
    FAILED = "Measuring failed: "

    def __init__(self, lane: Lane, state: WorkbenchState, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(lane, state, context, parent)
        self.report: PayReport | None = None
        self.measured_for: tuple[str, str | None, str] | None = None
        self.last_run: tuple[RunResult, float | None] | None = None
        self.last_speedups: list[float] = []  # the last run's paired speedups (repeats)
        self.experts = PayExperts(lane, state, context)
        self.experts.error.connect(self.error)  # one error path for the tab
        self._build()
        self.show_availability()

    def _build(self) -> None:
        layout = self._frame()
        self.k_part = QWidget()  # the K prediction: hidden for a track that only reduces experts
        k_layout = QVBoxLayout(self.k_part)
        k_layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.source = QComboBox()
        # The cheapest to try first (priority): the registry's order within a track.
        for src in sorted(sources(), key=lambda s: s.priority):
            self.source.addItem(source_text(src), src.id)
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
        k_layout.addLayout(row)
        k_layout.addLayout(self._status_row())  # the progress bar stays hidden: no steps

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
        self._place_body(k_layout, self.split, EMPTY)
        self.parts = splitter(Qt.Orientation.Vertical, self.k_part, self.experts, [500, 500])
        layout.addWidget(self.parts, 1)
        self.experts.hide()

        self.measure_button.clicked.connect(self.measure)
        self.alpha.valueChanged.connect(self._alpha_edited)
        self.use_observed.clicked.connect(self._use_observed)

    def show_availability(self) -> None:
        self.set_available(self.state.short_reasons())

    def set_available(self, available: dict[str, str | None]) -> None:
        """Offer each source only when its track (the source alone) can run on the current
        pair."""
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
        """Draft from what ``track`` drafts with (``source_of``). False (nothing changed) if
        the track does not speculate, that source cannot run on these models or is not
        listed, or a measurement is running."""
        t = find_track(track)
        source = source_of(t) if t is not None else None
        if source is None or self.active:
            return False
        index = self.source.findData(source)
        if index < 0 or not self.source.model().item(index).isEnabled():  # type: ignore[attr-defined]
            return False
        self.source.setCurrentIndex(index)
        return True

    def set_track(self, track_id: str) -> None:
        """Show what ``track_id`` needs predicted: the K prediction if it speculates (or does
        nothing else), the expert measurement if it reduces experts."""
        t = find_track(track_id)
        moe = t is not None and t.moe
        self.experts.setVisible(moe)
        self.k_part.setVisible(not moe or t is None or t.speculates)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        ctx = self.context_of()  # the Run tab's track, which changes while this tab is hidden
        if isinstance(ctx, RunContext):
            self.set_track(ctx.request.settings.track)

    # -- measuring ---------------------------------------------------------------------------
    def run_main_action(self) -> bool:
        """What Ctrl+Enter does on this tab: measure (the experts if there is no K)."""
        if self.k_part.isHidden():
            return self.experts.measure()
        return self.measure()

    def measure(self) -> bool:
        ctx = self._context()
        if ctx is None:
            return False
        source = self.source.currentData()
        src = get_source(source)
        if src is None or ctx.available.get(source) is False:
            self.status.setText(f"{track_label(source)} cannot run on these models.")
            return False
        s = replace(ctx.request.settings, track=source, experts=None)  # the source alone
        needs_draft = src.needs_draft_model or src.cost == "model"
        target_path = str(ctx.request.target)
        draft_path = str(ctx.request.draft) if needs_draft and ctx.request.draft else None
        alpha = self.alpha.value()

        def job(session: Any, cancel: Any, progress: Any) -> PayReport:
            session.check(target_path, draft_path, s)
            target = session.load_target(target_path, s)
            draft = session.load_draft(draft_path, s) if draft_path else None
            return will_it_pay(target, draft, alpha=alpha, source=source)

        self.measured_for = (target_path, draft_path, source)
        return self._begin(job, "measuring batches of the target"
                           + (" and the draft's step…" if draft_path else "…"))

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
                                  lookup_lengths=self._lookup_lengths(r.source, self.last_run))
            self._show()

    @staticmethod
    def _lookup_lengths(source: str, last_run: tuple[RunResult, float | None] | None
                        ) -> list[int] | None:
        """How long the drafts of ``source`` really were in the last run, if it used that
        source and the source drafts for free (a variable length: see ``predict``)."""
        src = get_source(source)
        track = find_track(last_run[0].track) if last_run is not None else None
        if last_run is None or track is None or src is None or src.cost != "free" \
                or source not in track.sources:
            return None
        return proposed_lengths(last_run[0].events)

    # -- showing -------------------------------------------------------------------------------
    def _show(self) -> None:
        r = self.report
        if r is None:
            return
        self._show_body()
        name = source_phrase(r.source)
        best = r.best
        if not r.predictions:
            self.recommendation.setText(f"Do not speculate with {name} here.")
        elif r.recommended_k:
            pred = r.predictions[r.recommended_k - 1]
            tied = [k for k in r.leaders if k != r.recommended_k]
            also = (f" (K = {', '.join(map(str, r.leaders))} predict within noise of each "
                    "other)" if tied else "")
            self.recommendation.setText(f"Recommended: K = {r.recommended_k} with {name} — "
                                        f"about {pred.speedup:.2f}× baseline{also}")
        elif best is not None and best.speedup > 1.0:
            self.recommendation.setText(
                f"No recommendation: the best, K = {best.k} with {name}, predicts "
                f"{best.speedup:.2f}× — within noise of the baseline (it must beat it by "
                f"more than {SINGLE_RUN_MARGIN:.0%})")
        else:
            self.recommendation.setText(f"Speculating with {name} will not pay at "
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

    def set_measured(self, result: RunResult, speedup: float | None,
                     speedups: list[float] | None = None) -> None:
        """A run ended: keep it to set its prediction next to what it measured
        (``speedups``: each repeat's, when it was repeated)."""
        track = find_track(result.track)
        if track is None or not track.speculates:
            return
        self.last_run = (result, speedup)
        self.last_speedups = list(speedups or [])
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
        track = find_track(result.track)
        source = source_of(track) if track is not None else None
        k = int(result.effective.get("draft_max") or result.settings.get("draft_max") or 0)
        seen = observed_alpha(result.events)
        shown = self.last_speedups or ([measured] if measured is not None else [])
        got = (f"measured {format_speedup(shown)} baseline" if measured is not None
               else "no measured speedup (run the baseline on this prompt, or compare)")
        head = f"Last run — {track_label(result.track)}, K = {k}: {got}"
        r = self.report
        if seen is None or source is None:
            idle = idle_reason(result)
            why = f" ({idle})" if idle else ""
            self.versus.setText(f"{head}. It drafted nothing{why}, so there is no acceptance "
                                "to predict from, and its speed is the baseline's give or "
                                "take noise.")
            return
        if r is None or r.costs is None or not 1 <= k <= len(r.predictions):
            self.versus.setText(head + (". Measure to set the prediction next to it."
                                        if r is None else "."))
            return
        if r.source != source:
            self.versus.setText(f"{head}. Measure with {source_phrase(source)} to compare it "
                                "with a prediction.")
            return
        lengths = self._lookup_lengths(source, self.last_run)
        pred = predict(r.costs, seen, source, "observed", lookup_lengths=lengths).predictions[k - 1]
        self.versus.setText(f"{head}; predicted {pred.speedup:.2f}× at its observed "
                            f"{seen:.0%} acceptance.")
        if measured is not None:
            self.measured.setData([k], [measured])
