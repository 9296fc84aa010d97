"""Compare, Sweep, Will it pay? and History on the real engine with tiny models."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ui_helpers import choose, run_and_wait

from app.core.export import read_json
from app.ui.compare_view import CompareView
from app.ui.lab import COMPARE, PAY, RUN, SWEEP
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings

PROMPT = "alpha beta gamma delta, alpha beta gamma delta, alpha beta gamma delta, alpha beta"
TIMEOUT = 120000


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A history of this test's own (set before the window fixture creates the window)."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


def points(curve: Any) -> int:
    return 0 if curve.xData is None else len(curve.xData)


def setup(qtbot: Any, w: MainWindow, target: Path, max_tokens: int,
          draft: Path | None = None, adaptive: bool = True) -> None:
    """``adaptive=False`` where a test asserts on what was drafted: adaptive drafting
    decides from timings it measures, so what it drafts follows the machine's load."""
    choose(qtbot, w, target, draft=draft)
    w.tracks.settings.max_tokens.setValue(max_tokens)
    w.tracks.settings.threads.setValue(1)  # 2 threads on a shared 2-core machine stall
    w.tracks.settings.adaptive.setChecked(adaptive)
    w.prompt.text.setPlainText(PROMPT)
    w.prompt.chat.setChecked(False)


def compare_and_wait(qtbot: Any, w: MainWindow, tracks: list[str],
                     repeats: int = 1) -> tuple[Any, str]:
    view = w.lab.compare
    view.choose(tracks)
    view.repeats.setValue(repeats)
    with qtbot.waitSignal(w.lab.saved, timeout=TIMEOUT) as saved, \
            qtbot.waitSignal(view.comparison_ended, timeout=TIMEOUT) as ended:
        assert view.start(), view.status.text()
        assert not w.start_run()  # one thing at a time on the engine
        assert not w.prompt.run_button.isEnabled()
        assert not w.models.isEnabled() or not w.tracks.isEnabled()
    return ended.args[0], saved.args[0]


def test_comparison_shows_a_column_per_track_with_speedups(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    setup(qtbot, window, tiny_dense, 40, draft=tiny_draft)
    window.lab.tabs.setCurrentIndex(COMPARE)
    view = window.lab.compare
    assert not view.empty.isHidden()  # empty state first
    comparison, cid = compare_and_wait(qtbot, window, ["lookup", "draft"])
    tracks = [r.result.track for r in comparison.runs]
    assert tracks == ["baseline", "draft", "lookup"]  # in the order of the registry
    assert list(view.columns) == tracks
    assert view.empty.isHidden()
    for run in comparison.runs:
        col = view.columns[run.result.track]
        assert "×" in col.values["speedup"].text()
        assert col.values["tps"].text() == f"{run.result.tokens_per_second:.1f}"
        assert col.tokens.answer_text() == run.result.text
        # A curve per track, with every throughput point (none before MIN_TIME: a tiny
        # model's run can end sooner).
        assert points(view.curves[run.result.track]) == len(col.metrics.throughput.t)
        assert col.metrics.n_tokens == run.result.n_generated
    assert view.columns["baseline"].values["speedup"].text().startswith("1.00×")
    assert window.prompt.run_button.isEnabled()  # the lane is free again
    assert cid.startswith("cmp-") and cid in window.lab.history.ids()

    # Where an answer parts from the baseline: highlighted in both, with the margin.
    base, other = comparison.runs[0], comparison.runs[2]
    fake = replace(other, same_text_as_baseline=False, first_difference=3,
                   baseline_margin=0.02)
    view.show_comparison(type(comparison)([base, comparison.runs[1], fake]))
    for tid in ("baseline", "lookup"):
        col = view.columns[tid]
        assert len(col.tokens.edit.extraSelections()) == 1
        assert col.diff_positions == [3]
    assert "near tie" in view.columns["lookup"].state.text()
    assert "differs from token 3" in view.columns["lookup"].values["same"].text()

    # Reopening the saved comparison fills the columns again.
    window.lab.tabs.setCurrentIndex(RUN)
    assert window.lab.history.reopen(cid)
    assert window.lab.tabs.currentIndex() == COMPARE
    assert list(view.columns) == tracks
    assert view.columns["draft"].tokens.answer_text() == comparison.runs[1].result.text


def test_cancel_stops_the_whole_comparison(
    qtbot: Any, window: MainWindow, tiny_slow: Path
) -> None:
    setup(qtbot, window, tiny_slow, 1500)
    view: CompareView = window.lab.compare
    view.choose(["lookup"])
    with qtbot.waitSignal(view.comparison_ended, timeout=TIMEOUT) as ended:
        assert view.start()
        qtbot.waitUntil(lambda: len(view.columns["baseline"].tokens.marks) >= 3,
                        timeout=TIMEOUT)
        view.cancel_button.click()
    comparison = ended.args[0]
    assert [r.result.track for r in comparison.runs] == ["baseline"]
    assert comparison.runs[0].result.stop_reason == "cancelled"
    assert "cancelled" in view.status.text()
    assert "not run" in view.columns["lookup"].state.text()
    qtbot.waitUntil(lambda: not window.lane.busy, timeout=TIMEOUT)  # saved, lane idle


def test_k_sweep_with_three_values_gives_three_points(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    # Fixed K: which point is best depends on each point's agreement with the baseline,
    # and adaptive drafting (batches chosen from measured timings) can move a near tie.
    setup(qtbot, window, tiny_dense, 30, adaptive=False)
    window.lab.tabs.setCurrentIndex(SWEEP)
    view = window.lab.sweep
    view.choose("lookup", "draft_max", "1-3")
    with qtbot.waitSignal(view.sweep_ended, timeout=TIMEOUT) as ended:
        assert view.start(), view.status.text()
    sweep = ended.args[0]
    assert [p.value for p in sweep.points] == [1, 2, 3]
    assert view.table.rowCount() == 3
    assert points(view.tps_curve) == 3
    # A best is marked only beyond noise (the rule: tests/test_verdict_noise.py).
    crowned = sweep.best is not None
    assert sum(p.best for p in sweep.points) == crowned
    assert view.best_label.text().startswith("Best: K (draft max) = " if crowned
                                             else "No best value. ")
    assert points(view.best_marker) == crowned
    assert view.div.isHidden()  # divergence only for an expert sweep


def test_expert_sweep_shows_divergence(qtbot: Any, window: MainWindow, tiny_moe: Path) -> None:
    setup(qtbot, window, tiny_moe, 16)
    view = window.lab.sweep
    view.choose("moe", "experts", "2-1")
    with qtbot.waitSignal(view.sweep_ended, timeout=TIMEOUT) as ended:
        assert view.start(), view.status.text()
    assert [p.value for p in ended.args[0].points] == [2, 1]
    assert not view.div.isHidden() and points(view.div_curve) == 2


def test_pay_panel_recommends_and_sets_prediction_next_to_a_run(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    setup(qtbot, window, tiny_dense, 40, draft=tiny_draft, adaptive=False)
    pay = window.lab.pay
    assert not pay.empty.isHidden()
    pay.source.setCurrentIndex(pay.source.findData("draft"))
    with qtbot.waitSignal(pay.runner.finished, timeout=TIMEOUT):
        assert pay.measure(), pay.status.text()
    report = pay.report
    assert report is not None and report.source == "draft" and len(report.predictions) == 16
    assert pay.table.rowCount() == 16
    text = pay.recommendation.text()
    assert text.startswith(("Recommended: K = ", "Speculating with the draft model will not",
                            "No recommendation: "))
    assert pay.explanation.text() == report.explanation and "target step" in report.explanation
    # Another acceptance: predicted again without measuring.
    pay.alpha.setValue(0.95)
    assert pay.report is not report and pay.report.alpha == pytest.approx(0.95)

    run_and_wait(qtbot, window)  # baseline: the reference for the measured speedup
    assert window.tracks.select("draft")
    result = run_and_wait(qtbot, window)
    assert result is not None and result.n_drafted > 0  # fixed K: the draft model drafts
    assert "measured" in pay.versus.text()
    assert "predicted" in pay.versus.text()


def test_pay_source_follows_the_last_run(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    """After a Track 1 run "Will it pay?" drafts from the draft model, also when it has
    measured prompt lookup before; after a lookup run, from prompt lookup."""
    setup(qtbot, window, tiny_dense, 12, draft=tiny_draft, adaptive=False)
    pay = window.lab.pay
    assert pay.source.currentData() == "lookup"
    assert window.tracks.select("draft")
    run_and_wait(qtbot, window)
    window.lab.tabs.setCurrentIndex(PAY)
    assert pay.source.currentData() == "draft"

    pay.source.setCurrentIndex(pay.source.findData("lookup"))
    with qtbot.waitSignal(pay.runner.finished, timeout=TIMEOUT):
        assert pay.measure(), pay.status.text()
    assert pay.report is not None and pay.report.source == "lookup"
    window.lab.tabs.setCurrentIndex(RUN)
    assert window.tracks.select("draft+lookup")
    result = run_and_wait(qtbot, window)
    window.lab.tabs.setCurrentIndex(PAY)
    assert pay.source.currentData() == "draft"
    assert result.n_drafted > 0  # fixed K
    # The prediction to set beside it is of the draft model.
    assert "Measure with the draft model" in pay.versus.text()
    assert window.tracks.select("lookup")
    run_and_wait(qtbot, window)
    assert pay.source.currentData() == "lookup"
    qtbot.waitUntil(lambda: not window.lane.busy, timeout=TIMEOUT)  # saved, lane idle


def test_run_is_saved_survives_restart_reopens_exports_and_deletes(
    qtbot: Any, window: MainWindow, tiny_dense: Path, gui_settings: GuiSettings,
    tmp_path: Path
) -> None:
    history = window.lab.history
    assert not history.empty.isHidden() and history.tree.isHidden()
    setup(qtbot, window, tiny_dense, 30)
    assert window.tracks.select("lookup")
    with qtbot.waitSignal(window.lab.saved, timeout=TIMEOUT) as saved:
        result = run_and_wait(qtbot, window)
    rid = saved.args[0]
    assert history.ids() == [rid] and history.empty.isHidden()
    window.close()

    w2 = MainWindow(gui_settings, restore=False)
    qtbot.addWidget(w2)
    w2.show()
    panel = w2.lab.history
    assert panel.ids() == [rid]
    panel.prompt_filter.setText("gamma delta")
    assert panel.ids() == [rid]
    panel.prompt_filter.setText("no such prompt")
    assert panel.ids() == [] and "Nothing matches" in panel.status.text()
    panel.prompt_filter.setText("")
    panel.track_filter.setCurrentIndex(panel.track_filter.findData("baseline"))
    assert panel.ids() == []
    panel.track_filter.setCurrentIndex(0)

    # Reopen: the answer with its highlighting, the plots and the numbers, in the Run tab.
    w2.lab.tabs.setCurrentIndex(COMPARE)
    assert panel.select(rid) and panel.reopen()
    assert w2.lab.tabs.currentIndex() == RUN
    assert w2.token_view.answer_text() == result.text
    assert [m.kind for m in w2.token_view.marks if m.kind != "note"] == [
        "rejected" if e.kind == "rejected" else e.origin
        for e in result.events if e.kind != "round"]
    assert w2.runs.metrics.n_tokens == result.n_generated
    assert points(w2.plots.cumulative) == len(w2.runs.metrics.throughput.t)
    assert w2.summary.values["tps"].text() == f"{result.tokens_per_second:.1f}"
    assert "reopened" in w2.summary.track.text()
    shown = panel.history.load(rid).shown  # the verdict it was shown with, kept and shown
    assert shown is not None and w2.summary.values["speedup"].text() == shown.verdict

    # Export: JSON that reads back, runs CSV and per-token CSV, a plot as PNG and SVG.
    panel.export_to(str(tmp_path / "run.json"), "json", rid)
    assert read_json(tmp_path / "run.json").results[0] == result
    written = panel.export_to(str(tmp_path / "run.csv"), "tokens", rid)
    assert written == [str(tmp_path / "run.csv"), str(tmp_path / "run-tokens.csv")]
    with open(tmp_path / "run-tokens.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len([r for r in rows if r["origin"] != "rejected"]) == result.n_generated
    for suffix in ("png", "svg"):
        assert panel._write_plot(w2.plots.tps, str(tmp_path / f"tps.{suffix}"))
        assert (tmp_path / f"tps.{suffix}").stat().st_size > 0

    # Delete: asked first, then gone (also after another restart).
    panel.ask = lambda _question: False
    assert panel.delete(rid) == 0 and panel.ids() == [rid]
    panel.ask = lambda _question: True
    assert panel.delete(rid) == 1
    assert panel.ids() == [] and not panel.empty.isHidden()
    w2.close()
