"""The live answer: every token with its origin, rejected drafts where they were proposed.

Tokens are appended with one ``QTextCursor`` per batch (one edit block, so one relayout),
never one widget update per token. Each token's character format carries its kind, source
and index (``QTextFormat.UserProperty`` + n) into a side table that the hover tooltip reads;
hiding the rejected drafts rebuilds the document from that table in one pass. Copy copies
the answer only (rejected drafts and notes left out).

The sources' colours, names and legend come from the registry (``app.core.drafting``) when
they are used, so a source registered later shows too; a token of a source that is not
registered (a removed plug-in's old record) gets a neutral colour and its raw id.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from PySide6.QtCore import QEvent, QObject, QPoint
from PySide6.QtGui import (
    QColor,
    QFont,
    QGuiApplication,
    QHelpEvent,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.core.drafting.registry import get_source, sources
from app.core.events import Event, RejectionEvent, RoundEvent, TokenEvent

PROP_KIND = int(QTextFormat.Property.UserProperty) + 1
PROP_SOURCE = int(QTextFormat.Property.UserProperty) + 2
PROP_INDEX = int(QTextFormat.Property.UserProperty) + 3

REJECTED_FG = "#a08080"
REJECTED_BG = "#fbeeee"
NOTE_FG = "#7a828e"
# An accepted token of a source that is not registered (a removed plug-in's old record).
UNKNOWN_BG, UNKNOWN_DARK_BG = "#e0e0e0", "#4a4a4a"


def dark_palette() -> bool:
    return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def source_colour(source: str | None, dark: bool | None = None) -> str:
    """Background of an accepted token of this source (registry id) on the current (or the
    given) palette; a neutral grey for a source that is not registered."""
    dark = dark_palette() if dark is None else dark
    src = get_source(source) if source else None
    if src is None:
        return UNKNOWN_DARK_BG if dark else UNKNOWN_BG
    return src.dark_colour if dark else src.colour


def source_name(source: str | None) -> str:
    """What the window calls where a token came from: a source's label, "target" for
    none, the raw id for a source that is not registered."""
    if not source:
        return "target"
    src = get_source(source)
    return src.label if src is not None else source


def legend_html() -> str:
    """The legend of the token colours: target, each registered source, rejected."""
    dark = dark_palette()
    accepted = "".join(f" &nbsp; <span style='background:{source_colour(s.id, dark)}'>"
                       f"&nbsp;accepted · {escape(s.label)}&nbsp;</span>" for s in sources())
    return (f"<span>target</span>{accepted} &nbsp; <span style='color:{REJECTED_FG};"
            f"background:{REJECTED_BG};text-decoration:line-through'>&nbsp;rejected&nbsp;"
            "</span>")


@dataclass(slots=True)
class Mark:
    kind: str  # target | accepted | rejected | note
    source: str | None
    id: int
    text: str
    position: int
    round: int


def _format(kind: str, source: str | None, index: int, dark: bool) -> QTextCharFormat:
    f = QTextCharFormat()
    if kind == "accepted":
        f.setBackground(QColor(source_colour(source, dark)))
    elif kind == "rejected":
        f.setFontStrikeOut(True)
        f.setForeground(QColor(REJECTED_FG))
        f.setBackground(QColor(REJECTED_BG))
    elif kind == "note":
        f.setForeground(QColor(NOTE_FG))
        f.setFontItalic(True)
    f.setProperty(PROP_KIND, kind)
    f.setProperty(PROP_SOURCE, source or "")
    f.setProperty(PROP_INDEX, index)
    return f


class _TokenTips(QObject):
    """Tooltip of the token under the pointer. An event filter on the viewport rather than
    a ``viewportEvent`` override: the override runs (in Python) for every paint event."""

    def __init__(self, view: TokenView) -> None:
        super().__init__(view)
        self.view = view

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() != QEvent.Type.ToolTip or not isinstance(event, QHelpEvent):
            return False
        tip = self.view.describe_at(event.pos())
        if tip:
            QToolTip.showText(event.globalPos(), tip, self.view.edit.viewport())
        else:
            QToolTip.hideText()
        return True


class TokenView(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        title = QLabel("Answer")
        title.setObjectName("SectionTitle")
        top.addWidget(title)
        self.legend = QLabel(legend_html())
        self.legend.setObjectName("Hint")
        self.legend.setWordWrap(True)
        self.legend.setToolTip("Hover a token to see its id, origin, round and position")
        top.addStretch(1)
        self.show_rejected = QCheckBox("show rejected")
        self.show_rejected.setChecked(True)
        self.show_rejected.toggled.connect(self.rebuild)
        top.addWidget(self.show_rejected)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the answer (without rejected drafts)")
        self.copy_button.clicked.connect(self.copy)
        top.addWidget(self.copy_button)
        layout.addLayout(top)
        layout.addWidget(self.legend)

        self.edit = QPlainTextEdit()
        self.tips = _TokenTips(self)
        self.edit.viewport().installEventFilter(self.tips)
        self.edit.setObjectName("TokenView")
        self.edit.setReadOnly(True)
        self.edit.setUndoRedoEnabled(False)
        self.edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.edit.setPlaceholderText(
            "The answer streams in here. Tokens the target sampled are plain; accepted draft "
            "tokens are highlighted by source; rejected drafts are struck through where they "
            "were proposed.")
        font = QFont("DejaVu Sans Mono")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.edit.setFont(font)
        layout.addWidget(self.edit, 1)
        self.marks: list[Mark] = []
        self._starts: list[int] = []  # document position of each shown mark (by mark index)

    # -- content -------------------------------------------------------------------------------
    def clear(self) -> None:
        self.legend.setText(legend_html())  # sources registered since, the palette now
        self.marks.clear()
        self._starts.clear()
        self.edit.clear()

    def append(self, events: list[Event]) -> None:
        """Append a batch of events (round events are ignored here)."""
        new: list[Mark] = []
        for e in events:
            if isinstance(e, TokenEvent):
                new.append(Mark(e.origin, e.source, e.id, e.text, e.position, e.round))
            elif isinstance(e, RejectionEvent):
                new.append(Mark("rejected", e.source, e.id, e.text, e.position, e.round))
            elif not isinstance(e, RoundEvent):
                continue
        self._insert(new)

    def add_note(self, text: str) -> None:
        self._insert([Mark("note", None, -1, text, -1, -1)])

    def _insert(self, new: list[Mark]) -> None:
        if not new:
            return
        bar = self.edit.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        cursor = QTextCursor(self.edit.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.beginEditBlock()
        show_rejected = self.show_rejected.isChecked()
        dark = dark_palette()  # once per batch: reading the palette copies it
        for m in new:
            index = len(self.marks)
            self.marks.append(m)
            if m.kind == "rejected" and not show_rejected:
                self._starts.append(-1)
                continue
            self._starts.append(cursor.position())
            cursor.insertText(m.text, _format(m.kind, m.source, index, dark))
        cursor.endEditBlock()
        if at_end:
            bar.setValue(bar.maximum())

    def rebuild(self) -> None:
        marks = self.marks
        self.marks, self._starts = [], []
        self.edit.clear()
        self._insert(marks)

    # -- reading -------------------------------------------------------------------------------
    def answer_text(self) -> str:
        return "".join(m.text for m in self.marks if m.kind in ("target", "accepted"))

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.answer_text())

    def answer_span(self, position: int) -> tuple[int, int] | None:
        """Document range (start, end) of the answer token at answer ``position``."""
        for i, m in enumerate(self.marks):
            if m.kind in ("target", "accepted") and m.position == position:
                start = self._starts[i]
                size = len(m.text.encode("utf-16-le")) // 2  # Qt counts UTF-16 units
                return (start, start + size) if start >= 0 else None
        return None

    def mark_at(self, doc_pos: int) -> Mark | None:
        """The mark whose text covers document position ``doc_pos``."""
        if doc_pos < 0:
            return None
        c = QTextCursor(self.edit.document())
        c.setPosition(doc_pos)
        c.setPosition(min(doc_pos + 1, self.edit.document().characterCount() - 1),
                      QTextCursor.MoveMode.KeepAnchor)
        f = c.charFormat()
        if not f.hasProperty(PROP_INDEX):
            return None
        index = f.intProperty(PROP_INDEX)
        return self.marks[index] if 0 <= index < len(self.marks) else None

    def describe_at(self, pos: QPoint) -> str:
        c = self.edit.cursorForPosition(pos)
        rect = self.edit.cursorRect(c)
        doc_pos = c.position() if pos.x() >= rect.x() else c.position() - 1
        m = self.mark_at(doc_pos)
        return describe(m) if m is not None else ""


def describe(m: Mark) -> str:
    if m.kind == "note":
        return m.text.strip()
    shown = repr(m.text)
    if m.kind == "rejected":
        return (f"token {m.id} {shown}\nrejected draft from the {source_name(m.source)}\n"
                f"proposed at position {m.position} in round {m.round}")
    origin = ("sampled by the target" if m.kind == "target"
              else f"accepted draft from the {source_name(m.source)}")
    return f"token {m.id} {shown}\n{origin}\nround {m.round} · position {m.position}"


def format_kinds(view: TokenView) -> list[tuple[str, str, str]]:
    """(kind, source, text) of every fragment of the document, for tests and checks."""
    out: list[tuple[str, str, str]] = []
    block = view.edit.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            if frag.isValid():
                f = frag.charFormat()
                out.append((f.stringProperty(PROP_KIND), f.stringProperty(PROP_SOURCE),
                            frag.text()))
            it += 1
        block = block.next()
    return out

