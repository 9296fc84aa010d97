"""Kept sweeps in the Sweep tab, on the real engine with tiny MoE models: an expert sweep
kept on one model is drawn (dashed, labelled "<file stem> · <track>") beside the live sweep
of another model with each model's own expert counts; a sweep of another setting hides it
and says so; "Clear kept" removes it; a model with random weights (the synthetic key) has
its divergence marked as meaningless, live and kept. At most three are kept, and their
colours read on the light and the dark plot background."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import tiny_models
from PySide6.QtCore import Qt
from ui_helpers import choose

from app.core.labels import track_label
from app.core.models.catalog import SyntheticMoE
from app.core.models.synthetic import write_synthetic_moe
from app.ui.lab import SWEEP
from app.ui.main_window import MainWindow
from app.ui.palette import AA_GRAPHIC, contrast, theme
from app.ui.sweep_kept import (
    MAX_KEPT,
    RANDOM_NOTE,
    KeptSweep,
    KeptSweeps,
    kept_colour,
    swept_model,
)
from app.ui.sweep_view import NOTE, SweepView

PROMPT = "def add(a, b):\n    return"
TIMEOUT = 120000
MOE = track_label("moe")
# The smallest synthetic MoE: 4 experts, 2 of them used (an expert sweep "2-1").
RANDOM = SyntheticMoE(n_layer=2, n_embd=64, n_head=4, n_head_kv=2, n_ff=64, n_expert=4,
                      n_expert_used=2, n_ctx_train=2048, seed=7)


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A history of this test's own (set before the window fixture creates the window)."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def other_moe(tiny_dir: Path, tokenizer_source: Path | None) -> Path:
    """Another tiny MoE (other weights), 3 of its 4 experts used: its sweep runs 3-1."""
    return tiny_models.moe_llama(tiny_dir, tokenizer_source, seed=1, n_expert=4,
                                 n_expert_used=3)


@pytest.fixture(scope="module")
def random_moe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MoE with random weights, written as the synthetic catalog model is."""
    folder = tmp_path_factory.mktemp("random")
    path = folder / "tiny-random-moe.gguf"
    write_synthetic_moe(path, tiny_models.dense_llama(folder), RANDOM)
    return path


def setup(qtbot: Any, w: MainWindow, target: Path) -> SweepView:
    choose(qtbot, w, target, draft=None)
    s = w.tracks.settings
    s.max_tokens.setValue(4)
    s.threads.setValue(1)  # 2 threads on a shared 2-core machine stall
    s.adaptive.setChecked(False)
    w.prompt.text.setPlainText(PROMPT)
    w.prompt.chat.setChecked(False)
    w.lab.tabs.setCurrentIndex(SWEEP)
    return w.lab.sweep


def sweep(qtbot: Any, view: SweepView, track: str, parameter: str, values: str) -> None:
    view.choose(track, parameter, values)
    with qtbot.waitSignal(view.sweep_ended, timeout=TIMEOUT):
        assert view.run_main_action(), view.status.text()


def dashed(curve: Any) -> bool:
    pen = curve.opts["pen"]
    return pen is not None and pen.style() == Qt.PenStyle.DashLine


def drawn(plot: Any) -> dict[str, tuple[list[float], bool]]:
    """What the plot's legend names: label → (x values of its curve, dashed)."""
    item = plot.getPlotItem()
    if not item.legend.isVisible():
        return {}
    out = {}
    for sample, label in item.legend.items:
        curve = sample.item
        assert curve in item.listDataItems()  # named and drawn
        xs = curve.getData()[0]
        out[label.text] = ([float(x) for x in (xs if xs is not None else [])], dashed(curve))
    return out


def cell(view: SweepView, row: int, column: int) -> str:
    item = view.table.item(row, column)
    assert item is not None
    return str(item.text())


def test_two_models_expert_sweeps_on_one_plot(
    qtbot: Any, window: MainWindow, tiny_moe: Path, other_moe: Path
) -> None:
    view = setup(qtbot, window, tiny_moe)
    assert not view.kept.keep_button.isEnabled()  # nothing to keep yet
    sweep(qtbot, view, "moe", "experts", "2-1")
    assert drawn(view.tps) == {}  # one sweep: no legend
    assert view.kept.keep_button.isEnabled()
    first_tps = [p.tokens_per_second for p in view.points]
    qtbot.mouseClick(view.kept.keep_button, Qt.MouseButton.LeftButton)
    assert not view.kept.keep_button.isEnabled() and view.kept.clear_button.isEnabled()

    choose(qtbot, window, other_moe)
    sweep(qtbot, view, "moe", "experts", "3-1")
    kept, live = f"{tiny_moe.stem} · {MOE}", f"{other_moe.stem} · {MOE}"
    both = {kept: ([2.0, 1.0], True), live: ([3.0, 2.0, 1.0], False)}
    for plot in (view.tps, view.speed, view.div):
        assert drawn(plot) == both
    # The kept curve's y values are the first sweep's.
    kept_item = next(s.item for s, label in view.tps.getPlotItem().legend.items
                     if label.text == kept)
    assert list(kept_item.getData()[1]) == first_tps
    assert view.kept.hint.isHidden()

    # A sweep over K (another setting): the kept expert sweep is hidden, and counted.
    sweep(qtbot, view, "moe+lookup", "draft_max", "1")
    assert drawn(view.tps) == {} and drawn(view.speed) == {}
    assert not view.kept.hint.isHidden()
    assert view.kept.hint.text().startswith("1 kept sweep hidden (over Experts)")
    assert view.speed.getAxis("bottom").labelText == "K (draft max)"

    # Experts again: it shows again, beside the one value of this sweep; then cleared.
    sweep(qtbot, view, "moe", "experts", "1")
    assert drawn(view.tps) == {kept: ([2.0, 1.0], True), live: ([1.0], False)}
    qtbot.mouseClick(view.kept.clear_button, Qt.MouseButton.LeftButton)
    assert view.kept.sweeps.items == []
    for plot in (view.tps, view.speed, view.div):
        assert drawn(plot) == {}
        assert not any(dashed(i) for i in plot.getPlotItem().listDataItems())
    assert view.kept.hint.isHidden() and not view.kept.clear_button.isEnabled()
    assert view.kept.keep_button.isEnabled()  # the live sweep can be kept again


def test_random_weights_say_their_divergence_means_nothing(
    qtbot: Any, window: MainWindow, random_moe: Path, tiny_moe: Path
) -> None:
    assert swept_model(random_moe).random_weights and not swept_model(tiny_moe).random_weights
    view = setup(qtbot, window, random_moe)
    sweep(qtbot, view, "moe", "experts", "2-1")
    label = f"{random_moe.stem} · {MOE}"
    assert view.table.rowCount() == 2
    for row in range(2):
        assert RANDOM_NOTE in cell(view, row, NOTE)
    assert not view.kept.hint.isHidden()
    assert f"{label} — {RANDOM_NOTE}" in view.kept.hint.text()
    assert drawn(view.div) == {f"{label} — {RANDOM_NOTE}": ([2.0, 1.0], False)}
    assert view.keep()

    choose(qtbot, window, tiny_moe)
    sweep(qtbot, view, "moe", "experts", "1")
    assert RANDOM_NOTE not in cell(view, 0, NOTE)  # real weights: divergence counts
    live = f"{tiny_moe.stem} · {MOE}"
    assert drawn(view.div) == {f"{label} — {RANDOM_NOTE}": ([2.0, 1.0], True),
                               live: ([1.0], False)}
    assert drawn(view.tps) == {label: ([2.0, 1.0], True), live: ([1.0], False)}
    assert f"{label} (kept)" in view.kept.hint.text() and live not in view.kept.hint.text()


def kept(label: str, parameter: str = "experts") -> KeptSweep:
    return KeptSweep(label, parameter, (2.0, 1.0), (10.0, 12.0), (1.0, math.nan),
                     (0.0, 0.5), False)


def test_at_most_three_are_kept_oldest_dropped_colours_stay() -> None:
    sweeps = KeptSweeps()
    for name in "abcd":
        sweeps.keep(kept(name))
    assert len(sweeps.items) == MAX_KEPT == 3
    assert [k.label for k in sweeps.items] == ["b", "c", "d"]
    assert [k.slot for k in sweeps.items] == [1, 2, 0]  # b and c keep theirs; d takes a's
    sweeps.keep(kept("k", "draft_max"))
    assert [k.label for k in sweeps.shown("experts")] == ["c", "d"]
    assert [k.label for k in sweeps.hidden("experts")] == ["k"]


@pytest.mark.parametrize("dark", [False, True])
def test_kept_colours_read_on_the_plot_background(dark: bool) -> None:
    bg = theme(dark).plot_bg
    colours = {kept_colour(slot, dark) for slot in range(MAX_KEPT)}
    assert len(colours) == MAX_KEPT
    for colour in colours:
        assert contrast(colour, bg) >= AA_GRAPHIC


def test_a_value_that_wrote_nothing_is_a_gap_not_a_zero(window: MainWindow) -> None:
    """With few experts a model may end its answer at once: no speed, said in the note."""
    from app.core.events import RunResult
    from app.core.sweep import SweepPoint

    view = window.lab.sweep
    silent = RunResult("moe", "", "eos", 340, 0, 0, 0, 0, 0.0, 0.2, 0.0, 0.0, {}, {})
    spoke = RunResult("moe", "x", "max_tokens", 340, 8, 0, 0, 0, 0.5, 0.2, 0.0, 0.0, {}, {})
    for value, run, speed in ((2, spoke, 1.5), (1, silent, None)):
        point = SweepPoint(value, run, speed, False, 0.0, 1.0)
        point.add(run, speed)
        view._progress(point)
    assert cell(view, 1, 1) == "—" and cell(view, 1, 2) == "—"
    assert "ended its answer at once" in cell(view, 1, NOTE)
    ys = view.tps_curve.getData()[1]
    assert ys is not None and ys[0] == 16.0 and math.isnan(ys[1])
    # the value without a speed stays in view on every plot (x linked to tokens/s)
    low, high = view.div.getViewBox().viewRange()[0]
    assert low < 1.0 and high > 2.0
