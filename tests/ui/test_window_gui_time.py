"""The run summary states the window's own cost: the GUI thread's CPU seconds during the
run over the run's wall seconds, read from the thread's CPU clock. The clocks are injected:
what is tested is the arithmetic and where the readings are taken, never a timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ui_helpers import choose, run_and_wait

from app.ui.main_window import MainWindow
from app.ui.pacer import GuiClock, gui_share


class ScriptedClock(GuiClock):
    """Readings given in advance: (wall, GUI-thread CPU) per read."""

    def __init__(self, readings: list[tuple[float, float]]) -> None:
        super().__init__()
        self.readings = list(readings)

    def read(self) -> tuple[float, float]:
        return self.readings.pop(0)


def test_gui_share_is_cpu_seconds_per_wall_second() -> None:
    assert gui_share((100.0, 10.0), (104.0, 10.5)) == 0.125
    assert gui_share((100.0, 10.0), (100.0, 10.5)) is None  # no wall time: no figure
    assert gui_share((100.0, 10.0), (110.0, 10.0)) == 0.0


def test_the_default_clock_reads_this_threads_cpu_time() -> None:
    clock = GuiClock()
    assert clock.cpu is time.thread_time and clock.wall is time.perf_counter


def test_the_summary_states_the_gui_time_of_the_run(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, window, tiny_dense)
    window.tracks.settings.max_tokens.setValue(6)
    window.tracks.settings.threads.setValue(1)
    window.prompt.text.setPlainText("alpha beta gamma")
    assert window.summary.gui_time.isHidden()
    clock = ScriptedClock([(100.0, 10.0), (104.0, 10.5)])  # read at start and at end
    window.runs.clock = clock
    assert run_and_wait(qtbot, window) is not None
    assert clock.readings == []  # both readings taken, no other
    assert window.runs.gui_share == 0.125
    assert window.summary.gui_time.text() == "GUI time during the run: 12.5 %"
    assert not window.summary.gui_time.isHidden()

    # A run reopened from the history was not measured here: no figure.
    result = window.runs.last_result
    assert result is not None
    assert window.runs.show_saved(result, None, "reopened")
    assert window.summary.gui_time.isHidden()
