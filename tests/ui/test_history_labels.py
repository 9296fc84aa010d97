"""History speaks as the rest of the app does: display names from the one table
(``app.core.labels``), the speedup and verdict a run was shown with, and a comparison where
nothing beat the baseline never reads "best"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from app.core import labels
from app.core.events import RunRequest, RunResult, RunSettings
from app.core.history import History, record_comparison, record_run
from app.core.serialization import Shown
from app.core.verdict import ComparedRun, Comparison, Repeats, judge_run
from app.ui.history_panel import COLUMNS, SPEEDUP, TRACK, VERDICT, HistoryPanel

IDLE = "adaptive drafting judged a verify batch too costly: 1.6 steps for 2 tokens"
STOPPED = COLUMNS.index(labels.field_label("stop_reason"))


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.gguf"
    p.write_bytes(os.urandom(1 << 16))
    return p


def result(track: str, tps: float, drafted: int = 4, notes: list[str] | None = None) -> RunResult:
    s = RunSettings(track=track, max_tokens=20, threads=1)
    return RunResult(track, "answer", "max_tokens", 5, 20, drafted, drafted // 2, 10,
                     20 / tps, 0.1, 0.1, 0.5, s.to_dict(), {}, notes=notes or [])


def request(model: Path) -> RunRequest:
    return RunRequest(model, None, "a prompt", RunSettings(threads=1))


def cells(item: Any) -> list[str]:
    return [item.text(i) for i in range(len(COLUMNS))]


def test_labels_come_from_the_one_table(qtbot: Any, model_file: Path) -> None:
    history = History()
    r = result("lookup", 15.6, drafted=0, notes=[IDLE])
    shown = Shown(1.56, judge_run(r, 10.0).text)
    rid = record_run(r, request(model_file), history, shown)
    panel = HistoryPanel()
    qtbot.addWidget(panel)
    row = panel._find(rid)
    assert row is not None
    assert row.text(TRACK) == labels.track_label("lookup") == "Track 8 · Prompt lookup"
    assert row.text(STOPPED) == labels.stop_label("max_tokens") == "Max tokens reached"
    assert not any("max_tokens" in c or "_" in c for c in cells(row)[:8])  # no raw keys
    # The speedup it was shown with, not "—"; and why it is no win.
    assert row.text(SPEEDUP) == "1.56×"
    assert row.text(VERDICT) == "drafted nothing"
    assert shown.verdict in row.toolTip(VERDICT) and IDLE in row.toolTip(VERDICT)
    assert panel.track_filter.itemText(panel.track_filter.findData("lookup")) \
        == labels.track_label("lookup")
    assert [panel.tree.headerItem().text(i) for i in range(len(COLUMNS))] == list(COLUMNS)
    assert labels.field_label("stop_reason") in COLUMNS


def test_a_comparison_where_nothing_beat_the_baseline_names_no_best(
    qtbot: Any, model_file: Path
) -> None:
    history = History()
    slow = Comparison([ComparedRun(result("baseline", 10.0), 1.0, True),
                       ComparedRun(result("lookup", 6.8), 0.68, True),
                       ComparedRun(result("draft", 5.5), 0.55, True)])
    slow_id = record_comparison(slow, request(model_file), history)
    close = Comparison([
        ComparedRun(result("baseline", 10.0), 1.0, True,
                    repeats=Repeats([10.0, 10.0, 10.0], [1.0, 1.0, 1.0])),
        ComparedRun(result("lookup", 14.0), 1.4, True,
                    repeats=Repeats([13.0, 14.0, 15.0], [1.3, 1.4, 1.5])),
        ComparedRun(result("draft", 13.5), 1.35, True,
                    repeats=Repeats([12.0, 13.5, 14.5], [1.2, 1.35, 1.45]))], 3)
    close_id = record_comparison(close, request(model_file), history)
    clear = Comparison([ComparedRun(result("baseline", 10.0), 1.0, True),
                        ComparedRun(result("lookup", 19.0), 1.9, True),
                        ComparedRun(result("draft", 12.0), 1.2, True)])
    clear_id = record_comparison(clear, request(model_file), history)
    panel = HistoryPanel()
    qtbot.addWidget(panel)

    group = panel._find(slow_id)
    assert group is not None
    assert group.text(VERDICT) == "nothing beat the baseline"
    assert not any("best" in c.lower() for c in cells(group))
    assert group.text(SPEEDUP) == ""  # no number standing for a winner that is not one

    group = panel._find(close_id)
    assert group is not None and "× 3 repeats" in group.text(TRACK)
    assert group.text(VERDICT) == "no clear winner: within noise"
    children = [c for i in range(group.childCount()) if (c := group.child(i)) is not None]
    member = next(c for c in children if c.text(TRACK) == labels.track_label("lookup"))
    assert member.text(SPEEDUP) == "1.40× (1.30–1.50, 3 runs)"

    group = panel._find(clear_id)
    assert group is not None
    assert group.text(VERDICT) == "best: Track 8 · Prompt lookup 1.90×"
    assert group.text(SPEEDUP) == "1.90×"
    assert group.toolTip(VERDICT) == clear.verdict.text  # as shown when it ended
