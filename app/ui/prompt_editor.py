"""The prompt: text, the chat-template switch with its system message, sample prompts of
four kinds, and the Run / Stop buttons (Ctrl+Enter runs, Esc stops).

The system message box starts with the default message (``DEFAULT_SYSTEM``, see
``app.core.chat.render``); emptied, a run has no system message at all (the model's template
may insert its own: the line under the box says what this model does, ``system_note``).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QResizeEvent
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

from app.core.chat.render import DEFAULT_SYSTEM, system_note
from app.ui.resources import SAMPLE_PROMPTS

NO_SYSTEM = "no system message (the model's template may insert its own)"


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
        layout.addLayout(top)

        # The chat switch beside the system message it enables: one short row, so the
        # prompt column stays narrow enough for a laptop screen.
        chat_row = QHBoxLayout()
        self.chat = QCheckBox("chat template")
        self.chat.setToolTip("wrap the prompt as a user message in the model's chat template")
        self.chat.toggled.connect(self._chat_toggled)
        chat_row.addWidget(self.chat)
        self.system = QLineEdit(DEFAULT_SYSTEM)
        self.system.setPlaceholderText(NO_SYSTEM)
        self.system.textChanged.connect(self._show_system_note)
        chat_row.addWidget(self.system, 1)
        layout.addLayout(chat_row)
        # What the system message is for this model, when that is worth a word.
        self.system_note = QLabel("")
        self.system_note.setObjectName("Hint")
        self.system_note.setWordWrap(True)
        self.system_note.hide()
        layout.addWidget(self.system_note)
        self._info: object | None = None

        self.text.setPlaceholderText("Type a prompt, or pick one of the sample prompts.")
        self.text.setTabChangesFocus(True)
        layout.addWidget(self.text, 1)

        bottom = QHBoxLayout()
        self.hint = QLabel("Ctrl+Enter runs · Esc stops")
        self.hint.setObjectName("Hint")
        self.hint.setMinimumWidth(1)  # it hides rather than widen the column (resizeEvent)
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

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        # The keyboard hint only where it fits beside the buttons (the buttons' tooltips
        # say it too): on a narrow column it would wrap and squeeze the prompt.
        need = (self.hint.sizeHint().width() + self.run_button.sizeHint().width()
                + self.stop_button.sizeHint().width() + 24)
        self.hint.setVisible(event.size().width() >= need)

    def _chat_toggled(self, on: bool) -> None:
        self.system.setEnabled(on and self._has_template)
        self._show_system_note()

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

    def system_setting(self) -> str | None:
        """The run's ``RunSettings.system``: None for the default message (or no chat
        template in use), "" for none (an emptied box), else the text."""
        if not self.use_chat():
            return None
        return self._box_setting()

    def _box_setting(self) -> str | None:
        text = self.system.text().strip()
        return None if text == DEFAULT_SYSTEM else text

    def set_system_setting(self, system: str | None) -> None:
        """Show a run's ``system`` (None: the default message) in the box."""
        self.system.setText(DEFAULT_SYSTEM if system is None else system)

    def show_model(self, info: object | None) -> None:
        """The target whose template the note under the system message speaks of."""
        self._info = info
        self._show_system_note()

    def _show_system_note(self) -> None:
        info = self._info
        note = ""
        if info is not None and self.use_chat():
            note = system_note(info, self._box_setting())
        # The default message, or one as written, needs no line of its own (the box's
        # tooltip says it all); no system message at all does: the model may differ.
        quiet = not note or note.startswith("the default") or note == "system message as written"
        self.system_note.setText(f"System: {note}" if not quiet else "")
        self.system_note.setVisible(not quiet)
        tip = (f"the system message of the chat template (default: \"{DEFAULT_SYSTEM}\"); "
               f"empty: {NO_SYSTEM}")
        self.system.setToolTip(f"{tip}\n\nFor this model: {note}" if note else tip)

    def set_running(self, running: bool, can_run: bool = True) -> None:
        self.run_button.setEnabled(not running and can_run)
        self.stop_button.setEnabled(running)
        self.text.setReadOnly(running)
        self.samples.setEnabled(not running)
