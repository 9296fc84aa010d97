"""Sweep: one track over a range of one setting (K, the expert count, or a setting of one
of its draft sources that has sweep values in the registry).

The sweep runs on the engine lane through ``app.core.sweep.iter_sweep`` (a baseline first,
then one full run per value, on the Run tab's models, prompt and settings; with "Repeats"
above 1 all of that again, interleaved, and each value shows its median and range); each
point is plotted as it arrives: tokens/s with the baseline as a dashed line, acceptance, and
for an expert sweep the divergence of the answer from the full-expert one. When it ends the
verdict is shown and a best value marked only if it is best beyond noise (``mark_best``;
for experts only within the divergence limit); a value that drafted nothing says so and why.
A sweep over K runs with fixed drafting (with adaptive drafting K is only a cap): the view
says so. What a track can vary is ``app.core.sweep.parameters``; a source setting's label,
default values and kind (whole number or not) come from its registry ``Setting``.
"Keep for comparison" keeps a sweep's curves to draw beside later sweeps of the same setting
(``app.ui.sweep_kept``): two models' expert sweeps on one plot.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.drafting.registry import setting
from app.core.errors import RefusedError
from app.core.events import RunSettings
from app.core.labels import setting_label, track_label
from app.core.sweep import (
    MAX_DIVERGENCE,
    Sweep,
    SweepPoint,
    default_values,
    iter_sweep,
    mark_best,
    parameters,
)
from app.core.tracks import find_track, working
from app.core.verdict import format_speedup
from app.ui.jobs import (
    ContextProvider,
    JobView,
    fmt_rate,
    number_item,
    read_only_table,
    splitter,
)
from app.ui.lane import Lane
from app.ui.plots import BLUE, GREEN, GREY, ORANGE, _plot
from app.ui.state import WorkbenchState
from app.ui.sweep_kept import RANDOM_NOTE, KeptPanel, SweptModel, swept_model

CORE_PARAMETERS = ("draft_max", "experts")  # the rest: the registry's settings
EMPTY = ("Pick a track and the setting to vary, then press Sweep: the track runs once per "
         "value on the Run tab's models, prompt and settings, after one baseline run, and "
         "the best value is marked when it is best beyond noise.")
COLUMNS = ("value", "tok/s", "speedup", "acceptance", "divergence", "same answer", "note")
DIVERGENCE, NOTE = 4, 6
MAX_REPEATS = 10
FIXED_K = ("A sweep over K runs with fixed drafting (adaptive drafting off): with adaptive "
           "drafting on, K is only a cap on how far it drafts, so the points would measure "
           "its decisions, not K.")


def parse_values(text: str, integer: bool) -> list[float] | list[int]:
    """``"1-4, 8"`` → [1, 2, 3, 4, 8]; floats unless ``integer``. RefusedError if
    unreadable."""
    out: list[Any] = []
    for part in filter(None, re.split(r"[,\s;]+", text.strip())):
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part) if integer else None
        try:
            if m:
                lo, hi = int(m[1]), int(m[2])
                out += list(range(lo, hi + 1) if lo <= hi else range(lo, hi - 1, -1))
            else:
                out.append(int(part) if integer else float(part))
        except ValueError as exc:
            raise RefusedError(f"cannot read {part!r} as a value") from exc
    if not out:
        raise RefusedError("enter at least one value to sweep")
    return out


def parameter_label(parameter: str) -> str:
    """What the window calls a sweep parameter: "K (draft max)", a Setting's label (the one
    table of display names, ``app.core.labels``)."""
    return setting_label(parameter)


def is_integer(parameter: str) -> bool:
    """Whether the parameter takes whole numbers (K, experts, an int Setting)."""
    spec = setting(parameter)
    return parameter in CORE_PARAMETERS or (spec is not None and spec.kind is not float)


def values_text(values: list[float] | list[int]) -> str:
    """Values as the values box reads them: a run of 3 or more whole numbers as "1-4"."""
    whole = all(isinstance(v, int) for v in values)
    steps = {b - a for a, b in itertools.pairwise(values)}
    if whole and len(values) >= 3 and steps in ({1}, {-1}):
        return f"{values[0]}-{values[-1]}"
    return ", ".join(f"{v:g}" for v in values)


def default_text(parameter: str, target: Any | None) -> str:
    """The values a sweep of ``parameter`` tries unless the user types others."""
    if parameter == "experts":  # from the target already read, not the file again
        n = (target.expert_used_count or target.expert_count) if target is not None else 0
        return f"{n}-1" if n > 1 else "1"
    # Besides the experts, the defaults do not depend on the model (no path needed).
    return values_text(default_values(parameter, "", RunSettings()))


class SweepView(JobView):
    sweep_ended = Signal(object)  # Sweep
    NOUN = "sweep"

    def __init__(self, lane: Lane, state: WorkbenchState, context: ContextProvider,
                 parent: QWidget | None = None) -> None:
        super().__init__(lane, state, context, parent)
        self.sweep: Sweep | None = None
        self.points: list[SweepPoint] = []
        self.target_info: Any | None = None
        self._available: dict[str, str | None] = {}
        self._integer = True
        self._build()
        state.models_changed.connect(self.show_availability)  # the expert range, too
        self.show_availability()

    def _build(self) -> None:
        layout = self._frame()
        row = QHBoxLayout()
        self.track = QComboBox()
        for t in working():
            if t.speculates or t.moe:
                self.track.addItem(track_label(t.id), t.id)
        self.parameter = QComboBox()
        self.values = QLineEdit()
        self.values.setToolTip("values to try: a list (0.2, 0.5) or a range of whole numbers "
                               "(1-16; 8-1 counts down)")
        self.repeats = QSpinBox()
        self.repeats.setRange(1, MAX_REPEATS)
        self.repeats.setValue(1)  # a sweep is many runs already; raise it to judge closer
        self.repeats.setToolTip(
            "how many times the baseline and every value run, interleaved; each value then "
            "shows its median and the range of its speedups. With 1 run, only a difference "
            "of more than 10 % counts as more than noise.")
        self.start_button = QPushButton("Sweep")
        self.start_button.setObjectName("RunButton")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        for label, w in (("Track", self.track), ("vary", self.parameter),
                         ("over", self.values), ("repeats", self.repeats)):
            text = QLabel(label)
            text.setBuddy(w)
            row.addWidget(text)
            row.addWidget(w, 2 if w is self.values else 0)
        row.addWidget(self.start_button)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.fixed_note = QLabel(FIXED_K)
        self.fixed_note.setObjectName("Hint")
        self.fixed_note.setWordWrap(True)
        layout.addWidget(self.fixed_note)
        layout.addLayout(self._status_row())
        self.best_label = QLabel("")
        self.best_label.setObjectName("Verdict")
        self.best_label.setWordWrap(True)
        self.best_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.best_label)

        self.tps = _plot("tokens / s", "tok/s", "value")
        self.speed = _plot("speedup over the baseline", "× baseline", "value")
        self.acc = _plot("acceptance", "accepted / drafted", "value")
        self.acc.setYRange(0, 1.05)
        self.div = _plot("divergence from the full-expert answer", "edit distance (0–1)",
                         "value")
        self.div.setYRange(0, 1.05)
        for plot in (self.speed, self.acc, self.div):
            plot.setXLink(self.tps)
        # connect="finite": a value whose run wrote no token is a gap, not a point at 0.
        self.tps_curve = self.tps.plot([], [], pen=pg.mkPen(BLUE, width=2), symbol="o",
                                       symbolSize=7, symbolBrush=BLUE, connect="finite")
        self.best_marker = self.tps.plot([], [], pen=None, symbol="star", symbolSize=20,
                                         symbolBrush="#f5b700", symbolPen="#8a6d00")
        self.base_line = pg.InfiniteLine(angle=0, pen=pg.mkPen(GREY, width=1.5,
                                                               style=Qt.PenStyle.DashLine),
                                         label="baseline",
                                         labelOpts={"position": 0.92, "color": "#3a4250"})
        self.tps.addItem(self.base_line)
        self.speed_curve = self.speed.plot([], [], pen=pg.mkPen(BLUE, width=2), symbol="o",
                                           symbolSize=7, symbolBrush=BLUE, connect="finite")
        self.speed.addItem(pg.InfiniteLine(1.0, angle=0, pen=pg.mkPen(
            GREY, width=1.5, style=Qt.PenStyle.DashLine)))
        self.acc_curve = self.acc.plot([], [], pen=pg.mkPen(GREEN, width=2), symbol="o",
                                       symbolSize=7, symbolBrush=GREEN)
        self.div_curve = self.div.plot([], [], pen=pg.mkPen(ORANGE, width=2), symbol="o",
                                       symbolSize=7, symbolBrush=ORANGE)
        self.div_limit = pg.InfiniteLine(MAX_DIVERGENCE, angle=0, label="limit for 'best'",
                                         pen=pg.mkPen("#c62828", style=Qt.PenStyle.DotLine),
                                         labelOpts={"position": 0.1})
        self.div.addItem(self.div_limit)
        plots = QWidget()
        plots_layout = QVBoxLayout(plots)
        plots_layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.tps, self.speed, self.acc, self.div):
            plots_layout.addWidget(w, 1)
        self.kept = KeptPanel(
            {"tps": self.tps, "speedup": self.speed, "div": self.div},
            {"tps": self.tps_curve, "speedup": self.speed_curve, "div": self.div_curve})
        # Under the plots, not in the top row: that row must fit a 1280-pixel screen.
        kept_row = QHBoxLayout()
        kept_row.addWidget(self.kept.hint, 1)
        kept_row.addWidget(self.kept.keep_button)
        kept_row.addWidget(self.kept.clear_button)
        plots_layout.addLayout(kept_row)
        self.table = read_only_table(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.split = splitter(Qt.Orientation.Horizontal, plots, self.table, [900, 460])
        self._place_body(layout, self.split, EMPTY)

        self.track.currentIndexChanged.connect(self._track_changed)
        self.parameter.currentIndexChanged.connect(self._parameter_changed)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.kept.keep_button.clicked.connect(self.keep)
        self.kept.clear_button.clicked.connect(self.clear_kept)
        self._track_changed()

    # -- choices ----------------------------------------------------------------------------
    def show_availability(self) -> None:
        self.set_available(self.state.short_reasons(), self.state.target_info)

    def set_available(self, available: dict[str, str | None], target: Any | None) -> None:
        """Tracks that can run on the current models; the target ranges the expert sweep."""
        self._available = available
        changed = target is not self.target_info
        self.target_info = target
        model = self.track.model()
        first_ok = None
        for i in range(self.track.count()):
            tid = self.track.itemData(i)
            item = model.item(i)  # type: ignore[attr-defined]
            ok = available.get(tid, "no model") is None
            item.setEnabled(ok)
            item.setToolTip("" if ok else f"unavailable: {available.get(tid, 'no model')}")
            if ok and first_ok is None:
                first_ok = i
        if available.get(self.track.currentData(), "x") is not None and first_ok is not None:
            self.track.setCurrentIndex(first_ok)
        elif changed:
            self._parameter_changed()

    def _track_changed(self) -> None:
        track = find_track(self.track.currentData())
        current = self.parameter.currentData()
        self.parameter.blockSignals(True)
        self.parameter.clear()
        for p in parameters(track) if track is not None else []:
            self.parameter.addItem(parameter_label(p), p)
        index = self.parameter.findData(current)
        self.parameter.setCurrentIndex(max(index, 0))
        self.parameter.blockSignals(False)
        self._parameter_changed()

    def _parameter_changed(self) -> None:
        p = self.parameter.currentData()
        if p:
            self.values.setText(default_text(p, self.target_info))
        self.fixed_note.setVisible(p == "draft_max")

    def choose(self, track: str, parameter: str, values: str) -> None:
        self.track.setCurrentIndex(self.track.findData(track))
        self.parameter.setCurrentIndex(self.parameter.findData(parameter))
        self.values.setText(values)

    # -- running ----------------------------------------------------------------------------
    def run_main_action(self) -> bool:
        """What Ctrl+Enter does on this tab: start the sweep."""
        return self.start()

    def start(self) -> bool:
        ctx = self._context()
        if ctx is None:
            return False
        track, parameter = self.track.currentData(), self.parameter.currentData()
        try:
            if self._available.get(track, "x") is not None:
                raise RefusedError(f"{track_label(track)} cannot run on these models")
            values = parse_values(self.values.text(), is_integer(parameter))
        except RefusedError as exc:
            self._refuse(str(exc))
            return False
        s = replace(ctx.request.settings, track=track)
        repeats = self.repeats.value()

        r = ctx.request

        def job(session: Any, cancel: Any, progress: Any) -> Sweep:
            progress(swept_model(r.target))  # before any point: their notes depend on it
            sweep = Sweep(parameter, track)
            for point in iter_sweep(session, r.target, r.draft, r.prompt, s, parameter,
                                    values, lambda *a: progress(a), cancel, sweep, repeats):
                progress(point)
            mark_best(sweep)
            return sweep

        self.kept.begin(parameter, track, r.target)  # before the reset redraws the axis
        self._reset(parameter)
        return self._begin(job, "loading the model…", (len(values) + 1) * repeats)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        for w in (self.track, self.parameter, self.values, self.repeats):
            w.setEnabled(not running)
        self.kept.enable(running, bool(self.points))
        super()._set_running(running)

    def _reset(self, parameter: str) -> None:
        self.points, self.sweep = [], None
        self.table.setRowCount(0)
        self.best_label.setText("")
        self.base_line.hide()
        self.best_marker.setData([], [])
        for plot in (self.tps, self.speed, self.acc, self.div):
            plot.setLabel("bottom", parameter_label(parameter))
        self.div.setVisible(parameter == "experts")
        self._integer = is_integer(parameter)
        track = find_track(self.track.currentData())
        self.acc.setVisible(parameter != "experts" or (track is not None and track.speculates))
        self._redraw()
        self._show_body()

    def _progress(self, x: object) -> None:
        if isinstance(x, SweptModel):
            self.kept.set_model(x)
            for r, p in enumerate(self.points):  # none yet: the job reads the file first
                self._set_row(r, p)
        elif isinstance(x, SweepPoint):
            if x in self.points:  # a later repeat of a value: its row follows
                self._set_row(self.points.index(x), x)
            else:
                self.points.append(x)
                self._add_row(x)
            self._redraw()
        elif isinstance(x, tuple) and len(x) == 3:
            done, total, label = x
            self.progress.setValue(int(done))
            if done < total:
                self.status.setText(f"{done + 1} / {total} · running {label}…")

    def _redraw(self) -> None:
        xs = np.asarray([float(p.value) for p in self.points])
        ticks = None  # whole values only (the kept curves' too), at most about 16 labels
        shown = sorted({*xs.tolist(), *(v for k in self.kept.shown() for v in k.values)})
        if self._integer and shown:
            ticks = [[(v, f"{v:g}") for v in shown[::max(1, len(shown) // 16)]]]
        for plot in (self.tps, self.speed, self.acc, self.div):
            plot.getAxis("bottom").setTicks(ticks)
        if shown:
            # Every swept value in view, also one without a speed (a gap in tokens/s, which
            # autorange would leave out, and the linked plots with it).
            self.tps.setXRange(shown[0], shown[-1], padding=0.05)
        self.tps_curve.setData(xs, np.asarray([p.tokens_per_second for p in self.points]))
        self.speed_curve.setData(xs, np.asarray(
            [np.nan if p.speedup is None else p.speedup for p in self.points]))
        acc = [(float(p.value), p.acceptance_rate) for p in self.points
               if p.acceptance_rate is not None]
        self.acc_curve.setData(np.asarray([a for a, _ in acc]), np.asarray([b for _, b in acc]))
        self.div_curve.setData(xs, np.asarray([p.divergence for p in self.points]))
        first = self.points[0] if self.points else None
        if first is not None and first.runs and first.speedups and first.speedups[0]:
            # The first baseline run's speed (the first repeat's pair).
            base = first.runs[0].tokens_per_second / first.speedups[0]
            self.base_line.setValue(base)
            self.base_line.label.setFormat(f"baseline {base:.1f} tok/s")
            self.base_line.show()

    def _add_row(self, p: SweepPoint) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        self._set_row(r, p)

    def _set_row(self, r: int, p: SweepPoint) -> None:
        idle = p.drafted_nothing
        cells = (f"{p.value:g}", "—" if p.wrote_nothing else f"{p.tokens_per_second:.1f}",
                 format_speedup(p.speedups or p.speedup),
                 "— drafted nothing" if idle else fmt_rate(p.acceptance_rate),
                 f"{p.divergence:.2f}",
                 "✓" if p.same_as_baseline else f"{100 * p.agreement:.0f} % prefix",
                 "; ".join(self._notes(p)))
        for c, text in enumerate(cells):
            item = number_item(text)
            if idle and c in (3, NOTE):
                item.setToolTip(f"drafted nothing: {idle}")
            if c == DIVERGENCE and self.kept.random_experts:
                item.setToolTip(RANDOM_NOTE)
            self.table.setItem(r, c, item)

    def _notes(self, p: SweepPoint) -> list[str]:
        notes = [RANDOM_NOTE] if self.kept.random_experts else []
        if p.wrote_nothing:  # nothing written: nothing drafted either, and this says why
            return [p.wrote_nothing, *notes]
        idle = p.drafted_nothing
        return ([f"drafted nothing: {idle}"] if idle else []) + notes

    def keep(self) -> bool:
        """Keep the live sweep's curves to draw beside later sweeps of its setting."""
        if self.active or not self.kept.keep(self.points):
            return False
        self._redraw()  # the axis ticks count the kept values
        return True

    def clear_kept(self) -> None:
        self.kept.clear()
        self.kept.enable(self.active, bool(self.points))  # the live sweep can be kept again
        self._redraw()

    def _finished(self, sweep: Sweep) -> None:
        self.sweep = sweep
        self._end()
        best = sweep.best
        name = parameter_label(sweep.parameter)
        verdict = sweep.verdict
        if best is not None:
            self.best_marker.setData([float(best.value)], [best.tokens_per_second])
            row = self.points.index(best) if best in self.points else -1
            if row >= 0:
                self.table.selectRow(row)
            self.best_label.setText(
                f"Best: {name} = {best.value:g} — {best.tokens_per_second:.1f} tok/s, "
                f"{format_speedup(best.speedups or best.speedup)} baseline, beyond noise.")
        elif not self.points:
            self.best_label.setText("No best value: no point finished.")
        elif verdict is not None:
            self.best_label.setText("No best value. " + verdict.text)
        if verdict is not None:
            self.best_label.setToolTip(verdict.text)
        what = f"cancelled after {len(sweep.points)} values" if sweep.cancelled \
            else f"done: {len(sweep.points)} values"
        if sweep.repeats > 1:
            what += f" × {sweep.repeats} repeats (medians, with their range)"
        if sweep.fixed_drafting:
            what += " · fixed drafting (adaptive off): K is the real draft length"
        self.status.setText(what)
        self.sweep_ended.emit(sweep)
