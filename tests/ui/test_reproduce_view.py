"""The evidence view of a reproduced deprecated track, and the track selector's
"Reproduce…" buttons, on tiny models through the real engine lane."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyqtgraph as pg
import pytest
import tiny_models

from app.core.events import RunRequest, RunSettings
from app.core.gguf_info import inspect_model
from app.core.reproduce.result import Reproduction
from app.core.reproduce.store import Reproductions
from app.ui.jobs import RunContext
from app.ui.lane import Lane
from app.ui.reproduce_view import ReproduceView, parse_depths
from app.ui.state import WorkbenchState
from app.ui.track_panel import TrackPanel

PROMPT = "def add(a, b):\n    return a + b\n\nThe quick brown fox"
WAIT = 180_000  # ms; ends as soon as the job does


@pytest.fixture(autouse=True)
def own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def four_blocks(tiny_dir: Path) -> Path:
    return tiny_models.dense_llama(tiny_dir, None, n_layer=4)


@pytest.fixture
def lane() -> Iterator[Lane]:
    h = Lane()
    try:
        yield h
    finally:
        h.shutdown()


def context_of(target: Path, draft: Path | None = None) -> Any:
    settings = RunSettings(max_tokens=12, threads=1, ctx=512)
    info = inspect_model(target)
    return lambda: RunContext(RunRequest(target, draft, PROMPT, settings), info)


def view_on(qtbot: Any, lane: Lane, target: Path, draft: Path | None = None) -> ReproduceView:
    view = ReproduceView(lane, WorkbenchState(lane), context_of(target, draft))
    qtbot.addWidget(view)
    view.resize(1280, 720)
    view.show()
    return view


def reproduce(qtbot: Any, view: ReproduceView) -> Reproduction:
    with qtbot.waitSignal(view.reproduction_ended, timeout=WAIT) as ended:
        assert view.start()
    rep = ended.args[0]
    assert isinstance(rep, Reproduction)
    qtbot.waitUntil(lambda: not view.active, timeout=WAIT)
    return rep


def test_layer_skip_evidence(qtbot: Any, lane: Lane, four_blocks: Path, tmp_path: Path) -> None:
    view = view_on(qtbot, lane, four_blocks)
    view.open_track("cas-spec")
    view.depths.setText("3, 1")
    rep = reproduce(qtbot, view)
    assert [d.n_blocks for d in rep.depths] == [1, 3]
    # The depth sweep: one bar per depth at its acceptance, the study's line beside it.
    bars = [i for i in view.sweep.getPlotItem().items if isinstance(i, pg.BarGraphItem)]
    assert len(bars) == 1
    heights = [100 * (d.acceptance or 0.0) for d in rep.depths]
    assert list(bars[0].opts["height"]) == pytest.approx(heights)
    lines = [i for i in view.sweep.getPlotItem().items if isinstance(i, pg.InfiniteLine)]
    assert [line.value() for line in lines] == [pytest.approx(0.446)]
    # Acceptance by position: one curve per depth.
    assert len(view.positions.getPlotItem().listDataItems()) == 2
    assert view.table.rowCount() == 1 + 2
    # The token view holds the best depth's answer, its rejected drafts included.
    best = rep.best_depth
    assert best is not None
    kinds = [m.kind for m in view.tokens.marks]
    assert kinds.count("rejected") == best.result.n_drafted - best.result.n_accepted
    assert view.tokens.answer_text() == best.result.text
    assert view.verdict.text() == rep.verdict and "0.446 %" in view.figures.text()
    # Kept, and exported as it was kept.
    assert [r.id for r in Reproductions().list()] == [rep.id]
    out = view.export_to(tmp_path / "rep.json")
    assert out is not None and json.loads(out.read_text())["id"] == rep.id


def test_ssm_on_an_attention_model_is_refused_with_the_reason(
        qtbot: Any, lane: Lane, four_blocks: Path) -> None:
    view = view_on(qtbot, lane, four_blocks)
    view.open_track("ssm-spec")
    with qtbot.waitSignal(view.error, timeout=5000) as said:
        assert not view.start()
    assert "recurrent or hybrid" in said.args[0] and not view.active
    assert Reproductions().list() == []


def test_ssm_evidence_on_the_tiny_mamba(qtbot: Any, lane: Lane, tiny_mamba: Path,
                                        tiny_draft: Path) -> None:
    view = view_on(qtbot, lane, tiny_mamba, tiny_draft)
    view.open_track("ssm-spec")
    assert not view.depths.isEnabled()
    rep = reproduce(qtbot, view)
    assert [r.mode for r in rep.ssm] == ["naive", "snapshot"]
    assert view.table.rowCount() == 3 and view.tokens.isVisible()
    snap = rep.mode("snapshot")
    assert snap is not None and view.tokens.answer_text() == snap.result.text


def test_heads_tracks_show_why_and_nothing_else(qtbot: Any, lane: Lane,
                                                four_blocks: Path) -> None:
    view = view_on(qtbot, lane, four_blocks)
    view.open_track("medusa")
    rep = reproduce(qtbot, view)
    assert not rep.reproducible and view.verdict.text() == rep.verdict
    assert not view.sweep.isVisible() and not view.tokens.isVisible()
    # Kept: listed in the view, and shown again from there.
    assert [view.kept.itemData(i) for i in range(view.kept.count())] == [None, rep.id]
    view.verdict.setText("")
    view.kept.activated.emit(1)
    assert view.rep == rep and view.verdict.text() == rep.verdict


def test_depths_are_read_or_refused() -> None:
    assert parse_depths("2, 7 14") == [2, 7, 14] and parse_depths("  ") == []
    for bad in ("two", "0"):
        with pytest.raises(Exception, match="block"):
            parse_depths(bad)


def test_track_panel_offers_reproduce_where_it_can_run(qtbot: Any, tiny_dense: Path,
                                                       tiny_mamba: Path) -> None:
    panel = TrackPanel()
    qtbot.addWidget(panel)
    buttons = {tid: row.reproduce for tid, row in panel.deprecated_rows.items()}
    assert set(buttons) == {"eagle", "medusa", "ssm-spec", "cas-spec", "clasp-swift",
                            "kangaroo"}
    assert not any(b.isEnabled() for b in buttons.values())  # no model yet
    panel.set_models(inspect_model(tiny_dense), None, None)
    assert not buttons["ssm-spec"].isEnabled()
    assert "recurrent or hybrid" in buttons["ssm-spec"].toolTip()
    assert all(buttons[t].isEnabled() for t in ("cas-spec", "clasp-swift", "kangaroo",
                                                 "eagle", "medusa"))
    with qtbot.waitSignal(panel.reproduce_requested) as asked:
        buttons["kangaroo"].click()
    assert asked.args == ["kangaroo"]
    panel.set_models(inspect_model(tiny_mamba), None, None)
    assert buttons["ssm-spec"].isEnabled() and not buttons["cas-spec"].isEnabled()
