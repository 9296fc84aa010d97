"""Compare's column for a track that wrote no token (a model that ends its answer at once
with few experts): no speed, the reason, never "0.0 tok/s, 0.00×". Fabricated results:
the column's wording is the subject."""

from __future__ import annotations

from typing import Any

from app.core.events import RunResult
from app.core.verdict import ComparedRun
from app.ui.compare_columns import TrackColumn


def result(track: str, n: int, stop: str) -> RunResult:
    return RunResult(track, "x" * n, stop, 5, n, 0, 0, n, n / 10.0 if n else 0.0,  # type: ignore[arg-type]
                     0.1, 0.0, 0.0, {}, {})


def test_a_track_that_wrote_no_token_shows_no_speed(qtbot: Any) -> None:
    base = ComparedRun(result("baseline", 20, "max_tokens"), 1.0, True)
    silent = ComparedRun(result("moe", 0, "eos"), None, False)
    column = TrackColumn("moe")
    qtbot.addWidget(column)
    column.show_result(silent, base)
    assert column.values["tps"].text() == "— wrote no token"
    assert column.values["speedup"].text() == "—"
    assert "No speed: the model ended its answer at once" in column.state.text()
    # A track that wrote its answer keeps its figures.
    column.show_result(ComparedRun(result("moe", 20, "max_tokens"), 1.0, True), base)
    assert column.values["tps"].text() == "10.0"
    assert "No speed" not in column.state.text()


def test_fewer_experts_parting_from_the_baseline_is_not_called_suspicious() -> None:
    """Track 2 changes the model: its answer parting from the baseline at a clear margin is
    expected, not 'worth a closer look' as it would be for a lossless track."""
    from app.ui.compare_columns import difference_note

    moe = result("moe", 20, "max_tokens")
    moe.effective = {"expert_used_count": 1, "expert_count": 16}
    note = difference_note(ComparedRun(moe, 1.7, False, 0, 2.8))
    assert "not lossless" in note and "closer look" not in note
    lookup = ComparedRun(result("lookup", 20, "max_tokens"), 1.7, False, 3, 2.8)
    assert "worth a closer look" in difference_note(lookup)
    # All of the model's experts: the same model, so lossless again.
    same = result("moe", 20, "max_tokens")
    same.effective = {"expert_used_count": 16, "expert_count": 16}
    assert "worth a closer look" in difference_note(ComparedRun(same, 1.0, False, 3, 2.8))
