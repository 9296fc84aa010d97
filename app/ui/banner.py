"""A one-message strip across the window: the SSM rule, errors, refusals, hints.

A message may name its cause (``show_message(..., cause="model")``); ``clear(cause)`` then
hides it once that cause is gone, and leaves a message of another cause alone. The error
banner follows the workbench state's model error with ``show_model_errors``: shown while a
chosen model cannot be read, gone as soon as the user chooses one that can.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

if TYPE_CHECKING:
    from app.ui.state import WorkbenchState

MODEL_ERROR = "model"  # the cause of a message about a chosen model that cannot be read
ICONS = {"ssm": "⚠", "error": "✖", "refused": "⚠", "info": "ℹ"}


class Banner(QFrame):
    """Hidden until ``show_message``; the close button hides it again (if closable)."""

    action_clicked = Signal()

    def __init__(self, closable: bool = True, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Banner")
        self.setProperty("level", "info")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self.icon = QLabel()
        self.icon.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton()
        self.action.hide()
        self.action.clicked.connect(self.action_clicked)
        layout.addWidget(self.icon)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.action, 0, Qt.AlignmentFlag.AlignTop)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.hide)
        self.close_button.setVisible(closable)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self.cause = ""
        self.hide()

    def show_message(self, level: str, text: str, action: str | None = None,
                     cause: str = "", plain: bool = False) -> None:
        """``text`` is rich text unless ``plain`` (a message made of file names and paths)."""
        self.cause = cause
        self.setProperty("level", level)
        self.icon.setText(ICONS.get(level, ""))
        self.text.setTextFormat(Qt.TextFormat.PlainText if plain else Qt.TextFormat.AutoText)
        self.text.setText(text)
        self.action.setVisible(bool(action))
        self.action.setText(action or "")
        # Re-polish so that the style sheet picks up the new "level" property.
        self.style().unpolish(self)
        self.style().polish(self)
        self.show()

    def message(self) -> str:
        return self.text.text() if self.isVisible() else ""

    def clear(self, cause: str) -> None:
        """Hide the message if ``cause`` put it there (its cause is gone)."""
        if cause and self.cause == cause:
            self.cause = ""
            self.hide()

    def show_model_errors(self, state: WorkbenchState) -> None:
        """Show why a chosen model cannot be read, until it can or another is chosen."""
        def show(message: str) -> None:
            if message:
                self.show_message("error", message, cause=MODEL_ERROR, plain=True)
            else:
                self.clear(MODEL_ERROR)

        state.model_error_changed.connect(show)
        show(state.model_error or "")


def ssm_banner_text(target: Any | None, draft: Any | None) -> str:
    why = "the state of a recurrent model cannot be rolled back after a rejected draft"
    if target is not None and not target.speculation_allowed:
        kind = "recurrent (state-space)" if target.is_recurrent else "hybrid recurrent/attention"
        return (f"<b>Speculation is off: {target.file_name} is a {kind} model</b> "
                f"({target.architecture}), and {why}. The draft picker, K, p-min, the n-gram "
                "settings and the draft and lookup tracks are disabled. What remains: "
                "<b>baseline</b> and <b>MoE expert reduction</b> (for models with experts).")
    if draft is not None and not draft.speculation_allowed:
        kind = "recurrent (state-space)" if draft.is_recurrent else "hybrid recurrent/attention"
        return (f"<b>The draft {draft.file_name} is a {kind} model</b> ({draft.architecture}): "
                f"{why}, so it cannot serve as a draft and Track 1 with its combinations is "
                "off. What remains: baseline, prompt lookup and MoE expert reduction; or "
                "choose another draft.")
    return ""
