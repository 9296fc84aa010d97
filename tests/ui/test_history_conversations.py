"""Conversations in the History tab: a chat of the window is listed as it goes, with its
turns and each turn's run; reopened, it opens in the Chat tab and continues there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from ui_helpers import choose

from app.core.labels import track_label
from app.ui.chat_view import ChatView
from app.ui.main_window import MainWindow
from app.ui.settings import GuiSettings

TIMEOUT = 60000


@pytest.fixture
def win(qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    monkeypatch.setenv("DECODELAB_HOME", str(tmp_path / "home"))
    w = MainWindow(GuiSettings(file=tmp_path / "gui.json"), restore=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def send(qtbot: Any, chat: ChatView, text: str) -> Any:
    chat.input.setPlainText(text)
    with qtbot.waitSignal(chat.turn_ended, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(chat.input, Qt.Key.Key_Return)
    return blocker.args[0]


def test_a_conversation_is_listed_in_history_and_reopens_in_chat(
    qtbot: Any, win: MainWindow, tiny_dense: Path, tiny_draft: Path
) -> None:
    choose(qtbot, win, tiny_dense)
    win.tracks.settings.max_tokens.setValue(4)
    win.tracks.settings.threads.setValue(1)
    chat = win.chat
    history = win.lab.history
    assert history.chats.chat_empty.isVisibleTo(history) and not history.chats.conversation_ids()
    send(qtbot, chat, "Write a function that adds two numbers.")
    assert chat.set_track("lookup")
    second = send(qtbot, chat, "Now rename it to total.")
    conv_id = chat.conv.id
    assert history.chats.conversation_ids() == [conv_id]  # listed as it goes, no refresh asked

    # Its turns, each with the run that answered it.
    top = history.chats.chat_tree.topLevelItem(0)
    assert top is not None and "2 turns" in top.text(1)
    top.setExpanded(True)
    assert top.childCount() == 2
    turn2 = top.child(1)
    assert turn2 is not None
    assert turn2.text(1).startswith("Turn 2: Now rename it to total.")
    assert turn2.text(2) == track_label("lookup")
    assert turn2.text(3) == str(second.n_generated)
    assert turn2.text(7) == f"{second.prefill_tokens} ({second.reused_tokens} reused)"
    # The filters apply: a track no answer used hides it.
    history.track_filter.setCurrentIndex(history.track_filter.findData("moe"))
    assert history.chats.conversation_ids() == []
    history.track_filter.setCurrentIndex(0)

    # Another chat meanwhile, and another target: reopening brings both back.
    chat.new_chat()
    choose(qtbot, win, tiny_draft)
    win.lab.tabs.setCurrentWidget(history)
    assert history.chats.select_conversation(conv_id)
    top = history.chats.chat_tree.topLevelItem(0)
    assert top is not None
    top.setExpanded(True)
    first_turn = top.child(0)
    assert first_turn is not None
    history.chats.chat_tree.setCurrentItem(first_turn)
    assert history.chats.selected_conversation() == conv_id  # a turn's row stands for it
    history.chats.chat_open_button.click()
    assert win.lab.tabs.currentWidget() is win.chat_page
    assert chat.conv.id == conv_id and len(chat.conv.messages) == 4
    qtbot.waitUntil(lambda: win.state.target_info is not None and not win.lane.busy,
                    timeout=TIMEOUT)
    assert win.state.target_path == str(tiny_dense.resolve())

    # And it continues: a third turn, evaluated from scratch once (a new engine session
    # may hold other tokens), saved into the same conversation.
    chat.set_track("baseline")
    third = send(qtbot, chat, "Add a docstring.")
    assert third is not None and chat.conv.turns == 3
    assert win.chat.store.load(conv_id).turns == 3
    assert history.chats.conversation_ids()[0] == conv_id

    # Deleting it from History (asked first).
    history.ask = lambda _q: True  # the panel's, which its conversations ask too
    assert history.chats.delete_conversation(conv_id)
    assert conv_id not in history.chats.conversation_ids()
