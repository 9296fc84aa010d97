"""Live plots (pyqtgraph) and the run's summary numbers beside them.

Curves are created once and updated with ``setData`` from the window's timer at a bounded
rate (clip to view, automatic downsampling); the numbers come from ``app.core.metrics``.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from app.core.metrics import ROUND_WINDOW, LiveMetrics
from app.core.verdict import ComparedRun

pg.setConfigOptions(antialias=False, background="w", foreground="#3a4250")

BLUE, GREEN, ORANGE, GREY = "#1f77b4", "#2ca02c", "#ff7f0e", "#9aa1ab"
LEGEND_BRUSH = (255, 255, 255, 210)


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setTitle(title, size="9pt")
    w.setLabel("left", left)
    w.setLabel("bottom", bottom)
    w.showGrid(x=False, y=False)
    for axis in ("left", "bottom"):
        w.getAxis(axis).enableAutoSIPrefix(False)
    w.setClipToView(True)
    w.setDownsampling(auto=True, mode="peak")
    w.setMenuEnabled(False)
    w.setMinimumHeight(100)
    return w


class LivePlots(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.tps = _plot("tokens / s", "tok/s", "seconds since prefill")
        self.tps.addLegend(offset=(-4, 4), labelTextSize="8pt", brush=LEGEND_BRUSH)
        self.cumulative = self.tps.plot([], [], pen=pg.mkPen(ORANGE, width=2), name="cumulative",
                                        skipFiniteCheck=True)
        self.rolling = self.tps.plot([], [], pen=pg.mkPen(BLUE, width=1.5), name="rolling 1 s",
                                     skipFiniteCheck=True)
        self.acc = _plot("acceptance by round", "accepted / proposed", "round")
        self.acc.setYRange(0, 1.05)
        self.acc.addLegend(offset=(-4, -4), labelTextSize="8pt", brush=LEGEND_BRUSH)
        # A line over the last rounds rather than one dot per round: scatter items are
        # costly to repaint while the engine competes for the GIL.
        self.round_rate = self.acc.plot([], [], pen=pg.mkPen(GREY, width=1),
                                        name=f"last {ROUND_WINDOW} rounds", skipFiniteCheck=True)
        self.cum_rate = self.acc.plot([], [], pen=pg.mkPen(GREEN, width=2), name="running",
                                      skipFiniteCheck=True)
        self.position_plot = _plot("acceptance by draft position", "rate", "draft position")
        self.position_plot.setYRange(0, 1.05)
        self.pos_bars = self.position_plot.plot([0, 1], [0], stepMode="center", fillLevel=0,
                                      brush=pg.mkBrush(BLUE + "99"), pen=pg.mkPen(BLUE))
        for w in (self.tps, self.acc, self.position_plot):
            layout.addWidget(w, 1)
        self._empty_titles = True
        self.reset()

    def reset(self, speculating: bool = True) -> None:
        self._turn = 0
        self._shown = [0, 0, 0]  # points shown per plot (positions: proposals counted)
        for curve in (self.rolling, self.cumulative, self.round_rate, self.cum_rate):
            curve.setData([], [])
        self.pos_bars.setData([0, 1], [0])
        self.pos_bars.hide()  # no bars until a round was verified
        self.position_plot.getAxis("bottom").setTicks(None)
        note = "" if speculating else " — no drafting in this track"
        self.acc.setTitle(f"acceptance by round{note}", size="9pt")
        self.position_plot.setTitle(f"acceptance by draft position{note}", size="9pt")

    def update_from(self, m: LiveMetrics, every_plot: bool = False) -> None:
        """Redraw the plots whose data grew. While streaming (``every_plot`` False) only
        one plot is redrawn per call, in turn, so that one event-loop iteration never
        paints all three (painting is most of the GUI thread's work during a run)."""
        jobs = (self._update_throughput, self._update_acceptance, self._update_positions)
        if every_plot:
            for job in jobs:
                job(m)
            return
        for k in range(len(jobs)):
            job = jobs[(self._turn + k) % len(jobs)]
            if job(m):
                self._turn = (self._turn + k + 1) % len(jobs)
                return

    def _update_throughput(self, m: LiveMetrics) -> bool:
        t = m.throughput
        if len(t.t) == self._shown[0]:
            return False
        self._shown[0] = len(t.t)
        x = np.asarray(t.t)
        self.rolling.setData(x, np.asarray(t.rolling))
        self.cumulative.setData(x, np.asarray(t.cumulative))
        return True

    def _update_acceptance(self, m: LiveMetrics) -> bool:
        a = m.acceptance
        if len(a.round) == self._shown[1]:
            return False
        self._shown[1] = len(a.round)
        x = np.asarray(a.round, dtype=float)
        self.round_rate.setData(x, np.asarray(a.rolling))
        self.cum_rate.setData(x, np.asarray(a.cumulative))
        return True

    def _update_positions(self, m: LiveMetrics) -> bool:
        counts = sum(m.position_proposed)
        if counts == self._shown[2]:
            return False
        self._shown[2] = counts
        rates = m.position_rates
        edges = np.arange(len(rates) + 1, dtype=float) + 0.5
        self.pos_bars.setData(edges, np.asarray(rates))
        self.pos_bars.show()
        axis = self.position_plot.getAxis("bottom")
        step = max(1, len(rates) // 12)  # whole positions only, at most about 12 labels
        axis.setTicks([[(i, str(i)) for i in range(1, len(rates) + 1, step)]])
        return True


def _fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


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
        self.values: dict[str, QLabel] = {}
        for i, (key, label) in enumerate(self.FIELDS):
            name = QLabel(label)
            name.setObjectName("Hint")
            value = QLabel("—")
            value.setObjectName("SummaryValue")
            value.setWordWrap(True)
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

    def set(self, key: str, text: str) -> None:
        self.values[key].setText(text)

    def clear(self, title: str) -> None:
        for v in self.values.values():
            v.setText("—")
        self.track.setText(title)

    def show_live(self, m: LiveMetrics) -> None:
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
        self.set("mean_len", "—" if mean is None else f"{mean:.2f} in {s.n_rounds} rounds")
        busy = s.draft_seconds + s.verify_seconds
        share = f" ({100 * s.draft_seconds / busy:.0f} % drafting)" if busy > 0 else ""
        self.set("draft_verify", f"{s.draft_seconds:.2f} s / {s.verify_seconds:.2f} s{share}")
        self.set("prefill", f"{s.prompt_tokens} tokens / {s.prefill_seconds:.2f} s")
        self.set("generated", f"{s.n_generated} tokens, {s.generation_seconds:.2f} s")
        self.set("stop", {"eos": "end of text", "max_tokens": "max tokens reached",
                          "cancelled": "cancelled (partial answer kept)",
                          "context_full": "context full"}.get(s.stop_reason, s.stop_reason))


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
