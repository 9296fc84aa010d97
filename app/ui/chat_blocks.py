"""The Chat tab's pieces: the message box (Enter sends, Shift+Enter a new line), a user
message block (Edit & resend, Copy) and an answer block (a token view, Regenerate, Copy and
the turn's quiet stats line). ``chat_view.ChatView`` lays them out and runs the turns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.conversation import Conversation, Message, stats_line, turn_stats
from app.core.events import RunResult
from app.core.labels import track_label
from app.ui.token_view import TokenView

CHAT_STYLE = """
QFrame#ChatUser { background: palette(alternate-base); border: 1px solid palette(mid);
                  border-radius: 8px; }
QFrame#ChatAnswer { border: none; }
QFrame#ChatAnswer[outside="true"], QFrame#ChatUser[outside="true"] { color: palette(mid); }
"""


class MessageBox(QPlainTextEdit):
    """Enter sends, Shift+Enter starts a new line."""

    send = Signal()

    def keyPressEvent(self, e: QKeyEvent) -> None:
        if e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                e.modifiers() & Qt.KeyboardModifier.ShiftModifier):
            self.send.emit()
            return
        super().keyPressEvent(e)


def tool_button(text: str, tip: str, slot: Callable[[], Any]) -> QToolButton:
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setAutoRaise(True)
    b.clicked.connect(slot)
    return b


class UserBlock(QFrame):
    """One user message: its text, Edit & resend, Copy."""

    def __init__(self, resend: Callable[[int, str], object], index: int, msg: Message,
                 turn: int) -> None:
        super().__init__()
        # The view's edit_and_resend: a callback, so the blocks need not know the view.
        self.resend_text, self.index = resend, index
        self.setObjectName("ChatUser")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        top = QHBoxLayout()
        head = QLabel(f"You · turn {turn}")
        head.setObjectName("SectionTitle")
        top.addWidget(head)
        top.addStretch(1)
        self.edit_button = tool_button("Edit && resend", "Change this message and answer it again "
                                 "(the conversation is cut here)", self.start_edit)
        self.copy_button = tool_button("Copy", "Copy this message",
                                 lambda: QGuiApplication.clipboard().setText(msg.text))
        top.addWidget(self.edit_button)
        top.addWidget(self.copy_button)
        lay.addLayout(top)
        self.text = QLabel(msg.text)
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.text)
        self.editor: QPlainTextEdit | None = None
        self._edit_row: QWidget | None = None

    def start_edit(self) -> None:
        if self.editor is not None:
            return
        self.editor = QPlainTextEdit(self.text.text())
        self.editor.setMaximumHeight(160)
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addStretch(1)
        resend = QPushButton("Resend")
        resend.clicked.connect(self.resend)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.cancel_edit)
        h.addWidget(resend)
        h.addWidget(cancel)
        self.text.hide()
        lay = self.layout()
        assert isinstance(lay, QVBoxLayout)
        lay.addWidget(self.editor)
        lay.addWidget(row)
        self._edit_row = row
        self.editor.setFocus()

    def cancel_edit(self) -> None:
        for w in (self.editor, self._edit_row):
            if w is not None:
                w.deleteLater()
        self.editor = self._edit_row = None
        self.text.show()

    def resend(self) -> None:
        if self.editor is not None:
            self.resend_text(self.index, self.editor.toPlainText())


class AnswerBlock(QFrame):
    """One answer: its tokens (a token view without its own header), the figures line,
    Copy and (on the last answer) Regenerate."""

    def __init__(self, regenerate: Callable[[], object]) -> None:
        super().__init__()
        self.setObjectName("ChatAnswer")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 2, 8, 6)
        top = QHBoxLayout()
        self.head = QLabel("Assistant")
        self.head.setObjectName("SectionTitle")
        top.addWidget(self.head)
        top.addStretch(1)
        self.regen_button = tool_button("Regenerate", "Answer the last message again (with the "
                                  "track chosen now)", regenerate)
        self.copy_button = tool_button("Copy", "Copy this answer (without rejected drafts)",
                                 self.copy)
        top.addWidget(self.regen_button)
        top.addWidget(self.copy_button)
        lay.addLayout(top)
        self.tokens = TokenView()
        # The chat shows one legend and one "show rejected" switch for every answer.
        for name in ("legend", "options", "copy_button"):
            w = getattr(self.tokens, name, None)
            if isinstance(w, QWidget):
                w.hide()
        for label in self.tokens.findChildren(QLabel):
            if label.objectName() == "SectionTitle":
                label.hide()
        self.tokens.edit.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.tokens.edit.setCenterOnScroll(False)
        self.tokens.edit.setPlaceholderText("")
        self.tokens.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        lay.addWidget(self.tokens)
        self.stats = QLabel("")
        self.stats.setObjectName("Hint")
        self.stats.setWordWrap(True)
        lay.addWidget(self.stats)
        self.tokens.edit.document().contentsChanged.connect(self.fit)
        # Refit after a resize (wrapping changes with the width), once the layout settled;
        # the timer goes with the block.
        self._refit = QTimer(self)
        self._refit.setSingleShot(True)
        self._refit.setInterval(0)
        self._refit.timeout.connect(self.fit)
        self.fit()

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.tokens.answer_text())

    def fit(self) -> None:
        """As tall as the answer (the transcript scrolls, not each answer)."""
        edit = self.tokens.edit
        height = 0.0
        block = edit.document().begin()
        while block.isValid():
            height += edit.blockBoundingRect(block).height()
            block = block.next()
        margins = edit.contentsMargins()
        want = int(height + 2 * edit.document().documentMargin() + margins.top()
                   + margins.bottom() + 4)
        want = max(want, edit.fontMetrics().lineSpacing() + 12)
        if edit.height() != want:
            edit.setFixedHeight(want)
            self.tokens.setFixedHeight(want)

    def resizeEvent(self, e: Any) -> None:
        super().resizeEvent(e)
        self._refit.start()

    def show_result(self, conv: Conversation, index: int, result: RunResult) -> None:
        st = turn_stats(conv, index)
        self.stats.setText(stats_line(st, track_label(result.track)))
        tips = [f"{result.n_generated} tokens, stopped: {result.stop_reason}",
                f"prompt {result.prompt_tokens} tokens: {result.prefill_tokens} evaluated, "
                f"{result.reused_tokens} kept in the cache from earlier turns",
                *result.notes]
        self.stats.setToolTip("\n".join(tips))
        if result.stop_reason == "cancelled":
            self.tokens.add_note("  ■ stopped — partial answer")
        elif result.stop_reason == "context_full":
            self.tokens.add_note("  ■ context full — the answer was cut")
