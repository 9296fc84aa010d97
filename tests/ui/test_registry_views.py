"""A draft source registered in-process shows up in the views with no edit of them: its
legend entry and token colour, its entry in "Will it pay?", its sweep setting, its tracks
in Compare. A token of a source that is not registered (an old record of a removed
plug-in) never raises: neutral colour, its raw id as name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QEvent, QPoint
from PySide6.QtGui import QColor, QGuiApplication, QHelpEvent, QPalette, QTextCursor

from app.core.drafting import registry
from app.core.drafting.registry import DraftSource, Setting
from app.core.events import RejectionEvent, TokenEvent
from app.ui.compare_view import CompareView
from app.ui.jobs import MOE_COLOUR, UNKNOWN_COLOUR, track_colour, track_label, track_name
from app.ui.lane import Lane
from app.ui.pay_panel import PayPanel
from app.ui.state import WorkbenchState
from app.ui.sweep_view import SweepView
from app.ui.token_view import (
    PROP_KIND,
    PROP_SOURCE,
    TokenView,
    dark_palette,
    describe,
    source_colour,
)


@pytest.fixture
def toy() -> Iterator[DraftSource]:
    src = DraftSource(
        id="toy", label="toy source", name="Toy source", summary="a throw-away test source",
        number=None, colour="#ffeeaa", dark_colour="#553300", plot_colour="#aa7700",
        cost="free", needs_draft_model=False, priority=50, build=lambda ctx: None,
        settings=(Setting("toy_depth", "toy depth", "help", 3, 1, 9, sweep=(1, 2, 3)),),
    )
    registry.register(src)
    try:
        yield src
    finally:
        registry.unregister("toy")


@pytest.fixture
def lane() -> Iterator[Lane]:
    h = Lane()
    try:
        yield h
    finally:
        h.shutdown()


@pytest.fixture
def state(lane: Lane) -> WorkbenchState:
    return WorkbenchState(lane)


def no_context() -> str:
    return "no models in this test"


def backgrounds(view: TokenView) -> dict[tuple[str, str], QColor]:
    """(kind, source) -> background colour of the document's fragments."""
    out: dict[tuple[str, str], QColor] = {}
    block = view.edit.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            f = it.fragment().charFormat()
            out[(f.stringProperty(PROP_KIND), f.stringProperty(PROP_SOURCE))] = \
                f.background().color()
            it += 1
        block = block.next()
    return out


def accepted(source: str, text: str = "abc", position: int = 0) -> TokenEvent:
    return TokenEvent(7, text, position, "accepted", source, 1, 0.0)


def test_legend_and_token_colour_come_from_the_registry(qtbot: Any, toy: DraftSource) -> None:
    view = TokenView()
    qtbot.addWidget(view)
    assert "toy source" in view.legend.text() and "prompt lookup" in view.legend.text()
    view.append([accepted("toy")])
    colour = toy.dark_colour if dark_palette() else toy.colour
    assert backgrounds(view)[("accepted", "toy")] == QColor(colour)


def test_dark_palette_uses_the_dark_colour(qtbot: Any, toy: DraftSource) -> None:
    app = QGuiApplication.instance()
    assert isinstance(app, QGuiApplication)
    before = app.palette()
    dark = QPalette(before)
    dark.setColor(QPalette.ColorRole.Window, QColor("#202124"))
    app.setPalette(dark)
    try:
        view = TokenView()
        qtbot.addWidget(view)
        view.append([accepted("toy")])
        assert backgrounds(view)[("accepted", "toy")] == QColor(toy.dark_colour)
        assert toy.dark_colour in view.legend.text()
    finally:
        app.setPalette(before)


def test_a_token_of_an_unknown_source_does_not_raise(qtbot: Any) -> None:
    view = TokenView()
    qtbot.addWidget(view)
    view.append([accepted("gone", "abc", 0),
                 RejectionEvent(8, "xyz", 1, "gone", 1)])
    assert backgrounds(view)[("accepted", "gone")] == QColor(source_colour("gone"))
    assert source_colour("gone") not in {s.colour for s in registry.sources()}
    assert all("gone" in describe(m) for m in view.marks)

    # Hover the first token: the tooltip path (an event filter) runs without raising;
    # pytest-qt fails the test on an exception inside it.
    cursor = QTextCursor(view.edit.document())
    cursor.setPosition(1)
    rect = view.edit.cursorRect(cursor)
    point = QPoint(rect.x() - 2, rect.center().y())
    assert "gone" in view.describe_at(point)
    viewport = view.edit.viewport()
    QGuiApplication.sendEvent(viewport, QHelpEvent(QEvent.Type.ToolTip, point,
                                                   viewport.mapToGlobal(point)))


def test_pay_panel_lists_and_follows_a_registered_source(
    qtbot: Any, lane: Lane, state: WorkbenchState, toy: DraftSource
) -> None:
    pay = PayPanel(lane, state, no_context)
    qtbot.addWidget(pay)
    index = pay.source.findData("toy")
    assert index >= 0 and pay.source.itemText(index) == "toy source"
    assert pay.source.findData("draft") >= 0 and pay.source.findData("lookup") >= 0
    pay.set_available({s.id: None for s in registry.sources()})
    assert pay.follow("toy") and pay.source.currentData() == "toy"
    assert pay.follow("draft+toy") and pay.source.currentData() == "draft"  # costs a model
    assert not pay.follow("gone")


def test_sweep_view_offers_a_source_setting(
    qtbot: Any, lane: Lane, state: WorkbenchState, toy: DraftSource
) -> None:
    view = SweepView(lane, state, no_context)
    qtbot.addWidget(view)
    view.track.setCurrentIndex(view.track.findData("toy"))
    offered = {view.parameter.itemData(i): view.parameter.itemText(i)
               for i in range(view.parameter.count())}
    assert offered == {"draft_max": "K (draft max)", "toy_depth": "toy depth"}
    view.parameter.setCurrentIndex(view.parameter.findData("toy_depth"))
    assert view.values.text() == "1-3"  # its Setting's sweep values
    view.track.setCurrentIndex(view.track.findData("lookup"))
    view.parameter.setCurrentIndex(view.parameter.findData("ngram_min"))
    assert view.values.text() == "1-4"


def test_compare_lists_its_tracks_and_unknown_tracks_show_their_id(
    qtbot: Any, lane: Lane, state: WorkbenchState, toy: DraftSource
) -> None:
    view = CompareView(lane, state, no_context)
    qtbot.addWidget(view)
    assert {"toy", "lookup+toy", "moe+toy"} <= set(view.checks)
    assert track_colour("toy") == toy.plot_colour
    assert track_colour("moe") == MOE_COLOUR
    assert track_colour("lookup+toy") not in (track_colour("lookup"), toy.plot_colour)
    assert track_label("gone") == "gone" and track_name("gone+lookup") == "gone+lookup"
    assert track_colour("gone") == UNKNOWN_COLOUR
    view._reset(["baseline", "gone"])  # a reopened comparison of a removed plug-in
    assert view.columns["gone"].title() == "gone"
