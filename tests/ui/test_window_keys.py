"""Keyboard: Ctrl+Enter does the current tab's main action (never a run the user cannot
see), the plots take no keyboard focus, and the tab bar comes first in the tab order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget
from ui_helpers import choose

from app.ui.lab import COMPARE, HISTORY, RUN
from app.ui.main_window import MainWindow


def ctrl_enter(qtbot: Any, w: MainWindow) -> None:
    qtbot.keyClick(w.lab.tabs.currentWidget(), Qt.Key.Key_Return,
                   Qt.KeyboardModifier.ControlModifier)


def ready(qtbot: Any, w: MainWindow, model: Path) -> None:
    choose(qtbot, w, model)
    w.tracks.settings.max_tokens.setValue(4)
    w.tracks.settings.threads.setValue(1)
    w.prompt.text.setPlainText("alpha beta gamma")


def test_ctrl_enter_runs_on_the_run_tab(qtbot: Any, window: MainWindow, tiny_dense: Path) -> None:
    ready(qtbot, window, tiny_dense)
    window.lab.tabs.setCurrentIndex(RUN)
    with qtbot.waitSignal(window.run_ended, timeout=60000) as blocker:
        ctrl_enter(qtbot, window)
        assert window.runs.active
    assert blocker.args[0] is not None


def test_ctrl_enter_on_another_tab_does_its_action_not_a_run(
    qtbot: Any, window: MainWindow, tiny_dense: Path, monkeypatch: Any
) -> None:
    ready(qtbot, window, tiny_dense)
    done: list[str] = []
    # Compare's own action (a comparison), stood in for: this test is about the dispatch.
    monkeypatch.setattr(window.lab.compare, "run_main_action", lambda: done.append("compare"),
                        raising=False)
    window.lab.tabs.setCurrentIndex(COMPARE)
    ctrl_enter(qtbot, window)
    assert done == ["compare"]
    assert not window.runs.active and not window.state.busy

    # History has no main action: nothing starts, and the status bar says so.
    window.lab.tabs.setCurrentIndex(HISTORY)
    ctrl_enter(qtbot, window)
    assert not window.runs.active and not window.state.busy
    assert "History" in window.statusBar().currentMessage()


def test_plots_take_no_focus_and_the_tab_bar_comes_first(qtbot: Any, window: MainWindow) -> None:
    plots = window.findChildren(pg.PlotWidget)
    assert len(plots) >= 3
    assert all(p.focusPolicy() == Qt.FocusPolicy.NoFocus for p in plots)

    def first_stop() -> QWidget | None:
        w = window.nextInFocusChain()
        while w is not None and w is not window:
            if (w.focusPolicy() & Qt.FocusPolicy.TabFocus and w.isVisible()
                    and w.isEnabled()):
                return w.focusProxy() or w  # a tab widget hands its focus to its tab bar
            w = w.nextInFocusChain()
        return None

    assert first_stop() is window.lab.tabs.tabBar()
