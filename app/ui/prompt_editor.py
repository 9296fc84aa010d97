"""The prompt: text, the chat-template switch with an optional system message, sample
prompts of four kinds, and the Run / Stop buttons (Ctrl+Enter runs, Esc stops)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.resources import SAMPLE_PROMPTS


class PromptEditor(QWidget):
    run_requested = Signal()
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        title = QLabel("Prompt")
        title.setObjectName("SectionTitle")
        top.addWidget(title)
        self.samples = QToolButton()
        self.samples.setText("Sample prompts")
        self.samples.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.text = QPlainTextEdit()
        menu = QMenu(self.samples)
        for sample in SAMPLE_PROMPTS:
            action = QAction(sample.title, menu)
            action.triggered.connect(lambda _=False, s=sample: self.text.setPlainText(s.text()))
            menu.addAction(action)
        self.samples.setMenu(menu)
        top.addWidget(self.samples)
        top.addStretch(1)
        self.chat = QCheckBox("use the model's chat template")
        self.chat.setToolTip("wrap the prompt as a user message in the model's chat template")
        self.chat.toggled.connect(self._chat_toggled)
        top.addWidget(self.chat)
        layout.addLayout(top)

        self.system = QLineEdit()
        self.system.setPlaceholderText("optional system message (chat template only)")
        layout.addWidget(self.system)

        self.text.setPlaceholderText("Type a prompt, or pick one of the sample prompts.")
        self.text.setTabChangesFocus(True)
        layout.addWidget(self.text, 1)

        bottom = QHBoxLayout()
        self.hint = QLabel("Ctrl+Enter runs · Esc stops")
        self.hint.setObjectName("Hint")
        bottom.addWidget(self.hint)
        bottom.addStretch(1)
        self.run_button = QPushButton("▶ Run")
        self.run_button.setObjectName("RunButton")
        self.run_button.setToolTip("Run the selected track on this prompt (Ctrl+Enter)")
        self.run_button.clicked.connect(self.run_requested)
        self.stop_button = QPushButton("■ Stop")
        self.stop_button.setToolTip("Stop the run; the partial answer stays (Esc)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop_requested)
        bottom.addWidget(self.run_button)
        bottom.addWidget(self.stop_button)
        layout.addLayout(bottom)
        self._has_template = False
        self._restored_chat: bool | None = None
        self._chat_toggled(False)

    def _chat_toggled(self, on: bool) -> None:
        self.system.setEnabled(on and self._has_template)

    def restore_chat_choice(self, chat: bool | None) -> None:
        """The user's last chat-template choice, applied when the next target is read."""
        self._restored_chat = chat

    def set_template_available(self, available: bool, default_on: bool | None = None) -> None:
        """On when the model has a chat template (unless the user's choice, given or
        restored, says otherwise)."""
        if default_on is None:
            default_on, self._restored_chat = self._restored_chat, None
        self._has_template = available
        self.chat.setEnabled(available)
        if not available:
            self.chat.setChecked(False)
            self.chat.setToolTip("this model has no chat template: the prompt goes in as is")
        else:
            self.chat.setChecked(True if default_on is None else default_on)
            self.chat.setToolTip("wrap the prompt as a user message in the model's chat template")
        self._chat_toggled(self.chat.isChecked())

    def prompt(self) -> str:
        return self.text.toPlainText()

    def use_chat(self) -> bool:
        return self.chat.isChecked() and self._has_template

    def system_message(self) -> str:
        return self.system.text().strip() if self.use_chat() else ""

    def set_running(self, running: bool, can_run: bool = True) -> None:
        self.run_button.setEnabled(not running and can_run)
        self.stop_button.setEnabled(running)
        self.text.setReadOnly(running)
        self.samples.setEnabled(not running)
