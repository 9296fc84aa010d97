"""Will it pay? for Track 2 in the window: the expert measurement shows for a track that
reduces experts (beside the K prediction when the track also speculates), and a measure on
the tiny MoE fills its table, plot and words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose

from app.core.expert_pay import explain_experts
from app.ui.lab import PAY, RUN
from app.ui.main_window import MainWindow

TIMEOUT = 120000


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


def setup(qtbot: Any, w: MainWindow, target: Path) -> None:
    choose(qtbot, w, target)
    w.tracks.settings.threads.setValue(1)  # 2 threads on a shared 2-core machine stall
    w.prompt.text.setPlainText("def hello(world):\n    return world * 2\n")
    w.prompt.chat.setChecked(False)


def open_pay_with(w: MainWindow, track: str) -> None:
    """Select ``track`` in the Run tab, then show the Will it pay? tab."""
    w.lab.tabs.setCurrentIndex(RUN)
    assert w.tracks.select(track), track
    w.lab.tabs.setCurrentIndex(PAY)


def test_the_expert_part_shows_for_tracks_that_reduce_experts(
    qtbot: Any, window: MainWindow, tiny_moe: Path
) -> None:
    setup(qtbot, window, tiny_moe)
    pay = window.lab.pay
    for track, experts, k in (("moe", True, False), ("baseline", False, True),
                              ("lookup", False, True), ("moe+lookup", True, True)):
        open_pay_with(window, track)
        assert pay.experts.isVisible() is experts, track
        assert pay.k_part.isVisible() is k, track
    pay.set_track("draft")  # the window's track signal may also say it
    assert not pay.experts.isVisible() and pay.k_part.isVisible()


def test_a_measure_on_the_tiny_moe_fills_the_table_and_the_words(
    qtbot: Any, window: MainWindow, tiny_moe: Path
) -> None:
    setup(qtbot, window, tiny_moe)
    open_pay_with(window, "moe")
    view = window.lab.pay.experts
    assert not view.empty.isHidden() and view.table.rowCount() == 0
    with qtbot.waitSignal(view.runner.finished, timeout=TIMEOUT):
        assert window.lab.pay.run_main_action(), view.status.text()  # Ctrl+Enter: experts
        assert not view.measure_button.isEnabled() and view.cancel_button.isEnabled()
        assert not window.start_run()  # one thing at a time on the engine
    report = view.report
    assert report is not None and not report.cancelled
    assert [r.experts for r in report.rows] == [2, 1]  # the tiny MoE's own 2, down to 1
    assert view.table.rowCount() == 2
    own, agreement = view.table.item(0, 0), view.table.item(0, 3)
    assert own is not None and own.text() == "2 of 8 (own)"
    assert agreement is not None and agreement.text() == "100 %"  # the reference with itself
    assert view.words.text() == explain_experts(report) and view.words.text()
    assert len(view.speed_curve.xData) == 2 and len(view.agree_curve.xData) == 2
    assert view.measure_button.isEnabled() and not window.state.busy


def test_a_dense_target_is_refused_with_a_reason(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    setup(qtbot, window, tiny_dense)
    view = window.lab.pay.experts
    with qtbot.waitSignal(window.lab.pay.error):
        assert not view.measure()
    assert "not a Mixture-of-Experts" in view.status.text()
