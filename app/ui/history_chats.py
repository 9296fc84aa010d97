"""History's lower half: every saved conversation of the Chat tab, newest first, with its
turns and each turn's run, to reopen in Chat (and continue) or delete.

Conversations are read from their store (``ConversationStore``; its list caches summaries);
a conversation's turns are read when its row is first expanded. The panel above passes its
filters (``refresh``): the model filter applies to the target, the track filter to the
tracks answered with, the prompt filter to the title.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.conversation import Conversation, turn_stats
from app.core.chat.store import ConversationStore, ConversationSummary
from app.core.errors import DecodeLabError
from app.core.labels import field_label, setting_label, stop_label, track_label
from app.core.verdict import format_speedup
from app.ui.jobs import empty_state, fmt_rate, hint, when

ROLE = Qt.ItemDataRole.UserRole
CHAT_COLUMNS = ("When", "Conversation / turn", setting_label("track"),
                field_label("n_generated"), field_label("tokens_per_second"),
                field_label("acceptance_rate"), field_label("speedup"), "Prefill",
                field_label("stop_reason"), "Target")
CHAT_EMPTY = ("No conversations yet. Every chat of the Chat tab is kept here as it goes; "
              "select one to reopen it in Chat and continue.")


def _conversation_row(c: ConversationSummary) -> QTreeWidgetItem:
    title = c.title or c.id
    waiting = " · waiting for an answer" if c.waiting else ""
    item = QTreeWidgetItem([when(c.updated), f"{title} · {c.turns} turn{'s' * (c.turns != 1)}"
                            f"{waiting}", ", ".join(track_label(t) for t in c.tracks),
                            "", "", "", "", "", "", Path(c.target).name if c.target else ""])
    item.setData(0, ROLE, c.id)
    item.setToolTip(1, f"{title}\n{c.id}")
    item.setToolTip(9, c.target or "")
    font = item.font(1)
    font.setBold(True)
    item.setFont(1, font)
    # Its turns are read when it is first expanded.
    item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
    return item


def turn_rows(conv: Conversation) -> list[QTreeWidgetItem]:
    """One row per turn: the user's message, and its answer's run (track and figures)."""
    rows: list[QTreeWidgetItem] = []
    for i, msg in enumerate(conv.messages):
        if msg.role != "user":
            continue
        answer = conv.messages[i + 1] if i + 1 < len(conv.messages) else None
        text = " ".join(msg.text.split())
        cells = ["", f"Turn {conv.turn_of(i)}: {text[:120]}"] + [""] * 8
        if answer is not None and answer.run is not None:
            st, r = turn_stats(conv, i + 1), answer.run
            cells[2:9] = [
                track_label(r.track), str(r.n_generated), f"{r.tokens_per_second:.1f}",
                fmt_rate(r.acceptance_rate) if r.track != "baseline" else "",
                format_speedup(st.speedup) if st.speedup is not None else "",
                f"{r.prefill_tokens} ({r.reused_tokens} reused)", stop_label(r.stop_reason)]
        elif answer is None:
            cells[8] = "no answer yet"
        row = QTreeWidgetItem(cells)
        row.setToolTip(1, msg.text[:2000])
        if answer is not None:
            row.setToolTip(2, answer.text[:2000])
        for column in (3, 4, 5, 6):
            row.setTextAlignment(column, Qt.AlignmentFlag.AlignRight
                                 | Qt.AlignmentFlag.AlignVCenter)
        rows.append(row)
    return rows


class ConversationHistory(QWidget):
    conversation_requested = Signal(object)  # a saved Conversation, to continue in Chat
    error = Signal(str)

    def __init__(self, store: ConversationStore | None = None,
                 ask: Callable[[str], bool] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._conversations = store
        self._filters: tuple[str, str | None, str] = ("", None, "")  # the last refresh's
        self.ask = ask or (lambda _q: False)  # asked before deleting
        self._build()

    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        title = QLabel("Conversations")
        title.setObjectName("SectionTitle")
        row.addWidget(title)
        self.chat_open_button = QPushButton("Open in Chat")
        self.chat_open_button.setToolTip("Reopen the conversation in the Chat tab to read or "
                                         "continue it (its context is evaluated again)")
        self.chat_delete_button = QPushButton("Delete")
        for b in (self.chat_open_button, self.chat_delete_button):
            row.addWidget(b)
        self.chat_status = hint("")
        row.addWidget(self.chat_status, 1)
        lay.addLayout(row)
        self.chat_tree = QTreeWidget()
        self.chat_tree.setHeaderLabels(list(CHAT_COLUMNS))
        self.chat_tree.setAlternatingRowColors(True)
        self.chat_tree.setRootIsDecorated(True)
        self.chat_empty = empty_state(CHAT_EMPTY)
        lay.addWidget(self.chat_empty, 1)
        lay.addWidget(self.chat_tree, 1)
        self.chat_tree.itemExpanded.connect(self._fill_turns)
        self.chat_tree.itemSelectionChanged.connect(self._update_chat_buttons)
        self.chat_tree.itemDoubleClicked.connect(lambda *_: self.open_conversation())
        self.chat_open_button.clicked.connect(lambda: self.open_conversation())
        self.chat_delete_button.clicked.connect(lambda: self.delete_conversation())

    @property
    def conversations(self) -> ConversationStore:
        if self._conversations is None:
            self._conversations = ConversationStore()
        return self._conversations

    def refresh(self, model: str = "", track: str | None = None, words: str = "") -> None:
        """List the saved conversations (newest first) that pass the filters: ``model`` on
        the target, ``track`` on the tracks answered with, ``words`` on the title."""
        self._filters = (model, track, words)
        keep = self.selected_conversation()
        try:
            everything = self.conversations.list()
        except OSError as exc:  # an unreadable data folder: said, the runs still listed
            everything = []
            self.chat_status.setText(f"Conversations cannot be read: {exc}")
        model, words = model.strip().lower(), words.strip().lower()
        items = (self.chat_tree.topLevelItem(i) for i in range(self.chat_tree.topLevelItemCount()))
        opened = {it.data(0, ROLE) for it in items if it is not None and it.isExpanded()}
        self.chat_tree.clear()
        for c in everything:
            if ((model and model not in (c.target or "").lower())
                    or (track and track not in c.tracks)
                    or (words and words not in c.title.lower())):
                continue
            item = _conversation_row(c)
            self.chat_tree.addTopLevelItem(item)
            if c.id in opened:
                item.setExpanded(True)  # its turns read again: it may have new ones
        for i in range(len(CHAT_COLUMNS)):
            self.chat_tree.resizeColumnToContents(i)
            self.chat_tree.setColumnWidth(i, min(self.chat_tree.columnWidth(i), 360))
        self.chat_empty.setVisible(not everything)
        self.chat_tree.setVisible(bool(everything))
        if keep:
            self.select_conversation(keep)
        self._update_chat_buttons()

    def conversation_ids(self) -> list[str]:
        items = (self.chat_tree.topLevelItem(i) for i in range(self.chat_tree.topLevelItemCount()))
        return [str(it.data(0, ROLE)) for it in items if it is not None]

    def select_conversation(self, conv_id: str) -> bool:
        for i in range(self.chat_tree.topLevelItemCount()):
            it = self.chat_tree.topLevelItem(i)
            if it is not None and it.data(0, ROLE) == conv_id:
                self.chat_tree.setCurrentItem(it)
                return True
        return False

    def selected_conversation(self) -> str | None:
        item = self.chat_tree.currentItem()
        while item is not None and item.parent() is not None:
            item = item.parent()  # a turn's row stands for its conversation
        return str(item.data(0, ROLE)) if item is not None else None

    def _update_chat_buttons(self) -> None:
        on = self.selected_conversation() is not None
        self.chat_open_button.setEnabled(on)
        self.chat_delete_button.setEnabled(on)

    def _fill_turns(self, item: QTreeWidgetItem) -> None:
        if item.parent() is not None or item.childCount():
            return
        conv = self._load_conversation(str(item.data(0, ROLE)))
        if conv is None:
            return
        item.addChildren(turn_rows(conv))
        if not item.childCount():
            item.setChildIndicatorPolicy(
                QTreeWidgetItem.ChildIndicatorPolicy.DontShowIndicator)

    def _load_conversation(self, conv_id: str) -> Conversation | None:
        try:
            return self.conversations.load(conv_id)
        except (DecodeLabError, OSError, ValueError) as exc:
            text = f"Reading the conversation failed: {exc}"
            self.chat_status.setText(text)
            self.error.emit(text)
            return None

    def open_conversation(self, conv_id: str | None = None) -> bool:
        """Ask the window to reopen the conversation in Chat (to read or continue it)."""
        conv_id = conv_id or self.selected_conversation()
        conv = self._load_conversation(conv_id) if conv_id else None
        if conv is not None:
            self.conversation_requested.emit(conv)
        return conv is not None

    def delete_conversation(self, conv_id: str | None = None) -> bool:
        conv_id = conv_id or self.selected_conversation()
        if conv_id is None or not self.ask(
                "Delete this conversation? This cannot be undone."):
            return False
        try:
            self.conversations.delete(conv_id)
            ok = True
        except (DecodeLabError, OSError, ValueError) as exc:
            text = f"Deleting the conversation failed: {exc}"
            self.chat_status.setText(text)
            self.error.emit(text)
            ok = False
        self.refresh(*self._filters)
        return ok
