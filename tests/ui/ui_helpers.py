"""Helpers shared by the UI tests: wait for the engine lane, choose models, run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.ui.main_window import MainWindow


def settle(qtbot: Any, w: MainWindow, timeout: int = 60000) -> None:
    """Wait until every inspection and survey queued on the engine lane came back."""
    qtbot.waitUntil(lambda: not w.lane.busy, timeout=timeout)


def choose(qtbot: Any, w: MainWindow, target: Path | None = None,
           draft: Path | str | None = "keep") -> None:
    if target is not None:
        w.state.set_target(str(target))
    if draft != "keep":
        w.state.set_draft(str(draft) if draft else None)
    settle(qtbot, w)


def run_and_wait(qtbot: Any, w: MainWindow, timeout: int = 60000) -> Any:
    with qtbot.waitSignal(w.run_ended, timeout=timeout) as blocker:
        assert w.start_run(), w.error_banner.message()
    return blocker.args[0]
