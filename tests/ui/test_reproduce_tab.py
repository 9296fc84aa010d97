"""The window's Reproduce tab: a deprecated track's "Reproduce…" button opens it, set to
that track (the evidence view itself is tested in test_reproduce_view.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from ui_helpers import choose

from app.ui.main_window import MainWindow


def test_reproduce_button_opens_the_tab_on_that_track(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    row = window.tracks.deprecated_rows["kangaroo"]
    qtbot.waitUntil(row.reproduce.isEnabled, timeout=10_000)
    qtbot.mouseClick(row.reproduce, Qt.MouseButton.LeftButton)
    assert window.lab.tabs.currentWidget() is window.reproduce
    assert window.reproduce.track.currentData() == "kangaroo"
    # Another deprecated track switches the same view.
    window.open_reproduction("cas-spec")
    assert window.reproduce.track.currentData() == "cas-spec"
