"""The Chat view on the real engine lane with tiny models: Enter sends and the next turn
keeps the cache, Esc stops keeping the partial answer, Regenerate, Edit & resend, Copy, the
context-full banner, the SSM rule, saving, reopening and the samples."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QTextCursor

from app.core.chat.conversation import Conversation
from app.core.chat.store import ConversationStore
from app.core.events import RunSettings
from app.core.tracks import Track, working
from app.ui.chat_blocks import AnswerBlock, UserBlock
from app.ui.chat_view import ChatView
from app.ui.lane import Lane
from app.ui.state import WorkbenchState

TIMEOUT = 60000


@pytest.fixture
def lane() -> Iterator[Lane]:
    lane = Lane()
    try:
        yield lane
    finally:
        lane.shutdown()


def make_view(qtbot: Any, lane: Lane, target: Path, tmp_path: Path,
              **settings: Any) -> ChatView:
    state = WorkbenchState(lane)
    with qtbot.waitSignal(state.target_read, timeout=TIMEOUT):
        state.set_target(target)
    qtbot.waitUntil(lambda: not lane.busy and not state.inspecting, timeout=TIMEOUT)

    def settings_for(track: Track) -> RunSettings:
        base: dict[str, Any] = {"max_tokens": 8, "threads": 1, "ctx": 512, "adaptive": False}
        return RunSettings(track=track.id, **{**base, **settings})

    view = ChatView(state, lane, settings_for, ConversationStore(tmp_path / "conversations"))
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    return view


def answer(qtbot: Any, view: ChatView, start: Any) -> Any:
    with qtbot.waitSignal(view.turn_ended, timeout=TIMEOUT) as blocker:
        assert start() is not False
    return blocker.args[0]


def type_and_send(qtbot: Any, view: ChatView, text: str) -> Any:
    view.input.setPlainText(text)
    return answer(qtbot, view, lambda: qtbot.keyClick(view.input, Qt.Key.Key_Return))


def answers(view: ChatView) -> list[AnswerBlock]:
    return [b for b in view.blocks if isinstance(b, AnswerBlock)]


def test_enter_sends_and_the_next_turn_keeps_the_cache(
    qtbot: Any, lane: Lane, tiny_dense: Path, tmp_path: Path
) -> None:
    view = make_view(qtbot, lane, tiny_dense, tmp_path)
    view.input.setPlainText("first line")
    view.input.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClick(view.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert view.input.toPlainText() == "first line\n" and not view.conv.messages
    first = type_and_send(qtbot, view, "Write a function that adds two numbers.")
    assert first is not None and first.reused_tokens == 0
    assert view.set_track("lookup")
    second = type_and_send(qtbot, view, "Now rename it to total.")
    assert second.track == "lookup" and second.reused_tokens > first.prompt_tokens
    assert len(view.blocks) == 4 and not view.input.toPlainText()
    stats = answers(view)[1].stats.text()
    assert "Track 8" in stats and "vs baseline turn 1" in stats
    assert f"prefill {second.prefill_tokens} tokens, {second.reused_tokens} reused" in stats
    # Only the last answer offers Regenerate; Copy copies an answer without its drafts.
    assert [b.regen_button.isVisible() for b in answers(view)] == [False, True]
    answers(view)[0].copy_button.click()
    assert QGuiApplication.clipboard().text() == view.conv.messages[1].text
    # Kept as it went.
    saved = view.store.load(view.conv.id)
    assert saved.turns == 2 and saved.messages[3].run is not None


def test_esc_stops_keeping_the_partial_answer_and_the_next_turn_works(
    qtbot: Any, lane: Lane, tiny_slow: Path, tmp_path: Path
) -> None:
    view = make_view(qtbot, lane, tiny_slow, tmp_path, max_tokens=400)
    view.input.setPlainText("Tell me a long story.")
    with qtbot.waitSignal(view.turn_ended, timeout=TIMEOUT) as blocker:
        qtbot.keyClick(view.input, Qt.Key.Key_Return)
        qtbot.waitUntil(lambda: view.live is not None and len(view.live.tokens.marks) >= 2,
                        timeout=TIMEOUT)
        qtbot.keyClick(view.input, Qt.Key.Key_Escape)
    stopped = blocker.args[0]
    assert stopped.stop_reason == "cancelled" and 2 <= stopped.n_generated < 400
    assert view.conv.messages[-1].partial
    block = answers(view)[-1]
    assert "stopped" in block.tokens.edit.toPlainText() and "stopped" in block.stats.text()
    view.settings_for = lambda t: RunSettings(track=t.id, max_tokens=6, threads=1, ctx=512)
    nxt = type_and_send(qtbot, view, "And then?")
    assert nxt.stop_reason in ("eos", "max_tokens") and nxt.reused_tokens > 0


def test_regenerate_and_edit_and_resend(
    qtbot: Any, lane: Lane, tiny_dense: Path, tmp_path: Path
) -> None:
    view = make_view(qtbot, lane, tiny_dense, tmp_path)
    type_and_send(qtbot, view, "Write a function that adds two numbers.")
    second = type_and_send(qtbot, view, "Now rename it.")
    again = answer(qtbot, view, answers(view)[-1].regen_button.click)
    assert again.token_ids == second.token_ids  # greedy, from the same kept cache
    assert again.prefill_tokens == 1 and len(view.blocks) == 4
    first_user = view.blocks[0]
    assert isinstance(first_user, UserBlock)
    first_user.start_edit()
    assert first_user.editor is not None
    first_user.editor.setPlainText("Write a function that multiplies two numbers.")
    edited = answer(qtbot, view, first_user.resend)
    assert edited is not None and len(view.conv.messages) == 2 and len(view.blocks) == 2
    assert view.conv.messages[0].text == "Write a function that multiplies two numbers."
    assert 0 < edited.reused_tokens < edited.prompt_tokens  # cut where the message changed


def test_context_full_offers_a_trimmed_history(
    qtbot: Any, lane: Lane, tiny_dense: Path, tmp_path: Path
) -> None:
    view = make_view(qtbot, lane, tiny_dense, tmp_path, ctx=256)
    long = "Tell me about the weather in the mountains and in the valleys. " * 8
    type_and_send(qtbot, view, long)
    assert type_and_send(qtbot, view, long) is None
    assert view.banner.isVisible() and "Context full" in view.banner.text.text()
    trim = view.banner.trim_button
    assert trim.isVisible() and trim.text() == "Continue from turn 2"
    assert view.conv.waiting and len(view.conv.messages) == 3  # nothing dropped
    result = answer(qtbot, view, view.banner.trim_button.click)
    assert result is not None and not view.banner.isVisible()
    assert view.conv.start == 2 and not view.blocks[0].isEnabled()
    assert view.blocks[2].isEnabled() and view.transcript.boundary.isVisible()
    assert "no longer in the model's context" in view.transcript.boundary.text()


def test_an_ssm_target_chats_on_the_baseline_only(
    qtbot: Any, lane: Lane, tiny_mamba: Path, tmp_path: Path
) -> None:
    view = make_view(qtbot, lane, tiny_mamba, tmp_path)
    model = view.track.model()
    for i, track in enumerate(working()):
        assert view.track.itemData(i) == track.id
        enabled = model.item(i).isEnabled()  # type: ignore[attr-defined]
        assert enabled == view.state.available(track), track.id
        if track.speculates:  # the core's SSM reason, shown on the greyed item
            assert not enabled and "recurrent" in model.item(i).toolTip()  # type: ignore[attr-defined]
    assert view.state.available("baseline")
    assert not view.set_track("lookup")
    view.track.setCurrentIndex(view.track.findData("lookup"))  # forced past the greyed item
    view.input.setPlainText("Hello")
    assert not view.send() and "not available" in view.status.text()
    view.track.setCurrentIndex(view.track.findData("baseline"))
    first = type_and_send(qtbot, view, "Hello")
    second = type_and_send(qtbot, view, "And again")
    assert first.n_drafted == second.n_drafted == 0 and second.reused_tokens > 0


def test_reopened_conversation_answers_its_waiting_message_and_samples_queue(
    qtbot: Any, lane: Lane, tiny_dense: Path, tmp_path: Path
) -> None:
    view = make_view(qtbot, lane, tiny_dense, tmp_path)
    type_and_send(qtbot, view, "Hello there")
    # As if the app had stopped mid-turn: the message saved, its answer never written.
    conv = view.store.load(view.conv.id)
    conv.add_user("Are you still there?")
    view.store.save(conv)
    view.new_chat()
    assert not view.blocks
    view.open_conversation(view.store.load(conv.id))
    assert view.banner.isVisible() and view.banner.answer_button.isVisible()
    result = answer(qtbot, view, view.banner.answer_button.click)
    assert result is not None and not view.conv.waiting and len(view.blocks) == 4
    export = tmp_path / "chat.md"
    view.export_to(export)
    assert "## User (turn 2)" in export.read_text(encoding="utf-8")
    copy = view.import_from(view.store.path(view.conv.id))
    assert copy.id != conv.id and len(view.blocks) == 4
    # A sample conversation: its turns come into the message box one at a time.
    view.load_sample("code_edit.txt")
    assert not view.blocks and view.input.toPlainText().startswith("Here is a small Python")
    answer(qtbot, view, view.send)
    assert view.input.toPlainText().startswith("Now rename `rows` to `records`")
    assert isinstance(view.conv, Conversation) and view.conv.turns == 1
