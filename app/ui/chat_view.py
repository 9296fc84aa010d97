"""The Chat tab: a conversation with the chosen target, each turn run with the track chosen
for it, streaming with accepted and rejected drafts marked as in the Run tab's token view.

Construct it with the window's ``WorkbenchState`` (the chosen models, which tracks can run on
them, who holds the engine) and its ``Lane`` (every turn runs on the engine thread, through
the lane, like a run):

    chat = ChatView(state, lane, settings_for=..., store=None)

``settings_for(track)`` gives the ``RunSettings`` a turn of that track runs with (the Run
tab's track settings, say), or a one-line reason they are not valid; without it a turn uses
the defaults. ``store`` is where conversations are kept (default: the user's
``ConversationStore``). Signals: ``turn_started``, ``turn_ended(object)`` (the turn's
``RunResult``, or None when it failed).

What it does: user messages and answers as blocks (``chat_transcript``); the answer streams
into a token view; under each answer one quiet line: track, tokens/s, acceptance, speedup
against the last comparable baseline turn, prefill tokens (and how many the cache kept).
Enter sends, Shift+Enter a new line, Esc stops (the partial answer stays, marked).
Regenerate, Edit & resend (cuts the conversation there; the caches keep what is unchanged),
Copy, New chat; the track may change between turns. A turn that would not fit in the context
gets a banner (``chat_banner``): continue from the first turn that fits, or a new chat.
Conversations are saved as they go; Open, Export and Samples are ``chat_files``'.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.conversation import Conversation, Message, script_turns
from app.core.chat.render import DEFAULT_SYSTEM, system_note
from app.core.chat.store import (
    ConversationStore,
    export_json,
    export_markdown,
    import_json,
)
from app.core.events import RunResult, RunSettings
from app.core.labels import track_label
from app.core.tracks import Track, find_track, working
from app.ui.chat_banner import ChatBanner
from app.ui.chat_blocks import CHAT_STYLE, AnswerBlock, MessageBox, UserBlock
from app.ui.chat_files import ConversationMenus
from app.ui.chat_transcript import ChatTranscript
from app.ui.lane import Lane
from app.ui.pacer import Pacer
from app.ui.resources import read_text
from app.ui.run_controller import DRAIN_MS  # the Run tab's text rate: the window's cost stays small
from app.ui.state import ENGINE_BUSY, WorkbenchState
from app.ui.token_view import legend_html
from app.ui.worker import EventBuffer

if TYPE_CHECKING:  # the runner loads the engine: on the first turn, not with the window
    from app.core.chat.runner import ConversationFull

log = logging.getLogger("app.ui.chat")

JOB = "chat"  # what holds the engine in the workbench state while a turn runs
class ChatView(QWidget):
    """The Chat tab (see the module docstring for what the constructor takes)."""

    turn_started = Signal()
    turn_ended = Signal(object)  # RunResult, or None when the turn failed
    transcript: ChatTranscript  # made in _build, after the controls that refer to it

    def __init__(self, state: WorkbenchState, lane: Lane,
                 settings_for: Callable[[Track], RunSettings | str] | None = None,
                 store: ConversationStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state, self.lane, self.settings_for = state, lane, settings_for
        self._store = store
        self.conv = Conversation()
        self.buffer: EventBuffer | None = None
        self.cancel: threading.Event | None = None
        self.live: AnswerBlock | None = None
        self.full: ConversationFull | None = None
        self.queued: list[str] = []  # a sample's next user turns
        self.last_result: RunResult | None = None
        self.setStyleSheet(CHAT_STYLE)
        self._build()
        self.timer = QTimer(self)
        self.pacer = Pacer(DRAIN_MS)
        self.timer.timeout.connect(self.drain)
        state.availability_changed.connect(self._fill_tracks)
        state.models_changed.connect(self.update_enabled)
        state.busy_changed.connect(lambda _b: self.update_enabled())
        self._fill_tracks()
        self.update_enabled()

    # -- building -------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        top = QHBoxLayout()
        top.addWidget(QLabel("Track"))
        self.track = QComboBox()
        self.track.setToolTip("The track of the next turn (it may change from turn to turn)")
        self.track.currentIndexChanged.connect(lambda _i: self.update_enabled())
        top.addWidget(self.track, 1)
        self.show_rejected = QCheckBox("Show rejected")
        self.show_rejected.setChecked(True)
        self.show_rejected.setToolTip("Mark where drafts were rejected (hover a marker: its "
                                      "text)")
        self.show_rejected.toggled.connect(lambda on: self.transcript.set_show_rejected(on))
        top.addWidget(self.show_rejected)
        self.files = ConversationMenus(self)
        for b in self.files.buttons:
            top.addWidget(b)
        self.new_button = QPushButton("New chat")
        self.new_button.clicked.connect(self.new_chat)
        top.addWidget(self.new_button)
        lay.addLayout(top)

        sys_row = QHBoxLayout()
        sys_row.addWidget(QLabel("System"))
        self.system = QLineEdit(DEFAULT_SYSTEM)
        self.system.setToolTip("The system message of this conversation (the next turns use "
                               "it). Empty: none, and the model's template may insert its own.")
        self.system.textChanged.connect(self._system_changed)
        sys_row.addWidget(self.system, 1)
        lay.addLayout(sys_row)
        self.system_hint = QLabel("")
        self.system_hint.setObjectName("Hint")
        self.system_hint.setWordWrap(True)
        lay.addWidget(self.system_hint)
        self.legend = QLabel(legend_html())
        self.legend.setObjectName("Hint")
        self.legend.setWordWrap(True)
        lay.addWidget(self.legend)

        self.transcript = ChatTranscript(self.edit_and_resend, self.regenerate)
        lay.addWidget(self.transcript, 1)

        self.banner = ChatBanner()
        self.banner.trim_button.clicked.connect(self.continue_trimmed)
        self.banner.answer_button.clicked.connect(self.start_turn)
        self.banner.new_button.clicked.connect(self.new_chat)
        lay.addWidget(self.banner)

        row = QHBoxLayout()
        self.input = MessageBox()
        self.input.setPlaceholderText("Message (Enter sends, Shift+Enter: new line, Esc stops "
                                      "the answer)")
        self.input.setMaximumHeight(110)
        self.input.send.connect(self.send)
        row.addWidget(self.input, 1)
        col = QVBoxLayout()
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("RunButton")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the answer (Esc); the part written stays")
        self.stop_button.clicked.connect(self.stop)
        col.addWidget(self.send_button)
        col.addWidget(self.stop_button)
        row.addLayout(col)
        lay.addLayout(row)
        self.status = QLabel("")
        self.status.setObjectName("Reason")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        esc.activated.connect(self.stop)
        self._system_changed()

    # -- what a turn needs ----------------------------------------------------------------
    @property
    def store(self) -> ConversationStore:
        if self._store is None:
            self._store = ConversationStore()
        return self._store

    @property
    def running(self) -> bool:
        return self.cancel is not None

    def selected_track(self) -> Track:
        track = find_track(str(self.track.currentData() or "baseline"))
        return track if track is not None else working()[0]

    def set_track(self, track_id: str) -> bool:
        """Choose the track of the next turn; False if it is not offered or cannot run."""
        i = self.track.findData(track_id)
        if i < 0 or not self.state.available(track_id):
            return False
        self.track.setCurrentIndex(i)
        return True

    def _fill_tracks(self) -> None:
        current = self.track.currentData() or "baseline"
        self.track.blockSignals(True)
        self.track.clear()
        model = self.track.model()
        for t in working():
            self.track.addItem(track_label(t.id), t.id)
            why = self.state.reasons(t)
            item = model.item(self.track.count() - 1) if hasattr(model, "item") else None
            if why is not None and item is not None:
                # Speculation the core refuses (an SSM target, no draft model) is offered
                # greyed, with the core's reason.
                item.setEnabled(False)
                item.setToolTip(why[1])
        i = self.track.findData(current)
        if i < 0 or not self.state.available(current):
            i = self.track.findData("baseline")
        self.track.setCurrentIndex(max(0, i))
        self.track.blockSignals(False)
        self.update_enabled()

    def settings(self) -> RunSettings | str:
        track = self.selected_track()
        if self.settings_for is not None:
            return self.settings_for(track)
        return RunSettings(track=track.id)

    def problem(self) -> str | None:
        """Why a turn cannot start now, or None."""
        if self.state.busy:
            return ENGINE_BUSY
        if self.state.target_path is None or self.state.target_info is None:
            return "Choose a target model first (it must be readable)."
        track = self.selected_track()
        why = self.state.reasons(track)
        if why is not None:
            return f"{track.label} is not available for these models: {why[1]}"
        s = self.settings()
        return s if isinstance(s, str) else None

    def update_enabled(self) -> None:
        why = self.problem()
        self.send_button.setEnabled(not self.running and why is None)
        self.stop_button.setEnabled(self.running)
        self.track.setEnabled(not self.running)
        self.new_button.setEnabled(not self.running)
        self.files.open_button.setEnabled(not self.running)
        self.banner.answer_button.setEnabled(not self.running and why is None)
        for block in self.blocks:
            if isinstance(block, UserBlock):
                block.edit_button.setEnabled(not self.running and block.index >= self.conv.start)
            else:
                block.regen_button.setEnabled(not self.running and why is None)
        self.status.setText("" if self.running or why is None or not self.input.toPlainText()
                            else why)

    # -- the transcript -------------------------------------------------------------------
    @property
    def blocks(self) -> list[UserBlock | AnswerBlock]:
        return self.transcript.blocks

    def rebuild(self) -> None:
        """Show ``conv`` from scratch (after opening, editing, a new chat)."""
        self.transcript.show_conversation(self.conv, self.show_rejected.isChecked())
        self.system.blockSignals(True)
        self.system.setText(self.conv.system if self.conv.system is not None else DEFAULT_SYSTEM)
        self.system.blockSignals(False)
        self._system_changed()
        self._waiting_banner()
        self.update_enabled()

    def _add_block(self, index: int, msg: Message) -> UserBlock | AnswerBlock:
        return self.transcript.add(self.conv, index, msg, self.show_rejected.isChecked())

    def _last_regen(self) -> None:
        self.transcript.show_regenerate(self.conv.waiting)

    def _system_changed(self) -> None:
        text = self.system.text()
        self.conv.system = None if text == DEFAULT_SYSTEM else text
        info = self.state.target_info
        self.system_hint.setText(system_note(info, self.conv.system) if info is not None
                                 else "")

    # -- sending ----------------------------------------------------------------------------
    def send(self) -> bool:
        """Send the message box's text (Enter); False (and why, below) if it cannot go."""
        text = self.input.toPlainText()
        if self.running or not text.strip():
            return False
        why = self.problem()
        if why is not None:
            self.status.setText(why)
            return False
        if self.conv.waiting:  # a reopened conversation: its last message first
            self.status.setText("The last message has no answer yet: answer it first.")
            return False
        self.conv.add_user(text)
        self.input.clear()
        self._add_block(len(self.conv.messages) - 1, self.conv.messages[-1])
        self._last_regen()
        self._save()
        return self.start_turn()

    def regenerate(self) -> bool:
        if self.running or not self.conv.messages or self.conv.messages[-1].role != "assistant":
            return False
        self.conv.regenerate()
        self.transcript.remove(self.blocks[-1])
        return self.start_turn()

    def edit_and_resend(self, index: int, text: str) -> bool:
        if self.running or not text.strip():
            return False
        try:
            self.conv.edit(index, text)
        except ValueError as exc:
            self.status.setText(str(exc))
            return False
        self.rebuild()
        self._save()
        return self.start_turn()

    def start_turn(self) -> bool:
        """Answer the waiting message on the engine lane."""
        why = self.problem()
        if why is not None or self.running or not self.conv.waiting:
            if why:
                self.status.setText(why)
            return False
        settings = self.settings()
        if isinstance(settings, str) or not self.state.claim(JOB):
            return False
        self.banner.hide()
        self.full = None
        target, draft = self.state.target_path, self.state.draft_path
        assert target is not None
        track = self.selected_track()
        draft = draft if track.needs_draft_model else None
        snapshot = self.conv.snapshot()
        buffer = self.buffer = EventBuffer()
        cancel = self.cancel = threading.Event()
        live = self._add_block(len(self.conv.messages), Message("assistant", ""))
        assert isinstance(live, AnswerBlock)
        self.live = live
        live.regen_button.hide()
        live.head.setText(f"Assistant · {track_label(track.id)} · answering…")

        def job(session: Any, c: threading.Event, _report: Any) -> RunResult | ConversationFull:
            from app.core.chat.runner import ConversationFull, run_turn

            try:
                return run_turn(session, snapshot, target, draft, settings, buffer.put, c)
            except ConversationFull as full:
                return full  # not a failure: the view offers the ways out

        self.lane.submit(job, cancel=cancel, done=lambda out: self._ended(out, target, draft),
                         error=self._failed)
        self.pacer.begin(self.timer)
        self.update_enabled()
        self.status.setText("")
        self.turn_started.emit()
        self.transcript.scroll_to_end()
        return True

    def stop(self) -> bool:
        """Stop the answer at its next step (Esc); the part written stays."""
        if self.cancel is None:
            return False
        self.cancel.set()
        return True

    def drain(self) -> None:
        if self.buffer is None or self.live is None:
            return
        self.pacer.pace(self.timer)
        events = self.buffer.take()
        if events:
            following = self.transcript.following()
            self.live.tokens.append(events)
            if following:
                self.transcript.scroll_to_end()

    def _finish(self) -> AnswerBlock | None:
        self.drain()
        self.timer.stop()
        live, self.live = self.live, None
        self.buffer = self.cancel = None
        self.state.release(JOB)
        return live

    def _ended(self, out: RunResult | ConversationFull, target: str, draft: str | None) -> None:
        live = self._finish()
        if not isinstance(out, RunResult):  # ConversationFull: the ways out, not a failure
            self.transcript.remove(live)
            self._show_full(out)
            self.update_enabled()
            self.turn_ended.emit(None)
            return
        self.conv.add_answer(out, target, draft)
        self.last_result = out
        if live is not None:
            live.head.setText("Assistant")
            live.show_result(self.conv, len(self.conv.messages) - 1, out)
        self._last_regen()
        self._save()
        if self.queued and out.stop_reason != "cancelled":
            self.input.setPlainText(self.queued.pop(0))
        self.update_enabled()
        self.turn_ended.emit(out)

    def _failed(self, kind: str, message: str) -> None:
        live = self._finish()
        self.transcript.remove(live)
        # The message was not answered: it goes back into the message box to change or
        # send again (with another track, say).
        if self.conv.waiting:
            text = self.conv.messages[-1].text
            self.conv.cut(len(self.conv.messages) - 1)
            self.transcript.remove(self.blocks[-1])
            if not self.input.toPlainText():
                self.input.setPlainText(text)
            self._save()
        self._last_regen()
        self.update_enabled()  # first: it sets the status line, which must say what failed
        self.status.setText(f"{'Refused' if kind == 'refused' else 'Failed'}: {message}")
        self.turn_ended.emit(None)

    # -- context full ---------------------------------------------------------------------
    def _show_full(self, full: ConversationFull) -> None:
        self.full = full
        self.banner.show_full(full)

    def continue_trimmed(self) -> bool:
        if self.full is None or self.running:
            return False
        from app.core.chat.runner import continue_trimmed

        continue_trimmed(self.conv, self.full)
        self.full = None
        self.rebuild()
        self._save()
        return self.start_turn()

    def _waiting_banner(self) -> None:
        """A reopened conversation whose last message has no answer (the app stopped)."""
        if self.conv.waiting and not self.running and self.full is None:
            self.banner.show_waiting()
        elif self.full is None:
            self.banner.hide()

    # -- conversations ----------------------------------------------------------------------
    def new_chat(self) -> None:
        if self.running:
            return
        system = self.conv.system
        self.conv = Conversation(system=system)
        self.full = None
        self.queued = []
        self.rebuild()

    def open_conversation(self, conv: Conversation) -> None:
        if self.running:
            return
        self.conv = conv
        self.full = None
        self.queued = []
        self.rebuild()
        self.transcript.scroll_to_end()

    def load_sample(self, file: str) -> None:
        turns = script_turns(read_text("conversations", file))
        if not turns or self.running:
            return
        self.new_chat()
        self.input.setPlainText(turns[0])
        self.queued = turns[1:]

    def _save(self) -> None:
        try:
            self.store.save(self.conv)
        except OSError as exc:
            self.status.setText(f"The conversation could not be saved: {exc}")

    def export_to(self, path: str | Path) -> None:
        """Write the conversation: Markdown for ``.md``, else JSON."""
        p = Path(path)
        text = export_markdown(self.conv) if p.suffix.lower() == ".md" else export_json(self.conv)
        p.write_text(text, encoding="utf-8")

    def import_from(self, path: str | Path) -> Conversation:
        conv = import_json(Path(path).read_text(encoding="utf-8"), self.store)
        self.open_conversation(conv)
        return conv
