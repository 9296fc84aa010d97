"""Runs on the real engine: streaming, formats, Stop, errors, and the app staying usable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QGuiApplication, QTextCursor
from ui_helpers import choose, run_and_wait

from app.ui.main_window import MainWindow
from app.ui.token_view import PROP_KIND, PROP_SOURCE, format_kinds, source_colour
from app.ui.worker import EventBuffer

# Repetitive text: prompt lookup finds n-grams to propose from the first rounds on.
PROMPT = "alpha beta gamma delta, alpha beta gamma delta, alpha beta gamma delta, alpha beta"


def setup_run(qtbot: Any, w: MainWindow, target: Path, track: str, max_tokens: int,
              draft: Path | None = None) -> None:
    choose(qtbot, w, target, draft=draft)
    assert w.tracks.select(track), w.tracks.reason(track)
    w.tracks.settings.max_tokens.setValue(max_tokens)
    # One thread: on a shared 2-core machine OpenMP barriers of 2 threads can stall a
    # batch decode for a quarter second when another process holds a core.
    w.tracks.settings.threads.setValue(1)
    # Fixed drafting: adaptive drafting chooses from timings it measures, so what it drafts
    # (and whether anything is accepted) would follow the machine's load.
    w.tracks.settings.adaptive.setChecked(False)
    w.prompt.text.setPlainText(PROMPT)
    w.prompt.chat.setChecked(False)


def test_run_streams_tokens_in_batches_and_ends_with_summary(
    qtbot: Any, window: MainWindow, tiny_dense: Path, monkeypatch: Any
) -> None:
    setup_run(qtbot, window, tiny_dense, "lookup", 400)
    batches: list[int] = []
    original = window.token_view.append
    monkeypatch.setattr(window.token_view, "append",
                        lambda events: (batches.append(len(events)), original(events)))
    with qtbot.waitSignal(window.run_ended, timeout=60000) as blocker:
        qtbot.mouseClick(window.prompt.run_button, Qt.MouseButton.LeftButton)
        assert window.runs.active
        assert not window.prompt.run_button.isEnabled()  # no second run while one goes
        assert not window.start_run()
    result = blocker.args[0]
    assert result is not None and result.track == "lookup"
    assert result.n_generated > 0
    assert window.token_view.answer_text() == result.text
    assert sum(batches) == len(result.events)  # every event shown once, none lost
    assert len(batches) < result.n_generated  # batched, never one update per token
    values = window.summary.values
    assert float(values["tps"].text()) > 0
    assert values["stop"].text() in ("max tokens reached", "end of text", "context full")
    assert "this run is the baseline" not in values["speedup"].text()
    assert window.prompt.run_button.isEnabled() and not window.runs.active


def test_speedup_against_the_last_baseline(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    setup_run(qtbot, window, tiny_dense, "baseline", 60)
    base = run_and_wait(qtbot, window)
    assert "baseline" in window.summary.values["speedup"].text()
    assert window.tracks.select("lookup")
    run_and_wait(qtbot, window)
    assert f"({base.tokens_per_second:.1f} tok/s)" in window.summary.values["speedup"].text()


def test_accepted_and_rejected_tokens_get_their_formats(
    qtbot: Any, window: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    setup_run(qtbot, window, tiny_dense, "draft+lookup", 300, draft=tiny_draft)
    result = run_and_wait(qtbot, window)
    kinds = {e.kind for e in result.events}
    assert "rejected" in kinds
    accepted = [e for e in result.events if e.kind == "token" and e.origin == "accepted"]
    assert accepted, "the tiny models accepted no draft at all"
    window.token_view.inline.setChecked(True)  # the struck-through view; markers are the default
    doc = window.token_view.edit.document()
    seen: set[tuple[str, str]] = set()
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            f = it.fragment().charFormat()
            kind, source = f.stringProperty(PROP_KIND), f.stringProperty(PROP_SOURCE)
            seen.add((kind, source))
            if kind == "accepted":
                assert f.background().color() == QColor(source_colour(source))
            elif kind == "rejected":
                assert f.fontStrikeOut()
            elif kind == "target":
                assert not f.fontStrikeOut() and f.background().style() == Qt.BrushStyle.NoBrush
            it += 1
        block = block.next()
    assert ("target", "") in seen and any(k == "rejected" for k, _ in seen)
    assert any(k == "accepted" for k, _ in seen)

    # Hover text: id, origin, round and position, found from a point in the viewport.
    view = window.token_view
    index = next(i for i, m in enumerate(view.marks) if m.kind == "accepted" and m.text.strip())
    mark = view.marks[index]
    cursor = QTextCursor(doc)
    cursor.setPosition(view._starts[index] + 1)
    view.edit.setTextCursor(cursor)
    view.edit.ensureCursorVisible()
    rect = view.edit.cursorRect(cursor)
    tip = view.describe_at(QPoint(rect.x() - 2, rect.center().y()))
    assert f"token {mark.id}" in tip and "accepted draft" in tip
    assert f"round {mark.round}" in tip and f"position {mark.position}" in tip

    # Hiding rejected drafts keeps the answer; Copy leaves them out.
    window.token_view.show_rejected.setChecked(False)
    assert not any(k == "rejected" for k, _, _ in format_kinds(window.token_view))
    assert window.token_view.edit.toPlainText() == result.text
    window.token_view.show_rejected.setChecked(True)
    assert any(k == "rejected" for k, _, _ in format_kinds(window.token_view))
    qtbot.mouseClick(window.token_view.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == result.text


def test_stop_cancels_at_the_next_step_and_keeps_partial_text(
    qtbot: Any, window: MainWindow, tiny_slow: Path, monkeypatch: Any
) -> None:
    # Count the tokens the engine has handed over, as it hands them over: the run stops at
    # the next step after Stop, whatever the machine's load (how long that takes is not
    # asserted: it follows the load).
    handed: list[int] = []
    original_put = EventBuffer.put

    def counting_put(self: EventBuffer, event: Any) -> None:
        if event.kind == "token":
            handed.append(event.position)
        original_put(self, event)

    monkeypatch.setattr(EventBuffer, "put", counting_put)
    setup_run(qtbot, window, tiny_slow, "baseline", 1800)
    with qtbot.waitSignal(window.run_ended, timeout=60000) as blocker:
        qtbot.keyClick(window.prompt.text, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        assert window.runs.active
        qtbot.waitUntil(lambda: len(window.token_view.marks) >= 5, timeout=60000)
        job = window.runs.job
        assert job is not None
        qtbot.keyClick(window.prompt.text, Qt.Key.Key_Escape)
        qtbot.waitUntil(job.cancel.is_set, timeout=60000)
        at_stop = len(handed)  # counted once Stop is set
    result = blocker.args[0]
    assert result.stop_reason == "cancelled"
    # At most the step under way when Stop came ends; no further step starts.
    assert result.n_generated <= at_stop + 1 < 1800
    assert result.n_generated >= 5
    assert window.token_view.answer_text() == result.text
    assert "cancelled" in window.token_view.edit.toPlainText()
    assert window.summary.values["stop"].text().startswith("cancelled")


def test_broken_model_shows_an_error_and_the_app_stays_usable(
    qtbot: Any, window: MainWindow, broken_files: dict[str, Path], tiny_dense: Path,
    tmp_path: Path
) -> None:
    # Not a model at all: inspection fails, the window says so, nothing can run.
    choose(qtbot, window, broken_files["text"])
    assert not window.error_banner.isHidden()
    assert "text.gguf" in window.error_banner.message()
    assert "Traceback" not in window.error_banner.message()
    assert not window.prompt.run_button.isEnabled()
    # Missing file.
    choose(qtbot, window, broken_files["missing"])
    assert "does-not-exist.gguf" in window.error_banner.message()
    # Data cut short.
    choose(qtbot, window, broken_files["truncated_data"])
    assert "truncated_data.gguf" in window.error_banner.message()
    assert "incomplete file" in window.error_banner.message()
    # A file that breaks between choosing it and running it: the run fails, cleanly.
    vanishing = tmp_path / "vanishing.gguf"
    vanishing.write_bytes(tiny_dense.read_bytes())
    setup_run(qtbot, window, vanishing, "baseline", 16)
    vanishing.write_bytes(b"GGUF" + bytes(60))
    result = run_and_wait(qtbot, window)
    assert result is None
    message = window.error_banner.message()
    assert "vanishing.gguf" in message and message.startswith("The run failed")
    assert "Traceback" not in message
    assert window.summary.values["stop"].text() == "failed"
    # Still usable: a good model runs.
    setup_run(qtbot, window, tiny_dense, "baseline", 16)
    result = run_and_wait(qtbot, window)
    assert result is not None and result.n_generated > 0
    assert window.error_banner.isHidden()


def test_a_baseline_sets_the_speedup_only_of_runs_with_its_speed_settings(
    qtbot: Any, window: MainWindow, tiny_dense: Path
) -> None:
    def run(track: str, threads: int) -> str:
        setup_run(qtbot, window, tiny_dense, track, 24)
        window.tracks.settings.threads.setValue(threads)
        with qtbot.waitSignal(window.run_ended, timeout=60000):
            qtbot.mouseClick(window.prompt.run_button, Qt.MouseButton.LeftButton)
        return window.summary.values["speedup"].text()

    assert "this run is the baseline" in run("baseline", 1)
    assert "vs baseline" in run("lookup", 1)  # same speed settings: compared
    # A baseline measured with 1 thread must not set the speedup of a 2-thread run.
    assert "vs baseline" not in run("lookup", 2)
