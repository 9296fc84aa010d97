"""Live plots (pyqtgraph) in tabs, and the run's summary numbers beside them.

The plots cost the run they show as little as can be: curves are created once and updated
with ``setData`` at a bounded rate (the run controller's plot tick, about 4 Hz), only the
plot on screen is redrawn (the others catch up when their tab is shown or the run ends), and
each axis keeps a fixed "nice" range that only grows in steps, so pyqtgraph reuses its cached
axis pictures instead of laying out ticks and labels on every update (measured: most of the
GUI thread's time during a run went to axis layout). The acceptance plots are hidden for a
track that does not draft. Colours follow the light or dark theme (``app.ui.palette``); the
numbers come from ``app.core.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QPalette, QShowEvent
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGridLayout,
    QGroupBox,
    QLabel,
    QSizePolicy,
    QTabWidget,
    QWidget,
)

from app.core.labels import MEAN_ACCEPTED_LENGTH_HELP, stop_label
from app.core.metrics import ROUND_WINDOW, LiveMetrics
from app.core.verdict import ComparedRun
from app.ui.palette import is_dark, theme

BLUE, GREEN, ORANGE, GREY = "#1f77b4", "#2ca02c", "#ff7f0e", "#9aa1ab"
LEGEND_BRUSH = (255, 255, 255, 210)  # light theme; ThemedPlot legends follow the theme
TPS, ACCEPTANCE, POSITIONS = range(3)
EDGE = 1.05  # room past the last tick, so that its label is not cut at the plot's edge


def apply_plot_defaults(dark: bool | None = None) -> None:
    """pyqtgraph's colours for plots created from now on (every view's), from the theme."""
    t = theme(dark)
    pg.setConfigOptions(antialias=False, background=t.plot_bg, foreground=t.plot_fg)


# Light until the window says otherwise: a view's plots made before (tests) look as before.
apply_plot_defaults(dark=False)


def theme_plot(w: pg.PlotWidget, dark: bool | None = None) -> None:
    """Re-colour an existing plot for the theme: background, axes, labels, legend."""
    t = theme(dark)
    w.setBackground(t.plot_bg)
    item = w.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(t.plot_fg)
        axis.setTextPen(t.plot_fg)
        if axis.labelText:
            axis.setLabel(axis.labelText, units=axis.labelUnits, color=t.plot_fg)
    if item.titleLabel.text:
        item.setTitle(item.titleLabel.text, color=t.plot_fg, size="9pt")
    legend = item.legend
    if legend is not None:
        legend.setBrush(pg.mkBrush(*t.legend_bg))
        legend.setLabelTextColor(t.plot_fg)


def nice_ceiling(value: float, headroom: float = 1.1) -> float:
    """The smallest of 1, 2, 5 × 10^k at or above ``value * headroom`` (at least 1)."""
    target = max(1.0, value * headroom)
    k = math.floor(math.log10(target))
    for m in (1.0, 2.0, 5.0, 10.0):
        if m * 10 ** k >= target:
            return m * 10 ** k
    return 10.0 ** (k + 1)


class ThemedPlot(pg.PlotWidget):
    """A plot in the theme's colours, not a tab stop; its legend too, whatever brush the
    caller asks for (the views were written for a light background)."""

    def addLegend(self, *args: Any, **kwargs: Any) -> pg.LegendItem:
        t = theme()
        kwargs["brush"] = pg.mkBrush(*t.legend_bg)
        kwargs.setdefault("labelTextColor", t.plot_fg)
        return self.getPlotItem().addLegend(*args, **kwargs)


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    """A plot of the views (Compare, Sweep, Will it pay?): titled, ranges follow the data."""
    w = ThemedPlot()
    if title:
        w.setTitle(title, size="9pt")
    w.setLabel("left", left)
    w.setLabel("bottom", bottom)
    w.showGrid(x=False, y=False)
    for axis in ("left", "bottom"):
        w.getAxis(axis).enableAutoSIPrefix(False)
    w.setClipToView(True)
    w.setDownsampling(auto=True, mode="peak")
    w.setMenuEnabled(False)
    w.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a picture, not a control: no tab stop
    w.setMinimumHeight(100)
    theme_plot(w)
    return w


def _live_plot(left: str, bottom: str) -> pg.PlotWidget:
    """A plot of a streaming run: its tab names it; ranges set in steps (``_grow``); axes
    (and the legend, ``_curve``) cached as pixmaps, so a new point repaints the curves
    only, not the axes' Python paint code."""
    w = _plot("", left, bottom)
    w.setMouseEnabled(x=False, y=False)
    w.hideButtons()
    item = w.getPlotItem()
    item.getViewBox().disableAutoRange()
    for name in ("left", "bottom"):
        item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    w.setMinimumHeight(110)
    return w


def _curve(plot: pg.PlotWidget, colour: str, name: str | None = None) -> pg.PlotCurveItem:
    """A bare curve (no PlotDataItem layer: its per-update bookkeeping in Python cost
    more than drawing), one pixel wide (wider lines are stroked: twice the cost)."""
    curve = pg.PlotCurveItem(pen=pg.mkPen(colour, width=1), name=name, skipFiniteCheck=True)
    plot.addItem(curve)
    legend = plot.getPlotItem().legend
    if legend is not None:
        for part in (legend, *(x for pair in legend.items for x in pair)):
            part.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
    return curve


class LivePlots(QTabWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDocumentMode(True)
        self.tps = _live_plot("tok/s", "seconds since prefill")
        self.tps.addLegend(offset=(-4, 4), labelTextSize="8pt")
        self.cumulative = _curve(self.tps, ORANGE, "cumulative")
        self.rolling = _curve(self.tps, BLUE, "rolling 1 s")
        self.acc = _live_plot("accepted / proposed", "round")
        self.acc.setYRange(0, EDGE, padding=0)
        self.acc.addLegend(offset=(-4, -4), labelTextSize="8pt")
        # A line over the last rounds rather than one dot per round: scatter items are
        # costly to repaint while the engine competes for the GIL.
        self.round_rate = _curve(self.acc, GREY, f"last {ROUND_WINDOW} rounds")
        self.cum_rate = _curve(self.acc, GREEN, "running")
        self.position_plot = _live_plot("acceptance rate", "draft position")
        self.position_plot.setYRange(0, EDGE, padding=0)
        # A few bars: nothing to clip, and pyqtgraph's clipping breaks step data whose
        # x range grows (len(x) must stay len(y) + 1).
        self.position_plot.setClipToView(False)
        self.pos_bars = self.position_plot.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                                brush=pg.mkBrush(BLUE + "99"), pen=pg.mkPen(BLUE))
        self.addTab(self.tps, "tokens/s")
        self.addTab(self.acc, "acceptance")
        self.addTab(self.position_plot, "by position")
        self.setTabToolTip(TPS, "tokens per second since the prompt was evaluated")
        self.setTabToolTip(ACCEPTANCE, "accepted / proposed drafts per verification round")
        self.setTabToolTip(POSITIONS, "how often the draft token at each position was accepted")
        self._jobs: tuple[Callable[[LiveMetrics], bool], ...] = (
            self._update_throughput, self._update_acceptance, self._update_positions)
        self._metrics: LiveMetrics | None = None
        self.currentChanged.connect(lambda _i: self._catch_up())
        self.apply_theme()
        self.reset()

    def apply_theme(self, dark: bool | None = None) -> None:
        dark = is_dark() if dark is None else dark
        for w in (self.tps, self.acc, self.position_plot):
            theme_plot(w, dark)

    def reset(self, speculating: bool = True) -> None:
        self._metrics = None
        self._shown = [0, 0, 0]  # points shown per plot (positions: proposals counted)
        self._range: dict[str, float] = {}
        for curve in (self.rolling, self.cumulative, self.round_rate, self.cum_rate):
            curve.setData([], [])
        self.pos_bars.setData([0, 1], [0])
        self.pos_bars.hide()  # no bars until a round was verified
        self.position_plot.getAxis("bottom").setTicks(None)
        self.tps.setXRange(0, EDGE, padding=0)
        self.tps.setYRange(0, EDGE, padding=0)
        self.acc.setXRange(0, EDGE, padding=0)
        self.position_plot.setXRange(0.5, 1.5, padding=0)
        # A track that does not draft has no acceptance to plot: its tabs go away.
        self.setTabVisible(ACCEPTANCE, speculating)
        self.setTabVisible(POSITIONS, speculating)
        if not speculating:
            self.setCurrentIndex(TPS)

    def update_from(self, m: LiveMetrics, every_plot: bool = False) -> None:
        """Redraw from ``m``: while streaming (``every_plot`` False) only the plot on screen,
        and nothing while the plots are hidden; at the end of a run every plot."""
        self._metrics = m
        if every_plot:
            for job in self._jobs:
                job(m)
        elif self.isVisible():
            self._jobs[self.currentIndex()](m)

    def _catch_up(self) -> None:
        if self._metrics is not None and self.isVisible():
            self._jobs[self.currentIndex()](self._metrics)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._catch_up()

    def _grow(self, key: str, value: float, set_range: Callable[[float], object]) -> None:
        """Widen an axis to the next nice bound when the data passes it (never shrinks
        during a run: a stable range keeps the axis picture cached)."""
        if value > self._range.get(key, 0.0):
            bound = nice_ceiling(value)
            self._range[key] = bound
            set_range(bound * EDGE)

    def _update_throughput(self, m: LiveMetrics) -> bool:
        t = m.throughput
        if len(t.t) == self._shown[TPS]:
            return False
        self._shown[TPS] = len(t.t)
        x, rolling, cumulative = np.asarray(t.t), np.asarray(t.rolling), np.asarray(t.cumulative)
        self._grow("tps_x", float(x[-1]), lambda b: self.tps.setXRange(0, b, padding=0))
        top = max(float(rolling.max()), float(cumulative.max()))
        self._grow("tps_y", top, lambda b: self.tps.setYRange(0, b, padding=0))
        self.rolling.setData(x, rolling)
        self.cumulative.setData(x, cumulative)
        return True

    def _update_acceptance(self, m: LiveMetrics) -> bool:
        a = m.acceptance
        if len(a.round) == self._shown[ACCEPTANCE]:
            return False
        self._shown[ACCEPTANCE] = len(a.round)
        x = np.asarray(a.round, dtype=float)
        self._grow("acc_x", float(x[-1]), lambda b: self.acc.setXRange(0, b, padding=0))
        self.round_rate.setData(x, np.asarray(a.rolling))
        self.cum_rate.setData(x, np.asarray(a.cumulative))
        return True

    def _update_positions(self, m: LiveMetrics) -> bool:
        counts = sum(m.position_proposed)
        if counts == self._shown[POSITIONS]:
            return False
        self._shown[POSITIONS] = counts
        rates = m.position_rates
        if self._range.get("pos_x") != len(rates):
            self._range["pos_x"] = len(rates)
            self.position_plot.setXRange(0.5, len(rates) + 0.5, padding=0)
            axis = self.position_plot.getAxis("bottom")
            step = max(1, len(rates) // 12)  # whole positions only, at most about 12 labels
            axis.setTicks([[(i, str(i)) for i in range(1, len(rates) + 1, step)]])
        edges = np.arange(len(rates) + 1, dtype=float) + 0.5
        self.pos_bars.setData(edges, np.asarray(rates))
        self.pos_bars.show()
        return True


def _fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


class SummaryValue(QWidget):
    """One number of the summary: word-wrapped text that repaints itself when it changes
    and asks for a new layout only when it no longer fits. A QLabel's ``setText`` asks the
    whole window for a new layout, which moved the splitters and repainted the answer and
    the prompt: about 4 ms per live update, the largest single cost of the window during a
    run."""

    def __init__(self, text: str = "—", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("SummaryValue")
        font = self.font()
        font.setBold(True)
        self.setFont(font)
        self._text = text
        policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)

    def text(self) -> str:
        return self._text

    def setText(self, text: str) -> None:  # the name QLabel has: the views call it
        if text == self._text:
            return
        self._text = text
        if self.heightForWidth(self.width()) > self.height() or not self.isVisible():
            self.updateGeometry()
        self.update()

    def _flags(self) -> int:
        return int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
                   | Qt.TextFlag.TextWordWrap)

    def sizeHint(self) -> QSize:
        fm = self.fontMetrics()
        return QSize(fm.horizontalAdvance(self._text) + 2, fm.height())

    def minimumSizeHint(self) -> QSize:
        fm = self.fontMetrics()
        return QSize(min(self.sizeHint().width(), fm.horizontalAdvance("0000.00")), fm.height())

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        rect = self.fontMetrics().boundingRect(QRect(0, 0, max(1, width), 10000), self._flags(),
                                               self._text)
        return max(self.fontMetrics().height(), rect.height())

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            painter.setPen(self.palette().color(QPalette.ColorRole.WindowText))
            painter.drawText(self.rect(), self._flags(), self._text)
        finally:
            painter.end()


class SummaryPanel(QGroupBox):
    """The run's numbers: live while it runs, exact from the result when it ends."""

    FIELDS = (
        ("tps", "tokens / s"), ("speedup", "speedup"), ("acceptance", "acceptance"),
        ("mean_len", "mean accepted length"), ("draft_verify", "draft / verify time"),
        ("prefill", "prompt / prefill"), ("generated", "generated"), ("stop", "stopped"),
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Summary", parent)
        grid = QGridLayout(self)
        grid.setVerticalSpacing(2)
        self.values: dict[str, SummaryValue] = {}
        for i, (key, label) in enumerate(self.FIELDS):
            name = QLabel(label)
            name.setObjectName("Hint")
            if key == "mean_len":  # one definition, said where it is shown
                name.setToolTip(MEAN_ACCEPTED_LENGTH_HELP)
            name.setWordWrap(True)  # a narrow column wraps a long name rather than clip it
            value = SummaryValue("—")
            r, c = divmod(i, 2)
            grid.addWidget(name, 2 * r, c)
            grid.addWidget(value, 2 * r + 1, c)
            self.values[key] = value
        grid.setColumnStretch(0, 1)
        grid.setColumnStretch(1, 1)
        self.track = QLabel("No run yet.")
        self.track.setObjectName("Hint")
        self.track.setWordWrap(True)
        grid.addWidget(self.track, 2 * len(self.FIELDS) // 2, 0, 1, 2)
        self.gui_time = QLabel("")
        self.gui_time.setObjectName("GuiTime")
        self.gui_time.setWordWrap(True)
        self.gui_time.setToolTip(
            "CPU time of the window's own thread while the run went, as a share of the run's "
            "wall time (from the thread's CPU clock). llama.cpp uses every core: what the "
            "window spends there may slow the run by about as much.")
        self.gui_time.hide()
        grid.addWidget(self.gui_time, 2 * len(self.FIELDS) // 2 + 1, 0, 1, 2)

    def set(self, key: str, text: str) -> None:
        self.values[key].setText(text)

    def clear(self, title: str) -> None:
        for v in self.values.values():
            v.setText("—")
        self.track.setText(title)
        self.gui_time.hide()

    def show_gui_time(self, share: float | None) -> None:
        """The window's own cost during the run (GUI-thread CPU / run wall time)."""
        if share is None:
            self.gui_time.hide()
            return
        self.gui_time.setText(f"GUI time during the run: {100 * share:.1f} %")
        self.gui_time.show()

    def show_live(self, m: LiveMetrics) -> None:
        """Live numbers while the run streams; nothing while the panel is not on screen."""
        if not self.isVisible():
            return
        self.set("tps", f"{m.tokens_per_second:.1f}")
        self.set("acceptance", _fmt_rate(m.acceptance_rate))
        mean = m.mean_accepted_length
        self.set("mean_len", "—" if mean is None else f"{mean:.2f}")
        self.set("draft_verify", f"{m.draft_seconds:.2f} s / {m.verify_seconds:.2f} s")
        self.set("generated", f"{m.n_tokens} tokens, {m.n_rejected} rejected")
        self.set("stop", "running…")

    def show_summary(self, verdict: ComparedRun, speedup_note: str) -> None:
        s = verdict.result
        self.set("tps", f"{s.tokens_per_second:.1f}")
        self.set("speedup", speedup_note)
        self.set("acceptance", _fmt_rate(s.acceptance_rate)
                 + (f" ({s.n_accepted}/{s.n_drafted})" if s.n_drafted else ""))
        mean = s.mean_accepted_length
        self.set("mean_len", "—" if mean is None
                 else f"{mean:.2f} tokens per verify ({s.n_rounds} rounds)")
        busy = s.draft_seconds + s.verify_seconds
        share = f" ({100 * s.draft_seconds / busy:.0f} % drafting)" if busy > 0 else ""
        self.set("draft_verify", f"{s.draft_seconds:.2f} s / {s.verify_seconds:.2f} s{share}")
        self.set("prefill", f"{s.prompt_tokens} tokens / {s.prefill_seconds:.2f} s")
        self.set("generated", f"{s.n_generated} tokens, {s.generation_seconds:.2f} s")
        self.set("stop", "cancelled (partial answer kept)" if s.stop_reason == "cancelled"
                 else stop_label(s.stop_reason).lower())


def export_plot(widget: pg.PlotWidget, path: str, width: int = 1200) -> None:
    """Write ``widget``'s plot to ``path``: SVG for a ``.svg`` name, else a PNG image."""
    import pyqtgraph.exporters as exporters

    item = widget.getPlotItem()
    if path.lower().endswith(".svg"):
        try:
            exporters.SVGExporter(item).export(path)
        except ValueError:
            # pyqtgraph's SVG exporter cannot parse the path data newer Qt 6 writes
            # (pyqtgraph/pyqtgraph#3485): draw the widget into Qt's own SVG generator.
            _render_svg(widget, path)
        return
    image = exporters.ImageExporter(item)
    image.parameters()["width"] = width
    image.export(path)


def _render_svg(widget: pg.PlotWidget, path: str) -> None:
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator

    generator = QSvgGenerator()
    generator.setFileName(path)
    generator.setSize(widget.size())
    generator.setViewBox(QRect(0, 0, widget.width(), widget.height()))
    generator.setTitle("DecodeLab plot")
    painter = QPainter(generator)
    try:
        widget.render(painter)
    finally:
        painter.end()
