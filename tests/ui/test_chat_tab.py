"""The Chat tab in the real window with tiny models: it follows the window's track and
settings, a second turn keeps the cache, Ctrl+Enter sends, Esc stops the turn, the SSM rule
holds, and the Run tab's system message box starts with the default message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from ui_helpers import choose, run_and_wait

from app.core.chat.render import DEFAULT_SYSTEM
from app.core.tracks import working
from app.ui.chat_view import ChatView
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings

TIMEOUT = 60000


@pytest.fixture
def win(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    """The window, with its history and conversations in a folder of this test."""
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    w = MainWindow(GuiSettings(file=tmp_path / "gui.json"), restore=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def ready(qtbot: Any, w: MainWindow, model: Path, max_tokens: int = 6) -> ChatView:
    choose(qtbot, w, model)
    w.tracks.settings.max_tokens.setValue(max_tokens)
    w.tracks.settings.threads.setValue(1)
    w.tracks.settings.ctx.setValue(512)
    w.lab.tabs.setCurrentWidget(w.chat_page)
    return w.chat


def send(qtbot: Any, chat: ChatView, text: str) -> Any:
    chat.input.setPlainText(text)
    with qtbot.waitSignal(chat.turn_ended, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    return blocker.args[0]


def test_the_chat_tab_runs_two_turns_with_the_windows_track_and_settings(
    qtbot: Any, win: MainWindow, tiny_dense: Path
) -> None:
    tabs = win.lab.tabs
    assert tabs.tabText(tabs.indexOf(win.chat_page)) == "Chat"
    chat = ready(qtbot, win, tiny_dense, max_tokens=5)
    first = send(qtbot, chat, "Write a function that adds two numbers.")
    assert first is not None and first.track == "baseline" and first.reused_tokens == 0
    assert first.n_generated <= 5  # the track panel's max tokens
    # The track chosen in the window is the next turn's, and the other way round.
    assert win.tracks.select("lookup") and chat.selected_track().id == "lookup"
    chat.track.setCurrentIndex(chat.track.findData("baseline"))
    assert win.tracks.selected() == "baseline"
    chat.track.setCurrentIndex(chat.track.findData("lookup"))
    assert win.tracks.selected() == "lookup"
    second = send(qtbot, chat, "Now rename it to total.")
    assert second.track == "lookup"
    assert second.reused_tokens > 0 and second.prefill_tokens < second.prompt_tokens
    assert len(chat.conv.messages) == 4 and not win.state.busy


def test_ctrl_enter_sends_in_chat_and_esc_stops_the_turn(
    qtbot: Any, win: MainWindow, tiny_slow: Path
) -> None:
    chat = ready(qtbot, win, tiny_slow, max_tokens=400)
    chat.input.setPlainText("Tell me a long story.")
    chat.input.setFocus()
    with qtbot.waitSignal(chat.turn_ended, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        assert chat.running and win.state.busy
        qtbot.waitUntil(lambda: chat.live is not None and len(chat.live.tokens.marks) >= 2,
                        timeout=TIMEOUT)
        qtbot.keyClick(chat.input, Qt.Key.Key_Escape)
    stopped = blocker.args[0]
    assert stopped.stop_reason == "cancelled" and stopped.n_generated < 400
    assert chat.conv.messages[-1].partial and not win.state.busy
    # The Run tab works after it, on the same engine.
    win.lab.tabs.setCurrentIndex(0)
    win.prompt.text.setPlainText("alpha beta")
    win.tracks.settings.max_tokens.setValue(3)
    assert run_and_wait(qtbot, win) is not None


def test_an_ssm_target_chats_on_the_baseline_only_in_the_window(
    qtbot: Any, win: MainWindow, tiny_mamba: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = ready(qtbot, win, tiny_mamba)
    model = chat.track.model()
    for i, track in enumerate(working()):
        enabled = model.item(i).isEnabled()  # type: ignore[attr-defined]
        assert enabled == win.state.available(track), track.id
        if track.speculates:  # the core's SSM reason, on the greyed item
            assert not enabled and "recurrent" in model.item(i).toolTip()  # type: ignore[attr-defined]
    assert model.item(chat.track.findData("baseline")).isEnabled()  # type: ignore[attr-defined]
    # The window's speculation controls are off for it too.
    assert not any(w.isEnabled() for w in win.tracks.settings.speculation_widgets(
        next(t for t in working() if t.id == "lookup")))
    assert not chat.set_track("lookup")
    chat.track.setCurrentIndex(chat.track.findData("lookup"))  # forced past the greyed item
    chat.input.setPlainText("Hello")
    assert not chat.send() and "not available" in chat.status.text()
    # Past the view's own check, the engine refuses it; nothing is half-kept.
    monkeypatch.setattr(chat, "problem", lambda: None)
    said: list[str] = []
    monkeypatch.setattr(chat.status, "setText", lambda text: said.append(text))
    with qtbot.waitSignal(chat.turn_ended, timeout=TIMEOUT) as blocker:
        assert chat.send()
    assert blocker.args[0] is None
    assert any(t.startswith("Refused") and "recurrent" in t for t in said), said
    assert not chat.conv.messages and chat.input.toPlainText() == "Hello"
    monkeypatch.undo()
    chat.track.setCurrentIndex(chat.track.findData("baseline"))
    first = send(qtbot, chat, "Hello")
    second = send(qtbot, chat, "And again")
    assert first.n_drafted == second.n_drafted == 0 and second.reused_tokens > 0


def test_the_system_message_box_starts_with_the_default(
    qtbot: Any, win: MainWindow, tiny_dense: Path
) -> None:
    choose(qtbot, win, tiny_dense)
    p = win.prompt
    assert p.use_chat() and p.system.text() == DEFAULT_SYSTEM
    assert "no system message" in p.system.placeholderText()
    p.text.setPlainText("Hello")
    request = win.runs.choices()
    assert not isinstance(request, str) and request.settings.system is None  # the default
    p.system.clear()  # emptied: no system message at all, not the default
    request = win.runs.choices()
    assert not isinstance(request, str) and request.settings.system == ""
    p.system.setText("Answer in French.")
    request = win.runs.choices()
    assert not isinstance(request, str) and request.settings.system == "Answer in French."
    # What the system message is for this model, beside the box, when it is worth a word.
    p.system.clear()
    assert p.system_note.text().startswith("System: no system message")
    p.set_system_setting(None)
    assert p.system.text() == DEFAULT_SYSTEM
    # Remembered across sessions: the default as the default, an emptied box as empty.
    win.save_settings()
    again = GuiSettings.load(win.gui_settings.file)
    assert again.system_message is None
    p.system.clear()
    win.save_settings()
    assert GuiSettings.load(win.gui_settings.file).system_message == ""
