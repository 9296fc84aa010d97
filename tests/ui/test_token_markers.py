"""The answer keeps its own characters where they are: a rejected draft is a marker between
two characters by default (its text in the tooltip, newlines as ↵), the struck-through view
is an option that moves no line either, and token boundaries show.

The token view is the subject here, so its events are written by hand: a draft that
contains a newline, as lookup proposes in code, is what moved lines before."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtGui import QTextCursor

from app.core.events import RejectionEvent, TokenEvent
from app.ui.palette import AA, AA_GRAPHIC, contrast
from app.ui.token_view import PROP_KIND, TokenView, format_kinds

ANSWER = ["def", " average", "_throughput", "(samples", "):\n", "    ", "return", " 0.0", "\n"]
REJECTED = ["_speed", "(samples", "):\n", "    if"]  # drafted at position 2: wrong from its 1st


def events() -> list[Any]:
    """An answer with a lookup draft rejected at position 2 (it holds a newline) and
    accepted lookup tokens around it."""
    out: list[Any] = []
    for pos, text in enumerate(ANSWER[:2]):
        out.append(TokenEvent(pos + 10, text, pos, "accepted" if pos else "target",
                              "lookup" if pos else None, 1, 0.0))
    out += [RejectionEvent(100 + j, text, 2 + j, "lookup", 2) for j, text in enumerate(REJECTED)]
    for pos, text in enumerate(ANSWER[2:], start=2):
        out.append(TokenEvent(pos + 10, text, pos, "accepted" if pos in (3, 4) else "target",
                              "lookup" if pos in (3, 4) else None, 2 + (pos > 2), 0.0))
    return out


@pytest.fixture
def view(qtbot: Any) -> TokenView:
    v = TokenView()
    qtbot.addWidget(v)
    v.resize(600, 300)
    v.show()
    qtbot.waitExposed(v)
    return v


def lines(view: TokenView) -> int:
    return view.edit.document().blockCount()


def test_a_rejected_draft_with_a_newline_moves_no_answer_character(view: TokenView) -> None:
    view.append(events())
    answer = "".join(ANSWER)
    assert view.answer_text() == answer
    # Default view: the document is exactly the answer, so its lines and columns are the
    # answer's; the rejected draft is one marker where it was proposed.
    assert view.edit.toPlainText() == answer
    assert lines(view) == answer.count("\n") + 1
    assert [m.at for m in view.edit.markers] == [len("def average")]
    assert len(view.edit.markers[0].marks) == len(REJECTED)

    # The old inline view is an option: struck through, newlines shown as ↵, no line moves.
    view.inline.setChecked(True)
    inline = view.edit.toPlainText()
    assert "_speed(samples):↵    if" in inline
    assert lines(view) == answer.count("\n") + 1
    assert all(f == "rejected" for f, _, t in format_kinds(view) if "↵" in t)
    assert view.edit.markers == []

    # Hidden: the answer only.
    view.show_rejected.setChecked(False)
    assert view.edit.toPlainText() == answer and view.edit.markers == []
    view.show_rejected.setChecked(True)
    view.inline.setChecked(False)
    assert view.edit.toPlainText() == answer and len(view.edit.markers) == 1


def test_hovering_the_marker_shows_the_rejected_text(view: TokenView) -> None:
    view.append(events())
    marker = view.edit.markers[0]
    cursor = QTextCursor(view.edit.document())
    cursor.setPosition(marker.at)
    rect = view.edit.cursorRect(cursor)
    tip = view.describe_at(QPoint(rect.left() + 1, rect.center().y()))
    assert "“_speed(samples):↵    if”" in tip
    assert "4 tokens from the prompt lookup" in tip and "round 2" in tip
    # A point in the middle of a token is that token, not the marker.
    cursor.setPosition(len("def av"))
    rect = view.edit.cursorRect(cursor)
    tip = view.describe_at(QPoint(rect.left() + 1, rect.center().y()))
    assert tip.startswith("token 11 ' average'") and "accepted draft" in tip


def test_token_boundaries_show_inside_a_run_of_accepted_tokens(view: TokenView) -> None:
    run = [TokenEvent(i, text, i, "accepted", "lookup", 1, 0.0)
           for i, text in enumerate(["total", "_tokens", " =", " sum"])]
    view.append(run)
    fragments = [t for kind, _, t in format_kinds(view) if kind == "accepted"]
    assert fragments == ["total", "_tokens", " =", " sum"]  # four tokens, four fragments
    fg = {view_fragment_colour(view, pos) for pos in (0, 5)}
    assert len(fg) == 2  # neighbours differ
    view.boundaries.setChecked(False)
    assert [t for kind, _, t in format_kinds(view) if kind == "accepted"] == ["total_tokens = sum"]


def view_fragment_colour(view: TokenView, doc_pos: int) -> str:
    cursor = QTextCursor(view.edit.document())
    cursor.setPosition(doc_pos + 1)
    f = cursor.charFormat()
    text = view.edit.palette().text().color()
    return (f.foreground().color() if f.hasProperty(f.Property.ForegroundBrush) else text).name()


def test_struck_through_drafts_read_at_aa_contrast(view: TokenView) -> None:
    view.inline.setChecked(True)
    view.append(events())
    block = view.edit.document().begin()
    seen = 0
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            f = it.fragment().charFormat()
            if f.stringProperty(PROP_KIND) == "rejected":
                seen += 1
                assert f.fontStrikeOut()
                assert contrast(f.foreground().color(), f.background().color()) >= AA
            it += 1
        block = block.next()
    assert seen == 1
    # The marker is a graphical mark: WCAG asks 3:1 against what it is drawn on.
    base = view.edit.palette().base().color()
    assert contrast(view.edit.marker_colour, base) >= AA_GRAPHIC


def test_the_end_stays_in_view_unless_the_user_scrolled_away(
    qtbot: Any, view: TokenView
) -> None:
    def add_lines(n: int, start: int) -> None:
        view.append([TokenEvent(i, f"line {i}\n", i, "target", None, i, 0.0)
                     for i in range(start, start + n)])

    def end_visible() -> bool:
        cursor = QTextCursor(view.edit.document())
        cursor.setPosition(view.edit.document().characterCount() - 1)
        rect = view.edit.cursorRect(cursor)
        return rect.top() >= 0 and rect.bottom() <= view.edit.viewport().height()

    for k in range(20):
        add_lines(3, 3 * k)
        assert end_visible()
    bar = view.edit.verticalScrollBar()
    bar.setValue(0)  # the user scrolls to the top to read
    add_lines(10, 60)
    assert bar.value() == 0 and not end_visible()
    bar.setValue(bar.maximum())  # ... and back to the end: followed again
    add_lines(10, 70)
    assert end_visible()


def test_a_partial_repaint_places_exactly_the_markers_on_its_lines(view: TokenView) -> None:
    # During a run most paints are the few lines just appended: the markers of those lines,
    # whole (a marker at a line's very end included), and none of the others.
    evs: list[Any] = []
    for line in range(6):
        evs.append(TokenEvent(line, f"line_{line} = {line}", 2 * line, "target", None, line, 0.0))
        evs.append(RejectionEvent(100 + line, " + 1", 2 * line + 1, "lookup", line))
        evs.append(TokenEvent(50 + line, "\n", 2 * line + 1, "target", None, line, 0.0))
    view.append(evs)
    shown = view.edit.visible_markers()
    assert len(shown) == 6
    for marker, rect in shown:
        line_area = QRect(0, rect.top(), view.edit.viewport().width(), rect.height())
        assert [m for m, _ in view.edit.visible_markers(line_area)] == [marker]
    whole = view.edit.viewport().rect()
    assert [m for m, _ in view.edit.visible_markers(whole)] == [m for m, _ in shown]
