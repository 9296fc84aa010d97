"""The Chat tab's conversation files: the Samples, Open and Export menu buttons and their
dialogs. What they act on is the view's (``ChatView``: its conversation, store and status
line, ``load_sample``, ``open_conversation``, ``import_from``, ``export_to``); errors go to
the view's status line, never into Qt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from PySide6.QtWidgets import QFileDialog, QLabel, QMenu, QToolButton

from app.core.chat.conversation import Conversation
from app.core.chat.store import ConversationStore
from app.core.labels import track_label


class ChatFiles(Protocol):
    """What the menus act on (``ChatView``): named here so this module needs not import it."""

    conv: Conversation
    status: QLabel

    @property
    def store(self) -> ConversationStore: ...

    def load_sample(self, file: str) -> None: ...

    def open_conversation(self, conv: Conversation) -> None: ...

    def import_from(self, path: str | Path) -> Conversation: ...

    def export_to(self, path: str | Path) -> None: ...


SAMPLE_CONVERSATIONS = (
    ("Code edit (four turns that edit one module: copying pays)", "code_edit.txt"),
    ("Document Q&A (questions about a note)", "document_qa.txt"),
    ("Plain chat (planning a trip)", "plain_chat.txt"),
)


def menu_button(text: str, tip: str, fill: Callable[[QMenu], None]) -> QToolButton:
    """A button whose menu ``fill`` builds anew each time it opens."""
    b = QToolButton()
    b.setText(text)
    b.setToolTip(tip)
    b.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(b)
    menu.aboutToShow.connect(lambda: fill(menu))
    b.setMenu(menu)
    return b


class ConversationMenus:
    """The three menu buttons of the Chat tab's top row (``buttons``)."""

    def __init__(self, view: ChatFiles) -> None:
        self.view = view
        self.samples_button = menu_button("Samples", "Load a sample conversation: its user "
                                          "turns come into the message box one by one",
                                          self._fill_samples)
        self.open_button = menu_button("Open", "Reopen a saved conversation, or import one "
                                       "exported as JSON", self._fill_open)
        self.export_button = menu_button("Export", "Write this conversation as JSON "
                                         "(re-importable) or Markdown", self._fill_export)
        self.buttons = (self.samples_button, self.open_button, self.export_button)

    def _fill_samples(self, menu: QMenu) -> None:
        menu.clear()
        for title, file in SAMPLE_CONVERSATIONS:
            act = menu.addAction(title)
            act.triggered.connect(lambda _c=False, f=file: self.view.load_sample(f))

    def _fill_open(self, menu: QMenu) -> None:
        menu.clear()
        listed = self.view.store.list()[:30]
        for s in listed:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.updated))
            tracks = ", ".join(track_label(t) for t in s.tracks) or "no answer"
            waiting = " · waiting" if s.waiting else ""
            act = menu.addAction(f"{s.title or s.id} — {s.turns} turns · {when}{waiting}")
            act.setToolTip(f"{s.id}\n{tracks}")
            act.triggered.connect(lambda _c=False, i=s.id: self._open_id(i))
        if not listed:
            menu.addAction("No saved conversations").setEnabled(False)
        menu.addSeparator()
        menu.addAction("Import JSON…").triggered.connect(self._import_dialog)

    def _open_id(self, conv_id: str) -> None:
        try:
            self.view.open_conversation(self.view.store.load(conv_id))
        except Exception as exc:  # a damaged file: said, not raised into Qt
            self.view.status.setText(f"Could not open it: {exc}")

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.open_button, "Import a conversation", "",
                                              "Conversation (*.json)")
        if path:
            try:
                self.view.import_from(path)
            except Exception as exc:
                self.view.status.setText(f"Could not import it: {exc}")

    def _fill_export(self, menu: QMenu) -> None:
        menu.clear()
        for label, suffix in (("JSON (re-importable)…", ".json"), ("Markdown…", ".md")):
            act = menu.addAction(label)
            act.setEnabled(bool(self.view.conv.messages))
            act.triggered.connect(lambda _c=False, s=suffix: self._export_dialog(s))

    def _export_dialog(self, suffix: str) -> None:
        name = (self.view.conv.title or "conversation")[:40].replace("/", "-") + suffix
        path, _ = QFileDialog.getSaveFileName(self.export_button, "Export the conversation",
                                              name)
        if path:
            try:
                self.view.export_to(path)
            except OSError as exc:
                self.view.status.setText(f"Not written: {exc}")
