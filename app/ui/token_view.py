"""The live answer: every token with its origin, and where drafts were rejected.

The answer's own characters never move: by default a rejected draft is not text in the
document but a thin marker painted between two characters where it was proposed (hover it:
the rejected text, newlines shown as ↵, its source, position and round), so code keeps its
lines and columns. "Rejected drafts inline" puts the old struck-through view back (newlines
still shown as ↵, so no line moves). Every other answer token is drawn in a slightly
different text colour, so token boundaries show inside a run of accepted tokens without a
mark that could be read as a character (an underline looked like ``_`` in code).

Tokens are appended with one ``QTextCursor`` per batch (one edit block, so one relayout)
and a handful of shared character formats (kind, source, parity), never one widget update
or one new format per token. Which mark a document position belongs to is found by
bisecting the marks' start positions; hiding or showing rejected drafts rebuilds the document
in one pass. Copy copies the answer only.

The sources' colours, names and legend come from the registry (``app.core.drafting``) when
they are used, so a source registered later shows too; a token of a source that is not
registered (a removed plug-in's old record) gets a neutral colour and its raw id. Light and
dark colours follow the palette (``app.ui.palette``).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape

from PySide6.QtCore import QEvent, QObject, QPoint, QPointF, QRect, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QGuiApplication,
    QHelpEvent,
    QPainter,
    QPaintEvent,
    QPalette,
    QPolygonF,
    QTextCharFormat,
    QTextCursor,
    QTextFormat,
)
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.core.drafting.registry import get_source, sources
from app.core.events import Event, RejectionEvent, TokenEvent
from app.ui.palette import is_dark, readable, theme

PROP_KIND = int(QTextFormat.Property.UserProperty) + 1
PROP_SOURCE = int(QTextFormat.Property.UserProperty) + 2
NEWLINE_SIGN = "↵"
MARKER_HIT = 4  # pixels either side of a marker that show its tooltip


def dark_palette() -> bool:
    return is_dark()


def source_colour(source: str | None, dark: bool | None = None) -> str:
    """Background of an accepted token of this source (registry id) on the current (or the
    given) palette; a neutral grey for a source that is not registered."""
    dark = dark_palette() if dark is None else dark
    src = get_source(source) if source else None
    if src is None:
        return theme(dark).unknown_bg
    return src.dark_colour if dark else src.colour


def source_name(source: str | None) -> str:
    """What the window calls where a token came from: a source's label, "target" for
    none, the raw id for a source that is not registered."""
    if not source:
        return "target"
    src = get_source(source)
    return src.label if src is not None else source


def shown_text(text: str) -> str:
    """Rejected text as it may be shown without moving a line: newlines as ↵."""
    return text.replace("\r\n", NEWLINE_SIGN).replace("\n", NEWLINE_SIGN).replace("\r", "")


def legend_html(inline: bool = False) -> str:
    """The legend of the token colours: target, each registered source, rejected."""
    dark = dark_palette()
    t = theme(dark)
    accepted = "".join(f" &nbsp; <span style='background:{source_colour(s.id, dark)}'>"
                       f"&nbsp;accepted · {escape(s.label)}&nbsp;</span>" for s in sources())
    rejected = (f"<span style='color:{t.rejected_fg};background:{t.rejected_bg};"
                "text-decoration:line-through'>&nbsp;rejected&nbsp;</span>" if inline else
                f"<span style='color:{t.marker}'><b>‸</b></span> rejected draft (hover it)")
    return f"<span>target</span>{accepted} &nbsp; {rejected}"


@dataclass(slots=True)
class Mark:
    kind: str  # target | accepted | rejected | note
    source: str | None
    id: int
    text: str
    position: int
    round: int


@dataclass(slots=True)
class RejectMarker:
    """Where one or more rejected drafts were proposed: a document position and the marks
    (indices) of the rejected tokens, in order."""

    at: int
    marks: list[int] = field(default_factory=list)


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2  # Qt counts UTF-16 units


class _Formats:
    """The few character formats of one theme, shared by every token of their kind."""

    def __init__(self, dark: bool, text: QColor, base: QColor) -> None:
        self.dark, self.text, self.base = dark, text, base
        self._cache: dict[tuple[str, str, bool], QTextCharFormat] = {}

    def get(self, kind: str, source: str | None, alternate: bool) -> QTextCharFormat:
        key = (kind, source or "", alternate)
        f = self._cache.get(key)
        if f is None:
            f = self._cache[key] = self._make(kind, source, alternate)
        return f

    def _make(self, kind: str, source: str | None, alternate: bool) -> QTextCharFormat:
        t = theme(self.dark)
        f = QTextCharFormat()
        text = QColor(t.alt_text) if alternate else self.text
        if kind == "accepted":
            bg = QColor(source_colour(source, self.dark))
            f.setBackground(bg)
            fg = readable(text, bg)
            if fg != self.text:  # the alternate colour, or the palette's would not read
                f.setForeground(fg)
        elif kind == "target" and alternate:
            f.setForeground(readable(text, self.base))
        elif kind == "rejected":
            f.setFontStrikeOut(True)
            f.setForeground(QColor(t.rejected_fg))
            f.setBackground(QColor(t.rejected_bg))
        elif kind == "note":
            f.setForeground(QColor(t.note))
            f.setFontItalic(True)
        f.setProperty(PROP_KIND, kind)
        f.setProperty(PROP_SOURCE, source or "")
        return f


class _AnswerEdit(QPlainTextEdit):
    """The answer's text, with the rejected-draft markers painted over it (they are not
    characters, so they move nothing). Only markers in the visible range are painted."""

    def __init__(self) -> None:
        super().__init__()
        self.markers: list[RejectMarker] = []
        self.marker_at: list[int] = []  # RejectMarker.at, ascending, for bisecting
        self.marker_colour = QColor(theme().marker)

    def visible_markers(self, area: QRect | None = None) -> list[tuple[RejectMarker, QRect]]:
        """The markers in view (or in ``area`` of the viewport) with the caret rectangle at
        each (viewport coordinates)."""
        if not self.markers:
            return []
        vp = self.viewport()
        area = vp.rect() if area is None else area
        # The paragraphs the area touches, whole (a caret at a line's end sits past it).
        first = self.cursorForPosition(QPoint(0, area.top())).block().position()
        end = self.cursorForPosition(QPoint(vp.width(), area.bottom())).block()
        last = end.position() + end.length()
        out: list[tuple[RejectMarker, QRect]] = []
        cursor = QTextCursor(self.document())
        for i in range(bisect_left(self.marker_at, first), bisect_right(self.marker_at, last)):
            marker = self.markers[i]
            cursor.setPosition(marker.at)
            out.append((marker, self.cursorRect(cursor)))
        return out

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        # Only the markers in the repainted area: during a run most paints are the few
        # lines just appended, and placing every visible marker cost a third of each paint.
        shown = self.visible_markers(event.rect())
        if not shown:
            return
        painter = QPainter(self.viewport())
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(self.marker_colour)
            for _marker, rect in shown:
                x, top, bottom = rect.left(), rect.top() + 1, rect.bottom()
                # A hairline between the two characters and a small wedge on top: a caret
                # that says "a draft was proposed here".
                painter.drawRect(QRect(x, top, 1, bottom - top))
                painter.drawPolygon(QPolygonF([QPointF(x - 2.5, top), QPointF(x + 3.5, top),
                                               QPointF(x + 0.5, top + 4)]))
        finally:
            painter.end()


class _TokenTips(QObject):
    """Tooltip of the token or marker under the pointer. An event filter on the viewport
    rather than a ``viewportEvent`` override: the override runs (in Python) for every
    event the viewport gets."""

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
    rebuilt = Signal()  # the document was rebuilt: document positions changed

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        top = QHBoxLayout()
        title = QLabel("Answer")
        title.setObjectName("SectionTitle")
        top.addWidget(title)
        top.addStretch(1)
        # The view's switches sit in one small menu, so the header stays narrow.
        self.options = QToolButton()
        self.options.setText("Show")
        self.options.setToolTip("What the answer shows besides its text")
        self.options.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.options)
        self.show_rejected = self._switch(menu, "Rejected drafts", True,
                                          "Where drafts were rejected (hover a marker: its text)")
        self.inline = self._switch(menu, "Rejected drafts inline (struck through)", False,
                                   "The rejected text in the answer itself, struck through; "
                                   "columns shift, lines do not (newlines show as ↵)")
        self.boundaries = self._switch(menu, "Token boundaries", True,
                                       "Every other token in a slightly different colour")
        self.options.setMenu(menu)
        top.addWidget(self.options)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the answer (without rejected drafts)")
        self.copy_button.clicked.connect(self.copy)
        top.addWidget(self.copy_button)
        layout.addLayout(top)
        self.legend = QLabel(legend_html())
        self.legend.setObjectName("Hint")
        self.legend.setWordWrap(True)
        self.legend.setToolTip("Hover a token to see its id, origin, round and position")
        layout.addWidget(self.legend)

        self.edit = _AnswerEdit()
        self.tips = _TokenTips(self)
        self.edit.viewport().installEventFilter(self.tips)
        self.edit.setObjectName("TokenView")
        self.edit.setReadOnly(True)
        self.edit.setUndoRedoEnabled(False)
        self.edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.edit.setPlaceholderText(
            "The answer streams in here. Tokens the target sampled are plain; accepted draft "
            "tokens are highlighted by source; a small red caret marks where a draft was "
            "rejected (hover it to read the draft).")
        font = QFont("DejaVu Sans Mono")
        font.setStyleHint(QFont.StyleHint.Monospace)
        self.edit.setFont(font)
        layout.addWidget(self.edit, 1)
        self.marks: list[Mark] = []
        self._starts: list[int] = []  # document position of each mark (-1: not in the text)
        self._doc_starts: list[int] = []  # starts of the marks in the text, ascending
        self._doc_marks: list[int] = []  # ... and their mark indices
        self._formats = self._new_formats()
        self._cursor = QTextCursor(self.edit.document())  # at the end of the answer

    def _switch(self, menu: QMenu, text: str, on: bool, tip: str) -> QAction:
        action = QAction(text, self)
        action.setCheckable(True)
        action.setChecked(on)
        action.setToolTip(tip)
        action.toggled.connect(self.rebuild)
        menu.addAction(action)
        return action

    def _new_formats(self) -> _Formats:
        dark = dark_palette()
        self.edit.marker_colour = QColor(theme(dark).marker)
        palette = self.edit.palette()
        return _Formats(dark, palette.color(QPalette.ColorRole.Text),
                        palette.color(QPalette.ColorRole.Base))

    # -- content -------------------------------------------------------------------------------
    def clear(self) -> None:
        self.legend.setText(legend_html(self.inline.isChecked()))  # sources registered since
        self._formats = self._new_formats()  # the palette now
        self.marks.clear()
        self._reset_document()

    def _reset_document(self) -> None:
        self._starts.clear()
        self._doc_starts.clear()
        self._doc_marks.clear()
        self.edit.markers.clear()
        self.edit.marker_at.clear()
        self.edit.clear()
        self._cursor = QTextCursor(self.edit.document())

    def append(self, events: Sequence[Event]) -> None:
        """Append a batch of events (round and note events are ignored here)."""
        new: list[Mark] = []
        for e in events:
            if isinstance(e, TokenEvent):
                new.append(Mark(e.origin, e.source, e.id, e.text, e.position, e.round))
            elif isinstance(e, RejectionEvent):
                new.append(Mark("rejected", e.source, e.id, e.text, e.position, e.round))
        self._insert(new)

    def add_note(self, text: str) -> None:
        self._insert([Mark("note", None, -1, text, -1, -1)])

    def _insert(self, new: list[Mark]) -> None:
        if not new:
            return
        edit = self.edit
        bar = edit.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4  # the user reads the end: keep it in view
        cursor = self._cursor  # stays at the end: text is only ever added there
        cursor.beginEditBlock()
        show_rejected, inline = self.show_rejected.isChecked(), self.inline.isChecked()
        boundaries, formats = self.boundaries.isChecked(), self._formats
        marks, starts = self.marks, self._starts
        new_markers = len(edit.markers)
        for m in new:
            index = len(marks)
            marks.append(m)
            at = cursor.position()
            if m.kind == "rejected":
                if not show_rejected:
                    starts.append(-1)
                    continue
                if not inline:
                    starts.append(-1)
                    markers = edit.markers
                    if markers and markers[-1].at == at:
                        markers[-1].marks.append(index)
                    else:
                        markers.append(RejectMarker(at, [index]))
                        edit.marker_at.append(at)
                    continue
                text = shown_text(m.text)
            else:
                text = m.text
            starts.append(at)
            if text:
                self._doc_starts.append(at)
                self._doc_marks.append(index)
            alternate = boundaries and m.position % 2 == 1 and m.kind in ("target", "accepted")
            cursor.insertText(text, formats.get(m.kind, m.source, alternate))
        cursor.endEditBlock()
        if at_end:
            bar.setValue(bar.maximum())
        self._repaint_markers(new_markers)

    def _repaint_markers(self, first: int) -> None:
        """Repaint just around the markers added from index ``first`` (the text's own
        repaint covers only the text that changed; a whole-viewport update per batch made
        the answer's paints about 3 times as costly during a run)."""
        edit = self.edit
        if first >= len(edit.markers):
            return
        cursor = QTextCursor(edit.document())
        for marker in edit.markers[first:]:
            cursor.setPosition(marker.at)
            edit.viewport().update(edit.cursorRect(cursor).adjusted(-4, -1, 5, 1))

    def rebuild(self) -> None:
        self.legend.setText(legend_html(self.inline.isChecked()))
        self._formats = self._new_formats()
        marks = self.marks
        self.marks = []
        self._reset_document()
        self._insert(marks)
        self.rebuilt.emit()

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
                return (start, start + _utf16(m.text)) if start >= 0 else None
        return None

    def mark_at(self, doc_pos: int) -> Mark | None:
        """The mark whose text covers document position ``doc_pos``."""
        k = bisect_right(self._doc_starts, doc_pos) - 1
        if doc_pos < 0 or k < 0:
            return None
        index = self._doc_marks[k]
        m = self.marks[index]
        text = shown_text(m.text) if m.kind == "rejected" else m.text
        return m if doc_pos < self._doc_starts[k] + _utf16(text) else None

    def marker_near(self, pos: QPoint) -> RejectMarker | None:
        """The rejected-draft marker within a few pixels of viewport point ``pos``."""
        for marker, rect in self.edit.visible_markers():
            if abs(pos.x() - rect.left()) <= MARKER_HIT and rect.top() <= pos.y() <= rect.bottom():
                return marker
        return None

    def describe_marker(self, marker: RejectMarker) -> str:
        """The rejected drafts proposed at ``marker``: text (newlines as ↵), source, size,
        position and round, one line pair per round."""
        rounds: dict[int, list[Mark]] = {}
        for i in marker.marks:
            rounds.setdefault(self.marks[i].round, []).append(self.marks[i])
        parts = []
        for rnd, ms in rounds.items():
            n = len(ms)
            parts.append(f"rejected draft “{shown_text(''.join(m.text for m in ms))}”\n"
                         f"{n} token{'s' if n != 1 else ''} from the {source_name(ms[0].source)}"
                         f", proposed at position {ms[0].position} in round {rnd}")
        return "\n\n".join(parts)

    def describe_at(self, pos: QPoint) -> str:
        marker = self.marker_near(pos)
        if marker is not None:
            return self.describe_marker(marker)
        c = self.edit.cursorForPosition(pos)
        rect = self.edit.cursorRect(c)
        doc_pos = c.position() if pos.x() >= rect.x() else c.position() - 1
        m = self.mark_at(doc_pos)
        return describe(m) if m is not None else ""


def describe(m: Mark) -> str:
    if m.kind == "note":
        return m.text.strip()
    if m.kind == "rejected":
        return (f"token {m.id} “{shown_text(m.text)}”\nrejected draft from the "
                f"{source_name(m.source)}\nproposed at position {m.position} in round {m.round}")
    origin = ("sampled by the target" if m.kind == "target"
              else f"accepted draft from the {source_name(m.source)}")
    return f"token {m.id} {m.text!r}\n{origin}\nround {m.round} · position {m.position}"


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
