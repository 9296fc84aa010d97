"""Kept sweeps ("Keep for comparison"): earlier sweeps' curves drawn beside the live one, so
that one plot shows, say, the expert sweeps of two models.

A kept sweep is a frozen copy of a sweep's points (value, tokens/s, speedup, divergence)
labelled "<model file stem> · <track label>". It is drawn dashed, thinner and dimmer than
the live curves, with a legend entry, and only beside a sweep of the same parameter (an
expert count is not a K: the x axes would mean different things); the others are counted
in a hint. At most ``MAX_KEPT`` are kept, the oldest dropped first; each keeps its colour
while it is kept. A model with random weights (the synthetic MoE) has no answer worth
staying close to, so its divergence is marked as meaning nothing, live or kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton

from app.core.errors import DecodeLabError
from app.core.gguf_info import RANDOM_WEIGHTS_KEY
from app.core.gguf_reader import read_header
from app.core.labels import setting_label, track_label
from app.core.sweep import SweepPoint
from app.ui.palette import AA_GRAPHIC, contrast, mix, readable, theme

MAX_KEPT = 3
RANDOM_NOTE = "random weights: divergence means nothing"
# Mid-luminance hues (none of the live curves' blue, green, orange): each reads at 3:1 on
# the light and the dark plot background, with room to be dimmed towards it.
KEPT_COLOURS = ("#9467bd", "#138d90", "#c2558f")
KEPT_SYMBOLS = ("t", "s", "d")
PLOTS = ("tps", "speedup", "div")  # the plots a kept sweep is drawn on


@dataclass(frozen=True)
class SweptModel:
    """What the labels and notes need of the swept model (read on the engine lane: a large
    vocabulary makes the header slow to read)."""

    stem: str
    random_weights: bool


def swept_model(path: str | Path) -> SweptModel:
    """The model's file stem, and whether its weights are random (the synthetic key)."""
    try:
        random = RANDOM_WEIGHTS_KEY in read_header(path).metadata
    except (DecodeLabError, OSError):
        random = False  # the sweep itself will say what is wrong with the file
    return SweptModel(Path(path).stem, random)


def sweep_label(model: SweptModel, track: str) -> str:
    return f"{model.stem} · {track_label(track)}"


@dataclass(frozen=True)
class KeptSweep:
    label: str
    parameter: str
    values: tuple[float, ...]
    tokens_per_second: tuple[float, ...]
    speedups: tuple[float, ...]  # NaN where a value had no speedup (a zero-speed baseline)
    divergences: tuple[float, ...]
    random_weights: bool
    slot: int = 0  # its colour and symbol, given when kept

    @classmethod
    def of(cls, points: Sequence[SweepPoint], parameter: str, model: SweptModel,
           track: str) -> KeptSweep:
        return cls(sweep_label(model, track), parameter,
                   tuple(float(p.value) for p in points),
                   tuple(p.tokens_per_second for p in points),
                   tuple(math.nan if p.speedup is None else p.speedup for p in points),
                   tuple(p.divergence for p in points), model.random_weights)

    def series(self, plot: str) -> tuple[float, ...]:
        return {"tps": self.tokens_per_second, "speedup": self.speedups,
                "div": self.divergences}[plot]


class KeptSweeps:
    """The kept sweeps, oldest first, at most ``MAX_KEPT``."""

    def __init__(self) -> None:
        self.items: list[KeptSweep] = []

    def keep(self, kept: KeptSweep) -> None:
        if len(self.items) >= MAX_KEPT:
            self.items.pop(0)
        used = {k.slot for k in self.items}
        self.items.append(replace(kept, slot=min(set(range(MAX_KEPT)) - used)))

    def clear(self) -> None:
        self.items.clear()

    def shown(self, parameter: str | None) -> list[KeptSweep]:
        return [k for k in self.items if k.parameter == parameter]

    def hidden(self, parameter: str | None) -> list[KeptSweep]:
        return [k for k in self.items if k.parameter != parameter]


def kept_colour(slot: int, dark: bool | None = None) -> str:
    """The slot's hue dimmed towards the plot background as far as it still reads at 3:1
    (a graphical mark, WCAG 1.4.11) on the theme's plot background."""
    bg, base = theme(dark).plot_bg, KEPT_COLOURS[slot % len(KEPT_COLOURS)]
    for t in (0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        colour = mix(base, bg, t)
        if contrast(colour, bg) >= AA_GRAPHIC:
            return str(colour.name())
    return str(readable(base, bg, AA_GRAPHIC).name())


def hint_text(kept: KeptSweeps, parameter: str | None, live: str | None,
              live_random: bool) -> str:
    """The line under the plots: kept sweeps hidden (another parameter), and the curves
    whose divergence means nothing. ``live`` labels the live sweep (None: there is none)."""
    lines = []
    hidden = kept.hidden(parameter)
    if hidden:
        over = sorted({setting_label(k.parameter) for k in hidden})
        n = len(hidden)
        lines.append(f"{n} kept {'sweep' if n == 1 else 'sweeps'} hidden (over "
                     f"{', '.join(over)}): kept curves show only beside a sweep of the same "
                     "setting.")
    if parameter == "experts":
        random = [k.label + " (kept)" for k in kept.shown(parameter) if k.random_weights]
        if live is not None and live_random:
            random.insert(0, live)
        if random:
            lines.append(f"{'; '.join(random)} — {RANDOM_NOTE} (its text is meaningless; "
                         "only its speed is real).")
    return "\n".join(lines)


class KeptCurves:
    """The kept sweeps' curves on the view's plots, and the legends naming them and the
    live curves. ``plots`` and ``live`` are keyed by ``PLOTS``."""

    def __init__(self, plots: Mapping[str, pg.PlotWidget],
                 live: Mapping[str, pg.PlotDataItem]) -> None:
        self.plots, self.live = plots, live
        self.items: dict[str, list[pg.PlotDataItem]] = {name: [] for name in PLOTS}
        for plot in plots.values():
            plot.addLegend(offset=(-4, 4), labelTextSize="8pt").hide()

    def draw(self, kept: Sequence[KeptSweep], live: str | None, live_random: bool) -> None:
        """Replace the kept curves with ``kept``'s; a legend shows wherever it names more
        than the live curve alone (or the live curve's random weights)."""
        for name, plot in self.plots.items():
            for item in self.items[name]:
                plot.removeItem(item)
            self.items[name] = []
            legend = plot.getPlotItem().legend
            legend.clear()
            note = name == "div" and live_random
            if live is not None and (kept or note):
                legend.addItem(self.live[name], live + (f" — {RANDOM_NOTE}" if note else ""))
            for k in kept:
                item = self._curve(plot, k, name)
                self.items[name].append(item)
                random = name == "div" and k.random_weights
                legend.addItem(item, k.label + (f" — {RANDOM_NOTE}" if random else ""))
            legend.setVisible(bool(legend.items))

    @staticmethod
    def _curve(plot: pg.PlotWidget, k: KeptSweep, name: str) -> pg.PlotDataItem:
        colour = kept_colour(k.slot)
        pen = pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine)
        # connect="finite": a value without a speedup is a gap, not a line to zero.
        return plot.plot(list(k.values), list(k.series(name)), pen=pen, connect="finite",
                         symbol=KEPT_SYMBOLS[k.slot % len(KEPT_SYMBOLS)], symbolSize=6,
                         symbolBrush=colour, symbolPen=colour)


class KeptPanel:
    """A sweep view's kept sweeps: what the live sweep is (to label and keep it), the
    "Keep for comparison" and "Clear kept" buttons, the curves and the hint line."""

    def __init__(self, plots: Mapping[str, pg.PlotWidget],
                 live: Mapping[str, pg.PlotDataItem]) -> None:
        self.sweeps = KeptSweeps()
        self.curves = KeptCurves(plots, live)
        self.model: SweptModel | None = None  # the live sweep's (its job reads the file)
        self.live: tuple[str, str] | None = None  # the live sweep's parameter and track
        self.kept_live = False  # the live sweep is kept already
        self.keep_button = QPushButton("Keep for comparison")
        self.keep_button.setToolTip("draw this sweep's curves beside later sweeps of the same "
                                    "setting (another model, another track)")
        self.clear_button = QPushButton("Clear kept")
        self.hint = QLabel("")
        self.hint.setObjectName("Hint")
        self.hint.setWordWrap(True)
        self.hint.hide()
        self.enable(running=False, has_points=False)

    @property
    def parameter(self) -> str | None:
        return self.live[0] if self.live is not None else None

    @property
    def label(self) -> str | None:
        """The live sweep's "<model file stem> · <track label>"."""
        if self.model is None or self.live is None:
            return None
        return sweep_label(self.model, self.live[1])

    @property
    def random_experts(self) -> bool:
        """The live sweep is an expert sweep of a model with random weights."""
        return (self.model is not None and self.model.random_weights
                and self.parameter == "experts")

    def begin(self, parameter: str, track: str, target: str | Path) -> None:
        """A sweep starts: its file stem now, whether its weights are random once its job
        has read the file (``set_model``)."""
        self.live, self.kept_live = (parameter, track), False
        self.model = SweptModel(Path(target).stem, False)
        self.show()

    def set_model(self, model: SweptModel) -> None:
        self.model = model
        self.show()

    def keep(self, points: Sequence[SweepPoint]) -> bool:
        if not points or self.live is None or self.model is None or self.kept_live:
            return False
        self.sweeps.keep(KeptSweep.of(points, self.live[0], self.model, self.live[1]))
        self.kept_live = True
        self.keep_button.setEnabled(False)
        self.show()
        return True

    def clear(self) -> None:
        self.sweeps.clear()
        self.kept_live = False
        self.show()

    def shown(self) -> list[KeptSweep]:
        return self.sweeps.shown(self.parameter)

    def show(self) -> None:
        """Draw the kept sweeps of the live sweep's parameter; say what is hidden or random."""
        self.curves.draw(self.shown(), self.label, self.random_experts)
        text = hint_text(self.sweeps, self.parameter, self.label, self.random_experts)
        self.hint.setText(text)
        self.hint.setVisible(bool(text))
        self.clear_button.setEnabled(bool(self.sweeps.items))

    def enable(self, running: bool, has_points: bool) -> None:
        self.keep_button.setEnabled(not running and has_points and not self.kept_live)
        self.clear_button.setEnabled(bool(self.sweeps.items))
