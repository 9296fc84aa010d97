"""The Chat tab's banner above the message box: the ways out when the next turn does not
fit in the context (continue from the first turn that fits, or a new chat), and the way on
for a reopened conversation whose last message was never answered. The view connects the
buttons (``trim_button``, ``answer_button``, ``new_button``) to what they do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

if TYPE_CHECKING:  # the runner loads the engine: on the first turn, not with the window
    from app.core.chat.runner import ConversationFull


class ChatBanner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        self.setProperty("level", "refused")
        row = QHBoxLayout(self)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        row.addWidget(self.text, 1)
        self.trim_button = QPushButton("Continue from a trimmed history")
        self.answer_button = QPushButton("Answer it")
        self.new_button = QPushButton("New chat")
        for w in (self.trim_button, self.answer_button, self.new_button):
            row.addWidget(w)
        self.hide()

    def show_full(self, full: ConversationFull) -> None:
        """The turn needs more than the context holds: say so, offer the first turn that
        fits (if one does) or a new chat."""
        self.text.setText(f"Context full: this turn needs {full.needed} tokens with room for "
                          f"the answer; the context holds {full.n_ctx}.")
        self.trim_button.setVisible(full.fits_turn is not None)
        if full.fits_turn is not None:
            self.trim_button.setText(f"Continue from turn {full.fits_turn}")
            self.trim_button.setToolTip("The turns before it stay here, greyed, but leave the "
                                        "model's context; the rest is evaluated again")
        self.answer_button.hide()
        self.show()

    def show_waiting(self) -> None:
        """A reopened conversation whose last message has no answer (the app stopped)."""
        self.text.setText("This conversation stopped before its last message was answered.")
        self.trim_button.hide()
        self.answer_button.show()
        self.show()
