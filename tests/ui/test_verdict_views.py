"""The one verdict in the window, on the real engine with tiny models: Compare repeats the
baseline interleaved and shows medians with their range; a track that drafted nothing says
so and why in Compare, Sweep and Will it pay?; a sweep over K runs with fixed drafting and
says so; each view's main action starts from ``run_main_action`` (Ctrl+Enter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose

from app.core.history import History
from app.core.labels import track_label
from app.core.verdict import format_speedup
from app.ui.history_panel import VERDICT
from app.ui.lab import COMPARE, SWEEP
from app.ui.main_window import MainWindow
from app.ui.sweep_view import NOTE

REPEATING = "alpha beta gamma delta, alpha beta gamma delta, alpha beta gamma delta, alpha"
# Every token of it distinct, and answers of at most 8 tokens: with 8-grams only, prompt
# lookup cannot find a match (a match needs 8 tokens seen before), so it drafts nothing.
DISTINCT = "Zebra quantum violet harbor pencil marble oxygen tundra falcon cobalt jasmine"
TIMEOUT = 120000


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A history of this test's own (set before the window fixture creates the window)."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


def cell(table: Any, row: int, column: int) -> str:
    item = table.item(row, column)
    assert item is not None
    return str(item.text())


def setup(qtbot: Any, w: MainWindow, target: Path, prompt: str, max_tokens: int,
          adaptive: bool = False) -> None:
    choose(qtbot, w, target, draft=None)
    s = w.tracks.settings
    s.max_tokens.setValue(max_tokens)
    s.threads.setValue(1)  # 2 threads on a shared 2-core machine stall
    s.adaptive.setChecked(adaptive)  # fixed: what is drafted does not follow the load
    w.prompt.text.setPlainText(prompt)
    w.prompt.chat.setChecked(False)


def test_compare_repeats_run_the_baseline_interleaved_and_show_the_spread(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    setup(qtbot, window, tiny_dense, REPEATING, 8)
    window.lab.tabs.setCurrentIndex(COMPARE)
    view = window.lab.compare
    view.choose(["lookup"])
    view.repeats.setValue(2)
    order: list[str] = []
    view.runner.progressed.connect(order.append)  # one report as each run begins
    with qtbot.waitSignal(window.lab.saved, timeout=TIMEOUT) as saved, \
            qtbot.waitSignal(view.comparison_ended, timeout=TIMEOUT) as ended:
        assert view.run_main_action(), view.status.text()
    comparison = ended.args[0]
    assert order == ["baseline", "lookup", "baseline", "lookup"]
    assert comparison.repeats == 2
    lookup = comparison.runs[1]
    for run in comparison.runs:
        col = view.columns[run.result.track]
        assert col.runs_seen == 2  # each run streamed into its column in turn
        assert run.repeats is not None and len(run.repeats.tokens_per_second) == 2
        assert col.tokens.answer_text() == run.result.text  # the median run's answer
        assert "2 runs" in col.values["tps"].text()
    assert view.columns["baseline"].values["speedup"].text() == "1.00× (reference), run 2 times"
    speedup = view.columns["lookup"].values["speedup"].text()
    assert speedup == format_speedup(lookup.repeats.speedups) and "2 runs" in speedup
    assert not view.verdict.isHidden() and view.verdict.text() == comparison.verdict.text
    assert "done: 2 tracks × 2 repeats" in view.status.text()

    # Kept with its repeats, and History shows the same verdict.
    cid = saved.args[0]
    assert History().load_comparison(cid).comparison.repeats == 2
    panel = window.lab.history
    group = panel._find(cid)
    assert group is not None and "× 2 repeats" in group.text(1)
    assert group.text(VERDICT) == comparison.verdict.short
    assert group.toolTip(VERDICT) == comparison.verdict.text


def test_nothing_drafted_is_said_in_compare_sweep_and_pay(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    setup(qtbot, window, tiny_dense, DISTINCT, 8)
    settings = window.tracks.settings
    settings.widget("ngram_max").setValue(8)  # type: ignore[attr-defined]
    settings.widget("ngram_min").setValue(8)  # type: ignore[attr-defined]
    view = window.lab.compare
    view.choose(["lookup"])
    view.repeats.setValue(1)
    with qtbot.waitSignal(view.comparison_ended, timeout=TIMEOUT) as ended:
        assert view.start(), view.status.text()
    lookup = ended.args[0].runs[1].result
    assert lookup.n_drafted == 0 and lookup.notes  # the premise: it drafted nothing, and why
    col = view.columns["lookup"]
    assert not col.idle.isHidden()
    assert col.idle.text().startswith("Drafted nothing: no n-gram of the answer matched")
    assert col.values["acceptance"].text() == "— drafted nothing"
    verdict = view.verdict.text()
    assert f"{track_label('lookup')} drafted nothing: no n-gram" in verdict
    assert "Best" not in verdict
    # Will it pay? was told of the run: it says the run drafted nothing, and why.
    pay = window.lab.pay
    assert "drafted nothing (no n-gram" in pay.versus.text()

    window.lab.tabs.setCurrentIndex(SWEEP)
    sweep_view = window.lab.sweep
    sweep_view.choose("lookup", "draft_max", "1-2")
    sweep_view.repeats.setValue(1)
    with qtbot.waitSignal(sweep_view.sweep_ended, timeout=TIMEOUT) as done:
        assert sweep_view.run_main_action(), sweep_view.status.text()
    sweep = done.args[0]
    assert sweep.best is None and sweep.verdict.kind == "idle"
    text = sweep_view.best_label.text()
    assert text.startswith("No best value.") and "Every value drafted nothing: no n-gram" in text
    for row in range(sweep_view.table.rowCount()):
        assert cell(sweep_view.table, row, NOTE).startswith("drafted nothing: no n-gram")
        assert cell(sweep_view.table, row, 3) == "— drafted nothing"

    with qtbot.waitSignal(pay.runner.finished, timeout=TIMEOUT):
        assert pay.run_main_action(), pay.status.text()  # Measure, as Ctrl+Enter does
    qtbot.waitUntil(lambda: not window.lane.busy, timeout=TIMEOUT)  # saved, lane idle


def test_a_k_sweep_runs_with_fixed_drafting_and_repeats_interleaved(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    setup(qtbot, window, tiny_dense, REPEATING, 8, adaptive=True)
    window.lab.tabs.setCurrentIndex(SWEEP)
    view = window.lab.sweep
    view.choose("lookup", "draft_max", "2-3")
    assert not view.fixed_note.isHidden() and "K is only a cap" in view.fixed_note.text()
    view.repeats.setValue(2)
    labels: list[str] = []
    view.runner.progressed.connect(
        lambda x: labels.append(x[2]) if isinstance(x, tuple) and x[0] < x[1] else None)
    with qtbot.waitSignal(view.sweep_ended, timeout=TIMEOUT) as ended:
        assert view.start(), view.status.text()
    sweep = ended.args[0]
    assert labels == ["baseline (repeat 1 of 2)", "draft_max = 2 (repeat 1 of 2)",
                      "draft_max = 3 (repeat 1 of 2)", "baseline (repeat 2 of 2)",
                      "draft_max = 2 (repeat 2 of 2)", "draft_max = 3 (repeat 2 of 2)"]
    assert sweep.fixed_drafting and len(sweep.baselines) == 2
    assert view.table.rowCount() == 2  # a later repeat updates its value's row
    for row, p in enumerate(sweep.points):
        assert len(p.runs) == 2 and all(r.settings["adaptive"] is False for r in p.runs)
        assert cell(view.table, row, 2) == format_speedup(p.speedups)
    assert "fixed drafting (adaptive off)" in view.status.text()
    view.parameter.setCurrentIndex(view.parameter.findData("ngram_min"))
    assert view.fixed_note.isHidden()  # only a sweep over K is forced to fixed drafting
