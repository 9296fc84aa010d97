"""The window fits a laptop: usable at 1280x720 with a model loaded (no widget squeezed
below its minimum size hint, plot axes and legends inside their plots), smallest near
1000x650, the log hidden until asked for or an engine error opens it, the acceptance plots
only for tracks that draft, and the scripted window's ``--size``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QAbstractSpinBox, QMenu, QWidget
from ui_helpers import choose, run_and_wait

from app.cli_common import EXIT_REFUSED
from app.ui.app import ScriptedSession, parse_size
from app.ui.main_window import MainWindow
from app.ui.plots import ACCEPTANCE, POSITIONS, TPS

LAPTOP = (1280, 720)
SMALLEST = (1100, 650)  # the window's minimum must fit in this


def squeezed(w: MainWindow) -> list[str]:
    """Visible widgets smaller than their minimum size hint. A spin box's inner line edit
    is sized by the style inside the box (it is never laid out), so it is not counted."""
    out = []
    for c in w.findChildren(QWidget):
        if not c.isVisible() or isinstance(c.parentWidget(), QAbstractSpinBox):
            continue
        hint = c.minimumSizeHint()
        if hint.isValid() and (c.width() < hint.width() or c.height() < hint.height()):
            out.append(f"{type(c).__name__}({c.objectName()}) {c.width()}x{c.height()} "
                       f"< {hint.width()}x{hint.height()}")
    return out


def inside_plot(plot: pg.PlotWidget) -> list[str]:
    """Axis titles, tick labels and the legend that stick out of the plot's view."""
    view = plot.viewport().rect().adjusted(-1, -1, 1, 1)
    item = plot.getPlotItem()
    rects: list[tuple[str, QRectF]] = []
    for name in ("left", "bottom"):
        axis = item.getAxis(name)
        label = axis.label  # a text item: its rect has the document's margin around the text
        margin = label.document().documentMargin()
        text = label.boundingRect().adjusted(margin, margin, -margin, -margin)
        rects.append((f"{name} title", label.mapRectToScene(text)))
        image = QImage(4, 4, QImage.Format.Format_ARGB32)
        painter = QPainter(image)
        try:
            specs = axis.generateDrawSpecs(painter)  # where pyqtgraph draws the tick labels
        finally:
            painter.end()
        for rect, _flags, text in (specs[2] if specs else []):
            rects.append((f"{name} tick {text!r}", axis.mapRectToScene(rect)))
    if item.legend is not None:
        rects.append(("legend", item.legend.mapRectToScene(item.legend.boundingRect())))
    out = []
    for name, scene_rect in rects:
        rect = plot.mapFromScene(scene_rect).boundingRect()
        if not view.contains(rect):
            out.append(f"{name} {rect} outside {view}")
    return out


def test_usable_at_1280x720_with_a_model(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    window.resize(*LAPTOP)
    qtbot.waitUntil(lambda: (window.width(), window.height()) == LAPTOP)
    assert squeezed(window) == []
    hint = window.minimumSizeHint()
    assert hint.width() <= SMALLEST[0] and hint.height() <= SMALLEST[1], hint
    for index in (TPS, ACCEPTANCE, POSITIONS):
        window.plots.setCurrentIndex(index)
        plot = window.plots.currentWidget()
        assert isinstance(plot, pg.PlotWidget)
        qtbot.waitUntil(plot.isVisible)
        assert inside_plot(plot) == []


def test_the_smallest_window_squeezes_nothing(qtbot: Any, window: MainWindow) -> None:
    hint = window.minimumSizeHint()
    window.resize(hint)
    qtbot.waitUntil(lambda: window.size() == hint)
    assert squeezed(window) == []


def test_the_log_is_hidden_until_asked_for_or_the_engine_fails(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tmp_path: Path
) -> None:
    assert window.log_dock.isHidden()
    toggle = window.log_dock.toggleViewAction()
    view_menu = next(m for m in window.menuBar().findChildren(QMenu) if m.title() == "&View")
    assert toggle in view_menu.actions()
    toggle.trigger()
    assert window.log_dock.isVisible()
    toggle.trigger()
    assert window.log_dock.isHidden()

    # A model file that breaks between choosing and running: the engine fails.
    vanishing = tmp_path / "vanishing.gguf"
    vanishing.write_bytes(tiny_dense.read_bytes())
    choose(qtbot, window, vanishing)
    window.tracks.settings.max_tokens.setValue(8)
    window.prompt.text.setPlainText("alpha beta")
    vanishing.write_bytes(b"GGUF" + bytes(60))
    assert run_and_wait(qtbot, window) is None
    assert window.log_dock.isVisible()


def test_acceptance_plots_only_for_tracks_that_draft(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    window.tracks.settings.max_tokens.setValue(6)
    window.tracks.settings.threads.setValue(1)
    window.prompt.text.setPlainText("alpha beta gamma, alpha beta gamma, alpha beta")
    assert window.tracks.select("baseline")
    assert run_and_wait(qtbot, window) is not None
    plots = window.plots
    assert plots.isTabVisible(TPS)
    assert not plots.isTabVisible(ACCEPTANCE) and not plots.isTabVisible(POSITIONS)
    assert window.tracks.select("lookup")
    window.tracks.settings.adaptive.setChecked(False)  # fixed drafting: rounds to plot
    window.tracks.settings.max_tokens.setValue(40)
    assert run_and_wait(qtbot, window) is not None
    assert plots.isTabVisible(ACCEPTANCE) and plots.isTabVisible(POSITIONS)
    # With data at the laptop size, every plot's labels and legend stay inside it.
    window.resize(*LAPTOP)
    for index in (TPS, ACCEPTANCE, POSITIONS):
        plots.setCurrentIndex(index)
        plot = plots.currentWidget()
        assert isinstance(plot, pg.PlotWidget)
        qtbot.waitUntil(plot.isVisible)
        assert inside_plot(plot) == []


def scripted(size: str | None) -> argparse.Namespace:
    return argparse.Namespace(model=None, draft=None, track=None, prompt_file=None, run=False,
                              screenshot=None, exit=False, view=None, fetch_default=False,
                              size=size)


def test_the_scripted_window_takes_a_size(qtbot: Any, window: MainWindow) -> None:
    session = ScriptedSession(window, scripted("1280x720"))
    session.start()
    qtbot.waitUntil(lambda: session._stage == "done")
    assert (window.width(), window.height()) == LAPTOP
    assert session.exit_code == 0


def test_a_bad_size_is_refused(qtbot: Any, window: MainWindow) -> None:
    session = ScriptedSession(window, scripted("1280by720"))
    session.start()
    assert session.exit_code == EXIT_REFUSED
    assert "--size" in window.error_banner.message()


@pytest.mark.parametrize("text, size", [("1280x720", (1280, 720)), (" 1000X650 ", (1000, 650))])
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1280", "x720", "1280x", "12x7", "-1x720", "1280x720x1"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="--size"):
        parse_size(text)
