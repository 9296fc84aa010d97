"""The Chat tab's transcript: a scrolling column of message blocks (``chat_blocks``), the
hint shown while it is empty, and the line marking where the model's context starts now.

``ChatView`` owns the conversation and runs the turns; this widget only shows messages:

    transcript = ChatTranscript(resend=view.edit_and_resend, regenerate=view.regenerate)
    transcript.show_conversation(conv, show_rejected=True)
    block = transcript.add(conv, index, message, show_rejected=True)
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QVBoxLayout, QWidget

from app.core.chat.conversation import Conversation, Message
from app.ui.chat_blocks import AnswerBlock, UserBlock

Block = UserBlock | AnswerBlock
# Pixels from the bottom within which the reader counts as following the answer as it grows.
FOLLOWING_PX = 8


class ChatTranscript(QScrollArea):
    def __init__(self, resend: Callable[[int, str], object],
                 regenerate: Callable[[], object], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._resend, self._regenerate = resend, regenerate
        self.blocks: list[Block] = []
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        inner = QWidget()
        self.column = QVBoxLayout(inner)
        self.column.setContentsMargins(4, 4, 4, 4)
        self.column.setSpacing(6)
        self.empty = QLabel("Type a message below and press Enter. Each answer shows which "
                            "tokens came from drafts; the line under it what the track bought.")
        self.empty.setObjectName("Hint")
        self.empty.setWordWrap(True)
        self.column.addWidget(self.empty)
        self.boundary = QLabel("")
        self.boundary.setObjectName("Hint")
        self.boundary.setWordWrap(True)
        self.boundary.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.boundary.hide()
        self.column.addStretch(1)  # blocks go above it: a short transcript sits at the top
        self.setWidget(inner)

    def show_conversation(self, conv: Conversation, show_rejected: bool) -> None:
        """Every message of ``conv`` from scratch (after opening, editing, a new chat)."""
        for block in self.blocks:
            self.column.removeWidget(block)
            block.deleteLater()
        self.blocks.clear()
        self.boundary.hide()
        for i, msg in enumerate(conv.messages):
            if i == conv.start and i:
                # Where the model's context starts now, and why (the conversation's note).
                note = next((n for n in reversed(conv.notes) if "context" in n),
                            "the turns above are no longer in the model's context")
                self.boundary.setText(f"— {note} —")
                self.column.insertWidget(self.column.count() - 1, self.boundary)
                self.boundary.show()
            self.add(conv, i, msg, show_rejected)
        self.empty.setVisible(not conv.messages)
        self.mark_outside(conv.start)
        self.show_regenerate(conv.waiting)

    def add(self, conv: Conversation, index: int, msg: Message, show_rejected: bool) -> Block:
        """A block for message ``index`` at the end (an empty answer is the live one)."""
        block: Block
        if msg.role == "user":
            block = UserBlock(self._resend, index, msg, conv.turn_of(index))
        else:
            block = AnswerBlock(self._regenerate)
            block.tokens.show_rejected.setChecked(show_rejected)
            if msg.run is not None:
                block.tokens.append(msg.run.events)
                block.show_result(conv, index, msg.run)
            else:
                block.tokens.add_note(msg.text)
        self.column.insertWidget(self.column.count() - 1, block)
        self.blocks.append(block)
        self.empty.hide()
        return block

    def remove(self, block: Block | None) -> None:
        if block is not None and block in self.blocks:
            self.blocks.remove(block)
            self.column.removeWidget(block)
            block.deleteLater()

    def mark_outside(self, start: int) -> None:
        """Messages before ``start`` (left out of the model's context) are greyed."""
        for i, block in enumerate(self.blocks):
            outside = i < start
            block.setProperty("outside", outside)
            block.setToolTip("No longer in the model's context (the context was full)"
                             if outside else "")
            block.setEnabled(not outside)

    def show_regenerate(self, waiting: bool) -> None:
        """Regenerate only under the last answer, and not while a message waits."""
        answers = [b for b in self.blocks if isinstance(b, AnswerBlock)]
        for b in answers:
            b.regen_button.setVisible(b is answers[-1] and not waiting)

    def set_show_rejected(self, on: bool) -> None:
        for block in self.blocks:
            if isinstance(block, AnswerBlock):
                block.tokens.show_rejected.setChecked(on)

    def following(self) -> bool:
        """Is the reader at the bottom (so a growing answer should keep it in view)?"""
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - FOLLOWING_PX

    def scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        # After the layout has taken the new height in: maximum() is stale until then.
        QTimer.singleShot(0, lambda: bar.setValue(bar.maximum()))
